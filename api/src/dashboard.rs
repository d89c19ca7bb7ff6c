//! The control-center dashboard: the built web app (`dashboards/dist`) served at `/`.
//!
//! Every path that is not a route of the API falls back here. A file of the built app is
//! answered as it is; any other path is a page of the app (it routes in the browser), so
//! it gets `index.html`. Paths under the API's prefixes (`/api`, `/health`, `/metrics`,
//! `/open311`, `/gtfs-rt`) never do: an unknown one stays a JSON 404.
//!
//! About forty lines of file serving instead of a dependency: the app is a handful of
//! files, their names made by the build, and all it needs is a content type, a cache
//! header and no way out of the folder.

use std::path::{Component, Path, PathBuf};

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// Where the dashboard's files are and what its map shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardConfig {
    /// The built app (`npm --prefix dashboards run build` writes `dashboards/dist`).
    pub dir: PathBuf,
    /// A GeoJSON base map: district outlines and streets (`cityhub simulate city` writes
    /// one as `map.geojson`). Without it the map shows the assets alone.
    pub base_map: Option<PathBuf>,
    /// A raster tile server for cities that have one, e.g.
    /// `https://tiles.example.org/{z}/{x}/{y}.png`; drawn under the base map.
    pub tile_url: Option<String>,
    /// The credit line the tile server asks for.
    pub tile_attribution: Option<String>,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            dir: PathBuf::from("dashboards/dist"),
            base_map: None,
            tile_url: None,
            tile_attribution: None,
        }
    }
}

/// The residents' status page in the built app, served under `/public/{tenant}/` only
/// (`standards::public_works`).
pub const PUBLIC_PAGE: &str = "public.html";

/// Path prefixes that belong to the API, never to the app.
const API_PREFIXES: [&str; 6] = [
    "/api", "/health", "/metrics", "/open311", "/gtfs-rt", "/public",
];

/// Whether `path` is the API's (an unknown one there is a JSON 404, not the app).
pub fn is_api_path(path: &str) -> bool {
    API_PREFIXES.iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// A file of the app, or `index.html` for the app's own pages.
pub async fn serve(config: &DashboardConfig, method: &Method, uri: &Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
        )
            .into_response();
    }
    let index = config.dir.join("index.html");
    // The public status page reads the feeds beside it: it is served under
    // `/public/{tenant}/` only, and here as any other page of the app.
    let file = file_under(&config.dir, uri.path())
        .filter(|f| f.file_name() != Some(std::ffi::OsStr::new(PUBLIC_PAGE)));
    let (path, bytes) = match file {
        Some(file) => match tokio::fs::read(&file).await {
            Ok(bytes) => (file, bytes),
            Err(_) => match tokio::fs::read(&index).await {
                Ok(bytes) => (index, bytes),
                Err(_) => return not_built(&config.dir),
            },
        },
        None => match tokio::fs::read(&index).await {
            Ok(bytes) => (index, bytes),
            Err(_) => return not_built(&config.dir),
        },
    };
    let immutable = uri.path().starts_with("/assets/");
    let mut response = Response::new(if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(bytes)
    });
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&path)),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if immutable {
            // The build names these files after their content.
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if path.ends_with("index.html") {
        if let Ok(csp) = HeaderValue::from_str(&content_policy(config)) {
            headers.insert(header::CONTENT_SECURITY_POLICY, csp);
        }
    }
    response
}

/// The file `path` names inside `dir`, if it is a plain relative path to a file (no `..`,
/// no hidden names).
fn file_under(dir: &Path, path: &str) -> Option<PathBuf> {
    let relative = Path::new(path.trim_start_matches('/'));
    let plain = relative.components().all(|c| match c {
        Component::Normal(name) => !name.to_string_lossy().starts_with('.'),
        _ => false,
    });
    if !plain || relative.as_os_str().is_empty() {
        return None;
    }
    let file = dir.join(relative);
    file.is_file().then_some(file)
}

/// The page's sources: its own origin, and the tile server when one is configured.
pub(crate) fn content_policy(config: &DashboardConfig) -> String {
    let tiles = config
        .tile_url
        .as_deref()
        .and_then(origin_of)
        .map(|o| format!(" {o}"))
        .unwrap_or_default();
    format!(
        "default-src 'self'; img-src 'self' data: blob:{tiles}; style-src 'self' 'unsafe-inline'; \
         connect-src 'self'; frame-ancestors 'none'"
    )
}

/// `https://host:port` of a URL template.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split('/').next()?;
    (!host.is_empty() && !host.contains(['{', ' ', ';', '\'']))
        .then(|| format!("{scheme}://{host}"))
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "geojson" => "application/geo+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn not_built(dir: &Path) -> Response {
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>cityhub</title>\
         <h1>The dashboard is not built</h1>\
         <p>cityhub serves the dashboard from <code>{}</code>, which holds no \
         <code>index.html</code>. Build it with <code>npm --prefix dashboards ci &amp;&amp; \
         npm --prefix dashboards run build</code>, or point <code>dashboard.dir</code> \
         (<code>CITYHUB_DASHBOARD_DIR</code>) at a built copy. The API answers under \
         <code>/api/v1</code> meanwhile.</p>\n",
        html_escape(&dir.display().to_string())
    );
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_prefixes_are_whole_segments() {
        for (path, api) in [
            ("/api", true),
            ("/api/v1/nothing", true),
            ("/health", true),
            ("/metrics", true),
            ("/open311/v2/requests.json", true),
            ("/gtfs-rt/vehicle-positions", true),
            ("/", false),
            ("/outages", false),
            ("/apiary", false),
            ("/healthy", false),
        ] {
            assert_eq!(is_api_path(path), api, "{path}");
        }
    }

    #[test]
    fn only_plain_paths_inside_the_folder_are_files() {
        let dir = tempfile_dir("paths");
        std::fs::create_dir_all(dir.join("assets")).unwrap();
        std::fs::write(dir.join("assets/app.js"), "x").unwrap();
        std::fs::write(dir.join(".secret"), "x").unwrap();
        assert_eq!(
            file_under(&dir, "/assets/app.js"),
            Some(dir.join("assets/app.js"))
        );
        for path in [
            "/",
            "/assets",
            "/.secret",
            "/../dist/assets/app.js",
            "/assets/../assets/app.js",
            "/outages",
        ] {
            assert_eq!(file_under(&dir, path), None, "{path}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_policy_allows_the_tile_server_and_nothing_else() {
        let mut c = DashboardConfig::default();
        assert!(!content_policy(&c).contains("http"));
        c.tile_url = Some("https://tiles.example.org:8443/{z}/{x}/{y}.png".into());
        assert!(content_policy(&c)
            .contains("img-src 'self' data: blob: https://tiles.example.org:8443;"));
        assert_eq!(origin_of("{z}/{x}"), None);
    }

    #[tokio::test]
    async fn files_pages_and_a_missing_build() {
        let dir = tempfile_dir("serve");
        std::fs::create_dir_all(dir.join("assets")).unwrap();
        let config = DashboardConfig {
            dir: dir.clone(),
            ..DashboardConfig::default()
        };
        let get = |path: &'static str| {
            let config = config.clone();
            async move { serve(&config, &Method::GET, &Uri::from_static(path)).await }
        };
        let missing = get("/").await;
        assert_eq!(missing.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(missing.into_body(), 1 << 20)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&body).contains("The dashboard is not built"));

        std::fs::write(dir.join("index.html"), "<!doctype html>app").unwrap();
        std::fs::write(dir.join("assets/app-1a2b.js"), "js").unwrap();
        for path in ["/", "/outages", "/work-orders/7"] {
            let page = get(path).await;
            assert_eq!(page.status(), StatusCode::OK, "{path}");
            assert_eq!(page.headers()[header::CACHE_CONTROL], "no-cache");
            assert!(page.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        }
        let js = get("/assets/app-1a2b.js").await;
        assert_eq!(
            js.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert!(js.headers()[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable"));
        let post = serve(&config, &Method::POST, &Uri::from_static("/")).await;
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A fresh folder of this test's own (tests run in parallel).
    fn tempfile_dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("cityhub-dashboard-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

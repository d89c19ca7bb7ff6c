//! What a tenant's residents may read without signing in, when the hub publishes that
//! tenant (`public.tenants`): its works now and to come (`store::public_works`), as
//! GeoJSON (RFC 7946), `GET /public/{tenant}/works.geojson`, and its planned works as an
//! iCalendar feed (RFC 5545), `GET /public/{tenant}/works.ics`; the status page that shows
//! them on a map and in a list, `GET /public/{tenant}/` (the built app's `public.html`),
//! and the streets and districts it draws them on, `GET /public/{tenant}/map.geojson`.
//!
//! Anyone may call these, so they cost the database little whatever the load: each
//! tenant's answers are built at most once per [`FRESH_FOR`] and shared, clients may keep
//! them as long (`Cache-Control`), and each address may ask [`PER_ADDRESS`] times at once,
//! then [`PER_ADDRESS`] a minute. A tenant that is not published, and a name that is no
//! tenant, get the same 404. Every answer, refusals too, may be read by any site's pages
//! (`Access-Control-Allow-Origin: *`, `Retry-After` exposed).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use geojson::{Feature, FeatureCollection, Geometry, JsonObject, Value};
use icalendar::{Calendar, Component, EventLike};
use serde::Deserialize;
use store::public_works::{PublicKind, PublicWork};

use crate::dashboard::DashboardConfig;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiPath, ApiQuery, ClientAddress};
use crate::limiter::RateLimiter;
use crate::AppState;

/// How long an answer is shared (and may be kept by clients).
pub const FRESH_FOR: Duration = Duration::from_secs(10);
/// Requests one address may make at once, and per minute after that.
pub const PER_ADDRESS: u32 = 120;

/// The answers' formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Format {
    GeoJson,
    ICalendar,
    /// The base map's districts and streets.
    BaseMap,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::GeoJson | Format::BaseMap => "application/geo+json",
            Format::ICalendar => "text/calendar; charset=utf-8",
        }
    }
}

/// The tenants published, their answers of the last [`FRESH_FOR`], and each address's rate.
pub struct PublicPages {
    tenants: std::sync::RwLock<Vec<String>>,
    /// Tenants whose items name their devices.
    device_ids: std::sync::RwLock<Vec<String>>,
    answers: tokio::sync::Mutex<HashMap<(String, Format), (Instant, Bytes)>>,
    rates: RateLimiter<IpAddr>,
}

impl Default for PublicPages {
    fn default() -> PublicPages {
        PublicPages {
            tenants: std::sync::RwLock::default(),
            device_ids: std::sync::RwLock::default(),
            answers: tokio::sync::Mutex::default(),
            rates: RateLimiter::new(PER_ADDRESS, Duration::from_secs(60)),
        }
    }
}

impl PublicPages {
    /// Publishes `tenants` (slugs), and only them.
    pub fn set_tenants(&self, tenants: Vec<String>) {
        *self.tenants.write().unwrap_or_else(|p| p.into_inner()) = tenants;
    }

    /// Lets the items of `tenants` (slugs) name their devices.
    pub fn set_device_ids(&self, tenants: Vec<String>) {
        *self.device_ids.write().unwrap_or_else(|p| p.into_inner()) = tenants;
    }

    fn names_devices(&self, tenant: &str) -> bool {
        self.device_ids
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|t| t == tenant)
    }

    /// Whether `tenant` (a slug) is published.
    pub fn published(&self, tenant: &str) -> bool {
        self.tenants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|t| t == tenant)
    }

    /// Counts a request against its address's rate.
    pub fn admit_address(&self, address: Option<IpAddr>) -> Result<(), ApiError> {
        let keys: Vec<IpAddr> = address.into_iter().collect();
        self.rates.take(&keys, Instant::now()).map_err(|wait| {
            ApiError::too_many("too many requests from this address; try again later", wait)
        })
    }
}

/// What a tenant that is not published, or no tenant, is told.
const UNKNOWN: &str = "this tenant has no public page";

/// Counts the request against its address's rate, and refuses a tenant not published.
fn admit(state: &AppState, address: Option<IpAddr>, tenant: &str) -> Result<(), ApiError> {
    let pages = state.public_pages();
    pages.admit_address(address)?;
    if !pages.published(tenant) {
        return Err(ApiError::not_found(UNKNOWN));
    }
    Ok(())
}

/// The answer in `format` for `tenant`: shared while fresh, else built anew.
async fn answer(
    state: &AppState,
    address: Option<IpAddr>,
    tenant: String,
    format: Format,
) -> Result<Response, ApiError> {
    admit(state, address, &tenant)?;
    let pages = state.public_pages();
    // One build at a time: a crowd arriving as an answer goes stale waits for the one
    // build rather than each asking the database.
    let mut answers = pages.answers.lock().await;
    let key = (tenant, format);
    let body = match answers.get(&key) {
        Some((at, body)) if at.elapsed() < FRESH_FOR => body.clone(),
        _ => {
            let reads = state.pool().reads().await?;
            let tenant = reads
                .public_tenant(&key.0)
                .await?
                .ok_or_else(|| ApiError::not_found(UNKNOWN))?;
            let now = state.now().to_datetime();
            let body = Bytes::from(match format {
                Format::GeoJson => {
                    let works = reads.public_works(tenant.id, now).await?;
                    let about = About {
                        tenant: &key.0,
                        name: &tenant.name,
                        districts: reads.districts(tenant.id).await?,
                        subscriptions: state.email_enabled(),
                        devices: pages.names_devices(&key.0),
                    };
                    geojson(&about, &works, now)
                }
                Format::ICalendar => {
                    let works = reads.public_works(tenant.id, now).await?;
                    icalendar(&tenant.name, &key.0, &works, now)
                }
                Format::BaseMap => {
                    let extent = reads.tenant_extent(tenant.id).await?;
                    streets_and_districts(state.dashboard(), extent).await?
                }
            });
            answers.insert(key.clone(), (Instant::now(), body.clone()));
            body
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_owned()),
            (
                header::CACHE_CONTROL,
                format!("public, max-age={}", FRESH_FOR.as_secs()),
            ),
        ],
        body,
    )
        .into_response())
}

/// The status page: the built app's `public.html`, which reads the feeds beside it.
async fn page(dashboard: &DashboardConfig) -> Response {
    let file = dashboard.dir.join(crate::dashboard::PUBLIC_PAGE);
    let Ok(bytes) = tokio::fs::read(&file).await else {
        return ApiError::unavailable(format!(
            "the public page is not built: {} is missing (npm --prefix dashboards run build)",
            file.display()
        ))
        .into_response();
    };
    let mut response = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        bytes,
    )
        .into_response();
    if let Ok(csp) = HeaderValue::from_str(&crate::dashboard::content_policy(dashboard)) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

/// The base map's districts and streets (`layer` `district` or `street`) around the
/// tenant's devices (`extent`, with a margin), without the bus routes, another city's
/// streets or anything else the hub's one base map holds.
async fn streets_and_districts(
    dashboard: &DashboardConfig,
    extent: Option<[f64; 4]>,
) -> Result<String, ApiError> {
    let none = || ApiError::not_found("no base map is configured (dashboard.base_map)");
    let path = dashboard.base_map.as_ref().ok_or_else(none)?;
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| ApiError::internal("reading the base map", &e))?;
    let mut map: FeatureCollection = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::internal("reading the base map", &e))?;
    let around = extent.map(|[w, s, e, n]| {
        let margin = ((e - w).max(n - s) * 0.1).max(0.005);
        [w - margin, s - margin, e + margin, n + margin]
    });
    map.features.retain(|f| {
        let layer = f.property("layer").and_then(|l| l.as_str());
        matches!(layer, Some("district" | "street"))
            && match (around, f.geometry.as_ref().and_then(|g| bounds(&g.value))) {
                (Some([w, s, e, n]), Some([fw, fs, fe, f_n])) => {
                    fw <= e && fe >= w && fs <= n && f_n >= s
                }
                // A tenant without devices has nothing to show around.
                (None, _) | (_, None) => false,
            }
    });
    map.foreign_members = None;
    Ok(map.to_string())
}

/// West, south, east and north of a geometry's positions.
fn bounds(value: &Value) -> Option<[f64; 4]> {
    let mut b: Option<[f64; 4]> = None;
    let mut take = |p: &Vec<f64>| {
        if let [x, y, ..] = p[..] {
            let c = b.get_or_insert([x, y, x, y]);
            *c = [c[0].min(x), c[1].min(y), c[2].max(x), c[3].max(y)];
        }
    };
    match value {
        Value::Point(p) => take(p),
        Value::MultiPoint(ps) | Value::LineString(ps) => ps.iter().for_each(&mut take),
        Value::MultiLineString(ls) | Value::Polygon(ls) => ls.iter().flatten().for_each(&mut take),
        Value::MultiPolygon(polys) => polys.iter().flatten().flatten().for_each(&mut take),
        Value::GeometryCollection(gs) => {
            for g in gs {
                if let Some([w, s, e, n]) = bounds(&g.value) {
                    take(&vec![w, s]);
                    take(&vec![e, n]);
                }
            }
        }
    }
    b
}

/// The answer to a request for `format`, or its refusal, readable by any site's pages (a
/// refusal's `Retry-After` included).
async fn respond(
    state: &AppState,
    address: Option<IpAddr>,
    tenant: Result<ApiPath<String>, ApiError>,
    query: Result<ApiQuery<NoParameters>, ApiError>,
    format: Format,
) -> Response {
    let answered = match (tenant, query) {
        (Ok(ApiPath(tenant)), Ok(_)) => answer(state, address, tenant, format).await,
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    let mut response = answered.unwrap_or_else(IntoResponse::into_response);
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("retry-after"),
    );
    response
}

/// These feeds take no query parameters: one is refused (400), as everywhere in the API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParameters {}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A FeatureCollection: one Feature per item, at the middle of its devices (no geometry
/// for works over the whole city).
/// What a feed says of its tenant, and what it may show.
pub struct About<'a> {
    pub tenant: &'a str,
    pub name: &'a str,
    /// Its districts, as its inventory names them.
    pub districts: Vec<String>,
    /// Whether residents may subscribe to its planned works (the hub sends e-mail).
    pub subscriptions: bool,
    /// Whether items name their devices (`public.device_ids`).
    pub devices: bool,
}

pub fn geojson(about: &About<'_>, works: &[PublicWork], now: DateTime<Utc>) -> String {
    let features = works
        .iter()
        .map(|w| {
            let mut p = JsonObject::new();
            p.insert("kind".into(), w.kind.as_str().into());
            p.insert("status".into(), w.status.as_str().into());
            p.insert("since".into(), rfc3339(w.since).into());
            p.insert("expected_end".into(), w.expected_end.map(rfc3339).into());
            p.insert("cause".into(), w.cause.into());
            p.insert("district".into(), w.district.clone().into());
            p.insert("street".into(), w.street.clone().into());
            p.insert("count".into(), w.count.into());
            if about.devices && w.kind != PublicKind::PlannedWorks {
                p.insert("devices".into(), w.devices.clone().into());
            }
            Feature {
                bbox: None,
                geometry: w
                    .at
                    .map(|(lon, lat)| Geometry::new(Value::Point(vec![lon, lat]))),
                id: Some(geojson::feature::Id::String(w.key())),
                properties: Some(p),
                foreign_members: None,
            }
        })
        .collect();

    let mut members = JsonObject::new();
    members.insert("tenant".into(), about.tenant.into());
    members.insert("name".into(), about.name.into());
    members.insert("districts".into(), about.districts.clone().into());
    members.insert(
        "subscriptions".into(),
        about
            .subscriptions
            .then(|| format!("/public/{}/subscriptions", about.tenant))
            .into(),
    );
    members.insert("generated_at".into(), rfc3339(now).into());
    FeatureCollection {
        bbox: None,
        features,
        foreign_members: Some(members),
    }
    .to_string()
}

/// A calendar of the planned works, one event each.
pub fn icalendar(name: &str, tenant: &str, works: &[PublicWork], now: DateTime<Utc>) -> String {
    let mut calendar = Calendar::new();
    calendar.name(&format!("{name}: planned works"));
    for w in works.iter().filter(|w| w.kind == PublicKind::PlannedWorks) {
        let place = match (&w.street, &w.district, w.at) {
            (Some(s), Some(d), _) => format!("{s}, {d}"),
            (Some(p), None, _) | (None, Some(p), _) => p.clone(),
            (None, None, Some(_)) => "several districts".to_owned(),
            (None, None, None) => "the whole city".to_owned(),
        };
        let mut event = icalendar::Event::new();
        event
            .uid(&format!(
                "{}-{}@{tenant}.works.cityhub",
                w.since.timestamp(),
                w.id.unwrap_or_default()
            ))
            .timestamp(now)
            .summary(&format!("Planned works: {place}"))
            .location(&place)
            .starts(w.since);
        if let Some(end) = w.expected_end {
            event.ends(end);
        }
        calendar.push(event.done());
    }
    calendar.done().to_string()
}

/// Tenant `tenant`'s works now and to come, for residents: dark streets and water leaks
/// (grouped by street, or by district where the inventory names no street) with where
/// their repair stands and when it is due, and planned works with their dates. No sign-in;
/// only for a tenant the hub publishes (`public.tenants`). Names nobody.
#[utoipa::path(
    get,
    path = "/public/{tenant}/works.geojson",
    operation_id = "public_works_geojson",
    tag = "public",
    security(()),
    params(("tenant" = String, Path, description = "A tenant slug the hub publishes")),
    responses(
        (status = 200, description = "A GeoJSON FeatureCollection (RFC 7946); each Feature's properties: kind (dark_street, water_leak, planned_works), status (reported, accepted, in_work, done), since, expected_end (RFC 3339 or null), cause, district, street, count", content_type = "application/geo+json", body = Object),
        (status = 400, description = "A path that cannot be read (a NUL character), or a query parameter (there are none)", body = ErrorBody),
        (status = 404, description = "The tenant is not published, or is no tenant", body = ErrorBody),
        (status = 429, description = "Too many requests from this address", body = ErrorBody)
    )
)]
pub async fn works_geojson(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    tenant: Result<ApiPath<String>, ApiError>,
    query: Result<ApiQuery<NoParameters>, ApiError>,
) -> Response {
    respond(&state, address, tenant, query, Format::GeoJson).await
}

/// Tenant `tenant`'s planned works (maintenance windows not over) as an iCalendar feed,
/// one event each, for residents' calendars. No sign-in; only for a tenant the hub
/// publishes (`public.tenants`). Names nobody.
#[utoipa::path(
    get,
    path = "/public/{tenant}/works.ics",
    operation_id = "public_works_icalendar",
    tag = "public",
    security(()),
    params(("tenant" = String, Path, description = "A tenant slug the hub publishes")),
    responses(
        (status = 200, description = "An iCalendar (RFC 5545) VCALENDAR, one VEVENT per planned works", content_type = "text/calendar", body = String),
        (status = 400, description = "A path that cannot be read (a NUL character), or a query parameter (there are none)", body = ErrorBody),
        (status = 404, description = "The tenant is not published, or is no tenant", body = ErrorBody),
        (status = 429, description = "Too many requests from this address", body = ErrorBody)
    )
)]
pub async fn works_icalendar(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    tenant: Result<ApiPath<String>, ApiError>,
    query: Result<ApiQuery<NoParameters>, ApiError>,
) -> Response {
    respond(&state, address, tenant, query, Format::ICalendar).await
}

/// Tenant `tenant`'s status page for residents: what affects them now and the planned
/// works, on a map and in a list, from the feeds beside it. No sign-in; only for a tenant
/// the hub publishes (`public.tenants`). Any query parameters are ignored.
#[utoipa::path(
    get,
    path = "/public/{tenant}/",
    operation_id = "public_status_page",
    tag = "public",
    security(()),
    params(("tenant" = String, Path, description = "A tenant slug the hub publishes")),
    responses(
        (status = 200, description = "The status page", content_type = "text/html", body = String),
        (status = 400, description = "A path that cannot be read (a NUL character)", body = ErrorBody),
        (status = 404, description = "The tenant is not published, or is no tenant", body = ErrorBody),
        (status = 429, description = "Too many requests from this address", body = ErrorBody),
        (status = 503, description = "The page is not built", body = ErrorBody)
    )
)]
pub async fn status_page(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    tenant: Result<ApiPath<String>, ApiError>,
) -> Response {
    let known = async {
        let ApiPath(tenant) = tenant?;
        admit(&state, address, &tenant)?;
        // Published but no tenant (a misspelt setting): the page would only fail to load.
        match state.pool().reads().await?.public_tenant(&tenant).await? {
            Some(_) => Ok(()),
            None => Err(ApiError::not_found(UNKNOWN)),
        }
    };
    match known.await {
        Ok(()) => page(state.dashboard()).await,
        Err(e) => e.into_response(),
    }
}

/// The status page's address without its last slash: sent on to it, so that the page's
/// relative links (`works.geojson`, `map.geojson`) resolve under the tenant.
#[utoipa::path(
    get,
    path = "/public/{tenant}",
    operation_id = "public_status_page_moved",
    tag = "public",
    security(()),
    params(("tenant" = String, Path, description = "A tenant slug")),
    responses(
        (status = 308, description = "To `/public/{tenant}/`")
    )
)]
pub async fn status_page_moved(uri: Uri) -> Redirect {
    Redirect::permanent(&format!("{}/", uri.path()))
}

/// The streets and district outlines of the hub's base map (`dashboard.base_map`), which
/// the status page draws its items on: features with `layer` `district` or `street` only.
/// No sign-in; only for a tenant the hub publishes.
#[utoipa::path(
    get,
    path = "/public/{tenant}/map.geojson",
    operation_id = "public_base_map",
    tag = "public",
    security(()),
    params(("tenant" = String, Path, description = "A tenant slug the hub publishes")),
    responses(
        (status = 200, description = "A GeoJSON FeatureCollection of districts and streets", content_type = "application/geo+json", body = Object),
        (status = 400, description = "A path that cannot be read (a NUL character), or a query parameter (there are none)", body = ErrorBody),
        (status = 404, description = "The tenant is not published, or the hub has no base map", body = ErrorBody),
        (status = 429, description = "Too many requests from this address", body = ErrorBody)
    )
)]
pub async fn base_map(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    tenant: Result<ApiPath<String>, ApiError>,
    query: Result<ApiQuery<NoParameters>, ApiError>,
) -> Response {
    respond(&state, address, tenant, query, Format::BaseMap).await
}

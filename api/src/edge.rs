//! What every request passes before its handler sees it (one middleware, [`admit`]):
//!
//! - its body is read whole, at most [`crate::BODY_LIMIT`] bytes (413 past it), within
//!   the body timeout (408 past it), so a client that sends its body a byte at a time
//!   holds neither a handler nor a connection for long;
//! - no text in it may hold a NUL character (400): not the path (`%00`), not the query
//!   string, not a JSON string (`\u0000`), not a form field. PostgreSQL cannot store
//!   one in text, so every handler would otherwise fail on it after the fact; refused
//!   here, once, no handler needs to know.
//!
//! - a state-changing request that rides on the session cookie must come from this
//!   server's own pages (403 otherwise; [`refuse_cross_site`]);
//! - a request answered 403, here or by its handler, is tallied for the audit log
//!   ([`crate::refusals`]).
//!
//! Refusals are JSON sentences ([`ApiError`]), in the Open311 spec's format under
//! `/open311/`.

use std::time::Duration;

use axum::body::Body;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use http_body_util::BodyExt;

use crate::error::{ApiError, RefusedUser};
use crate::refusals::{Refused, Who};
use crate::AppState;

/// The middleware: reads the body and refuses NUL characters (see the module's
/// documentation), then hands the request on.
pub async fn admit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let route = format!(
        "{} {}",
        parts.method,
        parts
            .extensions
            .get::<MatchedPath>()
            .map_or("unmatched", |p| p.as_str())
    );
    let address = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let response = admit_inner(&state, parts, body, next).await;
    if response.status() == StatusCode::FORBIDDEN {
        let who = response
            .extensions()
            .get::<RefusedUser>()
            .map_or(Who::Unknown, |u| Who::User(&u.0));
        state
            .refusals()
            .note(Refused::Request, who, address, &route, false, Utc::now());
    }
    response
}

async fn admit_inner(
    state: &AppState,
    parts: axum::http::request::Parts,
    body: Body,
    next: Next,
) -> Response {
    let open311 = parts.uri.path().starts_with("/open311/");
    let refuse = |e: ApiError| {
        if open311 {
            crate::standards::open311::Open311Error::from(e).into_response()
        } else {
            e.into_response()
        }
    };
    if let Err(e) = refuse_nul_in_uri(&parts.uri) {
        return refuse(e);
    }
    if !open311 {
        if let Err(e) = refuse_cross_site(
            &parts.method,
            parts.uri.path(),
            &parts.headers,
            state.allowed_origins(),
        ) {
            return refuse(e);
        }
    }
    let body = match read_body(body, state.http_limits().body_timeout).await {
        Ok(bytes) => bytes,
        Err(e) => return refuse(e),
    };
    if let Some(arrival) = parts.extensions.get::<crate::server::BodyArrival>() {
        arrival.arrived();
    }
    if let Err(e) = refuse_nul_in_body(&parts.headers, &body) {
        return refuse(e);
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// A state-changing request that a browser sent from another site, riding on the session
/// cookie, is refused (403): the cookie is `SameSite=Strict`, which keeps it from being
/// sent cross-site, but not from a sibling origin of the same site, nor from every browser.
/// Applies to every method but GET, HEAD and OPTIONS, when the request carries the session
/// cookie and no `Authorization` header (a token is not sent by a browser on its own), and
/// to sign-in. A browser says where a request comes from: `Sec-Fetch-Site` must be
/// `same-origin` or `none` (typed or bookmarked), else `Origin` must be this server's own
/// (its `Host`) or one of `allowed` (`http.allowed_origins`, for a proxy that changes the
/// `Host`). A request with neither header does not come from a browser's page and passes.
fn refuse_cross_site(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    allowed: &[String],
) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let by_cookie = crate::caller::session_cookie(headers).is_some()
        && !headers.contains_key(header::AUTHORIZATION);
    if !(by_cookie || path == "/api/v1/login") {
        return Ok(());
    }
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        if site == "same-origin" || site == "none" {
            return Ok(());
        }
        return Err(ApiError::forbidden(format!(
            "a page of another site (Sec-Fetch-Site: {site}) may not make changes with this session; \
             use the dashboard, or an API token"
        )));
    }
    let Some(origin) = text(header::ORIGIN) else {
        return Ok(());
    };
    let own = text(header::HOST).is_some_and(|host| {
        origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host))
    });
    if own || allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "a page of another site (Origin {origin}) may not make changes with this session; \
         use the dashboard, or an API token"
    )))
}

/// The sentence every NUL refusal ends with.
const NO_NUL: &str = "a NUL character, which no text this API stores may contain";

/// A NUL in the path or the query string can only be written `%00`.
fn refuse_nul_in_uri(uri: &Uri) -> Result<(), ApiError> {
    let has_nul = |s: &str| s.as_bytes().windows(3).any(|w| w == b"%00");
    if has_nul(uri.path()) {
        return Err(ApiError::bad_request(format!(
            "the path holds {NO_NUL} (%00)"
        )));
    }
    if uri.query().is_some_and(has_nul) {
        return Err(ApiError::bad_request(format!(
            "the query string holds {NO_NUL} (%00)"
        )));
    }
    Ok(())
}

/// A NUL in a body: a `\u0000` escape in a JSON string, `%00` in a form, or the byte
/// itself in anything.
fn refuse_nul_in_body(headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let found = body.contains(&0)
        || (content_type.starts_with("application/json") && json_has_nul(body))
        || (content_type.starts_with("application/x-www-form-urlencoded")
            && body.windows(3).any(|w| w == b"%00"));
    if found {
        return Err(ApiError::bad_request(format!("the body holds {NO_NUL}")));
    }
    Ok(())
}

/// Whether a JSON text has a string with a `\u0000` escape (keys included). Escapes are
/// read as JSON reads them, so `\\u0000` (a backslash, then `u0000`) is not one; a text
/// that is not JSON is left for the extractor to refuse.
fn json_has_nul(json: &[u8]) -> bool {
    let mut in_string = false;
    let mut i = 0;
    while i < json.len() {
        match (in_string, json[i]) {
            (false, b'"') => in_string = true,
            (true, b'"') => in_string = false,
            (true, b'\\') => {
                if json.get(i + 1) == Some(&b'u') && json.get(i + 2..i + 6) == Some(b"0000") {
                    return true;
                }
                // Skip the escaped character (the hex digits of a \u escape cannot be a
                // quote or a backslash, so they need no care).
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    false
}

/// The whole body within `timeout`, at most [`crate::BODY_LIMIT`] bytes.
async fn read_body(body: Body, timeout: Duration) -> Result<bytes::Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, crate::BODY_LIMIT);
    match tokio::time::timeout(timeout, limited.collect()).await {
        Err(_) => Err(ApiError::with_status(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request's body did not arrive within {} s",
                timeout.as_secs()
            ),
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::with_status(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is larger than the {} KiB a request may carry",
                crate::BODY_LIMIT / 1024
            ),
        )),
        Ok(Err(e)) => Err(ApiError::bad_request(format!(
            "the body could not be read: {e}"
        ))),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_escapes_are_found_in_json_strings_only() {
        for (json, nul) in [
            (r#"{"username":"a\u0000b"}"#, true),
            (r#"{"a\u0000":1}"#, true),
            (r#"["x", "\u0000"]"#, true),
            (r#"{"text":"a\\u0000b"}"#, false),
            (r#"{"text":"\\\u0000"}"#, true),
            (r#"{"text":"\u00001"}"#, true),
            (r#"{"text":"\u0001"}"#, false),
            (r#"{"text":"quote \" then \u0000"}"#, true),
            (r#"{"n":0}"#, false),
        ] {
            assert_eq!(json_has_nul(json.as_bytes()), nul, "{json}");
        }
    }

    #[test]
    fn cookie_requests_from_other_sites_are_refused() {
        let check = |method: Method, path: &str, pairs: &[(&str, &str)], ok: bool| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.append(
                    header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            let allowed = ["https://hub.city.example".to_owned()];
            assert_eq!(
                refuse_cross_site(&method, path, &h, &allowed).is_ok(),
                ok,
                "{method} {path} {pairs:?}"
            );
        };
        let cookie = ("cookie", "cityhub_session=abc");
        let host = ("host", "127.0.0.1:8080");
        let ack = "/api/v1/outages/1/ack";
        check(
            Method::POST,
            ack,
            &[cookie, host, ("origin", "https://evil.example")],
            false,
        );
        check(
            Method::POST,
            ack,
            &[cookie, host, ("origin", "null")],
            false,
        );
        check(
            Method::POST,
            ack,
            &[cookie, host, ("sec-fetch-site", "cross-site")],
            false,
        );
        check(
            Method::POST,
            ack,
            &[cookie, host, ("sec-fetch-site", "same-site")],
            false,
        );
        check(
            Method::POST,
            ack,
            &[cookie, host, ("origin", "http://127.0.0.1:8080")],
            true,
        );
        check(
            Method::POST,
            ack,
            &[cookie, host, ("sec-fetch-site", "same-origin")],
            true,
        );
        check(
            Method::POST,
            ack,
            &[cookie, host, ("origin", "https://hub.city.example")],
            true,
        );
        check(Method::POST, ack, &[cookie, host], true);
        check(
            Method::GET,
            ack,
            &[cookie, host, ("origin", "https://evil.example")],
            true,
        );
        check(
            Method::POST,
            ack,
            &[
                cookie,
                host,
                ("authorization", "Bearer chk_x"),
                ("origin", "https://evil.example"),
            ],
            true,
        );
        check(
            Method::POST,
            ack,
            &[host, ("origin", "https://evil.example")],
            true,
        );
        check(
            Method::POST,
            "/api/v1/login",
            &[host, ("origin", "https://evil.example")],
            false,
        );
        check(
            Method::DELETE,
            "/api/v1/schedules/1",
            &[cookie, host, ("origin", "https://evil.example")],
            false,
        );
    }

    #[test]
    fn nul_in_the_path_or_query_is_refused() {
        for (uri, ok) in [
            ("/api/v1/users/a%00b/disable", false),
            ("/open311/v2/requests.json?jurisdiction_id=a%00", false),
            ("/api/v1/outages?cursor=abc", true),
            ("/api/v1/devices?district=a%2500", true),
        ] {
            let uri: Uri = uri.parse().unwrap();
            assert_eq!(refuse_nul_in_uri(&uri).is_ok(), ok, "{uri}");
        }
    }
}

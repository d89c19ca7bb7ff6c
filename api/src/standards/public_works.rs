//! What a tenant's residents may read without signing in, when the hub publishes that
//! tenant (`public.tenants`): its works now and to come (`store::public_works`), as
//! GeoJSON (RFC 7946), `GET /public/{tenant}/works.geojson`, and its planned works as an
//! iCalendar feed (RFC 5545), `GET /public/{tenant}/works.ics`.
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
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use geojson::{Feature, FeatureCollection, Geometry, JsonObject, Value};
use icalendar::{Calendar, Component, EventLike};
use serde::Deserialize;
use store::public_works::{PublicKind, PublicWork};

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
}

/// The tenants published, their answers of the last [`FRESH_FOR`], and each address's rate.
pub struct PublicPages {
    tenants: std::sync::RwLock<Vec<String>>,
    answers: tokio::sync::Mutex<HashMap<(String, Format), (Instant, Bytes)>>,
    rates: RateLimiter<IpAddr>,
}

impl Default for PublicPages {
    fn default() -> PublicPages {
        PublicPages {
            tenants: std::sync::RwLock::default(),
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

    fn published(&self, tenant: &str) -> bool {
        self.tenants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|t| t == tenant)
    }

    fn admit(&self, address: Option<IpAddr>) -> Result<(), ApiError> {
        let keys: Vec<IpAddr> = address.into_iter().collect();
        self.rates.take(&keys, Instant::now()).map_err(|wait| {
            ApiError::too_many("too many requests from this address; try again later", wait)
        })
    }
}

/// The answer in `format` for `tenant`: shared while fresh, else built anew.
async fn answer(
    state: &AppState,
    address: Option<IpAddr>,
    tenant: String,
    format: Format,
) -> Result<Response, ApiError> {
    let pages = state.public_pages();
    pages.admit(address)?;
    let unknown = || ApiError::not_found("this tenant has no public page");
    if !pages.published(&tenant) {
        return Err(unknown());
    }
    // One build at a time: a crowd arriving as an answer goes stale waits for the one
    // build rather than each asking the database.
    let mut answers = pages.answers.lock().await;
    let key = (tenant, format);
    let body = match answers.get(&key) {
        Some((at, body)) if at.elapsed() < FRESH_FOR => body.clone(),
        _ => {
            let reads = state.pool().reads().await?;
            let tenant_id = reads.tenant_id(&key.0).await?.ok_or_else(unknown)?;
            let now = state.now().to_datetime();
            let works = reads.public_works(tenant_id, now).await?;
            let body = Bytes::from(match format {
                Format::GeoJson => geojson(&key.0, &works, now),
                Format::ICalendar => icalendar(&key.0, &works, now),
            });
            answers.insert(key.clone(), (Instant::now(), body.clone()));
            body
        }
    };
    let content_type = match format {
        Format::GeoJson => "application/geo+json",
        Format::ICalendar => "text/calendar; charset=utf-8",
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CACHE_CONTROL,
                format!("public, max-age={}", FRESH_FOR.as_secs()),
            ),
        ],
        body,
    )
        .into_response())
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
pub fn geojson(tenant: &str, works: &[PublicWork], now: DateTime<Utc>) -> String {
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
            Feature {
                bbox: None,
                geometry: w
                    .at
                    .map(|(lon, lat)| Geometry::new(Value::Point(vec![lon, lat]))),
                id: None,
                properties: Some(p),
                foreign_members: None,
            }
        })
        .collect();
    let mut about = JsonObject::new();
    about.insert("tenant".into(), tenant.into());
    about.insert("generated_at".into(), rfc3339(now).into());
    FeatureCollection {
        bbox: None,
        features,
        foreign_members: Some(about),
    }
    .to_string()
}

/// A calendar of the planned works, one event each.
pub fn icalendar(tenant: &str, works: &[PublicWork], now: DateTime<Utc>) -> String {
    let mut calendar = Calendar::new();
    calendar.name(&format!("{tenant}: planned works"));
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

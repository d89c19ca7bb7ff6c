//! Open311 GeoReport v2 (JSON), under `/open311/v2/`: citizens' reports in, the status of
//! the work they started out. See docs/api.md ("Open311") for the decisions.
//!
//! `jurisdiction_id` is a tenant's slug. Services are the problems a citizen can see
//! ([`SERVICES`]), each tied to a kind of device and the outage kinds that are that
//! problem. A report finds the nearest such device within [`REACH_M`]; if the device
//! already has an outage that is this problem, the report joins it and its work order;
//! otherwise it joins or opens an `inspection` work order for that device. Its status is
//! its work order's: closed once the repair is verified by telemetry (or closed).
//!
//! Reading services and requests is public, as the spec has it; posting needs an API
//! token (`api_key`, or `Authorization: Bearer`) of a user of that jurisdiction. Errors are
//! the spec's: `[{"code": <status>, "description": "<sentence>"}]`.

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use model::{Kind, OutageKind, WorkOrderState};
use serde::{Deserialize, Serialize};
use serde_json::json;
use store::service_requests::{NewServiceRequest, ServiceRequestQuery, ServiceRequestRow};
use utoipa::{IntoParams, ToSchema};

use crate::auth::api_token_digest;
use crate::extract::{ApiPath, ClientAddress};
use crate::AppState;

/// How far from the place reported the device may be, in metres.
pub const REACH_M: f64 = 50.0;

/// Hours an inspection is given.
pub const INSPECTION_HOURS: i32 = 72;

/// The most requests one list answers.
const MAX_REQUESTS: i64 = 1000;

/// Without `start_date`, requests of the last this many days are listed (the spec's
/// default is 90 days).
const DEFAULT_DAYS: i64 = 90;

/// A problem citizens can report.
#[derive(Debug, Clone, Copy)]
pub struct Service {
    pub code: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub group: &'static str,
    pub keywords: &'static str,
    /// The kind of device it concerns.
    pub device_kind: Kind,
    /// For meters: the medium, when it matters.
    pub medium: Option<&'static str>,
    /// Outage kinds on the device that are this problem.
    pub outage_kinds: &'static [OutageKind],
    /// Outage kinds on a lamp's cabinet that are this problem.
    pub cabinet_outage_kinds: &'static [OutageKind],
    /// The team that inspects when nothing is known (the default work-order policy's).
    pub team: &'static str,
}

/// The services, as `services.json` lists them.
pub const SERVICES: [Service; 6] = [
    Service {
        code: "streetlight_out",
        name: "Street light out",
        description: "A street light is dark at night.",
        group: "Street lighting",
        keywords: "lamp,light,dark",
        device_kind: Kind::Light,
        medium: None,
        outage_kinds: &[
            OutageKind::LampFailure,
            OutageKind::DeviceOffline,
            OutageKind::VoltageOutOfRange,
        ],
        cabinet_outage_kinds: &[OutageKind::CabinetSupplyLoss],
        team: "lighting-crew",
    },
    Service {
        code: "light_on_during_day",
        name: "Light on during the day",
        description: "A street light burns in daylight.",
        group: "Street lighting",
        keywords: "lamp,light,day,burning",
        device_kind: Kind::Light,
        medium: None,
        outage_kinds: &[OutageKind::DayBurner],
        cabinet_outage_kinds: &[],
        team: "lighting-crew",
    },
    Service {
        code: "flickering_light",
        name: "Flickering light",
        description: "A street light flickers or keeps switching on and off.",
        group: "Street lighting",
        keywords: "lamp,light,flicker,cycling",
        device_kind: Kind::Light,
        medium: None,
        outage_kinds: &[OutageKind::LampCycling, OutageKind::VoltageOutOfRange],
        cabinet_outage_kinds: &[],
        team: "lighting-crew",
    },
    Service {
        code: "damaged_light_cabinet",
        name: "Damaged or open lighting cabinet",
        description: "A street lighting cabinet is damaged or its door is open.",
        group: "Street lighting",
        keywords: "cabinet,door,damage",
        device_kind: Kind::Cabinet,
        medium: None,
        outage_kinds: &[OutageKind::CabinetSupplyLoss],
        cabinet_outage_kinds: &[],
        team: "power-crew",
    },
    Service {
        code: "water_leak",
        name: "Water leak",
        description: "Water running from the ground, a pipe or a meter box.",
        group: "Water",
        keywords: "water,leak,pipe",
        device_kind: Kind::Meter,
        medium: Some("water"),
        outage_kinds: &[OutageKind::Leak, OutageKind::ReverseFlow],
        cabinet_outage_kinds: &[],
        team: "metering",
    },
    Service {
        code: "damaged_meter",
        name: "Damaged meter",
        description: "A utility meter (water, electricity, heat) is damaged or tampered with.",
        group: "Meters",
        keywords: "meter,damage,tamper",
        device_kind: Kind::Meter,
        medium: None,
        outage_kinds: &[
            OutageKind::Tamper,
            OutageKind::ReverseFlow,
            OutageKind::MeterSilent,
        ],
        cabinet_outage_kinds: &[],
        team: "metering",
    },
];

fn service(code: &str) -> Option<&'static Service> {
    SERVICES.iter().find(|s| s.code == code)
}

/// An error as the spec answers them: a list of `{code, description}`.
#[derive(Debug)]
pub struct Open311Error {
    status: StatusCode,
    description: String,
    retry_after: Option<std::time::Duration>,
}

/// One error of the spec's list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Open311ErrorItem {
    /// The HTTP status.
    pub code: u16,
    pub description: String,
}

impl Open311Error {
    fn new(status: StatusCode, description: impl Into<String>) -> Open311Error {
        Open311Error {
            status,
            description: description.into(),
            retry_after: None,
        }
    }
    fn bad(description: impl Into<String>) -> Open311Error {
        Open311Error::new(StatusCode::BAD_REQUEST, description)
    }
    fn forbidden(description: impl Into<String>) -> Open311Error {
        Open311Error::new(StatusCode::FORBIDDEN, description)
    }
    fn not_found(description: impl Into<String>) -> Open311Error {
        Open311Error::new(StatusCode::NOT_FOUND, description)
    }
}

impl From<crate::ApiError> for Open311Error {
    fn from(e: crate::ApiError) -> Open311Error {
        Open311Error {
            retry_after: e.retry_after(),
            ..Open311Error::new(e.status(), e.message())
        }
    }
}

impl From<store::StoreError> for Open311Error {
    fn from(e: store::StoreError) -> Open311Error {
        crate::ApiError::from(e).into()
    }
}

impl IntoResponse for Open311Error {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(vec![Open311ErrorItem {
                code: self.status.as_u16(),
                description: self.description,
            }]),
        )
            .into_response();
        if let Some(after) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, crate::error::retry_after_value(after));
        }
        response
    }
}

/// What a new request is counted by: the key it names and the address it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PostKey {
    /// The SHA-256 of the api_key sent (valid or not).
    Key(Vec<u8>),
    Address(std::net::IpAddr),
}

/// How many reports may be posted per api_key and per client address.
#[derive(Debug, Clone)]
pub struct Open311Limits {
    pub per_key: u32,
    pub per_address: u32,
    /// The period those numbers are per (a minute in production).
    pub window: std::time::Duration,
}

impl Default for Open311Limits {
    fn default() -> Self {
        Open311Limits {
            per_key: 30,
            per_address: 30,
            window: std::time::Duration::from_secs(60),
        }
    }
}

/// The rates of new requests: one limiter per kind of key, each with its own number.
pub struct PostRates {
    by_key: crate::limiter::RateLimiter<PostKey>,
    by_address: crate::limiter::RateLimiter<PostKey>,
}

impl PostRates {
    pub fn new(limits: &Open311Limits) -> PostRates {
        PostRates {
            by_key: crate::limiter::RateLimiter::new(limits.per_key, limits.window),
            by_address: crate::limiter::RateLimiter::new(limits.per_address, limits.window),
        }
    }

    /// Counts a new request by `key` from `address`, or refuses it (429 with when to
    /// try again). Checked before anything else, so a flood costs no database work.
    fn take(
        &self,
        key: Option<&str>,
        address: Option<std::net::IpAddr>,
    ) -> Result<(), Open311Error> {
        let now = std::time::Instant::now();
        let refused = |wait| Open311Error {
            retry_after: Some(wait),
            ..Open311Error::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests posted with this api_key or from this address; try again later",
            )
        };
        // Both are checked before either is counted: a refusal takes nothing.
        let by_address: Vec<PostKey> = address.map(PostKey::Address).into_iter().collect();
        let by_key: Vec<PostKey> = key
            .map(|k| PostKey::Key(api_token_digest(k)))
            .into_iter()
            .collect();
        self.by_address.check(&by_address, now).map_err(refused)?;
        self.by_key.check(&by_key, now).map_err(refused)?;
        self.by_address.take(&by_address, now).map_err(refused)?;
        self.by_key.take(&by_key, now).map_err(refused)?;
        Ok(())
    }
}

/// A query string; what cannot be read is answered in the spec's error format.
pub struct Open311Query<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S>
    for Open311Query<T>
{
    type Rejection = Open311Error;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Open311Query(v))
            .map_err(|e| Open311Error::from(crate::ApiError::from_query(e)))
    }
}

/// A service as `services.json` lists it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceItem {
    pub service_code: &'static str,
    pub service_name: &'static str,
    pub description: &'static str,
    /// No extra attributes are asked for.
    pub metadata: bool,
    /// `realtime`: a request gets its id at once.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub keywords: &'static str,
    pub group: &'static str,
}

/// The jurisdiction asked for.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Jurisdiction {
    /// A tenant's slug.
    pub jurisdiction_id: Option<String>,
}

/// The tenant a jurisdiction names, if it exists.
async fn tenant(state: &AppState, slug: &str) -> Result<i32, Open311Error> {
    let db = state.pool().reads().await?;
    db.tenant_id(slug)
        .await?
        .ok_or_else(|| Open311Error::not_found(format!("there is no jurisdiction `{slug}`")))
}

async fn required_tenant(state: &AppState, slug: Option<&str>) -> Result<i32, Open311Error> {
    match slug {
        Some(slug) if !slug.is_empty() => tenant(state, slug).await,
        _ => Err(Open311Error::bad(
            "jurisdiction_id is required: name the municipality (its tenant slug)",
        )),
    }
}

/// The problems citizens can report (the same in every jurisdiction).
#[utoipa::path(
    get,
    path = "/open311/v2/services.json",
    operation_id = "open311_services",
    tag = "open311",
    security(()),
    params(Jurisdiction),
    responses(
        (status = 200, description = "The services", body = Vec<ServiceItem>),
        (status = 404, description = "No such jurisdiction", body = Vec<Open311ErrorItem>)
    )
)]
pub async fn services(
    State(state): State<AppState>,
    Open311Query(j): Open311Query<Jurisdiction>,
) -> Result<Json<Vec<ServiceItem>>, Open311Error> {
    if let Some(slug) = j.jurisdiction_id.as_deref().filter(|s| !s.is_empty()) {
        tenant(&state, slug).await?;
    }
    Ok(Json(
        SERVICES
            .iter()
            .map(|s| ServiceItem {
                service_code: s.code,
                service_name: s.name,
                description: s.description,
                metadata: false,
                kind: "realtime",
                keywords: s.keywords,
                group: s.group,
            })
            .collect(),
    ))
}

/// Paths routed with the `.json` suffix inside their last capture, and the paths the
/// OpenAPI document gives for them (the suffix after the capture, as clients call them).
pub const SUFFIXED_PATHS: [(&str, &str); 2] = [
    (
        "/open311/v2/services/{service_code}",
        "/open311/v2/services/{service_code}.json",
    ),
    (
        "/open311/v2/requests/{service_request_id}",
        "/open311/v2/requests/{service_request_id}.json",
    ),
];

/// A service's definition: no attributes beyond the standard fields.
#[utoipa::path(
    get,
    path = "/open311/v2/services/{service_code}",
    operation_id = "open311_service_definition",
    tag = "open311",
    security(()),
    params(("service_code" = String, Path, description = "A service code (the path ends with `.json` after it)")),
    responses(
        (status = 200, description = "The definition", body = Object),
        (status = 404, description = "No such service", body = Vec<Open311ErrorItem>)
    )
)]
pub async fn service_definition(
    ApiPath(file): ApiPath<String>,
) -> Result<Json<serde_json::Value>, Open311Error> {
    let code = json_file(&file)?;
    let s = service(code).ok_or_else(|| unknown_service(code))?;
    Ok(Json(json!({"service_code": s.code, "attributes": []})))
}

/// `{name}.json` -> `name`.
fn json_file(file: &str) -> Result<&str, Open311Error> {
    file.strip_suffix(".json").ok_or_else(|| {
        Open311Error::not_found(format!(
            "`{file}` is not served: this endpoint answers JSON (`.json`) only"
        ))
    })
}

fn unknown_service(code: &str) -> Open311Error {
    Open311Error::not_found(format!(
        "there is no service `{code}`; services.json lists them"
    ))
}

/// A request as the spec shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestItem {
    pub service_request_id: String,
    /// open or closed.
    pub status: &'static str,
    pub status_notes: String,
    pub service_name: &'static str,
    pub service_code: String,
    pub description: Option<String>,
    /// The team working on it.
    pub agency_responsible: String,
    pub service_notice: Option<String>,
    pub requested_datetime: String,
    pub updated_datetime: String,
    /// When the work is due.
    pub expected_datetime: Option<String>,
    pub address: Option<String>,
    pub address_id: Option<String>,
    pub zipcode: Option<String>,
    pub lat: f64,
    pub long: f64,
    pub media_url: Option<String>,
}

/// What the public is told about a work order's state.
fn status_of(state: WorkOrderState) -> (&'static str, &'static str) {
    use WorkOrderState::*;
    match state {
        New => ("open", "Received; the repair is being planned."),
        Assigned => ("open", "A crew has been assigned."),
        InProgress => ("open", "A crew is working on it."),
        Done => (
            "open",
            "The crew reports it repaired; waiting for the equipment to confirm it.",
        ),
        Reopened => ("open", "The problem came back; a crew will return."),
        Verified | Closed => ("closed", "Repaired, and confirmed by the equipment."),
    }
}

/// Where residents follow the works of jurisdiction `slug`, when the hub publishes it:
/// its status page and the open data under it (paths on this hub).
fn follow_works(state: &AppState, slug: &str) -> Option<String> {
    state.public_pages().published(slug).then(|| {
        format!(
            "Follow the repair, and the city's other works, on /public/{slug}/ \
             (open data: /public/{slug}/works.geojson)."
        )
    })
}

/// `follow`: where to follow the works, for a request still open.
fn request_item(r: ServiceRequestRow, follow: Option<&str>) -> RequestItem {
    let (status, notes) = status_of(r.work_order_state);
    RequestItem {
        service_request_id: r.id.to_string(),
        status,
        status_notes: notes.to_owned(),
        service_name: service(&r.service_code).map_or("", |s| s.name),
        service_code: r.service_code,
        description: r.description,
        agency_responsible: r.team,
        service_notice: follow.filter(|_| status == "open").map(str::to_owned),
        requested_datetime: crate::live::rfc3339(r.requested_at),
        updated_datetime: crate::live::rfc3339(r.updated_at),
        expected_datetime: (status == "open").then(|| crate::live::rfc3339(r.due_at)),
        address: r.address,
        address_id: None,
        zipcode: None,
        lat: r.lat,
        long: r.lon,
        media_url: r.media_url,
    }
}

/// Filters of the request list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequestFilter {
    /// A tenant's slug (required).
    pub jurisdiction_id: Option<String>,
    /// Comma-separated request ids; the other filters are then ignored (as the spec says).
    pub service_request_id: Option<String>,
    pub service_code: Option<String>,
    /// Requested at or after (W3C / RFC 3339); default 90 days before `end_date` or now.
    pub start_date: Option<String>,
    /// Requested before (RFC 3339).
    pub end_date: Option<String>,
    /// open or closed (comma-separated for both).
    pub status: Option<String>,
}

/// Requests of a jurisdiction, newest first (at most 1000).
#[utoipa::path(
    get,
    path = "/open311/v2/requests.json",
    operation_id = "open311_requests",
    tag = "open311",
    security(()),
    params(RequestFilter),
    responses(
        (status = 200, description = "The requests", body = Vec<RequestItem>),
        (status = 400, description = "A filter is not valid, or no jurisdiction_id", body = Vec<Open311ErrorItem>),
        (status = 404, description = "No such jurisdiction", body = Vec<Open311ErrorItem>)
    )
)]
pub async fn requests(
    State(state): State<AppState>,
    Open311Query(f): Open311Query<RequestFilter>,
) -> Result<Json<Vec<RequestItem>>, Open311Error> {
    let tenant_id = required_tenant(&state, f.jurisdiction_id.as_deref()).await?;
    let ids: Option<Vec<i64>> = f
        .service_request_id
        .as_deref()
        .map(|list| {
            list.split(',')
                .map(|id| {
                    id.trim().parse::<i64>().map_err(|_| {
                        Open311Error::bad(format!(
                            "service_request_id must be a comma-separated list of numbers, not `{list}`"
                        ))
                    })
                })
                .collect()
        })
        .transpose()?;
    let time = |name: &str, v: Option<&str>| {
        crate::params::time(name, v).map_err(|e| Open311Error::bad(e.message()))
    };
    let mut query = ServiceRequestQuery {
        tenant_id,
        limit: MAX_REQUESTS,
        ..Default::default()
    };
    if ids.is_none() {
        let to = time("end_date", f.end_date.as_deref())?;
        let from = time("start_date", f.start_date.as_deref())?.unwrap_or_else(|| {
            to.unwrap_or_else(|| state.now().to_datetime()) - chrono::Duration::days(DEFAULT_DAYS)
        });
        if let Some(to) = to {
            crate::params::range(from, to).map_err(|e| Open311Error::bad(e.message()))?;
        }
        query.from = Some(from);
        query.to = to;
        query.service_code = f.service_code.as_deref();
        query.closed = match f.status.as_deref() {
            None | Some("") => None,
            Some(s) => {
                let parts: Vec<&str> = s.split(',').map(str::trim).collect();
                if parts.iter().any(|p| !matches!(*p, "open" | "closed")) {
                    return Err(Open311Error::bad(format!(
                        "status must be open or closed, not `{s}`"
                    )));
                }
                match (parts.contains(&"open"), parts.contains(&"closed")) {
                    (true, true) => None,
                    (false, true) => Some(true),
                    _ => Some(false),
                }
            }
        };
    }
    query.ids = ids.as_deref();
    let rows = state.pool().reads().await?.service_requests(&query).await?;
    let follow = follow_works(&state, f.jurisdiction_id.as_deref().unwrap_or_default());
    Ok(Json(
        rows.into_iter()
            .map(|r| request_item(r, follow.as_deref()))
            .collect(),
    ))
}

/// One request of a jurisdiction (a list of one, as the spec has it).
#[utoipa::path(
    get,
    path = "/open311/v2/requests/{service_request_id}",
    operation_id = "open311_request",
    tag = "open311",
    security(()),
    params(("service_request_id" = String, Path, description = "A request id (the path ends with `.json` after it)"), Jurisdiction),
    responses(
        (status = 200, description = "The request", body = Vec<RequestItem>),
        (status = 400, description = "No jurisdiction_id", body = Vec<Open311ErrorItem>),
        (status = 404, description = "No such request in this jurisdiction", body = Vec<Open311ErrorItem>)
    )
)]
pub async fn request(
    State(state): State<AppState>,
    ApiPath(file): ApiPath<String>,
    Open311Query(j): Open311Query<Jurisdiction>,
) -> Result<Json<Vec<RequestItem>>, Open311Error> {
    let id_text = json_file(&file)?;
    let tenant_id = required_tenant(&state, j.jurisdiction_id.as_deref()).await?;
    let missing = || Open311Error::not_found(format!("there is no service request `{id_text}`"));
    let id: i64 = id_text.parse().map_err(|_| missing())?;
    let ids = [id];
    let query = ServiceRequestQuery {
        tenant_id,
        ids: Some(&ids),
        limit: 1,
        ..Default::default()
    };
    let rows = state.pool().reads().await?.service_requests(&query).await?;
    if rows.is_empty() {
        return Err(missing());
    }
    let follow = follow_works(&state, j.jurisdiction_id.as_deref().unwrap_or_default());
    Ok(Json(
        rows.into_iter()
            .map(|r| request_item(r, follow.as_deref()))
            .collect(),
    ))
}

/// A new request (form-encoded, as the spec has it). Personal fields (`email`,
/// `first_name`, `last_name`, `phone`, `device_id`, `account_id`) are accepted and not kept.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewRequest {
    pub jurisdiction_id: Option<String>,
    pub service_code: Option<String>,
    pub lat: Option<String>,
    pub long: Option<String>,
    pub address_string: Option<String>,
    pub description: Option<String>,
    pub media_url: Option<String>,
    /// An API token of a user of the jurisdiction (or send `Authorization: Bearer`).
    pub api_key: Option<String>,
}

/// The answer to a new request.
#[derive(Debug, Serialize, ToSchema)]
pub struct Created {
    pub service_request_id: String,
    pub service_notice: String,
    pub account_id: Option<String>,
}

/// A citizen's report: linked to a known outage of the nearest device, or opening an
/// inspection of it.
#[utoipa::path(
    post,
    path = "/open311/v2/requests.json",
    operation_id = "open311_create_request",
    tag = "open311",
    security(()),
    request_body(content = NewRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 201, description = "Recorded", body = Vec<Created>),
        (status = 400, description = "A field is missing or wrong, or no device of the service's kind is near", body = Vec<Open311ErrorItem>),
        (status = 403, description = "No api_key, an unknown one, or one of another jurisdiction", body = Vec<Open311ErrorItem>),
        (status = 404, description = "No such jurisdiction or service", body = Vec<Open311ErrorItem>),
        (status = 429, description = "Too many requests posted with this api_key or from this address; see Retry-After", body = Vec<Open311ErrorItem>)
    )
)]
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    ClientAddress(address): ClientAddress,
    form: Result<Form<NewRequest>, FormRejection>,
) -> Result<Response, Open311Error> {
    let Form(r) = form.map_err(|e| {
        Open311Error::bad(format!(
            "send the fields form-encoded (application/x-www-form-urlencoded): {}",
            e.body_text()
        ))
    })?;
    // Who posts, and whether they may report here.
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let key = r.api_key.as_deref().or(bearer).filter(|k| !k.is_empty());
    state.open311_rates().take(key, address)?;
    let slug = r.jurisdiction_id.as_deref().unwrap_or("");
    let tenant_id = required_tenant(&state, Some(slug)).await?;
    let key =
        key.ok_or_else(|| Open311Error::forbidden("api_key is required to post a request"))?;
    let found = state
        .pool()
        .access()
        .await?
        .token_user(&api_token_digest(key))
        .await?;
    let (user, token_name) = found.ok_or_else(|| {
        Open311Error::forbidden(
            "this api_key is not valid: it is unknown, was revoked, or its user is disabled",
        )
    })?;
    if !user.tenants.iter().any(|t| t.id == tenant_id) {
        return Err(Open311Error::forbidden(format!(
            "this api_key may not post requests in jurisdiction `{slug}`"
        )));
    }
    let code = r
        .service_code
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| Open311Error::bad("service_code is required; services.json lists them"))?;
    let svc = service(code).ok_or_else(|| unknown_service(code))?;
    let lat = coordinate("lat", r.lat.as_deref(), 90.0)?;
    let lon = coordinate("long", r.long.as_deref(), 180.0)?;
    let media = r
        .media_url
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(media_url)
        .transpose()?;
    for (name, value) in [
        ("address_string", &r.address_string),
        ("description", &r.description),
        ("media_url", &r.media_url),
    ] {
        if let Some(v) = value {
            crate::params::text(name, v).map_err(|e| Open311Error::bad(e.message()))?;
        }
    }
    let actor = format!("{} (token {token_name})", user.username);
    let recorded = state
        .pool()
        .actions()
        .await?
        .record_service_request(&NewServiceRequest {
            tenant_id,
            service_code: svc.code,
            lat,
            lon,
            address: r.address_string.as_deref().filter(|s| !s.is_empty()),
            description: r.description.as_deref().filter(|s| !s.is_empty()),
            media_url: media.as_deref(),
            device_kind: svc.device_kind,
            medium: svc.medium,
            outage_kinds: svc.outage_kinds,
            cabinet_outage_kinds: svc.cabinet_outage_kinds,
            radius_m: REACH_M,
            team: svc.team,
            inspection_hours: INSPECTION_HOURS,
            at: state.now().to_datetime(),
            actor: &actor,
        })
        .await?
        .ok_or_else(|| {
            Open311Error::bad(format!(
                "there is no {} of ours within {REACH_M} m of {lat}, {lon}; check the place",
                match svc.device_kind {
                    Kind::Light => "street light",
                    Kind::Cabinet => "lighting cabinet",
                    Kind::Meter => "meter",
                    Kind::Vehicle => "vehicle",
                }
            ))
        })?;
    let mut notice = match (recorded.outage_id, recorded.joined) {
        (Some(_), _) => "The problem was already known; a repair is under way.",
        (None, true) => "The place is already being inspected.",
        (None, false) => "An inspection has been ordered.",
    }
    .to_owned();
    if let Some(follow) = follow_works(&state, slug) {
        notice = format!("{notice} {follow}");
    }
    Ok((
        StatusCode::CREATED,
        Json(vec![Created {
            service_request_id: recorded.id.to_string(),
            service_notice: notice,
            account_id: None,
        }]),
    )
        .into_response())
}

/// The longest `media_url` taken, in bytes (what browsers and servers reliably pass).
const MAX_MEDIA_URL: usize = 2000;

/// A `media_url` is a public web address: `http://` or `https://`, a host name or a
/// public IP address, no user name or password, at most [`MAX_MEDIA_URL`] bytes. It is
/// shown to everyone who reads the request and opened by the operators who handle it, so
/// another scheme (`javascript:`, `data:`, `file:`) never gets in, nor a link into the
/// machine or the network of whoever opens it (`localhost`, `127.0.0.1` however written,
/// `10.x`, `[::1]`), nor credentials that make an address look like another
/// (`https://city.example@evil`). The host is read as a browser reads it (WHATWG URL:
/// `127.1`, `0x7f.0.0.1` and `0177.0.0.1` are all 127.0.0.1); names are not resolved.
///
/// What is kept is the address as a browser would open it, written out in full, not as
/// sent: `http:example.org` becomes `http://example.org/` (as sent, a page would take it
/// for a link on its own site), a host in another script its ASCII form
/// (`xn--...`, so a look-alike of a known name shows as what it is), and characters that
/// turn text around or are not ASCII are percent-encoded.
fn media_url(value: &str) -> Result<String, Open311Error> {
    let refuse = || {
        Open311Error::bad(format!(
            "media_url must be a public http:// or https:// address (a host name or a public IP, \
             no user name or password) of at most {MAX_MEDIA_URL} bytes"
        ))
    };
    if value.len() > MAX_MEDIA_URL {
        return Err(refuse());
    }
    let url = url::Url::parse(value).map_err(|_| refuse())?;
    let web = matches!(url.scheme(), "http" | "https");
    let credentials = !url.username().is_empty() || url.password().is_some();
    let public = match url.host() {
        Some(url::Host::Domain(name)) => public_name(name),
        Some(url::Host::Ipv4(ip)) => public_v4(ip),
        Some(url::Host::Ipv6(ip)) => public_v6(ip),
        None => false,
    };
    let written = url.to_string();
    if web && !credentials && public && written.len() <= MAX_MEDIA_URL {
        Ok(written)
    } else {
        Err(refuse())
    }
}

/// A host name that can name something on the public internet: not `localhost`, and with
/// a dot (a single label resolves on the local network, if at all).
fn public_name(name: &str) -> bool {
    let name = name.trim_end_matches('.');
    name != "localhost" && !name.ends_with(".localhost") && name.contains('.')
}

/// Not loopback, private, shared (100.64/10), link-local, documentation, benchmarking,
/// multicast, reserved, broadcast or "this network".
fn public_v4(ip: std::net::Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (18..20).contains(&b)))
}

/// Not loopback, unspecified, unique-local, link-local, multicast or documentation, and
/// any IPv4 address it carries (mapped, compatible, NAT64, 6to4) public too.
fn public_v6(ip: std::net::Ipv6Addr) -> bool {
    let s = ip.segments();
    let carried =
        |hi: u16, lo: u16| std::net::Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    let embedded = if s[..5] == [0; 5] && (s[5] == 0 || s[5] == 0xffff) {
        // IPv4-compatible (::a.b.c.d) and IPv4-mapped (::ffff:a.b.c.d).
        Some(carried(s[6], s[7]))
    } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        Some(carried(s[6], s[7]))
    } else if s[0] == 0x2002 {
        Some(carried(s[1], s[2]))
    } else {
        None
    };
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        || embedded.is_some_and(|v4| !public_v4(v4)))
}

/// A latitude or longitude in degrees, within ±`bound`.
fn coordinate(name: &str, value: Option<&str>, bound: f64) -> Result<f64, Open311Error> {
    let value = value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Open311Error::bad(format!("{name} is required (WGS 84 degrees)")))?;
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && v.abs() <= bound)
        .ok_or_else(|| {
            Open311Error::bad(format!(
                "{name} must be a number of degrees between -{bound} and {bound}, not `{value}`"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_media_url_is_a_web_address() {
        for (good, kept) in [
            (
                "https://photos.example.org/lamp.jpg",
                "https://photos.example.org/lamp.jpg",
            ),
            (
                "http://203.0.114.1:8080/a?b=c",
                "http://203.0.114.1:8080/a?b=c",
            ),
            (
                "https://[2002:cb00:7201::]/6to4-of-a-public-address",
                "https://[2002:cb00:7201::]/6to4-of-a-public-address",
            ),
            ("HTTPS://Example.org/x", "https://example.org/x"),
            (
                "https://[2001:4860:4860::8888]/a",
                "https://[2001:4860:4860::8888]/a",
            ),
            // Written out as a browser opens it, never as a link on the reader's page.
            ("http:example.com", "http://example.com/"),
            ("http:/example.com/x", "http://example.com/x"),
            // A look-alike host in its ASCII form; text-turning characters encoded.
            ("http://ex\u{0430}mple.com/", "http://xn--exmple-4nf.com/"),
            (
                "https://example.org/\u{202e}gpj.exe",
                "https://example.org/%E2%80%AEgpj.exe",
            ),
            (
                "https://example.org/a?\u{202e}=1#\u{202e}",
                "https://example.org/a?%E2%80%AE=1#%E2%80%AE",
            ),
        ] {
            assert_eq!(media_url(good).ok().as_deref(), Some(kept), "{good}");
        }
        let long = format!("https://example.org/{}", "a".repeat(MAX_MEDIA_URL));
        for bad in [
            "javascript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "file:///etc/passwd",
            "ftp://example.org/x",
            "//example.org/x",
            "https://",
            "https://exa mple.org/",
            "photo.jpg",
            "https://user:pw@evil.example/x",
            "https://city.example@evil.example/x",
            "http://127.0.0.1:5432/",
            "http://localhost/x",
            "http://printer/x",
            "http://10.1.2.3/x",
            "http://192.168.0.1/x",
            "http://169.254.169.254/latest/meta-data",
            "http://192.0.2.1/x",
            "https://[::1]/",
            "https://[fd00::1]/",
            "https://[::ffff:127.0.0.1]/",
            "http://0.0.0.0/",
            "http://127.1/",
            "http://0177.0.0.1/",
            "http://0x7f.0.0.1/",
            "http://2130706433/",
            "https://[::127.0.0.1]/",
            "https://[64:ff9b::7f00:1]/",
            "https://[2002:7f00:1::]/",
            "https://[2001:db8::1]/",
            "http://198.18.0.1/",
            "http://224.0.0.1/",
            "http://240.0.0.1/",
            "http://LOCALHOST./x",
            long.as_str(),
        ] {
            let e = media_url(bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn coordinates_are_checked() {
        assert_eq!(coordinate("lat", Some("38.7"), 90.0).unwrap(), 38.7);
        for bad in [None, Some(""), Some("north"), Some("91"), Some("NaN")] {
            let e = coordinate("lat", bad, 90.0).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }

    #[test]
    fn every_work_order_state_has_a_public_status() {
        for s in WorkOrderState::ALL {
            let (status, notes) = status_of(s);
            assert!(!notes.is_empty());
            assert_eq!(
                status == "closed",
                matches!(s, WorkOrderState::Verified | WorkOrderState::Closed),
                "{s}"
            );
        }
        let codes: std::collections::HashSet<&str> = SERVICES.iter().map(|s| s.code).collect();
        assert_eq!(codes.len(), SERVICES.len(), "service codes are unique");
    }
}

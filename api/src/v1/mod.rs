//! `/api/v1`: every route with its OpenAPI description.
//!
//! Each handler carries a `#[utoipa::path]` annotation and is registered with
//! `routes!(handler)`, which takes the method and path from that annotation: a route
//! cannot be served without being documented, nor documented without being served.
//! Every route requires a caller ([`crate::caller::Caller`]) except `POST /login` and
//! `GET /openapi.json`, which say so with `security(())`.

pub mod commands;
pub mod devices;
pub mod events;
pub mod exports;
pub mod history;
pub mod map;
pub mod outages;
pub mod reports;
pub mod schedules;
pub mod session;
pub mod users;
pub mod webhooks;
pub mod work_orders;

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::caller::SESSION_COOKIE;
use crate::AppState;

/// The document's frame: title, security schemes, tags. The paths come from the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "cityhub API",
        description = "The telemetry and control hub of a city's control center. Sign in \
            with POST /api/v1/login (a session cookie) or send an API token \
            (Authorization: Bearer). Every answer is scoped to the caller's tenants; errors \
            are {\"error\": \"<sentence>\"}. See docs/api.md."
    ),
    modifiers(&SecuritySchemes),
    security(("session" = []), ("token" = [])),
    tags(
        (name = "session", description = "Signing in and out"),
        (name = "outages", description = "Outages: list, acknowledge, shelve, comment"),
        (name = "work orders", description = "Repairs and their life cycle"),
        (name = "reports", description = "Team performance, deadline breaches, alarm load"),
        (name = "devices", description = "Assets and their newest state"),
        (name = "history", description = "Telemetry over time, in buckets"),
        (name = "exports", description = "Readings for any time range: CSV, Arrow IPC, Parquet"),
        (name = "commands", description = "Commands to devices and groups, and their delivery"),
        (name = "schedules", description = "Lighting schedules and overrides"),
        (name = "events", description = "Live changes (server-sent events)"),
        (name = "users", description = "People and programs that use the API"),
        (name = "webhooks", description = "Outage and work order events sent to the city's other systems"),
        (name = "open311", description = "Open311 GeoReport v2: citizen reports"),
        (name = "gtfs-realtime", description = "GTFS-Realtime vehicle positions"),
        (name = "public", description = "Residents' status page and feeds of a published tenant's works, without sign-in"),
        (name = "meta", description = "This document")
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(SESSION_COOKIE))),
        );
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// A page of a list and the cursor of the next one.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListPage<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The parameters of a list that takes nothing but a tenant and a page.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TenantPage {
    /// A tenant slug (one of the caller's).
    pub tenant: Option<String>,
    /// Items per page: 1 to 1000, 100 when absent.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Every `/api/v1` route and its documentation.
pub fn routes() -> OpenApiRouter<AppState> {
    let v1 = OpenApiRouter::new()
        .routes(routes!(session::login))
        .routes(routes!(session::logout))
        .routes(routes!(session::me))
        .routes(routes!(outages::list))
        .routes(routes!(outages::acknowledge))
        .routes(routes!(outages::shelve))
        .routes(routes!(outages::bulk))
        .routes(routes!(outages::unshelve))
        .routes(routes!(outages::comment))
        .routes(routes!(outages::assign))
        .routes(routes!(outages::get))
        .routes(routes!(work_orders::get))
        .routes(routes!(work_orders::list))
        .routes(routes!(work_orders::transition))
        .routes(routes!(reports::teams))
        .routes(routes!(reports::sla_breaches))
        .routes(routes!(reports::alarms))
        .routes(routes!(devices::list))
        .routes(routes!(devices::get))
        .routes(routes!(reports::energy))
        .routes(routes!(users::list))
        .routes(routes!(users::disable))
        .routes(routes!(users::enable))
        .routes(routes!(openapi_json))
        .merge(history::routes())
        .merge(map::routes())
        .merge(commands::routes())
        .merge(schedules::routes())
        .merge(events::routes())
        .merge(exports::routes())
        .merge(webhooks::routes());
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", v1)
        .merge(crate::standards::routes())
}

/// The OpenAPI document, built once.
pub fn openapi_document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = routes().into_openapi();
        // The router captures whole segments (`{service_code}` takes `lamp_out.json`); the
        // document names the paths as clients call them, the code and the suffix apart.
        for (routed, called) in crate::standards::open311::SUFFIXED_PATHS {
            if let Some(item) = doc.paths.paths.remove(routed) {
                doc.paths.paths.insert(called.to_owned(), item);
            }
        }
        doc.to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"the document could not be built: {e}\"}}"))
    })
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "meta",
    security(()),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json"))
)]
pub async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi_document(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dashboard takes the vocabulary from the document: each type's names, in order.
    #[test]
    fn the_document_lists_the_vocabulary() {
        let doc: serde_json::Value = serde_json::from_str(openapi_document()).unwrap();
        let names = |schema: &str| doc["components"]["schemas"][schema]["enum"].clone();
        assert_eq!(
            names("WorkOrderState"),
            serde_json::json!(model::WorkOrderState::ALL.map(model::WorkOrderState::as_str))
        );
        assert_eq!(
            names("OutageState"),
            serde_json::json!(model::OutageState::ALL.map(model::OutageState::as_str))
        );
        assert_eq!(
            names("Severity"),
            serde_json::json!(model::Severity::ALL.map(model::Severity::as_str))
        );
        assert_eq!(
            names("Role"),
            serde_json::json!(model::Role::ALL.map(model::Role::as_str))
        );
    }
}

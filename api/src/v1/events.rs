//! `GET /api/v1/events`: live changes as server-sent events (see [`crate::live`] for where
//! they come from, docs/api.md for the payloads).

use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{KeepAlive, Sse};
use axum::response::IntoResponse;
use futures_util::StreamExt;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::caller::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiQuery;
use crate::live::client::{self, Filter};
use crate::live::EventType;
use crate::roles::{allows, Role};
use crate::AppState;

/// A comment line this often keeps proxies from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stream))
}

/// Which events to receive.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventFilter {
    /// Comma-separated: outage, work_order, command, device. Absent: every type the
    /// caller's role may read.
    pub types: Option<String>,
    /// A tenant slug (one of the caller's); absent: all of them.
    pub tenant: Option<String>,
}

/// The event types asked for, each one the role may read.
pub fn event_types(role: Role, asked: Option<&str>) -> Result<Vec<EventType>, ApiError> {
    let Some(asked) = asked else {
        return Ok(EventType::ALL
            .into_iter()
            .filter(|t| allows(role, t.permission()))
            .collect());
    };
    let names = || {
        EventType::ALL
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut types = Vec::new();
    for name in asked.split(',').map(str::trim) {
        let ty = EventType::parse(name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "types must be a comma-separated list of {}; `{name}` is not one",
                names()
            ))
        })?;
        if let Some(why) = crate::roles::refusal(role, ty.permission()) {
            return Err(ApiError::forbidden(format!(
                "{why}, so it may not receive {} events",
                ty.as_str()
            )));
        }
        if !types.contains(&ty) {
            types.push(ty);
        }
    }
    Ok(types)
}

/// Live changes of the caller's tenants: `outage`, `work_order`, `command`, `device` and
/// `resync` events, each `data` one JSON object (docs/api.md lists the fields).
#[utoipa::path(
    get,
    path = "/events",
    operation_id = "live_events",
    tag = "events",
    params(EventFilter),
    responses(
        (status = 200, description = "A stream of server-sent events; it stays open", content_type = "text/event-stream", body = String),
        (status = 400, description = "An unknown type or parameter", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role may not read a type asked for", body = ErrorBody),
        (status = 404, description = "The tenant named is not one of the caller's", body = ErrorBody),
        (status = 429, description = "The caller has as many streams open as one person may; see Retry-After", body = ErrorBody),
        (status = 503, description = "The server has as many streams open as it keeps", body = ErrorBody)
    )
)]
pub async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(f): ApiQuery<EventFilter>,
) -> Result<impl IntoResponse, ApiError> {
    let types = event_types(caller.role, f.types.as_deref())?;
    let scope = caller.scope(f.tenant.as_deref())?;
    let tenants = caller
        .tenants
        .iter()
        .filter(|t| scope.contains(&t.id))
        .cloned()
        .collect();
    let filter = Filter {
        types,
        tenants,
        team: (caller.role == Role::Crew)
            .then(|| caller.team.clone())
            .flatten(),
    };
    // Held for as long as the stream runs: it ends with the response's body.
    let slot = state.stream_slots().take(&caller.username, &[])?;
    let hub = state.events();
    // The stream ends when the caller's access does (signed out, token revoked, user
    // disabled or changed); a client that still may reconnects.
    let ended = Box::pin(caller.access_ended(state.clone()));
    let events = client::stream(hub.subscribe(), filter, hub.stopping())
        .take_until(ended)
        .map(move |e| {
            let _held = &slot;
            e
        });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_checked_against_the_role() {
        assert_eq!(
            event_types(Role::Crew, None).unwrap(),
            vec![EventType::WorkOrder, EventType::Command, EventType::Device]
        );
        assert_eq!(event_types(Role::Viewer, None).unwrap(), EventType::ALL);
        assert_eq!(
            event_types(Role::Viewer, Some("device, outage,device")).unwrap(),
            vec![EventType::Device, EventType::Outage]
        );
        let e = event_types(Role::Crew, Some("outage")).unwrap_err();
        assert_eq!(e.status(), 403);
        assert_eq!(
            e.message(),
            "a crew may not list outages, so it may not receive outage events"
        );
        let e = event_types(Role::Admin, Some("outage,weather")).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(
            e.message().contains("`weather` is not one"),
            "{}",
            e.message()
        );
        assert_eq!(
            event_types(Role::Admin, Some("")).unwrap_err().status(),
            400
        );
    }
}

//! Work orders: the list (filtered, paged) and moving one along its life cycle. Crews
//! see and move their own team's orders only; an order of another team is, to them, an
//! order that does not exist.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use model::{OutageState, Severity, WorkOrderState};
use serde::{Deserialize, Serialize};
use store::{Actor, Step, WorkOrderEvent, WorkOrderQuery, WorkOrderRow};
use utoipa::{IntoParams, ToSchema};

use crate::caller::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::params::{self, CursorKind};
use crate::roles::{next_states, step_refusal, Permission, Role};
use crate::v1::ListPage;
use crate::AppState;

/// A work order.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkOrder {
    pub id: i64,
    pub outage_id: Option<i64>,
    /// The tenant (slug) of its device.
    pub tenant: String,
    /// The device's inventory id.
    pub device: String,
    pub device_id: i32,
    pub kind: String,
    pub severity: Severity,
    pub team: String,
    pub assignee: Option<String>,
    pub state: WorkOrderState,
    /// The states the caller may move it to now (the life cycle's steps from its state
    /// that the caller's role may take); empty when there are none.
    pub next_states: Vec<WorkOrderState>,
    /// When its outage opened.
    pub opened_at: DateTime<Utc>,
    /// The deadline.
    pub due_at: DateTime<Utc>,
    /// The last time the crew said it was done.
    pub done_at: Option<DateTime<Utc>>,
    /// When telemetry confirmed the repair.
    pub verified_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    /// How many times the fault came back after "done".
    pub reopened: i32,
    /// The device's district and cabinet, from the inventory.
    pub district: Option<String>,
    pub cabinet: Option<String>,
    /// Where its outage stands: `open`, `acknowledged`, `resolved`, `closed`; null for an
    /// inspection that no outage raised.
    pub outage_state: Option<OutageState>,
}

impl WorkOrder {
    /// The order as `role` sees it: with the steps that role may take from its state.
    pub(crate) fn seen_by(w: WorkOrderRow, role: Role) -> WorkOrder {
        WorkOrder {
            next_states: next_states(role, w.state),
            id: w.id,
            outage_id: w.outage_id,
            tenant: w.tenant,
            device: w.ext_id,
            device_id: w.device_id,
            kind: w.kind,
            severity: w.severity,
            team: w.team,
            assignee: w.assignee,
            state: w.state,
            opened_at: w.opened_at,
            due_at: w.due_at,
            done_at: w.done_at,
            verified_at: w.verified_at,
            closed_at: w.closed_at,
            reopened: w.reopened,
            district: w.district,
            cabinet: w.cabinet,
            outage_state: w.outage_state,
        }
    }
}

/// A work order with its history.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkOrderDetail {
    #[serde(flatten)]
    pub order: WorkOrder,
    /// Every step, oldest first.
    pub events: Vec<WorkOrderStep>,
}

/// A step of a work order.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkOrderStep {
    pub at: DateTime<Utc>,
    /// Who took it: a user, an API token, or `rules` (verification, reopening).
    pub actor: String,
    /// The state it left; absent when the order was opened.
    pub from_state: Option<WorkOrderState>,
    pub to_state: WorkOrderState,
    pub detail: Option<String>,
}

impl From<WorkOrderEvent> for WorkOrderStep {
    fn from(e: WorkOrderEvent) -> WorkOrderStep {
        WorkOrderStep {
            at: e.at,
            actor: e.actor,
            from_state: e.from_state,
            to_state: e.to_state,
            detail: e.detail,
        }
    }
}

/// One work order of the caller's tenants (a crew's: their team's) with its steps.
#[utoipa::path(
    get,
    path = "/work-orders/{id}",
    operation_id = "get_work_order",
    tag = "work orders",
    params(("id" = i64, Path, description = "The work order")),
    responses(
        (status = 200, description = "The work order and its steps", body = WorkOrderDetail),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such work order among the caller's tenants (and team, for crews)", body = ErrorBody)
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<WorkOrderDetail>, ApiError> {
    caller.require(Permission::ReadWorkOrders)?;
    let tenants = caller.scope(None)?;
    let db = state.pool().reads().await?;
    let order = db
        .work_order_in(&tenants, crew_team(&caller), id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no work order {id}")))?;
    let events = db.work_order_events(id).await?;
    Ok(Json(WorkOrderDetail {
        order: WorkOrder::seen_by(order, caller.role),
        events: events.into_iter().map(WorkOrderStep::from).collect(),
    }))
}

/// Filters and paging of the work order list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WorkOrderFilter {
    /// new, assigned, in_progress, done, verified, reopened or closed.
    pub state: Option<String>,
    /// A team; a crew member sees their own team's only.
    pub team: Option<String>,
    /// An outage kind, e.g. lamp_failure.
    pub kind: Option<String>,
    /// The district of the order's device.
    pub district: Option<String>,
    /// The order's device, by its inventory id.
    pub device: Option<String>,
    /// A tenant slug (one of the caller's).
    pub tenant: Option<String>,
    /// Items per page: 1 to 1000, 100 when absent.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The team a caller's work order requests are limited to: a crew member's own.
fn crew_team(caller: &Caller) -> Option<&str> {
    (caller.role == Role::Crew).then_some(caller.team.as_deref().unwrap_or(""))
}

/// Work orders of the caller's tenants (a crew's: their team's), newest first.
#[utoipa::path(
    get,
    path = "/work-orders",
    operation_id = "list_work_orders",
    tag = "work orders",
    params(WorkOrderFilter),
    responses(
        (status = 200, description = "A page of work orders", body = ListPage<WorkOrder>),
        (status = 400, description = "A filter is not valid", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "A crew member asked for another team", body = ErrorBody),
        (status = 404, description = "The tenant named is not one of the caller's", body = ErrorBody)
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(f): ApiQuery<WorkOrderFilter>,
) -> Result<Json<ListPage<WorkOrder>>, ApiError> {
    caller.require(Permission::ReadWorkOrders)?;
    let tenants = caller.scope(f.tenant.as_deref())?;
    let asked_team = params::short("team", f.team.as_deref())?;
    let team = match (crew_team(&caller), asked_team) {
        (Some(own), Some(asked)) if own != asked => {
            return Err(ApiError::forbidden(format!(
                "a crew member sees their own team's work orders only ({own})"
            )))
        }
        (Some(own), _) => Some(own),
        (None, asked) => asked,
    };
    let query = WorkOrderQuery {
        tenants: &tenants,
        state: params::named::<WorkOrderState>("state", f.state.as_deref())?,
        team,
        kind: params::short("kind", f.kind.as_deref())?,
        district: params::short("district", f.district.as_deref())?,
        device: params::short("device", f.device.as_deref())?,
        after: f
            .cursor
            .as_deref()
            .map(|c| params::decode_cursor(CursorKind::WorkOrders, c))
            .transpose()?,
        limit: params::limit(f.limit)?,
    };
    let page = state.pool().reads().await?.work_order_page(&query).await?;
    let next_cursor = page
        .more
        .then(|| page.items.last())
        .flatten()
        .map(|w| params::encode_cursor(CursorKind::WorkOrders, Some(w.opened_at), w.id));
    Ok(Json(ListPage {
        items: page
            .items
            .into_iter()
            .map(|w| WorkOrder::seen_by(w, caller.role))
            .collect(),
        next_cursor,
    }))
}

/// A step of a work order's life cycle.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionRequest {
    /// assigned, in_progress, done, reopened or closed (verified comes from telemetry).
    pub to: String,
    /// Who does it; needed to assign an order that has nobody yet.
    pub assignee: Option<String>,
    /// Why, for the record (at most 2000 characters).
    pub note: Option<String>,
}

/// Moves a work order one step: assign it, start it, finish it, reopen or close it.
#[utoipa::path(
    post,
    path = "/work-orders/{id}/transition",
    operation_id = "transition_work_order",
    tag = "work orders",
    params(("id" = i64, Path, description = "The work order")),
    request_body = TransitionRequest,
    responses(
        (status = 200, description = "Moved", body = WorkOrder),
        (status = 400, description = "Unknown state, or assigning without an assignee", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role may not take this step", body = ErrorBody),
        (status = 404, description = "No such work order among the caller's tenants (and team, for crews)", body = ErrorBody),
        (status = 409, description = "The step does not exist from the order's state (the message names it)", body = ErrorBody)
    )
)]
pub async fn transition(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<TransitionRequest>,
) -> Result<Json<WorkOrder>, ApiError> {
    caller.require(Permission::TransitionWorkOrder)?;
    let to = params::named::<WorkOrderState>("to", Some(&body.to))?.unwrap_or(WorkOrderState::New);
    if let Some(why) = step_refusal(caller.role, to, body.assignee.is_some()) {
        return Err(ApiError::forbidden(why));
    }
    let assignee = params::short("assignee", body.assignee.as_deref())?;
    let note = body
        .note
        .as_deref()
        .map(|n| params::text("note", n))
        .transpose()?;
    let tenants = caller.scope(None)?;
    let name = caller.actor();
    let actor = Actor {
        name: &name,
        tenants: &tenants,
        team: crew_team(&caller),
    };
    let step = Step { to, assignee, note };
    let mut db = state.pool().actions().await?;
    let order = db.move_work_order(&actor, id, &step, state.now()).await?;
    Ok(Json(WorkOrder::seen_by(order, caller.role)))
}

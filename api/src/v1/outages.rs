//! Outages: the list (filtered, paged), and what operators do to one: acknowledge,
//! shelve, unshelve, comment. Each change is an outage event and an audit entry, written
//! with the change in one transaction.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use model::{OutageState, Severity, WorkOrderState};
use serde::{Deserialize, Serialize};
use store::{Actor, OutageAction, OutageEvent, OutageOrder, OutageQuery, OutageRow};
use utoipa::{IntoParams, ToSchema};

use crate::caller::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::params::{self, CursorKind};
use crate::roles::Permission;
use crate::v1::ListPage;
use crate::AppState;

/// The longest an outage may be shelved: a fault hidden longer should be a maintenance
/// window or a repair, not a shelf.
pub const MAX_SHELVE_DAYS: i64 = 30;

/// An outage.
#[derive(Debug, Serialize, ToSchema)]
pub struct Outage {
    pub id: i64,
    /// The tenant (slug) of its device.
    pub tenant: String,
    /// The device's inventory id.
    pub device: String,
    pub device_id: i32,
    pub kind: String,
    pub state: OutageState,
    pub severity: Severity,
    pub reason: String,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// When the fault was last seen.
    pub last_seen: DateTime<Utc>,
    /// Times the fault was seen while this outage was open.
    pub occurrences: i32,
    /// Comes and goes too often; held open until it settles.
    pub chattering: bool,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub shelved_until: Option<DateTime<Utc>>,
    pub shelved_by: Option<String>,
    /// The device's district, from the inventory.
    pub district: Option<String>,
    /// The device's cabinet (for a lamp), from the inventory.
    pub cabinet: Option<String>,
    /// Who handles it: the work order in hand for its device and kind (not closed).
    pub work_order: Option<Handler>,
}

/// The work order that handles an outage.
#[derive(Debug, Serialize, ToSchema)]
pub struct Handler {
    /// The work order's id.
    pub id: i64,
    pub state: WorkOrderState,
    pub team: String,
    pub assignee: Option<String>,
}

impl From<OutageRow> for Outage {
    fn from(o: OutageRow) -> Outage {
        Outage {
            id: o.id,
            tenant: o.tenant,
            device: o.ext_id,
            device_id: o.device_id,
            kind: o.kind,
            state: o.state,
            severity: o.severity,
            reason: o.reason,
            opened_at: o.opened_at,
            resolved_at: o.resolved_at,
            last_seen: o.last_seen,
            occurrences: o.occurrences,
            chattering: o.chattering,
            acknowledged_by: o.acknowledged_by,
            acknowledged_at: o.acknowledged_at,
            shelved_until: o.shelved_until,
            shelved_by: o.shelved_by,
            district: o.district,
            cabinet: o.cabinet,
            work_order: o.handled_by.map(|h| Handler {
                id: h.work_order,
                state: h.state,
                team: h.team,
                assignee: h.assignee,
            }),
        }
    }
}

/// An outage with its history.
#[derive(Debug, Serialize, ToSchema)]
pub struct OutageDetail {
    #[serde(flatten)]
    pub outage: Outage,
    /// Every step, oldest first.
    pub events: Vec<OutageStep>,
}

/// A step of an outage: opened, acknowledged, shelved, comment, assigned, resolved...
#[derive(Debug, Serialize, ToSchema)]
pub struct OutageStep {
    pub at: DateTime<Utc>,
    /// Who: a user, an API token, or `rules`.
    pub actor: String,
    pub transition: String,
    pub detail: Option<String>,
}

impl From<OutageEvent> for OutageStep {
    fn from(e: OutageEvent) -> OutageStep {
        OutageStep {
            at: e.at,
            actor: e.actor,
            transition: e.transition,
            detail: e.detail,
        }
    }
}

/// One outage of the caller's tenants with its history.
#[utoipa::path(
    get,
    path = "/outages/{id}",
    operation_id = "get_outage",
    tag = "outages",
    params(("id" = i64, Path, description = "The outage")),
    responses(
        (status = 200, description = "The outage and its steps", body = OutageDetail),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role may not read outages (crew)", body = ErrorBody),
        (status = 404, description = "No such outage among the caller's tenants", body = ErrorBody)
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<OutageDetail>, ApiError> {
    caller.require(Permission::ReadOutages)?;
    let tenants = caller.scope(None)?;
    let (outage, events) = state
        .pool()
        .reads()
        .await?
        .outage_in(&tenants, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no outage {id}")))?;
    Ok(Json(OutageDetail {
        outage: outage.into(),
        events: events.into_iter().map(OutageStep::from).collect(),
    }))
}

/// Filters and paging of the outage list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OutageFilter {
    /// open, acknowledged, resolved or closed.
    pub state: Option<String>,
    /// An outage kind, e.g. lamp_failure.
    pub kind: Option<String>,
    /// A tenant slug (one of the caller's).
    pub tenant: Option<String>,
    /// A device's inventory id.
    pub device: Option<String>,
    /// Opened at or after (RFC 3339).
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// Opened before (RFC 3339); at most 400 days after `from`.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// `severity` (the default): most severe first (critical, major, minor), then newest
    /// first; `newest`: newest first.
    pub sort: Option<String>,
    /// Items per page: 1 to 1000, 100 when absent.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Outages of the caller's tenants, most severe first then newest (or newest first).
#[utoipa::path(
    get,
    path = "/outages",
    operation_id = "list_outages",
    tag = "outages",
    params(OutageFilter),
    responses(
        (status = 200, description = "A page of outages", body = ListPage<Outage>),
        (status = 400, description = "A filter is not valid", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role may not list outages (crew)", body = ErrorBody),
        (status = 404, description = "The tenant named is not one of the caller's", body = ErrorBody)
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(f): ApiQuery<OutageFilter>,
) -> Result<Json<ListPage<Outage>>, ApiError> {
    caller.require(Permission::ReadOutages)?;
    let tenants = caller.scope(f.tenant.as_deref())?;
    let (from, to) = params::optional_range(f.from.as_deref(), f.to.as_deref())?;
    let limit = params::limit(f.limit)?;
    let order = match params::one_of("sort", f.sort.as_deref(), &["severity", "newest"])? {
        Some("newest") => OutageOrder::Newest,
        _ => OutageOrder::Severity,
    };
    let query = OutageQuery {
        tenants: &tenants,
        state: params::named::<OutageState>("state", f.state.as_deref())?,
        kind: params::short("kind", f.kind.as_deref())?,
        device: params::short("device", f.device.as_deref())?,
        from,
        to,
        order,
        after: f
            .cursor
            .as_deref()
            .map(|c| match order {
                OutageOrder::Newest => {
                    params::decode_cursor(CursorKind::Outages, c).map(|(at, id)| (0, at, id))
                }
                OutageOrder::Severity => params::decode_ranked_cursor(c),
            })
            .transpose()?,
        limit,
    };
    let page = state.pool().reads().await?.outage_page(&query).await?;
    let next_cursor = page
        .more
        .then(|| page.items.last())
        .flatten()
        .map(|o| match order {
            OutageOrder::Newest => {
                params::encode_cursor(CursorKind::Outages, Some(o.opened_at), o.id)
            }
            OutageOrder::Severity => {
                let rank = o.severity.rank();
                params::encode_cursor(CursorKind::OutagesBySeverity(rank), Some(o.opened_at), o.id)
            }
        });
    Ok(Json(ListPage {
        items: page.items.into_iter().map(Outage::from).collect(),
        next_cursor,
    }))
}

/// Shelving an outage.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShelveRequest {
    /// Until when (RFC 3339): later than now, at most 30 days ahead.
    #[schema(format = DateTime)]
    pub until: String,
    /// Why it is shelved.
    pub reason: String,
}

/// A comment on an outage.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentRequest {
    /// At most 2000 characters.
    pub text: String,
}

/// Giving an outage to a team.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    /// The team (crew or contractor) that repairs it.
    pub team: String,
    /// The person, when known; the work order then moves to `assigned`.
    pub assignee: Option<String>,
    /// Why, for the record (at most 2000 characters).
    pub note: Option<String>,
}

/// Does `action` to outage `id` for the caller, who must hold `permission`.
async fn act(
    state: &AppState,
    caller: &Caller,
    permission: Permission,
    id: i64,
    action: OutageAction<'_>,
) -> Result<Json<Outage>, ApiError> {
    caller.require(permission)?;
    let tenants = caller.scope(None)?;
    let name = caller.actor();
    let actor = Actor {
        name: &name,
        tenants: &tenants,
        team: None,
    };
    let mut db = state.pool().actions().await?;
    let outage = db.act_on_outage(&actor, id, &action, state.now()).await?;
    Ok(Json(outage.into()))
}

/// Acknowledges an open outage: someone is on it.
#[utoipa::path(
    post,
    path = "/outages/{id}/ack",
    operation_id = "acknowledge_outage",
    tag = "outages",
    params(("id" = i64, Path, description = "The outage")),
    responses(
        (status = 200, description = "Acknowledged", body = Outage),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role may not acknowledge outages", body = ErrorBody),
        (status = 404, description = "No such outage among the caller's tenants", body = ErrorBody),
        (status = 409, description = "The outage is not open (the message says its state)", body = ErrorBody)
    )
)]
pub async fn acknowledge(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Outage>, ApiError> {
    act(
        &state,
        &caller,
        Permission::AcknowledgeOutage,
        id,
        OutageAction::Acknowledge,
    )
    .await
}

/// Shelves an active outage until a time: hidden from the active list, not forgotten.
#[utoipa::path(
    post,
    path = "/outages/{id}/shelve",
    operation_id = "shelve_outage",
    tag = "outages",
    params(("id" = i64, Path, description = "The outage")),
    request_body = ShelveRequest,
    responses(
        (status = 200, description = "Shelved", body = Outage),
        (status = 400, description = "`until` is not a later time within 30 days, or no reason", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role may not shelve outages", body = ErrorBody),
        (status = 404, description = "No such outage among the caller's tenants", body = ErrorBody),
        (status = 409, description = "The outage is no longer active", body = ErrorBody)
    )
)]
pub async fn shelve(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<ShelveRequest>,
) -> Result<Json<Outage>, ApiError> {
    caller.require(Permission::ShelveOutage)?;
    let action = shelve_action(&state, &body)?;
    act(&state, &caller, Permission::ShelveOutage, id, action).await
}

/// A shelve as asked: until a later time within [`MAX_SHELVE_DAYS`], for a reason.
fn shelve_action<'a>(
    state: &AppState,
    body: &'a ShelveRequest,
) -> Result<OutageAction<'a>, ApiError> {
    let until = params::time("until", Some(&body.until))?.unwrap_or_default();
    let now = state.now().to_datetime();
    if until <= now {
        return Err(ApiError::bad_request(format!(
            "an outage can only be shelved until a later time: {until} is not after {now}"
        )));
    }
    if until > now + Duration::days(MAX_SHELVE_DAYS) {
        return Err(ApiError::bad_request(format!(
            "an outage can be shelved for at most {MAX_SHELVE_DAYS} days; for longer, plan a maintenance window"
        )));
    }
    let reason = params::text("reason", &body.reason)?;
    Ok(OutageAction::Shelve { until, reason })
}

/// Shows a shelved outage again before its shelve ends.
#[utoipa::path(
    post,
    path = "/outages/{id}/unshelve",
    operation_id = "unshelve_outage",
    tag = "outages",
    params(("id" = i64, Path, description = "The outage")),
    responses(
        (status = 200, description = "Unshelved", body = Outage),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role may not unshelve outages", body = ErrorBody),
        (status = 404, description = "No such outage among the caller's tenants", body = ErrorBody),
        (status = 409, description = "The outage is not shelved", body = ErrorBody)
    )
)]
pub async fn unshelve(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Outage>, ApiError> {
    act(
        &state,
        &caller,
        Permission::ShelveOutage,
        id,
        OutageAction::Unshelve,
    )
    .await
}

/// Comments on an outage (any state); kept with its events.
#[utoipa::path(
    post,
    path = "/outages/{id}/comment",
    operation_id = "comment_on_outage",
    tag = "outages",
    params(("id" = i64, Path, description = "The outage")),
    request_body = CommentRequest,
    responses(
        (status = 200, description = "Commented", body = Outage),
        (status = 400, description = "Empty or too long", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role may not comment on outages", body = ErrorBody),
        (status = 404, description = "No such outage among the caller's tenants", body = ErrorBody)
    )
)]
pub async fn comment(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<CommentRequest>,
) -> Result<Json<Outage>, ApiError> {
    caller.require(Permission::CommentOutage)?;
    let text = params::text("text", &body.text)?;
    act(
        &state,
        &caller,
        Permission::CommentOutage,
        id,
        OutageAction::Comment { text },
    )
    .await
}

/// Gives an active outage to a team (and a person): its work order changes hands, or one
/// is opened, due in 72 hours, when the policy opened none.
#[utoipa::path(
    post,
    path = "/outages/{id}/assign",
    operation_id = "assign_outage",
    tag = "outages",
    params(("id" = i64, Path, description = "The outage")),
    request_body = AssignRequest,
    responses(
        (status = 200, description = "Assigned", body = Outage),
        (status = 400, description = "No team, or a name or note that is not usable", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role may not assign outages", body = ErrorBody),
        (status = 404, description = "No such outage among the caller's tenants", body = ErrorBody),
        (status = 409, description = "The outage is resolved or closed", body = ErrorBody)
    )
)]
pub async fn assign(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<AssignRequest>,
) -> Result<Json<Outage>, ApiError> {
    caller.require(Permission::AssignOutage)?;
    let team = params::short("team", Some(&body.team))?.unwrap_or_default();
    if team.trim().is_empty() {
        return Err(ApiError::bad_request(
            "`team` must name the team that repairs it",
        ));
    }
    let assignee = params::short("assignee", body.assignee.as_deref())?;
    let note = body
        .note
        .as_deref()
        .map(|n| params::text("note", n))
        .transpose()?;
    act(
        &state,
        &caller,
        Permission::AssignOutage,
        id,
        OutageAction::Assign {
            team,
            assignee,
            note,
        },
    )
    .await
}

/// The most outages one bulk action takes: a flood on a city's night, with room to spare.
pub const MAX_BULK: usize = 1000;

/// What a bulk action does to each outage.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BulkAction {
    Acknowledge,
    Shelve,
}

/// One action on many outages (a flood with one cause): each outage is acted on, recorded
/// and audited as if alone.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// The outages, 1 to 1000, each at most once.
    pub ids: Vec<i64>,
    pub action: BulkAction,
    /// For `shelve`: until when (RFC 3339), later than now, at most 30 days ahead.
    #[schema(format = DateTime)]
    pub until: Option<String>,
    /// For `shelve`: why.
    pub reason: Option<String>,
}

/// An outage a bulk action left as it was, and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct Skipped {
    pub id: i64,
    /// Why: not among the caller's outages, already acknowledged, no longer active...
    pub reason: String,
}

/// What a bulk action did.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkResult {
    /// The outages acted on, as they are now.
    pub done: Vec<Outage>,
    /// Those left alone, with the reason.
    pub skipped: Vec<Skipped>,
}

/// Acknowledges or shelves many outages at once. Each is done as alone: one outage event
/// and one audit entry each. One that cannot be (another tenant's, already acknowledged,
/// resolved meanwhile) is skipped with the reason, and the others are still done.
#[utoipa::path(
    post,
    path = "/outages/bulk",
    operation_id = "act_on_outages",
    tag = "outages",
    request_body = BulkRequest,
    responses(
        (status = 200, description = "Done, with those skipped and why", body = BulkResult),
        (status = 400, description = "No ids, more than 1000, one twice, or a shelve without a later `until` within 30 days or a reason", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role may not acknowledge or shelve outages", body = ErrorBody)
    )
)]
pub async fn bulk(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<BulkRequest>,
) -> Result<Json<BulkResult>, ApiError> {
    let permission = match body.action {
        BulkAction::Acknowledge => Permission::AcknowledgeOutage,
        BulkAction::Shelve => Permission::ShelveOutage,
    };
    caller.require(permission)?;
    if body.ids.is_empty() || body.ids.len() > MAX_BULK {
        return Err(ApiError::bad_request(format!(
            "`ids` must name 1 to {MAX_BULK} outages, not {}",
            body.ids.len()
        )));
    }
    if let Some(bad) = body.ids.iter().find(|id| **id < 1) {
        return Err(ApiError::bad_request(format!(
            "`ids` are outage ids, 1 or more, not {bad}"
        )));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = body.ids.iter().find(|id| !seen.insert(**id)) {
        return Err(ApiError::bad_request(format!(
            "outage {twice} is named twice in `ids`"
        )));
    }
    let shelf;
    let action = match body.action {
        BulkAction::Acknowledge => {
            if body.until.is_some() || body.reason.is_some() {
                return Err(ApiError::bad_request(
                    "`until` and `reason` go with `shelve` only",
                ));
            }
            OutageAction::Acknowledge
        }
        BulkAction::Shelve => {
            shelf = ShelveRequest {
                until: body.until.clone().ok_or_else(|| {
                    ApiError::bad_request("`shelve` needs `until`, the time it ends")
                })?,
                reason: body
                    .reason
                    .clone()
                    .ok_or_else(|| ApiError::bad_request("`shelve` needs a `reason`"))?,
            };
            shelve_action(&state, &shelf)?
        }
    };
    let tenants = caller.scope(None)?;
    let name = caller.actor();
    let actor = Actor {
        name: &name,
        tenants: &tenants,
        team: None,
    };
    let mut db = state.pool().actions().await?;
    let mut result = BulkResult {
        done: Vec::new(),
        skipped: Vec::new(),
    };
    for &id in &body.ids {
        match db.act_on_outage(&actor, id, &action, state.now()).await {
            Ok(outage) => result.done.push(outage.into()),
            Err(e) => {
                // Refused for this outage (not found, not open): skipped. Anything else
                // (the database gone) stops here; what was done stays done.
                let e = ApiError::from(e);
                if !e.status().is_client_error() {
                    return Err(e);
                }
                result.skipped.push(Skipped {
                    id,
                    reason: e.message().to_owned(),
                });
            }
        }
    }
    Ok(Json(result))
}

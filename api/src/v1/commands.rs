//! Commands to devices and groups: preview a target, send (a batch of per-device
//! commands, confirmed by count when it reaches more than one device), follow delivery.
//! The dispatcher (crate `control`) publishes what is recorded here; the devices' answers
//! come back through ingestion.

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use model::CommandStatus;
use serde::{Deserialize, Serialize};
use serde_json::json;
use store::{BatchCommandRow, BatchRow, CommandTarget, NewBatch};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::caller::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::params::{self, CursorKind};
use crate::roles::Permission;
use crate::v1::ListPage;
use crate::AppState;

/// A command's expiry when none is given.
pub const DEFAULT_EXPIRY_S: i64 = 15 * 60;
/// The shortest expiry accepted.
pub const MIN_EXPIRY_S: i64 = 10;
/// The longest: a light setting held longer belongs in the lamp's schedule.
pub const MAX_EXPIRY_S: i64 = 24 * 3600;
/// Devices named in one `devices` list at most.
const MAX_LISTED: usize = 10_000;
/// Corners of a polygon at most.
const MAX_CORNERS: usize = 1_000;
/// Devices shown in a preview.
const SAMPLE: usize = 10;

/// The command statuses, in their order of life.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(send, list))
        .routes(routes!(preview))
        .routes(routes!(get))
        .routes(routes!(devices))
}

/// What a command is aimed at: exactly one of these keys.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    /// One device, by inventory id.
    Device(String),
    /// Several devices, by inventory id (up to 10000).
    Devices(Vec<String>),
    /// The lamps a cabinet feeds (a reboot also reaches the cabinet).
    Cabinet(String),
    /// A district's devices.
    District(String),
    /// Devices inside a ring of [lon, lat] positions (WGS 84), 3 to 1000 corners.
    Polygon(Vec<[f64; 2]>),
}

/// A command to send (or preview).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    /// The tenant (slug) whose devices are aimed at; may be left out by a caller who has
    /// one tenant only.
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    #[schema(nullable = false)]
    pub tenant: Option<String>,
    pub target: Target,
    /// `set_light`, `resume_schedule` (lamps back to their schedule now: each is told
    /// what its profile in force asks for, for a minute, then follows it) or `reboot`.
    pub action: String,
    /// set_light: switch on (default) or off.
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    #[schema(nullable = false)]
    pub on: Option<bool>,
    /// set_light: output in percent, 0 to 100 (default 100).
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    #[schema(nullable = false)]
    pub dim: Option<i64>,
    /// Seconds until the command expires (10 to 86400, default 900). A set_light holds
    /// until then; a command not delivered by then never is.
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    #[schema(nullable = false)]
    pub expires_in_s: Option<i64>,
    /// The same as an RFC 3339 time (instead of `expires_in_s`).
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    #[schema(format = DateTime, nullable = false)]
    pub expires: Option<String>,
    /// The number of devices reached, as a preview said: required when more than one.
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    #[schema(nullable = false)]
    pub confirm: Option<i64>,
}

/// How a command is checked before it is recorded.
struct Checked {
    tenant: i32,
    target: CommandTarget,
    action: &'static str,
    body: serde_json::Value,
    expires_at: DateTime<Utc>,
    resume_schedule: bool,
}

/// How long lamps sent back to their schedule hold what it asks for now, before they
/// follow it themselves: long enough for a lamp's controller to be reached.
pub const RESUME_HOLD_S: i64 = 60;

fn check(caller: &Caller, r: &CommandRequest, now: DateTime<Utc>) -> Result<Checked, ApiError> {
    let tenant = one_tenant(caller, r.tenant.as_deref())?;
    let target = target(&r.target)?;
    let resume_schedule = r.action == "resume_schedule";
    if resume_schedule
        && (r.on.is_some() || r.dim.is_some() || r.expires_in_s.is_some() || r.expires.is_some())
    {
        return Err(ApiError::bad_request(format!(
            "resume_schedule takes no `on`, `dim` or expiry: each lamp is told what its schedule asks for now, for {RESUME_HOLD_S} s, then follows it"
        )));
    }
    let expires_at = if resume_schedule {
        now + Duration::seconds(RESUME_HOLD_S)
    } else {
        expiry(r.expires_in_s, r.expires.as_deref(), now)?
    };
    let expires_ms = expires_at.timestamp_millis();
    let (action, body) = match r.action.as_str() {
        "resume_schedule" => (
            "set_light",
            json!({"action": "set_light", "resume_schedule": true, "expires": expires_ms}),
        ),
        "set_light" => {
            let dim = r.dim.unwrap_or(100);
            if !(0..=100).contains(&dim) {
                return Err(ApiError::bad_request(format!(
                    "dim is a percentage from 0 to 100, not {dim}"
                )));
            }
            let on = r.on.unwrap_or(true);
            (
                "set_light",
                json!({"action": "set_light", "on": on, "dim": dim, "expires": expires_ms}),
            )
        }
        "reboot" => {
            if r.on.is_some() || r.dim.is_some() {
                return Err(ApiError::bad_request(
                    "a reboot takes no `on` or `dim`; they belong to set_light",
                ));
            }
            ("reboot", json!({"action": "reboot", "expires": expires_ms}))
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "action `{other}` is not one of set_light, resume_schedule, reboot"
            )))
        }
    };
    Ok(Checked {
        tenant,
        target,
        action,
        body,
        expires_at,
        resume_schedule,
    })
}

/// The one tenant a request acts in.
pub(crate) fn one_tenant(caller: &Caller, tenant: Option<&str>) -> Result<i32, ApiError> {
    match tenant {
        Some(_) => Ok(caller.scope(tenant)?[0]),
        None => match caller.tenants.as_slice() {
            [only] => Ok(only.id),
            _ => Err(ApiError::bad_request(
                "name the tenant (`tenant`): you work for several municipalities",
            )),
        },
    }
}

pub(crate) fn target(t: &Target) -> Result<CommandTarget, ApiError> {
    let name = |what: &str, v: &str| -> Result<String, ApiError> {
        params::short(what, Some(v)).map(|_| v.to_owned())
    };
    Ok(match t {
        Target::Device(d) => CommandTarget::Device(name("target.device", d)?),
        Target::Devices(list) => {
            if list.is_empty() || list.len() > MAX_LISTED {
                return Err(ApiError::bad_request(format!(
                    "target.devices lists 1 to {MAX_LISTED} devices, not {}",
                    list.len()
                )));
            }
            let mut ids = list
                .iter()
                .map(|d| name("target.devices", d))
                .collect::<Result<Vec<_>, _>>()?;
            ids.sort();
            ids.dedup();
            CommandTarget::Devices(ids)
        }
        Target::Cabinet(c) => CommandTarget::Cabinet(name("target.cabinet", c)?),
        Target::District(d) => CommandTarget::District(name("target.district", d)?),
        Target::Polygon(ring) => {
            if ring.len() < 3 || ring.len() > MAX_CORNERS {
                return Err(ApiError::bad_request(format!(
                    "target.polygon is a ring of 3 to {MAX_CORNERS} [lon, lat] positions, not {}",
                    ring.len()
                )));
            }
            if let Some([lon, lat]) = ring
                .iter()
                .find(|[lon, lat]| !(-180.0..=180.0).contains(lon) || !(-90.0..=90.0).contains(lat))
            {
                return Err(ApiError::bad_request(format!(
                    "target.polygon: [{lon}, {lat}] is not a [lon, lat] position in degrees"
                )));
            }
            CommandTarget::Polygon(ring.clone())
        }
    })
}

/// The expiry from `expires_in_s` or `expires`, within bounds.
pub(crate) fn expiry(
    in_s: Option<i64>,
    at: Option<&str>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, ApiError> {
    let secs = match (in_s, params::time("expires", at)?) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give expires_in_s or expires, not both",
            ))
        }
        (Some(s), None) => s,
        (None, Some(t)) => (t - now).num_seconds(),
        (None, None) => DEFAULT_EXPIRY_S,
    };
    if !(MIN_EXPIRY_S..=MAX_EXPIRY_S).contains(&secs) {
        return Err(ApiError::bad_request(format!(
            "a command expires {MIN_EXPIRY_S} seconds to {} hours from now, not in {secs} seconds",
            MAX_EXPIRY_S / 3600
        )));
    }
    Ok(now + Duration::seconds(secs))
}

/// A batch: what was asked, of how many devices, and where their commands are.
#[derive(Debug, Serialize, ToSchema)]
pub struct Batch {
    pub id: i64,
    pub tenant: String,
    pub issued_by: String,
    pub issued_at: DateTime<Utc>,
    /// The target as asked.
    #[schema(value_type = Object)]
    pub target: serde_json::Value,
    pub action: String,
    /// What each device is sent (with its own `id` and `ts` added).
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
    /// Absent for schedule pushes, which are held until delivered.
    pub expires: Option<DateTime<Utc>>,
    /// Devices reached.
    pub devices: i32,
    /// `api` (sent by a person) or `schedule` (a schedule change or an override's end).
    pub origin: String,
    /// Commands per status: pending, sent, acked, rejected, failed, expired.
    pub statuses: BTreeMap<String, i64>,
    /// In a list asked for one `device`: that device's command, with what it was sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<DeviceCommand>,
}

impl From<BatchRow> for Batch {
    fn from(b: BatchRow) -> Batch {
        let mut statuses: BTreeMap<String, i64> = CommandStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_owned(), 0))
            .collect();
        statuses.extend(b.statuses);
        Batch {
            id: b.id,
            tenant: b.tenant,
            issued_by: b.issued_by,
            issued_at: b.issued_at,
            target: b.target,
            action: b.action,
            body: b.body,
            expires: b.expires_at,
            devices: b.devices,
            origin: b.origin,
            statuses,
            command: None,
        }
    }
}

/// What a command would reach.
#[derive(Debug, Serialize, ToSchema)]
pub struct Preview {
    pub tenant: String,
    pub action: String,
    /// Devices reached: send this as `confirm` when it is more than one.
    pub devices: usize,
    /// Devices reached per kind.
    pub by_kind: BTreeMap<String, usize>,
    /// A few of them (inventory ids).
    pub sample: Vec<String>,
    /// Whether sending needs `confirm`.
    pub confirm_required: bool,
}

/// What a command would reach, without sending anything.
#[utoipa::path(
    post,
    path = "/commands/preview",
    operation_id = "preview_command",
    tag = "commands",
    request_body = CommandRequest,
    responses(
        (status = 200, description = "The devices it reaches", body = Preview),
        (status = 400, description = "The command is not valid", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role may not send commands", body = ErrorBody),
        (status = 404, description = "No such tenant, device, cabinet or district among the caller's", body = ErrorBody)
    )
)]
pub async fn preview(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(r): ApiJson<CommandRequest>,
) -> Result<Json<Preview>, ApiError> {
    caller.require(Permission::SendCommands)?;
    let c = check(&caller, &r, state.now().to_datetime())?;
    // A refusal and the preview name the action as asked.
    let asked = if c.resume_schedule {
        "resume_schedule"
    } else {
        c.action
    };
    let reached = state
        .pool()
        .reads()
        .await?
        .command_reach(c.tenant, &c.target, asked)
        .await?;
    let mut by_kind = BTreeMap::new();
    for d in &reached {
        *by_kind.entry(d.kind.clone()).or_insert(0) += 1;
    }
    Ok(Json(Preview {
        tenant: slug(&caller, c.tenant),
        action: asked.to_owned(),
        devices: reached.len(),
        by_kind,
        sample: reached
            .iter()
            .take(SAMPLE)
            .map(|d| d.ext_id.clone())
            .collect(),
        confirm_required: reached.len() > 1,
    }))
}

fn slug(caller: &Caller, tenant: i32) -> String {
    caller
        .tenants
        .iter()
        .find(|t| t.id == tenant)
        .map(|t| t.slug.clone())
        .unwrap_or_default()
}

/// Sends a command: one per device reached, delivered by the dispatcher and followed to
/// the device's answer.
#[utoipa::path(
    post,
    path = "/commands",
    operation_id = "send_command",
    tag = "commands",
    request_body = CommandRequest,
    responses(
        (status = 201, description = "Recorded; delivery follows", body = Batch),
        (status = 400, description = "The command is not valid, reaches nothing, or reaches more than 100000 devices", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role may not send commands", body = ErrorBody),
        (status = 404, description = "No such tenant, device, cabinet or district among the caller's", body = ErrorBody),
        (status = 409, description = "It reaches several devices and `confirm` is missing or not their number (the message gives it)", body = ErrorBody)
    )
)]
pub async fn send(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(r): ApiJson<CommandRequest>,
) -> Result<(StatusCode, Json<Batch>), ApiError> {
    caller.require(Permission::SendCommands)?;
    let now = state.now().to_datetime();
    let c = check(&caller, &r, now)?;
    let actor = caller.actor();
    let batch = state
        .pool()
        .actions()
        .await?
        .issue_commands(&NewBatch {
            tenant_id: c.tenant,
            target: &c.target,
            action: c.action,
            body: c.body,
            issued_at: now,
            expires_at: c.expires_at,
            issued_by: &actor,
            confirm: r.confirm,
            resume_schedule: c.resume_schedule,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(batch.into())))
}

/// Filters and paging of the command batch list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CommandFilter {
    /// Batches that reached this device (its inventory id).
    pub device: Option<String>,
    /// A tenant slug (one of the caller's).
    pub tenant: Option<String>,
    /// Items per page: 1 to 1000, 100 when absent.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Command batches of the caller's tenants, newest first; with `device`, those that
/// reached it.
#[utoipa::path(
    get,
    path = "/commands",
    operation_id = "list_commands",
    tag = "commands",
    params(CommandFilter),
    responses(
        (status = 200, description = "A page of batches", body = ListPage<Batch>),
        (status = 400, description = "A parameter is not valid", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "The tenant named is not one of the caller's", body = ErrorBody)
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(f): ApiQuery<CommandFilter>,
) -> Result<Json<ListPage<Batch>>, ApiError> {
    caller.require(Permission::ReadDevices)?;
    let tenants = caller.scope(f.tenant.as_deref())?;
    let device = params::short("device", f.device.as_deref())?;
    let limit = params::limit(f.limit)?;
    let after = f
        .cursor
        .as_deref()
        .map(|c| params::decode_cursor(CursorKind::CommandBatches, c))
        .transpose()?;
    let reads = state.pool().reads().await?;
    let page = reads
        .command_batch_page(&tenants, device, after, limit)
        .await?;
    let next_cursor = page
        .more
        .then(|| page.items.last())
        .flatten()
        .map(|b| params::encode_cursor(CursorKind::CommandBatches, Some(b.issued_at), b.id));
    let mut items: Vec<Batch> = page.items.into_iter().map(Batch::from).collect();
    if let Some(device) = device {
        let ids: Vec<i64> = items.iter().map(|b| b.id).collect();
        let mut commands: HashMap<i64, DeviceCommand> = reads
            .device_commands_of(&tenants, &ids, device)
            .await?
            .into_iter()
            .map(|(batch, c)| (batch, c.into()))
            .collect();
        for b in &mut items {
            b.command = commands.remove(&b.id);
        }
    }
    Ok(Json(ListPage { items, next_cursor }))
}

/// A batch with its commands counted per status.
#[utoipa::path(
    get,
    path = "/commands/{id}",
    operation_id = "get_command",
    tag = "commands",
    params(("id" = i64, Path, description = "The batch")),
    responses(
        (status = 200, description = "The batch", body = Batch),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such batch among the caller's tenants", body = ErrorBody)
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Batch>, ApiError> {
    caller.require(Permission::ReadDevices)?;
    let tenants = caller.scope(None)?;
    let batch = state
        .pool()
        .reads()
        .await?
        .command_batch(&tenants, id)
        .await?;
    Ok(Json(batch.into()))
}

/// One device's command of a batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceCommand {
    /// The command's id (the device echoes it in its answer).
    pub id: String,
    pub device_id: i32,
    /// The device's inventory id.
    pub device: String,
    pub kind: String,
    /// pending, sent, acked, rejected, failed or expired.
    pub status: String,
    /// When the broker took it.
    pub sent_at: Option<DateTime<Utc>>,
    /// When the device answered (its time).
    pub acked_at: Option<DateTime<Utc>>,
    /// Times it was published.
    pub attempts: i32,
    /// What the device said with its answer.
    pub detail: Option<String>,
    /// What this device was sent (`action` and its fields, such as a lamp's `on` and
    /// `dim`; `id` and `ts` are added when sent).
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
}

impl From<BatchCommandRow> for DeviceCommand {
    fn from(c: BatchCommandRow) -> DeviceCommand {
        DeviceCommand {
            id: c.id,
            device_id: c.device_id,
            device: c.ext_id,
            kind: c.kind,
            status: c.status,
            sent_at: c.sent_at,
            acked_at: c.acked_at,
            attempts: c.attempts,
            detail: c.detail,
            body: c.body,
        }
    }
}

/// Filters and paging of a batch's commands.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BatchDeviceFilter {
    /// pending, sent, acked, rejected, failed or expired.
    pub status: Option<String>,
    /// Items per page: 1 to 1000, 100 when absent.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A batch's commands, one per device, by device id.
#[utoipa::path(
    get,
    path = "/commands/{id}/devices",
    operation_id = "list_command_devices",
    tag = "commands",
    params(("id" = i64, Path, description = "The batch"), BatchDeviceFilter),
    responses(
        (status = 200, description = "A page of per-device commands", body = ListPage<DeviceCommand>),
        (status = 400, description = "A parameter is not valid", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such batch among the caller's tenants", body = ErrorBody)
    )
)]
pub async fn devices(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(f): ApiQuery<BatchDeviceFilter>,
) -> Result<Json<ListPage<DeviceCommand>>, ApiError> {
    caller.require(Permission::ReadDevices)?;
    let tenants = caller.scope(None)?;
    let limit = params::limit(f.limit)?;
    let status = params::named::<CommandStatus>("status", f.status.as_deref())?;
    let after = f
        .cursor
        .as_deref()
        .map(|c| params::decode_cursor(CursorKind::BatchDevices, c))
        .transpose()?
        .map(|(_, id)| {
            i32::try_from(id).map_err(|_| {
                ApiError::bad_request(
                    "cursor is not one this list gave out; start again without it",
                )
            })
        })
        .transpose()?;
    let page = state
        .pool()
        .reads()
        .await?
        .batch_command_page(&tenants, id, status, after, limit)
        .await?;
    let next_cursor = page
        .more
        .then(|| page.items.last())
        .flatten()
        .map(|c| params::encode_cursor(CursorKind::BatchDevices, None, i64::from(c.device_id)));
    Ok(Json(ListPage {
        items: page.items.into_iter().map(DeviceCommand::from).collect(),
        next_cursor,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn expiries_are_bounded() {
        let now = at("2026-03-01T00:00:00Z");
        assert_eq!(expiry(None, None, now).unwrap(), at("2026-03-01T00:15:00Z"));
        assert_eq!(
            expiry(Some(60), None, now).unwrap(),
            at("2026-03-01T00:01:00Z")
        );
        assert_eq!(
            expiry(None, Some("2026-03-01T02:00:00Z"), now).unwrap(),
            at("2026-03-01T02:00:00Z")
        );
        for (s, t, why) in [
            (Some(5), None, "10 seconds to 24 hours"),
            (Some(90_000), None, "10 seconds to 24 hours"),
            (None, Some("2026-02-28T00:00:00Z"), "not in -86400 seconds"),
            (Some(60), Some("2026-03-01T02:00:00Z"), "not both"),
            (None, Some("soon"), "RFC 3339"),
        ] {
            let e = expiry(s, t, now).unwrap_err();
            assert!(e.message().contains(why), "{}", e.message());
        }
    }

    #[test]
    fn targets_are_checked() {
        assert!(target(&Target::Devices(vec![])).is_err());
        assert!(target(&Target::Polygon(vec![[0.0, 0.0], [1.0, 1.0]])).is_err());
        let e = target(&Target::Polygon(vec![[0.0, 0.0], [200.0, 1.0], [1.0, 0.0]])).unwrap_err();
        assert!(e.message().contains("[200, 1]"), "{}", e.message());
        assert_eq!(
            target(&Target::Devices(vec!["b".into(), "a".into(), "b".into()])).unwrap(),
            CommandTarget::Devices(vec!["a".into(), "b".into()])
        );
        assert!(target(&Target::Device(String::new())).is_err());
    }
}

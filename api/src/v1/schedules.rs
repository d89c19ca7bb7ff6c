//! Lighting schedules and overrides. A change pushes `set_schedule` to exactly the lamps
//! whose profile changed, through command batches (origin `schedule`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use store::{NewSchedule, Pushed, ScheduleRow, ScheduleScope};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::caller::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::params::{self, CursorKind};
use crate::roles::Permission;
use crate::v1::commands::one_tenant;
use crate::v1::{ListPage, TenantPage};
use crate::AppState;

/// The longest an override may hold.
pub const MAX_OVERRIDE_DAYS: i64 = 30;
/// Dimming steps a profile may carry.
const MAX_STEPS: usize = 8;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, add))
        .routes(routes!(remove))
}

/// What a schedule covers: one of these keys, or nothing for the whole tenant.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleTarget {
    District(String),
    /// The lamps a cabinet feeds.
    Cabinet(String),
    /// Lamps by inventory id (up to 10000).
    Devices(Vec<String>),
}

/// A part-night step: another level between two times of local solar time.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// `HH:MM`.
    pub from: String,
    /// `HH:MM` (may be before `from`: the step runs over midnight).
    pub to: String,
    /// 0 to 100; 0 switches the lamp off.
    pub dim: f64,
}

/// A lamp's profile: civil dusk + `dusk_offset_min` to civil dawn + `dawn_offset_min` at
/// `dim`, with part-night steps. Every field is optional.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Minutes after civil dusk to switch on (-180 to 180, default 0).
    #[serde(
        default,
        deserialize_with = "crate::extract::not_null",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub dusk_offset_min: Option<f64>,
    /// Minutes after civil dawn to switch off (-180 to 180, default 0).
    #[serde(
        default,
        deserialize_with = "crate::extract::not_null",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub dawn_offset_min: Option<f64>,
    /// Output in percent while burning (default 100).
    #[serde(
        default,
        deserialize_with = "crate::extract::not_null",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub dim: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
}

impl Profile {
    fn check(&self) -> Result<(), ApiError> {
        for (name, v) in [
            ("dusk_offset_min", self.dusk_offset_min),
            ("dawn_offset_min", self.dawn_offset_min),
        ] {
            if let Some(v) = v.filter(|v| !(-180.0..=180.0).contains(v)) {
                return Err(ApiError::bad_request(format!(
                    "profile.{name} is minutes from -180 to 180, not {v}"
                )));
            }
        }
        let dims = self.dim.into_iter().chain(self.steps.iter().map(|s| s.dim));
        if let Some(d) = dims.into_iter().find(|d| !(0.0..=100.0).contains(d)) {
            return Err(ApiError::bad_request(format!(
                "profile dim is a percentage from 0 to 100, not {d}"
            )));
        }
        if self.steps.len() > MAX_STEPS {
            return Err(ApiError::bad_request(format!(
                "a profile has at most {MAX_STEPS} steps, not {}",
                self.steps.len()
            )));
        }
        for t in self.steps.iter().flat_map(|s| [&s.from, &s.to]) {
            if !hhmm(t) {
                return Err(ApiError::bad_request(format!(
                    "profile step times are HH:MM (00:00 to 23:59), not `{t}`"
                )));
            }
        }
        Ok(())
    }
}

fn hhmm(t: &str) -> bool {
    let Some((h, m)) = t.split_once(':') else {
        return false;
    };
    h.len() == 2
        && m.len() == 2
        && h.parse::<u32>().is_ok_and(|h| h < 24)
        && m.parse::<u32>().is_ok_and(|m| m < 60)
}

/// A schedule (or override) to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// The tenant (slug); may be left out by a caller who has one tenant only.
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    #[schema(nullable = false)]
    pub tenant: Option<String>,
    /// What it covers; absent for every lamp of the tenant.
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    #[schema(nullable = false)]
    pub target: Option<ScheduleTarget>,
    pub profile: Profile,
    /// Makes it an override, ahead of every schedule, until this time (RFC 3339, at most
    /// 30 days ahead); the lamps then go back to the schedule underneath.
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    #[schema(format = DateTime, nullable = false)]
    pub expires: Option<String>,
}

/// A schedule as stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct Schedule {
    pub id: i64,
    pub tenant: String,
    /// tenant, district, cabinet or devices.
    pub scope: String,
    /// The district or cabinet.
    pub target: Option<String>,
    pub devices: Option<Vec<String>>,
    #[schema(value_type = Object)]
    pub profile: serde_json::Value,
    /// An override (until `expires`).
    #[serde(rename = "override")]
    pub is_override: bool,
    pub expires: Option<DateTime<Utc>>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub removed_at: Option<DateTime<Utc>>,
    pub removed_by: Option<String>,
}

impl From<ScheduleRow> for Schedule {
    fn from(s: ScheduleRow) -> Schedule {
        Schedule {
            id: s.id,
            tenant: s.tenant,
            scope: s.scope,
            target: s.target,
            devices: s.devices,
            profile: s.profile,
            is_override: s.is_override,
            expires: s.expires_at,
            created_by: s.created_by,
            created_at: s.created_at,
            removed_at: s.removed_at,
            removed_by: s.removed_by,
        }
    }
}

/// A schedule change and the `set_schedule` pushes it caused.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleChange {
    pub schedule: Schedule,
    /// Command batches pushing the new profiles (see /api/v1/commands/{id}).
    pub batches: Vec<i64>,
    /// Lamps whose profile changed.
    pub devices: usize,
}

fn change(row: ScheduleRow, pushed: Pushed) -> ScheduleChange {
    ScheduleChange {
        schedule: row.into(),
        batches: pushed.batches,
        devices: pushed.devices,
    }
}

/// Adds a schedule or an override; pushes the lamps whose profile changed.
#[utoipa::path(
    post,
    path = "/schedules",
    operation_id = "add_schedule",
    tag = "schedules",
    request_body = ScheduleRequest,
    responses(
        (status = 201, description = "Added; the pushes it caused", body = ScheduleChange),
        (status = 400, description = "The profile, target or expiry is not valid", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role may not change lighting schedules", body = ErrorBody),
        (status = 404, description = "No such tenant, district, cabinet or lamp among the caller's", body = ErrorBody)
    )
)]
pub async fn add(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(r): ApiJson<ScheduleRequest>,
) -> Result<(StatusCode, Json<ScheduleChange>), ApiError> {
    caller.require(Permission::ManageSchedules)?;
    let tenant = one_tenant(&caller, r.tenant.as_deref())?;
    r.profile.check()?;
    let now = state.now().to_datetime();
    let expires_at = params::time("expires", r.expires.as_deref())?;
    if let Some(e) = expires_at {
        if e <= now || e > now + Duration::days(MAX_OVERRIDE_DAYS) {
            return Err(ApiError::bad_request(format!(
                "an override ends after now and at most {MAX_OVERRIDE_DAYS} days ahead"
            )));
        }
    }
    let scope = match r.target {
        None => ScheduleScope::Tenant,
        Some(ScheduleTarget::District(d)) => ScheduleScope::District(
            params::short("target.district", Some(&d))?
                .unwrap_or_default()
                .to_owned(),
        ),
        Some(ScheduleTarget::Cabinet(c)) => ScheduleScope::Cabinet(
            params::short("target.cabinet", Some(&c))?
                .unwrap_or_default()
                .to_owned(),
        ),
        Some(ScheduleTarget::Devices(list)) => {
            match crate::v1::commands::target(&crate::v1::commands::Target::Devices(list))? {
                store::CommandTarget::Devices(ids) => ScheduleScope::Devices(ids),
                _ => ScheduleScope::Tenant,
            }
        }
    };
    let profile = serde_json::to_value(&r.profile)
        .map_err(|e| ApiError::internal("reading the profile", &e))?;
    let by = caller.actor();
    let (row, pushed) = state
        .pool()
        .actions()
        .await?
        .add_schedule(&NewSchedule {
            tenant_id: tenant,
            scope,
            profile,
            expires_at,
            by: &by,
            at: now,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(change(row, pushed))))
}

/// Removes a schedule or ends an override now; pushes the lamps whose profile changed.
#[utoipa::path(
    delete,
    path = "/schedules/{id}",
    operation_id = "remove_schedule",
    tag = "schedules",
    params(("id" = i64, Path, description = "The schedule")),
    responses(
        (status = 200, description = "Removed; the pushes it caused", body = ScheduleChange),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role may not change lighting schedules", body = ErrorBody),
        (status = 404, description = "No such schedule among the caller's tenants", body = ErrorBody),
        (status = 409, description = "Already removed", body = ErrorBody)
    )
)]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ScheduleChange>, ApiError> {
    caller.require(Permission::ManageSchedules)?;
    let tenants = caller.scope(None)?;
    let by = caller.actor();
    let (row, pushed) = state
        .pool()
        .actions()
        .await?
        .remove_schedule(&tenants, id, &by, state.now().to_datetime())
        .await?;
    Ok(Json(change(row, pushed)))
}

/// The live schedules and overrides of the caller's tenants, newest first.
#[utoipa::path(
    get,
    path = "/schedules",
    operation_id = "list_schedules",
    tag = "schedules",
    params(TenantPage),
    responses(
        (status = 200, description = "A page of schedules", body = ListPage<Schedule>),
        (status = 400, description = "A parameter is not valid", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "The tenant named is not one of the caller's", body = ErrorBody)
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(f): ApiQuery<TenantPage>,
) -> Result<Json<ListPage<Schedule>>, ApiError> {
    caller.require(Permission::ReadDevices)?;
    let tenants = caller.scope(f.tenant.as_deref())?;
    let limit = params::limit(f.limit)?;
    let after = f
        .cursor
        .as_deref()
        .map(|c| params::decode_cursor(CursorKind::Schedules, c))
        .transpose()?
        .map(|(_, id)| id);
    let page = state
        .pool()
        .reads()
        .await?
        .schedule_page(&tenants, after, limit)
        .await?;
    let next_cursor = page
        .more
        .then(|| page.items.last())
        .flatten()
        .map(|s| params::encode_cursor(CursorKind::Schedules, None, s.id));
    Ok(Json(ListPage {
        items: page.items.into_iter().map(Schedule::from).collect(),
        next_cursor,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(v: serde_json::Value) -> Result<(), String> {
        let p: Profile = serde_json::from_value(v).map_err(|e| e.to_string())?;
        p.check().map_err(|e| e.message().to_owned())
    }

    #[test]
    fn profiles_are_checked() {
        assert_eq!(profile(serde_json::json!({})), Ok(()));
        assert_eq!(
            profile(serde_json::json!({"dusk_offset_min": -15, "dim": 80,
                "steps": [{"from": "23:30", "to": "05:00", "dim": 40}]})),
            Ok(())
        );
        for (bad, why) in [
            (serde_json::json!({"dim": 120}), "0 to 100, not 120"),
            (
                serde_json::json!({"dawn_offset_min": 300}),
                "dawn_offset_min",
            ),
            (
                serde_json::json!({"steps": [{"from": "24:00", "to": "01:00", "dim": 5}]}),
                "`24:00`",
            ),
            (
                serde_json::json!({"steps": [{"from": "1:00", "to": "02:00", "dim": 5}]}),
                "`1:00`",
            ),
            (serde_json::json!({"colour": "red"}), "unknown field"),
        ] {
            let e = profile(bad.clone()).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}

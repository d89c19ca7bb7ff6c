//! Reports over the caller's tenants: how the teams meet their deadlines, the work orders
//! that broke them, and the alarm load on the control room.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use store::{AlarmReport, BadActor, KindCount, TeamReport};
use utoipa::{IntoParams, ToSchema};

use crate::caller::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiQuery;
use crate::params;
use crate::roles::Permission;
use crate::v1::work_orders::WorkOrder;
use crate::AppState;

/// The most bad actors an alarm report lists.
const MAX_TOP: usize = 100;

/// A period and the tenant it covers.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PeriodFilter {
    /// Start (RFC 3339); by default 30 days before `to`.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// End (RFC 3339), at most 400 days after `from`; by default now.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// A tenant slug (one of the caller's); all of them by default.
    pub tenant: Option<String>,
}

/// One team's work orders opened in the period.
#[derive(Debug, Serialize, ToSchema)]
pub struct TeamLine {
    pub team: String,
    pub total: i64,
    pub done_on_time: i64,
    pub done_late: i64,
    /// Not done, past the deadline.
    pub open_overdue: i64,
    /// Not done, deadline still ahead.
    pub open_in_time: i64,
    /// Reopened at least once (the fault came back after "done").
    pub reopened: i64,
}

impl From<TeamReport> for TeamLine {
    fn from(t: TeamReport) -> TeamLine {
        TeamLine {
            team: t.team,
            total: t.total,
            done_on_time: t.done_on_time,
            done_late: t.done_late,
            open_overdue: t.open_overdue,
            open_in_time: t.open_in_time,
            reopened: t.reopened,
        }
    }
}

/// Per team, the work orders opened in a period against their deadlines.
#[derive(Debug, Serialize, ToSchema)]
pub struct TeamsReport {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub teams: Vec<TeamLine>,
}

/// How the teams meet their deadlines.
#[utoipa::path(
    get,
    path = "/reports/teams",
    operation_id = "team_report",
    tag = "reports",
    params(PeriodFilter),
    responses(
        (status = 200, description = "Per team: on time, late, overdue, reopened", body = TeamsReport),
        (status = 400, description = "The period is not valid", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role may not read reports (crew)", body = ErrorBody),
        (status = 404, description = "The tenant named is not one of the caller's", body = ErrorBody)
    )
)]
pub async fn teams(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(f): ApiQuery<PeriodFilter>,
) -> Result<Json<TeamsReport>, ApiError> {
    caller.require(Permission::ReadReports)?;
    let tenants = caller.scope(f.tenant.as_deref())?;
    let now = state.now().to_datetime();
    let (from, to) =
        params::report_range(f.from.as_deref(), f.to.as_deref(), now, Duration::days(30))?;
    let db = state.read_pool().reads().await?;
    let teams = db.team_report_for(&tenants, from, to, now).await?;
    Ok(Json(TeamsReport {
        from,
        to,
        teams: teams.into_iter().map(TeamLine::from).collect(),
    }))
}

/// Which breaches to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BreachFilter {
    /// A tenant slug (one of the caller's); all of them by default.
    pub tenant: Option<String>,
    /// At most this many (1 to 1000, 100 by default), earliest deadline first.
    pub limit: Option<i64>,
}

/// Work orders past their deadline.
#[derive(Debug, Serialize, ToSchema)]
pub struct BreachReport {
    /// The time the deadlines were judged at.
    pub now: DateTime<Utc>,
    pub items: Vec<WorkOrder>,
    /// More breaches than `limit` exist.
    pub truncated: bool,
}

/// Work orders that broke their deadline: done late, or not done and overdue.
#[utoipa::path(
    get,
    path = "/reports/sla-breaches",
    operation_id = "sla_breaches",
    tag = "reports",
    params(BreachFilter),
    responses(
        (status = 200, description = "Breaches, earliest deadline first", body = BreachReport),
        (status = 400, description = "The limit is not valid", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role may not read reports (crew)", body = ErrorBody),
        (status = 404, description = "The tenant named is not one of the caller's", body = ErrorBody)
    )
)]
pub async fn sla_breaches(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(f): ApiQuery<BreachFilter>,
) -> Result<Json<BreachReport>, ApiError> {
    caller.require(Permission::ReadReports)?;
    let tenants = caller.scope(f.tenant.as_deref())?;
    let limit = params::limit(f.limit)?;
    let now = state.now().to_datetime();
    let db = state.read_pool().reads().await?;
    let mut items = db.sla_breaches_for(&tenants, now, limit + 1).await?;
    let truncated = items.len() as i64 > limit;
    items.truncate(usize::try_from(limit).unwrap_or(0));
    Ok(Json(BreachReport {
        now,
        items: items
            .into_iter()
            .map(|w| WorkOrder::seen_by(w, caller.role))
            .collect(),
        truncated,
    }))
}

/// The period, tenant and length of an alarm report.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlarmFilter {
    /// Start (RFC 3339); by default 24 hours before `to`.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// End (RFC 3339), at most 400 days after `from`; by default now.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// How many bad actors to list: 1 to 100, 10 by default.
    pub top: Option<usize>,
    /// A tenant slug (one of the caller's); all of them by default.
    pub tenant: Option<String>,
}

/// Outages of one kind opened in the period.
#[derive(Debug, Serialize, ToSchema)]
pub struct KindLine {
    pub kind: String,
    pub opened: i64,
    pub occurrences: i64,
    pub chattering: i64,
    pub shelved: i64,
}

/// A device and kind that raised many outages.
#[derive(Debug, Serialize, ToSchema)]
pub struct BadActorLine {
    /// The device's tenant (slug).
    pub tenant: String,
    pub device: String,
    pub device_id: i32,
    pub kind: String,
    pub outages: i64,
    pub occurrences: i64,
}

/// A 10-minute window with more outages opened than an operator can handle.
#[derive(Debug, Serialize, ToSchema)]
pub struct Flood {
    pub start: DateTime<Utc>,
    pub opened: i64,
}

/// Outages opened on one UTC day.
#[derive(Debug, Serialize, ToSchema)]
pub struct DayLine {
    /// The day's start (00:00 UTC).
    pub day: DateTime<Utc>,
    pub opened: i64,
}

/// The alarm load of a period (after ISA-18.2).
#[derive(Debug, Serialize, ToSchema)]
pub struct AlarmLoad {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub per_kind: Vec<KindLine>,
    /// Outages opened per UTC day, for the days that had any, oldest first.
    pub per_day: Vec<DayLine>,
    /// The most outages opened in one 10-minute window.
    pub peak_per_10min: i64,
    /// Windows over 10 outages.
    pub floods: Vec<Flood>,
    pub bad_actors: Vec<BadActorLine>,
}

impl AlarmLoad {
    fn new(from: DateTime<Utc>, to: DateTime<Utc>, r: AlarmReport) -> AlarmLoad {
        AlarmLoad {
            from,
            to,
            per_kind: r
                .per_kind
                .into_iter()
                .map(|k: KindCount| KindLine {
                    kind: k.kind,
                    opened: k.opened,
                    occurrences: k.occurrences,
                    chattering: k.chattering,
                    shelved: k.shelved,
                })
                .collect(),
            per_day: r
                .per_day
                .into_iter()
                .map(|(day, opened)| DayLine { day, opened })
                .collect(),
            peak_per_10min: r.peak_per_10min,
            floods: r
                .flood_windows
                .into_iter()
                .map(|(start, opened)| Flood { start, opened })
                .collect(),
            bad_actors: r
                .bad_actors
                .into_iter()
                .map(|b: BadActor| BadActorLine {
                    tenant: b.tenant,
                    device: b.ext_id,
                    device_id: b.device_id,
                    kind: b.kind,
                    outages: b.outages,
                    occurrences: b.occurrences,
                })
                .collect(),
        }
    }
}

/// The alarm load on the control room: per kind, floods, the assets raising most.
#[utoipa::path(
    get,
    path = "/reports/alarms",
    operation_id = "alarm_report",
    tag = "reports",
    params(AlarmFilter),
    responses(
        (status = 200, description = "The alarm load", body = AlarmLoad),
        (status = 400, description = "The period or `top` is not valid", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role may not read reports (crew)", body = ErrorBody),
        (status = 404, description = "The tenant named is not one of the caller's", body = ErrorBody)
    )
)]
pub async fn alarms(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(f): ApiQuery<AlarmFilter>,
) -> Result<Json<AlarmLoad>, ApiError> {
    caller.require(Permission::ReadReports)?;
    let tenants = caller.scope(f.tenant.as_deref())?;
    let top = f.top.unwrap_or(10);
    if !(1..=MAX_TOP).contains(&top) {
        return Err(ApiError::bad_request(format!(
            "top must be between 1 and {MAX_TOP}, not {top}"
        )));
    }
    let now = state.now().to_datetime();
    let (from, to) =
        params::report_range(f.from.as_deref(), f.to.as_deref(), now, Duration::hours(24))?;
    let db = state.read_pool().reads().await?;
    let report = db.alarm_report_for(&tenants, from, to, top).await?;
    Ok(Json(AlarmLoad::new(from, to, report)))
}

/// The tenant, district and days of an energy report.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EnergyFilter {
    /// A tenant slug (one of the caller's); all of them by default.
    pub tenant: Option<String>,
    /// One district; all by default.
    pub district: Option<String>,
    /// Start (RFC 3339), rounded down to its UTC day; by default 30 days before `to`.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// End (RFC 3339), rounded up to a UTC day; by default now.
    #[param(format = DateTime)]
    pub to: Option<String>,
}

/// Lamp energy of one district on one UTC day.
#[derive(Debug, Serialize, ToSchema)]
pub struct EnergyLine {
    pub tenant: String,
    pub district: Option<String>,
    pub day: DateTime<Utc>,
    pub energy_kwh: f64,
    pub burning_hours: f64,
    /// Lamps with readings that day.
    pub lamps_reporting: i64,
    /// What those lamps would have used at rated power for the hours they burned (the
    /// saving from dimming is the difference); absent without rated powers.
    pub rated_kwh: Option<f64>,
}

/// Lamp energy and burning hours per district and day.
#[derive(Debug, Serialize, ToSchema)]
pub struct EnergyReport {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The daily figures hold readings up to this time (the rollups' progress); later
    /// readings count once rolled up, within a minute or so.
    pub complete_until: Option<DateTime<Utc>>,
    pub days: Vec<EnergyLine>,
}

/// Lamp energy (kWh) and burning hours per district and UTC day, from the daily rollups.
#[utoipa::path(
    get,
    path = "/reports/energy",
    operation_id = "energy_report",
    tag = "reports",
    params(EnergyFilter),
    responses(
        (status = 200, description = "Per district and day: energy, burning hours, lamps reporting", body = EnergyReport),
        (status = 400, description = "The period or district is not valid", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role may not read reports (crew)", body = ErrorBody),
        (status = 404, description = "The tenant named is not one of the caller's", body = ErrorBody)
    )
)]
pub async fn energy(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(f): ApiQuery<EnergyFilter>,
) -> Result<Json<EnergyReport>, ApiError> {
    caller.require(Permission::ReadReports)?;
    let tenants = caller.scope(f.tenant.as_deref())?;
    let district = params::short("district", f.district.as_deref())?;
    let now = state.now().to_datetime();
    let (from, to) =
        params::report_range(f.from.as_deref(), f.to.as_deref(), now, Duration::days(30))?;
    let day = store::history::Bucket::Day;
    let (from, to) = (
        day.floor(from),
        day.floor(to - Duration::microseconds(1)) + Duration::days(1),
    );
    params::range(from, to)?;
    let db = state.read_pool().reads().await?;
    let complete_until = db
        .rollups_complete_before()
        .await?
        .filter(|t| *t != DateTime::<Utc>::MAX_UTC);
    let days = db.energy_report(&tenants, district, from, to).await?;
    Ok(Json(EnergyReport {
        from,
        to,
        complete_until,
        days: days
            .into_iter()
            .map(|d| EnergyLine {
                tenant: d.tenant,
                district: d.district,
                day: d.day,
                energy_kwh: d.energy_kwh,
                burning_hours: d.burning_hours,
                lamps_reporting: d.lamps_reporting,
                rated_kwh: d.rated_kwh,
            })
            .collect(),
    }))
}

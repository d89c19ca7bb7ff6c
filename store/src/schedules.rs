//! Lighting schedules and overrides, and the `set_schedule` pushes they cause.
//!
//! A lamp follows one profile: among the live schedules that cover it, an override first,
//! then the most specific scope (devices, cabinet, district, tenant), then the newest; no
//! schedule means the default profile (`{}`: civil dusk to dawn at full output). Every
//! change (a schedule added or removed, an override's end) computes each lamp's profile
//! before and after inside its transaction, and the lamps whose profile changed get a
//! `set_schedule` command batch (origin `schedule`), with the change's audit entry, in that
//! same transaction. A newer push supersedes an undelivered older one (it expires).

use crate::handles::{Actions, Dispatch, Reads};
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use tokio_postgres::{Row, Transaction};

use crate::audit::{append, AuditEntry};
use crate::command_batches::{insert_batch, reach, CommandTarget};
use crate::listings::Page;
use crate::profiles::profiles;
use crate::StoreError;

/// What a schedule covers.
#[derive(Debug, Clone, PartialEq)]
pub enum ScheduleScope {
    Tenant,
    District(String),
    Cabinet(String),
    Devices(Vec<String>),
}

/// A schedule to add.
#[derive(Debug, Clone)]
pub struct NewSchedule<'a> {
    pub tenant_id: i32,
    pub scope: ScheduleScope,
    /// The set_schedule fields (dusk_offset_min, dawn_offset_min, dim, steps).
    pub profile: serde_json::Value,
    /// When set, an override that takes precedence until then.
    pub expires_at: Option<DateTime<Utc>>,
    pub by: &'a str,
    pub at: DateTime<Utc>,
}

/// A schedule as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRow {
    pub id: i64,
    pub tenant: String,
    pub scope: String,
    pub target: Option<String>,
    pub devices: Option<Vec<String>>,
    pub profile: serde_json::Value,
    pub is_override: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub removed_at: Option<DateTime<Utc>>,
    pub removed_by: Option<String>,
}

/// The pushes a change caused.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pushed {
    /// Batch ids, one per distinct new profile.
    pub batches: Vec<i64>,
    /// Lamps whose profile changed.
    pub devices: usize,
}

const COLUMNS: &str = "s.id, t.slug, s.scope, s.target, s.devices, s.profile, s.override,
    s.expires_at, s.created_by, s.created_at, s.removed_at, s.removed_by";

fn schedule_row(r: &Row) -> ScheduleRow {
    ScheduleRow {
        id: r.get(0),
        tenant: r.get(1),
        scope: r.get(2),
        target: r.get(3),
        devices: r.get(4),
        profile: r.get(5),
        is_override: r.get(6),
        expires_at: r.get(7),
        created_by: r.get(8),
        created_at: r.get(9),
        removed_at: r.get(10),
        removed_by: r.get(11),
    }
}

/// The first of the advisory locks that serialize a tenant's schedule changes (the
/// second is the tenant's id).
const SCHEDULES_LOCK: i32 = 727_276;

/// Waits until no other change of `tenant`'s schedules is under way, and keeps the others
/// waiting until this transaction ends. Each change compares the lamps' profiles before
/// and after it: two at once would each miss the other's schedule, and the lamps would get
/// the profile of whichever committed last, not the one in force. The statements after
/// the lock see every change committed before it.
async fn lock_tenant(tx: &Transaction<'_>, tenant: i32) -> Result<(), StoreError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&SCHEDULES_LOCK, &tenant],
    )
    .await
    .map_err(StoreError::db("waiting for another schedule change"))?;
    Ok(())
}

/// Pushes `set_schedule` to the lamps whose profile differs between `before` and now;
/// one batch per new profile.
async fn push_changes(
    tx: &Transaction<'_>,
    tenant: i32,
    before: &HashMap<i32, Option<serde_json::Value>>,
    schedule: i64,
    by: &str,
    at: DateTime<Utc>,
) -> Result<Pushed, StoreError> {
    let after = profiles(tx, tenant).await?;
    // Profiles as text so they can key a map; jsonb gives them in a canonical order.
    let mut by_profile: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (device, profile) in &after {
        if before.get(device) != Some(profile) {
            let key = profile.clone().unwrap_or_else(|| json!({})).to_string();
            by_profile.entry(key).or_default().push(*device);
        }
    }
    let mut pushed = Pushed::default();
    for (profile, mut devices) in by_profile {
        devices.sort_unstable();
        // An older push not yet delivered is superseded: it expires now.
        tx.execute(
            "UPDATE commands SET expires_at = $2
             WHERE device_id = ANY($1) AND action = 'set_schedule' AND status = $3",
            &[&devices, &at, &model::CommandStatus::Pending.as_str()],
        )
        .await
        .map_err(StoreError::db("superseding older schedule pushes"))?;
        let mut body: serde_json::Value =
            serde_json::from_str(&profile).unwrap_or_else(|_| json!({}));
        body["action"] = json!("set_schedule");
        let id = insert_batch(
            tx,
            tenant,
            &json!({ "schedule": schedule }),
            "set_schedule",
            &body,
            at,
            None,
            by,
            None,
            "schedule",
            &devices,
            &[],
        )
        .await?;
        pushed.batches.push(id);
        pushed.devices += devices.len();
    }
    Ok(pushed)
}

async fn read(tx: &Transaction<'_>, id: i64) -> Result<ScheduleRow, StoreError> {
    let row = tx
        .query_one(
            &format!(
                "SELECT {COLUMNS} FROM lighting_schedules s JOIN tenants t ON t.id = s.tenant_id
                 WHERE s.id = $1"
            ),
            &[&id],
        )
        .await
        .map_err(StoreError::db("reading a schedule"))?;
    Ok(schedule_row(&row))
}

fn audit_detail(s: &ScheduleRow, pushed: &Pushed) -> serde_json::Value {
    json!({
        "tenant": s.tenant,
        "scope": s.scope,
        "target": s.target,
        "devices": s.devices,
        "profile": s.profile,
        "override_until": s.expires_at.map(|e| e.to_rfc3339_opts(SecondsFormat::Secs, true)),
        "pushed_to": pushed.devices,
        "batches": pushed.batches,
    })
}

impl Actions {
    /// Adds a schedule (or an override), pushes the lamps whose profile changed, and
    /// audits it (`schedule.add`), in one transaction. A district, cabinet or device that
    /// is not the tenant's is unknown.
    pub async fn add_schedule(
        &mut self,
        s: &NewSchedule<'_>,
    ) -> Result<(ScheduleRow, Pushed), StoreError> {
        let tx = self
            .client_mut()
            .transaction()
            .await
            .map_err(StoreError::db("starting a schedule change"))?;
        let (scope, target, devices) = match &s.scope {
            ScheduleScope::Tenant => ("tenant", None, None),
            ScheduleScope::District(d) => {
                reach(
                    &tx,
                    s.tenant_id,
                    &CommandTarget::District(d.clone()),
                    "reboot",
                )
                .await?;
                ("district", Some(d.clone()), None)
            }
            ScheduleScope::Cabinet(c) => {
                reach(
                    &tx,
                    s.tenant_id,
                    &CommandTarget::Cabinet(c.clone()),
                    "reboot",
                )
                .await?;
                ("cabinet", Some(c.clone()), None)
            }
            ScheduleScope::Devices(list) => {
                let t = CommandTarget::Devices(list.clone());
                reach(&tx, s.tenant_id, &t, "set_schedule").await?;
                ("devices", None, Some(list.clone()))
            }
        };
        lock_tenant(&tx, s.tenant_id).await?;
        let before = profiles(&tx, s.tenant_id).await?;
        let id: i64 = tx
            .query_one(
                "INSERT INTO lighting_schedules
                     (tenant_id, scope, target, devices, profile, override, expires_at, created_by, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                &[
                    &s.tenant_id,
                    &scope,
                    &target,
                    &devices,
                    &s.profile,
                    &s.expires_at.is_some(),
                    &s.expires_at,
                    &s.by,
                    &s.at,
                ],
            )
            .await
            .map_err(StoreError::db("recording a schedule"))?
            .get(0);
        let pushed = push_changes(&tx, s.tenant_id, &before, id, s.by, s.at).await?;
        let row = read(&tx, id).await?;
        append(
            &tx,
            &AuditEntry {
                actor: s.by.to_owned(),
                action: "schedule.add".into(),
                target: format!("schedule/{id}"),
                detail: audit_detail(&row, &pushed),
            },
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a schedule change"))?;
        Ok((row, pushed))
    }

    /// Removes a live schedule of the given tenants, pushes the lamps whose profile
    /// changed, and audits it (`schedule.remove`).
    pub async fn remove_schedule(
        &mut self,
        tenants: &[i32],
        id: i64,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<(ScheduleRow, Pushed), StoreError> {
        let tx = self
            .client_mut()
            .transaction()
            .await
            .map_err(StoreError::db("starting a schedule change"))?;
        let found = tx
            .query_opt(
                "SELECT tenant_id, removed_at IS NOT NULL FROM lighting_schedules
                 WHERE id = $1 AND tenant_id = ANY($2) FOR UPDATE",
                &[&id, &tenants],
            )
            .await
            .map_err(StoreError::db("reading a schedule"))?
            .ok_or(StoreError::NoSchedule(id))?;
        let (tenant, removed): (i32, bool) = (found.get(0), found.get(1));
        if removed {
            return Err(StoreError::ScheduleRemoved(id));
        }
        let pushed = end(&tx, tenant, id, by, at, "schedule.remove").await?;
        let row = read(&tx, id).await?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a schedule change"))?;
        Ok((row, pushed))
    }
}

impl Dispatch {
    /// Ends the overrides whose expiry is at or before `now`: the lamps they held get the
    /// profile underneath pushed again. Returns how many lamps were pushed.
    pub async fn end_expired_overrides(&mut self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut lamps = 0;
        loop {
            let tx = self
                .client_mut()
                .transaction()
                .await
                .map_err(StoreError::db("starting an override's end"))?;
            let due = tx
                .query_opt(
                    "SELECT id, tenant_id, expires_at FROM lighting_schedules
                     WHERE override AND removed_at IS NULL AND expires_at <= $1
                     ORDER BY expires_at, id LIMIT 1 FOR UPDATE SKIP LOCKED",
                    &[&now],
                )
                .await
                .map_err(StoreError::db("finding expired overrides"))?;
            let Some(due) = due else {
                return Ok(lamps);
            };
            let (id, tenant, at): (i64, i32, DateTime<Utc>) = (due.get(0), due.get(1), due.get(2));
            let pushed = end(&tx, tenant, id, "cityhub", at, "schedule.expire").await?;
            lamps += pushed.devices;
            tx.commit()
                .await
                .map_err(StoreError::db("committing an override's end"))?;
        }
    }
}

impl Reads {
    /// A page of the live schedules of the given tenants, newest first.
    pub async fn schedule_page(
        &self,
        tenants: &[i32],
        after: Option<i64>,
        limit: i64,
    ) -> Result<Page<ScheduleRow>, StoreError> {
        let rows = self
            .client()
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM lighting_schedules s JOIN tenants t ON t.id = s.tenant_id
                     WHERE s.tenant_id = ANY($1) AND s.removed_at IS NULL
                       AND ($2::int8 IS NULL OR s.id < $2)
                     ORDER BY s.id DESC LIMIT $3"
                ),
                &[&tenants, &after, &(limit.max(0) + 1)],
            )
            .await
            .map_err(StoreError::db("listing schedules"))?;
        Ok(Page::from_rows(
            rows.iter().map(schedule_row).collect(),
            limit,
        ))
    }
}

/// Removes schedule `id` (of `tenant`) as of `at`, pushes the changes, audits `action`.
async fn end(
    tx: &Transaction<'_>,
    tenant: i32,
    id: i64,
    by: &str,
    at: DateTime<Utc>,
    action: &str,
) -> Result<Pushed, StoreError> {
    lock_tenant(tx, tenant).await?;
    let before = profiles(tx, tenant).await?;
    tx.execute(
        "UPDATE lighting_schedules SET removed_at = $2, removed_by = $3 WHERE id = $1",
        &[&id, &at, &by],
    )
    .await
    .map_err(StoreError::db("removing a schedule"))?;
    let pushed = push_changes(tx, tenant, &before, id, by, at).await?;
    let row = read(tx, id).await?;
    append(
        tx,
        &AuditEntry {
            actor: by.to_owned(),
            action: action.into(),
            target: format!("schedule/{id}"),
            detail: audit_detail(&row, &pushed),
        },
    )
    .await?;
    Ok(pushed)
}

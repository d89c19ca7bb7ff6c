//! Alarm hygiene: operators acknowledge and shelve outages, shelves expire, and the alarm
//! report measures the load the alarms put on operators (after ISA-18.2: alarms per
//! 10 minutes, floods, chattering alarms and the few devices that cause most of them).

use crate::handles::{Actions, Admin, Detection, Reads};
use chrono::{DateTime, DurationRound, SecondsFormat, Utc};
use model::{OutageState, Timestamp};
use tokio_postgres::Transaction;

use crate::error::named;
use crate::{Db, StoreError};

/// More outages than this opened in 10 minutes is a flood (ISA-18.2: over 10 alarms per
/// 10 minutes is more than an operator can handle).
pub const FLOOD_PER_10_MIN: i64 = 10;

/// Outages of one kind opened in a period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindCount {
    pub kind: String,
    pub opened: i64,
    /// Times the faults were seen, summed over the outages (each counts its opening).
    pub occurrences: i64,
    /// Outages flagged as chattering.
    pub chattering: i64,
    /// Outages shelved at some time.
    pub shelved: i64,
}

/// A device and kind that opened many outages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadActor {
    pub device_id: i32,
    /// The device's tenant (slug): inventory ids are unique within a tenant only.
    pub tenant: String,
    pub ext_id: String,
    pub kind: String,
    pub outages: i64,
    pub occurrences: i64,
}

/// The alarm load of a period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlarmReport {
    pub per_kind: Vec<KindCount>,
    /// The most outages opened in one 10-minute bucket (aligned to the UTC clock).
    pub peak_per_10min: i64,
    /// The buckets with more than [`FLOOD_PER_10_MIN`] outages opened: (start, count).
    pub flood_windows: Vec<(DateTime<Utc>, i64)>,
    /// Outages opened per UTC day that had any: (the day's start, count), oldest first.
    pub per_day: Vec<(DateTime<Utc>, i64)>,
    /// The devices and kinds with the most outages plus occurrences, worst first.
    pub bad_actors: Vec<BadActor>,
}

impl Actions {
    /// An operator takes note of an open outage; it stays active until it resolves.
    pub async fn acknowledge_outage(
        &mut self,
        id: i64,
        actor: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let tx = self.outage_tx().await?;
        acknowledge(&tx, id, actor, at.to_datetime()).await?;
        commit(tx).await
    }

    /// Hides an open outage from operators until `until` (a known fault waiting for its
    /// repair, say). Shelving it again moves the end.
    pub async fn shelve_outage(
        &mut self,
        id: i64,
        until: DateTime<Utc>,
        actor: &str,
        reason: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let tx = self.outage_tx().await?;
        shelve(&tx, id, until, actor, reason, at.to_datetime()).await?;
        commit(tx).await
    }

    /// Shows a shelved outage to operators again before its shelve ends.
    pub async fn unshelve_outage(
        &mut self,
        id: i64,
        actor: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let tx = self.outage_tx().await?;
        unshelve(&tx, id, actor, at.to_datetime()).await?;
        commit(tx).await
    }
}

impl Detection {
    /// Ends every shelve due by `now`, with an event each; returns how many ended.
    pub async fn unshelve_expired(&mut self, now: Timestamp) -> Result<u64, StoreError> {
        let now = now.to_datetime();
        self.client()
            .execute(
                "WITH expired AS (
                     SELECT id, shelved_until FROM outages WHERE shelved_until <= $1 FOR UPDATE
                 ), cleared AS (
                     UPDATE outages o SET shelved_until = NULL, shelved_by = NULL
                     FROM expired e WHERE o.id = e.id
                     RETURNING o.id
                 )
                 INSERT INTO outage_events (outage_id, at, actor, transition, detail)
                 SELECT e.id, $1, 'rules', 'shelve expired',
                        'shelved until ' || to_char(e.shelved_until AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
                 FROM cleared c JOIN expired e ON e.id = c.id",
                &[&now],
            )
            .await
            .map_err(StoreError::db("ending expired shelves"))
    }
}

impl Admin {
    /// The alarm load of outages opened in [`from`, `to`); `top` bad actors at most.
    pub async fn alarm_report(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        top: usize,
    ) -> Result<AlarmReport, StoreError> {
        self.alarm_report_in(None, from, to, top).await
    }
}

impl Reads {
    /// [`Db::alarm_report`] over the devices of `tenants` only.
    pub async fn alarm_report_for(
        &self,
        tenants: &[i32],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        top: usize,
    ) -> Result<AlarmReport, StoreError> {
        self.alarm_report_in(Some(tenants), from, to, top).await
    }
}

impl Db {
    /// The alarm report over `tenants`' devices, or every device when `None`.
    async fn alarm_report_in(
        &self,
        tenants: Option<&[i32]>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        top: usize,
    ) -> Result<AlarmReport, StoreError> {
        if to <= from {
            return Err(StoreError::BadPeriod { from, to });
        }
        let per_kind = self
            .client()
            .query(
                "SELECT o.kind, count(*), sum(o.occurrences)::int8, count(*) FILTER (WHERE o.chattering),
                        count(*) FILTER (WHERE EXISTS (
                            SELECT 1 FROM outage_events e WHERE e.outage_id = o.id AND e.transition = 'shelved'))
                 FROM outages o JOIN devices d ON d.id = o.device_id
                 WHERE opened_at >= $1 AND opened_at < $2 AND ($3::int4[] IS NULL OR d.tenant_id = ANY($3))
                 GROUP BY o.kind ORDER BY o.kind",
                &[&from, &to, &tenants],
            )
            .await
            .map_err(StoreError::db("counting outages per kind"))?
            .iter()
            .map(|r| KindCount {
                kind: r.get(0),
                opened: r.get(1),
                occurrences: r.get(2),
                chattering: r.get(3),
                shelved: r.get(4),
            })
            .collect();
        let buckets: Vec<(DateTime<Utc>, i64)> = self
            .client()
            .query(
                "SELECT date_bin('10 minutes', opened_at, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket, count(*)
                 FROM outages o JOIN devices d ON d.id = o.device_id
                 WHERE opened_at >= $1 AND opened_at < $2 AND ($3::int4[] IS NULL OR d.tenant_id = ANY($3))
                 GROUP BY bucket ORDER BY bucket",
                &[&from, &to, &tenants],
            )
            .await
            .map_err(StoreError::db("counting outages per 10 minutes"))?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let bad_actors = self
            .client()
            .query(
                "SELECT d.id, d.ext_id, o.kind, count(*), sum(o.occurrences)::int8, t.slug
                 FROM outages o JOIN devices d ON d.id = o.device_id
                 JOIN tenants t ON t.id = d.tenant_id
                 WHERE o.opened_at >= $1 AND o.opened_at < $2 AND ($4::int4[] IS NULL OR d.tenant_id = ANY($4))
                 GROUP BY d.id, d.ext_id, o.kind, t.slug
                 ORDER BY count(*) + sum(o.occurrences) DESC, t.slug, d.ext_id, o.kind
                 LIMIT $3",
                &[&from, &to, &i64::try_from(top).unwrap_or(i64::MAX), &tenants],
            )
            .await
            .map_err(StoreError::db("finding the devices with most outages"))?
            .iter()
            .map(|r| BadActor {
                device_id: r.get(0),
                tenant: r.get(5),
                ext_id: r.get(1),
                kind: r.get(2),
                outages: r.get(3),
                occurrences: r.get(4),
            })
            .collect();
        let mut per_day: Vec<(DateTime<Utc>, i64)> = Vec::new();
        for &(bucket, n) in &buckets {
            let day = bucket
                .duration_trunc(chrono::Duration::days(1))
                .unwrap_or(bucket);
            match per_day.last_mut() {
                Some((d, count)) if *d == day => *count += n,
                _ => per_day.push((day, n)),
            }
        }
        Ok(AlarmReport {
            per_kind,
            per_day,
            peak_per_10min: buckets.iter().map(|b| b.1).max().unwrap_or(0),
            flood_windows: buckets
                .into_iter()
                .filter(|b| b.1 > FLOOD_PER_10_MIN)
                .collect(),
            bad_actors,
        })
    }

    async fn outage_tx(&mut self) -> Result<Transaction<'_>, StoreError> {
        self.client_mut()
            .transaction()
            .await
            .map_err(StoreError::db("starting an outage update"))
    }
}

/// Acknowledges an open outage within `tx` (see [`Db::acknowledge_outage`]).
pub(crate) async fn acknowledge(
    tx: &Transaction<'_>,
    id: i64,
    actor: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (state, _) = lock_outage(tx, id).await?;
    let at = step_time(tx, id, at).await?;
    if state != OutageState::Open {
        return Err(StoreError::OutageState {
            id,
            state,
            action: "acknowledged",
        });
    }
    tx.execute(
        "UPDATE outages SET state = $4, acknowledged_by = $2, acknowledged_at = $3 WHERE id = $1",
        &[&id, &actor, &at, &OutageState::Acknowledged.as_str()],
    )
    .await
    .map_err(StoreError::db("acknowledging an outage"))?;
    record_event(tx, id, at, actor, "acknowledged", None).await
}

/// Shelves an active outage within `tx` (see [`Db::shelve_outage`]).
pub(crate) async fn shelve(
    tx: &Transaction<'_>,
    id: i64,
    until: DateTime<Utc>,
    actor: &str,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    if until <= at {
        return Err(StoreError::ShelveInPast { until, at });
    }
    let (state, _) = lock_outage(tx, id).await?;
    let at = step_time(tx, id, at).await?;
    if !state.active() {
        return Err(StoreError::OutageState {
            id,
            state,
            action: "shelved",
        });
    }
    tx.execute(
        "UPDATE outages SET shelved_until = $2, shelved_by = $3 WHERE id = $1",
        &[&id, &until, &actor],
    )
    .await
    .map_err(StoreError::db("shelving an outage"))?;
    let detail = format!(
        "until {}: {reason}",
        until.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    );
    record_event(tx, id, at, actor, "shelved", Some(&detail)).await
}

/// Ends a shelve within `tx` (see [`Db::unshelve_outage`]).
pub(crate) async fn unshelve(
    tx: &Transaction<'_>,
    id: i64,
    actor: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (_, shelved_until) = lock_outage(tx, id).await?;
    let at = step_time(tx, id, at).await?;
    if shelved_until.is_none() {
        return Err(StoreError::NotShelved(id));
    }
    tx.execute(
        "UPDATE outages SET shelved_until = NULL, shelved_by = NULL WHERE id = $1",
        &[&id],
    )
    .await
    .map_err(StoreError::db("unshelving an outage"))?;
    record_event(tx, id, at, actor, "unshelved", None).await
}

/// Locks an outage for the transaction; its state and shelve end.
async fn lock_outage(
    tx: &Transaction<'_>,
    id: i64,
) -> Result<(OutageState, Option<DateTime<Utc>>), StoreError> {
    let row = tx
        .query_opt(
            "SELECT state, shelved_until FROM outages WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await
        .map_err(StoreError::db("reading an outage"))?
        .ok_or(StoreError::NoOutage(id))?;
    Ok((
        named(&row, 0, "outage state", OutageState::parse)?,
        row.get(1),
    ))
}

/// When a person's step on the locked outage `id`, asked for at `at`, is recorded: then,
/// or at the outage's last recorded step if that is later. Two people acting at once
/// each asked at their own moment, but the lock lets one through first; the other's step
/// comes after it, and the outage's events stay in time order (the database refuses
/// them otherwise).
pub(crate) async fn step_time(
    tx: &Transaction<'_>,
    id: i64,
    at: DateTime<Utc>,
) -> Result<DateTime<Utc>, StoreError> {
    no_earlier_than_last(tx, "SELECT last_step($1)", id, at).await
}

/// `at`, or the time `last` (a query of one timestamp, given `$1` = `id`) answers if that
/// is later: a step recorded after another in time order.
pub(crate) async fn no_earlier_than_last(
    tx: &Transaction<'_>,
    last: &str,
    id: i64,
    at: DateTime<Utc>,
) -> Result<DateTime<Utc>, StoreError> {
    let last: Option<DateTime<Utc>> = tx
        .query_one(last, &[&id])
        .await
        .map_err(StoreError::db("reading the last recorded step"))?
        .get(0);
    Ok(last.map_or(at, |l| l.max(at)))
}

/// An `outage_events` row: who did what to an outage, when.
pub(crate) async fn record_event(
    tx: &Transaction<'_>,
    id: i64,
    at: DateTime<Utc>,
    actor: &str,
    transition: &str,
    detail: Option<&str>,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO outage_events (outage_id, at, actor, transition, detail) VALUES ($1, $2, $3, $4, $5)",
        &[&id, &at, &actor, &transition, &detail],
    )
    .await
    .map_err(StoreError::db("recording an outage event"))?;
    Ok(())
}

async fn commit(tx: Transaction<'_>) -> Result<(), StoreError> {
    tx.commit()
        .await
        .map_err(StoreError::db("committing an outage update"))
}

//! Work orders: the repairs outages start, their life cycle and the reports on them.
//!
//! The rules create work orders with their outages ([`crate::Db::apply_outage_changes`]);
//! crews move them along ([`Db::transition_work_order`]), and the rules verify a "done"
//! against telemetry (`verified`) or reopen it when the fault comes back. Every
//! transition is a `work_order_events` row.

use crate::handles::{Admin, Detection, Reads};
use chrono::{DateTime, Utc};
use model::{OutageState, Severity, Timestamp, WorkOrderState};
use tokio_postgres::{Row, Transaction};

use crate::error::named;
use crate::sql::{lit, WORK_FINISHED};
use crate::{Db, StoreError};

/// A work order, with its device's inventory id.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkOrderRow {
    pub id: i64,
    pub outage_id: Option<i64>,
    pub device_id: i32,
    pub ext_id: String,
    /// The device's tenant (slug).
    pub tenant: String,
    /// Its outage's kind, as [`crate::OutageRow::kind`].
    pub kind: String,
    pub severity: Severity,
    pub team: String,
    pub assignee: Option<String>,
    pub state: WorkOrderState,
    /// When the outage opened.
    pub opened_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    /// The last time the crew said it was done (kept when it is reopened).
    pub done_at: Option<DateTime<Utc>>,
    pub verified_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    /// How many times it was reopened.
    pub reopened: i32,
    /// The device's district and cabinet, from the inventory.
    pub district: Option<String>,
    pub cabinet: Option<String>,
    /// Where its outage stands (none for an inspection a citizen's report asked for).
    pub outage_state: Option<OutageState>,
}

/// One transition of a work order.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkOrderEvent {
    pub at: DateTime<Utc>,
    pub actor: String,
    /// `None` for the creation.
    pub from_state: Option<WorkOrderState>,
    pub to_state: WorkOrderState,
    pub detail: Option<String>,
}

/// A team's work orders opened in a period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TeamReport {
    pub team: String,
    pub total: i64,
    /// Done (or verified, or closed) by the due time.
    pub done_on_time: i64,
    /// Done after the due time.
    pub done_late: i64,
    /// Not done, and past the due time.
    pub open_overdue: i64,
    /// Not done, due later.
    pub open_in_time: i64,
    /// Orders reopened at least once.
    pub reopened: i64,
}

/// The columns of a [`WorkOrderRow`], for `work_orders w JOIN devices d`.
pub(crate) const COLUMNS: &str =
    "w.id, w.outage_id, w.device_id, d.ext_id, w.kind, w.severity, w.team,
    w.assignee, w.state, w.opened_at, w.due_at, w.done_at, w.verified_at, w.closed_at, w.reopened,
    (SELECT slug FROM tenants WHERE id = d.tenant_id), d.district, d.cabinet,
    (SELECT state FROM outages WHERE id = w.outage_id)";

pub(crate) fn work_order(r: &Row) -> Result<WorkOrderRow, StoreError> {
    Ok(WorkOrderRow {
        id: r.get(0),
        outage_id: r.get(1),
        device_id: r.get(2),
        ext_id: r.get(3),
        kind: r.get(4),
        severity: named(r, 5, "severity", Severity::parse)?,
        team: r.get(6),
        assignee: r.get(7),
        state: named(r, 8, "work order state", WorkOrderState::parse)?,
        opened_at: r.get(9),
        due_at: r.get(10),
        done_at: r.get(11),
        verified_at: r.get(12),
        closed_at: r.get(13),
        reopened: r.get(14),
        tenant: r.get(15),
        district: r.get(16),
        cabinet: r.get(17),
        outage_state: r
            .get::<_, Option<&str>>(18)
            .map(|s| {
                OutageState::parse(s).ok_or_else(|| StoreError::UnknownName {
                    what: "outage state",
                    name: s.to_owned(),
                })
            })
            .transpose()?,
    })
}

impl Detection {
    /// Moves a work order to `to` if the life cycle allows it from the state it is in
    /// now, under a row lock so two crews cannot both move it. Going to `done`,
    /// `verified` or `closed` stamps that time; going to `reopened` counts a reopening.
    /// `assignee` replaces the one on the order; going to `assigned` needs one.
    pub async fn transition_work_order(
        &mut self,
        id: i64,
        to: WorkOrderState,
        actor: &str,
        detail: Option<&str>,
        at: Timestamp,
        assignee: Option<&str>,
    ) -> Result<WorkOrderRow, StoreError> {
        let tx = self
            .fenced_transaction("starting a work order transition")
            .await?;
        let (row, _) = transition(&tx, id, to, actor, detail, at.to_datetime(), assignee).await?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a work order transition"))?;
        Ok(row)
    }

    /// Work orders the crew says are done, oldest first: what the rules verify against
    /// telemetry.
    pub async fn work_orders_done(&self) -> Result<Vec<WorkOrderRow>, StoreError> {
        self.query_work_orders(
            "WHERE w.state = $1 ORDER BY w.done_at, w.id",
            &[&WorkOrderState::Done.as_str()],
            "listing done work orders",
        )
        .await
    }
}

impl Admin {
    /// Work orders, newest first; only those in `state` when given.
    pub async fn work_orders(&self, state: Option<&str>) -> Result<Vec<WorkOrderRow>, StoreError> {
        self.query_work_orders(
            "WHERE $1::text IS NULL OR w.state = $1 ORDER BY w.opened_at DESC, w.id DESC",
            &[&state],
            "listing work orders",
        )
        .await
    }

    /// Per team, how the work orders opened in [`from`, `to`) fare against their due
    /// times as of `now`. An order counts as done from the crew's (last) "done", even if
    /// it was verified or closed later; a reopened order is open until done again.
    pub async fn team_report(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<TeamReport>, StoreError> {
        self.team_report_in(None, from, to, now).await
    }

    /// Work orders that broke their deadline as of `now`: done late, or still not done
    /// past their due time. Earliest due first.
    pub async fn sla_breaches(&self, now: DateTime<Utc>) -> Result<Vec<WorkOrderRow>, StoreError> {
        self.sla_breaches_in(None, now, i64::MAX).await
    }
}

impl Reads {
    /// The transitions of a work order, in order.
    pub async fn work_order_events(&self, id: i64) -> Result<Vec<WorkOrderEvent>, StoreError> {
        let exists = self
            .client()
            .query_opt("SELECT 1 FROM work_orders WHERE id = $1", &[&id])
            .await
            .map_err(StoreError::db("reading a work order"))?;
        if exists.is_none() {
            return Err(StoreError::NoWorkOrder(id));
        }
        let rows = self
            .client()
            .query(
                "SELECT at, actor, from_state, to_state, detail FROM work_order_events
                 WHERE work_order_id = $1 ORDER BY at, id",
                &[&id],
            )
            .await
            .map_err(StoreError::db("listing work order events"))?;
        rows.iter()
            .map(|r| {
                let from: Option<&str> = r.get(2);
                Ok(WorkOrderEvent {
                    at: r.get(0),
                    actor: r.get(1),
                    from_state: from
                        .map(|_| named(r, 2, "work order state", WorkOrderState::parse))
                        .transpose()?,
                    to_state: named(r, 3, "work order state", WorkOrderState::parse)?,
                    detail: r.get(4),
                })
            })
            .collect()
    }

    /// [`Db::team_report`] over the work orders of `tenants`' devices only.
    pub async fn team_report_for(
        &self,
        tenants: &[i32],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<TeamReport>, StoreError> {
        self.team_report_in(Some(tenants), from, to, now).await
    }

    /// [`Db::sla_breaches`] of `tenants`' devices only, at most `limit`.
    pub async fn sla_breaches_for(
        &self,
        tenants: &[i32],
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<WorkOrderRow>, StoreError> {
        self.sla_breaches_in(Some(tenants), now, limit).await
    }
}

impl Db {
    async fn team_report_in(
        &self,
        tenants: Option<&[i32]>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<TeamReport>, StoreError> {
        if to <= from {
            return Err(StoreError::BadPeriod { from, to });
        }
        let rows = self
            .client()
            .query(
                &format!(
                    "SELECT w.team, count(*),
                         count(*) FILTER (WHERE w.state IN {finished} AND w.done_at <= w.due_at),
                         count(*) FILTER (WHERE w.state IN {finished} AND w.done_at > w.due_at),
                         count(*) FILTER (WHERE w.state NOT IN {finished} AND $3 > w.due_at),
                         count(*) FILTER (WHERE w.state NOT IN {finished} AND $3 <= w.due_at),
                         count(*) FILTER (WHERE w.reopened > 0)
                     FROM work_orders w JOIN devices d ON d.id = w.device_id
                     WHERE w.opened_at >= $1 AND w.opened_at < $2
                       AND ($4::int4[] IS NULL OR d.tenant_id = ANY($4))
                     GROUP BY w.team ORDER BY w.team",
                    finished = *WORK_FINISHED
                ),
                &[&from, &to, &now, &tenants],
            )
            .await
            .map_err(StoreError::db("reporting on teams"))?;
        Ok(rows
            .iter()
            .map(|r| TeamReport {
                team: r.get(0),
                total: r.get(1),
                done_on_time: r.get(2),
                done_late: r.get(3),
                open_overdue: r.get(4),
                open_in_time: r.get(5),
                reopened: r.get(6),
            })
            .collect())
    }

    async fn sla_breaches_in(
        &self,
        tenants: Option<&[i32]>,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<WorkOrderRow>, StoreError> {
        self.query_work_orders(
            &format!(
                "WHERE ((w.state IN {finished} AND w.done_at > w.due_at)
                     OR (w.state NOT IN {finished} AND $1 > w.due_at))
                   AND ($2::int4[] IS NULL OR d.tenant_id = ANY($2))
                 ORDER BY w.due_at, w.id
                 LIMIT $3",
                finished = *WORK_FINISHED
            ),
            &[&now, &tenants, &limit],
            "listing work orders past their deadline",
        )
        .await
    }

    async fn query_work_orders(
        &self,
        tail: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        context: &'static str,
    ) -> Result<Vec<WorkOrderRow>, StoreError> {
        let rows = self
            .client()
            .query(
                &format!("SELECT {COLUMNS} FROM work_orders w JOIN devices d ON d.id = w.device_id {tail}"),
                params,
            )
            .await
            .map_err(StoreError::db(context))?;
        rows.iter().map(work_order).collect()
    }
}

/// Moves a work order within `tx` (see [`Db::transition_work_order`]); returns the order
/// as it is now and the state it left.
/// When a step of the locked work order `id`, asked for at `at`, is recorded: then, or at
/// its last recorded step if that is later (two people moved it at once, and the lock let
/// the other through first), so that its history reads in the order things happened.
pub(crate) async fn step_time(
    tx: &Transaction<'_>,
    id: i64,
    at: DateTime<Utc>,
) -> Result<DateTime<Utc>, StoreError> {
    crate::hygiene::no_earlier_than_last(
        tx,
        "SELECT max(at) FROM work_order_events WHERE work_order_id = $1",
        id,
        at,
    )
    .await
}

pub(crate) async fn transition(
    tx: &Transaction<'_>,
    id: i64,
    to: WorkOrderState,
    actor: &str,
    detail: Option<&str>,
    at: DateTime<Utc>,
    assignee: Option<&str>,
) -> Result<(WorkOrderRow, WorkOrderState), StoreError> {
    let row = tx
        .query_opt(
            "SELECT state, assignee FROM work_orders WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await
        .map_err(StoreError::db("reading a work order"))?
        .ok_or(StoreError::NoWorkOrder(id))?;
    let from = named(&row, 0, "work order state", WorkOrderState::parse)?;
    let current_assignee: Option<String> = row.get(1);
    let at = step_time(tx, id, at).await?;
    if !from.can_become(to) {
        return Err(StoreError::BadTransition {
            id,
            from: from.as_str().to_owned(),
            to: to.as_str().to_owned(),
        });
    }
    if to == WorkOrderState::Assigned && assignee.or(current_assignee.as_deref()).is_none() {
        return Err(StoreError::NoAssignee(id));
    }
    let row = tx
        .query_one(
            &format!(
                "UPDATE work_orders w SET
                     state = $2,
                     assignee = coalesce($3, w.assignee),
                     done_at = CASE WHEN $5 THEN $4 ELSE w.done_at END,
                     verified_at = CASE WHEN $6 THEN $4 ELSE w.verified_at END,
                     closed_at = CASE WHEN $7 THEN $4 ELSE w.closed_at END,
                     reopened = w.reopened + CASE WHEN $8 THEN 1 ELSE 0 END
                 FROM devices d
                 WHERE w.id = $1 AND d.id = w.device_id
                 RETURNING {COLUMNS}"
            ),
            &[
                &id,
                &to.as_str(),
                &assignee,
                &at,
                &(to == WorkOrderState::Done),
                &(to == WorkOrderState::Verified),
                &(to == WorkOrderState::Closed),
                &(to == WorkOrderState::Reopened),
            ],
        )
        .await
        .map_err(StoreError::db("updating a work order"))?;
    tx.execute(
        "INSERT INTO work_order_events (work_order_id, at, actor, from_state, to_state, detail)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[&id, &at, &actor, &from.as_str(), &to.as_str(), &detail],
    )
    .await
    .map_err(StoreError::db("recording a work order event"))?;
    let mut order = work_order(&row)?;
    if to == WorkOrderState::Closed {
        if let Some(outage) = order.outage_id {
            if close_outage(tx, outage, id, actor, at).await? {
                order.outage_state = Some(OutageState::Closed);
            }
        }
    }
    Ok((order, from))
}

/// The work order `order` is closed: its outage, if resolved, is closed with it (an
/// outage still active stays as it is: the fault is there, whatever the order says).
/// Whether it was.
async fn close_outage(
    tx: &Transaction<'_>,
    outage: i64,
    order: i64,
    actor: &str,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let detail = format!("work order {order} closed");
    let closed = tx
        .execute(
            &format!(
                "WITH c AS (
                 UPDATE outages SET state = {closed} WHERE id = $1 AND state = {resolved}
                 RETURNING id
             )
             INSERT INTO outage_events (outage_id, at, actor, transition, detail)
             SELECT id, greatest($2, last_step(id)), $3, {closed}, $4 FROM c",
                closed = lit(OutageState::Closed),
                resolved = lit(OutageState::Resolved),
            ),
            &[&outage, &at, &actor, &detail],
        )
        .await
        .map_err(StoreError::db("closing a work order's outage"))?;
    Ok(closed == 1)
}

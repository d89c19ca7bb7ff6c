//! What people do to outages and work orders through the API: the changes of
//! [`crate::hygiene`] and [`crate::work_orders`], limited to the tenants (and, for crews,
//! the team) the person may touch, and audited in the same transaction as the change.
//!
//! Something outside the caller's reach is reported exactly as something that does not
//! exist ([`StoreError::NoOutage`], [`StoreError::NoWorkOrder`]), so its existence is not
//! revealed.

use crate::handles::Actions;
use chrono::{DateTime, SecondsFormat, Utc};
use model::{OutageState, Timestamp, WorkOrderState};
use serde_json::json;
use tokio_postgres::Transaction;

use crate::audit::{append, AuditEntry};
use crate::error::named;
use crate::hygiene::{acknowledge, record_event, shelve, step_time, unshelve};
use crate::outages::{outage_row, OUTAGE_COLUMNS};
use crate::work_orders::transition;
use crate::{OutageRow, StoreError, WorkOrderRow};

/// Who acts, and what they may reach.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    /// As recorded in events and the audit log.
    pub name: &'a str,
    pub tenants: &'a [i32],
    /// When set, only this team's work orders (a crew member).
    pub team: Option<&'a str>,
}

/// What a person does to an outage.
#[derive(Debug, Clone, PartialEq)]
pub enum OutageAction<'a> {
    Acknowledge,
    Shelve {
        until: DateTime<Utc>,
        reason: &'a str,
    },
    Unshelve,
    Comment {
        text: &'a str,
    },
    /// Gives the outage to a team (and a person): its active work order is handed over,
    /// or one is opened ([`ASSIGNED_DEADLINE_HOURS`] to do it).
    Assign {
        team: &'a str,
        assignee: Option<&'a str>,
        note: Option<&'a str>,
    },
}

/// The deadline of a work order opened by hand, for an outage the policy gave none.
pub const ASSIGNED_DEADLINE_HOURS: i64 = 72;

impl OutageAction<'_> {
    /// The audit log's name for it.
    pub fn audit_action(&self) -> &'static str {
        match self {
            OutageAction::Acknowledge => "outage.acknowledge",
            OutageAction::Shelve { .. } => "outage.shelve",
            OutageAction::Unshelve => "outage.unshelve",
            OutageAction::Comment { .. } => "outage.comment",
            OutageAction::Assign { .. } => "outage.assign",
        }
    }

    fn particulars(&self) -> serde_json::Value {
        match self {
            OutageAction::Shelve { until, reason } => json!({
                "until": until.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                "reason": reason,
            }),
            OutageAction::Comment { text } => json!({ "text": text }),
            OutageAction::Assign {
                team,
                assignee,
                note,
            } => json!({ "team": team, "assignee": assignee, "note": note }),
            OutageAction::Acknowledge | OutageAction::Unshelve => json!({}),
        }
    }
}

/// A work order step asked for by a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step<'a> {
    pub to: WorkOrderState,
    pub assignee: Option<&'a str>,
    pub note: Option<&'a str>,
}

impl Actions {
    /// Acknowledges, shelves, unshelves or comments on an outage of the actor's tenants;
    /// returns the outage as it is now. A comment is an `outage_events` row (`comment`).
    pub async fn act_on_outage(
        &mut self,
        actor: &Actor<'_>,
        id: i64,
        action: &OutageAction<'_>,
        at: Timestamp,
    ) -> Result<OutageRow, StoreError> {
        let at = at.to_datetime();
        let tx = self
            .client_mut()
            .transaction()
            .await
            .map_err(StoreError::db("starting an outage update"))?;
        lock_outage_in(&tx, id, actor.tenants).await?;
        let at = step_time(&tx, id, at).await?;
        match action {
            OutageAction::Acknowledge => acknowledge(&tx, id, actor.name, at).await?,
            OutageAction::Shelve { until, reason } => {
                shelve(&tx, id, *until, actor.name, reason, at).await?
            }
            OutageAction::Unshelve => unshelve(&tx, id, actor.name, at).await?,
            OutageAction::Comment { text } => {
                record_event(&tx, id, at, actor.name, "comment", Some(text)).await?
            }
            OutageAction::Assign {
                team,
                assignee,
                note,
            } => assign(&tx, id, team, *assignee, *note, actor.name, at).await?,
        }
        let row = tx
            .query_one(
                &format!(
                    "SELECT {OUTAGE_COLUMNS} FROM outages o JOIN devices d ON d.id = o.device_id WHERE o.id = $1"
                ),
                &[&id],
            )
            .await
            .map_err(StoreError::db("reading an outage"))?;
        let outage = outage_row(&row)?;
        let mut detail = action.particulars();
        detail["tenant"] = json!(outage.tenant);
        detail["device"] = json!(outage.ext_id);
        detail["kind"] = json!(outage.kind);
        detail["state"] = json!(outage.state);
        append(
            &tx,
            &AuditEntry {
                actor: actor.name.to_owned(),
                action: action.audit_action().to_owned(),
                target: format!("outage/{id}"),
                detail,
            },
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing an outage update"))?;
        Ok(outage)
    }

    /// Moves a work order of the actor's tenants (and team, for a crew) one step; returns
    /// it as it is now. The life cycle decides which steps exist
    /// ([`WorkOrderState::can_become`]); who may take which is the caller's rule.
    pub async fn move_work_order(
        &mut self,
        actor: &Actor<'_>,
        id: i64,
        step: &Step<'_>,
        at: Timestamp,
    ) -> Result<WorkOrderRow, StoreError> {
        let tx = self
            .client_mut()
            .transaction()
            .await
            .map_err(StoreError::db("starting a work order transition"))?;
        let found = tx
            .query_opt(
                "SELECT 1 FROM work_orders w JOIN devices d ON d.id = w.device_id
                 WHERE w.id = $1 AND d.tenant_id = ANY($2) AND ($3::text IS NULL OR w.team = $3)
                 FOR UPDATE OF w",
                &[&id, &actor.tenants, &actor.team],
            )
            .await
            .map_err(StoreError::db("reading a work order"))?;
        if found.is_none() {
            return Err(StoreError::NoWorkOrder(id));
        }
        let (order, from) = transition(
            &tx,
            id,
            step.to,
            actor.name,
            step.note,
            at.to_datetime(),
            step.assignee,
        )
        .await?;
        append(
            &tx,
            &AuditEntry {
                actor: actor.name.to_owned(),
                action: "work_order.transition".into(),
                target: format!("work_order/{id}"),
                detail: json!({
                    "tenant": order.tenant,
                    "device": order.ext_id,
                    "team": order.team,
                    "from": from,
                    "to": step.to,
                    "assignee": step.assignee,
                    "note": step.note,
                }),
            },
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a work order transition"))?;
        Ok(order)
    }
}

/// Hands an active outage to `team` (and `assignee`). Its active work order (one per
/// device and kind) changes hands, and moves from new or reopened to assigned when
/// someone is named; without one, a work order is opened, assigned when someone is
/// named, due in [`ASSIGNED_DEADLINE_HOURS`].
async fn assign(
    tx: &Transaction<'_>,
    id: i64,
    team: &str,
    assignee: Option<&str>,
    note: Option<&str>,
    actor: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let outage = tx
        .query_one(
            "SELECT device_id, kind, severity, state FROM outages WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(StoreError::db("reading an outage"))?;
    let (device_id, kind, severity): (i32, String, String) =
        (outage.get(0), outage.get(1), outage.get(2));
    let state = named(&outage, 3, "outage state", OutageState::parse)?;
    if !state.active() {
        return Err(StoreError::OutageState {
            id,
            state,
            action: "assigned",
        });
    }
    let who = match assignee {
        Some(a) => format!("team {team}, {a}"),
        None => format!("team {team}"),
    };
    let order = tx
        .query_opt(
            "SELECT id, state, assignee FROM work_orders
             WHERE device_id = $1 AND kind = $2 AND state <> $3 FOR UPDATE",
            &[&device_id, &kind, &WorkOrderState::Closed.as_str()],
        )
        .await
        .map_err(StoreError::db("reading a work order"))?;
    match order {
        Some(order) => {
            let (order_id, current): (i64, Option<String>) = (order.get(0), order.get(2));
            let order_state = named(&order, 1, "work order state", WorkOrderState::parse)?;
            let at = crate::work_orders::step_time(tx, order_id, at).await?;
            tx.execute(
                "UPDATE work_orders SET team = $2, assignee = coalesce($3, assignee) WHERE id = $1",
                &[&order_id, &team, &assignee],
            )
            .await
            .map_err(StoreError::db("handing over a work order"))?;
            let named = assignee.or(current.as_deref()).is_some();
            if named && matches!(order_state, WorkOrderState::New | WorkOrderState::Reopened) {
                transition(
                    tx,
                    order_id,
                    WorkOrderState::Assigned,
                    actor,
                    note,
                    at,
                    assignee,
                )
                .await?;
            } else {
                tx.execute(
                    "INSERT INTO work_order_events (work_order_id, at, actor, from_state, to_state, detail)
                     VALUES ($1, $2, $3, $4, $4, $5)",
                    &[&order_id, &at, &actor, &order_state.as_str(), &format!("handed to {who}")],
                )
                .await
                .map_err(StoreError::db("recording a work order event"))?;
            }
        }
        None => {
            let to = if assignee.is_some() {
                WorkOrderState::Assigned
            } else {
                WorkOrderState::New
            };
            let order_id: i64 = tx
                .query_one(
                    "INSERT INTO work_orders
                         (outage_id, device_id, kind, severity, team, assignee, state, opened_at, due_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8::timestamptz, $8::timestamptz + make_interval(hours => $9::int))
                     RETURNING id",
                    &[
                        &id,
                        &device_id,
                        &kind,
                        &severity,
                        &team,
                        &assignee,
                        &to.as_str(),
                        &at,
                        &(ASSIGNED_DEADLINE_HOURS as i32),
                    ],
                )
                .await
                .map_err(StoreError::db("opening a work order"))?
                .get(0);
            tx.execute(
                "INSERT INTO work_order_events (work_order_id, at, actor, from_state, to_state, detail)
                 VALUES ($1, $2, $3, NULL, $4, $5)",
                &[&order_id, &at, &actor, &to.as_str(), &format!("opened by hand for {who}")],
            )
            .await
            .map_err(StoreError::db("recording a work order event"))?;
        }
    }
    let detail = match note {
        Some(n) => format!("to {who}: {n}"),
        None => format!("to {who}"),
    };
    record_event(tx, id, at, actor, "assigned", Some(&detail)).await
}

/// Locks an outage if it belongs to one of `tenants`; otherwise it does not exist.
async fn lock_outage_in(tx: &Transaction<'_>, id: i64, tenants: &[i32]) -> Result<(), StoreError> {
    tx.query_opt(
        "SELECT 1 FROM outages o JOIN devices d ON d.id = o.device_id
         WHERE o.id = $1 AND d.tenant_id = ANY($2) FOR UPDATE OF o",
        &[&id, &tenants],
    )
    .await
    .map_err(StoreError::db("reading an outage"))?
    .map(|_| ())
    .ok_or(StoreError::NoOutage(id))
}

//! Outages: what the rules engine decided, persisted one transaction per set of decisions,
//! with an audit event for every transition, and the work orders they start.
//!
//! A set of decisions is written with a few statements over arrays (`unnest`), not one
//! statement per decision: the engine can decide 100 000 things at once after a storm or a
//! restart, and one round trip each would take minutes.

use crate::handles::{Admin, Detection};
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use model::{OutageState, Severity, Timestamp, WorkOrderState};
use tokio_postgres::Transaction;

use crate::error::named;
use crate::sql::{lit, OUTAGE_ACTIVE, WORK_REOPENABLE};
use crate::StoreError;

/// Migration 15: who handles an outage, for its listing: the work order of its device and
/// kind still in hand (not closed), if any.
pub const HANDLING: &str = r#"
CREATE FUNCTION handling(device int4, outage_kind text) RETURNS text[] LANGUAGE sql STABLE AS
    $f$SELECT ARRAY[w.id::text, w.state, w.team, w.assignee] FROM work_orders w
       WHERE w.device_id = device AND w.kind = outage_kind AND w.state <> 'closed'$f$;
"#;

/// Migration 12: an outage's chronology as an invariant. It never resolves before it
/// opened, and its events are in time order: an event earlier than one already recorded
/// for the same outage is refused. The rules' writes keep to it by recording a step the
/// engine judged late (evidence from before the outage's last recorded step) at that
/// step's time, with the evidence's own time in the detail; `recorded_at` keeps when the
/// hub wrote it.
pub const CHRONOLOGY: &str = r#"
UPDATE outages SET resolved_at = opened_at WHERE resolved_at < opened_at;

-- The time of an outage's last recorded step (NULL before its first).
CREATE FUNCTION last_step(outage bigint) RETURNS timestamptz LANGUAGE sql STABLE AS
    'SELECT max(at) FROM outage_events WHERE outage_id = outage';
-- What an event's detail adds when its evidence is older than the step it follows.
CREATE FUNCTION judged_late(evidence timestamptz, recorded timestamptz) RETURNS text
    LANGUAGE sql IMMUTABLE AS
    $f$SELECT CASE WHEN evidence < recorded
        THEN ' (evidence from ' || to_char(evidence AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') || ', judged after the outage''s last step)'
        ELSE '' END$f$;
ALTER TABLE outages ADD CONSTRAINT outages_resolved_after_opened
    CHECK (resolved_at IS NULL OR resolved_at >= opened_at);

CREATE FUNCTION outage_events_in_time_order() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    late record;
BEGIN
    SELECT n.outage_id, n.at, n.transition, e.at AS after, e.transition AS after_transition
      INTO late
      FROM changed n
      JOIN outage_events e ON e.outage_id = n.outage_id AND e.at > n.at AND e.id < n.id
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'outage % cannot record "%" at % after "%" at %: its events are in time order',
            late.outage_id, late.transition, late.at, late.after_transition, late.after
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER outage_events_in_time_order AFTER INSERT ON outage_events
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION outage_events_in_time_order();
"#;

/// A decision to persist (the rules engine's, in store's terms).
#[derive(Debug, Clone, PartialEq)]
pub enum OutageChange {
    Open {
        device_id: i32,
        kind: &'static str,
        at: Timestamp,
        reason: String,
        /// `critical`, `major` or `minor`.
        severity: &'static str,
        /// The repair to order when this opens a new outage.
        work_order: Option<WorkOrderPlan>,
    },
    Resolve {
        device_id: i32,
        kind: &'static str,
        at: Timestamp,
    },
    /// The rules found it chattering: it stays open (flag set, event recorded).
    Chattering {
        device_id: i32,
        kind: &'static str,
        at: Timestamp,
    },
}

impl OutageChange {
    /// The outage a change is about: one open outage per (device, kind).
    fn key(&self) -> (i32, &'static str) {
        match self {
            OutageChange::Open {
                device_id, kind, ..
            }
            | OutageChange::Resolve {
                device_id, kind, ..
            }
            | OutageChange::Chattering {
                device_id, kind, ..
            } => (*device_id, kind),
        }
    }
}

/// Who repairs an outage and how long they have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkOrderPlan {
    pub team: String,
    /// Seconds after the outage opened at which the repair is due.
    pub deadline_s: i64,
}

/// An outage row.
#[derive(Debug, Clone, PartialEq)]
pub struct OutageRow {
    pub id: i64,
    pub device_id: i32,
    /// The device's id in the inventory.
    pub ext_id: String,
    /// A [`model::OutageKind`]'s name; kept as text, as the table keeps it (a newer hub may
    /// have written a kind this one does not know, and it still lists).
    pub kind: String,
    pub state: OutageState,
    pub severity: Severity,
    pub reason: String,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// Wall time the hub wrote the row.
    pub recorded_at: DateTime<Utc>,
    pub occurrences: i32,
    pub shelved_until: Option<DateTime<Utc>>,
    pub chattering: bool,
    /// The device's tenant (slug).
    pub tenant: String,
    /// When the fault was last seen (telemetry time).
    pub last_seen: DateTime<Utc>,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub shelved_by: Option<String>,
    /// The device's district and cabinet, from the inventory: where it is, and what a
    /// flood of outages may have in common.
    pub district: Option<String>,
    pub cabinet: Option<String>,
    /// The work order in hand for it (not closed), if any.
    pub handled_by: Option<Handling>,
}

/// Who handles an outage: its work order, where that stands, its team and person.
#[derive(Debug, Clone, PartialEq)]
pub struct Handling {
    pub work_order: i64,
    pub state: WorkOrderState,
    pub team: String,
    pub assignee: Option<String>,
}

/// The columns of an [`OutageRow`], for `outages o JOIN devices d`.
pub(crate) const OUTAGE_COLUMNS: &str = "o.id, o.device_id, d.ext_id, o.kind, o.state, o.severity,
    o.reason, o.opened_at, o.resolved_at, o.recorded_at, o.occurrences, o.shelved_until,
    o.chattering, (SELECT slug FROM tenants WHERE id = d.tenant_id), o.last_seen,
    o.acknowledged_by, o.acknowledged_at, o.shelved_by, d.district, d.cabinet,
    handling(o.device_id, o.kind)";

pub(crate) fn outage_row(r: &tokio_postgres::Row) -> Result<OutageRow, StoreError> {
    Ok(OutageRow {
        id: r.get(0),
        device_id: r.get(1),
        ext_id: r.get(2),
        kind: r.get(3),
        state: named(r, 4, "outage state", OutageState::parse)?,
        severity: named(r, 5, "severity", Severity::parse)?,
        reason: r.get(6),
        opened_at: r.get(7),
        resolved_at: r.get(8),
        recorded_at: r.get(9),
        occurrences: r.get(10),
        shelved_until: r.get(11),
        chattering: r.get(12),
        tenant: r.get(13),
        last_seen: r.get(14),
        acknowledged_by: r.get(15),
        acknowledged_at: r.get(16),
        shelved_by: r.get(17),
        district: r.get(18),
        cabinet: r.get(19),
        handled_by: match r.get::<_, Option<Vec<Option<String>>>>(20).as_deref() {
            Some([Some(id), Some(state), Some(team), assignee]) => Some(Handling {
                work_order: id.parse().unwrap_or_default(),
                state: WorkOrderState::parse(state).ok_or_else(|| StoreError::UnknownName {
                    what: "work order state",
                    name: state.clone(),
                })?,
                team: team.clone(),
                assignee: assignee.clone(),
            }),
            _ => None,
        },
    })
}

const ACTOR: &str = "rules";

/// Decisions per statement: 100 000 take ten, and one statement's arrays stay a few MB.
const CHUNK: usize = 10_000;

/// Splits a set of changes into rounds holding at most one change per (device, kind),
/// keeping each key's changes in order: round n holds the n-th change of every key.
///
/// One statement cannot touch a row twice (`ON CONFLICT DO UPDATE` refuses to), yet a set
/// may open, resolve and open again the same outage; applying the rounds one after the
/// other gives the same result as applying the changes one by one.
pub(crate) fn rounds(changes: &[OutageChange]) -> Vec<Vec<&OutageChange>> {
    let mut seen: HashMap<(i32, &str), usize> = HashMap::new();
    let mut rounds: Vec<Vec<&OutageChange>> = Vec::new();
    for change in changes {
        let n = seen.entry(change.key()).or_insert(0);
        if *n == rounds.len() {
            rounds.push(Vec::new());
        }
        rounds[*n].push(change);
        *n += 1;
    }
    rounds
}

/// An `Open` change, borrowed.
struct Opening<'a> {
    device_id: i32,
    kind: &'static str,
    at: DateTime<Utc>,
    reason: &'a str,
    severity: &'static str,
    plan: Option<&'a WorkOrderPlan>,
}

/// A `Resolve` or `Chattering` change: which outage, and when.
struct Mark {
    device_id: i32,
    kind: &'static str,
    at: DateTime<Utc>,
}

/// Writes `changes` in `tx`: opens, then resolutions, then chattering, round after round
/// (a device's outage resolved and opened again in one set comes in two rounds).
pub(crate) async fn apply_in(
    tx: &Transaction<'_>,
    changes: &[OutageChange],
) -> Result<(), StoreError> {
    for round in rounds(changes) {
        let (opens, resolves, chatters) = by_change(round);
        for chunk in opens.chunks(CHUNK) {
            open_outages(tx, chunk).await?;
        }
        for chunk in resolves.chunks(CHUNK) {
            resolve_outages(tx, chunk).await?;
        }
        for chunk in chatters.chunks(CHUNK) {
            flag_chattering(tx, chunk).await?;
        }
    }
    Ok(())
}

impl Detection {
    /// Applies decisions in one transaction. Opening an outage that is already open counts
    /// an occurrence instead (so replays after a restart add nothing); resolving one that
    /// is not open does nothing. A new outage with a plan gets a work order, unless its
    /// device and kind have an active one: that one is reopened if the crew said it was
    /// done, since the fault came back.
    pub async fn apply_outage_changes(
        &mut self,
        changes: &[OutageChange],
    ) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.apply_judged(changes, None).await
    }

    /// Outages open now, as (device id, kind, latest step the rules gave it: when it
    /// opened, or later was raised again or found chattering).
    pub async fn open_outages(&self) -> Result<Vec<(i32, String, DateTime<Utc>)>, StoreError> {
        let rows = self
            .client()
            .query(
                &format!(
                    "SELECT device_id, kind, greatest(opened_at, last_seen) FROM outages
                     WHERE state IN {}",
                    *OUTAGE_ACTIVE
                ),
                &[],
            )
            .await
            .map_err(StoreError::db("listing open outages"))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }
}

impl Admin {
    /// All outages, newest first (for reports and tests).
    pub async fn outages(&self) -> Result<Vec<OutageRow>, StoreError> {
        let rows = self
            .client()
            .query(
                &format!(
                    "SELECT {OUTAGE_COLUMNS} FROM outages o JOIN devices d ON d.id = o.device_id
                     ORDER BY o.opened_at DESC, o.id DESC"
                ),
                &[],
            )
            .await
            .map_err(StoreError::db("listing outages"))?;
        rows.iter().map(outage_row).collect()
    }
}

/// Sorts a round's changes by what they do (within a round, order does not matter: each
/// change is about a different outage).
fn by_change(round: Vec<&OutageChange>) -> (Vec<Opening<'_>>, Vec<Mark>, Vec<Mark>) {
    let (mut opens, mut resolves, mut chatters) = (Vec::new(), Vec::new(), Vec::new());
    for change in round {
        match change {
            OutageChange::Open {
                device_id,
                kind,
                at,
                reason,
                severity,
                work_order,
            } => opens.push(Opening {
                device_id: *device_id,
                kind,
                at: at.to_datetime(),
                reason,
                severity,
                plan: work_order.as_ref(),
            }),
            OutageChange::Resolve {
                device_id,
                kind,
                at,
            } => resolves.push(Mark {
                device_id: *device_id,
                kind,
                at: at.to_datetime(),
            }),
            OutageChange::Chattering {
                device_id,
                kind,
                at,
            } => chatters.push(Mark {
                device_id: *device_id,
                kind,
                at: at.to_datetime(),
            }),
        }
    }
    (opens, resolves, chatters)
}

/// Opens outages (or counts an occurrence of those already open), records their events,
/// then orders the repairs of the new ones. At most one opening per (device, kind).
async fn open_outages(tx: &Transaction<'_>, chunk: &[Opening<'_>]) -> Result<(), StoreError> {
    let device: Vec<i32> = chunk.iter().map(|o| o.device_id).collect();
    let kind: Vec<&str> = chunk.iter().map(|o| o.kind).collect();
    let at: Vec<DateTime<Utc>> = chunk.iter().map(|o| o.at).collect();
    let reason: Vec<&str> = chunk.iter().map(|o| o.reason).collect();
    let severity: Vec<&str> = chunk.iter().map(|o| o.severity).collect();
    let (open, active) = (lit(OutageState::Open), &*OUTAGE_ACTIVE);
    let opened = tx
        .query(
            &format!("WITH input AS (
                 SELECT * FROM unnest($1::int4[], $2::text[], $3::timestamptz[], $4::text[], $5::text[])
                     AS i(device_id, kind, at, reason, severity)
             ), upserted AS (
                 INSERT INTO outages (device_id, kind, state, reason, severity, opened_at, last_seen)
                 SELECT device_id, kind, {open}, reason, severity, at, at FROM input
                 ON CONFLICT (device_id, kind) WHERE state IN {active}
                 DO UPDATE SET occurrences = outages.occurrences + 1,
                               last_seen = greatest(outages.last_seen, excluded.last_seen)
                 RETURNING id, device_id, kind, (xmax = 0) AS inserted
             ), events AS (
                 INSERT INTO outage_events (outage_id, at, actor, transition, detail)
                 SELECT u.id, greatest(i.at, last_step(u.id)), $6,
                        CASE WHEN u.inserted THEN 'opened' ELSE 'occurred again' END,
                        i.reason || judged_late(i.at, last_step(u.id))
                 FROM upserted u JOIN input i USING (device_id, kind)
             )
             SELECT id, device_id, kind FROM upserted WHERE inserted"),
            &[&device, &kind, &at, &reason, &severity, &ACTOR],
        )
        .await
        .map_err(StoreError::db("opening outages"))?;
    let by_key: HashMap<(i32, &str), &Opening> =
        chunk.iter().map(|o| ((o.device_id, o.kind), o)).collect();
    let planned: Vec<(i64, &Opening, &WorkOrderPlan)> = opened
        .iter()
        .filter_map(|r| {
            let opening = *by_key.get(&(r.get::<_, i32>(1), r.get::<_, &str>(2)))?;
            Some((r.get(0), opening, opening.plan?))
        })
        .collect();
    if planned.is_empty() {
        return Ok(());
    }
    order_repairs(tx, &planned).await
}

/// Creates the work orders of new outages. Where the device and kind already have an
/// active order, none is created; if the crew has said that one was done (or it was
/// verified), telemetry now says otherwise and it is reopened.
async fn order_repairs(
    tx: &Transaction<'_>,
    planned: &[(i64, &Opening<'_>, &WorkOrderPlan)],
) -> Result<(), StoreError> {
    let outage: Vec<i64> = planned.iter().map(|p| p.0).collect();
    let device: Vec<i32> = planned.iter().map(|p| p.1.device_id).collect();
    let kind: Vec<&str> = planned.iter().map(|p| p.1.kind).collect();
    let at: Vec<DateTime<Utc>> = planned.iter().map(|p| p.1.at).collect();
    let reason: Vec<&str> = planned.iter().map(|p| p.1.reason).collect();
    let severity: Vec<&str> = planned.iter().map(|p| p.1.severity).collect();
    let team: Vec<&str> = planned.iter().map(|p| p.2.team.as_str()).collect();
    let deadline: Vec<i64> = planned.iter().map(|p| p.2.deadline_s).collect();
    let (new, closed) = (lit(WorkOrderState::New), lit(WorkOrderState::Closed));
    let (reopened, reopenable) = (lit(WorkOrderState::Reopened), &*WORK_REOPENABLE);
    tx.execute(
        &format!("WITH plan AS (
             SELECT * FROM unnest($1::int8[], $2::int4[], $3::text[], $4::timestamptz[], $5::text[], $6::text[], $7::text[], $8::int8[])
                 AS p(outage_id, device_id, kind, at, reason, severity, team, deadline_s)
         ), created AS (
             INSERT INTO work_orders (outage_id, device_id, kind, severity, team, state, opened_at, due_at)
             SELECT outage_id, device_id, kind, severity, team, {new}, at, at + make_interval(secs => deadline_s)
             FROM plan
             ON CONFLICT (device_id, kind) WHERE state <> {closed} DO NOTHING
             RETURNING id, device_id, kind
         ), created_events AS (
             INSERT INTO work_order_events (work_order_id, at, actor, from_state, to_state, detail)
             SELECT c.id, p.at, $9, NULL, {new}, p.reason FROM created c JOIN plan p USING (device_id, kind)
         ), came_back AS (
             SELECT w.id, w.state, p.at, p.reason FROM work_orders w JOIN plan p USING (device_id, kind)
             WHERE w.state IN {reopenable}
         ), reopened AS (
             UPDATE work_orders w SET state = {reopened}, reopened = w.reopened + 1
             FROM came_back b WHERE w.id = b.id
             RETURNING w.id
         )
         INSERT INTO work_order_events (work_order_id, at, actor, from_state, to_state, detail)
         SELECT b.id, b.at, $9, b.state, {reopened}, 'the fault came back: ' || b.reason
         FROM reopened r JOIN came_back b ON b.id = r.id"),
        &[&outage, &device, &kind, &at, &reason, &severity, &team, &deadline, &ACTOR],
    )
    .await
    .map_err(StoreError::db("ordering repairs for new outages"))?;
    Ok(())
}

/// Resolves open outages and records their events; an outage not open is left alone.
async fn resolve_outages(tx: &Transaction<'_>, chunk: &[Mark]) -> Result<(), StoreError> {
    let (device, kind, at) = mark_columns(chunk);
    let (resolved, active) = (lit(OutageState::Resolved), &*OUTAGE_ACTIVE);
    tx.execute(
        &format!("WITH input AS (
             SELECT * FROM unnest($1::int4[], $2::text[], $3::timestamptz[]) AS i(device_id, kind, at)
         ), resolved AS (
             UPDATE outages o SET state = {resolved},
                 resolved_at = greatest(i.at, o.opened_at, last_step(o.id))
             FROM input i
             WHERE o.device_id = i.device_id AND o.kind = i.kind AND o.state IN {active}
             RETURNING o.id, o.resolved_at, i.at
         )
         INSERT INTO outage_events (outage_id, at, actor, transition, detail)
         SELECT id, resolved_at, $4, 'resolved', 'telemetry back to normal' || judged_late(at, resolved_at)
         FROM resolved"),
        &[&device, &kind, &at, &ACTOR],
    )
    .await
    .map_err(StoreError::db("resolving outages"))?;
    Ok(())
}

/// Flags open outages as chattering and records their events; they stay open.
async fn flag_chattering(tx: &Transaction<'_>, chunk: &[Mark]) -> Result<(), StoreError> {
    let (device, kind, at) = mark_columns(chunk);
    let active = &*OUTAGE_ACTIVE;
    tx.execute(
        &format!("WITH input AS (
             SELECT * FROM unnest($1::int4[], $2::text[], $3::timestamptz[]) AS i(device_id, kind, at)
         ), flagged AS (
             UPDATE outages o SET chattering = true, last_seen = greatest(o.last_seen, i.at)
             FROM input i
             WHERE o.device_id = i.device_id AND o.kind = i.kind AND o.state IN {active}
             RETURNING o.id, i.at
         )
         INSERT INTO outage_events (outage_id, at, actor, transition, detail)
         SELECT id, greatest(at, last_step(id)), $4, 'chattering',
                'comes and goes too often; kept open until it settles' || judged_late(at, last_step(id))
         FROM flagged"),
        &[&device, &kind, &at, &ACTOR],
    )
    .await
    .map_err(StoreError::db("flagging chattering outages"))?;
    Ok(())
}

fn mark_columns(chunk: &[Mark]) -> (Vec<i32>, Vec<&str>, Vec<DateTime<Utc>>) {
    (
        chunk.iter().map(|m| m.device_id).collect(),
        chunk.iter().map(|m| m.kind).collect(),
        chunk.iter().map(|m| m.at).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(device_id: i32, kind: &'static str) -> OutageChange {
        OutageChange::Open {
            device_id,
            kind,
            at: Timestamp(0),
            reason: String::new(),
            severity: "minor",
            work_order: None,
        }
    }

    fn resolve(device_id: i32, kind: &'static str) -> OutageChange {
        OutageChange::Resolve {
            device_id,
            kind,
            at: Timestamp(0),
        }
    }

    #[test]
    fn rounds_hold_one_change_per_key_in_order() {
        let changes = [
            open(1, "a"),
            open(2, "a"),
            resolve(1, "a"),
            open(1, "b"),
            open(1, "a"),
            resolve(2, "a"),
        ];
        let rounds = rounds(&changes);
        let keys: Vec<Vec<(i32, &str)>> = rounds
            .iter()
            .map(|r| r.iter().map(|c| c.key()).collect())
            .collect();
        assert_eq!(
            keys,
            vec![
                vec![(1, "a"), (2, "a"), (1, "b")],
                vec![(1, "a"), (2, "a")],
                vec![(1, "a")],
            ]
        );
        assert_eq!(
            rounds[1][0], &changes[2],
            "1/a resolves before it opens again"
        );
        assert_eq!(rounds[2][0], &changes[4]);
        assert!(super::rounds(&[]).is_empty());
    }
}

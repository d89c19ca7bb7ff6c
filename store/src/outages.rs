//! Outages: what the rules engine decided, persisted one transaction per set of decisions,
//! with an audit event for every transition.

use chrono::{DateTime, Utc};
use model::{Kind, Timestamp};

use crate::{Db, StoreError};

/// A decision to persist (the rules engine's, in store's terms).
#[derive(Debug, Clone, PartialEq)]
pub enum OutageChange {
    Open {
        device_id: i32,
        kind: &'static str,
        at: Timestamp,
        reason: String,
    },
    Resolve {
        device_id: i32,
        kind: &'static str,
        at: Timestamp,
    },
}

/// A device as the rules engine needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleAsset {
    pub id: i32,
    pub kind: Kind,
    pub cabinet_id: Option<i32>,
    pub rated_power_w: Option<f64>,
    pub lon: f64,
    pub lat: f64,
}

/// An outage row.
#[derive(Debug, Clone, PartialEq)]
pub struct OutageRow {
    pub id: i64,
    pub device_id: i32,
    pub kind: String,
    pub state: String,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub occurrences: i32,
}

const ACTOR: &str = "rules";

impl Db {
    /// Applies decisions in one transaction. Opening an outage that is already open counts
    /// an occurrence instead (so replays after a restart add nothing); resolving one that
    /// is not open does nothing.
    pub async fn apply_outage_changes(
        &mut self,
        changes: &[OutageChange],
    ) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let tx = self
            .client_mut()
            .transaction()
            .await
            .map_err(StoreError::db("starting outage changes"))?;
        for change in changes {
            match change {
                OutageChange::Open {
                    device_id,
                    kind,
                    at,
                    reason,
                } => {
                    let at = at.to_datetime();
                    let row = tx
                        .query_one(
                            "INSERT INTO outages (device_id, kind, state, reason, opened_at, last_seen)
                             VALUES ($1, $2, 'open', $3, $4, $4)
                             ON CONFLICT (device_id, kind) WHERE state IN ('open', 'acknowledged')
                             DO UPDATE SET occurrences = outages.occurrences + 1,
                                           last_seen = greatest(outages.last_seen, excluded.last_seen)
                             RETURNING id, (xmax = 0) AS inserted",
                            &[device_id, kind, reason, &at],
                        )
                        .await
                        .map_err(StoreError::db("opening an outage"))?;
                    let (id, inserted): (i64, bool) = (row.get(0), row.get(1));
                    let transition = if inserted { "opened" } else { "occurred again" };
                    tx.execute(
                        "INSERT INTO outage_events (outage_id, at, actor, transition, detail) VALUES ($1, $2, $3, $4, $5)",
                        &[&id, &at, &ACTOR, &transition, reason],
                    )
                    .await
                    .map_err(StoreError::db("recording an outage event"))?;
                }
                OutageChange::Resolve {
                    device_id,
                    kind,
                    at,
                } => {
                    let at = at.to_datetime();
                    let rows = tx
                        .query(
                            "UPDATE outages SET state = 'resolved', resolved_at = $3
                             WHERE device_id = $1 AND kind = $2 AND state IN ('open', 'acknowledged')
                             RETURNING id",
                            &[device_id, kind, &at],
                        )
                        .await
                        .map_err(StoreError::db("resolving an outage"))?;
                    for row in rows {
                        let id: i64 = row.get(0);
                        tx.execute(
                            "INSERT INTO outage_events (outage_id, at, actor, transition, detail) VALUES ($1, $2, $3, 'resolved', 'telemetry back to normal')",
                            &[&id, &at, &ACTOR],
                        )
                        .await
                        .map_err(StoreError::db("recording an outage event"))?;
                    }
                }
            }
        }
        tx.commit()
            .await
            .map_err(StoreError::db("committing outage changes"))
    }

    /// Outages open now, as (device id, kind).
    pub async fn open_outages(&self) -> Result<Vec<(i32, String)>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT device_id, kind FROM outages WHERE state IN ('open', 'acknowledged')",
                &[],
            )
            .await
            .map_err(StoreError::db("listing open outages"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// All outages, newest first (for reports and tests).
    pub async fn outages(&self) -> Result<Vec<OutageRow>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT id, device_id, kind, state, opened_at, resolved_at, occurrences FROM outages ORDER BY opened_at DESC, id DESC",
                &[],
            )
            .await
            .map_err(StoreError::db("listing outages"))?;
        Ok(rows
            .iter()
            .map(|r| OutageRow {
                id: r.get(0),
                device_id: r.get(1),
                kind: r.get(2),
                state: r.get(3),
                opened_at: r.get(4),
                resolved_at: r.get(5),
                occurrences: r.get(6),
            })
            .collect())
    }

    /// Every device with what the rules need, lamps with their cabinet's device id.
    pub async fn rule_assets(&self) -> Result<Vec<RuleAsset>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT d.id, d.kind, c.id, d.rated_power_w, d.lon, d.lat FROM devices d
                 LEFT JOIN devices c ON c.tenant_id = d.tenant_id AND c.kind = 'cabinet' AND c.ext_id = d.cabinet",
                &[],
            )
            .await
            .map_err(StoreError::db("loading devices for the rules"))?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some(RuleAsset {
                    id: r.get(0),
                    kind: Kind::parse(r.get(1))?,
                    cabinet_id: r.get(2),
                    rated_power_w: r.get(3),
                    lon: r.get(4),
                    lat: r.get(5),
                })
            })
            .collect())
    }
}

//! How far the rules have judged the stream, so that another instance taking them over
//! (or this one, restarted) judges what was stored but not yet judged.
//!
//! The rules judge readings in timestamp order up to a horizon (`rules::timeline`). Their
//! decisions and that horizon are written in one transaction, under the rules' fence: a
//! horizon on record means every decision about readings up to it is on record too. The
//! readings after it were committed by ingestion but their verdicts were still to come
//! when the instance stopped; [`Detection::stored_after`] reads them back, in the form
//! ingestion hands rows on, for the next instance to judge. The table is migration 18
//! (`schema::RULES_PROGRESS`).

use chrono::{DateTime, Utc};
use model::{Cell, FieldType, Observation, RecordType, Row, Timestamp};

use crate::handles::Detection;
use crate::{schema, OutageChange, StoreError};

/// The one stream of rules there is.
const STREAM: &str = "rules";

/// What [`Detection::stored_after`] read: the rows, and whether it stopped at its limit.
#[derive(Debug, Default)]
pub struct Unjudged {
    pub rows: Vec<Observation>,
    pub truncated: bool,
}

impl Detection {
    /// Writes `changes` and, with them, that every reading up to `through` is judged, in
    /// one transaction under the fence. The horizon on record never goes back: the next
    /// instance's first horizon may trail the rows it judged again.
    pub async fn apply_judged(
        &mut self,
        changes: &[OutageChange],
        through: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        let tx = self.fenced_transaction("starting outage changes").await?;
        crate::outages::apply_in(&tx, changes).await?;
        if let Some(through) = through {
            tx.execute(
                "INSERT INTO rules_progress (name, through) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE
                 SET through = greatest(rules_progress.through, excluded.through), recorded_at = now()",
                &[&STREAM, &through.to_datetime()],
            )
            .await
            .map_err(StoreError::db("recording how far the rules judged"))?;
        }
        tx.commit()
            .await
            .map_err(StoreError::db("committing outage changes"))
    }

    /// Up to when the rules judged every stored reading; none before they first recorded it.
    pub async fn judged_through(&self) -> Result<Option<Timestamp>, StoreError> {
        let row = self
            .client()
            .query_opt(
                "SELECT through FROM rules_progress WHERE name = $1",
                &[&STREAM],
            )
            .await
            .map_err(StoreError::db("reading how far the rules judged"))?;
        Ok(row.map(|r| Timestamp::from_datetime(r.get(0))))
    }

    /// Every stored row of every record type with a time in `(after, until]`, in time
    /// order, as ingestion hands rows on (without their unnamed fields); the earliest
    /// `limit` when there are more.
    pub async fn stored_after(
        &self,
        after: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Unjudged, StoreError> {
        let (after, until) = (after.to_datetime(), until.to_datetime());
        let mut out = Unjudged::default();
        for record in RecordType::ALL {
            let fields: Vec<String> = record
                .fields()
                .iter()
                .map(|f| format!("\"{}\"", f.name))
                .collect();
            let sql = format!(
                "SELECT device_id, ts{}{} FROM {} WHERE ts > $1 AND ts <= $2 ORDER BY ts LIMIT $3",
                if fields.is_empty() { "" } else { ", " },
                fields.join(", "),
                schema::table(record)
            );
            let rows = self
                .client()
                .query(&sql, &[&after, &until, &(limit as i64 + 1)])
                .await
                .map_err(StoreError::db("reading the rows the rules have not judged"))?;
            out.truncated |= rows.len() > limit;
            for r in &rows {
                out.rows.push(observation(record, r)?);
            }
        }
        out.rows.sort_by_key(|o| o.row.ts);
        if out.rows.len() > limit {
            out.rows.truncate(limit);
            out.truncated = true;
        }
        Ok(out)
    }
}

fn observation(record: RecordType, r: &tokio_postgres::Row) -> Result<Observation, StoreError> {
    let ts: DateTime<Utc> = r.get(1);
    let mut cells = Vec::with_capacity(record.fields().len());
    for (i, f) in record.fields().iter().enumerate() {
        let at = i + 2;
        let cell = match f.ty {
            FieldType::Bool => r.try_get::<_, Option<bool>>(at).map(|v| v.map(Cell::Bool)),
            FieldType::Real(..) => r
                .try_get::<_, Option<f32>>(at)
                .map(|v| v.map(|v| Cell::Num(v as f64))),
            FieldType::Double(..) => r.try_get::<_, Option<f64>>(at).map(|v| v.map(Cell::Num)),
            FieldType::Text(..) => r
                .try_get::<_, Option<String>>(at)
                .map(|v| v.map(Cell::Text)),
            FieldType::Uuid => r
                .try_get::<_, Option<uuid::Uuid>>(at)
                .map(|v| v.map(Cell::Uuid)),
        }
        .map_err(StoreError::db("reading a stored row back"))?;
        cells.push(cell.unwrap_or(Cell::Null));
    }
    Ok(Observation {
        device_id: r.get(0),
        record,
        row: Row {
            ts: Timestamp::from_datetime(ts),
            cells,
            extra: None,
        },
    })
}

//! Readings of one kind over any time range, read a chunk at a time: what the API's
//! exports stream.
//!
//! An export owns a connection ([`Db::start_export`] consumes it) and reads in one
//! `REPEATABLE READ READ ONLY` transaction, bounded in time by the database itself
//! ([`ExportBounds`]), so the devices it names and the readings it
//! returns are one consistent snapshot however long the transfer takes. The readings come
//! from one statement whose rows are pulled off the socket as the caller asks for chunks
//! ([`ReadingExport::next_chunk`]): when the caller stops asking (a slow client), the
//! connection stops reading and PostgreSQL waits on its socket. Memory is a chunk and
//! the socket buffers, whatever the range.
//!
//! Rows come day by day as the time partitions are laid out, and within a day in the
//! order they were stored (no sort: a sort of a month of readings would spill to disk
//! on the server before the first row is sent).

use crate::handles::Reads;
use std::collections::HashMap;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use model::{FieldType, RecordType};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, RowStream};

use crate::schema::table;
use crate::{Db, StoreError};

/// The record types that can be exported: the four reading tables.
pub const EXPORT_RECORDS: [RecordType; 4] = [
    RecordType::Light,
    RecordType::Cabinet,
    RecordType::Meter,
    RecordType::Vehicle,
];

/// What to export. Devices are those of `tenants`, narrowed by the optional filters.
#[derive(Debug, Clone)]
pub struct ExportQuery<'a> {
    /// One of [`EXPORT_RECORDS`]; the device kind of the same name.
    pub record: RecordType,
    pub tenants: &'a [i32],
    pub district: Option<&'a str>,
    /// A device's inventory id.
    pub device: Option<&'a str>,
    /// Readings at or after.
    pub from: DateTime<Utc>,
    /// Readings before.
    pub to: DateTime<Utc>,
}

/// How long the database lets an export's transaction live: bounds of its own, whatever
/// the hub does (a long `REPEATABLE READ` transaction holds back vacuum everywhere).
#[derive(Debug, Clone)]
pub struct ExportBounds {
    /// The session ends when its transaction sits idle this long (the hub stopped asking
    /// for rows: its client stopped reading).
    pub idle_in_transaction: std::time::Duration,
    /// The reading statement is cancelled after this long.
    pub statement: std::time::Duration,
}

/// A device an export covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportDevice {
    /// Its tenant's slug.
    pub tenant: String,
    /// Its inventory id.
    pub ext_id: String,
}

/// One column of a chunk, typed as the table's column.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    Bool(Vec<Option<bool>>),
    /// `real` columns.
    Real(Vec<Option<f32>>),
    /// `double precision` columns.
    Double(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
}

impl Values {
    fn for_type(ty: FieldType, capacity: usize) -> Values {
        match ty {
            FieldType::Bool => Values::Bool(Vec::with_capacity(capacity)),
            FieldType::Real(..) => Values::Real(Vec::with_capacity(capacity)),
            FieldType::Double(..) => Values::Double(Vec::with_capacity(capacity)),
            FieldType::Text(..) | FieldType::Uuid => Values::Text(Vec::with_capacity(capacity)),
        }
    }

    fn push(&mut self, row: &Row, i: usize) -> Result<(), tokio_postgres::Error> {
        match self {
            Values::Bool(v) => v.push(row.try_get(i)?),
            Values::Real(v) => v.push(row.try_get(i)?),
            Values::Double(v) => v.push(row.try_get(i)?),
            Values::Text(v) => v.push(row.try_get(i)?),
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        match self {
            Values::Bool(v) => v.len(),
            Values::Real(v) => v.len(),
            Values::Double(v) => v.len(),
            Values::Text(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Consecutive readings, column by column.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadingChunk {
    /// Per row, the index of its device in [`ReadingExport::devices`].
    pub device: Vec<u32>,
    /// Per row, the reading's time in microseconds since the Unix epoch (UTC).
    pub ts: Vec<i64>,
    /// The record's fields in [`RecordType::fields`] order.
    pub fields: Vec<Values>,
    /// Fields the contract does not name, as JSON text.
    pub extra: Vec<Option<String>>,
}

impl ReadingChunk {
    fn new(record: RecordType, capacity: usize) -> ReadingChunk {
        ReadingChunk {
            device: Vec::with_capacity(capacity),
            ts: Vec::with_capacity(capacity),
            fields: record
                .fields()
                .iter()
                .map(|f| Values::for_type(f.ty, capacity))
                .collect(),
            extra: Vec::with_capacity(capacity),
        }
    }

    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }
}

/// An export under way: its devices, and its readings a chunk at a time.
pub struct ReadingExport {
    db: Db,
    record: RecordType,
    devices: Vec<ExportDevice>,
    index: HashMap<i32, u32>,
    rows: Pin<Box<RowStream>>,
    chunk_rows: usize,
    done: bool,
}

impl ReadingExport {
    /// The devices the query matched (possibly none).
    pub fn devices(&self) -> &[ExportDevice] {
        &self.devices
    }

    pub fn record(&self) -> RecordType {
        self.record
    }

    /// The next chunk of at most the chunk size given at the start; `None` once every
    /// reading has been returned (the transaction is then committed).
    pub async fn next_chunk(&mut self) -> Result<Option<ReadingChunk>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let fields = self.record.fields().len();
        let mut chunk = ReadingChunk::new(self.record, self.chunk_rows);
        while chunk.len() < self.chunk_rows {
            let Some(row) = self.rows.next().await else {
                self.done = true;
                break;
            };
            let row = row.map_err(StoreError::db("reading exported readings"))?;
            self.push(&mut chunk, &row, fields)?;
        }
        if self.done {
            self.db
                .client()
                .batch_execute("COMMIT")
                .await
                .map_err(StoreError::db("ending an export"))?;
        }
        Ok((!chunk.is_empty()).then_some(chunk))
    }

    fn push(&self, chunk: &mut ReadingChunk, row: &Row, fields: usize) -> Result<(), StoreError> {
        let device: i32 = row.try_get(0).map_err(decoding)?;
        // Every reading's device is among `devices`: both are read in one snapshot with
        // the same filters, so a miss is a fault of this module, reported as such.
        let index = *self
            .index
            .get(&device)
            .ok_or(StoreError::NoDevice(device))?;
        let ts: DateTime<Utc> = row.try_get(1).map_err(decoding)?;
        for (i, values) in chunk.fields.iter_mut().enumerate() {
            values.push(row, 2 + i).map_err(decoding)?;
        }
        chunk.extra.push(row.try_get(2 + fields).map_err(decoding)?);
        chunk.device.push(index);
        chunk.ts.push(ts.timestamp_micros());
        Ok(())
    }
}

fn decoding(source: tokio_postgres::Error) -> StoreError {
    StoreError::Db {
        context: "decoding an exported reading",
        source,
    }
}

impl Reads {
    /// Starts reading `q` on this connection, `chunk_rows` readings per chunk. The
    /// devices are known when this returns; no reading has been read yet.
    pub async fn start_export(
        self,
        q: &ExportQuery<'_>,
        chunk_rows: usize,
        bounds: &ExportBounds,
    ) -> Result<ReadingExport, StoreError> {
        let kind = q.record.name();
        let ms = |d: std::time::Duration| d.as_millis().min(i32::MAX as u128);
        self.client()
            // No parallel workers: they would interleave the days, and an export is paced
            // by its client, not by the scan. The application name shows exports in
            // pg_stat_activity.
            .batch_execute(&format!(
                "SET application_name = 'cityhub export';
                 BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;
                 SET LOCAL max_parallel_workers_per_gather = 0;
                 SET LOCAL idle_in_transaction_session_timeout = {};
                 SET LOCAL statement_timeout = {}",
                ms(bounds.idle_in_transaction),
                ms(bounds.statement)
            ))
            .await
            .map_err(StoreError::db("starting an export"))?;
        let devices = self
            .client()
            .query(
                "SELECT d.id, t.slug, d.ext_id FROM devices d JOIN tenants t ON t.id = d.tenant_id
                 WHERE d.tenant_id = ANY($1) AND d.kind = $2
                   AND ($3::text IS NULL OR d.district = $3)
                   AND ($4::text IS NULL OR d.ext_id = $4)
                 ORDER BY d.id",
                &[&q.tenants, &kind, &q.district, &q.device],
            )
            .await
            .map_err(StoreError::db("finding the devices of an export"))?;
        let mut index = HashMap::with_capacity(devices.len());
        let mut ids = Vec::with_capacity(devices.len());
        let mut list = Vec::with_capacity(devices.len());
        for (i, r) in devices.iter().enumerate() {
            let id: i32 = r.get(0);
            index.insert(id, i as u32);
            ids.push(id);
            list.push(ExportDevice {
                tenant: r.get(1),
                ext_id: r.get(2),
            });
        }
        let columns: Vec<String> = q
            .record
            .fields()
            .iter()
            .map(|f| match f.ty {
                FieldType::Uuid => format!("r.\"{}\"::text", f.name),
                _ => format!("r.\"{}\"", f.name),
            })
            .collect();
        // The devices by id rather than a join: the readings are then scanned partition
        // by partition with a hashed id test (or an index for a few devices), with no join
        // whose spilling could reorder them.
        let sql = format!(
            "SELECT r.device_id, r.ts, {}, r.extra::text FROM {} r
             WHERE r.device_id = ANY($1) AND r.ts >= $2 AND r.ts < $3",
            columns.join(", "),
            table(q.record)
        );
        let params: [&(dyn ToSql + Sync); 3] = [&ids, &q.from, &q.to];
        let rows = self
            .client()
            .query_raw(&sql, params)
            .await
            .map_err(StoreError::db("reading readings to export"))?;
        Ok(ReadingExport {
            db: self.into_db(),
            record: q.record,
            devices: list,
            index,
            rows: Box::pin(rows),
            chunk_rows: chunk_rows.max(1),
            done: false,
        })
    }
}

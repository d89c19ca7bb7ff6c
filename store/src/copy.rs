//! PostgreSQL binary COPY encoding, written straight from decoded rows so a batch is
//! encoded once while it is being collected and streamed as it is.
//!
//! Format: <https://www.postgresql.org/docs/current/sql-copy.html> (binary format).
//! `tokio_postgres::binary_copy` encodes through `ToSql` trait objects per value; this
//! encoder writes the handful of types the reading tables use directly into one buffer,
//! which is what makes the COPY path run near the server's own limit.

use bytes::{BufMut, Bytes, BytesMut};
use model::{Cell, FieldType, Row, Timestamp};

const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// 2000-01-01T00:00:00Z in Unix microseconds: PostgreSQL's timestamp epoch.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// One table's rows in binary COPY format.
#[derive(Debug, Clone)]
pub struct CopyBuffer {
    buf: BytesMut,
    rows: usize,
    columns: i16,
}

impl CopyBuffer {
    pub fn new(columns: usize) -> CopyBuffer {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        buf.put_slice(HEADER);
        CopyBuffer {
            buf,
            rows: 0,
            columns: columns as i16,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// Starts a row; the caller then writes exactly `columns` values.
    pub fn begin_row(&mut self) -> &mut Self {
        self.rows += 1;
        self.buf.put_i16(self.columns);
        self
    }

    pub fn null(&mut self) -> &mut Self {
        self.buf.put_i32(-1);
        self
    }

    pub fn int4(&mut self, v: i32) -> &mut Self {
        self.buf.put_i32(4);
        self.buf.put_i32(v);
        self
    }

    pub fn timestamptz(&mut self, ts: Timestamp) -> &mut Self {
        self.buf.put_i32(8);
        self.buf.put_i64(ts.micros() - PG_EPOCH_MICROS);
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.buf.put_i32(1);
        self.buf.put_u8(v as u8);
        self
    }

    pub fn float4(&mut self, v: f32) -> &mut Self {
        self.buf.put_i32(4);
        self.buf.put_f32(v);
        self
    }

    pub fn float8(&mut self, v: f64) -> &mut Self {
        self.buf.put_i32(8);
        self.buf.put_f64(v);
        self
    }

    pub fn text(&mut self, v: &str) -> &mut Self {
        self.bytea(v.as_bytes())
    }

    pub fn bytea(&mut self, v: &[u8]) -> &mut Self {
        self.buf.put_i32(v.len() as i32);
        self.buf.put_slice(v);
        self
    }

    pub fn uuid(&mut self, v: &uuid::Uuid) -> &mut Self {
        self.bytea(v.as_bytes())
    }

    /// jsonb binary format: a version byte (1) then the JSON text.
    pub fn jsonb(&mut self, v: &serde_json::Map<String, serde_json::Value>) -> &mut Self {
        let at = self.buf.len();
        self.buf.put_i32(0);
        self.buf.put_u8(1);
        // Writing a Map to a BytesMut cannot fail: the writer is infallible and keys are strings.
        serde_json::to_writer((&mut self.buf).writer(), v).expect("JSON map serializes");
        let len = (self.buf.len() - at - 4) as i32;
        self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        self
    }

    /// A decoded cell as the column type its field spec names.
    pub fn cell(&mut self, ty: FieldType, cell: &Cell) -> &mut Self {
        match (ty, cell) {
            (_, Cell::Null) => self.null(),
            (FieldType::Bool, Cell::Bool(v)) => self.bool(*v),
            (FieldType::Real(..), Cell::Num(v)) => self.float4(*v as f32),
            (FieldType::Double(..), Cell::Num(v)) => self.float8(*v),
            (FieldType::Text(..), Cell::Text(v)) => self.text(v),
            (FieldType::Uuid, Cell::Uuid(v)) => self.uuid(v),
            // The decoder only produces cells of their field's type; a mismatch is a bug in
            // `model`, and NULL keeps the row rather than failing the whole batch.
            _ => self.null(),
        }
    }

    /// A reading row: device id, ts, one value per field, extra.
    pub fn reading(&mut self, device_id: i32, specs: &[model::FieldSpec], row: &Row) {
        self.begin_row().int4(device_id).timestamptz(row.ts);
        for (spec, cell) in specs.iter().zip(&row.cells) {
            self.cell(spec.ty, cell);
        }
        match &row.extra {
            Some(extra) => self.jsonb(extra),
            None => self.null(),
        };
    }

    /// The finished stream, trailer included. The buffer stays usable for a retry.
    pub fn finish(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.buf.len() + 2);
        out.put_slice(&self.buf);
        out.put_i16(-1);
        out.freeze()
    }
}

//! Export formats: chunks of readings in, bytes out, one chunk at a time. No IO: the
//! caller sends what each call returns.
//!
//! - CSV (RFC 4180): a header row, then a line per reading, CRLF line ends; fields with
//!   a comma, quote or line break are quoted, quotes doubled; an empty field is null.
//! - Arrow IPC, streaming format: the schema, then one record batch per chunk, then the
//!   end-of-stream marker.
//! - Parquet: a row group per [`ROW_GROUP_ROWS`] readings (Snappy); each finished row
//!   group's bytes are returned as soon as it is complete, the footer at the end.
//!
//! Columns in every format: `tenant`, `device` (inventory id), `ts` (UTC, microseconds),
//! the record's fields as in the device contract, and `extra` (fields the contract does
//! not name, as JSON text).

use std::fmt::Write as _;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Float32Array, Float64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use model::{FieldType, RecordType};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use store::exports::{ExportDevice, ReadingChunk, Values};

/// Readings per Parquet row group: the most a Parquet export holds in memory at once
/// (encoded and compressed, a few megabytes), and what readers skip by.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// The formats an export can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Arrow,
    Parquet,
}

impl Format {
    pub const NAMES: [&'static str; 3] = ["csv", "arrow", "parquet"];

    pub fn parse(name: &str) -> Option<Format> {
        match name {
            "csv" => Some(Format::Csv),
            "arrow" => Some(Format::Arrow),
            "parquet" => Some(Format::Parquet),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Arrow => "arrow",
            Format::Parquet => "parquet",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8; header=present",
            Format::Arrow => "application/vnd.apache.arrow.stream",
            Format::Parquet => "application/vnd.apache.parquet",
        }
    }

    /// The file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Arrow => "arrows",
            Format::Parquet => "parquet",
        }
    }
}

/// A format failed to encode (an Arrow or Parquet writer's error).
#[derive(Debug, thiserror::Error)]
#[error("encoding the export failed: {0}")]
pub struct EncodeError(String);

/// The Arrow schema of a record type's export.
pub fn schema(record: RecordType) -> SchemaRef {
    let mut fields = vec![
        Field::new("tenant", DataType::Utf8, false),
        Field::new("device", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ];
    for f in record.fields() {
        let ty = match f.ty {
            FieldType::Bool => DataType::Boolean,
            FieldType::Real(..) => DataType::Float32,
            FieldType::Double(..) => DataType::Float64,
            FieldType::Text(..) | FieldType::Uuid => DataType::Utf8,
        };
        fields.push(Field::new(f.name, ty, true));
    }
    fields.push(Field::new("extra", DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

/// One export's encoder: [`Encoder::start`], then [`Encoder::chunk`] per chunk, then
/// [`Encoder::finish`]; each returns the bytes to send next (possibly none).
pub enum Encoder {
    Csv(RecordType),
    Arrow(Box<StreamWriter<Vec<u8>>>, SchemaRef),
    Parquet(Box<ArrowWriter<Vec<u8>>>, SchemaRef),
}

impl Encoder {
    /// The encoder and the bytes that open the file (CSV header, Arrow schema, Parquet
    /// magic).
    pub fn start(format: Format, record: RecordType) -> Result<(Encoder, Bytes), EncodeError> {
        let schema = schema(record);
        let mut encoder = match format {
            Format::Csv => {
                let mut header = String::from("tenant,device,ts");
                for f in record.fields() {
                    header.push(',');
                    header.push_str(f.name);
                }
                header.push_str(",extra\r\n");
                return Ok((Encoder::Csv(record), Bytes::from(header)));
            }
            Format::Arrow => Encoder::Arrow(
                Box::new(StreamWriter::try_new(Vec::new(), &schema).map_err(arrow_error)?),
                schema,
            ),
            Format::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                    .set_created_by(format!("cityhub {}", env!("CARGO_PKG_VERSION")))
                    .build();
                let writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props))
                    .map_err(parquet_error)?;
                Encoder::Parquet(Box::new(writer), schema)
            }
        };
        let opening = encoder.take()?;
        Ok((encoder, opening))
    }

    /// The bytes of one more chunk.
    pub fn chunk(
        &mut self,
        devices: &[ExportDevice],
        chunk: ReadingChunk,
    ) -> Result<Bytes, EncodeError> {
        match self {
            Encoder::Csv(record) => Ok(Bytes::from(csv_lines(*record, devices, &chunk))),
            Encoder::Arrow(writer, schema) => {
                let batch = record_batch(schema, devices, chunk)?;
                writer.write(&batch).map_err(arrow_error)?;
                self.take()
            }
            Encoder::Parquet(writer, schema) => {
                let batch = record_batch(schema, devices, chunk)?;
                writer.write(&batch).map_err(parquet_error)?;
                self.take()
            }
        }
    }

    /// The bytes that close the file (Arrow's end-of-stream marker, Parquet's last row
    /// group and footer).
    pub fn finish(&mut self) -> Result<Bytes, EncodeError> {
        match self {
            Encoder::Csv(_) => return Ok(Bytes::new()),
            Encoder::Arrow(writer, _) => writer.finish().map_err(arrow_error)?,
            Encoder::Parquet(writer, _) => {
                writer.finish().map_err(parquet_error)?;
            }
        }
        self.take()
    }

    /// What the writer has produced since the last call.
    fn take(&mut self) -> Result<Bytes, EncodeError> {
        let buffer = match self {
            Encoder::Csv(_) => return Ok(Bytes::new()),
            Encoder::Arrow(writer, _) => writer.get_mut(),
            Encoder::Parquet(writer, _) => {
                // Parquet's own buffering layer first; only finished row groups (and the
                // footer) reach it, so nothing half-written is handed out.
                writer
                    .sync()
                    .map_err(|e| EncodeError(format!("Parquet: {e}")))?;
                // Taking the bytes out of the vector is not writing to it: the writer's
                // byte count (the offsets in the footer) is kept by its own layer.
                writer.inner_mut()
            }
        };
        Ok(Bytes::from(std::mem::take(buffer)))
    }
}

fn arrow_error(e: arrow_schema::ArrowError) -> EncodeError {
    EncodeError(format!("Arrow: {e}"))
}

fn parquet_error(e: parquet::errors::ParquetError) -> EncodeError {
    EncodeError(format!("Parquet: {e}"))
}

/// The chunk as an Arrow record batch of `schema`.
fn record_batch(
    schema: &SchemaRef,
    devices: &[ExportDevice],
    chunk: ReadingChunk,
) -> Result<RecordBatch, EncodeError> {
    let device = |i: &u32| devices.get(*i as usize);
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    columns.push(Arc::new(StringArray::from_iter_values(
        chunk
            .device
            .iter()
            .map(|i| device(i).map_or("", |d| d.tenant.as_str())),
    )));
    columns.push(Arc::new(StringArray::from_iter_values(
        chunk
            .device
            .iter()
            .map(|i| device(i).map_or("", |d| d.ext_id.as_str())),
    )));
    columns.push(Arc::new(
        TimestampMicrosecondArray::from(chunk.ts).with_timezone("UTC"),
    ));
    for values in chunk.fields {
        columns.push(match values {
            Values::Bool(v) => Arc::new(BooleanArray::from(v)),
            Values::Real(v) => Arc::new(Float32Array::from(v)),
            Values::Double(v) => Arc::new(Float64Array::from(v)),
            Values::Text(v) => Arc::new(StringArray::from(v)),
        });
    }
    columns.push(Arc::new(StringArray::from(chunk.extra)));
    RecordBatch::try_new(schema.clone(), columns).map_err(arrow_error)
}

/// The chunk as CSV lines.
fn csv_lines(record: RecordType, devices: &[ExportDevice], chunk: &ReadingChunk) -> String {
    let fields = record.fields().len();
    let mut out = String::with_capacity(chunk.len() * (24 + 8 * fields));
    for row in 0..chunk.len() {
        if let Some(d) = devices.get(chunk.device[row] as usize) {
            csv_text(&mut out, &d.tenant);
            out.push(',');
            csv_text(&mut out, &d.ext_id);
        } else {
            out.push(',');
        }
        out.push(',');
        push_ts(&mut out, chunk.ts[row]);
        for values in &chunk.fields {
            out.push(',');
            match values {
                Values::Bool(v) => {
                    if let Some(b) = v[row] {
                        out.push_str(if b { "true" } else { "false" });
                    }
                }
                Values::Real(v) => {
                    if let Some(x) = v[row] {
                        let _ = write!(out, "{x}");
                    }
                }
                Values::Double(v) => {
                    if let Some(x) = v[row] {
                        let _ = write!(out, "{x}");
                    }
                }
                Values::Text(v) => {
                    if let Some(s) = &v[row] {
                        csv_text(&mut out, s);
                    }
                }
            }
        }
        out.push(',');
        if let Some(extra) = &chunk.extra[row] {
            csv_text(&mut out, extra);
        }
        out.push_str("\r\n");
    }
    out
}

/// A text field, quoted when it holds a comma, a quote or a line break (RFC 4180), or
/// when it is empty (so that an empty text differs from null, an empty field).
fn csv_text(out: &mut String, s: &str) {
    if s.is_empty() || s.contains([',', '"', '\r', '\n']) {
        out.push('"');
        for c in s.chars() {
            if c == '"' {
                out.push('"');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// `2026-03-01T00:15:00.000000Z`.
fn push_ts(out: &mut String, micros: i64) {
    match chrono::DateTime::from_timestamp_micros(micros) {
        Some(t) => {
            let _ = write!(out, "{}", t.format("%Y-%m-%dT%H:%M:%S%.6fZ"));
        }
        None => {
            let _ = write!(out, "{micros}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devices() -> Vec<ExportDevice> {
        vec![
            ExportDevice {
                tenant: "lisbon".into(),
                ext_id: "L1".into(),
            },
            ExportDevice {
                tenant: "porto".into(),
                ext_id: "L2".into(),
            },
        ]
    }

    fn light_chunk() -> ReadingChunk {
        let n = 2;
        let mut fields: Vec<Values> = RecordType::Light
            .fields()
            .iter()
            .map(|f| match f.ty {
                FieldType::Bool => Values::Bool(vec![Some(true), None]),
                FieldType::Real(..) => Values::Real(vec![Some(0.5), None]),
                FieldType::Double(..) => Values::Double(vec![Some(95.25), None]),
                FieldType::Text(..) | FieldType::Uuid => Values::Text(vec![None; n]),
            })
            .collect();
        // fault: one with every character CSV must quote.
        let fault = RecordType::Light.field_index("fault").unwrap();
        fields[fault] = Values::Text(vec![Some("a,\"b\"\r\nc".into()), None]);
        ReadingChunk {
            device: vec![0, 1],
            ts: vec![1_772_323_200_000_000, 1_772_323_200_000_001],
            fields,
            extra: vec![None, Some(r#"{"fw":"1.2"}"#.into())],
        }
    }

    #[test]
    fn csv_quotes_what_it_must_and_leaves_nulls_empty() {
        let (mut e, header) = Encoder::start(Format::Csv, RecordType::Light).unwrap();
        assert_eq!(
            header,
            "tenant,device,ts,on,dim,power_w,voltage_v,current_a,pf,energy_wh,burn_hours,lux,fault,extra\r\n"
        );
        let body = e.chunk(&devices(), light_chunk()).unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            "lisbon,L1,2026-03-01T00:00:00.000000Z,true,0.5,95.25,95.25,95.25,0.5,95.25,95.25,95.25,\"a,\"\"b\"\"\r\nc\",\r\n\
             porto,L2,2026-03-01T00:00:00.000001Z,,,,,,,,,,,\"{\"\"fw\"\":\"\"1.2\"\"}\"\r\n"
        );
        assert!(e.finish().unwrap().is_empty());
    }

    #[test]
    fn arrow_streams_open_with_the_schema_and_close_with_the_marker() {
        let (mut e, opening) = Encoder::start(Format::Arrow, RecordType::Light).unwrap();
        assert!(!opening.is_empty());
        let batch = e.chunk(&devices(), light_chunk()).unwrap();
        let end = e.finish().unwrap();
        // The streaming format's end: continuation marker and a zero length.
        assert_eq!(&end[..], &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        let all = [opening, batch, end].concat();
        let reader =
            arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(all), None).unwrap();
        assert_eq!(reader.schema(), schema(RecordType::Light));
        let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].num_rows(), 2);
    }

    #[test]
    fn parquet_hands_out_row_groups_only_when_they_are_complete() {
        let (mut e, opening) = Encoder::start(Format::Parquet, RecordType::Light).unwrap();
        assert_eq!(&opening[..], b"PAR1");
        // A small chunk stays in the open row group.
        assert!(e.chunk(&devices(), light_chunk()).unwrap().is_empty());
        let end = e.finish().unwrap();
        assert!(end.ends_with(b"PAR1"));
    }
}

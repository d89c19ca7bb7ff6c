//! Exports: each format read back with an independent reader (a CSV parser here, the
//! Arrow and Parquet crates' readers) equals the readings stored; the filters and the
//! tenants; refusals before the first byte; the audit entry; 200k readings; a paused
//! client holding the database back, the limit on running exports, and a failure after
//! the first byte cutting the transfer short.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use model::{decode_payload, Cell, FieldType, Kind, Limits, RecordType, Row, Timestamp};
use store::ReadingBatch;
use tests::api::Auth;
use tests::db::devices;
use tests::eventually;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

use super::City;

/// A value as every format reads back.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Null,
    Bool(bool),
    Num(f64),
    Text(String),
}

/// One exported reading: tenant, device, time (µs), the fields in contract order, extra.
#[derive(Debug, Clone, PartialEq)]
struct Reading {
    tenant: String,
    device: String,
    ts: i64,
    fields: Vec<Value>,
    extra: Option<serde_json::Value>,
}

fn sorted(mut v: Vec<Reading>) -> Vec<Reading> {
    v.sort_by(|a, b| (&a.tenant, &a.device, a.ts).cmp(&(&b.tenant, &b.device, b.ts)));
    v
}

/// What a stored row reads back as: `real` columns hold f32.
fn expected(record: RecordType, tenant: &str, device: &str, row: &Row) -> Reading {
    let fields = record
        .fields()
        .iter()
        .zip(&row.cells)
        .map(|(f, c)| match (c, f.ty) {
            (Cell::Null, _) => Value::Null,
            (Cell::Bool(b), _) => Value::Bool(*b),
            (Cell::Num(x), FieldType::Real(..)) => Value::Num(*x as f32 as f64),
            (Cell::Num(x), _) => Value::Num(*x),
            (Cell::Text(s), _) => Value::Text(s.clone()),
            (Cell::Uuid(u), _) => Value::Text(u.to_string()),
        })
        .collect();
    Reading {
        tenant: tenant.to_owned(),
        device: device.to_owned(),
        ts: row.ts.micros(),
        fields,
        extra: row.extra.clone().map(serde_json::Value::Object),
    }
}

/// Readings decoded from contract payloads, stored through the write path; what they
/// should read back as.
async fn store_payloads(
    city: &City,
    record: RecordType,
    tenant: &str,
    payloads: &[(&str, String)],
) -> Vec<Reading> {
    let mut batch = ReadingBatch::default();
    let mut out = Vec::new();
    for (device, json) in payloads {
        let decoded = decode_payload(
            record,
            json.as_bytes(),
            Timestamp::now(),
            &Limits::default(),
        );
        assert!(
            decoded.rejected.is_empty(),
            "{json}: {:?}",
            decoded.rejected
        );
        for row in decoded.rows {
            out.push(expected(record, tenant, device, &row));
            batch.push(record, city.device(tenant, device), row);
        }
    }
    city.db.ingestion().await.write_batch(&batch).await.unwrap();
    out
}

/// Midnight UTC `days` ago, in Unix milliseconds (within every retention).
fn days_ago(days: i64) -> i64 {
    let day = 86_400_000;
    (tests::now_ms() / day - days) * day
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// A downloaded export: status, headers, body, and whether the body ended properly
/// (HTTP/1.1 chunked encoding's last chunk): a transfer cut short reads `complete: false`.
struct Download {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    complete: bool,
}

impl Download {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn error(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)));
        v["error"].as_str().expect("an error sentence").to_owned()
    }
}

fn token(city: &City, role: &str) -> String {
    match &city.tokens[role] {
        Auth::Token(t) => t.clone(),
        other => panic!("{other:?}"),
    }
}

/// Sends `GET path` over HTTP/1.1 and reads the status line and headers; the body is
/// left on the connection. `receive_buffer` shrinks the socket's buffer (a slow client).
async fn open(
    addr: SocketAddr,
    path: &str,
    token: &str,
    receive_buffer: Option<u32>,
) -> (u16, Vec<(String, String)>, BufReader<TcpStream>) {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = receive_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let mut stream = socket.connect(addr).await.unwrap();
    stream
        .write_all(
            format!(
                "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP reply: {line}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap();
        headers.push((k.trim().to_lowercase(), v.trim().to_owned()));
    }
    (status, headers, reader)
}

/// Reads the rest of a reply's body: chunked (noting whether its last chunk came) or
/// of a given length.
async fn read_body(
    headers: &[(String, String)],
    reader: &mut BufReader<TcpStream>,
) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    if !chunked {
        let length: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| v.parse().unwrap())
            .expect("a length or chunks");
        body.resize(length, 0);
        reader.read_exact(&mut body).await.unwrap();
        return (body, true);
    }
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return (body, false),
            Ok(_) => {}
        }
        let Ok(size) = usize::from_str_radix(line.trim_end(), 16) else {
            return (body, false);
        };
        if size == 0 {
            return (body, true);
        }
        let start = body.len();
        body.resize(start + size + 2, 0);
        if reader.read_exact(&mut body[start..]).await.is_err() {
            body.truncate(start);
            return (body, false);
        }
        body.truncate(start + size);
    }
}

async fn download(city: &City, path: &str, role: &str) -> Download {
    let (status, headers, mut reader) = open(city.api.addr, path, &token(city, role), None).await;
    let (body, complete) = read_body(&headers, &mut reader).await;
    Download {
        status,
        headers,
        body,
        complete,
    }
}

/// An RFC 4180 parser: records of fields, `None` for an empty unquoted field.
fn parse_csv(text: &str) -> Vec<Vec<Option<String>>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        let mut field = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            loop {
                match chars.next().expect("a closing quote") {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => break,
                    c => field.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c == '\r' {
                    break;
                }
                assert_ne!(c, '"', "a quote inside an unquoted field");
                field.push(c);
                chars.next();
            }
        }
        record.push((quoted || !field.is_empty()).then_some(field));
        match chars.next() {
            Some(',') => {}
            Some('\r') => {
                assert_eq!(chars.next(), Some('\n'), "records end with CRLF");
                records.push(std::mem::take(&mut record));
            }
            other => panic!("unexpected {other:?} after a field"),
        }
    }
    assert!(record.is_empty(), "the last record ends with CRLF");
    records
}

fn from_csv(record: RecordType, body: &[u8]) -> Vec<Reading> {
    let records = parse_csv(std::str::from_utf8(body).unwrap());
    let mut header = vec!["tenant", "device", "ts"];
    header.extend(record.fields().iter().map(|f| f.name));
    header.push("extra");
    let got: Vec<&str> = records[0].iter().map(|f| f.as_deref().unwrap()).collect();
    assert_eq!(got, header);
    records[1..]
        .iter()
        .map(|r| {
            assert_eq!(r.len(), header.len());
            let text = |i: usize| r[i].clone().unwrap();
            let ts = chrono::DateTime::parse_from_rfc3339(&text(2)).unwrap();
            Reading {
                tenant: text(0),
                device: text(1),
                ts: ts.timestamp_micros(),
                fields: record
                    .fields()
                    .iter()
                    .enumerate()
                    .map(|(i, f)| match (&r[3 + i], f.ty) {
                        (None, _) => Value::Null,
                        (Some(v), FieldType::Bool) => Value::Bool(v.parse().unwrap()),
                        (Some(v), FieldType::Real(..)) => {
                            Value::Num(v.parse::<f32>().unwrap() as f64)
                        }
                        (Some(v), FieldType::Double(..)) => Value::Num(v.parse().unwrap()),
                        (Some(v), _) => Value::Text(v.clone()),
                    })
                    .collect(),
                extra: r[3 + record.fields().len()]
                    .as_deref()
                    .map(|e| serde_json::from_str(e).unwrap()),
            }
        })
        .collect()
}

fn from_batches(record: RecordType, batches: &[RecordBatch]) -> Vec<Reading> {
    let mut out = Vec::new();
    for b in batches {
        let text = |i: usize, row: usize| {
            let a = b.column(i).as_string::<i32>();
            (!a.is_null(row)).then(|| a.value(row).to_owned())
        };
        let ts = b.column(2).as_primitive::<TimestampMicrosecondType>();
        for row in 0..b.num_rows() {
            let fields = record
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let col = b.column(3 + i);
                    if col.is_null(row) {
                        return Value::Null;
                    }
                    match f.ty {
                        FieldType::Bool => Value::Bool(col.as_boolean().value(row)),
                        FieldType::Real(..) => {
                            Value::Num(col.as_primitive::<Float32Type>().value(row) as f64)
                        }
                        FieldType::Double(..) => {
                            Value::Num(col.as_primitive::<Float64Type>().value(row))
                        }
                        FieldType::Text(..) | FieldType::Uuid => {
                            Value::Text(text(3 + i, row).unwrap())
                        }
                    }
                })
                .collect();
            out.push(Reading {
                tenant: text(0, row).unwrap(),
                device: text(1, row).unwrap(),
                ts: ts.value(row),
                fields,
                extra: text(3 + record.fields().len(), row)
                    .map(|e| serde_json::from_str(&e).unwrap()),
            });
        }
    }
    out
}

fn arrow_batches(body: &[u8]) -> Vec<RecordBatch> {
    let reader =
        arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(body.to_vec()), None)
            .unwrap();
    reader.map(Result::unwrap).collect()
}

/// The record batches of a Parquet file and its number of row groups.
fn parquet_batches(body: &[u8]) -> (Vec<RecordBatch>, usize) {
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::copy_from_slice(body),
    )
    .unwrap();
    let groups = builder.metadata().num_row_groups();
    let batches = builder.build().unwrap().map(Result::unwrap).collect();
    (batches, groups)
}

fn read_back(record: RecordType, format: &str, body: &[u8]) -> Vec<Reading> {
    match format {
        "csv" => from_csv(record, body),
        "arrow" => from_batches(record, &arrow_batches(body)),
        "parquet" => from_batches(record, &parquet_batches(body).0),
        other => panic!("{other}"),
    }
}

/// Lamp payloads at `start` + 15 min * i: values, nulls, a fault that CSV must quote,
/// fields the contract does not name.
fn lamp_payloads(device: &'static str, start: i64, n: i64) -> Vec<(&'static str, String)> {
    (0..n)
        .map(|i| {
            let ts = start + i * 900_000;
            let json = match i % 3 {
                0 => format!(
                    r#"{{"ts":{ts},"on":true,"dim":37.5,"power_w":61.25,"voltage_v":229.9,"pf":0.95,"energy_wh":{}}}"#,
                    1000.5 + i as f64
                ),
                1 => format!(
                    r#"{{"ts":{ts},"on":false,"fault":"driver, \"B\" side\nline 2","fw":"1.2","tags":[1,2]}}"#
                ),
                _ => format!(r#"{{"ts":{ts}}}"#),
            };
            (device, json)
        })
        .collect()
}

#[tokio::test]
async fn every_format_reads_back_as_the_readings_stored() {
    let city = City::start().await;
    let (a, b) = (city.a.clone(), city.b.clone());
    let start = days_ago(3);
    let end = start + 86_400_000;
    let mut want = Vec::new();
    for device in ["L0", "L1", "L2"] {
        want.extend(
            store_payloads(
                &city,
                RecordType::Light,
                &a,
                &lamp_payloads(device, start, 12),
            )
            .await,
        );
    }
    // Outside: another tenant, just before `from`, exactly at `to` (exclusive).
    store_payloads(
        &city,
        RecordType::Light,
        &b,
        &lamp_payloads("L0", start, 12),
    )
    .await;
    store_payloads(
        &city,
        RecordType::Light,
        &a,
        &[
            ("L0", format!(r#"{{"ts":{}}}"#, start - 1)),
            ("L0", format!(r#"{{"ts":{end}}}"#)),
        ],
    )
    .await;
    let want = sorted(want);
    assert_eq!(want.len(), 36);

    let range = format!("from={}&to={}", rfc3339(start), rfc3339(end));
    for (format, content_type, ext) in [
        ("csv", "text/csv; charset=utf-8; header=present", "csv"),
        ("arrow", "application/vnd.apache.arrow.stream", "arrows"),
        ("parquet", "application/vnd.apache.parquet", "parquet"),
    ] {
        let d = download(
            &city,
            &format!("/api/v1/exports/light?{range}&format={format}"),
            "viewer",
        )
        .await;
        assert_eq!(
            d.status,
            200,
            "{format}: {}",
            String::from_utf8_lossy(&d.body)
        );
        assert!(d.complete, "{format}");
        assert_eq!(d.header("content-type"), Some(content_type));
        let disposition = d.header("content-disposition").unwrap();
        assert!(
            disposition.starts_with("attachment; filename=\"light-readings_")
                && disposition.ends_with(&format!(".{ext}\"")),
            "{disposition}"
        );
        assert_eq!(
            sorted(read_back(RecordType::Light, format, &d.body)),
            want,
            "{format}"
        );
    }
    // CSV is the default format.
    let d = download(&city, &format!("/api/v1/exports/light?{range}"), "viewer").await;
    assert_eq!(sorted(from_csv(RecordType::Light, &d.body)), want);

    // Another kind has its own columns.
    let cabinet = store_payloads(
        &city,
        RecordType::Cabinet,
        &a,
        &[(
            "C0",
            format!(
                r#"{{"ts":{},"supply":false,"door_open":true,"power_kw":3.5,"energy_kwh":120.75}}"#,
                start + 60_000
            ),
        )],
    )
    .await;
    for format in ["csv", "parquet"] {
        let d = download(
            &city,
            &format!("/api/v1/exports/cabinet?{range}&format={format}"),
            "operator",
        )
        .await;
        assert_eq!(
            read_back(RecordType::Cabinet, format, &d.body),
            cabinet,
            "{format}"
        );
    }
    // An empty range is a file with its header and no rows.
    let empty = format!(
        "from={}&to={}",
        rfc3339(end + 3_600_000),
        rfc3339(end + 7_200_000)
    );
    for format in ["csv", "arrow", "parquet"] {
        let d = download(
            &city,
            &format!("/api/v1/exports/light?{empty}&format={format}"),
            "admin",
        )
        .await;
        assert_eq!(d.status, 200);
        assert_eq!(
            read_back(RecordType::Light, format, &d.body),
            vec![],
            "{format}"
        );
    }
}

#[tokio::test]
async fn filters_narrow_the_export_to_tenants_districts_and_devices() {
    let city = City::start().await;
    let (a, b, c) = (city.a.clone(), city.b.clone(), city.c.clone());
    let mut north = devices(&a, &[(Kind::Light, 2)]);
    for d in &mut north {
        d.id = format!("N{}", d.id);
        d.district = Some("north".into());
    }
    city.db.import(&north).await;
    let mut b_only = devices(&b, &[(Kind::Light, 1)]);
    b_only[0].id = "B-only".into();
    city.db.import(&b_only).await;
    let ids = city.db.device_ids(&a).await;

    let start = days_ago(2);
    let one = |device: &'static str| vec![(device, format!(r#"{{"ts":{start},"dim":10}}"#))];
    let mut batch = ReadingBatch::default();
    let mut all: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (tenant, device) in [
        (&a, "L0"),
        (&a, "L1"),
        (&a, "NL0"),
        (&a, "NL1"),
        (&b, "L0"),
        (&b, "B-only"),
        (&c, "L0"),
    ] {
        let decoded = decode_payload(
            RecordType::Light,
            one(device)[0].1.as_bytes(),
            Timestamp::now(),
            &Limits::default(),
        );
        let id = match device {
            "NL0" | "NL1" => ids[device],
            "B-only" => city.db.device_ids(&b).await["B-only"],
            _ => city.device(tenant, device),
        };
        for row in decoded.rows {
            batch.push(RecordType::Light, id, row);
        }
        all.insert((tenant.clone(), device.to_owned()), 1);
    }
    city.db.ingestion().await.write_batch(&batch).await.unwrap();

    let range = format!("from={}&to={}", rfc3339(start), rfc3339(start + 1000));
    let who = |role: &'static str, query: &str| {
        let path = format!("/api/v1/exports/light?{range}&format=parquet{query}");
        let city = &city;
        async move {
            let d = download(city, &path, role).await;
            assert_eq!(
                d.status,
                200,
                "{path}: {}",
                String::from_utf8_lossy(&d.body)
            );
            let mut got: Vec<(String, String)> = read_back(RecordType::Light, "parquet", &d.body)
                .into_iter()
                .map(|r| (r.tenant, r.device))
                .collect();
            got.sort();
            got
        }
    };
    let pairs = |list: &[(&String, &str)]| {
        let mut v: Vec<(String, String)> = list
            .iter()
            .map(|(t, d)| ((*t).clone(), (*d).to_owned()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        who("viewer", "").await,
        pairs(&[(&a, "L0"), (&a, "L1"), (&a, "NL0"), (&a, "NL1")])
    );
    assert_eq!(
        who("regional_viewer", "").await,
        pairs(&[(&a, "L0"), (&a, "L1"), (&a, "NL0"), (&a, "NL1"), (&c, "L0")])
    );
    assert_eq!(
        who("regional_viewer", &format!("&tenant={c}")).await,
        pairs(&[(&c, "L0")])
    );
    assert_eq!(
        who("viewer", "&district=north").await,
        pairs(&[(&a, "NL0"), (&a, "NL1")])
    );
    assert_eq!(who("viewer", "&device=L1").await, pairs(&[(&a, "L1")]));
    assert_eq!(
        who("regional_viewer", "&device=L0").await,
        pairs(&[(&a, "L0"), (&c, "L0")])
    );
    // Nothing of another tenant, and no hint that it exists.
    for (query, sentence) in [
        (format!("&tenant={b}"), format!("no tenant `{b}`")),
        ("&device=B-only".to_owned(), "no light `B-only`".to_owned()),
        (
            "&device=nowhere".to_owned(),
            "no light `nowhere`".to_owned(),
        ),
        (
            "&district=nowhere".to_owned(),
            "no light devices in district `nowhere`".to_owned(),
        ),
        // A cabinet is not a lamp.
        ("&device=C0".to_owned(), "no light `C0`".to_owned()),
    ] {
        let d = download(
            &city,
            &format!("/api/v1/exports/light?{range}{query}"),
            "viewer",
        )
        .await;
        assert_eq!((d.status, d.error()), (404, sentence), "{query}");
    }
    assert_eq!(all.len(), 7);
}

#[tokio::test]
async fn refusals_are_json_sentences_before_any_byte_and_exports_are_audited() {
    let city = City::start().await;
    let from = rfc3339(days_ago(2));
    let to = rfc3339(days_ago(1));
    let ok = format!("from={from}&to={to}");
    for (path, role, status, sentence) in [
        (
            format!("/api/v1/exports/light?{ok}"),
            "crew",
            403,
            "a crew may not export readings".to_owned(),
        ),
        (
            format!("/api/v1/exports/lamps?{ok}"),
            "admin",
            404,
            "there is no export of `lamps`: the kinds are light, cabinet, meter and vehicle"
                .to_owned(),
        ),
        (
            format!("/api/v1/exports/light?{ok}&format=xlsx"),
            "admin",
            400,
            "format `xlsx` is not one of csv, arrow, parquet".to_owned(),
        ),
        (
            format!("/api/v1/exports/light?to={to}"),
            "admin",
            400,
            "from is required: an export covers from (inclusive) to (exclusive), RFC 3339 times"
                .to_owned(),
        ),
        (
            format!("/api/v1/exports/light?from={from}"),
            "admin",
            400,
            "to is required: an export covers from (inclusive) to (exclusive), RFC 3339 times"
                .to_owned(),
        ),
        (
            "/api/v1/exports/light?from=yesterday&to=today".to_owned(),
            "admin",
            400,
            "from must be an RFC 3339 time such as 2026-03-01T00:00:00Z, not `yesterday`"
                .to_owned(),
        ),
        (
            format!("/api/v1/exports/light?from={to}&to={from}"),
            "admin",
            400,
            "the time range runs backwards".to_owned(),
        ),
        (
            "/api/v1/exports/light?from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z".to_owned(),
            "admin",
            400,
            "the time range is too long: at most 400 days".to_owned(),
        ),
        (
            format!("/api/v1/exports/light?{ok}&colour=red"),
            "admin",
            400,
            "the query string is not valid".to_owned(),
        ),
        (
            format!("/api/v1/exports/light?{ok}&device="),
            "admin",
            400,
            "device must be 1 to 64 printable characters".to_owned(),
        ),
    ] {
        let d = download(&city, &path, role).await;
        assert_eq!(d.status, status, "{path}");
        assert_eq!(d.header("content-type"), Some("application/json"), "{path}");
        let error = d.error();
        assert!(error.starts_with(&sentence), "{path}: {error}");
    }
    let (status, _, _) = open(
        city.api.addr,
        &format!("/api/v1/exports/light?{ok}"),
        "chk_not_a_token",
        None,
    )
    .await;
    assert_eq!(status, 401);
    // None of those was an export.
    let exports = "SELECT count(*) FROM audit_log WHERE action = 'readings.export'";
    assert_eq!(city.db.count(exports).await, 0);

    let d = download(
        &city,
        &format!("/api/v1/exports/cabinet?{ok}&format=arrow&district=centre"),
        "regional_viewer",
    )
    .await;
    assert_eq!(d.status, 200);
    assert_eq!(city.db.count(exports).await, 1);
    let row = city
        .db
        .client
        .query_one(
            "SELECT actor, target, detail FROM audit_log WHERE action = 'readings.export'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "regional_viewer (token tests)");
    assert_eq!(row.get::<_, String>(1), "readings/cabinet");
    let detail: serde_json::Value = row.get(2);
    let mut tenants = vec![city.a.clone(), city.c.clone()];
    tenants.sort();
    assert_eq!(
        detail,
        serde_json::json!({
            "kind": "cabinet",
            "format": "arrow",
            "from": from,
            "to": to,
            "tenants": tenants,
            "district": "centre",
            "device": null,
        })
    );
}

/// `lamps` of tenant `a` with `per_lamp` readings each, a minute apart from `start`,
/// through the write path in batches; the number stored.
async fn store_many(city: &City, lamps: usize, per_lamp: usize, start: i64) -> usize {
    let mut db = city.db.store().await;
    let fields = RecordType::Light.fields().len();
    let dim = RecordType::Light.field_index("dim").unwrap();
    let power = RecordType::Light.field_index("power_w").unwrap();
    let mut batch = ReadingBatch::default();
    let mut stored = 0;
    for lamp in 0..lamps {
        let id = city.device(&city.a, &format!("L{lamp}"));
        for i in 0..per_lamp {
            let mut cells = vec![Cell::Null; fields];
            cells[dim] = Cell::Num((i % 100) as f64);
            cells[power] = Cell::Num(0.25 * i as f64);
            let ts = Timestamp((start + i as i64 * 60_000) * 1000);
            batch.push(
                RecordType::Light,
                id,
                Row {
                    ts,
                    cells,
                    extra: None,
                },
            );
            if batch.reading_rows() >= 50_000 {
                stored += batch.reading_rows();
                db.ingestion
                    .write_batch(&std::mem::take(&mut batch))
                    .await
                    .unwrap();
            }
        }
    }
    stored += batch.reading_rows();
    db.ingestion.write_batch(&batch).await.unwrap();
    stored
}

#[tokio::test]
async fn a_large_export_streams_every_reading() {
    let city = City::start().await;
    let start = days_ago(8);
    let stored = store_many(&city, 25, 8_000, start).await;
    assert_eq!(stored, 200_000);
    let range = format!(
        "from={}&to={}",
        rfc3339(start),
        rfc3339(start + 8 * 86_400_000)
    );

    let d = download(
        &city,
        &format!("/api/v1/exports/light?{range}&format=parquet"),
        "viewer",
    )
    .await;
    assert!(d.complete);
    let (batches, row_groups) = parquet_batches(&d.body);
    assert_eq!(
        batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
        200_000
    );
    // A row group per 128 Ki readings: the file was written a group at a time.
    assert_eq!(row_groups, 2);

    let d = download(
        &city,
        &format!("/api/v1/exports/light?{range}&format=arrow"),
        "viewer",
    )
    .await;
    let batches = arrow_batches(&d.body);
    assert_eq!(
        batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
        200_000
    );
    // One record batch per chunk read.
    assert!(batches.len() >= 200_000 / 8192, "{}", batches.len());
    assert!(batches.iter().all(|b| b.num_rows() <= 8192));

    let d = download(
        &city,
        &format!("/api/v1/exports/light?{range}&format=csv"),
        "viewer",
    )
    .await;
    let readings = from_csv(RecordType::Light, &d.body);
    assert_eq!(readings.len(), 200_000);
    let mut per_lamp: BTreeMap<String, usize> = BTreeMap::new();
    for r in &readings {
        *per_lamp.entry(r.device.clone()).or_default() += 1;
    }
    assert_eq!(per_lamp.len(), 25);
    assert!(per_lamp.values().all(|n| *n == 8_000));
    // Spot check one reading's values.
    let r = readings
        .iter()
        .find(|r| r.device == "L3" && r.ts == (start + 150 * 60_000) * 1000)
        .unwrap();
    let dim = RecordType::Light.field_index("dim").unwrap();
    let power = RecordType::Light.field_index("power_w").unwrap();
    assert_eq!(
        (&r.fields[dim], &r.fields[power]),
        (&Value::Num(50.0), &Value::Num(37.5))
    );
}

/// 200,000 readings of 25 lamps over the last eight days; the path of their export.
async fn eight_days_of_lamps(city: &City) -> String {
    let start = days_ago(8);
    store_many(city, 25, 8_000, start).await;
    format!(
        "/api/v1/exports/light?from={}&to={}",
        rfc3339(start),
        rfc3339(start + 8 * 86_400_000)
    )
}

/// The export statements running, by backend pid, with what each waits on.
async fn export_backends(city: &City) -> Vec<(i32, Option<String>)> {
    city.db
        .client
        .query(
            "SELECT pid, wait_event FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE 'SELECT r.device_id, r.ts,%'
               AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn slow_clients_hold_the_database_back_and_a_failure_cuts_the_transfer() {
    // One person may hold every slot here: this is about the server's limit.
    let city = City::start_configured(|c| {
        c.exports.per_user = 4;
        c.exports.per_tenant = 4;
    })
    .await;
    let path = eight_days_of_lamps(&city).await;
    let viewer = token(&city, "viewer");

    // Four clients that read nothing: each export fills the client's small socket
    // buffer and its own channel, then stops reading from the database, which stops
    // sending (it waits to write to its client, the hub).
    let mut paused = Vec::new();
    for _ in 0..4 {
        let (status, headers, reader) = open(city.api.addr, &path, &viewer, Some(4096)).await;
        assert_eq!(status, 200);
        paused.push((headers, reader));
    }
    eventually(
        Duration::from_secs(20),
        "four exports waiting on the hub",
        || async {
            let b = export_backends(&city).await;
            (b.len() == 4 && b.iter().all(|(_, w)| w.as_deref() == Some("ClientWrite")))
                .then_some(())
        },
    )
    .await;

    // A fifth is refused while four run.
    let d = download(&city, &path, "viewer").await;
    assert_eq!(d.status, 503);
    assert_eq!(
        d.error(),
        "4 exports are running already, the most the server runs at once; try again when one has finished"
    );

    // A client that goes away frees its export.
    drop(paused.pop());
    eventually(
        Duration::from_secs(20),
        "the abandoned export to end",
        || async { (export_backends(&city).await.len() == 3).then_some(()) },
    )
    .await;

    // The database fails under one of the paused exports: once its client reads on, the
    // transfer ends without its last chunk, never as a complete-looking file. The others
    // read on to the end.
    let victim = export_backends(&city).await;
    assert_eq!(victim.len(), 3);
    let killed: bool = city
        .db
        .client
        .query_one("SELECT pg_terminate_backend($1)", &[&victim[0].0])
        .await
        .unwrap()
        .get(0);
    assert!(killed);
    let mut whole = Vec::new();
    let mut cut = Vec::new();
    for (headers, mut reader) in paused {
        let (body, complete) = read_body(&headers, &mut reader).await;
        if complete {
            whole.push(body);
        } else {
            cut.push(body);
        }
    }
    assert_eq!(
        (whole.len(), cut.len()),
        (2, 1),
        "exactly one transfer is cut"
    );
    for body in &whole {
        assert_eq!(from_csv(RecordType::Light, body).len(), 200_000);
    }
    assert!(cut[0].len() < whole[0].len());

    // Every export has ended: a new one runs.
    let d = download(&city, &path, "viewer").await;
    assert_eq!(d.status, 200);
    assert!(d.complete);
}

#[tokio::test]
async fn one_person_cannot_hold_every_export_and_a_client_that_stops_reading_ends_its_own() {
    let city = City::start_configured(|c| {
        c.http.send_timeout = Duration::from_secs(3);
    })
    .await;
    let path = eight_days_of_lamps(&city).await;
    // A viewer opens exports and reads none of them.
    let viewer = token(&city, "viewer");
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let (status, _, reader) = open(city.api.addr, &path, &viewer, Some(4096)).await;
        assert_eq!(status, 200);
        stalled.push(reader);
    }
    // A third of theirs waits its turn; someone else's runs.
    let d = download(&city, &path, "viewer").await;
    assert_eq!(d.status, 429);
    assert_eq!(
        d.error(),
        "you have 2 exports running already, the most one person may run at once; try again when one has finished"
    );
    assert_eq!(d.header("retry-after"), Some("10"));
    let d = download(&city, &path, "operator").await;
    assert_eq!(d.status, 200);
    assert!(d.complete);
    assert_eq!(from_csv(RecordType::Light, &d.body).len(), 200_000);

    // The stalled ones are cut off once the client has taken nothing for the send
    // timeout: their transactions end, and their slots are free again.
    eventually(
        Duration::from_secs(30),
        "the stalled exports' transactions to end",
        || async { export_backends(&city).await.is_empty().then_some(()) },
    )
    .await;
    let idle_in_transaction = city
        .db
        .count(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'cityhub export'",
        )
        .await;
    assert_eq!(idle_in_transaction, 0);
    for mut reader in stalled {
        let mut rest = Vec::new();
        let _ = reader.read_to_end(&mut rest).await;
        assert!(
            !ends_complete(&rest),
            "a stalled transfer is cut, never complete"
        );
    }
    let d = download(&city, &path, "viewer").await;
    assert_eq!(d.status, 200);
    assert!(d.complete);
}

/// Whether a chunked body's last bytes are its final, empty chunk.
fn ends_complete(body: &[u8]) -> bool {
    body.ends_with(b"\r\n0\r\n\r\n")
}

#[tokio::test]
async fn an_export_ends_when_its_token_is_revoked() {
    let mut city = City::start().await;
    let path = eight_days_of_lamps(&city).await;
    tests::api::add_user(
        &mut city.store.admin,
        "exporter",
        "viewer",
        &[&city.a],
        None,
    )
    .await;
    let secret = tests::api::add_token(&mut city.store.admin, "exporter", "nightly").await;
    // Clients that read nothing: the exports are still running when the token goes, and
    // hold both of the person's export slots.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let (status, _, reader) = open(city.api.addr, &path, &secret, Some(4096)).await;
        assert_eq!(status, 200);
        stalled.push(reader);
    }
    eventually(Duration::from_secs(20), "the exports running", || async {
        (export_backends(&city).await.len() == 2).then_some(())
    })
    .await;
    city.store
        .admin
        .revoke_api_token("exporter", "nightly", "test")
        .await
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "the exports' transactions to end",
        || async { export_backends(&city).await.is_empty().then_some(()) },
    )
    .await;
    // The slots are given back at once, though the clients still read nothing: the same
    // person with another token exports again.
    let other = tests::api::add_token(&mut city.store.admin, "exporter", "other").await;
    let (status, _, _) = open(city.api.addr, &path, &other, None).await;
    assert_eq!(status, 200, "the cut exports still hold their slots");
    // Nothing more reaches the client: the connection is reset, not left to drain what
    // the hub's kernel had queued for it (megabytes, for a client that reads slowly).
    for mut reader in stalled {
        let mut rest = Vec::new();
        let _ = reader.read_to_end(&mut rest).await;
        assert!(!ends_complete(&rest), "the transfer is cut, never complete");
        assert!(
            rest.len() < 256 * 1024,
            "{} bytes reached the client after its access ended",
            rest.len()
        );
    }
}

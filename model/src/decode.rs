//! Payload decoding: bytes -> accepted [`Row`]s and rejected elements, each with a reason.
//!
//! A payload is one JSON object or an array of objects. Whole-payload failures (too large,
//! not JSON, not objects) reject the payload; within an array each object stands alone, so
//! the good ones are kept and each bad one is rejected with its own raw bytes.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::record::{Cell, FieldType, RecordType, Row};
use crate::{Rejection, TimeWindow, Timestamp};

/// Bounds on what one message may carry.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_payload_bytes: usize,
    pub max_array_len: usize,
    pub window: TimeWindow,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: 256 * 1024,
            max_array_len: 10_000,
            window: TimeWindow::default(),
        }
    }
}

/// A refused payload or array element, with the bytes to dead-letter.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Position in the array; `None` when the whole payload was refused.
    pub index: Option<usize>,
    pub raw: Vec<u8>,
    pub reason: Rejection,
}

/// What one payload decoded into.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Decoded {
    pub rows: Vec<Row>,
    pub rejected: Vec<Rejected>,
}

/// Decodes `payload` as records of `record` type received at `now`.
pub fn decode_payload(
    record: RecordType,
    payload: &[u8],
    now: Timestamp,
    limits: &Limits,
) -> Decoded {
    let mut out = Decoded::default();
    let whole = |reason| Rejected {
        index: None,
        raw: payload.to_vec(),
        reason,
    };
    if payload.len() > limits.max_payload_bytes {
        out.rejected.push(whole(Rejection::Oversize {
            size: payload.len(),
            limit: limits.max_payload_bytes,
        }));
        return out;
    }
    match payload.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => match serde_json::from_slice::<Entries>(payload) {
            Ok(entries) => match build_row(record, entries, now, &limits.window) {
                Ok(row) => out.rows.push(row),
                Err(reason) => out.rejected.push(whole(reason)),
            },
            Err(e) => out.rejected.push(whole(json_error(e))),
        },
        Some(b'[') => match serde_json::from_slice::<Vec<&RawValue>>(payload) {
            Ok(items) if items.len() > limits.max_array_len => {
                out.rejected.push(whole(Rejection::TooManyObjects {
                    count: items.len(),
                    limit: limits.max_array_len,
                }))
            }
            Ok(items) => {
                out.rows.reserve(items.len());
                for (index, item) in items.into_iter().enumerate() {
                    let text = item.get();
                    let result = if text.starts_with('{') {
                        serde_json::from_str::<Entries>(text)
                            .map_err(json_error)
                            .and_then(|entries| build_row(record, entries, now, &limits.window))
                    } else {
                        Err(Rejection::NotAnObject(json_kind(text)))
                    };
                    match result {
                        Ok(row) => out.rows.push(row),
                        Err(reason) => out.rejected.push(Rejected {
                            index: Some(index),
                            raw: text.as_bytes().to_vec(),
                            reason,
                        }),
                    }
                }
            }
            Err(e) => out.rejected.push(whole(json_error(e))),
        },
        Some(_) => {
            let reason = match serde_json::from_slice::<Value>(payload) {
                Ok(v) => Rejection::NotAnObject(value_kind(&v)),
                Err(e) => json_error(e),
            };
            out.rejected.push(whole(reason));
        }
        None => out
            .rejected
            .push(whole(Rejection::InvalidJson("payload is empty".into()))),
    }
    out
}

fn json_error(e: serde_json::Error) -> Rejection {
    Rejection::InvalidJson(e.to_string())
}

fn json_kind(text: &str) -> &'static str {
    match text.as_bytes().first() {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn build_row(
    record: RecordType,
    entries: Entries<'_>,
    now: Timestamp,
    window: &TimeWindow,
) -> Result<Row, Rejection> {
    let specs = record.fields();
    let mut cells = vec![Cell::Null; specs.len()];
    let mut ts = None;
    let mut extra: Option<Map<String, Value>> = None;
    for (key, value) in entries.0 {
        if key == "ts" {
            ts = Some(value);
            continue;
        }
        match specs.iter().position(|f| f.name == key) {
            Some(i) => {
                cells[i] = match value {
                    Value::String(s) if specs[i].blank_is_null && s.trim().is_empty() => Cell::Null,
                    value => to_cell(specs[i].name, specs[i].ty, value)?,
                }
            }
            None => {
                if key.contains('\0') || has_nul(&value) {
                    return Err(Rejection::WrongType {
                        field: "extra",
                        why: format!(
                            "`{}` holds a NUL character (\\u0000), which cannot be stored",
                            key.replace('\0', "")
                        ),
                    });
                }
                extra
                    .get_or_insert_with(Map::new)
                    .insert(key.into_owned(), value);
            }
        }
    }
    for (spec, cell) in specs.iter().zip(&cells) {
        if spec.required && *cell == Cell::Null {
            return Err(Rejection::WrongType {
                field: spec.name,
                why: "is required".into(),
            });
        }
    }
    let ts = match ts {
        Some(Value::Null) | None if record.ts_optional() => now,
        Some(Value::Null) | None => return Err(Rejection::MissingTs),
        Some(v) => parse_ts(v)?,
    };
    check_window(ts, now, window)?;
    Ok(Row { ts, cells, extra })
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn parse_ts(v: Value) -> Result<Timestamp, Rejection> {
    let wrong = |why: &str| Rejection::WrongType {
        field: "ts",
        why: why.to_owned(),
    };
    match v {
        Value::Number(n) => n
            .as_i64()
            .and_then(Timestamp::from_unix_ms)
            .ok_or_else(|| wrong("a number must be integer Unix milliseconds")),
        Value::String(s) => Timestamp::from_rfc3339(&s).ok_or_else(|| {
            wrong("a string must be RFC 3339 with an offset, like 2026-01-31T18:00:00Z")
        }),
        other => Err(Rejection::WrongType {
            field: "ts",
            why: format!(
                "expected RFC 3339 string or Unix milliseconds, got {}",
                value_kind(&other)
            ),
        }),
    }
}

fn check_window(ts: Timestamp, now: Timestamp, window: &TimeWindow) -> Result<(), Rejection> {
    if ts > now.add_secs(window.max_future_secs) {
        return Err(Rejection::FutureTs {
            ts: ts.to_string(),
            max_future_s: window.max_future_secs,
        });
    }
    if ts < now.add_secs(-window.retention_days * 86_400) {
        return Err(Rejection::ExpiredTs {
            ts: ts.to_string(),
            retention_days: window.retention_days,
        });
    }
    Ok(())
}

fn to_cell(field: &'static str, ty: FieldType, value: Value) -> Result<Cell, Rejection> {
    let wrong = |expected: &str, got: &Value| Rejection::WrongType {
        field,
        why: format!("expected {expected}, got {}", value_kind(got)),
    };
    if value.is_null() {
        return Ok(Cell::Null);
    }
    match ty {
        FieldType::Bool => value
            .as_bool()
            .map(Cell::Bool)
            .ok_or_else(|| wrong("a boolean", &value)),
        FieldType::Real(lo, hi) | FieldType::Double(lo, hi) => {
            let v = value.as_f64().ok_or_else(|| wrong("a number", &value))?;
            if !(lo..=hi).contains(&v) {
                let range = match ty {
                    FieldType::Real(0.0, 1.0) => "0..1",
                    FieldType::Real(0.0, 100.0) => "0..100",
                    FieldType::Double(-90.0, 90.0) => "-90..90",
                    FieldType::Double(-180.0, 180.0) => "-180..180",
                    FieldType::Real(0.0, 360.0) => "0..360",
                    _ => "0 or more",
                };
                return Err(Rejection::OutOfRange {
                    field,
                    value: v,
                    range,
                });
            }
            Ok(Cell::Num(v))
        }
        FieldType::Text(max, allowed) => match value {
            Value::String(s) if s.contains('\0') => Err(Rejection::WrongType {
                field,
                why: "holds a NUL character (\\u0000), which cannot be stored".into(),
            }),
            Value::String(s) if s.len() > max => Err(Rejection::WrongType {
                field,
                why: format!("is {} bytes, longer than {max}", s.len()),
            }),
            Value::String(s) => match allowed {
                Some(set) if !set.contains(&s.as_str()) => Err(Rejection::WrongType {
                    field,
                    why: format!("`{s}` is not one of {}", set.join(", ")),
                }),
                _ => Ok(Cell::Text(s)),
            },
            other => Err(wrong("a string", &other)),
        },
        FieldType::Uuid => match &value {
            Value::String(s) => uuid::Uuid::parse_str(s)
                .map(Cell::Uuid)
                .map_err(|_| wrong("a UUID string", &value)),
            _ => Err(wrong("a UUID string", &value)),
        },
    }
}

/// An object's entries with keys borrowed from the input where possible.
struct Entries<'de>(Vec<(Cow<'de, str>, Value)>);

impl<'de> de::Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<'de>, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(12));
                while let Some(Key(key)) = map.next_key()? {
                    if entries.iter().any(|(k, _): &(Cow<str>, Value)| *k == key) {
                        return Err(de::Error::custom(format_args!("duplicate field `{key}`")));
                    }
                    entries.push((key, map.next_value()?));
                }
                Ok(Entries(entries))
            }
        }
        d.deserialize_map(EntriesVisitor)
    }
}

struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

//! Telemetry over time and the state of every device: a device's history in time buckets
//! (`/devices/{id}/history`) and the map's columnar state (`/state`). A device is named by
//! its inventory id; a caller with several tenants adds `tenant=` when the id exists in
//! more than one of them.

use std::fmt::Write;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use chrono::{DateTime, Datelike, Duration, Utc};
use model::{DeviceState, Kind, Timestamp};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use store::history::{history_fields, Bucket, HistoryQuery, Point, MAX_POINTS};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::caller::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};
use crate::params;
use crate::roles::Permission;
use crate::snapshots::{accepts_gzip, Encoded};
use crate::v1::devices;
use crate::AppState;

/// Device kinds, in the order of the state's `kinds` legend.
const KINDS: [&str; 4] = model::Kind::NAMES;
/// The longest range of raw readings one request may ask for.
const MAX_RAW_DAYS: i64 = 7;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(history))
        .routes(routes!(state))
}

/// The range, bucket and tenant of a history.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Start (RFC 3339); by default 24 hours before `to`.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// End (RFC 3339), after `from` and at most 400 days after it; by default now.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// auto (default: at most about 1000 points), raw, minute, 15min, hour or day.
    pub bucket: Option<String>,
    /// The device's tenant (one of the caller's), needed when the id exists in several.
    pub tenant: Option<String>,
}

/// A device's telemetry in time buckets.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryAnswer {
    #[serde(flatten)]
    pub head: HistoryHead,
    /// One object per bucket with readings: `t` (its start) and the fields (null when no
    /// reading carried them).
    #[schema(value_type = Vec<Object>)]
    pub points: Points,
}

/// What a history answer says besides its points.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryHead {
    pub device: String,
    pub tenant: String,
    pub kind: String,
    /// The bucket used: raw, minute, 15min, hour or day.
    pub bucket: String,
    /// The start of the first bucket (`from` rounded down to the bucket).
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The fields of each point besides `t`, for this kind.
    pub fields: Vec<&'static str>,
    /// More than 10000 raw readings: the later ones were left out.
    pub truncated: bool,
    /// Lamps' 15min, hour and day buckets: before this time they come from the rollups,
    /// after it from the raw readings.
    pub rolled_up_until: Option<DateTime<Utc>>,
}

impl HistoryAnswer {
    /// The answer as JSON (the same as its `Serialize`), in one buffer sized for it: a
    /// month of hours is 720 points of eleven numbers, written straight from the rows.
    pub fn to_json(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(512 + self.points.json_len());
        body.extend_from_slice(b"{\"points\":");
        self.points.write_json(&mut body);
        // The head's members, after the points': its own braces left out.
        match serde_json::to_vec(&self.head) {
            Ok(head) if head.len() > 2 => {
                body.push(b',');
                body.extend_from_slice(&head[1..]);
            }
            _ => body.push(b'}'),
        }
        body
    }
}

/// A device's telemetry over a time range, in buckets.
#[utoipa::path(
    get,
    path = "/devices/{id}/history",
    operation_id = "device_history",
    tag = "history",
    params(("id" = String, Path, description = "The device's inventory id"), HistoryParams),
    responses(
        (status = 200, description = "The device's readings in buckets", body = HistoryAnswer),
        (status = 400, description = "A bad range or bucket, or an id found in several tenants", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such device among the caller's tenants", body = ErrorBody)
    )
)]
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(p): ApiQuery<HistoryParams>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Permission::ReadDevices)?;
    let now = state.now().to_datetime();
    let (from, to) =
        params::report_range(p.from.as_deref(), p.to.as_deref(), now, Duration::hours(24))?;
    let bucket = choose_bucket(p.bucket.as_deref(), to - from)?;
    let found = devices::resolve(&state, &caller, p.tenant.as_deref(), &id).await?;
    let d = found.device;
    let history = state
        .read_pool()
        .reads()
        .await?
        .history(&HistoryQuery {
            device_id: d.id,
            kind: &d.kind,
            bucket,
            from,
            to,
        })
        .await?;
    let fields = history_fields(&d.kind);
    let answer = HistoryAnswer {
        points: Points {
            fields: fields.clone(),
            points: history.points,
        },
        head: HistoryHead {
            device: d.ext_id,
            tenant: d.tenant,
            kind: d.kind,
            bucket: bucket.as_str().to_owned(),
            from: bucket.floor(from),
            to,
            fields,
            truncated: history.truncated,
            rolled_up_until: history
                .rolled_up_until
                .filter(|t| *t != DateTime::<Utc>::MAX_UTC),
        },
    };
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        answer.to_json(),
    ))
}

/// A history's points, each an object of `t` and the kind's fields (a missing or
/// non-finite value as `null`).
#[derive(Debug)]
pub struct Points {
    pub fields: Vec<&'static str>,
    pub points: Vec<Point>,
}

impl Points {
    /// About how long the JSON of the points is, to size its buffer.
    fn json_len(&self) -> usize {
        let per_point: usize = 40 + self.fields.iter().map(|f| f.len() + 24).sum::<usize>();
        2 + self.points.len() * per_point
    }

    /// Writes the points as a JSON array, the same as their `Serialize` but without
    /// escaping each key or formatting each time anew: the keys are written once, the
    /// date of a time once a day.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let keys: Vec<Vec<u8>> = self
            .fields
            .iter()
            .map(|f| {
                let mut key = vec![b','];
                json_into(&mut key, f);
                key.push(b':');
                key
            })
            .collect();
        let mut day = Day::default();
        out.push(b'[');
        for (i, point) in self.points.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"t\":");
            day.write(out, point.at);
            for (key, v) in keys.iter().zip(&point.values) {
                out.extend_from_slice(key);
                json_into(out, v);
            }
            out.push(b'}');
        }
        out.push(b']');
    }
}

/// Appends `v` as serde_json writes it (a number, or `null` for none and non-finite).
fn json_into(out: &mut Vec<u8>, v: &(impl Serialize + ?Sized)) {
    // Numbers, strings and null into a Vec: nothing here can fail.
    let _ = serde_json::to_writer(out, v);
}

/// The date part of the last time written (`"YYYY-MM-DDT`), by day since the epoch.
#[derive(Default)]
struct Day {
    day: Option<i64>,
    prefix: Vec<u8>,
}

impl Day {
    /// Writes `t` as chrono serializes it (`"2026-11-01T18:00:00Z"`); times with a
    /// fraction of a second, or of years not written in four digits, through chrono.
    fn write(&mut self, out: &mut Vec<u8>, t: DateTime<Utc>) {
        let secs = t.timestamp();
        let (day, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        if t.timestamp_subsec_nanos() != 0 || !(1000..=9999).contains(&t.year()) {
            json_into(out, &t);
            return;
        }
        if self.day != Some(day) {
            self.day = Some(day);
            self.prefix = t.format("\"%Y-%m-%dT").to_string().into_bytes();
        }
        out.extend_from_slice(&self.prefix);
        let (h, m, s) = (of_day / 3600, of_day / 60 % 60, of_day % 60);
        for (i, n) in [h, m, s].into_iter().enumerate() {
            if i > 0 {
                out.push(b':');
            }
            out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
        }
        out.extend_from_slice(b"Z\"");
    }
}

impl Serialize for Points {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.points.iter().map(|point| PointObject {
            fields: &self.fields,
            point,
        }))
    }
}

struct PointObject<'a> {
    fields: &'a [&'static str],
    point: &'a Point,
}

impl Serialize for PointObject<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.fields.len() + 1))?;
        m.serialize_entry("t", &self.point.at)?;
        for (name, v) in self.fields.iter().zip(&self.point.values) {
            m.serialize_entry(name, v)?;
        }
        m.end()
    }
}

/// The bucket asked for (`auto` by default), refused when it would give too many points.
pub fn choose_bucket(asked: Option<&str>, span: Duration) -> Result<Bucket, ApiError> {
    let bucket = match asked.unwrap_or("auto") {
        "auto" => return Ok(Bucket::auto(span)),
        name => Bucket::parse(name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "bucket `{name}` is not one of auto, {}",
                Bucket::NAMES.join(", ")
            ))
        })?,
    };
    if bucket == Bucket::Raw && span > Duration::days(MAX_RAW_DAYS) {
        return Err(ApiError::bad_request(format!(
            "raw readings are given for at most {MAX_RAW_DAYS} days at a time, asked for {} days; use a bucket",
            span.num_days()
        )));
    }
    let points = bucket.points(span);
    if points > MAX_POINTS {
        return Err(ApiError::bad_request(format!(
            "bucket `{}` over this range gives {points} points, at most {MAX_POINTS}: choose a longer bucket or a shorter range",
            bucket.as_str()
        )));
    }
    Ok(bucket)
}

/// Which devices' state to give.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StateParams {
    /// A tenant slug (one of the caller's); all of them by default.
    pub tenant: Option<String>,
    /// light, cabinet, meter or vehicle; all by default.
    pub kind: Option<String>,
}

/// Every device's effective state, column by column: entry `i` of each array is device
/// `i`. `tenant`, `kind` and `state` are indexes into the `tenants`, `kinds` and `states`
/// legends.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceStates {
    /// The hub's clock when the state was taken, Unix seconds: what staleness and "ago"
    /// are measured against.
    pub now: i64,
    pub count: usize,
    pub tenants: Vec<String>,
    pub kinds: Vec<String>,
    /// The effective states, in order of precedence (docs/api.md, "Device states"): the
    /// first that holds is a device's state. The ones before `override` are abnormal.
    pub states: Vec<model::DeviceState>,
    pub ext_id: Vec<String>,
    pub tenant: Vec<u8>,
    pub kind: Vec<u8>,
    pub lon: Vec<f64>,
    pub lat: Vec<f64>,
    /// An index into `states`.
    pub state: Vec<u8>,
    /// A lamp's relay as last reported.
    pub on: Vec<Option<bool>>,
    /// A lamp's dimming level (%) as last reported.
    pub dim: Vec<Option<f64>>,
    /// Unix seconds of the newest message.
    pub last_seen: Vec<Option<i64>>,
    /// The districts of the devices, as the inventory names them, sorted.
    pub districts: Vec<String>,
    /// An index into `districts`; null when the inventory gives the device none.
    pub district: Vec<Option<u32>>,
}

/// The newest state of every device the caller may see, for the map.
#[utoipa::path(
    get,
    path = "/state",
    operation_id = "device_states",
    tag = "devices",
    params(StateParams),
    responses(
        (status = 200, description = "Every device's state, column by column", body = DeviceStates),
        (status = 400, description = "An unknown kind", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "The tenant named is not one of the caller's", body = ErrorBody)
    )
)]
pub async fn state(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    ApiQuery(p): ApiQuery<StateParams>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Permission::ReadDevices)?;
    let tenants = caller.scope(p.tenant.as_deref())?;
    let kind = params::one_of("kind", p.kind.as_deref(), &KINDS)?;
    let slugs: Vec<(i32, String)> = caller
        .tenants
        .iter()
        .filter(|t| tenants.contains(&t.id))
        .map(|t| (t.id, t.slug.clone()))
        .collect();
    let mut key_tenants = tenants.clone();
    key_tenants.sort_unstable();
    let key = (key_tenants, kind.map(str::to_owned));
    let kind = kind.map(str::to_owned);
    let shared = state.clone();
    let staleness = state.staleness();
    let body = state
        .states()
        .get(key, move || {
            let (state, tenants, kind, slugs) =
                (shared.clone(), tenants.clone(), kind.clone(), slugs.clone());
            async move {
                let now = state.now();
                let c = state
                    .read_pool()
                    .reads()
                    .await?
                    .state_columns(&tenants, kind.as_deref(), now.to_datetime())
                    .await?;
                // Megabytes to write and compress: off the async workers.
                tokio::task::spawn_blocking(move || {
                    let slugs: Vec<(i32, &str)> =
                        slugs.iter().map(|(id, s)| (*id, s.as_str())).collect();
                    Encoded::new(Bytes::from(state_json(&c, &slugs, now, staleness)))
                })
                .await
                .map_err(|e| ApiError::internal("building the devices' state", &e))
            }
        })
        .await?;
    let takes_gzip = accepts_gzip(
        headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    );
    let json = [
        (header::CONTENT_TYPE, "application/json"),
        (header::VARY, "accept-encoding"),
    ];
    Ok(match body.gzip {
        Some(gzip) if takes_gzip => {
            (json, [(header::CONTENT_ENCODING, "gzip")], gzip).into_response()
        }
        _ => (json, body.json).into_response(),
    })
}

/// Writes the columns as JSON in one buffer, without a value per cell; each device's
/// state is its effective state at `now`.
fn state_json(
    c: &store::history::StateColumns,
    tenants: &[(i32, &str)],
    now: Timestamp,
    staleness: crate::Staleness,
) -> String {
    let n = c.ext_id.len();
    let mut s = String::with_capacity(64 + n * 96);
    let list = |s: &mut String, name: &str, items: &mut dyn Iterator<Item = String>| {
        let _ = write!(s, ",\"{name}\":[");
        for (i, item) in items.enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&item);
        }
        s.push(']');
    };
    let _ = write!(
        s,
        "{{\"now\":{},\"count\":{n}",
        now.micros().div_euclid(1_000_000)
    );
    list(
        &mut s,
        "tenants",
        &mut tenants.iter().map(|(_, t)| quoted(t)),
    );
    list(&mut s, "kinds", &mut KINDS.iter().map(|k| quoted(k)));
    list(
        &mut s,
        "states",
        &mut DeviceState::ALL.iter().map(|k| quoted(k.as_str())),
    );
    let districts: std::collections::BTreeSet<&str> =
        c.district.iter().flatten().map(String::as_str).collect();
    let districts: Vec<&str> = districts.into_iter().collect();
    list(
        &mut s,
        "districts",
        &mut districts.iter().map(|d| quoted(d)),
    );
    // The cell columns: written straight into the buffer.
    s.push_str(",\"ext_id\":[");
    for (i, e) in c.ext_id.iter().enumerate() {
        sep(&mut s, i);
        push_quoted(&mut s, e);
    }
    s.push_str("],\"tenant\":[");
    for (i, t) in c.tenant_id.iter().enumerate() {
        sep(&mut s, i);
        let idx = tenants.iter().position(|(id, _)| id == t).unwrap_or(0);
        let _ = write!(s, "{idx}");
    }
    s.push_str("],\"kind\":[");
    for (i, k) in c.kind.iter().enumerate() {
        sep(&mut s, i);
        let idx = KINDS.iter().position(|x| x == k).unwrap_or(0);
        let _ = write!(s, "{idx}");
    }
    s.push_str("],\"district\":[");
    for (i, d) in c.district.iter().enumerate() {
        sep(&mut s, i);
        match d.as_deref().and_then(|d| districts.binary_search(&d).ok()) {
            Some(idx) => {
                let _ = write!(s, "{idx}");
            }
            None => s.push_str("null"),
        }
    }
    s.push_str("],\"lon\":[");
    for (i, v) in c.lon.iter().enumerate() {
        sep(&mut s, i);
        push_number(&mut s, Some(*v));
    }
    s.push_str("],\"lat\":[");
    for (i, v) in c.lat.iter().enumerate() {
        sep(&mut s, i);
        push_number(&mut s, Some(*v));
    }
    s.push_str("],\"state\":[");
    for (i, (facts, kind)) in c.facts.iter().zip(&c.kind).enumerate() {
        sep(&mut s, i);
        let after = Kind::parse(kind).map_or(i64::MAX, |k| staleness.after_s(k));
        let state = DeviceState::of(facts, now, after);
        let _ = write!(s, "{}", state.index());
    }
    s.push_str("],\"on\":[");
    for (i, v) in c.on.iter().enumerate() {
        sep(&mut s, i);
        s.push_str(match v {
            Some(true) => "true",
            Some(false) => "false",
            None => "null",
        });
    }
    s.push_str("],\"dim\":[");
    for (i, v) in c.dim.iter().enumerate() {
        sep(&mut s, i);
        push_number(&mut s, *v);
    }
    s.push_str("],\"last_seen\":[");
    for (i, v) in c.last_seen.iter().enumerate() {
        sep(&mut s, i);
        match v {
            Some(t) => {
                let _ = write!(s, "{t}");
            }
            None => s.push_str("null"),
        }
    }
    s.push_str("]}");
    s
}

fn sep(s: &mut String, i: usize) {
    if i > 0 {
        s.push(',');
    }
}

fn push_number(s: &mut String, v: Option<f64>) {
    match v {
        Some(v) if v.is_finite() => {
            let _ = write!(s, "{v}");
        }
        _ => s.push_str("null"),
    }
}

fn quoted(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    push_quoted(&mut s, v);
    s
}

/// A JSON string. Inventory ids and slugs are plain ASCII by their database checks; the
/// general escaping is the fallback for anything else.
fn push_quoted(s: &mut String, v: &str) {
    if v.bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        s.push('"');
        s.push_str(v);
        s.push('"');
    } else {
        s.push_str(&serde_json::Value::from(v).to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_buckets_are_bounded() {
        assert_eq!(
            choose_bucket(None, Duration::days(30)).unwrap(),
            Bucket::Hour
        );
        assert_eq!(
            choose_bucket(Some("day"), Duration::days(400)).unwrap(),
            Bucket::Day
        );
        let too_many = choose_bucket(Some("minute"), Duration::days(30)).unwrap_err();
        assert!(
            too_many.message().contains("43201 points"),
            "{}",
            too_many.message()
        );
        let raw = choose_bucket(Some("raw"), Duration::days(8)).unwrap_err();
        assert!(raw.message().contains("at most 7 days"));
        let unknown = choose_bucket(Some("week"), Duration::days(8)).unwrap_err();
        assert_eq!(
            unknown.message(),
            "bucket `week` is not one of auto, raw, minute, 15min, hour, day"
        );
    }

    /// The points written straight into a buffer are, byte for byte, what serde writes,
    /// across days, fractions of a second, missing and non-finite values and years that
    /// are not four digits.
    #[test]
    fn points_written_at_once_are_what_serde_writes() {
        let at = DateTime::parse_from_rfc3339("2026-11-01T22:59:59Z")
            .unwrap()
            .to_utc();
        let times = [
            at,
            at + Duration::seconds(1),
            at + Duration::hours(2),
            at + Duration::milliseconds(1250),
            at + Duration::nanoseconds(7),
            at - Duration::days(365 * 1100),
            at + Duration::days(40),
        ];
        let values = [
            Some(4.0),
            Some(-0.0),
            Some(61.25),
            None,
            Some(f64::NAN),
            Some(f64::NEG_INFINITY),
            Some(1e-300),
            Some(123456789.125),
        ];
        let points = Points {
            fields: vec!["samples", "on_ratio", "power_avg_w"],
            points: times
                .iter()
                .enumerate()
                .map(|(i, at)| Point {
                    at: *at,
                    values: (0..3).map(|j| values[(i + j) % values.len()]).collect(),
                })
                .collect(),
        };
        let mut written = Vec::new();
        points.write_json(&mut written);
        assert_eq!(
            String::from_utf8(written).unwrap(),
            serde_json::to_string(&points).unwrap()
        );
        let empty = Points {
            fields: vec!["samples"],
            points: Vec::new(),
        };
        let mut written = Vec::new();
        empty.write_json(&mut written);
        assert_eq!(written, b"[]");
    }

    /// The whole answer written at once reads back as its `Serialize` gives it.
    #[test]
    fn an_answer_written_at_once_is_its_serialization() {
        let at = DateTime::parse_from_rfc3339("2026-11-01T18:00:00Z")
            .unwrap()
            .to_utc();
        let answer = HistoryAnswer {
            head: HistoryHead {
                device: "L-1".into(),
                tenant: "north".into(),
                kind: "light".into(),
                bucket: "hour".into(),
                from: at,
                to: at + Duration::hours(2),
                fields: vec!["samples"],
                truncated: false,
                rolled_up_until: Some(at + Duration::hours(1)),
            },
            points: Points {
                fields: vec!["samples"],
                points: vec![Point {
                    at,
                    values: vec![Some(4.0)],
                }],
            },
        };
        let written: serde_json::Value = serde_json::from_slice(&answer.to_json()).unwrap();
        assert_eq!(written, serde_json::to_value(&answer).unwrap());
        assert_eq!(written["rolled_up_until"], "2026-11-01T19:00:00Z");
        assert_eq!(written["points"][0]["t"], "2026-11-01T18:00:00Z");
    }

    #[test]
    fn points_are_objects_of_their_fields() {
        let at = DateTime::parse_from_rfc3339("2026-11-01T18:00:00Z")
            .unwrap()
            .to_utc();
        let points = Points {
            fields: vec!["samples", "power_avg_w", "energy_wh"],
            points: vec![
                Point {
                    at,
                    values: vec![Some(4.0), Some(61.25), None],
                },
                Point {
                    at: at + Duration::hours(1),
                    values: vec![Some(1.0), Some(f64::INFINITY), Some(0.5)],
                },
            ],
        };
        assert_eq!(
            serde_json::to_value(&points).unwrap(),
            serde_json::json!([
                {"t": "2026-11-01T18:00:00Z", "samples": 4.0, "power_avg_w": 61.25, "energy_wh": null},
                {"t": "2026-11-01T19:00:00Z", "samples": 1.0, "power_avg_w": null, "energy_wh": 0.5},
            ])
        );
    }

    #[test]
    fn the_state_is_valid_json_column_by_column() {
        let now = Timestamp::from_unix_ms(1_700_000_100_000).unwrap();
        let seen = Timestamp::from_unix_ms(1_700_000_000_000);
        let c = store::history::StateColumns {
            ext_id: vec!["L0".into(), "we\"ird".into()],
            tenant_id: vec![7, 9],
            kind: vec!["light".into(), "meter".into()],
            lon: vec![-9.14, 1.5],
            lat: vec![38.7, 2.5],
            district: vec![Some("Alfama".into()), None],
            facts: vec![
                model::DeviceFacts {
                    lamp: true,
                    last_seen: seen,
                    on: Some(true),
                    dim_pct: Some(60.5),
                    ..Default::default()
                },
                model::DeviceFacts::default(),
            ],
            on: vec![Some(true), None],
            dim: vec![Some(60.5), Some(f64::NAN)],
            last_seen: vec![Some(1_700_000_000), None],
        };
        let staleness = crate::Staleness::default();
        let v: serde_json::Value =
            serde_json::from_str(&state_json(&c, &[(7, "a"), (9, "b")], now, staleness)).unwrap();
        assert_eq!(v["now"], 1_700_000_100);
        let state = |i: usize| v["states"][v["state"][i].as_u64().unwrap() as usize].clone();
        assert_eq!(state(0), "dimmed");
        assert_eq!(state(1), "never_heard");
        assert_eq!(v["count"], 2);
        assert_eq!(v["ext_id"], serde_json::json!(["L0", "we\"ird"]));
        assert_eq!(v["tenant"], serde_json::json!([0, 1]));
        assert_eq!(v["kind"], serde_json::json!([0, 2]));
        assert_eq!(v["lon"], serde_json::json!([-9.14, 1.5]));
        assert_eq!(v["districts"], serde_json::json!(["Alfama"]));
        assert_eq!(v["district"], serde_json::json!([0, null]));
        assert_eq!(v["on"], serde_json::json!([true, null]));
        assert_eq!(v["dim"], serde_json::json!([60.5, null]));
        // Whole numbers are written without a fraction; still the same number.
        let whole = state_json(
            &store::history::StateColumns {
                lon: vec![1.0],
                ..c
            },
            &[],
            now,
            staleness,
        );
        assert!(whole.contains("\"lon\":[1]"), "{whole}");
        assert_eq!(v["last_seen"], serde_json::json!([1_700_000_000, null]));
    }
}

//! Telemetry history, the map's state, single devices and the energy report, against
//! readings written through the store's write path and rolled up on demand. Expected
//! values are computed here from the readings themselves.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use model::{decode_payload, Limits, RecordType, Timestamp};
use serde_json::Value;
use store::{ReadingBatch, StoragePath};

use super::{fresh_kind, City};

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;

/// One lamp reading as generated.
#[derive(Debug, Clone, Copy)]
struct Lamp {
    ts: i64,
    on: bool,
    dim: f64,
    power: f64,
    voltage: f64,
    energy: f64,
    burn: f64,
}

/// Readings every `step_ms` from `start`, `n` of them; the lamp burns from 18:00 to
/// 06:00 UTC at a dimming level that varies, its counters growing as it burns. `seed`
/// shifts the values so that lamps differ.
fn lamp_readings(start: i64, n: usize, step_ms: i64, seed: f64) -> Vec<Lamp> {
    let mut energy = 1000.0 * seed;
    let mut burn = 10.0 * seed;
    (0..n)
        .map(|i| {
            let ts = start + i as i64 * step_ms;
            let hour = (ts.rem_euclid(DAY_MS)) / 3_600_000;
            let on = !(6..18).contains(&hour);
            let dim = if on {
                40.0 + ((i * 7) % 60) as f64
            } else {
                0.0
            };
            let power = if on { 70.0 * dim / 100.0 + seed } else { 0.4 };
            let hours = step_ms as f64 / 3_600_000.0;
            energy += power * hours;
            if on {
                burn += hours;
            }
            Lamp {
                ts,
                on,
                dim,
                power,
                voltage: 225.0 + ((i * 13) % 17) as f64 + seed,
                energy,
                burn,
            }
        })
        .collect()
}

fn payload(r: &Lamp) -> String {
    format!(
        r#"{{"ts":{},"on":{},"dim":{},"power_w":{},"voltage_v":{},"energy_wh":{},"burn_hours":{}}}"#,
        r.ts, r.on, r.dim, r.power, r.voltage, r.energy, r.burn
    )
}

/// Stores `readings` of a tenant's lamp through the write path, latest state included.
async fn store_lamp(city: &City, tenant: &str, lamp: &str, readings: &[Lamp]) {
    let mut batch = ReadingBatch::default();
    let id = city.device(tenant, lamp);
    for r in readings {
        let json = payload(r);
        let decoded = decode_payload(
            RecordType::Light,
            json.as_bytes(),
            Timestamp::from_unix_ms(r.ts).unwrap(),
            &Limits::default(),
        );
        assert!(decoded.rejected.is_empty(), "{json}");
        for row in decoded.rows {
            batch.push(RecordType::Light, id, row);
        }
    }
    let mut db = city.db.store().await;
    db.ingestion.write_batch(&batch).await.unwrap();
    db.ingestion
        .upsert_latest(&batch.take_latest())
        .await
        .unwrap();
}

/// Stores one contract payload of a tenant's device, latest state included.
async fn store_payload(city: &City, tenant: &str, device: &str, record: RecordType, json: &str) {
    let decoded = decode_payload(
        record,
        json.as_bytes(),
        Timestamp::now(),
        &Limits::default(),
    );
    assert!(decoded.rejected.is_empty(), "{json}");
    let mut batch = ReadingBatch::default();
    for row in decoded.rows {
        batch.push(record, city.device(tenant, device), row);
    }
    let mut db = city.db.store().await;
    db.ingestion.write_batch(&batch).await.unwrap();
    db.ingestion
        .upsert_latest(&batch.take_latest())
        .await
        .unwrap();
}

/// Rolls the lamp rollups up: on TimescaleDB the continuous aggregates are materialized,
/// so that answers come from them rather than from their real-time part.
async fn refresh(city: &City) -> store::rollups::RefreshOutcome {
    city.db
        .admin()
        .await
        .refresh_rollups(Utc::now())
        .await
        .unwrap()
}

/// Whether the rollups are cityhub's own (whose refreshes count their buckets).
async fn partitioned(city: &City) -> bool {
    city.db.store().await.path() == StoragePath::Partitioned
}

/// Midnight UTC `days` ago, in Unix milliseconds.
fn days_ago(days: i64) -> i64 {
    (tests::now_ms() / DAY_MS - days) * DAY_MS
}

fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// What a bucket should hold, computed from the readings: the fields of a lamp's history.
fn expected(readings: &[Lamp], step_ms: i64, from: i64, to: i64) -> Vec<(i64, [f64; 10])> {
    let mut buckets: BTreeMap<i64, Vec<Lamp>> = BTreeMap::new();
    for r in readings {
        buckets
            .entry(r.ts.div_euclid(step_ms) * step_ms)
            .or_default()
            .push(*r);
    }
    let mut out = Vec::new();
    let mut prev: Option<Lamp> = None;
    for (b, rs) in buckets {
        let last = *rs.last().unwrap();
        if b >= from && b < to {
            let n = rs.len() as f64;
            let p = prev.expect("a bucket before the range");
            out.push((
                b,
                [
                    n,
                    rs.iter().filter(|r| r.on).count() as f64 / n,
                    0.0,
                    rs.iter().map(|r| r.power).sum::<f64>() / n,
                    rs.iter().map(|r| r.power).fold(f64::MIN, f64::max),
                    rs.iter().map(|r| r.dim).sum::<f64>() / n,
                    rs.iter().map(|r| r.voltage).fold(f64::MAX, f64::min),
                    rs.iter().map(|r| r.voltage).fold(f64::MIN, f64::max),
                    last.energy - p.energy,
                    (last.burn - p.burn) * 3600.0,
                ],
            ));
        }
        prev = Some(last);
    }
    out
}

const FIELDS: [&str; 10] = [
    "samples",
    "on_ratio",
    "fault_samples",
    "power_avg_w",
    "power_max_w",
    "dim_avg",
    "voltage_min_v",
    "voltage_max_v",
    "energy_wh",
    "burning_s",
];

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

/// Checks a history answer against the expected buckets.
fn check_points(answer: &Value, want: &[(i64, [f64; 10])], what: &str) {
    let points = answer["points"].as_array().expect("points");
    assert_eq!(points.len(), want.len(), "{what}: {answer}");
    for (p, (t, values)) in points.iter().zip(want) {
        assert_eq!(p["t"].as_str().unwrap(), rfc3339_z(*t), "{what}");
        for (name, v) in FIELDS.iter().zip(values) {
            let got = p[*name]
                .as_f64()
                .unwrap_or_else(|| panic!("{what}: {name} in {p}"));
            assert!(close(got, *v), "{what}: {name} at {t}: got {got}, want {v}");
        }
    }
}

/// How chrono writes a UTC time in JSON.
fn rfc3339_z(ms: i64) -> String {
    serde_json::to_value(DateTime::from_timestamp_millis(ms).unwrap())
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

async fn history(city: &City, role: &str, query: &str) -> Value {
    let reply = city.get(&format!("/api/v1/devices/{query}"), role).await;
    assert_eq!(reply.status, 200, "{query}: {}", reply.body);
    reply.json()
}

#[tokio::test]
async fn buckets_match_the_raw_readings_before_and_after_the_rollups() {
    let city = City::start().await;
    let a = city.a.clone();
    let start = days_ago(10);
    // Two days every 5 minutes.
    let readings = lamp_readings(start, 2 * 288, 5 * MINUTE_MS, 1.0);
    store_lamp(&city, &a, "L0", &readings).await;

    let hour = 3_600_000;
    let cases = [
        ("hour", start + hour, start + 30 * hour, hour),
        (
            "15min",
            start + 17 * hour,
            start + 23 * hour,
            15 * MINUTE_MS,
        ),
        ("day", start + DAY_MS, start + 2 * DAY_MS, DAY_MS),
        ("minute", start + 5 * hour, start + 7 * hour, MINUTE_MS),
    ];
    for round in ["raw readings", "rollups"] {
        for (bucket, from, to, step) in cases {
            let answer = history(
                &city,
                "viewer",
                &format!(
                    "L0/history?bucket={bucket}&from={}&to={}",
                    rfc3339(from),
                    rfc3339(to)
                ),
            )
            .await;
            assert_eq!(answer["bucket"], bucket);
            assert_eq!(answer["kind"], "light");
            assert_eq!(answer["tenant"], a.as_str());
            check_points(
                &answer,
                &expected(&readings, step, from, to),
                &format!("{bucket} from the {round}"),
            );
        }
        if round == "raw readings" {
            let outcome = refresh(&city).await;
            if partitioned(&city).await {
                assert_eq!(outcome.buckets, 2 * 96);
                // Nothing new: nothing to do.
                assert_eq!(refresh(&city).await.buckets, 0);
            }
        }
    }
    let answer = history(
        &city,
        "viewer",
        &format!(
            "L0/history?bucket=hour&from={}&to={}",
            rfc3339(start),
            rfc3339(start + DAY_MS)
        ),
    )
    .await;
    assert!(answer["rolled_up_until"].is_string(), "{answer}");

    // Raw readings: each on its own.
    let answer = history(
        &city,
        "viewer",
        &format!(
            "L0/history?bucket=raw&from={}&to={}",
            rfc3339(start + hour),
            rfc3339(start + hour + 30 * MINUTE_MS)
        ),
    )
    .await;
    let points = answer["points"].as_array().unwrap();
    assert_eq!(points.len(), 6);
    let r = readings[12 + 1];
    assert_eq!(points[1]["t"].as_str().unwrap(), rfc3339_z(r.ts));
    assert!(close(points[1]["power_avg_w"].as_f64().unwrap(), r.power));
    assert!(close(
        points[1]["energy_wh"].as_f64().unwrap(),
        r.energy - readings[12].energy
    ));
}

/// A history read on a connection, as the API answers it.
async fn store_history(db: &tests::Store, q: &store::history::HistoryQuery<'_>) -> Value {
    let points = api::v1::history::Points {
        fields: store::history::history_fields(q.kind),
        points: db.reads.history(q).await.unwrap().points,
    };
    serde_json::json!({ "points": points })
}

/// A connection that has read where the rollups end reads no raw readings from before
/// it any more (so that a year of daily partitions is not opened on every call), and
/// still answers every bucket after it from all of its readings.
#[tokio::test]
async fn a_connection_that_saw_where_the_rollups_end_still_reads_every_raw_reading_after_it() {
    let city = City::start().await;
    let a = city.a.clone();
    let hour = 3_600_000;
    let now = tests::now_ms();
    let start = (now / hour - 6) * hour;
    // A reading a minute, up to now: the rollups end within the last quarter.
    let readings = lamp_readings(start, ((now - start) / MINUTE_MS) as usize, MINUTE_MS, 1.0);
    store_lamp(&city, &a, "L1", &readings).await;
    refresh(&city).await;
    let (from, to) = (start + hour, (now / hour + 1) * hour);
    let want = expected(&readings, hour, from, to);
    let db = city.db.store().await;
    let q = store::history::HistoryQuery {
        device_id: city.device(&a, "L1"),
        kind: "light",
        bucket: store::history::Bucket::Hour,
        from: DateTime::from_timestamp_millis(from).unwrap(),
        to: DateTime::from_timestamp_millis(to).unwrap(),
    };
    check_points(&store_history(&db, &q).await, &want, "first read");
    // Newer readings, after where the rollups end.
    let newer = lamp_readings(now, 2, 20_000, 1.0)
        .into_iter()
        .map(|mut r| {
            r.energy += readings.last().unwrap().energy;
            r.burn += readings.last().unwrap().burn;
            r
        })
        .collect::<Vec<_>>();
    store_lamp(&city, &a, "L1", &newer).await;
    let all: Vec<Lamp> = readings.iter().chain(&newer).copied().collect();
    let want = expected(&all, hour, from, to);
    check_points(&store_history(&db, &q).await, &want, "read again");
    // A narrower range on the same connection.
    let q = store::history::HistoryQuery {
        from: DateTime::from_timestamp_millis(to - 2 * hour).unwrap(),
        ..q
    };
    check_points(
        &store_history(&db, &q).await,
        &expected(&all, hour, to - 2 * hour, to),
        "the last two hours",
    );
}

#[tokio::test]
async fn late_readings_re_roll_the_buckets_they_fall_in_and_the_next() {
    let city = City::start().await;
    let a = city.a.clone();
    let start = days_ago(5);
    let readings = lamp_readings(start, 288, 5 * MINUTE_MS, 2.0);
    let hour = 3_600_000;
    // The controller is silent from 02:00 to 03:30; its backlog comes later.
    let (late, on_time): (Vec<Lamp>, Vec<Lamp>) = readings
        .iter()
        .partition(|r| r.ts >= start + 2 * hour && r.ts < start + 7 * hour / 2);
    store_lamp(&city, &a, "L1", &on_time).await;
    refresh(&city).await;
    let query = format!(
        "L1/history?bucket=hour&from={}&to={}",
        rfc3339(start + hour),
        rfc3339(start + 6 * hour)
    );
    let before = history(&city, "operator", &query).await;
    let hours: Vec<&str> = before["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["t"].as_str().unwrap())
        .collect();
    assert_eq!(hours.len(), 4, "02:00 has no readings yet: {before}");

    store_lamp(&city, &a, "L1", &late).await;
    let outcome = refresh(&city).await;
    if partitioned(&city).await {
        assert_eq!(outcome.buckets, 6, "the six quarters of the backlog");
    }
    let after = history(&city, "operator", &query).await;
    check_points(
        &after,
        &expected(&readings, hour, start + hour, start + 6 * hour),
        "after the backlog",
    );
    // The day holds the whole day's energy again.
    let day = history(
        &city,
        "operator",
        &format!(
            "L1/history?bucket=day&from={}&to={}",
            rfc3339(start),
            rfc3339(start + DAY_MS)
        ),
    )
    .await;
    let e = day["points"][0]["energy_wh"].as_f64().unwrap();
    // The first quarter counts from its own first reading; every later one from the last.
    let want = readings.last().unwrap().energy - readings[0].energy;
    assert!(close(e, want), "day energy {e}, want {want}");
}

#[tokio::test]
async fn auto_picks_the_bucket_from_the_range() {
    let city = City::start().await;
    let to = days_ago(1);
    for (span_ms, bucket) in [
        (30 * MINUTE_MS, "raw"),
        (10 * 3_600_000, "minute"),
        (5 * DAY_MS, "15min"),
        (30 * DAY_MS, "hour"),
        (100 * DAY_MS, "day"),
    ] {
        let answer = history(
            &city,
            "crew",
            &format!(
                "L2/history?from={}&to={}",
                rfc3339(to - span_ms),
                rfc3339(to)
            ),
        )
        .await;
        assert_eq!(answer["bucket"], bucket, "{span_ms}");
        assert_eq!(answer["points"], serde_json::json!([]));
    }
    // Without a range: the last 24 hours, 97 quarters.
    let answer = history(&city, "crew", "L2/history").await;
    assert_eq!(answer["bucket"], "15min");
}

#[tokio::test]
async fn bad_ranges_buckets_and_ids_are_refused_with_a_sentence() {
    let city = City::start().await;
    let from = rfc3339(days_ago(3));
    let to = rfc3339(days_ago(2));
    for (query, status, says) in [
        (
            format!("L0/history?bucket=week&from={from}&to={to}"),
            400,
            "bucket `week` is not one of auto, raw",
        ),
        (
            format!("L0/history?from={to}&to={from}"),
            400,
            "runs backwards",
        ),
        (
            format!("L0/history?from={}&to={to}", rfc3339(days_ago(500))),
            400,
            "at most 400 days",
        ),
        (
            format!(
                "L0/history?bucket=minute&from={}&to={to}",
                rfc3339(days_ago(40))
            ),
            400,
            "choose a longer bucket",
        ),
        (
            format!(
                "L0/history?bucket=raw&from={}&to={to}",
                rfc3339(days_ago(20))
            ),
            400,
            "at most 7 days",
        ),
        (
            "L0/history?from=yesterday".to_owned(),
            400,
            "from must be an RFC 3339 time",
        ),
        (
            "L0/history?color=red".to_owned(),
            400,
            "unknown field `color`",
        ),
        ("L%20X/history".to_owned(), 400, "is not a device id"),
        ("NOPE/history".to_owned(), 404, "no device `NOPE`"),
        ("NOPE".to_owned(), 404, "no device `NOPE`"),
        (format!("L0/history?tenant={}", city.b), 404, "no tenant"),
        (format!("L0?tenant={}", city.b), 404, "no tenant"),
    ] {
        let reply = city.get(&format!("/api/v1/devices/{query}"), "admin").await;
        assert_eq!(reply.status, status, "{query}: {}", reply.body);
        assert!(reply.error().contains(says), "{query}: {}", reply.error());
    }
    // The regional viewer sees two tenants that both have an L0.
    let reply = city
        .get("/api/v1/devices/L0/history", "regional_viewer")
        .await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.error().contains("name one with tenant="),
        "{}",
        reply.error()
    );
    let reply = city
        .get(
            &format!("/api/v1/devices/L0?tenant={}", city.c),
            "regional_viewer",
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["tenant"], city.c.as_str());
}

#[tokio::test]
async fn another_tenants_readings_never_show() {
    let city = City::start().await;
    let (a, b) = (city.a.clone(), city.b.clone());
    let start = days_ago(4);
    store_lamp(
        &city,
        &b,
        "L3",
        &lamp_readings(start, 24, 5 * MINUTE_MS, 3.0),
    )
    .await;
    refresh(&city).await;
    let range = format!("from={}&to={}", rfc3339(start), rfc3339(start + DAY_MS));
    // An admin of `a` asking for L3 gets `a`'s L3, which has no readings.
    let answer = history(&city, "admin", &format!("L3/history?bucket=hour&{range}")).await;
    assert_eq!(answer["tenant"], a.as_str());
    assert_eq!(answer["points"], serde_json::json!([]));
    let device = history(&city, "admin", "L3").await;
    assert_eq!(device["tenant"], a.as_str());
    assert!(device["latest"].is_null(), "{device}");
    let report = city
        .get(&format!("/api/v1/reports/energy?{range}"), "admin")
        .await;
    assert_eq!(report.status, 200, "{}", report.body);
    assert_eq!(report.json()["days"], serde_json::json!([]));
    let state = city.get("/api/v1/state", "admin").await.json();
    assert!(state["last_seen"]
        .as_array()
        .unwrap()
        .iter()
        .all(Value::is_null));
}

#[tokio::test]
async fn one_device_with_its_latest_state_and_open_outages() {
    let mut city = City::start().await;
    let a = city.a.clone();
    let readings = lamp_readings(days_ago(2), 3, 5 * MINUTE_MS, 1.0);
    store_lamp(&city, &a, "L0", &readings).await;
    city.open_outage(&a).await;
    let d = history(&city, "viewer", "L0").await;
    assert_eq!(d["ext_id"], "L0");
    assert_eq!(d["kind"], "light");
    assert_eq!(d["district"], "centre");
    assert_eq!(d["cabinet"], "C0");
    assert_eq!(d["rated_power_w"], 70.0);
    assert_eq!(d["open_outages"], 1);
    let last = readings.last().unwrap();
    assert_eq!(d["latest"]["telemetry_ts"], rfc3339_z(last.ts));
    assert_eq!(d["latest"]["telemetry"]["dim"], last.dim);
    assert_eq!(d["inventory_warnings"], serde_json::json!([]));
    let cabinet = history(&city, "viewer", "C0").await;
    assert_eq!(cabinet["kind"], "cabinet");
    assert_eq!(cabinet["open_outages"], 0);
    assert!(cabinet["latest"].is_null());
    assert_eq!(cabinet["inventory_warnings"], serde_json::json!([]));
    // A lamp the inventory gives no rated power is named: its power cannot be judged.
    let mut unrated = tests::db::devices(&a, &[(model::Kind::Light, 1)]);
    unrated[0].id = "L-unrated".into();
    unrated[0].rated_power_w = None;
    city.db.import(&unrated).await;
    let d = history(&city, "viewer", "L-unrated").await;
    let said = d["inventory_warnings"][0].as_str().unwrap_or_default();
    assert!(said.contains("no rated_power_w"), "{d}");
}

/// One message of tenant `a`'s lamp `lamp`, stored as ingestion stores it.
async fn lamp_says(city: &City, lamp: &str, json: &str) {
    store_payload(city, &city.a, lamp, RecordType::Light, json).await
}

/// Each device's effective state in `GET /api/v1/state`, by inventory id.
async fn states(city: &City, role: &str) -> HashMap<String, String> {
    let s = city.get("/api/v1/state", role).await.json();
    let names = s["states"].as_array().unwrap();
    s["ext_id"]
        .as_array()
        .unwrap()
        .iter()
        .zip(s["state"].as_array().unwrap())
        .map(|(id, i)| {
            let name = names[i.as_u64().unwrap() as usize].as_str().unwrap();
            (id.as_str().unwrap().to_owned(), name.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn the_state_covers_every_device_the_caller_sees() {
    let mut city = City::start().await;
    let a = city.a.clone();
    let now = tests::now_ms();
    lamp_says(
        &city,
        "L5",
        &format!(r#"{{"ts":{now},"on":true,"dim":100}}"#),
    )
    .await;
    lamp_says(
        &city,
        "L6",
        &format!(r#"{{"ts":{now},"on":false,"dim":0}}"#),
    )
    .await;
    let kind = fresh_kind();
    let l7 = city.device(&a, "L7");
    lamp_says(&city, "L7", &format!(r#"{{"ts":{now},"on":true}}"#)).await;
    city.store
        .detection
        .apply_outage_changes(&[tests::db::opened(l7, kind, "2026-03-01T00:00:00Z")])
        .await
        .unwrap();
    lamp_says(
        &city,
        "L9",
        &format!(r#"{{"ts":{now},"on":true,"dim":30,"fault":"driver_failure"}}"#),
    )
    .await;
    lamp_says(&city, "L10", &format!(r#"{{"ts":{now},"on":true}}"#)).await;
    store_payload(
        &city,
        &a,
        "L10",
        RecordType::Status,
        &format!(r#"{{"ts":{now},"state":"offline"}}"#),
    )
    .await;
    // Offline by its status, then telemetry again: back, as the rules take it.
    store_payload(
        &city,
        &a,
        "L15",
        RecordType::Status,
        &format!(r#"{{"ts":{},"state":"offline"}}"#, now - 60_000),
    )
    .await;
    lamp_says(
        &city,
        "L15",
        &format!(r#"{{"ts":{now},"on":true,"dim":100}}"#),
    )
    .await;
    // Heard from last 16 minutes ago: past a lamp's 15-minute interval and the grace.
    let old = now - 16 * 60_000;
    lamp_says(&city, "L11", &format!(r#"{{"ts":{old},"on":true}}"#)).await;
    lamp_says(
        &city,
        "L12",
        &format!(r#"{{"ts":{now},"on":true,"dim":40}}"#),
    )
    .await;
    // An operator's light setting, accepted and in force for another hour.
    let l13 = city.device(&a, "L13");
    lamp_says(
        &city,
        "L13",
        &format!(r#"{{"ts":{now},"on":true,"dim":100}}"#),
    )
    .await;
    let body = serde_json::json!({"action": "set_light", "on": true});
    let issued = chrono::Utc::now();
    city.store
        .admin
        .record_command(
            "cmd-override",
            l13,
            "set_light",
            &body,
            issued,
            Some(issued + chrono::Duration::hours(1)),
            "olga",
        )
        .await
        .unwrap();
    city.store
        .detection
        .command_acked("cmd-override", "ok", issued)
        .await
        .unwrap();
    // L15 was held for an hour, then sent back to its schedule by a later setting that
    // has expired: the later one replaced the hold, so it follows its schedule.
    let l15 = city.device(&a, "L15");
    for (id, ago_s, lasts_s) in [("cmd-held", 120, 3600), ("cmd-resume", 90, 60)] {
        let at = issued - chrono::Duration::seconds(ago_s);
        city.store
            .admin
            .record_command(
                id,
                l15,
                "set_light",
                &body,
                at,
                Some(at + chrono::Duration::seconds(lasts_s)),
                "olga",
            )
            .await
            .unwrap();
        city.store
            .detection
            .command_acked(id, "ok", at)
            .await
            .unwrap();
    }
    // A lamp in a running maintenance window, silent for a day.
    lamp_says(
        &city,
        "L14",
        &format!(r#"{{"ts":{},"on":true}}"#, now - DAY_MS),
    )
    .await;
    city.store
        .admin
        .add_maintenance_window(
            &a,
            "device",
            "L14",
            issued - chrono::Duration::hours(1),
            issued + chrono::Duration::hours(1),
            "pole replaced",
            "olga",
        )
        .await
        .unwrap();

    let s = city.get("/api/v1/state", "viewer").await;
    assert_eq!(s.status, 200, "{}", s.body);
    assert_eq!(s.header("content-type"), Some("application/json"));
    assert_eq!(s.header("content-encoding"), None);
    // A client that takes gzip gets the same JSON compressed.
    let (zipped, bytes) = city
        .api
        .call_raw(
            tests::api::Req::get("/api/v1/state", &city.tokens["viewer"]),
            "Accept-Encoding: gzip, deflate\r\n",
        )
        .await;
    assert_eq!(zipped.status, 200);
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    assert_eq!(zipped.header("content-type"), Some("application/json"));
    let mut unzipped = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut unzipped)
        .expect("a gzip body");
    assert_eq!(unzipped, s.body);
    let s = s.json();
    assert_eq!(s["count"], 31);
    // The hub's clock, in seconds.
    let taken = s["now"].as_i64().unwrap();
    assert!((taken - now / 1000).abs() < 60, "{taken} vs {now}");
    let ids: HashSet<String> = s["ext_id"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let want: HashSet<String> = (0..30)
        .map(|i| format!("L{i}"))
        .chain(["C0".to_owned()])
        .collect();
    assert_eq!(ids, want);
    for column in [
        "tenant",
        "kind",
        "lon",
        "lat",
        "state",
        "on",
        "dim",
        "last_seen",
        "district",
    ] {
        assert_eq!(s[column].as_array().unwrap().len(), 31, "{column}");
    }
    // Each device's district, as the inventory has it, through the legend.
    let inventory: HashMap<String, Option<String>> = city
        .db
        .client
        .query(
            "SELECT ext_id, district FROM devices d JOIN tenants t ON t.id = d.tenant_id WHERE t.slug = $1",
            &[&a],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (i, id) in s["ext_id"].as_array().unwrap().iter().enumerate() {
        let shown = s["district"][i]
            .as_u64()
            .map(|d| s["districts"][d as usize].as_str().unwrap().to_owned());
        assert_eq!(shown, inventory[id.as_str().unwrap()], "{id}");
    }
    let l9 = s["ext_id"]
        .as_array()
        .unwrap()
        .iter()
        .position(|v| v == "L9")
        .unwrap();
    assert_eq!(s["dim"][l9], 30.0);
    assert_eq!(s["on"][l9], true);

    let state = states(&city, "viewer").await;
    for (id, want) in [
        ("L5", "on"),
        ("L6", "off"),
        ("L7", "outage_major"),
        ("L8", "never_heard"),
        ("L9", "fault"),
        ("L10", "offline"),
        ("L11", "stale"),
        ("L12", "dimmed"),
        ("L13", "override"),
        ("L14", "maintenance"),
        ("L15", "on"),
        ("C0", "never_heard"),
    ] {
        assert_eq!(state[id], want, "{id}");
    }

    // The cabinet loses its supply: its lamps are dark whatever they last said; a lamp's
    // own outage still shows as such.
    let c0 = city.device(&a, "C0");
    city.store
        .detection
        .apply_outage_changes(&[tests::db::opened(
            c0,
            model::OutageKind::CabinetSupplyLoss.as_str(),
            "2026-03-01T00:00:00Z",
        )])
        .await
        .unwrap();
    // The answer is shared: a newer one comes within seconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut state = states(&city, "viewer").await;
    while state["C0"] == "never_heard" && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        state = states(&city, "viewer").await;
    }
    assert_eq!(state["C0"], "outage_major");
    assert_eq!(state["L5"], "no_supply");
    assert_eq!(state["L10"], "no_supply");
    assert_eq!(state["L7"], "outage_major");

    let lights = city.get("/api/v1/state?kind=light", "crew").await.json();
    assert_eq!(lights["count"], 30);
    let region = city.get("/api/v1/state", "regional_viewer").await.json();
    assert_eq!(region["count"], 62);
    assert_eq!(region["tenants"].as_array().unwrap().len(), 2);
    let reply = city.get("/api/v1/state?kind=teapot", "viewer").await;
    assert_eq!(reply.status, 400);
    assert!(reply.error().contains("kind `teapot` is not one of"));
    let reply = city
        .get(&format!("/api/v1/state?tenant={}", city.b), "viewer")
        .await;
    assert_eq!(reply.status, 404);
}

/// Checks the energy report of the three days from `start` against what `lamps`'
/// readings give (each lamp that has readings on a day counts in it); every day's burning
/// hours.
async fn check_energy(city: &City, start: i64, lamps: &[&[Lamp]]) -> Vec<f64> {
    let reply = city
        .get(
            &format!(
                "/api/v1/reports/energy?from={}&to={}",
                rfc3339(start),
                rfc3339(start + 3 * DAY_MS)
            ),
            "dispatcher",
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let report = reply.json();
    let days = report["days"].as_array().unwrap();
    assert_eq!(days.len(), 3, "{report}");
    let mut burning = Vec::new();
    for (d, line) in days.iter().enumerate() {
        let day = start + d as i64 * DAY_MS;
        assert_eq!(line["day"].as_str().unwrap(), rfc3339_z(day));
        assert_eq!(line["district"], "centre");
        let (mut kwh, mut hours, mut rated, mut reporting) = (0.0, 0.0, 0.0, 0);
        for readings in lamps {
            let Some((_, want)) = expected(readings, DAY_MS, day, day + DAY_MS).pop() else {
                continue;
            };
            kwh += want[8] / 1000.0;
            hours += want[9] / 3600.0;
            rated += 70.0 * want[9] / 3600.0 / 1000.0;
            reporting += 1;
        }
        assert_eq!(line["lamps_reporting"], reporting, "{line}");
        assert!(
            close(line["energy_kwh"].as_f64().unwrap(), kwh),
            "{line} vs {kwh}"
        );
        assert!(
            close(line["burning_hours"].as_f64().unwrap(), hours),
            "{line}"
        );
        assert!(close(line["rated_kwh"].as_f64().unwrap(), rated), "{line}");
        burning.push(hours);
    }
    burning
}

/// Readings that arrive after their days were rolled up change those days, and the day
/// after (whose energy counts from the last counter values of the day before), at the
/// next refresh.
#[tokio::test]
async fn a_late_backlog_reaches_the_energy_report_at_the_next_refresh() {
    let city = City::start().await;
    let a = city.a.clone();
    let start = days_ago(6);
    let from = start - 6 * 3_600_000;
    // L10 reports three days, but the last 90 minutes of the first day come late (the
    // next day counts its energy from the last reading before them, which is less than
    // the rollups' 2 hours earlier); L11 reports the first day only, all of it late.
    let l10 = lamp_readings(from, 3 * 96 + 24, 15 * MINUTE_MS, 1.0);
    let l11 = lamp_readings(from, 96 + 24, 15 * MINUTE_MS, 2.0);
    let held = start + DAY_MS - 90 * MINUTE_MS..start + DAY_MS;
    let (late, on_time): (Vec<Lamp>, Vec<Lamp>) = l10.iter().partition(|r| held.contains(&r.ts));
    store_lamp(&city, &a, "L10", &on_time).await;
    refresh(&city).await;
    check_energy(&city, start, &[&on_time]).await;

    store_lamp(&city, &a, "L10", &late).await;
    store_lamp(&city, &a, "L11", &l11).await;
    refresh(&city).await;
    let hours = check_energy(&city, start, &[&l10, &l11]).await;
    // L11 burns 12 hours on the first day, next to L10.
    assert!(close(hours[0], 24.0), "{hours:?}");
    assert!(close(hours[1], 12.0), "{hours:?}");
}

#[tokio::test]
async fn the_energy_report_sums_lamps_per_district_and_day() {
    let city = City::start().await;
    let a = city.a.clone();
    let start = days_ago(6);
    let mut per_lamp = Vec::new();
    for (i, lamp) in ["L10", "L11", "L12"].iter().enumerate() {
        // Three days every 15 minutes, from the evening before.
        let from = start - 6 * 3_600_000;
        let readings = lamp_readings(from, 3 * 96 + 24, 15 * MINUTE_MS, 1.0 + i as f64);
        store_lamp(&city, &a, lamp, &readings).await;
        per_lamp.push(readings);
    }
    refresh(&city).await;
    let lamps: Vec<&[Lamp]> = per_lamp.iter().map(Vec::as_slice).collect();
    for hours in check_energy(&city, start, &lamps).await {
        // The lamps burn 12 hours a day.
        assert!(close(hours, 36.0), "{hours}");
    }
    let none = city
        .get("/api/v1/reports/energy?district=nowhere", "admin")
        .await
        .json();
    assert_eq!(none["days"], serde_json::json!([]));
    let crew = city.get("/api/v1/reports/energy", "crew").await;
    assert_eq!(crew.status, 403);
    let reply = city
        .get(
            &format!("/api/v1/reports/energy?tenant={}", city.b),
            "admin",
        )
        .await;
    assert_eq!(reply.status, 404);
}

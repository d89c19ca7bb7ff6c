//! How far the rules judged: recorded with their decisions, and the rows stored after it
//! judged by the next instance, even when the one that stored them was killed before its
//! rules got to them.

use std::time::Duration;

use model::{decode_payload, Cell, FieldType, Kind, Limits, Observation, RecordType, Timestamp};
use store::leases::Taken;
use store::{ReadingBatch, StoreError};
use tests::db::{devices, opened};
use tests::hub::HubProcess;
use tests::{eventually, now_ms, unique, Publisher, Setup, TestDb};

/// A payload giving every field of `record` a value within its range.
fn full_payload(record: RecordType, ts_ms: i64) -> String {
    let mut body = serde_json::json!({ "ts": ts_ms });
    for f in record.fields() {
        body[f.name] = match f.ty {
            FieldType::Bool => serde_json::json!(true),
            FieldType::Real(lo, hi) | FieldType::Double(lo, hi) => {
                serde_json::json!(lo + (hi - lo) / 3.0)
            }
            FieldType::Text(_, Some(set)) => serde_json::json!(set[0]),
            FieldType::Text(..) => serde_json::json!("a text"),
            FieldType::Uuid => serde_json::json!("0b5f5c4e-6c1b-4a5e-9a3e-2f1d7c9b8a01"),
        };
    }
    body.to_string()
}

/// The same value as stored: `real` columns keep 4 bytes.
fn as_stored(record: RecordType, o: &Observation) -> Vec<Cell> {
    o.row
        .cells
        .iter()
        .zip(record.fields())
        .map(|(c, f)| match (c, f.ty) {
            (Cell::Num(v), FieldType::Real(..)) => Cell::Num(*v as f32 as f64),
            (c, _) => c.clone(),
        })
        .collect()
}

/// Every record type's rows read back from the database as ingestion handed them on, in
/// time order, within the range asked for, the earliest first when there are more.
#[tokio::test]
async fn the_rows_stored_after_a_moment_read_back_as_ingestion_handed_them_on() {
    let db = TestDb::new().await;
    let t = unique("t");
    db.import(&devices(&t, &[(Kind::Light, 1)])).await;
    let id = db.device_ids(&t).await["L0"];
    let now = now_ms();
    let mut batch = ReadingBatch::default();
    let mut written = Vec::new();
    for (i, record) in RecordType::ALL.into_iter().enumerate() {
        let ts = now - 1000 + i as i64 * 10;
        let at = Timestamp::from_unix_ms(ts).unwrap();
        let decoded = decode_payload(
            record,
            full_payload(record, ts).as_bytes(),
            at,
            &Limits::default(),
        );
        assert!(
            decoded.rejected.is_empty(),
            "{record:?}: {:?}",
            decoded.rejected
        );
        for row in decoded.rows {
            written.push(Observation {
                device_id: id,
                record,
                row: row.clone(),
            });
            batch.push(record, id, row);
        }
    }
    let mut store = db.store().await;
    store.ingestion.write_batch(&batch).await.unwrap();
    let ms = |t: i64| Timestamp::from_unix_ms(t).unwrap();

    let read = store
        .detection
        .stored_after(ms(now - 2000), ms(now), 100)
        .await
        .unwrap();
    assert!(!read.truncated);
    assert_eq!(read.rows.len(), RecordType::ALL.len());
    for (got, want) in read.rows.iter().zip(&written) {
        assert_eq!(
            (got.device_id, got.record, got.row.ts),
            (want.device_id, want.record, want.row.ts)
        );
        assert_eq!(
            got.row.cells,
            as_stored(want.record, want),
            "{:?}",
            want.record
        );
    }
    // After a moment, not at it; up to and at the end.
    let first = written[0].row.ts;
    let last = written.last().unwrap().row.ts;
    let read = store
        .detection
        .stored_after(first, last, 100)
        .await
        .unwrap();
    assert_eq!(read.rows.len(), RecordType::ALL.len() - 1);
    assert_eq!(read.rows.last().unwrap().row.ts, last);
    // The earliest three of seven, and a word that there were more.
    let read = store
        .detection
        .stored_after(ms(now - 2000), ms(now), 3)
        .await
        .unwrap();
    assert!(read.truncated);
    let times: Vec<Timestamp> = read.rows.iter().map(|o| o.row.ts).collect();
    assert_eq!(
        times,
        written[..3].iter().map(|o| o.row.ts).collect::<Vec<_>>()
    );
}

/// The horizon is recorded in the decisions' transaction: refused with them when the
/// rules' lease has moved on, and never moved back.
#[tokio::test]
async fn the_horizon_is_recorded_with_the_decisions_and_refused_with_them() {
    let db = TestDb::new().await;
    let t = unique("t");
    db.import(&devices(&t, &[(Kind::Light, 1)])).await;
    let id = db.device_ids(&t).await["L0"];
    let mut rules = db.detection().await;
    assert_eq!(rules.judged_through().await.unwrap(), None);
    let h1 = Timestamp::from_rfc3339("2026-03-01T10:00:00Z").unwrap();
    rules.apply_judged(&[], Some(h1)).await.unwrap();
    assert_eq!(rules.judged_through().await.unwrap(), Some(h1));
    // An earlier horizon (a new instance's first, behind the rows it judged again) does
    // not move it back.
    let before = Timestamp::from_rfc3339("2026-03-01T09:59:59Z").unwrap();
    rules.apply_judged(&[], Some(before)).await.unwrap();
    assert_eq!(rules.judged_through().await.unwrap(), Some(h1));

    // Under a lease another instance has since taken: neither the outage nor the horizon.
    let admin = db.admin().await;
    let Taken::Held(lease) = admin.take_lease("stream", "a", 1).await.unwrap() else {
        panic!("free lease")
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let Taken::Held(_) = admin.take_lease("stream", "b", 60_000).await.unwrap() else {
        panic!("expired lease")
    };
    rules.set_fence(Some(lease.fence()));
    let h2 = Timestamp::from_rfc3339("2026-03-01T10:05:00Z").unwrap();
    let change = opened(id, "lamp_failure", "2026-03-01T10:01:00Z");
    let refused = rules.apply_judged(&[change], Some(h2)).await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { .. })),
        "{refused:?}"
    );
    assert_eq!(rules.judged_through().await.unwrap(), Some(h1));
    assert_eq!(db.count("SELECT count(*) FROM outages").await, 0);
}

/// One reading at `at_ms` of lamp `L{lamp}`, with a voltage.
async fn reading(p: &mut Publisher, tenant: &str, lamp: usize, at_ms: i64, volts: f64) {
    p.send(
        &format!("city/{tenant}/light/L{lamp}/telemetry"),
        format!(r#"{{"ts":{at_ms},"on":true,"dim":50,"voltage_v":{volts}}}"#),
    )
    .await;
    p.flush().await;
}

/// The instance that ingests stores a lamp's over-voltage, but is killed before its rules
/// judge it (they wait five minutes for late readings here). The broker has forgotten
/// the reading (it was acknowledged once stored), so only the database still has it: the
/// instance that takes over judges it from there, and the outage opens at the reading's
/// time.
#[tokio::test]
async fn a_reading_stored_by_an_instance_killed_before_judging_it_is_judged_by_the_next() {
    let Setup {
        tenant: t,
        db,
        broker,
    } = Setup::start(&[(Kind::Light, 2)]).await;
    let slow = std::env::temp_dir().join(format!("{}.toml", unique("slow-rules-")));
    std::fs::write(&slow, "[stream]\nreorder_ms = 300000\n").unwrap();
    let client_id = unique("hub-");
    let slow_rules = slow.to_str().unwrap();
    let mut first = HubProcess::spawn_with(
        &db.url,
        broker.port(),
        &client_id,
        &[
            ("CITYHUB_LEASE_TTL_S", "2"),
            ("CITYHUB_RULES_FILE", slow_rules),
        ],
    );
    first.wait_connected().await;
    let mut p = Publisher::connect(broker.port()).await;
    let at = now_ms();
    reading(&mut p, &t, 0, at, 290.0).await;
    reading(&mut p, &t, 1, at, 231.0).await;
    db.wait_count("SELECT count(*) FROM light_readings", 2)
        .await;
    // The first instance has recorded how far it judged, and not judged the readings.
    eventually(Duration::from_secs(10), "a horizon on record", || async {
        (db.count("SELECT count(*) FROM rules_progress").await == 1).then_some(())
    })
    .await;
    first.kill_9();
    assert_eq!(db.count("SELECT count(*) FROM outages").await, 0);

    let second = HubProcess::spawn_with(
        &db.url,
        broker.port(),
        &client_id,
        &[("CITYHUB_LEASE_TTL_S", "2")],
    );
    let opened_at: i64 = eventually(
        Duration::from_secs(20),
        "the over-voltage judged by the second instance",
        || async {
            let row = db
                .client
                .query_opt(
                    "SELECT (extract(epoch FROM o.opened_at) * 1000)::bigint FROM outages o
                     JOIN devices d ON d.id = o.device_id
                     WHERE d.ext_id = 'L0' AND o.kind = 'voltage_out_of_range'",
                    &[],
                )
                .await
                .ok()??;
            Some(row.get(0))
        },
    )
    .await;
    assert_eq!(opened_at, at);
    assert_eq!(
        db.count("SELECT count(*) FROM outages o JOIN devices d ON d.id = o.device_id WHERE d.ext_id = 'L1'")
            .await,
        0
    );
    assert!(
        second
            .metric("cityhub_rules_rows_replayed_total")
            .is_some_and(|n| n >= 2.0),
        "{:?}",
        second.metric("cityhub_rules_rows_replayed_total")
    );
    let _ = std::fs::remove_file(&slow);
}

//! An outage's chronology is an invariant of the database: it never resolves before it
//! opened and its events are in time order. The rules' writes keep to it when evidence is
//! judged late, recording the step at the time of the outage's last one and naming the
//! evidence's own time.

use model::{Kind, Timestamp};
use tests::db::{devices, opened, resolved, ts, utc};
use tests::{unique, Store, TestDb};

async fn one_lamp() -> (TestDb, Store, i32) {
    let tenant = unique("t");
    let db = TestDb::new().await;
    db.import(&devices(&tenant, &[(Kind::Light, 1)])).await;
    let id = db.device_ids(&tenant).await["L0"];
    let store = db.store().await;
    (db, store, id)
}

/// (transition, at) of an outage's events in the order they were recorded.
async fn steps(db: &TestDb, outage: i64) -> Vec<(String, Timestamp)> {
    db.client
        .query(
            "SELECT transition, at FROM outage_events WHERE outage_id = $1 ORDER BY id",
            &[&outage],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), Timestamp::from_datetime(r.get(1))))
        .collect()
}

#[tokio::test]
async fn a_resolution_judged_late_is_recorded_at_the_last_step_with_its_evidence_named() {
    let (db, mut store, lamp) = one_lamp().await;
    store
        .detection
        .apply_outage_changes(&[opened(lamp, "lamp_failure", "2026-03-01T10:00:00Z")])
        .await
        .unwrap();
    let outage = store.admin.outages().await.unwrap()[0].id;
    store
        .actions
        .acknowledge_outage(outage, "olga", ts("2026-03-01T10:20:00Z"))
        .await
        .unwrap();
    // Telemetry from 10:10, judged after Olga's acknowledgement at 10:20.
    store
        .detection
        .apply_outage_changes(&[resolved(lamp, "lamp_failure", "2026-03-01T10:10:00Z")])
        .await
        .unwrap();
    let row = &store.admin.outages().await.unwrap()[0];
    assert_eq!(row.resolved_at, Some(utc("2026-03-01T10:20:00Z")));
    assert_eq!(
        steps(&db, outage).await,
        [
            ("opened".to_owned(), ts("2026-03-01T10:00:00Z")),
            ("acknowledged".to_owned(), ts("2026-03-01T10:20:00Z")),
            ("resolved".to_owned(), ts("2026-03-01T10:20:00Z")),
        ]
    );
    let events = db.outage_events(outage).await;
    let detail = events.last().unwrap().2.clone().unwrap();
    assert!(
        detail.contains("evidence from 2026-03-01T10:10:00Z"),
        "{detail}"
    );

    // Evidence from before the outage even opened: resolved at the instant it opened.
    store
        .detection
        .apply_outage_changes(&[
            opened(lamp, "lamp_failure", "2026-03-01T11:00:00Z"),
            resolved(lamp, "lamp_failure", "2026-03-01T10:55:00Z"),
        ])
        .await
        .unwrap();
    let newest = &store.admin.outages().await.unwrap()[0];
    assert_eq!(newest.opened_at, utc("2026-03-01T11:00:00Z"));
    assert_eq!(newest.resolved_at, Some(utc("2026-03-01T11:00:00Z")));
}

#[tokio::test]
async fn the_database_refuses_steps_out_of_time_order_and_a_resolution_before_the_opening() {
    let (db, mut store, lamp) = one_lamp().await;
    store
        .detection
        .apply_outage_changes(&[opened(lamp, "day_burner", "2026-03-01T10:00:00Z")])
        .await
        .unwrap();
    let outage = store.admin.outages().await.unwrap()[0].id;
    let early = db
        .client
        .execute(
            "INSERT INTO outage_events (outage_id, at, actor, transition) VALUES ($1, $2, 'x', 'comment')",
            &[&outage, &utc("2026-03-01T09:59:59Z")],
        )
        .await
        .unwrap_err();
    let text = early.as_db_error().unwrap().message().to_owned();
    assert!(text.contains("its events are in time order"), "{text}");
    let before = db
        .client
        .execute(
            "UPDATE outages SET state = 'resolved', resolved_at = $2 WHERE id = $1",
            &[&outage, &utc("2026-03-01T09:00:00Z")],
        )
        .await
        .unwrap_err();
    assert!(
        format!("{before:?}").contains("outages_resolved_after_opened"),
        "{before:?}"
    );
    // A person's step at the same instant as the last one is in order.
    store
        .actions
        .acknowledge_outage(outage, "olga", ts("2026-03-01T10:00:00Z"))
        .await
        .unwrap();
}

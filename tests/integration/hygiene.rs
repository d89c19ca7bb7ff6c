//! Alarm hygiene: acknowledging and shelving outages, shelves expiring, and the alarm
//! report.

use std::collections::HashMap;

use model::Kind;
use store::StoreError;
use tests::db::{chattering, devices, opened, resolved, ts, utc};
use tests::{unique, Store, TestDb};

/// A fresh database with `kinds` of one tenant's devices, a store session and the ids.
async fn start(kinds: &[(Kind, usize)]) -> (TestDb, Store, HashMap<String, i32>) {
    let tenant = unique("t");
    let db = TestDb::new().await;
    db.import(&devices(&tenant, kinds)).await;
    let ids = db.device_ids(&tenant).await;
    let store = db.store().await;
    (db, store, ids)
}

#[tokio::test]
async fn shelving_lasts_until_it_expires_and_survives_a_new_connection() {
    let (db, mut store, ids) = start(&[(Kind::Light, 1)]).await;
    store
        .detection
        .apply_outage_changes(&[opened(ids["L0"], "lamp_failure", "2026-03-01T00:00:00Z")])
        .await
        .unwrap();
    let id = store.admin.outages().await.unwrap()[0].id;
    let until = utc("2026-03-01T02:00:00Z");
    store
        .actions
        .shelve_outage(
            id,
            until,
            "olga",
            "waiting for a new driver",
            ts("2026-03-01T01:00:00Z"),
        )
        .await
        .unwrap();
    let fresh = db.store().await;
    assert_eq!(
        fresh.admin.outages().await.unwrap()[0].shelved_until,
        Some(until)
    );

    assert_eq!(
        store
            .detection
            .unshelve_expired(ts("2026-03-01T01:59:59Z"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .detection
            .unshelve_expired(ts("2026-03-01T02:00:00Z"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .detection
            .unshelve_expired(ts("2026-03-01T03:00:00Z"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(fresh.admin.outages().await.unwrap()[0].shelved_until, None);

    store
        .actions
        .acknowledge_outage(id, "olga", ts("2026-03-01T03:00:00Z"))
        .await
        .unwrap();
    store
        .actions
        .shelve_outage(
            id,
            until + chrono::Duration::hours(5),
            "olga",
            "night",
            ts("2026-03-01T03:05:00Z"),
        )
        .await
        .unwrap();
    store
        .actions
        .unshelve_outage(id, "piotr", ts("2026-03-01T03:10:00Z"))
        .await
        .unwrap();
    let outage = &fresh.admin.outages().await.unwrap()[0];
    assert_eq!(
        (outage.state.as_str(), outage.shelved_until),
        ("acknowledged", None)
    );
    let acknowledged_by: Option<String> = db
        .client
        .query_one("SELECT acknowledged_by FROM outages", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(acknowledged_by.as_deref(), Some("olga"));
    let events = db.outage_events(id).await;
    let s = |x: &str| x.to_owned();
    assert_eq!(
        events,
        vec![
            (s("opened"), s("rules"), Some(s("lamp_failure seen"))),
            (
                s("shelved"),
                s("olga"),
                Some(s("until 2026-03-01T02:00:00Z: waiting for a new driver"))
            ),
            (
                s("shelve expired"),
                s("rules"),
                Some(s("shelved until 2026-03-01T02:00:00Z"))
            ),
            (s("acknowledged"), s("olga"), None),
            (
                s("shelved"),
                s("olga"),
                Some(s("until 2026-03-01T07:00:00Z: night"))
            ),
            (s("unshelved"), s("piotr"), None),
        ]
    );
}

#[tokio::test]
async fn shelving_and_acknowledging_refuse_what_makes_no_sense() {
    let (db, mut store, ids) = start(&[(Kind::Light, 1)]).await;
    store
        .detection
        .apply_outage_changes(&[
            opened(ids["L0"], "lamp_failure", "2026-03-01T00:00:00Z"),
            resolved(ids["L0"], "lamp_failure", "2026-03-01T00:10:00Z"),
            opened(ids["L0"], "silent", "2026-03-01T00:00:00Z"),
        ])
        .await
        .unwrap();
    let outages = store.admin.outages().await.unwrap();
    let id_of = |kind: &str| outages.iter().find(|o| o.kind == kind).unwrap().id;
    let (gone, open) = (id_of("lamp_failure"), id_of("silent"));
    let at = ts("2026-03-01T01:00:00Z");
    let later = utc("2026-03-01T02:00:00Z");

    let err = store
        .actions
        .shelve_outage(gone, later, "olga", "x", at)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("outage {gone} is resolved, so it cannot be shelved")
    );
    let err = store
        .actions
        .acknowledge_outage(gone, "olga", at)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::OutageState {
                action: "acknowledged",
                ..
            }
        ),
        "{err}"
    );
    for until in [at.to_datetime(), utc("2026-03-01T00:59:00Z")] {
        let err = store
            .actions
            .shelve_outage(open, until, "olga", "x", at)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::ShelveInPast { .. }), "{err}");
        assert!(err.to_string().contains("is not after"), "{err}");
    }
    let err = store
        .actions
        .unshelve_outage(open, "olga", at)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotShelved(i) if i == open),
        "{err}"
    );
    store
        .actions
        .acknowledge_outage(open, "olga", at)
        .await
        .unwrap();
    let err = store
        .actions
        .acknowledge_outage(open, "olga", at)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("outage {open} is acknowledged, so it cannot be acknowledged")
    );

    let missing = 9_999;
    for err in [
        store
            .actions
            .shelve_outage(missing, later, "olga", "x", at)
            .await
            .unwrap_err(),
        store
            .actions
            .unshelve_outage(missing, "olga", at)
            .await
            .unwrap_err(),
        store
            .actions
            .acknowledge_outage(missing, "olga", at)
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(err, StoreError::NoOutage(9_999)), "{err}");
        assert_eq!(err.to_string(), "no outage 9999");
    }
    // One event per outage opened or resolved, one for the acknowledgement: refusals write none.
    assert_eq!(db.count("SELECT count(*) FROM outage_events").await, 4);
}

#[tokio::test]
async fn the_alarm_report_counts_floods_chattering_shelving_and_bad_actors() {
    let (db, mut store, ids) = start(&[(Kind::Light, 12)]).await;
    let l = |i: usize| ids[&format!("L{i}")];
    let minute = |m: usize| format!("2026-03-01T00:{m:02}:00Z");
    let mut changes = Vec::new();
    // A flood: twelve lamps fail between 00:00 and 00:10 (L0 reports twice more).
    for i in 0..12 {
        changes.push(opened(l(i), "lamp_failure", &minute(i % 10)));
    }
    changes.push(opened(l(0), "lamp_failure", &minute(3)));
    changes.push(opened(l(0), "lamp_failure", &minute(4)));
    // L0 recovers and fails again, chattering.
    changes.push(resolved(l(0), "lamp_failure", &minute(20)));
    changes.push(opened(l(0), "lamp_failure", &minute(25)));
    changes.push(chattering(l(0), "lamp_failure", &minute(26)));
    // L1 goes silent and is shelved; L5 went silent before the period.
    changes.push(opened(l(1), "silent", &minute(35)));
    changes.push(opened(l(5), "silent", "2026-02-28T23:50:00Z"));
    store
        .detection
        .apply_outage_changes(&changes)
        .await
        .unwrap();
    let silent = store
        .admin
        .outages()
        .await
        .unwrap()
        .into_iter()
        .find(|o| o.ext_id == "L1" && o.kind == "silent")
        .unwrap();
    store
        .actions
        .shelve_outage(
            silent.id,
            utc("2026-03-01T06:00:00Z"),
            "olga",
            "known",
            ts(&minute(40)),
        )
        .await
        .unwrap();

    let report = store
        .admin
        .alarm_report(utc("2026-03-01T00:00:00Z"), utc("2026-03-01T01:00:00Z"), 2)
        .await
        .unwrap();
    let kind = |kind: &str, figures: [i64; 4]| store::KindCount {
        kind: kind.into(),
        opened: figures[0],
        occurrences: figures[1],
        chattering: figures[2],
        shelved: figures[3],
    };
    assert_eq!(
        report.per_kind,
        vec![
            kind("lamp_failure", [13, 15, 1, 0]),
            kind("silent", [1, 1, 0, 1])
        ]
    );
    assert_eq!(report.peak_per_10min, 12);
    assert_eq!(
        report.flood_windows,
        vec![(utc("2026-03-01T00:00:00Z"), 12)]
    );
    let actors: Vec<(&str, &str, i64, i64)> = report
        .bad_actors
        .iter()
        .map(|b| (b.ext_id.as_str(), b.kind.as_str(), b.outages, b.occurrences))
        .collect();
    assert_eq!(
        actors,
        [("L0", "lamp_failure", 2, 4), ("L1", "lamp_failure", 1, 1)]
    );
    assert_eq!(report.bad_actors[0].device_id, l(0));
    let tenant: String = db
        .client
        .query_one("SELECT slug FROM tenants", &[])
        .await
        .unwrap()
        .get(0);
    assert!(report.bad_actors.iter().all(|b| b.tenant == tenant));
    assert_eq!(report.per_day, vec![(utc("2026-03-01T00:00:00Z"), 14)]);
    // Per UTC day over two: L5's silence the day before.
    let days = store
        .admin
        .alarm_report(utc("2026-02-28T00:00:00Z"), utc("2026-03-02T00:00:00Z"), 2)
        .await
        .unwrap();
    assert_eq!(
        days.per_day,
        vec![
            (utc("2026-02-28T00:00:00Z"), 1),
            (utc("2026-03-01T00:00:00Z"), 14)
        ]
    );

    let quiet = store
        .admin
        .alarm_report(utc("2026-03-02T00:00:00Z"), utc("2026-03-03T00:00:00Z"), 5)
        .await
        .unwrap();
    assert_eq!(quiet, store::AlarmReport::default());
    let err = store
        .admin
        .alarm_report(utc("2026-03-02T00:00:00Z"), utc("2026-03-01T00:00:00Z"), 5)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::BadPeriod { .. }), "{err}");
}

/// Two people act on one outage at once: the lock lets one through first, and the other's
/// step, asked for a moment earlier, is recorded after it rather than refused for being
/// out of time order.
#[tokio::test]
async fn a_step_asked_for_before_anothers_is_recorded_after_it() {
    let (db, mut store, ids) = start(&[(Kind::Light, 1)]).await;
    store
        .detection
        .apply_outage_changes(&[opened(ids["L0"], "lamp_failure", "2026-03-01T00:00:00Z")])
        .await
        .unwrap();
    let id = store.admin.outages().await.unwrap()[0].id;
    let tenants: Vec<i32> = db
        .client
        .query("SELECT id FROM tenants", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let actor = store::Actor {
        name: "olga",
        tenants: &tenants,
        team: None,
    };
    let comment = |text| store::OutageAction::Comment { text };
    // The later one commits first.
    store
        .actions
        .act_on_outage(&actor, id, &comment("second"), ts("2026-03-01T01:00:05Z"))
        .await
        .unwrap();
    for (action, at) in [
        (comment("first"), "2026-03-01T01:00:04Z"),
        (
            store::OutageAction::Shelve {
                until: utc("2026-03-01T03:00:00Z"),
                reason: "a crew is on its way",
            },
            "2026-03-01T01:00:03Z",
        ),
        (store::OutageAction::Unshelve, "2026-03-01T01:00:02Z"),
        (store::OutageAction::Acknowledge, "2026-03-01T01:00:01Z"),
    ] {
        store
            .actions
            .act_on_outage(&actor, id, &action, ts(at))
            .await
            .unwrap_or_else(|e| panic!("{action:?}: {e}"));
    }
    let steps: Vec<(String, chrono::DateTime<chrono::Utc>)> = db
        .client
        .query(
            "SELECT transition, at FROM outage_events WHERE outage_id = $1 ORDER BY id",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let names: Vec<&str> = steps.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        names,
        [
            "opened",
            "comment",
            "comment",
            "shelved",
            "unshelved",
            "acknowledged"
        ]
    );
    assert!(
        steps[1..]
            .iter()
            .all(|(_, at)| *at == utc("2026-03-01T01:00:05Z")),
        "{steps:?}"
    );
}

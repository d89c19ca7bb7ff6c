//! Outage decisions written in batches, and the work orders they start: life cycle,
//! reopening when a fault comes back, team reports and deadline breaches.

use std::time::Instant;

use model::Kind;
use model::WorkOrderState;
use store::{OutageChange, StoreError, WorkOrderRow};
use tests::db::{chattering, devices, opened, opened_with_order, resolved, state, ts, utc};
use tests::{unique, Store, TestDb};

/// A fresh database with `kinds` of one tenant's devices, a store session and the ids.
async fn start(kinds: &[(Kind, usize)]) -> (TestDb, Store, std::collections::HashMap<String, i32>) {
    let tenant = unique("t");
    let db = TestDb::new().await;
    db.import(&devices(&tenant, kinds)).await;
    let ids = db.device_ids(&tenant).await;
    let store = db.store().await;
    (db, store, ids)
}

async fn only_order(store: &Store) -> WorkOrderRow {
    let orders = store.admin.work_orders(None).await.unwrap();
    assert_eq!(orders.len(), 1, "{orders:?}");
    orders.into_iter().next().unwrap()
}

/// (from, to, actor) of every event of a work order.
async fn steps(store: &Store, id: i64) -> Vec<(Option<String>, String, String)> {
    store
        .reads
        .work_order_events(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            (
                e.from_state.map(|s| s.as_str().to_owned()),
                e.to_state.as_str().to_owned(),
                e.actor,
            )
        })
        .collect()
}

#[tokio::test]
async fn outage_changes_to_one_key_in_one_set_apply_in_order() {
    let (db, mut store, ids) = start(&[(Kind::Light, 2)]).await;
    let (l0, l1) = (ids["L0"], ids["L1"]);
    store
        .detection
        .apply_outage_changes(&[
            opened(l0, "lamp_failure", "2026-03-01T00:00:00Z"),
            opened(l0, "lamp_failure", "2026-03-01T00:05:00Z"),
            resolved(l0, "lamp_failure", "2026-03-01T00:10:00Z"),
            resolved(l1, "lamp_failure", "2026-03-01T00:10:00Z"),
            chattering(l1, "silent", "2026-03-01T00:11:00Z"),
            opened(l0, "lamp_failure", "2026-03-01T00:15:00Z"),
            chattering(l0, "lamp_failure", "2026-03-01T00:20:00Z"),
        ])
        .await
        .unwrap();
    let outages = store.admin.outages().await.unwrap();
    assert_eq!(outages.len(), 2, "nothing for L1: it had nothing open");
    let (again, first) = (&outages[0], &outages[1]);
    assert_eq!(
        (first.state.as_str(), first.occurrences, first.chattering),
        ("resolved", 2, false)
    );
    assert_eq!(first.resolved_at, Some(utc("2026-03-01T00:10:00Z")));
    assert_eq!(
        (again.state.as_str(), again.occurrences, again.chattering),
        ("open", 1, true)
    );
    assert_eq!(
        (again.ext_id.as_str(), again.severity.as_str()),
        ("L0", "major")
    );
    assert_eq!(again.reason, "lamp_failure seen");
    assert!((chrono::Utc::now() - again.recorded_at).num_seconds().abs() < 60);
    let transitions = |events: Vec<(String, String, Option<String>)>| -> Vec<String> {
        events.into_iter().map(|e| e.0).collect()
    };
    assert_eq!(
        transitions(db.outage_events(first.id).await),
        ["opened", "occurred again", "resolved"]
    );
    assert_eq!(
        transitions(db.outage_events(again.id).await),
        ["opened", "chattering"]
    );
    let open: Vec<(i32, String)> = store
        .detection
        .open_outages()
        .await
        .unwrap()
        .into_iter()
        .map(|(device, kind, _)| (device, kind))
        .collect();
    assert_eq!(open, vec![(l0, "lamp_failure".to_owned())]);
}

#[tokio::test]
async fn twenty_thousand_decisions_in_one_set_give_the_right_rows_and_events() {
    let (db, mut store, ids) = start(&[(Kind::Light, 5_000)]).await;
    let mut changes: Vec<OutageChange> = Vec::with_capacity(20_000);
    for id in ids.values() {
        changes.push(opened(*id, "lamp_failure", "2026-03-01T00:00:00Z"));
        changes.push(opened(*id, "silent", "2026-03-01T00:00:00Z"));
    }
    for id in ids.values() {
        changes.push(resolved(*id, "silent", "2026-03-01T00:10:00Z"));
        changes.push(opened(*id, "lamp_failure", "2026-03-01T00:10:00Z"));
    }
    let started = Instant::now();
    store
        .detection
        .apply_outage_changes(&changes)
        .await
        .unwrap();
    let took = started.elapsed();
    let count = |sql: &'static str| db.count(sql);
    assert_eq!(count("SELECT count(*) FROM outages").await, 10_000);
    assert_eq!(
        count("SELECT count(*) FROM outages WHERE kind = 'lamp_failure' AND state = 'open' AND occurrences = 2").await,
        5_000
    );
    assert_eq!(
        count("SELECT count(*) FROM outages WHERE kind = 'silent' AND state = 'resolved' AND occurrences = 1").await,
        5_000
    );
    assert_eq!(count("SELECT count(*) FROM outage_events").await, 20_000);
    assert_eq!(
        count("SELECT count(*) FROM outage_events WHERE transition = 'occurred again'").await,
        5_000
    );
    // A statement per decision took about a minute for this; a few statements take seconds.
    assert!(took.as_secs() < 30, "20 000 decisions took {took:?}");
}

#[tokio::test]
async fn a_new_outage_orders_one_repair_and_the_same_fault_no_second() {
    let (db, mut store, ids) = start(&[(Kind::Light, 1)]).await;
    let l0 = ids["L0"];
    let order = |at| opened_with_order(l0, "lamp_failure", at, "lighting", 3_600);
    store
        .detection
        .apply_outage_changes(&[order("2026-03-01T00:00:00Z"), order("2026-03-01T00:05:00Z")])
        .await
        .unwrap();
    let wo = only_order(&store).await;
    let outage = &store.admin.outages().await.unwrap()[0];
    assert_eq!(wo.outage_id, Some(outage.id));
    assert_eq!(
        (
            wo.ext_id.as_str(),
            wo.kind.as_str(),
            wo.severity.as_str(),
            wo.team.as_str(),
            wo.state.as_str()
        ),
        ("L0", "lamp_failure", "major", "lighting", "new")
    );
    assert_eq!(
        (wo.opened_at, wo.due_at),
        (utc("2026-03-01T00:00:00Z"), utc("2026-03-01T01:00:00Z"))
    );
    let events = store.reads.work_order_events(wo.id).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (
            events[0].from_state.map(WorkOrderState::as_str),
            events[0].to_state.as_str(),
            events[0].actor.as_str()
        ),
        (None, "new", "rules")
    );
    assert_eq!(events[0].detail.as_deref(), Some("lamp_failure seen"));

    // Resolved and back while the repair is still to do: the same order covers it.
    store
        .detection
        .apply_outage_changes(&[
            resolved(l0, "lamp_failure", "2026-03-01T00:10:00Z"),
            order("2026-03-01T00:20:00Z"),
        ])
        .await
        .unwrap();
    let same = only_order(&store).await;
    assert_eq!(
        (same.id, same.state.as_str(), same.reopened),
        (wo.id, "new", 0)
    );
    assert_eq!(db.count("SELECT count(*) FROM work_order_events").await, 1);
    assert_eq!(db.count("SELECT count(*) FROM outages").await, 2);
}

#[tokio::test]
async fn a_work_order_goes_through_its_life_cycle_and_refuses_every_other_step() {
    let (db, mut store, ids) = start(&[(Kind::Light, 1)]).await;
    store
        .detection
        .apply_outage_changes(&[opened_with_order(
            ids["L0"],
            "lamp_failure",
            "2026-03-01T00:00:00Z",
            "lighting",
            3_600,
        )])
        .await
        .unwrap();
    let id = only_order(&store).await.id;
    let path = [
        ("assigned", "dispatch", "2026-03-01T00:05:00Z"),
        ("in_progress", "ana", "2026-03-01T00:20:00Z"),
        ("done", "ana", "2026-03-01T00:40:00Z"),
        ("verified", "rules", "2026-03-01T01:00:00Z"),
        ("closed", "dispatch", "2026-03-01T01:05:00Z"),
    ];
    let mut from = "new";
    for (to, actor, at) in path {
        refuses_all_but(&mut store, id, from, to).await;
        let assignee = (to == "assigned").then_some("ana");
        let row = store
            .detection
            .transition_work_order(id, state(to), actor, Some("step"), ts(at), assignee)
            .await
            .unwrap();
        assert_eq!(row.state.as_str(), to);
        from = to;
    }
    refuses_all_but(&mut store, id, "closed", "").await;
    let wo = only_order(&store).await;
    assert_eq!(wo.assignee.as_deref(), Some("ana"));
    assert_eq!(
        (wo.done_at, wo.verified_at, wo.closed_at),
        (
            Some(utc("2026-03-01T00:40:00Z")),
            Some(utc("2026-03-01T01:00:00Z")),
            Some(utc("2026-03-01T01:05:00Z"))
        )
    );
    let s = |x: &str| x.to_owned();
    assert_eq!(
        steps(&store, id).await,
        vec![
            (None, s("new"), s("rules")),
            (Some(s("new")), s("assigned"), s("dispatch")),
            (Some(s("assigned")), s("in_progress"), s("ana")),
            (Some(s("in_progress")), s("done"), s("ana")),
            (Some(s("done")), s("verified"), s("rules")),
            (Some(s("verified")), s("closed"), s("dispatch")),
        ],
        "refused steps leave no event"
    );
    assert_eq!(db.count("SELECT count(*) FROM work_order_events").await, 6);
}

/// From `from`, every state but `allowed` (and `reopened` where the life cycle allows it)
/// is refused with the state it is in and the one asked for.
async fn refuses_all_but(store: &mut Store, id: i64, from: &str, allowed: &str) {
    let from_state = state(from);
    for to in WorkOrderState::ALL {
        if to.as_str() == allowed || from_state.can_become(to) {
            continue;
        }
        let err = store
            .detection
            .transition_work_order(id, to, "ana", None, ts("2026-03-01T00:00:00Z"), Some("ana"))
            .await
            .unwrap_err();
        match &err {
            StoreError::BadTransition {
                id: i,
                from: f,
                to: t,
            } => {
                assert_eq!((*i, f.as_str(), t.as_str()), (id, from, to.as_str()));
            }
            other => panic!("{from} -> {to}: {other}"),
        }
        assert_eq!(
            err.to_string(),
            format!("work order {id} is {from}; it cannot go to {to}")
        );
    }
}

#[tokio::test]
async fn transitions_of_unknown_or_unassigned_orders_are_refused() {
    let (_db, mut store, ids) = start(&[(Kind::Light, 1)]).await;
    let at = ts("2026-03-01T00:00:00Z");
    let err = store
        .detection
        .transition_work_order(42, WorkOrderState::Assigned, "ana", None, at, Some("ana"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NoWorkOrder(42)), "{err}");
    assert_eq!(err.to_string(), "no work order 42");
    assert!(matches!(
        store.reads.work_order_events(42).await,
        Err(StoreError::NoWorkOrder(42))
    ));
    store
        .detection
        .apply_outage_changes(&[opened_with_order(
            ids["L0"],
            "silent",
            "2026-03-01T00:00:00Z",
            "field",
            60,
        )])
        .await
        .unwrap();
    let id = only_order(&store).await.id;
    let err = store
        .detection
        .transition_work_order(id, WorkOrderState::Assigned, "dispatch", None, at, None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NoAssignee(i) if i == id), "{err}");
    assert!(err.to_string().contains("without naming who"), "{err}");
    assert_eq!(only_order(&store).await.state, WorkOrderState::New);
}

#[tokio::test]
async fn a_fault_that_comes_back_after_the_repair_reopens_its_work_order() {
    let (_db, mut store, ids) = start(&[(Kind::Light, 1)]).await;
    let l0 = ids["L0"];
    let fault = |at| opened_with_order(l0, "lamp_failure", at, "lighting", 3_600);
    store
        .detection
        .apply_outage_changes(&[fault("2026-03-01T00:00:00Z")])
        .await
        .unwrap();
    let id = only_order(&store).await.id;
    walk(
        &mut store,
        id,
        &[
            ("assigned", "2026-03-01T00:05:00Z"),
            ("in_progress", "2026-03-01T00:10:00Z"),
            ("done", "2026-03-01T00:30:00Z"),
        ],
    )
    .await;
    store
        .detection
        .apply_outage_changes(&[
            resolved(l0, "lamp_failure", "2026-03-01T00:31:00Z"),
            fault("2026-03-01T00:50:00Z"),
        ])
        .await
        .unwrap();
    let wo = only_order(&store).await;
    assert_eq!((wo.id, wo.state.as_str(), wo.reopened), (id, "reopened", 1));
    assert_eq!(
        wo.done_at,
        Some(utc("2026-03-01T00:30:00Z")),
        "the last done is kept"
    );
    let last = store
        .reads
        .work_order_events(id)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(
        (
            last.from_state.map(WorkOrderState::as_str),
            last.to_state.as_str(),
            last.actor.as_str()
        ),
        (Some("done"), "reopened", "rules")
    );
    assert_eq!(
        last.detail.as_deref(),
        Some("the fault came back: lamp_failure seen")
    );
    assert_eq!(last.at, utc("2026-03-01T00:50:00Z"));

    // Verified, then back again: reopened a second time.
    walk(
        &mut store,
        id,
        &[
            ("in_progress", "2026-03-01T01:00:00Z"),
            ("done", "2026-03-01T01:10:00Z"),
            ("verified", "2026-03-01T01:30:00Z"),
        ],
    )
    .await;
    store
        .detection
        .apply_outage_changes(&[
            resolved(l0, "lamp_failure", "2026-03-01T01:11:00Z"),
            fault("2026-03-01T02:00:00Z"),
        ])
        .await
        .unwrap();
    let wo = only_order(&store).await;
    assert_eq!((wo.state.as_str(), wo.reopened), ("reopened", 2));
    assert_eq!(wo.done_at, Some(utc("2026-03-01T01:10:00Z")));

    // Closed orders are history: the next fault orders a new repair.
    walk(
        &mut store,
        id,
        &[
            ("in_progress", "2026-03-01T02:10:00Z"),
            ("done", "2026-03-01T02:20:00Z"),
            ("verified", "2026-03-01T02:40:00Z"),
            ("closed", "2026-03-01T02:50:00Z"),
        ],
    )
    .await;
    store
        .detection
        .apply_outage_changes(&[
            resolved(l0, "lamp_failure", "2026-03-01T02:21:00Z"),
            fault("2026-03-01T03:00:00Z"),
        ])
        .await
        .unwrap();
    let orders = store.admin.work_orders(None).await.unwrap();
    let states: Vec<(&str, i32)> = orders
        .iter()
        .map(|o| (o.state.as_str(), o.reopened))
        .collect();
    assert_eq!(states, [("new", 0), ("closed", 2)], "newest first");
    assert_eq!(
        store.admin.work_orders(Some("closed")).await.unwrap()[0].id,
        id
    );
    assert!(store.detection.work_orders_done().await.unwrap().is_empty());
}

/// Moves a work order through `steps` (state, time), as crew member "ana".
async fn walk(store: &mut Store, id: i64, steps: &[(&str, &str)]) {
    for (to, at) in steps {
        store
            .detection
            .transition_work_order(id, state(to), "ana", None, ts(at), Some("ana"))
            .await
            .unwrap_or_else(|e| panic!("to {to}: {e}"));
    }
}

#[tokio::test]
async fn team_reports_and_deadline_breaches_follow_the_due_times() {
    let (_db, mut store, ids) = start(&[(Kind::Light, 5), (Kind::Meter, 2)]).await;
    let day = "2026-03-01T00:00:00Z";
    let lamp =
        |d: &str, deadline| opened_with_order(ids[d], "lamp_failure", day, "lighting", deadline);
    store
        .detection
        .apply_outage_changes(&[
            lamp("L0", 3_600),
            lamp("L1", 3_600),
            lamp("L2", 3_600),
            lamp("L3", 86_400),
            lamp("L4", 3_600),
            opened_with_order(ids["M0"], "leak", day, "metering", 7_200),
            // Opened the day before: outside the report, still a breach.
            opened_with_order(ids["M1"], "leak", "2026-02-28T12:00:00Z", "metering", 3_600),
        ])
        .await
        .unwrap();
    let order_of =
        |orders: &[WorkOrderRow], ext: &str| orders.iter().find(|o| o.ext_id == ext).unwrap().id;
    let orders = store.admin.work_orders(None).await.unwrap();
    let finish = [
        ("L0", "2026-03-01T00:30:00Z", false),
        ("L1", "2026-03-01T02:00:00Z", false),
        ("L4", "2026-03-01T00:30:00Z", true),
        ("M0", "2026-03-01T01:00:00Z", true),
    ];
    for (ext, done_at, verify) in finish {
        let id = order_of(&orders, ext);
        for to in ["assigned", "in_progress", "done"] {
            let at = if to == "done" { done_at } else { day };
            store
                .detection
                .transition_work_order(id, state(to), "crew", None, ts(at), Some("crew"))
                .await
                .unwrap();
        }
        if verify {
            store
                .detection
                .transition_work_order(
                    id,
                    WorkOrderState::Verified,
                    "rules",
                    None,
                    ts("2026-03-01T01:30:00Z"),
                    None,
                )
                .await
                .unwrap();
        }
    }
    let m0 = order_of(&orders, "M0");
    store
        .detection
        .transition_work_order(
            m0,
            WorkOrderState::Closed,
            "dispatch",
            None,
            ts("2026-03-01T01:45:00Z"),
            None,
        )
        .await
        .unwrap();
    // L4's repair did not hold: reopened, and past its due time.
    store
        .detection
        .apply_outage_changes(&[
            resolved(ids["L4"], "lamp_failure", "2026-03-01T00:31:00Z"),
            opened_with_order(
                ids["L4"],
                "lamp_failure",
                "2026-03-01T02:00:00Z",
                "lighting",
                3_600,
            ),
        ])
        .await
        .unwrap();

    let now = utc("2026-03-01T03:00:00Z");
    let report = store
        .admin
        .team_report(utc(day), utc("2026-03-02T00:00:00Z"), now)
        .await
        .unwrap();
    let row = |team: &str, figures: [i64; 6]| store::TeamReport {
        team: team.into(),
        total: figures[0],
        done_on_time: figures[1],
        done_late: figures[2],
        open_overdue: figures[3],
        open_in_time: figures[4],
        reopened: figures[5],
    };
    assert_eq!(
        report,
        vec![
            row("lighting", [5, 1, 1, 2, 1, 1]),
            row("metering", [1, 1, 0, 0, 0, 0])
        ]
    );
    let breaches: Vec<String> = store
        .admin
        .sla_breaches(now)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.ext_id)
        .collect();
    assert_eq!(breaches, ["M1", "L1", "L2", "L4"]);
    // An earlier `now` only changes which unfinished orders are overdue: L1 was done late
    // whenever one asks, while L2 and L4 were still in time.
    let early: Vec<String> = store
        .admin
        .sla_breaches(utc("2026-03-01T00:45:00Z"))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.ext_id)
        .collect();
    assert_eq!(early, ["M1", "L1"]);

    let err = store
        .admin
        .team_report(utc(day), utc(day), now)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::BadPeriod { .. }), "{err}");
    assert!(
        err.to_string().contains("must end after it starts"),
        "{err}"
    );
}

/// A step asked for a moment before another that the lock let through first is recorded
/// after it: the order's history reads in the order things happened.
#[tokio::test]
async fn a_step_asked_for_before_anothers_is_recorded_after_it() {
    let (db, mut store, ids) = start(&[(Kind::Light, 1)]).await;
    store
        .detection
        .apply_outage_changes(&[opened_with_order(
            ids["L0"],
            "lamp_failure",
            "2026-03-01T00:00:00Z",
            "crew-a",
            3600,
        )])
        .await
        .unwrap();
    let id = only_order(&store).await.id;
    for (to, at) in [
        (WorkOrderState::Assigned, "2026-03-01T01:00:05Z"),
        (WorkOrderState::InProgress, "2026-03-01T01:00:04Z"),
        (WorkOrderState::Done, "2026-03-01T01:00:03Z"),
    ] {
        store
            .detection
            .transition_work_order(id, to, "ana", None, ts(at), Some("ana"))
            .await
            .unwrap_or_else(|e| panic!("{to}: {e}"));
    }
    let times: Vec<(String, chrono::DateTime<chrono::Utc>)> = db
        .client
        .query(
            "SELECT to_state, at FROM work_order_events WHERE work_order_id = $1 ORDER BY at, id",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let states: Vec<&str> = times.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(states, ["new", "assigned", "in_progress", "done"]);
    assert!(
        times[1..]
            .iter()
            .all(|(_, at)| *at == utc("2026-03-01T01:00:05Z")),
        "{times:?}"
    );
}

/// Closing a work order closes its outage once the fault has cleared, with an event
/// naming the order; an outage whose fault is still there stays active, whatever the order
/// says.
#[tokio::test]
async fn closing_a_work_order_closes_its_resolved_outage_and_leaves_an_active_one() {
    let (db, mut store, ids) = start(&[(Kind::Light, 2)]).await;
    let plan = |lamp: &str| {
        opened_with_order(
            ids[lamp],
            "lamp_failure",
            "2026-03-01T00:00:00Z",
            "lighting",
            3_600,
        )
    };
    store
        .detection
        .apply_outage_changes(&[plan("L0"), plan("L1")])
        .await
        .unwrap();
    store
        .detection
        .apply_outage_changes(&[resolved(ids["L0"], "lamp_failure", "2026-03-01T00:50:00Z")])
        .await
        .unwrap();
    let orders = store.admin.work_orders(None).await.unwrap();
    let mut closed = std::collections::HashMap::new();
    for wo in &orders {
        for (to, actor, at) in [
            ("assigned", "dispatch", "2026-03-01T00:05:00Z"),
            ("in_progress", "ana", "2026-03-01T00:20:00Z"),
            ("done", "ana", "2026-03-01T00:40:00Z"),
            ("verified", "rules", "2026-03-01T01:00:00Z"),
            ("closed", "dispatch", "2026-03-01T01:05:00Z"),
        ] {
            let row = store
                .detection
                .transition_work_order(wo.id, state(to), actor, None, ts(at), Some("ana"))
                .await
                .unwrap();
            closed.insert(wo.ext_id.clone(), row);
        }
    }
    // The answer says where the outage stands now.
    let outage_state = |lamp: &str| closed[lamp].outage_state.map(|s| s.as_str());
    assert_eq!(outage_state("L0"), Some("closed"));
    assert_eq!(outage_state("L1"), Some("open"));
    let outages: Vec<(String, String)> = db
        .client
        .query(
            "SELECT d.ext_id, o.state FROM outages o JOIN devices d ON d.id = o.device_id
             ORDER BY d.ext_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(outages, [s("L0", "closed"), s("L1", "open")]);
    let last: (
        String,
        String,
        Option<String>,
        chrono::DateTime<chrono::Utc>,
    ) = {
        let r = db
            .client
            .query_one(
                "SELECT e.transition, e.actor, e.detail, e.at FROM outage_events e
                 JOIN outages o ON o.id = e.outage_id JOIN devices d ON d.id = o.device_id
                 WHERE d.ext_id = 'L0' ORDER BY e.at DESC, e.id DESC LIMIT 1",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2), r.get(3))
    };
    let order = closed["L0"].id;
    assert_eq!(
        last,
        (
            "closed".to_owned(),
            "dispatch".to_owned(),
            Some(format!("work order {order} closed")),
            utc("2026-03-01T01:05:00Z")
        )
    );
    // Nothing active is left closed: the open outage's events end where they were.
    assert_eq!(
        db.count(
            "SELECT count(*) FROM outage_events e JOIN outages o ON o.id = e.outage_id
             WHERE o.state = 'open' AND e.transition = 'closed'"
        )
        .await,
        0
    );
}

//! Changes through the API as events and audit entries; one chain under concurrent
//! appends.

use tests::api::{Auth, Req};
use tests::TestDb;

use super::City;

#[tokio::test]
async fn changes_through_the_api_are_events_and_audit_entries() {
    let mut city = City::start().await;
    let a = city.a.clone();
    let outage = city.open_outage(&a).await;
    let order = city.assigned_order(&a).await;
    let r = city
        .post(&format!("/api/v1/outages/{outage}/ack"), "operator", "")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["state"], "acknowledged");
    assert_eq!(r.json()["acknowledged_by"], "operator (token tests)");
    let r = city
        .post(&format!("/api/v1/outages/{outage}/ack"), "operator", "")
        .await;
    assert_eq!(r.status, 409);
    assert!(r.error().contains("is acknowledged"), "{}", r.error());
    let r = city
        .post(
            &format!("/api/v1/outages/{outage}/comment"),
            "dispatcher",
            r#"{"text": "crew on the way"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = city
        .post(
            &format!("/api/v1/work-orders/{order}/transition"),
            "crew",
            r#"{"to": "in_progress", "note": "on site"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["state"], "in_progress");

    let events = city.db.outage_events(outage).await;
    assert!(events.contains(&(
        "comment".into(),
        "dispatcher (token tests)".into(),
        Some("crew on the way".into())
    )));
    let audit: Vec<(String, String, String)> = city
        .db
        .client
        .query(
            "SELECT actor, action, target FROM audit_log WHERE action NOT IN ('user.add', 'token.create') ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        audit,
        [
            (
                "operator (token tests)".into(),
                "outage.acknowledge".into(),
                format!("outage/{outage}")
            ),
            (
                "dispatcher (token tests)".into(),
                "outage.comment".into(),
                format!("outage/{outage}")
            ),
            (
                "crew (token tests)".into(),
                "work_order.transition".into(),
                format!("work_order/{order}")
            ),
        ]
    );
    let check = city.store.admin.verify_audit(&[]).await.unwrap();
    assert_eq!(check.first_bad, None);
    assert_eq!(check.entries, 12 + 3, "6 users, 6 tokens, 3 changes");
}

#[tokio::test]
async fn concurrent_appends_keep_one_unbroken_chain() {
    let db = TestDb::new().await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let url = db.url.clone();
        tasks.push(tokio::spawn(async move {
            let mut store = store::Actions::connect(&url).await.unwrap();
            store
                .audit(
                    "tester",
                    "test.append",
                    &format!("n/{i}"),
                    serde_json::json!({"i": i}),
                )
                .await
                .unwrap()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.sort_unstable();
    assert_eq!(ids, (1..=20).collect::<Vec<i64>>());
    let check = db.admin().await.verify_audit(&[]).await.unwrap();
    assert_eq!((check.entries, check.first_bad), (20, None));
}

#[tokio::test]
async fn failed_sign_ins_and_refused_requests_are_audited_as_counts() {
    // Written when the test says (as every minute in production).
    let mut city = City::start_configured(|c| {
        c.refusals_every = std::time::Duration::from_secs(3600);
    })
    .await;
    let a = city.a.clone();
    let from = std::net::Ipv4Addr::new(127, 0, 0, 5);
    let wrong =
        serde_json::json!({"username": "operator", "password": "a wrong password"}).to_string();
    // Five wrong passwords, then two attempts the throttle refuses.
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let r = city
            .api
            .call_from(from, Req::post("/api/v1/login", &Auth::None, &wrong))
            .await;
        statuses.push(r.status);
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429]);
    // Three acknowledgements a viewer may not make.
    for _ in 0..3 {
        let outage = city.open_outage(&a).await;
        let r = city
            .post(&format!("/api/v1/outages/{outage}/ack"), "viewer", "")
            .await;
        assert_eq!(r.status, 403);
    }
    assert_eq!(city.api.state.audit_refusals().await.unwrap(), 2);
    let rows = city
        .db
        .client
        .query(
            "SELECT action, actor, target, detail FROM audit_log
             WHERE action IN ('session.login_failed', 'request.refused') ORDER BY action",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        2,
        "one entry per user and address, not per attempt"
    );
    let detail = |i: usize| rows[i].get::<_, serde_json::Value>(3);
    let what = |i: usize| {
        (
            rows[i].get::<_, String>(0),
            rows[i].get::<_, String>(1),
            rows[i].get::<_, String>(2),
        )
    };
    assert_eq!(
        what(1),
        (
            "session.login_failed".into(),
            "cityhub".into(),
            "user/operator".into()
        )
    );
    assert_eq!(detail(1)["count"], 7);
    assert_eq!(detail(1)["throttled"], 2);
    assert_eq!(detail(1)["address"], "127.0.0.5");
    assert_eq!(
        what(0),
        (
            "request.refused".into(),
            "cityhub".into(),
            "user/viewer".into()
        )
    );
    assert_eq!(detail(0)["count"], 3);
    assert_eq!(
        detail(0)["routes"],
        serde_json::json!(["POST /api/v1/outages/{id}/ack"])
    );
    // Taken once: nothing more to write until something more is refused.
    assert_eq!(city.api.state.audit_refusals().await.unwrap(), 0);
    let check = city.store.admin.verify_audit(&[]).await.unwrap();
    assert_eq!(check.first_bad, None);
}

#[tokio::test]
async fn the_server_writes_the_tallies_by_itself() {
    let city = City::start_configured(|c| {
        c.refusals_every = std::time::Duration::from_millis(200);
    })
    .await;
    let r = city.get("/api/v1/users", "viewer").await;
    assert_eq!(r.status, 403);
    city.db
        .wait_count(
            "SELECT count(*) FROM audit_log WHERE action = 'request.refused' AND target = 'user/viewer'",
            1,
        )
        .await;
}

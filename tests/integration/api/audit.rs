//! Changes through the API as events and audit entries; one chain under concurrent
//! appends.

use store::Db;
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
    let check = city.store.verify_audit(&[]).await.unwrap();
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
            let mut store = Db::connect(&url).await.unwrap();
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
    let check = db.store().await.verify_audit(&[]).await.unwrap();
    assert_eq!((check.entries, check.first_bad), (20, None));
}

//! Handing outages to teams, one outage or work order with its history, administering
//! users, and the API's own metrics.

use chrono::{DateTime, Utc};
use tests::api::{Auth, Req};
use tests::db::{opened_with_order, resolved};

use super::{fresh_kind, City, CREW_TEAM};

/// The audit entries of `action` on `target`.
async fn audited(city: &City, action: &str, target: &str) -> i64 {
    city.db
        .client
        .query_one(
            "SELECT count(*) FROM audit_log WHERE action = $1 AND target = $2",
            &[&action, &target],
        )
        .await
        .unwrap()
        .get(0)
}

/// The active work order of outage `id` (through the API): team, assignee, state, due.
async fn order_of(city: &City, id: i64) -> (String, Option<String>, String, DateTime<Utc>) {
    let r = city.get("/api/v1/work-orders?limit=1000", "admin").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let page = r.json();
    let order = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["outage_id"].as_i64() == Some(id))
        .unwrap_or_else(|| panic!("no work order of outage {id}: {page}"))
        .clone();
    (
        order["team"].as_str().unwrap().to_owned(),
        order["assignee"].as_str().map(str::to_owned),
        order["state"].as_str().unwrap().to_owned(),
        order["due_at"].as_str().unwrap().parse().unwrap(),
    )
}

#[tokio::test]
async fn assigning_an_outage_opens_or_hands_over_its_work_order() {
    let mut city = City::start().await;
    let a = city.a.clone();

    // No work order yet (the policy opened none): assigning opens one, due in 72 hours.
    let id = city.open_outage(&a).await;
    let before = Utc::now();
    let r = city
        .post(
            &format!("/api/v1/outages/{id}/assign"),
            "dispatcher",
            r#"{"team": "cabinet-crew", "assignee": "ana", "note": "near the school"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (team, assignee, state, due) = order_of(&city, id).await;
    assert_eq!(
        (team.as_str(), assignee.as_deref(), state.as_str()),
        ("cabinet-crew", Some("ana"), "assigned")
    );
    let hours = (due - before).num_minutes() as f64 / 60.0;
    assert!((71.9..=72.1).contains(&hours), "due in {hours} h");

    // Handed to another team, nobody named yet: the order keeps its state and assignee.
    let r = city
        .post(
            &format!("/api/v1/outages/{id}/assign"),
            "admin",
            r#"{"team": "contractor-7"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (team, assignee, state, _) = order_of(&city, id).await;
    assert_eq!(
        (team.as_str(), assignee.as_deref(), state.as_str()),
        ("contractor-7", Some("ana"), "assigned")
    );

    // Both are in the outage's history and the audit log.
    let r = city.get(&format!("/api/v1/outages/{id}"), "viewer").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let detail = r.json();
    let assigned: Vec<&str> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["transition"] == "assigned")
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert_eq!(
        assigned,
        [
            "to team cabinet-crew, ana: near the school",
            "to team contractor-7"
        ]
    );
    assert_eq!(
        audited(&city, "outage.assign", &format!("outage/{id}")).await,
        2
    );

    // An order the policy opened (state new) is assigned once someone is named.
    let kind = fresh_kind();
    let device = city.device(&a, "L5");
    city.store
        .detection
        .apply_outage_changes(&[opened_with_order(
            device,
            kind,
            "2026-03-01T00:00:00Z",
            CREW_TEAM,
            3600,
        )])
        .await
        .unwrap();
    let policy_outage: i64 = city
        .db
        .client
        .query_one("SELECT id FROM outages WHERE kind = $1", &[&kind])
        .await
        .unwrap()
        .get(0);
    let path = format!("/api/v1/outages/{policy_outage}/assign");
    let r = city
        .post(&path, "dispatcher", r#"{"team": "night-crew"}"#)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(order_of(&city, policy_outage).await.2, "new");
    let r = city
        .post(
            &path,
            "dispatcher",
            r#"{"team": "night-crew", "assignee": "rui"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (team, assignee, state, _) = order_of(&city, policy_outage).await;
    assert_eq!(
        (team.as_str(), assignee.as_deref(), state.as_str()),
        ("night-crew", Some("rui"), "assigned")
    );

    // Refusals: no team, a resolved outage, an operator, another municipality.
    let r = city.post(&path, "dispatcher", r#"{"team": "  "}"#).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.error().contains("team"), "{}", r.error());
    let r = city
        .post(&path, "dispatcher", r#"{"assignee": "rui"}"#)
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    city.store
        .detection
        .apply_outage_changes(&[resolved(device, kind, "2026-03-01T02:00:00Z")])
        .await
        .unwrap();
    let r = city
        .post(&path, "dispatcher", r#"{"team": "night-crew"}"#)
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.error().contains("resolved"), "{}", r.error());
    let r = city.post(&path, "operator", r#"{"team": "x"}"#).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.error(), "an operator may not assign outages");
    let b = city.b.clone();
    let theirs = city.open_outage(&b).await;
    let r = city
        .post(
            &format!("/api/v1/outages/{theirs}/assign"),
            "admin",
            r#"{"team": "x"}"#,
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
}

#[tokio::test]
async fn one_outage_or_work_order_comes_with_its_history() {
    let mut city = City::start().await;
    let (a, b) = (city.a.clone(), city.b.clone());
    let id = city.open_outage(&a).await;
    let r = city
        .post(&format!("/api/v1/outages/{id}/ack"), "operator", "")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = city.get(&format!("/api/v1/outages/{id}"), "viewer").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let detail = r.json();
    assert_eq!(detail["id"], id);
    assert_eq!(detail["state"], "acknowledged");
    let steps: Vec<(&str, &str)> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["transition"].as_str().unwrap(),
                e["actor"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(steps[0].0, "opened");
    assert_eq!(steps.last().unwrap().0, "acknowledged");
    assert!(steps.last().unwrap().1.contains("operator"), "{steps:?}");

    // Another municipality's outage and one that does not exist answer alike.
    let theirs = city.open_outage(&b).await;
    for missing in [theirs, id + 10_000] {
        let r = city
            .get(&format!("/api/v1/outages/{missing}"), "admin")
            .await;
        assert_eq!(r.status, 404, "{}", r.body);
        assert_eq!(r.error(), format!("no outage {missing}"));
    }
    let r = city.get(&format!("/api/v1/outages/{id}"), "crew").await;
    assert_eq!(r.status, 403, "{}", r.body);

    // A work order: its crew sees it with its steps; a crew of another team does not.
    let order = city.assigned_order(&a).await;
    let r = city
        .get(&format!("/api/v1/work-orders/{order}"), "crew")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let detail = r.json();
    assert_eq!(detail["team"], CREW_TEAM);
    let states: Vec<&str> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to_state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["new", "assigned"]);
    city.db
        .client
        .execute(
            "UPDATE work_orders SET team = 'another-team' WHERE id = $1",
            &[&order],
        )
        .await
        .unwrap();
    let r = city
        .get(&format!("/api/v1/work-orders/{order}"), "crew")
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = city
        .get(&format!("/api/v1/work-orders/{order}"), "viewer")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = city.get("/api/v1/work-orders/not-a-number", "viewer").await;
    assert_eq!(r.status, 400, "{}", r.body);
}

#[tokio::test]
async fn administrators_list_and_lock_out_users_of_their_municipalities() {
    let city = City::start().await;
    let r = city.get("/api/v1/users", "admin").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let users = r.json();
    let mut names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "admin",
            "crew",
            "dispatcher",
            "operator",
            "regional_viewer",
            "viewer"
        ]
    );
    for role in [
        "operator",
        "dispatcher",
        "crew",
        "viewer",
        "regional_viewer",
    ] {
        let r = city.get("/api/v1/users", role).await;
        assert_eq!(r.status, 403, "{role}: {}", r.body);
    }

    // Disabled: the viewer's token stops working at once; enabled: it works again.
    assert_eq!(city.get("/api/v1/me", "viewer").await.status, 200);
    let r = city.post("/api/v1/users/viewer/disable", "admin", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["disabled"], true);
    assert_eq!(city.get("/api/v1/me", "viewer").await.status, 401);
    let r = city.post("/api/v1/users/viewer/enable", "admin", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(city.get("/api/v1/me", "viewer").await.status, 200);
    assert_eq!(audited(&city, "user.disable", "user/viewer").await, 1);
    assert_eq!(audited(&city, "user.enable", "user/viewer").await, 1);

    // A user who also works for a municipality this admin does not administer.
    let r = city
        .post("/api/v1/users/regional_viewer/disable", "admin", "")
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.error().contains("do not administer"), "{}", r.error());
    // Nobody by that name in the admin's municipalities; and not oneself.
    let r = city.post("/api/v1/users/nobody/disable", "admin", "").await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = city.post("/api/v1/users/admin/disable", "admin", "").await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(city.get("/api/v1/me", "admin").await.status, 200);
}

#[tokio::test]
async fn requests_are_counted_by_route_template_and_status() {
    let mut city = City::start().await;
    let a = city.a.clone();
    let id = city.open_outage(&a).await;
    for _ in 0..3 {
        let r = city.get(&format!("/api/v1/outages/{id}"), "admin").await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = city.get("/api/v1/outages/999999999", "admin").await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = city.get("/api/v1/nothing-here", "admin").await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = city.api.call(Req::get("/metrics", &Auth::None)).await;
    assert_eq!(r.status, 200);
    let count = |route: &str, status: u16| -> f64 {
        let prefix = format!(
            "cityhub_api_requests_total{{route=\"{route}\",method=\"GET\",status=\"{status}\"}} "
        );
        r.body
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    };
    assert_eq!(count("/api/v1/outages/{id}", 200), 3.0, "{}", r.body);
    assert_eq!(count("/api/v1/outages/{id}", 404), 1.0, "{}", r.body);
    assert_eq!(count("unmatched", 404), 1.0, "{}", r.body);
    assert!(
        r.body.contains(
            "cityhub_api_request_duration_seconds_count{route=\"/api/v1/outages/{id}\",method=\"GET\"} 4"
        ),
        "{}",
        r.body
    );
}

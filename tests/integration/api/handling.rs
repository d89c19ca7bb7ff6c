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

/// A flood: one request acknowledges, or shelves, many outages, each recorded and audited
/// as if alone. What cannot be done (already acknowledged, another tenant's) is skipped
/// with the reason while the rest is done; a request that is wrong is refused whole.
#[tokio::test]
async fn a_flood_is_acknowledged_and_shelved_in_bulk_each_outage_audited() {
    let mut city = City::start().await;
    let (a, b) = (city.a.clone(), city.b.clone());
    let mut mine = Vec::new();
    for _ in 0..4 {
        mine.push(city.open_outage(&a).await);
    }
    let theirs = city.open_outage(&b).await;
    let r = city
        .post(&format!("/api/v1/outages/{}/ack", mine[0]), "operator", "")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let mut ids = mine.clone();
    ids.push(theirs);
    let body = serde_json::json!({"ids": ids, "action": "acknowledge"}).to_string();
    let r = city.post("/api/v1/outages/bulk", "operator", &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let done: Vec<i64> = v["done"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_i64().unwrap())
        .collect();
    assert_eq!(done, mine[1..], "{v}");
    assert!(v["done"]
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o["state"] == "acknowledged" && o["acknowledged_by"].is_string()));
    let skipped: Vec<(i64, String)> = v["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_i64().unwrap(),
                s["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(skipped.len(), 2, "{v}");
    assert_eq!(skipped[0].0, mine[0]);
    assert!(skipped[0].1.contains("acknowledged"), "{}", skipped[0].1);
    assert_eq!(skipped[1], (theirs, format!("no outage {theirs}")));
    let state: String = city
        .db
        .client
        .query_one("SELECT state FROM outages WHERE id = $1", &[&theirs])
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "open", "another tenant's outage is left alone");
    for id in &mine {
        assert_eq!(
            audited(&city, "outage.acknowledge", &format!("outage/{id}")).await,
            1,
            "one audit entry per outage"
        );
    }

    // Shelved together until the storm passes, each with the reason.
    let until = (chrono::Utc::now() + chrono::Duration::hours(6)).to_rfc3339();
    let body = serde_json::json!({
        "ids": mine, "action": "shelve", "until": until, "reason": "storm: crews out at dawn"
    });
    let r = city
        .post("/api/v1/outages/bulk", "operator", &body.to_string())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["done"].as_array().unwrap().len(), 4, "{v}");
    assert!(v["done"]
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o["shelved_until"].is_string() && o["shelved_by"].is_string()));
    for id in &mine {
        assert_eq!(
            audited(&city, "outage.shelve", &format!("outage/{id}")).await,
            1
        );
    }

    // Refused whole, nothing done.
    let past = "2020-01-01T00:00:00Z";
    let many: Vec<i64> = (1..=1001).collect();
    let cases = [
        (
            serde_json::json!({"ids": [], "action": "acknowledge"}),
            "1 to 1000",
        ),
        (
            serde_json::json!({"ids": many, "action": "acknowledge"}),
            "not 1001",
        ),
        (
            serde_json::json!({"ids": [theirs, theirs], "action": "acknowledge"}),
            "named twice",
        ),
        (
            serde_json::json!({"ids": [theirs], "action": "acknowledge", "reason": "x"}),
            "go with `shelve` only",
        ),
        (
            serde_json::json!({"ids": [theirs], "action": "shelve", "until": until}),
            "needs a `reason`",
        ),
        (
            serde_json::json!({"ids": [theirs], "action": "shelve", "until": past, "reason": "x"}),
            "later time",
        ),
        (
            serde_json::json!({"ids": [theirs], "action": "shelve", "until": until, "reason": "  "}),
            "must not be empty",
        ),
        (
            serde_json::json!({"ids": [theirs], "action": "close"}),
            "unknown variant",
        ),
        (
            serde_json::json!({"ids": ["x"], "action": "acknowledge"}),
            "invalid type",
        ),
        (
            serde_json::json!({"ids": [theirs, -5], "action": "acknowledge"}),
            "1 or more, not -5",
        ),
    ];
    for (body, fragment) in cases {
        let r = city
            .post("/api/v1/outages/bulk", "operator", &body.to_string())
            .await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(
            r.body.contains(fragment),
            "{body}: `{}` lacks `{fragment}`",
            r.body
        );
    }
    let body = serde_json::json!({"ids": [theirs], "action": "acknowledge"}).to_string();
    let r = city.post("/api/v1/outages/bulk", "viewer", &body).await;
    assert_eq!(r.status, 403, "{}", r.body);
}

/// The outage list says where each outage is and who handles it.
#[tokio::test]
async fn the_outage_list_names_the_district_cabinet_and_who_handles_it() {
    let mut city = City::start().await;
    let a = city.a.clone();
    let order = city.assigned_order(&a).await;
    let r = city.get("/api/v1/outages?limit=1000", "operator").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let page = r.json();
    let o = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["work_order"]["id"].as_i64() == Some(order))
        .unwrap_or_else(|| panic!("no outage handled by order {order}: {page}"))
        .clone();
    assert_eq!(o["device"], "L1");
    assert_eq!(o["work_order"]["team"], CREW_TEAM);
    assert_eq!(o["work_order"]["assignee"], "ana");
    assert_eq!(o["work_order"]["state"], "assigned");
    let (district, cabinet) = city.place(&a, "L1").await;
    assert_eq!(o["district"].as_str(), district.as_deref());
    assert_eq!(o["cabinet"].as_str(), cabinet.as_deref());
    let unhandled = city.open_outage(&a).await;
    let r = city
        .get(&format!("/api/v1/outages/{unhandled}"), "operator")
        .await;
    assert_eq!(
        r.json()["work_order"],
        serde_json::Value::Null,
        "{}",
        r.body
    );
}

/// A work order says where its device is and how its outage stands, and the list narrows
/// to a district.
#[tokio::test]
async fn work_orders_name_their_place_and_outage_and_filter_by_district() {
    let mut city = City::start().await;
    let a = city.a.clone();
    let order = city.assigned_order(&a).await;
    let (district, cabinet) = city.place(&a, "L1").await;
    let district = district.expect("the test city's lamps have districts");
    let r = city
        .get(&format!("/api/v1/work-orders/{order}"), "dispatcher")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let w = r.json();
    assert_eq!(w["district"], district.as_str());
    assert_eq!(w["cabinet"].as_str(), cabinet.as_deref());
    assert_eq!(w["outage_state"], "open");

    let ids = |r: tests::api::Reply| -> Vec<i64> {
        r.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["id"].as_i64().unwrap())
            .collect()
    };
    let here = city
        .get(
            &format!("/api/v1/work-orders?district={district}&limit=1000"),
            "dispatcher",
        )
        .await;
    assert_eq!(here.status, 200, "{}", here.body);
    assert!(ids(here).contains(&order));
    let nowhere = city
        .get("/api/v1/work-orders?district=nowhere-at-all", "dispatcher")
        .await;
    assert_eq!(ids(nowhere), Vec::<i64>::new());
    let long = "d".repeat(300);
    let r = city
        .get(
            &format!("/api/v1/work-orders?district={long}"),
            "dispatcher",
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("district"), "{}", r.body);

    // By device: the lamp's orders, none of another lamp's, the same id in another tenant
    // not the caller's.
    let mine = city
        .get("/api/v1/work-orders?device=L1&limit=1000", "dispatcher")
        .await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    assert_eq!(ids(mine), vec![order]);
    let b = city.b.clone();
    city.assigned_order(&b).await;
    let other = city
        .get("/api/v1/work-orders?device=L2&limit=1000", "dispatcher")
        .await;
    assert_eq!(ids(other), Vec::<i64>::new());
    let mine = city
        .get("/api/v1/work-orders?device=L1&limit=1000", "dispatcher")
        .await;
    assert_eq!(
        ids(mine),
        vec![order],
        "tenant b's L1 is not the dispatcher's"
    );
    let r = city
        .get(&format!("/api/v1/work-orders?device={long}"), "dispatcher")
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("device"), "{}", r.body);
}

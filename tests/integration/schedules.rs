//! Lighting schedules and overrides: a change pushes `set_schedule` to exactly the lamps
//! whose profile changed, an override's end pushes the schedule underneath again, and
//! every change is audited.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use tests::api::Req;

use crate::api::City;

async fn add(city: &City, role: &str, body: Value) -> tests::api::Reply {
    let body = body.to_string();
    city.api
        .call(Req::post("/api/v1/schedules", &city.tokens[role], &body))
        .await
}

/// The lamps (inventory ids) a batch pushes to, and the body it pushes.
async fn pushed(city: &City, batch: i64) -> (BTreeSet<String>, Value) {
    let rows = city
        .db
        .client
        .query(
            "SELECT d.ext_id, c.body, c.status, c.action FROM commands c JOIN devices d ON d.id = c.device_id
             WHERE c.batch_id = $1",
            &[&batch],
        )
        .await
        .unwrap();
    let body: Value = rows[0].get(1);
    for r in &rows {
        assert_eq!(r.get::<_, String>(3), "set_schedule");
        assert_eq!(r.get::<_, String>(2), "pending");
        assert_eq!(r.get::<_, Value>(1), body, "one body per batch");
    }
    (rows.iter().map(|r| r.get(0)).collect(), body)
}

fn lamps(ids: &[u32]) -> BTreeSet<String> {
    ids.iter().map(|i| format!("L{i}")).collect()
}

#[tokio::test]
async fn schedule_changes_push_exactly_the_lamps_whose_profile_changed() {
    let city = City::start().await;
    let night = json!({"dusk_offset_min": 10, "dim": 80});
    let r = add(
        &city,
        "operator",
        json!({"tenant": city.a, "profile": night}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let change = r.json();
    assert_eq!(
        change["devices"], 30,
        "every lamp of the tenant, not its cabinet"
    );
    let (to, body) = pushed(&city, change["batches"][0].as_i64().unwrap()).await;
    assert_eq!(to, lamps(&(0..30).collect::<Vec<_>>()));
    assert_eq!(
        body,
        json!({"action": "set_schedule", "dusk_offset_min": 10.0, "dim": 80.0})
    );
    let tenant_wide = change["schedule"]["id"].as_i64().unwrap();

    // The same profile for the cabinet changes no lamp's profile: nothing is pushed.
    let r = add(
        &city,
        "operator",
        json!({"target": {"cabinet": "C0"}, "profile": night}),
    )
    .await;
    assert_eq!((r.status, r.json()["devices"].clone()), (201, json!(0)));
    assert_eq!(r.json()["batches"], json!([]));

    // Part-night dimming on two lamps: those two.
    let part_night = json!({"dim": 80, "steps": [{"from": "23:00", "to": "05:00", "dim": 30}]});
    let r = add(
        &city,
        "admin",
        json!({"target": {"devices": ["L4", "L2"]}, "profile": part_night}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let two = r.json();
    let (to, body) = pushed(&city, two["batches"][0].as_i64().unwrap()).await;
    assert_eq!(to, lamps(&[2, 4]));
    assert_eq!(body["steps"][0]["dim"], 30.0);

    // An override on L2 and L7 until later: those two, whatever is underneath.
    let until = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let r = add(
        &city,
        "operator",
        json!({"target": {"devices": ["L2", "L7"]}, "profile": {"dim": 100}, "expires": until}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let over = r.json();
    assert_eq!(over["schedule"]["override"], true);
    assert_eq!(over["devices"], 2);

    // The override ends: L2 goes back to part-night, L7 to the tenant's night profile.
    let mut store = city.db.store().await;
    let lamps_pushed = store
        .dispatch
        .end_expired_overrides(chrono::Utc::now() + chrono::Duration::hours(3))
        .await
        .unwrap();
    assert_eq!(lamps_pushed, 2);
    let ended: Vec<(i64, Value)> = city
        .db
        .client
        .query(
            "SELECT id, body FROM command_batches WHERE origin = 'schedule' AND issued_by = 'cityhub' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(ended.len(), 2, "one batch per profile");
    let mut back = Vec::new();
    for (batch, body) in &ended {
        back.push((pushed(&city, *batch).await.0, body["steps"].is_array()));
    }
    back.sort();
    assert_eq!(back, [(lamps(&[2]), true), (lamps(&[7]), false)]);
    assert_eq!(
        store
            .dispatch
            .end_expired_overrides(chrono::Utc::now() + chrono::Duration::hours(3))
            .await
            .unwrap(),
        0,
        "an override ends once"
    );

    // Removing the tenant-wide schedule: every lamp not covered by the cabinet's or the
    // two lamps' schedule keeps its profile (the cabinet's is the same), so none changes.
    let r = city
        .api
        .call(Req {
            method: "DELETE",
            ..Req::get(
                &format!("/api/v1/schedules/{tenant_wide}"),
                &city.tokens["operator"],
            )
        })
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["devices"], 0);
    assert!(r.json()["schedule"]["removed_at"].is_string());
    let r = city
        .api
        .call(Req {
            method: "DELETE",
            ..Req::get(
                &format!("/api/v1/schedules/{tenant_wide}"),
                &city.tokens["operator"],
            )
        })
        .await;
    assert_eq!(r.status, 409, "{}", r.body);

    let actions: Vec<String> = city
        .db
        .client
        .query(
            "SELECT action FROM audit_log WHERE action LIKE 'schedule.%' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        actions,
        [
            "schedule.add",
            "schedule.add",
            "schedule.add",
            "schedule.add",
            "schedule.expire",
            "schedule.remove"
        ]
    );
    let list = city
        .api
        .call(Req::get("/api/v1/schedules", &city.tokens["viewer"]))
        .await
        .json();
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        2,
        "cabinet and the two lamps"
    );
}

#[tokio::test]
async fn a_newer_push_supersedes_an_undelivered_one() {
    let city = City::start().await;
    let first = add(
        &city,
        "operator",
        json!({"target": {"devices": ["L1"]}, "profile": {"dim": 50}}),
    )
    .await;
    let second = add(
        &city,
        "operator",
        json!({"target": {"devices": ["L1"]}, "profile": {"dim": 60}}),
    )
    .await;
    let (b1, b2) = (
        first.json()["batches"][0].as_i64().unwrap(),
        second.json()["batches"][0].as_i64().unwrap(),
    );
    let expires = |b: i64| {
        let client = &city.db.client;
        async move {
            client
                .query_one(
                    "SELECT expires_at IS NOT NULL FROM commands WHERE batch_id = $1",
                    &[&b],
                )
                .await
                .unwrap()
                .get::<_, bool>(0)
        }
    };
    assert!(expires(b1).await, "the first push now expires");
    assert!(!expires(b2).await, "the newest is held until delivered");
}

#[tokio::test]
async fn schedules_are_for_operators_of_their_own_tenants() {
    let city = City::start().await;
    for role in ["dispatcher", "crew", "viewer"] {
        let r = add(&city, role, json!({"profile": {}})).await;
        assert_eq!(r.status, 403, "{role}");
        assert!(
            r.error().ends_with("may not change lighting schedules"),
            "{}",
            r.error()
        );
    }
    let r = add(&city, "operator", json!({"tenant": city.b, "profile": {}})).await;
    assert_eq!(
        (r.status, r.error()),
        (404, format!("no tenant `{}`", city.b))
    );
    for (body, status, why) in [
        (
            json!({"target": {"district": "harbour"}, "profile": {}}),
            404,
            "no district `harbour`",
        ),
        (
            json!({"target": {"devices": ["C0"]}, "profile": {}}),
            400,
            "lamps only",
        ),
        (json!({"profile": {"dim": 101}}), 400, "0 to 100"),
        // A field given is a value: null is refused, not read as left out.
        (
            json!({"profile": {"dim": null}}),
            400,
            "dim: invalid type: null",
        ),
        (
            json!({"profile": {}, "expires": null}),
            400,
            "expires: invalid type: null",
        ),
        (
            json!({"tenant": null, "profile": {}}),
            400,
            "tenant: invalid type: null",
        ),
        (
            json!({"profile": {}, "expires": "2020-01-01T00:00:00Z"}),
            400,
            "ends after now",
        ),
    ] {
        let r = add(&city, "operator", body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert!(r.error().contains(why), "{body}: {}", r.error());
    }
    // Another tenant's schedule is unknown to this one's operator.
    let mut store = city.db.store().await;
    tests::api::add_user(&mut store.admin, "b-op", "operator", &[&city.b], None).await;
    let b_op = tests::api::Auth::Token(tests::api::add_token(&mut store.admin, "b-op", "t").await);
    let body = json!({"profile": {"dim": 70}}).to_string();
    let r = city
        .api
        .call(Req::post("/api/v1/schedules", &b_op, &body))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["schedule"]["id"].as_i64().unwrap();
    let r = city
        .api
        .call(Req {
            method: "DELETE",
            ..Req::get(&format!("/api/v1/schedules/{id}"), &city.tokens["operator"])
        })
        .await;
    assert_eq!((r.status, r.error()), (404, format!("no schedule {id}")));
}

/// Two operators change one lamp's schedule at the same moment: the lamp is pushed the
/// profile the hub holds in force, never the one that lost.
#[tokio::test]
async fn schedules_added_at_once_push_the_profile_in_force() {
    let city = City::start().await;
    for round in 1..=8 {
        let lamp = format!("L{round}");
        let body = |dim| json!({"target": {"devices": [lamp.clone()]}, "profile": {"dim": dim}});
        let (a, b) = tokio::join!(
            add(&city, "operator", body(11)),
            add(&city, "admin", body(66))
        );
        assert_eq!((a.status, b.status), (201, 201), "{} {}", a.body, b.body);
        let row = city
            .db
            .client
            .query_one(
                "SELECT (SELECT s.profile->'dim' FROM lighting_schedules s
                         WHERE s.removed_at IS NULL AND $2 = ANY(s.devices)
                           AND s.tenant_id = t.id
                         ORDER BY s.id DESC LIMIT 1),
                        (SELECT array_agg(c.body->'dim') FROM commands c
                         JOIN devices d ON d.id = c.device_id
                         WHERE d.tenant_id = t.id AND d.ext_id = $2
                           AND c.action = 'set_schedule' AND c.expires_at IS NULL)
                 FROM tenants t WHERE t.slug = $1",
                &[&city.a, &lamp],
            )
            .await
            .unwrap();
        let in_force: Value = row.get(0);
        let pushes: Vec<Value> = row.get(1);
        assert_eq!(
            pushes,
            [in_force],
            "round {round}: the push still to be delivered"
        );
    }
}

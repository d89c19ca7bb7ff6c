//! The authorization matrix: every endpoint, every role, against something of the
//! caller's own tenant and of another tenant, and the status each cell must answer.
//!
//! A role that may not do a thing gets 403 whatever it aims at (its role says so, which
//! reveals nothing); a role that may gets 404 for another tenant's thing, exactly as for
//! one that does not exist. Each cell gets a fresh outage or work order, so cells do not
//! depend on each other's order.

use std::fmt::Write;

use super::{City, CREW_TEAM, ROLES};

/// What a cell aims at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Own,
    Other,
}

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    ListOutages,
    Ack,
    Shelve,
    Unshelve,
    Comment,
    ListWorkOrders,
    Transition,
    TeamsReport,
    BreachReport,
    AlarmReport,
    ListDevices,
    GetOutage,
    Assign,
    GetWorkOrder,
    ListUsers,
    DisableUser,
    GetDevice,
    DeviceHistory,
    DeviceStates,
    EnergyReport,
    BulkAck,
}

/// Expected statuses per role, in [`ROLES`] order: admin, operator, dispatcher, crew,
/// viewer, regional_viewer. One row per endpoint: (endpoint, own tenant, other tenant).
#[rustfmt::skip]
const MATRIX: [(Endpoint, [u16; 6], [u16; 6]); 21] = [
    //                          own tenant                        other tenant
    //                          adm  op   disp crew view regv     adm  op   disp crew view regv
    (Endpoint::ListOutages,    [200, 200, 200, 403, 200, 200],  [404, 404, 404, 403, 404, 404]),
    (Endpoint::Ack,            [200, 200, 403, 403, 403, 403],  [404, 404, 403, 403, 403, 403]),
    (Endpoint::Shelve,         [200, 200, 403, 403, 403, 403],  [404, 404, 403, 403, 403, 403]),
    (Endpoint::BulkAck,        [200, 200, 403, 403, 403, 403],  [404, 404, 403, 403, 403, 403]),
    (Endpoint::Unshelve,       [200, 200, 403, 403, 403, 403],  [404, 404, 403, 403, 403, 403]),
    (Endpoint::Comment,        [200, 200, 200, 403, 403, 403],  [404, 404, 404, 403, 403, 403]),
    (Endpoint::ListWorkOrders, [200, 200, 200, 200, 200, 200],  [404, 404, 404, 404, 404, 404]),
    (Endpoint::Transition,     [200, 403, 200, 200, 403, 403],  [404, 403, 404, 404, 403, 403]),
    (Endpoint::TeamsReport,    [200, 200, 200, 403, 200, 200],  [404, 404, 404, 403, 404, 404]),
    (Endpoint::BreachReport,   [200, 200, 200, 403, 200, 200],  [404, 404, 404, 403, 404, 404]),
    (Endpoint::AlarmReport,    [200, 200, 200, 403, 200, 200],  [404, 404, 404, 403, 404, 404]),
    (Endpoint::ListDevices,    [200, 200, 200, 200, 200, 200],  [404, 404, 404, 404, 404, 404]),
    (Endpoint::GetOutage,      [200, 200, 200, 403, 200, 200],  [404, 404, 404, 403, 404, 404]),
    (Endpoint::Assign,         [200, 403, 200, 403, 403, 403],  [404, 403, 404, 403, 403, 403]),
    (Endpoint::GetWorkOrder,   [200, 200, 200, 200, 200, 200],  [404, 404, 404, 404, 404, 404]),
    (Endpoint::ListUsers,      [200, 403, 403, 403, 403, 403],  [404, 403, 403, 403, 403, 403]),
    (Endpoint::DisableUser,    [200, 403, 403, 403, 403, 403],  [404, 403, 403, 403, 403, 403]),
    (Endpoint::GetDevice,      [200, 200, 200, 200, 200, 200],  [404, 404, 404, 404, 404, 404]),
    (Endpoint::DeviceHistory,  [200, 200, 200, 200, 200, 200],  [404, 404, 404, 404, 404, 404]),
    (Endpoint::DeviceStates,   [200, 200, 200, 200, 200, 200],  [404, 404, 404, 404, 404, 404]),
    (Endpoint::EnergyReport,   [200, 200, 200, 403, 200, 200],  [404, 404, 404, 403, 404, 404]),
];

/// Sends `endpoint`'s request as `role`, aimed at `side`; the status and the body.
async fn cell(city: &mut City, endpoint: Endpoint, role: &str, side: Side) -> (u16, String) {
    let tenant = match side {
        Side::Own => city.a.clone(),
        Side::Other => city.b.clone(),
    };
    // Lists and reports aim at another tenant by naming it.
    let filter = match side {
        Side::Own => String::new(),
        Side::Other => format!("?tenant={tenant}"),
    };
    let until = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let reply = match endpoint {
        Endpoint::ListOutages => city.get(&format!("/api/v1/outages{filter}"), role).await,
        Endpoint::ListWorkOrders => {
            city.get(&format!("/api/v1/work-orders{filter}"), role)
                .await
        }
        Endpoint::ListDevices => city.get(&format!("/api/v1/devices{filter}"), role).await,
        Endpoint::TeamsReport => {
            city.get(&format!("/api/v1/reports/teams{filter}"), role)
                .await
        }
        Endpoint::BreachReport => {
            city.get(&format!("/api/v1/reports/sla-breaches{filter}"), role)
                .await
        }
        Endpoint::AlarmReport => {
            city.get(&format!("/api/v1/reports/alarms{filter}"), role)
                .await
        }
        Endpoint::Ack => {
            let id = city.open_outage(&tenant).await;
            city.post(&format!("/api/v1/outages/{id}/ack"), role, "")
                .await
        }
        Endpoint::Shelve => {
            let id = city.open_outage(&tenant).await;
            let body = serde_json::json!({"until": until, "reason": "waiting for a part"});
            city.post(
                &format!("/api/v1/outages/{id}/shelve"),
                role,
                &body.to_string(),
            )
            .await
        }
        Endpoint::BulkAck => {
            let id = city.open_outage(&tenant).await;
            let body = serde_json::json!({"ids": [id], "action": "acknowledge"});
            let r = city
                .post("/api/v1/outages/bulk", role, &body.to_string())
                .await;
            // One outage: done, or skipped as not the caller's, which counts as its 404.
            if r.status == 200 {
                let v = r.json();
                let done = v["done"].as_array().map_or(0, Vec::len);
                let skipped = &v["skipped"][0]["reason"];
                return match (done, skipped.as_str()) {
                    (1, None) => (200, r.body),
                    (0, Some(why)) if why.contains("no outage") => (404, r.body),
                    _ => (0, r.body),
                };
            }
            r
        }
        Endpoint::Unshelve => {
            let id = city.open_outage(&tenant).await;
            let until = chrono::Utc::now() + chrono::Duration::hours(2);
            city.store
                .actions
                .shelve_outage(id, until, "olga", "waiting", model::Timestamp::now())
                .await
                .unwrap();
            city.post(&format!("/api/v1/outages/{id}/unshelve"), role, "")
                .await
        }
        Endpoint::Comment => {
            let id = city.open_outage(&tenant).await;
            city.post(
                &format!("/api/v1/outages/{id}/comment"),
                role,
                r#"{"text": "seen from the street"}"#,
            )
            .await
        }
        Endpoint::GetOutage => {
            let id = city.open_outage(&tenant).await;
            city.get(&format!("/api/v1/outages/{id}"), role).await
        }
        Endpoint::Assign => {
            let id = city.open_outage(&tenant).await;
            city.post(
                &format!("/api/v1/outages/{id}/assign"),
                role,
                r#"{"team": "night-crew", "assignee": "ana"}"#,
            )
            .await
        }
        Endpoint::GetWorkOrder => {
            let id = city.assigned_order(&tenant).await;
            city.get(&format!("/api/v1/work-orders/{id}"), role).await
        }
        Endpoint::ListUsers => city.get(&format!("/api/v1/users{filter}"), role).await,
        // Devices are named with their tenant: the regional viewer has an L0 in two.
        Endpoint::GetDevice => {
            city.get(&format!("/api/v1/devices/L0?tenant={tenant}"), role)
                .await
        }
        Endpoint::DeviceHistory => {
            city.get(&format!("/api/v1/devices/L0/history?tenant={tenant}"), role)
                .await
        }
        Endpoint::DeviceStates => city.get(&format!("/api/v1/state{filter}"), role).await,
        Endpoint::EnergyReport => {
            city.get(&format!("/api/v1/reports/energy{filter}"), role)
                .await
        }
        Endpoint::DisableUser => {
            // A user of the tenant aimed at, made for this cell alone.
            let name = tests::unique("staff");
            tests::api::add_user(&mut city.store.admin, &name, "viewer", &[&tenant], None).await;
            city.post(&format!("/api/v1/users/{name}/disable"), role, "")
                .await
        }
        Endpoint::Transition => {
            let id = city.assigned_order(&tenant).await;
            city.post(
                &format!("/api/v1/work-orders/{id}/transition"),
                role,
                r#"{"to": "in_progress"}"#,
            )
            .await
        }
    };
    // A list of the own tenant holds nothing of another tenant.
    if reply.status == 200 && side == Side::Own {
        if let Some(items) = reply.json()["items"].as_array() {
            let others = items
                .iter()
                .filter(|i| i["tenant"] != city.a.as_str() && i["tenant"] != city.c.as_str())
                .count();
            if others > 0 {
                return (
                    0,
                    format!("{others} items of another tenant: {}", reply.body),
                );
            }
        }
    }
    (reply.status, reply.body)
}

#[tokio::test]
async fn every_endpoint_answers_every_role_as_the_matrix_says() {
    let mut city = City::start().await;
    let mut table = String::new();
    let mut wrong = 0;
    let _ = writeln!(
        table,
        "{:<16} {:<16} {:<6} {:>4} {:>4}",
        "endpoint", "role", "side", "want", "got"
    );
    for (endpoint, own, other) in MATRIX {
        for (side, expected) in [(Side::Own, own), (Side::Other, other)] {
            for (role, want) in ROLES.iter().zip(expected) {
                let (got, body) = cell(&mut city, endpoint, role, side).await;
                let mark = if got == want { "" } else { "  <-- " };
                if got != want {
                    wrong += 1;
                }
                let _ = writeln!(
                    table,
                    "{:<16} {:<16} {:<6} {want:>4} {got:>4}{mark}{}",
                    format!("{endpoint:?}"),
                    role,
                    format!("{side:?}"),
                    if got == want {
                        String::new()
                    } else {
                        body.chars().take(200).collect()
                    }
                );
            }
        }
    }
    assert_eq!(wrong, 0, "{wrong} cells differ from the matrix:\n{table}");
}

#[tokio::test]
async fn a_crew_sees_and_moves_only_its_own_team_s_orders() {
    let mut city = City::start().await;
    let a = city.a.clone();
    let own = city.assigned_order(&a).await;
    // An order of another team in the crew's own tenant.
    let other_team = city.assigned_order(&a).await;
    city.db
        .client
        .execute(
            "UPDATE work_orders SET team = 'power-crew' WHERE id = $1",
            &[&other_team],
        )
        .await
        .unwrap();

    let r = city.get("/api/v1/work-orders", "crew").await;
    let ids: Vec<i64> = r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [own]);
    let r = city
        .get("/api/v1/work-orders?team=power-crew", "crew")
        .await;
    assert_eq!(r.status, 403);
    assert!(r.error().contains(CREW_TEAM), "{}", r.error());

    let start = r#"{"to": "in_progress"}"#;
    let r = city
        .post(
            &format!("/api/v1/work-orders/{other_team}/transition"),
            "crew",
            start,
        )
        .await;
    assert_eq!(
        r.status, 404,
        "another team's order does not exist for them"
    );
    let r = city
        .post(
            &format!("/api/v1/work-orders/{own}/transition"),
            "crew",
            r#"{"to": "in_progress", "assignee": "someone-else"}"#,
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(r.error().contains("may not reassign"), "{}", r.error());
    for (to, status) in [("in_progress", 200), ("done", 200), ("closed", 403)] {
        let r = city
            .post(
                &format!("/api/v1/work-orders/{own}/transition"),
                "crew",
                &format!(r#"{{"to": "{to}"}}"#),
            )
            .await;
        assert_eq!(r.status, status, "{to}: {}", r.body);
    }
}

#[tokio::test]
async fn a_regional_viewer_sees_each_of_its_tenants() {
    let city = City::start().await;
    let (a, b, c) = (city.a.clone(), city.b.clone(), city.c.clone());
    let r = city.get("/api/v1/me", "regional_viewer").await;
    let mut expected = vec![a.clone(), c.clone()];
    expected.sort();
    assert_eq!(r.json()["tenants"], serde_json::json!(expected));
    let r = city
        .get("/api/v1/devices?limit=1000", "regional_viewer")
        .await;
    let tenants: std::collections::BTreeSet<String> = r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["tenant"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tenants, [a, c.clone()].into_iter().collect());
    let r = city
        .get(&format!("/api/v1/devices?tenant={c}"), "regional_viewer")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 31);
    let r = city
        .get(&format!("/api/v1/devices?tenant={b}"), "regional_viewer")
        .await;
    assert_eq!((r.status, r.error()), (404, format!("no tenant `{b}`")));
}

#[tokio::test]
async fn reports_count_only_the_callers_tenants() {
    let mut city = City::start().await;
    let (a, b) = (city.a.clone(), city.b.clone());
    let recent = (chrono::Utc::now() - chrono::Duration::hours(3))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut changes = Vec::new();
    for (tenant, lamps) in [(&a, 2), (&b, 3)] {
        for i in 0..lamps {
            let device = city.device(tenant, &format!("L{i}"));
            // Due an hour after opening: breached by now.
            changes.push(tests::db::opened_with_order(
                device,
                "lamp_failure",
                &recent,
                CREW_TEAM,
                3600,
            ));
        }
    }
    city.store
        .detection
        .apply_outage_changes(&changes)
        .await
        .unwrap();

    let alarms = city.get("/api/v1/reports/alarms", "viewer").await.json();
    assert_eq!(alarms["per_kind"][0]["opened"], 2, "{alarms}");
    let teams = city.get("/api/v1/reports/teams", "viewer").await.json();
    assert_eq!(teams["teams"][0]["total"], 2, "{teams}");
    assert_eq!(teams["teams"][0]["open_overdue"], 2, "{teams}");
    let breaches = city
        .get("/api/v1/reports/sla-breaches?limit=1", "viewer")
        .await
        .json();
    assert_eq!(breaches["items"].as_array().unwrap().len(), 1);
    assert_eq!(breaches["items"][0]["tenant"], a.as_str());
    assert_eq!(breaches["truncated"], true, "two breaches, one asked for");
}

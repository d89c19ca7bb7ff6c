//! Open311 GeoReport v2: services, reports linked to known outages or opening inspections,
//! their status following the work order, the spec's errors, jurisdictions kept apart.
//!
//! The fixture's lamps L0..L29 stand on one street (lat 38.71, lon -9.14 + i * 0.0001,
//! about 8.7 m apart), the same in every tenant.

use serde_json::{json, Value};
use tests::api::{Auth, Reply, Req};
use tests::db::{opened_with_order, ts};

use super::{City, CREW_TEAM};

const FORM: &str = "application/x-www-form-urlencoded";

/// Where lamp `i` stands, a few metres off.
fn near_lamp(i: usize) -> (f64, f64) {
    (38.71002, -9.14 + i as f64 * 1e-4 + 0.00002)
}

async fn post_form(city: &City, body: &str, auth: &Auth) -> Reply {
    city.api
        .call(Req {
            method: "POST",
            path: "/open311/v2/requests.json",
            auth: auth.clone(),
            body: Some(body),
            content_type: FORM,
        })
        .await
}

fn token(city: &City, role: &str) -> String {
    match &city.tokens[role] {
        Auth::Token(t) => t.clone(),
        other => panic!("{other:?}"),
    }
}

/// A report of `service` near lamp `lamp` in `tenant`, with the viewer's api_key.
async fn report(city: &City, tenant: &str, service: &str, lamp: usize) -> Reply {
    let (lat, long) = near_lamp(lamp);
    let body = format!(
        "jurisdiction_id={tenant}&service_code={service}&lat={lat}&long={long}\
         &description=dark+since+Monday&email=someone%40example.org&api_key={}",
        token(city, "viewer")
    );
    post_form(city, &body, &Auth::None).await
}

fn created_id(r: &Reply) -> i64 {
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()[0]["service_request_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn get_public(city: &City, path: &str) -> Reply {
    city.api.call(Req::get(path, &Auth::None)).await
}

/// The request as the public reads it.
async fn public_request(city: &City, tenant: &str, id: i64) -> Value {
    let r = get_public(
        city,
        &format!("/open311/v2/requests/{id}.json?jurisdiction_id={tenant}"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let list = r.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    list[0].clone()
}

#[tokio::test]
async fn services_are_listed_publicly() {
    let city = City::start().await;
    let r = get_public(&city, "/open311/v2/services.json").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let services = r.json();
    let lights = services
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service_code"] == "streetlight_out")
        .expect("street light out");
    assert_eq!(lights["service_name"], json!("Street light out"));
    assert_eq!(lights["metadata"], json!(false));
    assert_eq!(lights["type"], json!("realtime"));
    assert_eq!(lights["group"], json!("Street lighting"));
    let r = get_public(
        &city,
        &format!("/open311/v2/services.json?jurisdiction_id={}", city.a),
    )
    .await;
    assert_eq!(r.json(), services, "the same in every jurisdiction");
    let r = get_public(&city, "/open311/v2/services/streetlight_out.json").await;
    assert_eq!(
        r.json(),
        json!({"service_code": "streetlight_out", "attributes": []})
    );
    for (path, status) in [
        ("/open311/v2/services/rainbow.json", 404),
        ("/open311/v2/services/streetlight_out.xml", 404),
        ("/open311/v2/services.json?jurisdiction_id=atlantis", 404),
    ] {
        let r = get_public(&city, path).await;
        assert_eq!(r.status, status, "{path}");
        assert_eq!(r.json()[0]["code"], json!(status), "{path}: {}", r.body);
    }
}

#[tokio::test]
async fn a_report_near_a_dark_lamp_joins_its_outage_and_work_order() {
    let mut city = City::start().await;
    let a = city.a.clone();
    let lamp = city.device(&a, "L3");
    city.store
        .detection
        .apply_outage_changes(&[opened_with_order(
            lamp,
            "lamp_failure",
            "2026-03-01T00:00:00Z",
            CREW_TEAM,
            3600,
        )])
        .await
        .unwrap();
    let (outage, order): (i64, i64) = {
        let row = city
            .db
            .client
            .query_one(
                "SELECT o.id, w.id FROM outages o JOIN work_orders w ON w.outage_id = o.id
                 WHERE o.device_id = $1",
                &[&lamp],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    let r = report(&city, &a, "streetlight_out", 3).await;
    let id = created_id(&r);
    assert_eq!(
        r.json()[0]["service_notice"],
        json!("The problem was already known; a repair is under way.")
    );
    let row = city
        .db
        .client
        .query_one(
            "SELECT outage_id, work_order_id, device_id, description FROM service_requests WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<i64>>(0), Some(outage));
    assert_eq!(row.get::<_, i64>(1), order);
    assert_eq!(row.get::<_, i32>(2), lamp);
    assert_eq!(
        row.get::<_, Option<String>>(3).as_deref(),
        Some("dark since Monday")
    );
    assert_eq!(
        city.db.count("SELECT count(*) FROM work_orders").await,
        1,
        "no second order"
    );
    let public = public_request(&city, &a, id).await;
    assert_eq!(public["service_request_id"], json!(id.to_string()));
    assert_eq!(public["status"], json!("open"));
    assert_eq!(
        public["status_notes"],
        json!("Received; the repair is being planned.")
    );
    assert_eq!(public["service_code"], json!("streetlight_out"));
    assert_eq!(public["agency_responsible"], json!(CREW_TEAM));
    assert!(public.get("email").is_none(), "no personal data: {public}");
    assert_eq!(
        city.db
            .count(&format!(
                "SELECT count(*) FROM audit_log WHERE action = 'service_request.create'
                 AND target = 'service_request/{id}' AND actor = 'viewer (token tests)'"
            ))
            .await,
        1
    );
}

#[tokio::test]
async fn a_report_with_nothing_wrong_opens_an_inspection_whose_status_it_follows() {
    let mut city = City::start().await;
    let a = city.a.clone();
    // With the token in the Authorization header this time.
    let (lat, long) = near_lamp(10);
    let body = format!(
        "jurisdiction_id={a}&service_code=light_on_during_day&lat={lat}&long={long}&address_string=Rua+Augusta+10"
    );
    let first = created_id(&post_form(&city, &body, &city.tokens["operator"]).await);
    let order: (i64, String, String, String, i32) = {
        let r = city
            .db
            .client
            .query_one(
                "SELECT w.id, w.kind, w.state, w.team, w.device_id FROM service_requests s
                 JOIN work_orders w ON w.id = s.work_order_id WHERE s.id = $1",
                &[&first],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
    };
    assert_eq!(
        (
            order.1.as_str(),
            order.2.as_str(),
            order.3.as_str(),
            order.4
        ),
        ("inspection", "new", "lighting-crew", city.device(&a, "L10"))
    );
    // A second citizen at the same place joins the same inspection.
    let again = report(&city, &a, "light_on_during_day", 10).await;
    let second = created_id(&again);
    assert_eq!(
        again.json()[0]["service_notice"],
        json!("The place is already being inspected.")
    );
    let orders: i64 = city
        .db
        .count(&format!(
            "SELECT count(DISTINCT work_order_id) FROM service_requests WHERE id IN ({first}, {second})"
        ))
        .await;
    assert_eq!(orders, 1);
    let public = public_request(&city, &a, first).await;
    assert_eq!(public["address"], json!("Rua Augusta 10"));
    assert_eq!(public["status"], json!("open"));
    // Not published: nowhere to follow the works.
    assert_eq!(public["service_notice"], Value::Null);
    // Published: the answers say where residents follow the repair.
    city.api.state.public_pages().set_tenants(vec![a.clone()]);
    let follow = format!(
        "Follow the repair, and the city's other works, on /public/{a}/ (open data: /public/{a}/works.geojson)."
    );
    assert_eq!(
        public_request(&city, &a, first).await["service_notice"],
        json!(follow)
    );
    let third = report(&city, &a, "light_on_during_day", 10).await;
    assert_eq!(
        third.json()[0]["service_notice"],
        json!(format!("The place is already being inspected. {follow}"))
    );
    let third = created_id(&third);

    // The crew works; the hub verifies the repair from telemetry.
    let steps = [
        (
            "assigned",
            "dispatch",
            Some("ana"),
            "open",
            "A crew has been assigned.",
        ),
        (
            "in_progress",
            "ana",
            None,
            "open",
            "A crew is working on it.",
        ),
        (
            "done",
            "ana",
            None,
            "open",
            "The crew reports it repaired; waiting for the equipment to confirm it.",
        ),
        (
            "verified",
            "rules",
            None,
            "closed",
            "Repaired, and confirmed by the equipment.",
        ),
    ];
    for (i, (to, actor, assignee, status, notes)) in steps.into_iter().enumerate() {
        let at = ts(&format!("2030-01-01T0{i}:00:00Z"));
        city.store
            .detection
            .transition_work_order(order.0, tests::db::state(to), actor, None, at, assignee)
            .await
            .unwrap();
        for id in [first, second, third] {
            let public = public_request(&city, &a, id).await;
            assert_eq!(public["status"], json!(status), "after {to}");
            // Followed while open; nothing to follow once closed.
            assert_eq!(
                public["service_notice"].is_string(),
                status == "open",
                "after {to}: {public}"
            );
            assert_eq!(public["expected_datetime"].is_string(), status == "open");
            assert_eq!(public["status_notes"], json!(notes), "after {to}");
            assert_eq!(
                public["updated_datetime"],
                json!(format!("2030-01-01T0{i}:00:00Z")),
                "after {to}"
            );
        }
    }
    let list = |status: &'static str| {
        let a = a.clone();
        let city = &city;
        async move {
            let r = get_public(
                city,
                &format!("/open311/v2/requests.json?jurisdiction_id={a}&status={status}"),
            )
            .await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.json()
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["service_request_id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list("closed").await,
        [third.to_string(), second.to_string(), first.to_string()]
    );
    assert!(list("open").await.is_empty());
}

#[tokio::test]
async fn bad_input_answers_in_the_specs_format() {
    let city = City::start().await;
    let a = city.a.clone();
    let key = token(&city, "viewer");
    let (lat, long) = near_lamp(4);
    let ok = format!(
        "jurisdiction_id={a}&service_code=streetlight_out&lat={lat}&long={long}&api_key={key}"
    );
    let without = |field: &str| {
        ok.split('&')
            .filter(|kv| !kv.starts_with(&format!("{field}=")))
            .collect::<Vec<_>>()
            .join("&")
    };
    let cases: Vec<(String, u16, &str)> = vec![
        (without("lat"), 400, "lat is required"),
        (without("long"), 400, "long is required"),
        (
            ok.replace(&format!("lat={lat}"), "lat=north"),
            400,
            "lat must be a number",
        ),
        (
            ok.replace(&format!("long={long}"), "long=200"),
            400,
            "long must be a number",
        ),
        (without("service_code"), 400, "service_code is required"),
        (
            format!("{ok}&media_url=javascript%3Aalert(document.cookie)"),
            400,
            "media_url must be a public http:// or https:// address",
        ),
        (
            format!(
                "{ok}&media_url=https%3A%2F%2Fexample.org%2F{}",
                "a".repeat(2000)
            ),
            400,
            "media_url must be a public http:// or https:// address",
        ),
        (
            ok.replace("streetlight_out", "rainbow"),
            404,
            "there is no service `rainbow`",
        ),
        (
            ok.replace(&format!("jurisdiction_id={a}"), "jurisdiction_id=atlantis"),
            404,
            "no jurisdiction `atlantis`",
        ),
        (
            without("jurisdiction_id"),
            400,
            "jurisdiction_id is required",
        ),
        (
            ok.replace(&format!("lat={lat}&long={long}"), "lat=38.72&long=-9.14"),
            400,
            "there is no street light of ours within 50 m",
        ),
        (
            ok.replace("streetlight_out", "water_leak"),
            400,
            "there is no meter of ours within 50 m",
        ),
        (without("api_key"), 403, "api_key is required"),
        (ok.replace(&key, "chk_forged"), 403, "not valid"),
    ];
    for (body, status, says) in cases {
        let r = post_form(&city, &body, &Auth::None).await;
        assert_eq!(r.status, status, "{body}: {}", r.body);
        let errors = r.json();
        assert_eq!(errors[0]["code"], json!(status), "{body}");
        let description = errors[0]["description"].as_str().unwrap();
        assert!(description.contains(says), "{body}: {description}");
    }
    // JSON is not what the spec posts.
    let r = city
        .api
        .call(Req::post("/open311/v2/requests.json", &Auth::None, "{}"))
        .await;
    assert_eq!(r.status, 400);
    assert!(r.json()[0]["description"]
        .as_str()
        .unwrap()
        .contains("form-encoded"));
    assert_eq!(
        city.db.count("SELECT count(*) FROM service_requests").await,
        0
    );
    // Reading: a jurisdiction is needed, and filters are checked.
    for (path, status) in [
        ("/open311/v2/requests.json".to_owned(), 400),
        (
            format!("/open311/v2/requests.json?jurisdiction_id={a}&status=pending"),
            400,
        ),
        (
            format!("/open311/v2/requests.json?jurisdiction_id={a}&start_date=yesterday"),
            400,
        ),
        (
            format!("/open311/v2/requests.json?jurisdiction_id={a}&service_request_id=x"),
            400,
        ),
        (
            format!("/open311/v2/requests/99.json?jurisdiction_id={a}"),
            404,
        ),
    ] {
        let r = get_public(&city, &path).await;
        assert_eq!(r.status, status, "{path}: {}", r.body);
        assert_eq!(r.json()[0]["code"], json!(status));
    }
}

#[tokio::test]
async fn jurisdictions_are_kept_apart() {
    let city = City::start().await;
    let (a, b) = (city.a.clone(), city.b.clone());
    // The viewer works for a only.
    let r = report(&city, &b, "streetlight_out", 2).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.json()[0]["description"]
        .as_str()
        .unwrap()
        .contains(&format!("may not post requests in jurisdiction `{b}`")));
    let id = created_id(&report(&city, &a, "streetlight_out", 2).await);
    let device: i32 = city
        .db
        .client
        .query_one(
            "SELECT device_id FROM service_requests WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        device,
        city.device(&a, "L2"),
        "a's lamp, not b's at the same place"
    );
    let r = get_public(
        &city,
        &format!("/open311/v2/requests.json?jurisdiction_id={b}"),
    )
    .await;
    assert_eq!(r.json(), json!([]));
    let r = get_public(
        &city,
        &format!("/open311/v2/requests/{id}.json?jurisdiction_id={b}"),
    )
    .await;
    assert_eq!(r.status, 404);
    let r = get_public(
        &city,
        &format!("/open311/v2/requests.json?jurisdiction_id={a}"),
    )
    .await;
    assert_eq!(r.json()[0]["service_request_id"], json!(id.to_string()));
}

#[tokio::test]
async fn a_dark_lamp_whose_cabinet_lost_supply_joins_the_cabinets_outage() {
    let mut city = City::start().await;
    let a = city.a.clone();
    let cabinet = city.device(&a, "C0");
    city.store
        .detection
        .apply_outage_changes(&[opened_with_order(
            cabinet,
            "cabinet_supply_loss",
            "2026-03-01T00:00:00Z",
            "power-crew",
            3600,
        )])
        .await
        .unwrap();
    let id = created_id(&report(&city, &a, "streetlight_out", 5).await);
    let row = city
        .db
        .client
        .query_one(
            "SELECT o.device_id, w.team, s.device_id FROM service_requests s
             JOIN outages o ON o.id = s.outage_id JOIN work_orders w ON w.id = s.work_order_id
             WHERE s.id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), cabinet, "the cabinet's outage");
    assert_eq!(row.get::<_, String>(1), "power-crew");
    assert_eq!(
        row.get::<_, i32>(2),
        city.device(&a, "L5"),
        "the lamp reported"
    );
    assert_eq!(
        public_request(&city, &a, id).await["agency_responsible"],
        json!("power-crew")
    );
}

#[tokio::test]
async fn reports_are_rate_limited_per_api_key_and_per_address() {
    let city = City::start_configured(|c| {
        c.open311 = api::standards::open311::Open311Limits {
            per_key: 5,
            per_address: 8,
            // An hour: nothing refills while the test runs.
            window: std::time::Duration::from_secs(3600),
        };
    })
    .await;
    let a = city.a.clone();
    let post = |from: u8, role: &'static str, lamp: usize| {
        let (lat, long) = near_lamp(lamp);
        let body = format!(
            "jurisdiction_id={a}&service_code=streetlight_out&lat={lat}&long={long}&api_key={}",
            token(&city, role)
        );
        let city = &city;
        async move {
            city.api
                .call_from(
                    std::net::Ipv4Addr::new(127, 0, 0, from),
                    Req {
                        method: "POST",
                        path: "/open311/v2/requests.json",
                        auth: Auth::None,
                        body: Some(&body),
                        content_type: FORM,
                    },
                )
                .await
        }
    };
    // One key: five reports, then it waits, from any address.
    for lamp in 0..5 {
        assert_eq!(post(10, "viewer", lamp).await.status, 201);
    }
    for from in [10, 11] {
        let r = post(from, "viewer", 5).await;
        assert_eq!(r.status, 429, "{}", r.body);
        assert_eq!(r.json()[0]["code"], 429);
        assert!(r.json()[0]["description"]
            .as_str()
            .unwrap()
            .contains("too many requests"));
        let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=720).contains(&wait), "{wait}");
    }
    // One address: eight reports over any keys, then it waits.
    for (n, role) in ["operator", "admin", "dispatcher"].iter().enumerate() {
        assert_eq!(post(20, role, 10 + n).await.status, 201);
    }
    for n in 0..4 {
        assert_eq!(post(20, "regional_viewer", 20 + n).await.status, 201);
    }
    assert_eq!(post(20, "operator", 25).await.status, 201);
    let r = post(20, "operator", 26).await;
    assert_eq!(r.status, 429, "the address's eighth was its last");
    assert_eq!(
        post(21, "operator", 26).await.status,
        201,
        "another address"
    );
    assert_eq!(
        city.db.count("SELECT count(*) FROM service_requests").await,
        5 + 8 + 1
    );
}

#[tokio::test]
async fn a_media_url_is_kept_as_a_browser_opens_it() {
    let city = City::start().await;
    let a = city.a.clone();
    let (lat, long) = near_lamp(3);
    // `http:example.org/lamp.jpg` as sent would be a link into whatever page shows it; a
    // look-alike host hides as a known name; a right-to-left override turns the end
    // around.
    for (sent, kept) in [
        (
            "http%3Aexample.org%2Flamp.jpg",
            "http://example.org/lamp.jpg",
        ),
        (
            "https%3A%2F%2Fex%D0%B0mple.org%2Fp%E2%80%AEgpj.exe",
            "https://xn--exmple-4nf.org/p%E2%80%AEgpj.exe",
        ),
    ] {
        let body = format!(
            "jurisdiction_id={a}&service_code=streetlight_out&lat={lat}&long={long}&media_url={sent}&api_key={}",
            token(&city, "viewer")
        );
        let id = created_id(&post_form(&city, &body, &Auth::None).await);
        assert_eq!(public_request(&city, &a, id).await["media_url"], kept);
    }
}

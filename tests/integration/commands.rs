//! Commands through the API: targets resolved within one tenant, bulk commands confirmed
//! by count, audited; and through `cityhub serve`: the dispatcher publishes them, holds
//! them for offline devices, expires them, survives a broker restart, keeps its rate, and
//! devices' answers (simulated lamps, or a test client playing a controller) land on them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use model::{Kind, Timestamp};
use serde_json::{json, Value};
use simulators::city::{City, CitySpec};
use simulators::clock::SimClock;
use simulators::fleet::run::{FleetRun, FleetStats};
use simulators::fleet::{Fleet, FleetSpec};
use tests::api::{add_token, add_user, Auth, Req};
use tests::broker::{fleet_credentials, tester, TESTER_PASSWORD};
use tests::{eventually, unique, HubProcess, Publisher, Recorder, TestBroker, TestDb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::api::City as ApiCity;

async fn send(city: &ApiCity, role: &str, body: Value) -> tests::api::Reply {
    let body = body.to_string();
    city.api
        .call(Req::post("/api/v1/commands", &city.tokens[role], &body))
        .await
}

#[tokio::test]
async fn a_bulk_command_needs_its_device_count_confirmed_and_is_audited() {
    let city = ApiCity::start().await;
    let cmd = json!({"tenant": city.a, "target": {"district": "centre"}, "action": "set_light", "dim": 50});
    let r = send(&city, "operator", cmd.clone()).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.error().contains("reaches 30 devices"), "{}", r.error());
    assert!(r.error().contains("\"confirm\": 30"), "{}", r.error());
    let mut wrong = cmd.clone();
    wrong["confirm"] = json!(29);
    let r = send(&city, "operator", wrong).await;
    assert_eq!(r.status, 409);
    assert!(r.error().contains("not the 29 confirmed"), "{}", r.error());
    assert_eq!(
        city.db.count("SELECT count(*) FROM command_batches").await,
        0,
        "a refused command records nothing"
    );

    let mut confirmed = cmd;
    confirmed["confirm"] = json!(30);
    let r = send(&city, "operator", confirmed).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let batch = r.json();
    assert_eq!(batch["devices"], 30);
    assert_eq!(batch["statuses"]["pending"], 30);
    assert_eq!(batch["issued_by"], "operator (token tests)");
    assert_eq!(batch["body"]["dim"], 50);
    let id = batch["id"].as_i64().unwrap();
    assert_eq!(
        city.db
            .count(&format!(
                "SELECT count(*) FROM commands WHERE batch_id = {id} AND status = 'pending' AND action = 'set_light'"
            ))
            .await,
        30
    );
    let audit = city
        .db
        .client
        .query_one(
            "SELECT actor, detail FROM audit_log WHERE action = 'command.issue' AND target = $1",
            &[&format!("command_batch/{id}")],
        )
        .await
        .unwrap();
    assert_eq!(audit.get::<_, String>(0), "operator (token tests)");
    let detail: Value = audit.get(1);
    assert_eq!(detail["devices"], 30);
    assert_eq!(detail["target"], json!({"district": "centre"}));

    // One device needs no confirmation.
    let r = send(
        &city,
        "admin",
        json!({"target": {"device": "L3"}, "action": "reboot", "expires_in_s": 60}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["devices"], 1);
}

/// The inventory ids a preview (or a batch's device list) names.
async fn reached(city: &ApiCity, target: Value, action: &str) -> (u16, Value) {
    let body = json!({"tenant": city.a, "target": target, "action": action}).to_string();
    let r = city
        .api
        .call(Req::post(
            "/api/v1/commands/preview",
            &city.tokens["operator"],
            &body,
        ))
        .await;
    let v = if r.status == 200 {
        r.json()
    } else {
        json!(r.error())
    };
    (r.status, v)
}

#[tokio::test]
async fn targets_reach_exactly_their_devices_of_one_tenant() {
    let city = ApiCity::start().await;
    // Lamps L<i> stand at lon -9.14 + i * 1e-4, lat 38.71: this ring holds L0 to L4.
    let ring = json!([
        [-9.14005, 38.709],
        [-9.13955, 38.709],
        [-9.13955, 38.711],
        [-9.14005, 38.711]
    ]);
    let (status, p) = reached(&city, json!({"polygon": ring}), "set_light").await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["devices"], 5);
    let mut sample: Vec<String> = serde_json::from_value(p["sample"].clone()).unwrap();
    sample.sort();
    assert_eq!(sample, ["L0", "L1", "L2", "L3", "L4"]);
    assert_eq!(p["by_kind"], json!({"light": 5}));
    assert_eq!(p["confirm_required"], true);

    let (_, p) = reached(&city, json!({"cabinet": "C0"}), "set_light").await;
    assert_eq!(p["by_kind"], json!({"light": 30}));
    let (_, p) = reached(&city, json!({"cabinet": "C0"}), "reboot").await;
    assert_eq!(
        p["by_kind"],
        json!({"cabinet": 1, "light": 30}),
        "a reboot reaches the cabinet too"
    );
    let (_, p) = reached(&city, json!({"devices": ["L7", "L2"]}), "set_light").await;
    assert_eq!(p["devices"], 2);
    assert!(
        p["sample"] == json!(["L2", "L7"]) || p["sample"] == json!(["L7", "L2"]),
        "{p}"
    );
    let (status, p) = reached(&city, json!({"devices": ["C0"]}), "set_light").await;
    assert_eq!(
        (status, p.as_str().unwrap()),
        (400, "C0 is a cabinet; set_light goes to lamps only")
    );
    for (target, why) in [
        (json!({"district": "harbour"}), "no district `harbour`"),
        (json!({"cabinet": "C9"}), "no cabinet `C9`"),
        (json!({"devices": ["L1", "L99"]}), "no device `L99`"),
    ] {
        let (status, p) = reached(&city, target, "set_light").await;
        assert_eq!((status, p.as_str().unwrap()), (404, why));
    }

    // The same inventory ids exist in tenant b: a's command reaches a's lamp only.
    let r = send(
        &city,
        "operator",
        json!({"target": {"device": "L5"}, "action": "set_light", "on": false}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let batch = r.json()["id"].as_i64().unwrap();
    let device: i32 = city
        .db
        .client
        .query_one(
            "SELECT device_id FROM commands WHERE batch_id = $1",
            &[&batch],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(device, city.device(&city.a, "L5"));
    assert_ne!(device, city.device(&city.b, "L5"));
    // Naming tenant b is answered as an unknown tenant; a's batches are not b's to see.
    let r = send(
        &city,
        "operator",
        json!({"tenant": city.b, "target": {"device": "L5"}, "action": "reboot"}),
    )
    .await;
    assert_eq!(
        (r.status, r.error()),
        (404, format!("no tenant `{}`", city.b))
    );
    let mut store = city.db.store().await;
    add_user(&mut store.admin, "b-admin", "admin", &[&city.b], None).await;
    let b_admin = Auth::Token(add_token(&mut store.admin, "b-admin", "t").await);
    let r = city
        .api
        .call(Req::get(&format!("/api/v1/commands/{batch}"), &b_admin))
        .await;
    assert_eq!(
        (r.status, r.error()),
        (404, format!("no command batch {batch}"))
    );
    let r = city.api.call(Req::get("/api/v1/commands", &b_admin)).await;
    assert_eq!(r.json()["items"], json!([]));
}

#[tokio::test]
async fn who_may_send_and_read_commands_and_what_is_refused() {
    let city = ApiCity::start().await;
    let cmd = json!({"target": {"device": "L1"}, "action": "set_light"});
    for role in ["dispatcher", "crew", "viewer", "regional_viewer"] {
        let r = send(&city, role, cmd.clone()).await;
        assert_eq!(r.status, 403, "{role}");
        assert!(
            r.error().ends_with("may not send commands"),
            "{}",
            r.error()
        );
    }
    let r = send(&city, "operator", cmd).await;
    assert_eq!(r.status, 201);
    let id = r.json()["id"].as_i64().unwrap();
    for role in ["viewer", "crew", "dispatcher"] {
        let r = city
            .api
            .call(Req::get(
                &format!("/api/v1/commands/{id}"),
                &city.tokens[role],
            ))
            .await;
        assert_eq!(r.status, 200, "{role}: {}", r.body);
        assert_eq!(r.json()["statuses"]["pending"], 1);
    }
    // The regional viewer sees two tenants, so a command must name one.
    let r = send(
        &city,
        "admin",
        json!({"target": {"device": "L1"}, "action": "set_light", "dim": 101}),
    )
    .await;
    assert_eq!(
        (r.status, r.error()),
        (400, "dim is a percentage from 0 to 100, not 101".into())
    );
    for (body, why) in [
        (
            json!({"target": {"device": "L1"}, "action": "reboot", "dim": 5}),
            "takes no `on` or `dim`",
        ),
        (
            json!({"target": {"device": "L1"}, "action": "explode"}),
            "not one of set_light, resume_schedule, reboot",
        ),
        (
            json!({"target": {"device": "L1"}, "action": "set_light", "dim": 50.5}),
            "dim: invalid type: the number `50.5`, expected a whole number",
        ),
        (
            json!({"target": {"device": "L1"}, "action": "reboot", "expires_in_s": 2}),
            "10 seconds to 24 hours",
        ),
        (
            json!({"target": {"device": "L1", "cabinet": "C0"}, "action": "reboot"}),
            "target",
        ),
        (
            json!({"target": {"polygon": [[0, 0], [1, 1]]}, "action": "reboot"}),
            "ring of 3 to 1000",
        ),
        (
            json!({"target": {"device": "L1"}, "action": "set_light", "on": null}),
            "on: invalid type: null, expected a boolean",
        ),
        (
            json!({"target": {"device": "L1"}, "action": "set_light", "dim": null}),
            "dim: invalid type: null",
        ),
        (
            json!({"target": {"device": "L1"}, "action": "reboot", "confirm": null}),
            "confirm: invalid type: null",
        ),
        (
            json!({"tenant": null, "target": {"device": "L1"}, "action": "reboot"}),
            "tenant: invalid type: null",
        ),
        (
            json!({"target": null, "action": "reboot"}),
            "the body does not have the expected fields: target: expected a string or an object",
        ),
        (
            json!({"target": 7, "action": "reboot"}),
            "target: expected a string or an object",
        ),
        (
            json!({"target": {"device": "C0"}, "action": "resume_schedule"}),
            "C0 is a cabinet; resume_schedule goes to lamps only",
        ),
    ] {
        let r = send(&city, "admin", body.clone()).await;
        assert_eq!(r.status, 400, "{body}");
        assert!(r.error().contains(why), "{body}: {}", r.error());
    }
    // A preview names the action as asked.
    let r = city
        .api
        .call(Req::post(
            "/api/v1/commands/preview",
            &city.tokens["admin"],
            &json!({"target": {"device": "L1"}, "action": "resume_schedule"}).to_string(),
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["action"], "resume_schedule");
}

#[tokio::test]
async fn batches_and_their_devices_come_a_page_at_a_time() {
    let city = ApiCity::start().await;
    for dim in [10, 20, 30] {
        let r = send(
            &city,
            "operator",
            json!({"target": {"cabinet": "C0"}, "action": "set_light", "dim": dim, "confirm": 30}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let auth = &city.tokens["viewer"];
    let page = city
        .api
        .call(Req::get("/api/v1/commands?limit=2", auth))
        .await
        .json();
    let dims: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["body"]["dim"].clone())
        .collect();
    assert_eq!(dims, [json!(30), json!(20)], "newest first");
    let next = page["next_cursor"].as_str().unwrap();
    let last = city
        .api
        .call(Req::get(
            &format!("/api/v1/commands?limit=2&cursor={next}"),
            auth,
        ))
        .await
        .json();
    assert_eq!(last["items"][0]["body"]["dim"], 10);
    assert!(last["next_cursor"].is_null());

    // The batches that reached one device: the cabinet's three and one of its own, not
    // another lamp's; another tenant's devices are not the caller's to ask for.
    let one = |lamp: &str, dim: i64| json!({"target": {"devices": [lamp]}, "action": "set_light", "dim": dim});
    assert_eq!(send(&city, "operator", one("L5", 40)).await.status, 201);
    assert_eq!(send(&city, "operator", one("L6", 50)).await.status, 201);
    let dims_for = |query: String| {
        let city = &city;
        async move {
            let r = city.api.call(Req::get(&query, auth)).await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.json()["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["body"]["dim"].as_i64().unwrap())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        dims_for("/api/v1/commands?device=L5".into()).await,
        [40, 30, 20, 10]
    );
    assert_eq!(
        dims_for("/api/v1/commands?device=L7".into()).await,
        [30, 20, 10]
    );
    assert_eq!(
        dims_for("/api/v1/commands?device=C0".into()).await,
        Vec::<i64>::new(),
        "a set_light reaches a cabinet's lamps, not the cabinet"
    );
    assert_eq!(
        dims_for("/api/v1/commands?device=L5&limit=1".into()).await,
        [40]
    );
    let long = "L".repeat(300);
    let r = city
        .api
        .call(Req::get(&format!("/api/v1/commands?device={long}"), auth))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = city
        .api
        .call(Req::get(
            &format!("/api/v1/commands?device=L5&tenant={}", city.b),
            auth,
        ))
        .await;
    assert_eq!(r.status, 404, "{}", r.body);

    let id = page["items"][0]["id"].as_i64().unwrap();
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/api/v1/commands/{id}/devices?limit=12{cursor}");
        let p = city.api.call(Req::get(&path, auth)).await.json();
        for c in p["items"].as_array().unwrap() {
            assert_eq!(c["status"], "pending");
            seen.push(c["device"].as_str().unwrap().to_owned());
        }
        match p["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 30);
    let r = city
        .api
        .call(Req::get(
            &format!("/api/v1/commands/{id}/devices?status=lost"),
            auth,
        ))
        .await;
    assert_eq!(r.status, 400);
}

// ---- Through `cityhub serve` ---------------------------------------------------------

/// A minimal HTTP/1.0 request to the hub process.
async fn http(
    port: u16,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let body = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body.as_bytes()).await.unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let json = raw
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

/// A hub process with an operator token, on a database holding `devices`.
struct Hub {
    db: TestDb,
    broker: TestBroker,
    hub: HubProcess,
    token: String,
    tenant: String,
}

impl Hub {
    async fn start(tenant: &str, devices: &[model::Device], settings: &[(&str, &str)]) -> Hub {
        let db = TestDb::new().await;
        db.import(devices).await;
        let mut store = db.store().await;
        add_user(&mut store.admin, "olga", "operator", &[tenant], None).await;
        let token = add_token(&mut store.admin, "olga", "tests").await;
        let broker = TestBroker::start();
        let mut hub = HubProcess::spawn_with(&db.url, broker.port(), &unique("hub-"), settings);
        hub.wait_connected().await;
        eventually(
            Duration::from_secs(20),
            "the command dispatcher's session",
            || {
                let up = hub
                    .metric("cityhub_commands_mqtt_connects_total")
                    .unwrap_or(0.0)
                    >= 1.0;
                async move { up.then_some(()) }
            },
        )
        .await;
        Hub {
            db,
            broker,
            hub,
            token,
            tenant: tenant.to_owned(),
        }
    }

    async fn command(&self, body: Value) -> i64 {
        let (status, reply) = http(
            self.hub.http_port,
            "POST",
            "/api/v1/commands",
            &self.token,
            Some(&body),
        )
        .await;
        assert_eq!(status, 201, "{reply}");
        reply["id"].as_i64().unwrap()
    }

    async fn status_of(&self, batch: i64, device: &str) -> (String, Option<String>) {
        let r = self
            .db
            .client
            .query_one(
                "SELECT c.status, c.detail FROM commands c JOIN devices d ON d.id = c.device_id
                 WHERE c.batch_id = $1 AND d.ext_id = $2",
                &[&batch, &device],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    }

    async fn wait_status(&self, batch: i64, device: &str, want: &str) {
        eventually(
            Duration::from_secs(20),
            &format!("{device}'s command {want}"),
            || async { (self.status_of(batch, device).await.0 == want).then_some(()) },
        )
        .await;
    }

    /// A controller's status message (retained, as devices send it).
    async fn say(&self, devices: &mut Publisher, device: &str, state: &str) {
        let t = &self.tenant;
        devices
            .client
            .publish(
                format!("city/{t}/light/{device}/status"),
                rumqttc::QoS::AtLeastOnce,
                true,
                format!(r#"{{"state":"{state}","ts":{}}}"#, tests::now_ms()),
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_command_reaches_a_simulated_lamp_which_acks_and_shows_it() {
    let tenant = unique("sim");
    let city = Arc::new(City::generate(&CitySpec {
        seed: 5,
        tenant: tenant.clone(),
        lamps: 50,
        meters: 2,
        vehicles: 1,
        ..CitySpec::default()
    }));
    let hub = Hub::start(&tenant, &city.devices(), &[]).await;
    let start = Timestamp::now();
    let spec = FleetSpec {
        seed: 5,
        lamp_interval_s: 3600,
        cabinet_interval_s: 3600,
        meter_interval_s: 3600,
        vehicle_interval_s: 3600,
    };
    let fleet = Fleet::new(city.clone(), spec, start);
    let stats = Arc::new(FleetStats::default());
    let stop = CancellationToken::new();
    let run = FleetRun {
        host: "127.0.0.1".into(),
        port: hub.broker.port(),
        credentials: fleet_credentials(),
        devices_per_connection: 100,
        own_connection_share: 0.0,
        clock: SimClock::starting_at(start, 1.0),
        client_prefix: unique("sim-"),
    };
    let groups = simulators::fleet::run::connection_groups(&fleet, &run).len();
    let task = tokio::spawn(simulators::fleet::run::run(
        fleet,
        run,
        stats.clone(),
        stop.clone(),
    ));
    eventually(Duration::from_secs(10), "the fleet's connections", || {
        let up = stats.connected.load(std::sync::atomic::Ordering::Relaxed);
        async move { (up == groups).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await; // SUBACK follows CONNACK

    let lamp = city.lamps[3].id.clone();
    let batch = hub
        .command(json!({"target": {"device": lamp}, "action": "set_light", "on": true, "dim": 37}))
        .await;
    hub.wait_status(batch, &lamp, "acked").await;
    // The lamp's telemetry after the command shows the new level.
    let dim: f64 = eventually(Duration::from_secs(10), "the lamp's new state", || async {
        hub.db
            .client
            .query_opt(
                "SELECT (l.telemetry->>'dim')::float8 FROM device_latest l JOIN devices d ON d.id = l.device_id
                 WHERE d.ext_id = $1 AND (l.telemetry->>'dim')::float8 = 37",
                &[&lamp],
            )
            .await
            .unwrap()
            .map(|r| r.get(0))
    })
    .await;
    assert_eq!(dim, 37.0);
    let (status, reply) = http(
        hub.hub.http_port,
        "GET",
        &format!("/api/v1/commands/{batch}/devices"),
        &hub.token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let c = &reply["items"][0];
    assert_eq!(
        (c["status"].as_str(), c["attempts"].as_i64()),
        (Some("acked"), Some(1))
    );
    assert!(c["sent_at"].is_string() && c["acked_at"].is_string(), "{c}");
    eventually(Duration::from_secs(5), "the metrics", || async {
        let sent = hub.hub.metric("cityhub_commands_sent_total").unwrap_or(0.0);
        let acked = hub
            .hub
            .metric("cityhub_commands_acked_total")
            .unwrap_or(0.0);
        (sent >= 1.0 && acked >= 1.0).then_some(())
    })
    .await;

    // A schedule for that lamp: pushed, acknowledged, and the lamp then shows what the
    // profile says for the time of its reading (whatever the time of day the test runs).
    let profile = json!({"dim": 55, "steps": [{"from": "02:00", "to": "04:00", "dim": 0}]});
    let body = json!({"target": {"devices": [lamp]}, "profile": profile});
    let (status, change) = http(
        hub.hub.http_port,
        "POST",
        "/api/v1/schedules",
        &hub.token,
        Some(&body),
    )
    .await;
    assert_eq!(status, 201, "{change}");
    assert_eq!(change["devices"], 1);
    let pushed = change["batches"][0].as_i64().unwrap();
    hub.wait_status(pushed, &lamp, "acked").await;
    let (ts, on, dim): (chrono::DateTime<chrono::Utc>, bool, f64) =
        eventually(Duration::from_secs(10), "the lamp's reading under its profile", || async {
            hub.db
                .client
                .query_opt(
                    "SELECT l.telemetry_ts, (l.telemetry->>'on')::bool, (l.telemetry->>'dim')::float8
                     FROM device_latest l JOIN devices d ON d.id = l.device_id
                     WHERE d.ext_id = $1 AND (l.telemetry->>'dim')::float8 <> 37",
                    &[&lamp],
                )
                .await
                .unwrap()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
        })
        .await;
    let ts = Timestamp::from_datetime(ts);
    let (lon, lat) = city.lamps[3].at;
    let (dawn, dusk) = model::astro::civil_twilight(lon, lat, ts);
    let expected = model::lighting::Schedule::from_command(&profile)
        .unwrap()
        .at(ts, lon, dawn, dusk, model::astro::is_dark(lon, lat, ts));
    assert_eq!((on, dim), (expected.on, expected.dim));

    // Held by an operator for 4 hours, then sent back to its schedule: it is told what
    // its profile asks for now, for a minute, and shows it at once.
    let held = hub
        .command(json!({"target": {"device": lamp}, "action": "set_light", "dim": 12, "expires_in_s": 14400}))
        .await;
    hub.wait_status(held, &lamp, "acked").await;
    for wrong in [
        json!({"target": {"device": lamp}, "action": "resume_schedule", "dim": 50}),
        json!({"target": {"device": lamp}, "action": "resume_schedule", "expires_in_s": 3600}),
    ] {
        let (status, reply) = http(
            hub.hub.http_port,
            "POST",
            "/api/v1/commands",
            &hub.token,
            Some(&wrong),
        )
        .await;
        assert_eq!(status, 400, "{reply}");
        assert!(
            reply["error"]
                .as_str()
                .unwrap()
                .contains("resume_schedule takes no"),
            "{reply}"
        );
    }
    let resumed = hub
        .command(json!({"target": {"device": lamp}, "action": "resume_schedule"}))
        .await;
    let sent_body: Value = hub
        .db
        .client
        .query_one("SELECT body FROM commands WHERE batch_id = $1", &[&resumed])
        .await
        .unwrap()
        .get(0);
    let (issued, expires): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) = hub
        .db
        .client
        .query_one(
            "SELECT issued_at, expires_at FROM command_batches WHERE id = $1",
            &[&resumed],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!((expires - issued).num_seconds(), 60);
    let now = Timestamp::from_datetime(issued);
    let told = model::lighting::scheduled(Some(&profile), lon, lat, now);
    assert_eq!(
        sent_body,
        json!({"action": "set_light", "on": told.on, "dim": told.dim as i64, "expires": expires.timestamp_millis()}),
        "what the lamp is told is its profile's level now, and nothing a device does not know"
    );
    hub.wait_status(resumed, &lamp, "acked").await;
    // The lamp's own command, with what it was told, in its list and in the batch's.
    let (status, listed) = http(
        hub.hub.http_port,
        "GET",
        &format!("/api/v1/commands?device={lamp}"),
        &hub.token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    let own = &listed["items"][0];
    assert_eq!(own["id"], resumed, "{listed}");
    assert_eq!(own["command"]["body"], sent_body, "{listed}");
    assert_eq!(own["command"]["device"], lamp.as_str());
    // The broker's acknowledgement is recorded with the dispatcher's next round.
    let command = eventually(Duration::from_secs(10), "the command's sent_at", || async {
        let (status, devices) = http(
            hub.hub.http_port,
            "GET",
            &format!("/api/v1/commands/{resumed}/devices"),
            &hub.token,
            None,
        )
        .await;
        assert_eq!(status, 200, "{devices}");
        let command = devices["items"][0].clone();
        command["sent_at"].is_string().then_some(command)
    })
    .await;
    assert_eq!(command["body"], sent_body);
    // When the broker took it, on the hub's clock: after the batch was issued.
    let sent_at: chrono::DateTime<chrono::Utc> =
        command["sent_at"].as_str().unwrap().parse().unwrap();
    assert!(sent_at >= issued, "{command}");
    let shown: f64 = eventually(Duration::from_secs(10), "the lamp back on its schedule", || async {
        hub.db
            .client
            .query_opt(
                "SELECT (l.telemetry->>'dim')::float8 FROM device_latest l JOIN devices d ON d.id = l.device_id
                 WHERE d.ext_id = $1 AND l.telemetry_ts > $2 AND (l.telemetry->>'dim')::float8 <> 12",
                &[&lamp, &issued],
            )
            .await
            .unwrap()
            .map(|r| r.get(0))
    })
    .await;
    assert_eq!(shown, told.dim);
    stop.cancel();
    let _ = task.await;
}

#[tokio::test]
async fn offline_controllers_get_their_commands_back_online_unless_expired_and_refusals_land() {
    let tenant = unique("off");
    let devices = tests::db::devices(&tenant, &[(Kind::Light, 4), (Kind::Cabinet, 1)]);
    let hub = Hub::start(&tenant, &devices, &[]).await;
    let mut recorder = Recorder::subscribe(
        hub.broker.port(),
        &tester(hub.broker.port()),
        TESTER_PASSWORD,
        &format!("city/{tenant}/+/+/cmd"),
    )
    .await;
    let mut field = Publisher::connect(hub.broker.port()).await;
    for lamp in ["L1", "L3"] {
        hub.say(&mut field, lamp, "offline").await;
    }
    eventually(
        Duration::from_secs(10),
        "L1 and L3 known offline",
        || async {
            (hub.db
                .count("SELECT count(*) FROM device_latest WHERE online = false")
                .await
                == 2)
                .then_some(())
        },
    )
    .await;
    let held = hub
        .command(json!({"target": {"device": "L1"}, "action": "set_light", "dim": 20}))
        .await;
    let lapsing = hub
        .command(json!({"target": {"device": "L3"}, "action": "reboot", "expires_in_s": 10}))
        .await;
    let refused = hub
        .command(json!({"target": {"device": "L2"}, "action": "set_light", "dim": 80}))
        .await;
    // L2 is online: its command goes out while the others are held.
    let got = recorder
        .at_least(1, Duration::from_secs(10), Duration::from_millis(500))
        .await;
    assert_eq!(got.len(), 1, "only the online lamp's command is published");
    assert!(got[0].0.ends_with("/light/L2/cmd"), "{}", got[0].0);
    let cmd: Value = serde_json::from_slice(&got[0].1).unwrap();
    assert_eq!(
        (cmd["action"].as_str(), cmd["dim"].as_i64()),
        (Some("set_light"), Some(80))
    );
    assert!(cmd["expires"].is_i64() && cmd["ts"].is_i64(), "{cmd}");
    hub.wait_status(refused, "L2", "sent").await;
    assert_eq!(hub.status_of(held, "L1").await.0, "pending");
    // The controller refuses it, and says why.
    field
        .send(
            &format!("city/{tenant}/light/L2/cmd/ack"),
            json!({"id": cmd["id"], "ts": tests::now_ms(), "status": "rejected", "detail": "dim below driver minimum"}).to_string(),
        )
        .await;
    hub.wait_status(refused, "L2", "rejected").await;
    assert_eq!(
        hub.status_of(refused, "L2").await.1.as_deref(),
        Some("dim below driver minimum")
    );

    // L3's reboot expires while L3 is away.
    hub.wait_status(lapsing, "L3", "expired").await;
    for lamp in ["L1", "L3"] {
        hub.say(&mut field, lamp, "online").await;
    }
    let got = recorder
        .at_least(1, Duration::from_secs(10), Duration::from_secs(1))
        .await;
    let topics: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        topics,
        [format!("city/{tenant}/light/L1/cmd")],
        "the expired reboot is never sent"
    );
    let cmd: Value = serde_json::from_slice(&got[0].1).unwrap();
    field
        .send(
            &format!("city/{tenant}/light/L1/cmd/ack"),
            json!({"id": cmd["id"], "ts": tests::now_ms(), "status": "ok"}).to_string(),
        )
        .await;
    hub.wait_status(held, "L1", "acked").await;
    assert_eq!(hub.status_of(lapsing, "L3").await.0, "expired");
    assert!(
        hub.hub
            .metric("cityhub_commands_expired_total")
            .unwrap_or(0.0)
            >= 1.0
    );
}

#[tokio::test]
async fn the_dispatcher_keeps_its_rate() {
    let tenant = unique("rate");
    let devices = tests::db::devices(&tenant, &[(Kind::Light, 40), (Kind::Cabinet, 1)]);
    let hub = Hub::start(
        &tenant,
        &devices,
        &[("CITYHUB_COMMANDS_RATE_PER_SEC", "20")],
    )
    .await;
    let mut recorder = Recorder::subscribe(
        hub.broker.port(),
        &tester(hub.broker.port()),
        TESTER_PASSWORD,
        &format!("city/{tenant}/+/+/cmd"),
    )
    .await;
    hub.command(json!({"target": {"cabinet": "C0"}, "action": "set_light", "confirm": 40}))
        .await;
    let mut arrivals = Vec::new();
    while arrivals.len() < 40 {
        match tokio::time::timeout(Duration::from_secs(30), recorder.messages.recv()).await {
            Ok(Some(_)) => arrivals.push(Instant::now()),
            _ => panic!("{} of 40 commands arrived", arrivals.len()),
        }
    }
    let took = arrivals[39] - arrivals[0];
    // The 39 after the first, at 20 per second, take at least 1.95 s (a lower bound
    // only: a slow machine may take longer).
    assert!(
        took >= Duration::from_millis(1800),
        "40 commands at 20/s went out in {took:?}"
    );
}

#[tokio::test]
async fn pending_commands_survive_a_broker_restart() {
    let tenant = unique("brk");
    let devices = tests::db::devices(&tenant, &[(Kind::Light, 3)]);
    let mut hub = Hub::start(&tenant, &devices, &[]).await;
    hub.broker.broker.stop().unwrap();
    let batch = hub
        .command(json!({"tenant": tenant, "target": {"devices": ["L0", "L2"]}, "action": "reboot", "confirm": 2}))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await; // the dispatcher retries meanwhile
    assert_eq!(hub.status_of(batch, "L0").await.0, "pending");
    hub.broker.broker.restart().unwrap();
    // Once the dispatcher is back on the broker, both go out.
    hub.wait_status(batch, "L0", "sent").await;
    hub.wait_status(batch, "L2", "sent").await;
    assert_eq!(hub.status_of(batch, "L0").await.0, "sent");
}

#[tokio::test]
async fn lamps_sent_back_to_their_schedule_are_each_told_its_level_and_a_large_group_holds_longer()
{
    let db = TestDb::new().await;
    let tenant = unique("resume");
    db.import(&tests::db::devices(
        &tenant,
        &[(Kind::Light, 250), (Kind::Cabinet, 1)],
    ))
    .await;
    let tenant_id: i32 = db
        .client
        .query_one("SELECT id FROM tenants WHERE slug = $1", &[&tenant])
        .await
        .unwrap()
        .get(0);
    let mut store = db.store().await;
    // No schedule: dusk to dawn at full output; each lamp is told what that asks for at
    // its own place at the batch's time.
    let issued: chrono::DateTime<chrono::Utc> = "2026-11-22T23:30:00Z".parse().unwrap();
    let base = issued + chrono::Duration::seconds(60);
    let row = store
        .actions
        .issue_commands(&store::NewBatch {
            tenant_id,
            target: &store::CommandTarget::Cabinet("C0".into()),
            action: "set_light",
            body: json!({"action": "set_light", "resume_schedule": true, "expires": base.timestamp_millis()}),
            issued_at: issued,
            expires_at: base,
            issued_by: "olga",
            confirm: Some(250),
            resume_schedule: true,
        })
        .await
        .unwrap();
    // 250 lamps: two seconds beyond the minute.
    let expires = issued + chrono::Duration::seconds(62);
    assert_eq!(row.expires_at, Some(expires));
    assert_eq!(row.body["expires"], expires.timestamp_millis());
    let rows = db
        .client
        .query(
            "SELECT d.lon, d.lat, c.body, c.expires_at FROM commands c JOIN devices d ON d.id = c.device_id
             WHERE c.batch_id = $1",
            &[&row.id],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 250);
    for r in rows {
        let (lon, lat, body): (f64, f64, Value) = (r.get(0), r.get(1), r.get(2));
        let told = model::lighting::scheduled(None, lon, lat, Timestamp::from_datetime(issued));
        assert_eq!(
            body,
            json!({"action": "set_light", "on": told.on, "dim": told.dim as i64, "expires": expires.timestamp_millis()})
        );
        assert_eq!(r.get::<_, chrono::DateTime<chrono::Utc>>(3), expires);
    }
}

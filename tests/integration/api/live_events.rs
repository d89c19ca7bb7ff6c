//! `GET /api/v1/events`: changes arrive for each type, only for the caller's tenants and
//! the types its role may read; filters; bad parameters; a client that never reads holds
//! up nobody; the listener comes back after its connection is killed; a storm of changes
//! is a few notifications.
//!
//! Something that must not arrive is checked with a marker: a later change the client
//! does receive. Notifications arrive in commit order and each client's stream keeps it,
//! so anything forbidden would have come before the marker.

use std::net::SocketAddr;
use std::time::Duration;

use model::Kind;
use serde_json::{json, Value};
use tests::api::{add_token, add_user, Auth, Req, PASSWORD};
use tests::db::{opened, opened_with_order, utc};
use tests::{eventually, unique, HubProcess, Publisher, Setup};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

use super::{fresh_kind, City, CREW_TEAM};

/// How long an expected event may take to arrive before the test fails.
const PATIENCE: Duration = Duration::from_secs(15);

/// One server-sent event.
#[derive(Debug, Clone)]
pub(crate) struct SseEvent {
    pub name: String,
    pub data: Value,
}

/// A client of the event stream (HTTP/1.0, so the body is the raw stream).
pub(crate) struct SseClient {
    reader: BufReader<TcpStream>,
}

/// Opens `path` with `token`; the status, and the client when it is 200 (else the body).
pub(crate) async fn open(
    city: &City,
    path: &str,
    auth: &Auth,
    recv_buffer: Option<u32>,
) -> (u16, Result<SseClient, String>) {
    open_at(city.api.addr, path, auth, recv_buffer).await
}

/// [`open`] on any server.
pub(crate) async fn open_at(
    addr: SocketAddr,
    path: &str,
    auth: &Auth,
    recv_buffer: Option<u32>,
) -> (u16, Result<SseClient, String>) {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let mut stream = socket.connect(addr).await.unwrap();
    let mut head = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n");
    match auth {
        Auth::Token(t) => head.push_str(&format!("Authorization: Bearer {t}\r\n")),
        Auth::Cookie(c) => head.push_str(&format!("Cookie: {c}\r\n")),
        _ => {}
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).await.unwrap();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP reply: {status_line}"));
    let mut content_type = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-type") {
                content_type = v.trim().to_owned();
            }
        }
    }
    if status != 200 {
        let mut body = String::new();
        reader.read_to_string(&mut body).await.unwrap();
        return (status, Err(body));
    }
    assert_eq!(content_type, "text/event-stream");
    (status, Ok(SseClient { reader }))
}

impl SseClient {
    /// The next event (comments skipped); `None` if the stream ended.
    async fn read_event(&mut self) -> Option<SseEvent> {
        let (mut name, mut data) = (String::from("message"), String::new());
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).await.ok()? == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if data.is_empty() {
                    continue; // after a comment
                }
                let data = serde_json::from_str(&data)
                    .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {data}"));
                return Some(SseEvent { name, data });
            }
            if let Some(v) = line.strip_prefix("event:") {
                name = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
    }

    /// Events up to and including the first that `is_marker`; fails after [`PATIENCE`].
    pub async fn until(
        &mut self,
        what: &str,
        is_marker: impl Fn(&SseEvent) -> bool,
    ) -> Vec<SseEvent> {
        let mut seen = Vec::new();
        let found = tokio::time::timeout(PATIENCE, async {
            while let Some(e) = self.read_event().await {
                let done = is_marker(&e);
                seen.push(e);
                if done {
                    return true;
                }
            }
            false
        })
        .await;
        match found {
            Ok(true) => seen,
            Ok(false) => panic!("the stream ended before {what}; seen: {seen:?}"),
            Err(_) => panic!("no {what} within {PATIENCE:?}; seen: {seen:?}"),
        }
    }
}

fn is(name: &'static str, key: &'static str, value: Value) -> impl Fn(&SseEvent) -> bool {
    move |e| e.name == name && e.data[key] == value
}

async fn acknowledge(city: &City, outage: i64) {
    let r = city
        .post(&format!("/api/v1/outages/{outage}/ack"), "operator", "")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn each_type_arrives_for_the_callers_tenants_only() {
    let mut city = City::start().await;
    let (_, client) = open(&city, "/api/v1/events", &city.tokens["admin"], None).await;
    let mut client = client.unwrap();
    let b_outage = city.open_outage(&city.b.clone()).await;
    let a = city.a.clone();
    let outage = city.open_outage(&a).await;
    acknowledge(&city, outage).await;
    let seen = client
        .until(
            "the acknowledgement",
            is("outage", "transition", json!("acknowledged")),
        )
        .await;
    let opened = seen
        .iter()
        .find(|e| e.name == "outage" && e.data["transition"] == "opened")
        .expect("the opening");
    assert_eq!(opened.data["id"], json!(outage));
    assert_eq!(opened.data["tenant"], json!(a));
    assert_eq!(opened.data["device"], json!("L0"));
    let ack = seen.last().unwrap();
    assert_eq!(ack.data["state"], json!("acknowledged"));
    assert_eq!(ack.data["actor"], json!("operator (token tests)"));
    assert!(
        seen.iter().all(|e| e.data["id"] != json!(b_outage)),
        "another tenant's outage: {seen:?}"
    );

    // A work order, created and assigned.
    let order = city.assigned_order(&a).await;
    let seen = client
        .until(
            "the assignment",
            is("work_order", "state", json!("assigned")),
        )
        .await;
    let assigned = seen.last().unwrap();
    assert_eq!(assigned.data["id"], json!(order));
    assert_eq!(assigned.data["from"], json!("new"));
    assert_eq!(assigned.data["team"], json!(CREW_TEAM));
    assert_eq!(assigned.data["assignee"], json!("ana"));
    assert_eq!(assigned.data["device"], json!("L1"));
    assert!(seen.iter().any(|e| e.name == "work_order"
        && e.data["state"] == "new"
        && e.data["id"] == json!(order)));

    // A command to another tenant's lamp, then one to ours, recorded and acknowledged.
    let (theirs, ours) = (city.device(&city.b, "L2"), city.device(&a, "L2"));
    let body = json!({"action": "set_light", "on": true});
    let at = utc("2026-03-01T20:00:00Z");
    city.store
        .admin
        .record_command("cmd-b-1", theirs, "set_light", &body, at, None, "olga")
        .await
        .unwrap();
    city.store
        .admin
        .record_command("cmd-a-1", ours, "set_light", &body, at, None, "olga")
        .await
        .unwrap();
    city.store
        .detection
        .command_acked("cmd-a-1", "ok", utc("2026-03-01T20:00:02Z"))
        .await
        .unwrap();
    let seen = client
        .until(
            "the acknowledged command",
            is("command", "status", json!("acked")),
        )
        .await;
    let statuses: Vec<(&str, &str)> = seen
        .iter()
        .filter(|e| e.name == "command")
        .map(|e| {
            (
                e.data["id"].as_str().unwrap(),
                e.data["status"].as_str().unwrap(),
            )
        })
        .collect();
    // An event carries the row as it is when the hub reads it: when the acknowledgement
    // commits before the hub reads the command's insert, that event already says acked.
    assert!(
        statuses == [("cmd-a-1", "pending"), ("cmd-a-1", "acked")]
            || statuses == [("cmd-a-1", "acked")],
        "{statuses:?}"
    );
    let acked = seen.last().unwrap();
    assert_eq!(acked.data["device"], json!("L2"));
    assert_eq!(acked.data["tenant"], json!(a));
    assert_eq!(acked.data["acked_at"], json!("2026-03-01T20:00:02Z"));
}

#[tokio::test]
async fn the_types_filter_and_the_tenant_filter() {
    let mut city = City::start().await;
    let a = city.a.clone();
    let path = format!("/api/v1/events?types=work_order&tenant={a}");
    let (_, client) = open(&city, &path, &city.tokens["regional_viewer"], None).await;
    let mut client = client.unwrap();
    let outage = city.open_outage(&a).await;
    acknowledge(&city, outage).await;
    let order = city.assigned_order(&a).await;
    let seen = client
        .until(
            "the assignment",
            is("work_order", "state", json!("assigned")),
        )
        .await;
    assert!(seen.iter().all(|e| e.name == "work_order"), "{seen:?}");
    assert_eq!(seen.last().unwrap().data["id"], json!(order));

    // The regional viewer also sees tenant c, but asked for a only.
    let c = city.c.clone();
    let (_, all) = open(
        &city,
        "/api/v1/events?types=outage",
        &city.tokens["regional_viewer"],
        None,
    )
    .await;
    let mut all = all.unwrap();
    let (_, only_a) = open(
        &city,
        &format!("/api/v1/events?types=outage&tenant={a}"),
        &city.tokens["regional_viewer"],
        None,
    )
    .await;
    let mut only_a = only_a.unwrap();
    let in_c = city.open_outage(&c).await;
    let in_a = city.open_outage(&a).await;
    let seen = all
        .until("c's outage", is("outage", "id", json!(in_c)))
        .await;
    assert_eq!(seen.last().unwrap().data["tenant"], json!(c));
    let seen = only_a
        .until("a's outage", is("outage", "id", json!(in_a)))
        .await;
    assert!(
        seen.iter().all(|e| e.data["tenant"] == json!(a)),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_crew_gets_its_teams_work_orders_and_never_outages() {
    let mut city = City::start().await;
    let a = city.a.clone();
    let (_, client) = open(&city, "/api/v1/events", &city.tokens["crew"], None).await;
    let mut crew = client.unwrap();
    // Another team's order, then an outage acknowledged, then the crew's own order.
    let kind = fresh_kind();
    let lamp = city.device(&a, "L5");
    city.store
        .detection
        .apply_outage_changes(&[opened_with_order(
            lamp,
            kind,
            "2026-03-01T00:00:00Z",
            "power-crew",
            3600,
        )])
        .await
        .unwrap();
    let outage = city.open_outage(&a).await;
    acknowledge(&city, outage).await;
    let order = city.assigned_order(&a).await;
    let seen = crew
        .until(
            "the crew's assignment",
            is("work_order", "state", json!("assigned")),
        )
        .await;
    assert_eq!(seen.last().unwrap().data["id"], json!(order));
    for e in &seen {
        assert_eq!(e.name, "work_order", "a crew got {e:?}");
        assert_eq!(
            e.data["team"],
            json!(CREW_TEAM),
            "another team's order: {e:?}"
        );
    }
    let (status, body) = open(
        &city,
        "/api/v1/events?types=work_order,outage",
        &city.tokens["crew"],
        None,
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        serde_json::from_str::<Value>(&body.err().unwrap()).unwrap()["error"],
        json!("a crew may not list outages, so it may not receive outage events")
    );
}

#[tokio::test]
async fn bad_parameters_are_refused_with_a_sentence() {
    let city = City::start().await;
    let admin = &city.tokens["admin"];
    let cases: [(&str, &Auth, u16, &str); 6] = [
        (
            "/api/v1/events?types=weather",
            admin,
            400,
            "`weather` is not one",
        ),
        ("/api/v1/events?types=", admin, 400, "`` is not one"),
        (
            "/api/v1/events?since=5",
            admin,
            400,
            "unknown field `since`",
        ),
        (
            &format!("/api/v1/events?tenant={}", city.b),
            admin,
            404,
            "no tenant",
        ),
        ("/api/v1/events", &Auth::None, 401, "sign in first"),
        (
            "/api/v1/events",
            &Auth::Token("chk_nothing".into()),
            401,
            "not valid",
        ),
    ];
    for (path, auth, status, says) in cases {
        let (got, body) = open(&city, path, auth, None).await;
        assert_eq!(got, status, "{path}");
        let body = body.err().unwrap();
        let error: Value = serde_json::from_str(&body).unwrap();
        assert!(
            error["error"].as_str().unwrap().contains(says),
            "{path}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_holds_up_nobody() {
    let mut city = City::start().await;
    let a = city.a.clone();
    // A tiny receive buffer, never read: its stream stops being polled once the
    // socket buffers are full.
    let (_, idle) = open(
        &city,
        "/api/v1/events?types=outage",
        &city.tokens["viewer"],
        Some(4096),
    )
    .await;
    let mut idle = idle.unwrap();
    let (_, reader) = open(
        &city,
        "/api/v1/events?types=outage",
        &city.tokens["admin"],
        None,
    )
    .await;
    let mut reader = reader.unwrap();
    let reading = tokio::spawn(async move {
        reader
            .until("the last outage", |e| {
                e.data["detail"] == json!("the last one")
            })
            .await
    });
    // 24 000 outage events in statements of 100 (one notification each): far more than
    // the socket buffers and the hub's channel hold together.
    let lamps: Vec<i32> = (0..30).map(|i| city.device(&a, &format!("L{i}"))).collect();
    for _ in 0..8 {
        let kinds: Vec<&'static str> = (0..100).map(|_| fresh_kind()).collect();
        for lamp in &lamps {
            let batch: Vec<_> = kinds
                .iter()
                .map(|k| opened(*lamp, k, "2026-03-01T00:00:00Z"))
                .collect();
            city.store
                .detection
                .apply_outage_changes(&batch)
                .await
                .unwrap();
        }
    }
    let last = city.open_outage(&a).await;
    city.post(
        &format!("/api/v1/outages/{last}/comment"),
        "operator",
        r#"{"text": "the last one"}"#,
    )
    .await;
    // The reading client gets to the end (it may be told to refetch if this machine is
    // too busy for it to keep up, but it is never stopped).
    let received = reading.await.unwrap();
    assert!(received.len() > 1000, "{} events", received.len());
    // The idle client lost its backlog and is told to refetch, rather than anyone waiting.
    let seen = idle.until("a resync", |e| e.name == "resync").await;
    let resync = seen.last().unwrap();
    assert_eq!(resync.data["reason"], json!("lagged"));
    assert_eq!(resync.data["types"], json!(["outage"]));
    assert_eq!(resync.data["tenants"], json!([a]));
}

#[tokio::test]
async fn the_listener_comes_back_after_its_connection_is_killed() {
    let mut city = City::start().await;
    let a = city.a.clone();
    let (_, client) = open(
        &city,
        "/api/v1/events?types=outage",
        &city.tokens["admin"],
        None,
    )
    .await;
    let mut client = client.unwrap();
    let first = city.open_outage(&a).await;
    client
        .until("the first outage", is("outage", "id", json!(first)))
        .await;
    let killed = city
        .db
        .count(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE application_name = '{}' AND datname = current_database()",
            store::changes::LISTENER_NAME
        ))
        .await;
    assert_eq!(killed, 1, "one listener per hub");
    let seen = client.until("a resync", |e| e.name == "resync").await;
    assert_eq!(seen.last().unwrap().data["reason"], json!("reconnected"));
    let second = city.open_outage(&a).await;
    client
        .until(
            "an outage after the reconnection",
            is("outage", "id", json!(second)),
        )
        .await;
}

#[tokio::test]
async fn a_storm_of_decisions_is_one_notification_and_one_resync() {
    let mut city = City::start().await;
    let a = city.a.clone();
    let (_, client) = open(
        &city,
        "/api/v1/events?types=outage",
        &city.tokens["admin"],
        None,
    )
    .await;
    let mut client = client.unwrap();
    // Our own listener counts the notifications.
    let (listener, mut conn) = tokio_postgres::connect(&city.db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, mut notes) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(m)) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notification(n) = m {
                let _ = tx.send(n.payload().to_owned());
            }
        }
    });
    listener
        .batch_execute(&format!(
            "LISTEN {}",
            store::service_requests::CHANGES_CHANNEL
        ))
        .await
        .unwrap();
    // 20 000 outages opened in one set: the store writes them 10 000 per statement.
    let lamps: Vec<i32> = (0..20).map(|i| city.device(&a, &format!("L{i}"))).collect();
    let kinds: Vec<&'static str> = (0..1000).map(|_| fresh_kind()).collect();
    let storm: Vec<_> = lamps
        .iter()
        .flat_map(|l| {
            kinds
                .iter()
                .map(move |k| opened(*l, k, "2026-03-01T00:00:00Z"))
        })
        .collect();
    assert_eq!(storm.len(), 20_000);
    city.store
        .detection
        .apply_outage_changes(&storm)
        .await
        .unwrap();
    let marker = city.open_outage(&a).await;
    let seen = client
        .until("the marker", is("outage", "id", json!(marker)))
        .await;
    let names: Vec<&str> = seen.iter().map(|e| e.name.as_str()).collect();
    // Two statements of 10 000, with the same payload: PostgreSQL delivers identical
    // notifications of one transaction once.
    assert_eq!(names, ["resync", "outage"], "one resync, then the marker");
    assert_eq!(seen[0].data["reason"], json!("bulk"));
    assert_eq!(seen[0].data["tenants"], json!([a]));
    let mut payloads = Vec::new();
    while payloads.len() < 2 {
        let p = tokio::time::timeout(PATIENCE, notes.recv())
            .await
            .unwrap()
            .unwrap();
        payloads.push(serde_json::from_str::<Value>(&p).unwrap());
    }
    assert_eq!(payloads[0]["bulk"], json!(10_000));
    assert_eq!(payloads[1]["ids"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_states_arrive_coalesced_and_ingestion_never_waits() {
    let Setup {
        tenant: t,
        db,
        broker,
    } = Setup::start(&[(Kind::Light, 3), (Kind::Vehicle, 2)]).await;
    let mut store = db.store().await;
    add_user(&mut store.admin, "watcher", "viewer", &[&t], None).await;
    let token = Auth::Token(add_token(&mut store.admin, "watcher", "live").await);
    let mut hub = HubProcess::spawn(&db.url, broker.port(), &unique("hub-"));
    hub.wait_connected().await;
    // Subscribed, not only connected: a reading of the third lamp is committed.
    let mut p = Publisher::connect(broker.port()).await;
    let now = chrono::Utc::now().timestamp_millis();
    p.send(
        &format!("city/{t}/light/L2/telemetry"),
        json!({"ts": now - 60_000, "on": false}).to_string(),
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the hub's subscription",
        || async { (db.count("SELECT count(*) FROM light_readings").await == 1).then_some(()) },
    )
    .await;
    let addr: SocketAddr = ([127, 0, 0, 1], hub.http_port).into();
    // One client that never reads, one that does.
    let (_, idle) = open_at(addr, "/api/v1/events", &token, Some(4096)).await;
    let _idle = idle.unwrap();
    let (_, client) = open_at(addr, "/api/v1/events?types=device", &token, None).await;
    let mut client = client.unwrap();
    let topic = |kind: &str, dev: &str, ch: &str| format!("city/{t}/{kind}/{dev}/{ch}");

    p.send(
        &topic("light", "L0", "telemetry"),
        json!({"ts": now, "on": true, "dim": 100}).to_string(),
    )
    .await;
    let seen = client
        .until("L0 on", is("device", "device", json!("L0")))
        .await;
    let l0 = &seen.last().unwrap().data;
    assert_eq!(
        (l0["on"].clone(), l0["dim"].clone(), l0["fault"].clone()),
        (json!(true), json!(100.0), Value::Null)
    );
    assert_eq!(l0["kind"], json!("light"));
    assert_eq!(l0["tenant"], json!(t));

    // The same state again is no news; a dimming and a fault are.
    p.send(
        &topic("light", "L0", "telemetry"),
        json!({"ts": now + 1000, "on": true, "dim": 100}).to_string(),
    )
    .await;
    p.send(
        &topic("light", "L0", "telemetry"),
        json!({"ts": now + 2000, "on": true, "dim": 40, "fault": "driver_failure"}).to_string(),
    )
    .await;
    p.send(
        &topic("light", "L1", "status"),
        json!({"ts": now, "state": "offline"}).to_string(),
    )
    .await;
    let mut seen = client
        .until("L1 offline", is("device", "device", json!("L1")))
        .await;
    assert_eq!(seen.last().unwrap().data["online"], json!(false));
    // L0 changed within a second of its last event: its change waits out the interval
    // and may come after L1's.
    if !seen.iter().any(|e| e.data["device"] == "L0") {
        seen.extend(
            client
                .until("L0 dimmed", is("device", "device", json!("L0")))
                .await,
        );
    }
    let l0: Vec<&Value> = seen
        .iter()
        .filter(|e| e.data["device"] == "L0")
        .map(|e| &e.data)
        .collect();
    assert!(!l0.is_empty(), "the dimming was sent: {seen:?}");
    let last = l0.last().unwrap();
    assert_eq!(
        (last["dim"].clone(), last["fault"].clone()),
        (json!(40.0), json!("driver_failure"))
    );

    // 2 000 vehicle positions, while the idle client holds its stream: all of them are
    // committed, and the reading client gets each vehicle's newest position, coalesced.
    const N: i64 = 1000;
    for i in 0..N {
        for v in ["V0", "V1"] {
            let body = json!({"ts": now + i * 10, "lat": 38.7 + i as f64 * 1e-5, "lon": -9.1, "route": "28", "speed_mps": 5.0});
            p.send(&topic("vehicle", v, "telemetry"), body.to_string())
                .await;
        }
    }
    p.flush().await;
    eventually(
        Duration::from_secs(30),
        "every position committed",
        || async {
            (db.count("SELECT count(*) FROM vehicle_readings").await == 2 * N).then_some(())
        },
    )
    .await;
    let final_lat = json!(38.7 + (N - 1) as f64 * 1e-5);
    let seen = client
        .until("V0's last position", |e| {
            e.data["device"] == "V0" && e.data["lat"] == final_lat
        })
        .await;
    let v0 = seen.iter().filter(|e| e.data["device"] == "V0").count();
    assert!(
        v0 < N as usize / 2,
        "{v0} events for {N} positions: not coalesced"
    );
    let last = &seen.last().unwrap().data;
    assert_eq!(
        (last["route"].clone(), last["kind"].clone()),
        (json!("28"), json!("vehicle"))
    );
    assert!(
        hub.terminate(),
        "clean exit on SIGTERM with clients connected"
    );
}

#[tokio::test]
async fn one_person_cannot_hold_every_stream_and_the_server_keeps_a_share() {
    let city = City::start_configured(|c| {
        c.http.streams_per_user = 2;
        c.http.max_streams = 3;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let (status, client) = open(&city, "/api/v1/events", &city.tokens["viewer"], None).await;
        assert_eq!(status, 200);
        held.push(client.unwrap());
    }
    let (status, refused) = open(&city, "/api/v1/events", &city.tokens["viewer"], None).await;
    assert_eq!(status, 429);
    let refused = refused.err().unwrap();
    assert!(
        refused.contains("you have 2 live event streams running already"),
        "{refused}"
    );
    let (status, other) = open(&city, "/api/v1/events", &city.tokens["operator"], None).await;
    assert_eq!(status, 200, "another person still gets one");
    held.push(other.unwrap());
    let (status, refused) = open(&city, "/api/v1/events", &city.tokens["admin"], None).await;
    assert_eq!(status, 503);
    assert!(refused
        .err()
        .unwrap()
        .contains("3 live event streams are running already"),);
    // The rest of the API still answers.
    let r = city.get("/api/v1/outages", "viewer").await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Reads until the stream ends; fails if it is still open after [`PATIENCE`].
async fn ended(client: &mut SseClient, whose: &str) {
    let end = tokio::time::timeout(PATIENCE, async {
        while client.read_event().await.is_some() {}
    })
    .await;
    assert!(
        end.is_ok(),
        "{whose}: the stream is still open after {PATIENCE:?}"
    );
}

#[tokio::test]
async fn a_stream_ends_with_its_callers_access() {
    let mut city = City::start().await;
    for user in ["signs-out", "token-revoked", "disabled", "keeps-access"] {
        add_user(&mut city.store.admin, user, "viewer", &[&city.a], None).await;
    }
    let token = Auth::Token(add_token(&mut city.store.admin, "token-revoked", "live").await);
    let other = Auth::Token(add_token(&mut city.store.admin, "disabled", "live").await);
    let control = Auth::Token(add_token(&mut city.store.admin, "keeps-access", "live").await);
    let body = json!({"username": "signs-out", "password": PASSWORD}).to_string();
    let r = city
        .api
        .call(Req::post("/api/v1/login", &Auth::None, &body))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let cookie = Auth::Cookie(r.session_cookie().unwrap());

    let mut streams = Vec::new();
    for (who, auth) in [
        ("a signed-out session", &cookie),
        ("a revoked token", &token),
        ("a disabled user", &other),
        ("a caller who keeps access", &control),
    ] {
        let (status, client) = open(&city, "/api/v1/events", auth, None).await;
        assert_eq!(status, 200, "{who}");
        streams.push((who, client.unwrap()));
    }

    let r = city
        .api
        .call(Req::post("/api/v1/logout", &cookie, ""))
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    city.store
        .admin
        .revoke_api_token("token-revoked", "live", "test")
        .await
        .unwrap();
    let r = city
        .post("/api/v1/users/disabled/disable", "admin", "")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let mut control = streams.pop().unwrap();
    for (who, client) in &mut streams {
        ended(client, who).await;
    }
    // The stream of a caller who still has access stays open.
    let still = tokio::time::timeout(Duration::from_secs(2), control.1.read_event()).await;
    assert!(still.is_err(), "{}: {still:?}", control.0);
    // And the ended ones cannot come back.
    for (who, auth) in [
        ("a signed-out session", &cookie),
        ("a revoked token", &token),
        ("a disabled user", &other),
    ] {
        let (status, _) = open(&city, "/api/v1/events", auth, None).await;
        assert_eq!(status, 401, "{who}");
    }
}

//! GTFS-Realtime VehiclePositions: positions published over MQTT come out of the feed,
//! decoded by Google's own Python bindings (tests/python/gtfs_rt_decode.py), not ours.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use model::Kind;
use serde_json::{json, Value};
use tests::api::{add_token, add_user, TestApi};
use tests::db::devices;
use tests::hub::ingest_config;
use tests::{eventually, now_ms, unique, HubProcess, InProcessHub, Publisher, Setup};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A GET with a bearer token; status and raw body.
async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n{auth}\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP reply");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, raw[split + 4..].to_vec())
}

/// The feed as Google's bindings read it.
async fn decode_with_google(feed: &[u8]) -> Value {
    let python = std::env::var("CITYHUB_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "CITYHUB_TEST_PYTHON is not set: run `source scripts/services.sh; source scripts/python.sh` \
             (or scripts/test.sh) so the GTFS-Realtime feed can be checked with Google's bindings"
        )
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/gtfs_rt_decode.py");
    let mut child = tokio::process::Command::new(&python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    child.stdin.take().unwrap().write_all(feed).await.unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "Google's bindings refused the feed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn the_feed_holds_what_vehicles_published_as_googles_bindings_read_it() {
    let Setup {
        tenant: t,
        db,
        broker,
    } = Setup::start(&[(Kind::Vehicle, 3), (Kind::Light, 1)]).await;
    let other = unique("o");
    db.import(&devices(&other, &[(Kind::Vehicle, 1)])).await;
    let hub = InProcessHub::start(ingest_config(broker.port(), &unique("hub-")), &db.url).await;
    let mut p = Publisher::connect(broker.port()).await;
    let now = now_ms() / 1000 * 1000;
    // V0 twice (the newer counts), V1 once with no trip; V2 never; the other tenant's V0.
    let published = [
        (
            "V0",
            json!({"ts": now - 5000, "lat": 38.70, "lon": -9.10, "route": "28"}),
        ),
        (
            "V0",
            json!({"ts": now, "lat": 38.7123, "lon": -9.1456, "bearing_deg": 271.5,
                      "speed_mps": 8.25, "route": "28", "trip": "28-0915", "occupancy_pct": 40}),
        ),
        (
            "V1",
            json!({"ts": now - 1000, "lat": 38.75, "lon": -9.2, "route": "15E"}),
        ),
    ];
    for (v, body) in &published {
        p.send(&format!("city/{t}/vehicle/{v}/telemetry"), body.to_string())
            .await;
    }
    p.send(
        &format!("city/{other}/vehicle/V0/telemetry"),
        json!({"ts": now, "lat": 41.15, "lon": -8.61, "route": "500"}).to_string(),
    )
    .await;
    p.flush().await;
    eventually(Duration::from_secs(20), "the newest positions", || async {
        let n = db
            .count(&format!(
                "SELECT count(*) FROM device_latest l JOIN devices d ON d.id = l.device_id
                 WHERE d.kind = 'vehicle' AND l.telemetry ? 'lat'
                   AND (d.ext_id <> 'V0' OR l.telemetry_ts = to_timestamp({}))",
                now / 1000
            ))
            .await;
        (n == 3).then_some(())
    })
    .await;
    hub.stop().await;

    let api = TestApi::start(&db.url).await;
    let mut store = db.store().await;
    add_user(&mut store.admin, "transit", "viewer", &[&t], None).await;
    let token = add_token(&mut store.admin, "transit", "feed").await;
    let path = format!("/gtfs-rt/{t}/vehicle-positions.pb");
    let (status, body) = get(api.addr, &path, Some(&token)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let feed = decode_with_google(&body).await;
    assert_eq!(feed["gtfs_realtime_version"], json!("2.0"));
    assert_eq!(feed["incrementality"], json!("FULL_DATASET"));
    let header_ts = feed["timestamp"].as_i64().unwrap();
    assert!(
        (header_ts - now / 1000).abs() < 600,
        "header timestamp {header_ts}"
    );
    let entities = feed["entities"].as_array().unwrap();
    let ids: Vec<&str> = entities.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        ["V0", "V1"],
        "vehicles with a position, of this tenant only"
    );
    let v0 = &entities[0];
    assert_eq!(v0["vehicle_id"], json!("V0"));
    assert_eq!(v0["route_id"], json!("28"));
    assert_eq!(v0["trip_id"], json!("28-0915"));
    assert_eq!(v0["timestamp"], json!(now / 1000));
    assert_eq!(v0["occupancy_percentage"], json!(40));
    let close = |v: &Value, want: f64| (v.as_f64().unwrap() - want).abs() < 1e-4;
    assert!(
        close(&v0["latitude"], 38.7123) && close(&v0["longitude"], -9.1456),
        "{v0}"
    );
    assert!(
        close(&v0["bearing"], 271.5) && close(&v0["speed"], 8.25),
        "{v0}"
    );
    let v1 = &entities[1];
    assert_eq!(v1["route_id"], json!("15E"));
    assert_eq!(v1["trip_id"], Value::Null);
    assert_eq!(v1["timestamp"], json!(now / 1000 - 1));
    assert!(
        close(&v1["latitude"], 38.75) && close(&v1["longitude"], -9.2),
        "{v1}"
    );

    // The same message as JSON, for reading.
    let (status, body) = get(api.addr, &format!("{path}?format=json"), Some(&token)).await;
    assert_eq!(status, 200);
    let j: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(j["header"]["gtfs_realtime_version"], json!("2.0"));
    assert_eq!(j["entity"].as_array().unwrap().len(), 2);

    // Refusals: another tenant's feed, no token, an unknown format.
    let cases = [
        (
            format!("/gtfs-rt/{other}/vehicle-positions.pb"),
            Some(token.as_str()),
            404,
            "no tenant",
        ),
        (path.clone(), None, 401, "sign in first"),
        (
            format!("{path}?format=xml"),
            Some(token.as_str()),
            400,
            "format must be pb or json",
        ),
    ];
    for (path, token, want, says) in cases {
        let (status, body) = get(api.addr, &path, token).await;
        assert_eq!(status, want, "{path}");
        let error: Value = serde_json::from_slice(&body).unwrap();
        assert!(
            error["error"].as_str().unwrap().contains(says),
            "{path}: {error}"
        );
    }
}

#[tokio::test]
async fn a_tenant_listed_in_public_feeds_needs_no_token() {
    let Setup {
        tenant: t,
        db,
        broker,
    } = Setup::start(&[(Kind::Vehicle, 1)]).await;
    let closed = unique("o");
    db.import(&devices(&closed, &[(Kind::Vehicle, 1)])).await;
    let mut hub = HubProcess::spawn_with(
        &db.url,
        broker.port(),
        &unique("hub-"),
        &[("CITYHUB_HTTP_PUBLIC_FEEDS", &format!("{t},nowhere"))],
    );
    hub.wait_connected().await;
    let mut p = Publisher::connect(broker.port()).await;
    let now = now_ms() / 1000 * 1000;
    p.send(
        &format!("city/{t}/vehicle/V0/telemetry"),
        json!({"ts": now, "lat": 38.7, "lon": -9.1, "route": "28"}).to_string(),
    )
    .await;
    p.flush().await;
    let addr: SocketAddr = ([127, 0, 0, 1], hub.http_port).into();
    let feed = eventually(Duration::from_secs(20), "V0 in the public feed", || async {
        let (status, body) = get(addr, &format!("/gtfs-rt/{t}/vehicle-positions.pb"), None).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let feed = decode_with_google(&body).await;
        (feed["entities"].as_array().unwrap().len() == 1).then_some(feed)
    })
    .await;
    assert_eq!(feed["entities"][0]["route_id"], json!("28"));
    // Another tenant's feed still needs a token; a listed slug that is no tenant is 404.
    let (status, _) = get(
        addr,
        &format!("/gtfs-rt/{closed}/vehicle-positions.pb"),
        None,
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = get(addr, "/gtfs-rt/nowhere/vehicle-positions.pb", None).await;
    assert_eq!(status, 404);
    assert!(hub.terminate());
}

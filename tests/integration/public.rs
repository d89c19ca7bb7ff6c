//! The public works feeds: what residents read without signing in, checked with reference
//! GeoJSON and iCalendar readers (tests/python/public_feeds.py), not ours.

use std::process::Stdio;
use std::time::Duration;

use model::Device;
use model::{Kind, WorkOrderState};
use serde_json::{json, Value};
use tests::api::{Auth, Req, TestApi};
use tests::db::{devices, opened_with_order, ts, utc};
use tests::hub::{http_get, HubProcess};
use tests::{eventually, now_ms, unique, Publisher, Setup, TestDb};
use tokio::io::AsyncWriteExt;

/// `body` read by the reference library for `format` (`geojson`, `ics`).
async fn read_with_reference(format: &str, body: &str) -> Value {
    let python = std::env::var("CITYHUB_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "CITYHUB_TEST_PYTHON is not set: run `source scripts/services.sh; source scripts/python.sh` \
             (or scripts/test.sh) so the feeds can be read with reference libraries"
        )
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/public_feeds.py");
    let mut child = tokio::process::Command::new(&python)
        .arg(script)
        .arg(format)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .await
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "the reference {format} reader refused the feed: {}\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Lamps on a named street, with the other devices the helper makes.
fn city(tenant: &str) -> Vec<Device> {
    let mut all = devices(tenant, &[(Kind::Light, 4), (Kind::Cabinet, 1)]);
    for d in all.iter_mut().filter(|d| d.kind == Kind::Light) {
        let street = if d.id == "L3" {
            "Rua Augusta"
        } else {
            "Rua do Ouro"
        };
        d.props.insert("street".into(), json!(street));
    }
    all
}

/// Faults grouped by street, with the least advanced repair and the latest deadline;
/// planned works with their dates; every word of a person (assignee, team, the reason and
/// author of a maintenance window) and every device id left out; GeoJSON and iCalendar
/// that the reference libraries read; a tenant not published and a name that is no
/// tenant answered alike.
#[tokio::test]
async fn a_published_tenants_works_are_grouped_dated_and_name_nobody() {
    let db = TestDb::new().await;
    let t = unique("t");
    let hidden = unique("h");
    db.import(&city(&t)).await;
    db.import(&devices(&hidden, &[(Kind::Light, 1)])).await;
    let mut store = db.store().await;
    let ids = db.device_ids(&t).await;
    let now = model::Timestamp::now().to_datetime();
    let hour = chrono::Duration::hours(1);
    let at = |h: i32| (now - hour * h).to_rfc3339();
    store
        .detection
        .apply_outage_changes(&[
            opened_with_order(ids["L0"], "lamp_failure", &at(5), "lighting", 3_600),
            opened_with_order(ids["L1"], "lamp_failure", &at(3), "lighting", 7_200),
            opened_with_order(ids["L3"], "lamp_failure", &at(1), "lighting", 600),
            // The cabinet without mains: dark where its lamps are, on both streets.
            opened_with_order(ids["C0"], "cabinet_supply_loss", &at(2), "power", 1_800),
        ])
        .await
        .unwrap();
    // L1's repair is under way: the street is still "reported" while L0's is not.
    let orders = store.admin.work_orders(None).await.unwrap();
    let l1 = orders.iter().find(|w| w.ext_id == "L1").unwrap().id;
    store
        .detection
        .transition_work_order(
            l1,
            WorkOrderState::Assigned,
            "dispatch",
            None,
            ts(&at(0)),
            Some("Ana Pereira"),
        )
        .await
        .unwrap();
    let (starts, ends) = (now + hour * 24, now + hour * 30);
    store
        .admin
        .add_maintenance_window(
            &t,
            "cabinet",
            "C0",
            starts,
            ends,
            "Ana Pereira rewires it",
            "ana",
        )
        .await
        .unwrap();

    let api = TestApi::start_configured(&db.url, |_| {}).await;
    api.state
        .public_pages()
        .set_tenants(vec![t.clone(), "nowhere".into()]);
    let path = format!("/public/{t}/works.geojson");
    let reply = api.call(Req::get(&path, &Auth::None)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/geo+json"));
    assert_eq!(reply.header("cache-control"), Some("public, max-age=10"));
    for word in [
        "Ana", "Pereira", "ana", "lighting", "dispatch", "rewires", "\"L0\"", "\"L1\"", "\"C0\"",
    ] {
        assert!(!reply.body.contains(word), "`{word}` in {}", reply.body);
    }
    let feed = read_with_reference("geojson", &reply.body).await;
    assert_eq!(feed["tenant"], json!(t));
    assert_eq!(
        feed["name"],
        json!(t),
        "imported tenants are named by their slug"
    );
    assert_eq!(feed["districts"], json!(["centre"]));
    assert_eq!(
        feed["subscriptions"],
        Value::Null,
        "the hub sends no e-mail"
    );
    let features = feed["features"].as_array().unwrap();
    assert!(
        features
            .iter()
            .all(|f| f["properties"].get("devices").is_none()),
        "no device ids unless the tenant allows them: {feed}"
    );
    // Each item has a name of its own, which a page follows from one answer to the next.
    let mut keys: Vec<&str> = features
        .iter()
        .map(|f| f["id"].as_str().unwrap_or_else(|| panic!("no id: {f}")))
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), features.len(), "{keys:?}");
    let of = |street: &str, cause: &str| {
        features
            .iter()
            .find(|f| {
                f["properties"]["street"] == json!(street)
                    && f["properties"]["cause"] == json!(cause)
            })
            .unwrap_or_else(|| panic!("no {street} ({cause}): {feed}"))["properties"]
            .clone()
    };
    let of = |street: &str| of(street, "lamp");
    let ouro = of("Rua do Ouro");
    let end = |deadline_s: i64, opened_h: i32| {
        json!((utc(&at(opened_h)) + chrono::Duration::seconds(deadline_s))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    };
    assert_eq!(ouro["kind"], json!("dark_street"));
    assert_eq!(ouro["cause"], json!("lamp"));
    assert_eq!(ouro["count"], json!(2));
    assert_eq!(
        ouro["status"],
        json!("reported"),
        "the least advanced: {ouro}"
    );
    assert_eq!(
        ouro["since"],
        json!(utc(&at(5)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    );
    // The later of 5 h ago + 1 h and 3 h ago + 2 h.
    assert_eq!(ouro["expected_end"], end(7_200, 3));
    assert_eq!(ouro["district"], json!("centre"));
    assert_eq!(of("Rua Augusta")["count"], json!(1));
    // The cabinet's four lamps: three on one street, one on the other.
    let unpowered = |street: &str| {
        features.iter().find(|f| {
            f["properties"]["street"] == json!(street)
                && f["properties"]["cause"] == json!("power_supply")
        })
    };
    let ouro_dark = &unpowered("Rua do Ouro").unwrap_or_else(|| panic!("{feed}"))["properties"];
    assert_eq!(ouro_dark["count"], json!(3));
    assert_eq!(ouro_dark["expected_end"], end(1_800, 2));
    assert_eq!(
        unpowered("Rua Augusta").unwrap()["properties"]["count"],
        json!(1)
    );
    // Places to about 100 m: no house is pointed at.
    for f in features.iter().filter(|f| !f["geometry"].is_null()) {
        for c in f["geometry"]["coordinates"].as_array().unwrap() {
            let v = c.as_f64().unwrap();
            assert!(
                ((v * 1000.0).round() / 1000.0 - v).abs() < 1e-9,
                "{v} in {f}"
            );
        }
    }
    let works: Vec<&Value> = features
        .iter()
        .filter(|f| f["properties"]["kind"] == json!("planned_works"))
        .collect();
    assert_eq!(works.len(), 1, "{feed}");
    let w = &works[0]["properties"];
    assert_eq!(w["status"], json!("accepted"), "not started yet: {w}");
    let secs = |t: chrono::DateTime<chrono::Utc>| {
        json!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    };
    assert_eq!(
        (&w["since"], &w["expected_end"]),
        (&secs(starts), &secs(ends))
    );
    // The cabinet and its four lamps; a point among them.
    assert_eq!(w["count"], json!(5));
    assert_eq!(works[0]["geometry"]["type"], json!("Point"));
    assert_eq!(features.len(), 5, "{feed}");

    // The same planned works in residents' calendars.
    let reply = api
        .call(Req::get(&format!("/public/{t}/works.ics"), &Auth::None))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.header("content-type"),
        Some("text/calendar; charset=utf-8")
    );
    assert!(!reply.body.contains("Ana") && !reply.body.contains("rewires"));
    let calendar = read_with_reference("ics", &reply.body).await;
    let events = calendar["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{calendar}");
    let parse = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    let second = |t: chrono::DateTime<chrono::Utc>| t.timestamp();
    assert_eq!(second(parse(&events[0]["start"])), second(starts));
    assert_eq!(second(parse(&events[0]["end"])), second(ends));
    // Its devices are all in one district, on two streets.
    assert_eq!(
        events[0]["summary"],
        json!("Planned works: centre"),
        "{calendar}"
    );

    // Not published, no such tenant, a published name that is no tenant: one answer.
    for other in [
        hidden.as_str(),
        "no-such-tenant",
        "nowhere",
        &"x".repeat(5000),
    ] {
        for file in ["works.geojson", "works.ics"] {
            let reply = api
                .call(Req::get(&format!("/public/{other}/{file}"), &Auth::None))
                .await;
            assert_eq!(reply.status, 404, "{other}/{file}: {}", reply.body);
            assert_eq!(
                reply.json()["error"],
                json!("this tenant has no public page")
            );
            // A resident's web page can read the refusal too.
            assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
        }
    }
    // There are no query parameters: one is refused, as everywhere in the API, and
    // cannot change the shared answer.
    let reply = api
        .call(Req::get(&format!("{path}?tenant={hidden}"), &Auth::None))
        .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(
        reply.json()["error"].as_str().unwrap().contains("tenant"),
        "{}",
        reply.body
    );
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    // A NUL is refused before anything is looked up.
    let reply = api
        .call(Req::get("/public/a%00b/works.geojson", &Auth::None))
        .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.json()["error"].as_str().unwrap().contains("NUL"));
    // Another path under /public is the API's 404, not the dashboard's page.
    let reply = api
        .call(Req::get(&format!("/public/{t}/other"), &Auth::None))
        .await;
    assert_eq!(reply.status, 404);
    assert!(reply.json()["error"].is_string());

    // A tenant that allows it: each fault names its devices (a cabinet without mains, its
    // lamps), and the feed says where residents subscribe once the hub sends e-mail.
    api.state.public_pages().set_device_ids(vec![t.clone()]);
    api.state.set_email_enabled(true);
    tokio::time::sleep(standards_fresh()).await;
    let feed = api.call(Req::get(&path, &Auth::None)).await.json();
    assert_eq!(
        feed["subscriptions"],
        json!(format!("/public/{t}/subscriptions"))
    );
    let named: Vec<(String, Value)> = feed["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                format!(
                    "{} {}",
                    f["properties"]["street"].as_str().unwrap_or("-"),
                    f["properties"]["cause"].as_str().unwrap_or("-")
                ),
                f["properties"]
                    .get("devices")
                    .cloned()
                    .unwrap_or(Value::Null),
            )
        })
        .collect();
    assert!(
        named.contains(&("Rua do Ouro lamp".into(), json!(["L0", "L1"]))),
        "{named:?}"
    );
    assert!(
        named.contains(&("Rua do Ouro power_supply".into(), json!(["L0", "L1", "L2"]))),
        "{named:?}"
    );
    assert!(
        named.contains(&("Rua Augusta power_supply".into(), json!(["L3"]))),
        "{named:?}"
    );
}

/// An address that asks too often is told to wait, and the answer it had is shared, not
/// built again for each call.
#[tokio::test]
async fn one_address_is_limited_and_answers_are_shared() {
    let db = TestDb::new().await;
    let t = unique("t");
    db.import(&city(&t)).await;
    let api = TestApi::start_configured(&db.url, |_| {}).await;
    api.state.public_pages().set_tenants(vec![t.clone()]);
    let path = format!("/public/{t}/works.geojson");
    let first = api.call(Req::get(&path, &Auth::None)).await;
    assert_eq!(first.status, 200);
    // An outage written now is not in an answer built a moment ago.
    let ids = db.device_ids(&t).await;
    db.store()
        .await
        .detection
        .apply_outage_changes(&[opened_with_order(
            ids["L0"],
            "lamp_failure",
            &model::Timestamp::now().to_datetime().to_rfc3339(),
            "lighting",
            600,
        )])
        .await
        .unwrap();
    let mut answered = 1;
    let refused = loop {
        let reply = api.call(Req::get(&path, &Auth::None)).await;
        if reply.status != 200 {
            break reply;
        }
        assert_eq!(reply.body, first.body, "shared while fresh");
        answered += 1;
        assert!(answered <= 120, "never limited");
    };
    assert_eq!(answered, 120, "the per-address budget");
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!(refused.header("retry-after").is_some());
    assert_eq!(
        refused.header("access-control-expose-headers"),
        Some("retry-after")
    );
    // Another address is not limited by the first.
    let other = api
        .call_from(
            std::net::Ipv4Addr::new(127, 0, 0, 2),
            Req::get(&path, &Auth::None),
        )
        .await;
    assert_eq!(other.status, 200);
}

/// Through the whole hub: a cabinet that loses its mains is a dark street on the
/// published feed within seconds, without signing in, and is gone once the mains are back.
#[tokio::test]
async fn a_dark_street_the_rules_find_shows_on_the_public_feed_and_goes_when_fixed() {
    let Setup {
        tenant: t,
        db,
        broker,
    } = Setup::start(&[(Kind::Cabinet, 1)]).await;
    let mut hub = HubProcess::spawn_with(
        &db.url,
        broker.port(),
        &unique("hub-"),
        &[("CITYHUB_PUBLIC_TENANTS", &t)],
    );
    hub.wait_connected().await;
    let mut p = Publisher::connect(broker.port()).await;
    let send = |supply: bool, at: i64| {
        (
            format!("city/{t}/cabinet/C0/telemetry"),
            json!({"ts": at, "supply": supply, "voltage_v": if supply { 231 } else { 0 }})
                .to_string(),
        )
    };
    let start = now_ms();
    let (topic, body) = send(false, start);
    p.send(&topic, body).await;
    p.flush().await;
    let path = format!("/public/{t}/works.geojson");
    let feed = |port| {
        let path = path.clone();
        async move {
            let raw = http_get(port, &path).ok()?;
            let body = raw.split_once("\r\n\r\n")?.1.to_owned();
            serde_json::from_str::<Value>(&body).ok()
        }
    };
    let dark = eventually(Duration::from_secs(30), "the dark street", || async {
        let f = feed(hub.http_port).await?;
        (f["features"].as_array()?.len() == 1).then_some(f)
    })
    .await;
    let p0 = &dark["features"][0]["properties"];
    assert_eq!(p0["kind"], json!("dark_street"));
    assert_eq!(p0["cause"], json!("power_supply"));
    let (topic, body) = send(true, start + 2_000);
    p.send(&topic, body).await;
    p.flush().await;
    // Answers are shared for 10 s: gone within that and the rules' time.
    eventually(Duration::from_secs(30), "the street lit again", || async {
        let f = feed(hub.http_port).await?;
        f["features"].as_array()?.is_empty().then_some(())
    })
    .await;
    hub.kill_9();
}

/// The status page is served for a tenant that is published and exists, under its own
/// address only; its map holds the districts and streets around that tenant's devices,
/// not another city's, nor the bus routes.
#[tokio::test]
async fn the_status_page_and_its_map_are_the_tenants_own() {
    let db = TestDb::new().await;
    let (t, empty) = (unique("t"), unique("e"));
    db.import(&devices(&t, &[(Kind::Light, 3)])).await;
    // A tenant with no devices: nothing of the base map is around it.
    db.client
        .execute(
            "INSERT INTO tenants (slug, name) VALUES ($1, $1) ON CONFLICT DO NOTHING",
            &[&empty],
        )
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(unique("public-app-"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "<!doctype html><title>app</title>").unwrap();
    std::fs::write(
        dir.join("public.html"),
        "<!doctype html><title>status</title>",
    )
    .unwrap();
    let square = |lon: f64, lat: f64| {
        json!({"type": "Polygon", "coordinates": [[[lon, lat], [lon + 0.01, lat],
            [lon + 0.01, lat + 0.01], [lon, lat + 0.01], [lon, lat]]]})
    };
    let feature = |layer: &str, name: &str, geometry: Value| {
        json!({"type": "Feature", "geometry": geometry,
               "properties": {"layer": layer, "name": name}})
    };
    let map = json!({"type": "FeatureCollection", "features": [
        feature("district", "Baixa", square(-9.145, 38.705)),
        feature("street", "Rua do Ouro", json!({"type": "LineString",
            "coordinates": [[-9.141, 38.709], [-9.139, 38.711]]})),
        feature("route", "28", json!({"type": "LineString",
            "coordinates": [[-9.141, 38.709], [-9.139, 38.711]]})),
        feature("district", "Another city", square(2.35, 48.85)),
    ]});
    let base_map = dir.join("map.geojson");
    std::fs::write(&base_map, map.to_string()).unwrap();
    let app = dir.clone();
    let api = TestApi::start_configured(&db.url, |c| {
        c.dashboard.dir = app;
        c.dashboard.base_map = Some(base_map);
    })
    .await;
    api.state
        .public_pages()
        .set_tenants(vec![t.clone(), empty.clone(), "nowhere".into()]);

    let page = api
        .call(Req::get(&format!("/public/{t}/"), &Auth::None))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<title>status</title>"), "{}", page.body);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.header("content-security-policy").is_some());
    let moved = api
        .call(Req::get(&format!("/public/{t}"), &Auth::None))
        .await;
    assert_eq!(moved.status, 308);
    assert_eq!(
        moved.header("location"),
        Some(format!("/public/{t}/").as_str())
    );
    // Published by mistake but no tenant; not published: the same 404.
    for path in ["/public/nowhere/", "/public/someone-else/"] {
        let reply = api.call(Req::get(path, &Auth::None)).await;
        assert_eq!(reply.status, 404, "{path}: {}", reply.body);
        assert_eq!(reply.error(), "this tenant has no public page");
    }
    // At the root the page would find no feeds beside it: there it is the app's.
    let root = api.call(Req::get("/public.html", &Auth::None)).await;
    assert!(root.body.contains("<title>app</title>"), "{}", root.body);

    let reply = api
        .call(Req::get(&format!("/public/{t}/map.geojson"), &Auth::None))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/geo+json"));
    let names: Vec<String> = read_with_reference("geojson", &reply.body).await["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["properties"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["Baixa", "Rua do Ouro"]);
    let reply = api
        .call(Req::get(
            &format!("/public/{empty}/map.geojson"),
            &Auth::None,
        ))
        .await;
    assert_eq!(reply.json()["features"], json!([]), "{}", reply.body);
    let reply = api
        .call(Req::get(
            &format!("/public/{t}/map.geojson?x=1"),
            &Auth::None,
        ))
        .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// How long the public answers are shared, and a little more.
fn standards_fresh() -> Duration {
    api::standards::public_works::FRESH_FOR + Duration::from_millis(200)
}

//! Each kind's payload, single and array, lands in its table with the right values.

use std::time::Duration;

use model::Kind;
use tests::hub::ingest_config;
use tests::{eventually, now_ms, unique, InProcessHub, Publisher, Setup, TestBroker, TestDb};

struct City {
    db: TestDb,
    broker: TestBroker,
    hub: InProcessHub,
    tenant: String,
}

async fn city() -> City {
    let Setup { tenant, db, broker } = Setup::start(&[
        (Kind::Light, 3),
        (Kind::Cabinet, 1),
        (Kind::Meter, 2),
        (Kind::Vehicle, 1),
    ])
    .await;
    let hub = InProcessHub::start(ingest_config(broker.port(), &unique("hub-")), &db.url).await;
    City {
        db,
        broker,
        hub,
        tenant,
    }
}

#[tokio::test]
async fn every_kind_single_and_array_lands_in_its_table() {
    let c = city().await;
    let t = &c.tenant;
    let ts = now_ms();
    let mut p = Publisher::connect(c.broker.port()).await;
    p.send(&format!("city/{t}/light/L0/telemetry"), format!(r#"{{"ts":{ts},"on":true,"dim":60,"power_w":41.5,"voltage_v":229.5,"current_a":0.19,"pf":0.95,"energy_wh":1200,"burn_hours":3001.5,"lux":3,"fault":"driver_failure","vendor":{{"fw":"1.2"}}}}"#)).await;
    p.send(
        &format!("city/{t}/light/L1/telemetry"),
        format!(
            r#"[{{"ts":{},"on":false}},{{"ts":{},"on":true,"dim":100}}]"#,
            ts - 60_000,
            ts
        ),
    )
    .await;
    p.send(&format!("city/{t}/cabinet/C0/telemetry"), format!(r#"{{"ts":"{}","supply":false,"contactor_on":true,"door_open":true,"power_kw":3.25,"voltage_v":231,"current_a":14.1,"energy_kwh":5120.5}}"#, chrono::DateTime::from_timestamp_millis(ts).unwrap().to_rfc3339())).await;
    p.send(&format!("city/{t}/meter/M0/telemetry"), format!(r#"{{"ts":{ts},"medium":"water","total":123.456,"flow_m3h":0.25,"pressure_bar":3.1,"battery_pct":87,"tamper":false,"reverse_flow":true}}"#)).await;
    p.send(&format!("city/{t}/meter/M1/telemetry"), format!(r#"[{{"ts":{},"medium":"heat","total":10,"power_kw":4.5,"temp_supply_c":70.5,"temp_return_c":40.25}},{{"ts":{ts},"medium":"heat","total":11}}]"#, ts - 1000)).await;
    p.send(&format!("city/{t}/vehicle/V0/telemetry"), format!(r#"{{"ts":{ts},"lat":38.7101,"lon":-9.1402,"speed_mps":11.5,"bearing_deg":270,"route":"28","trip":"28-0712","occupancy_pct":55,"odometer_m":120345.5}}"#)).await;
    p.send(
        &format!("city/{t}/light/L2/event"),
        format!(r#"{{"ts":{ts},"code":"door_open","detail":"pole door"}}"#),
    )
    .await;
    p.send(
        &format!("city/{t}/light/L2/status"),
        r#"{"state":"offline"}"#,
    )
    .await;
    p.send(&format!("city/{t}/light/L2/cmd/ack"), format!(r#"{{"id":"5b0f8f2e-6a55-4f7e-9a43-3f1b1c2d3e4f","ts":{ts},"status":"rejected","detail":"dim not supported"}}"#)).await;
    p.flush().await;

    let db = &c.db;
    db.wait_count("SELECT count(*) FROM light_readings", 3)
        .await;
    db.wait_count("SELECT count(*) FROM cabinet_readings", 1)
        .await;
    db.wait_count("SELECT count(*) FROM meter_readings", 3)
        .await;
    db.wait_count("SELECT count(*) FROM vehicle_readings", 1)
        .await;
    db.wait_count("SELECT count(*) FROM device_events", 1).await;
    db.wait_count("SELECT count(*) FROM device_status_log", 1)
        .await;
    db.wait_count("SELECT count(*) FROM command_acks", 1).await;
    assert_eq!(db.count("SELECT count(*) FROM dead_letters").await, 0);

    let r = db.client.query_one(
        r#"SELECT r."on", r.dim, r.power_w, r.voltage_v, r.pf, r.energy_wh, r.fault, r.extra->'vendor'->>'fw', (extract(epoch FROM r.ts) * 1000)::bigint
           FROM light_readings r JOIN devices d ON d.id = r.device_id WHERE d.ext_id = 'L0'"#, &[]).await.unwrap();
    assert!(r.get::<_, bool>(0));
    assert_eq!(r.get::<_, f32>(1), 60.0);
    assert_eq!(r.get::<_, f64>(2), 41.5);
    assert_eq!(r.get::<_, f64>(3), 229.5);
    assert_eq!(r.get::<_, f32>(4), 0.95);
    assert_eq!(r.get::<_, f64>(5), 1200.0);
    assert_eq!(r.get::<_, String>(6), "driver_failure");
    assert_eq!(r.get::<_, String>(7), "1.2");
    assert_eq!(r.get::<_, i64>(8), ts);

    let r = db
        .client
        .query_one(
            "SELECT supply, contactor_on, door_open, power_kw, energy_kwh FROM cabinet_readings",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            r.get::<_, bool>(0),
            r.get::<_, bool>(1),
            r.get::<_, bool>(2)
        ),
        (false, true, true)
    );
    assert_eq!((r.get::<_, f64>(3), r.get::<_, f64>(4)), (3.25, 5120.5));

    let r = db.client.query_one(
        "SELECT r.medium, total, flow_m3h, battery_pct, tamper, reverse_flow FROM meter_readings r JOIN devices d ON d.id = r.device_id WHERE d.ext_id = 'M0'", &[]).await.unwrap();
    assert_eq!(r.get::<_, String>(0), "water");
    assert_eq!((r.get::<_, f64>(1), r.get::<_, f64>(2)), (123.456, 0.25));
    assert_eq!(r.get::<_, f32>(3), 87.0);
    assert_eq!((r.get::<_, bool>(4), r.get::<_, bool>(5)), (false, true));
    let heat: Vec<f64> = db.client.query(
        "SELECT total FROM meter_readings r JOIN devices d ON d.id = r.device_id WHERE d.ext_id = 'M1' ORDER BY ts", &[]).await.unwrap()
        .iter().map(|r| r.get(0)).collect();
    assert_eq!(heat, [10.0, 11.0]);

    let r = db.client.query_one("SELECT lat, lon, speed_mps, bearing_deg, route, trip, occupancy_pct, odometer_m FROM vehicle_readings", &[]).await.unwrap();
    assert_eq!((r.get::<_, f64>(0), r.get::<_, f64>(1)), (38.7101, -9.1402));
    assert_eq!((r.get::<_, f32>(2), r.get::<_, f32>(3)), (11.5, 270.0));
    assert_eq!(
        (r.get::<_, String>(4), r.get::<_, String>(5)),
        ("28".into(), "28-0712".into())
    );
    assert_eq!((r.get::<_, f32>(6), r.get::<_, f64>(7)), (55.0, 120345.5));

    let r = db
        .client
        .query_one("SELECT code, detail FROM device_events", &[])
        .await
        .unwrap();
    assert_eq!(
        (r.get::<_, String>(0), r.get::<_, String>(1)),
        ("door_open".into(), "pole door".into())
    );
    let r = db
        .client
        .query_one("SELECT id::text, status, detail FROM command_acks", &[])
        .await
        .unwrap();
    assert_eq!(
        r.get::<_, String>(0),
        "5b0f8f2e-6a55-4f7e-9a43-3f1b1c2d3e4f"
    );
    assert_eq!(
        (r.get::<_, String>(1), r.get::<_, String>(2)),
        ("rejected".into(), "dim not supported".into())
    );

    // Latest state: the newest reading of the array, the status from the last will. It is
    // written after the commit that acknowledges the readings, so it may trail a moment.
    let latest = "SELECT l.telemetry, (extract(epoch FROM l.telemetry_ts) * 1000)::bigint FROM device_latest l
                  JOIN devices d ON d.id = l.device_id WHERE d.ext_id = 'L1'";
    let (telemetry, at) = eventually(Duration::from_secs(10), "L1's latest state", || async {
        let r = db.client.query_opt(latest, &[]).await.unwrap()?;
        Some((r.get::<_, serde_json::Value>(0), r.get::<_, i64>(1)))
    })
    .await;
    assert_eq!(telemetry, serde_json::json!({"on": true, "dim": 100.0}));
    assert_eq!(at, ts);
    let online = eventually(Duration::from_secs(10), "L2's status", || async {
        db.client
            .query_opt("SELECT l.online FROM device_latest l JOIN devices d ON d.id = l.device_id WHERE d.ext_id = 'L2'", &[])
            .await
            .unwrap()
            .map(|r| r.get::<_, Option<bool>>(0))
    })
    .await;
    assert_eq!(online, Some(false));
    c.hub.stop().await;
}

#[tokio::test]
async fn an_older_reading_does_not_overwrite_the_latest_state() {
    let c = city().await;
    let t = &c.tenant;
    let ts = now_ms();
    let mut p = Publisher::connect(c.broker.port()).await;
    p.send(
        &format!("city/{t}/light/L0/telemetry"),
        format!(r#"{{"ts":{ts},"dim":80}}"#),
    )
    .await;
    p.flush().await;
    c.db.wait_count("SELECT count(*) FROM light_readings", 1)
        .await;
    let first_update: chrono::DateTime<chrono::Utc> =
        eventually(Duration::from_secs(10), "the latest state", || async {
            c.db.client
                .query_opt("SELECT updated_at FROM device_latest", &[])
                .await
                .unwrap()
                .map(|r| r.get(0))
        })
        .await;
    // A backlog arrives late, after the fresh reading was committed.
    p.send(
        &format!("city/{t}/light/L0/telemetry"),
        format!(
            r#"[{{"ts":{},"dim":10}},{{"ts":{},"dim":20}}]"#,
            ts - 2000,
            ts - 1000
        ),
    )
    .await;
    p.flush().await;
    c.db.wait_count("SELECT count(*) FROM light_readings", 3)
        .await;
    // Once the updater has had its round for the backlog, the older values must not have won.
    eventually(
        Duration::from_secs(10),
        "the backlog's latest-state round",
        || async {
            let at: chrono::DateTime<chrono::Utc> =
                c.db.client
                    .query_one("SELECT updated_at FROM device_latest", &[])
                    .await
                    .unwrap()
                    .get(0);
            (at > first_update).then_some(())
        },
    )
    .await;
    let dim: serde_json::Value =
        c.db.client
            .query_one("SELECT telemetry->'dim' FROM device_latest", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(dim, serde_json::json!(80.0));
    c.hub.stop().await;
}

//! Outages through the whole stack: readings -> ingest -> rules -> outages table.

use std::time::Duration;

use model::Kind;
use tests::{eventually, now_ms, unique, HubProcess, Publisher, Setup, TestDb};

/// 23:00 UTC, between 13 and 37 hours ago, in Unix ms: night in Lisbon, where the test
/// devices stand. The tests send readings up to a few hours after it, and the hub refuses
/// readings from the future: yesterday's 23:00 would not do just after midnight.
fn last_night_ms() -> i64 {
    let now = chrono::Utc::now().timestamp_millis();
    let day = 86_400_000;
    (now - day - 12 * 3_600_000).div_euclid(day) * day + 23 * 3_600_000
}

/// A rules file of `rules` in a directory of its own.
fn rules_file(rules: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique("rules-"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rules.toml");
    std::fs::write(&file, rules).unwrap();
    file
}

/// The hub on `setup`'s database and broker with the rules file `file` (and `settings`),
/// connected to the broker.
async fn hub_with_rules(
    setup: &Setup,
    file: &std::path::Path,
    settings: &[(&str, &str)],
) -> HubProcess {
    let mut env = vec![("CITYHUB_RULES_FILE", file.to_str().unwrap())];
    env.extend_from_slice(settings);
    let mut hub = HubProcess::spawn_with(&setup.db.url, setup.broker.port(), &unique("hub-"), &env);
    hub.wait_connected().await;
    hub
}

async fn outages(db: &TestDb) -> Vec<(String, String, String)> {
    db.client
        .query(
            "SELECT d.ext_id, o.kind, o.state FROM outages o JOIN devices d ON d.id = o.device_id ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test]
async fn readings_become_outages_once_each_even_across_a_kill_9() {
    let Setup {
        tenant: t,
        db,
        broker,
    } = Setup::start(&[(Kind::Cabinet, 1), (Kind::Light, 4)]).await;
    let mut hub = HubProcess::spawn(&db.url, broker.port(), &unique("hub-"));
    hub.wait_connected().await;
    let mut p = Publisher::connect(broker.port()).await;
    let night = last_night_ms();
    let lamp = |d: &str| format!("city/{t}/light/{d}/telemetry");
    let minute = 60_000;

    // L1 burns on paper but draws 2 W of 70 W, reading after reading.
    for k in 0..3 {
        p.send(
            &lamp("L1"),
            format!(
                r#"{{"ts":{},"on":true,"power_w":2,"voltage_v":230}}"#,
                night + k * 15 * minute
            ),
        )
        .await;
    }
    p.flush().await;
    let want = vec![(
        String::from("L1"),
        String::from("lamp_failure"),
        String::from("open"),
    )];
    eventually(Duration::from_secs(15), "L1's lamp failure", || async {
        (outages(&db).await == want).then_some(())
    })
    .await;

    // The cabinet loses its supply; its other lamps go dark: one outage, on the cabinet.
    let cabinet = format!("city/{t}/cabinet/C0/telemetry");
    p.send(
        &cabinet,
        format!(
            r#"{{"ts":{},"supply":false,"power_kw":0,"voltage_v":0}}"#,
            night + 50 * minute
        ),
    )
    .await;
    for k in 0..3 {
        for d in ["L0", "L2", "L3"] {
            p.send(
                &lamp(d),
                format!(
                    r#"{{"ts":{},"on":true,"power_w":0,"voltage_v":0}}"#,
                    night + (55 + 15 * k) * minute
                ),
            )
            .await;
        }
    }
    p.flush().await;
    eventually(Duration::from_secs(15), "the cabinet's outage", || async {
        outages(&db)
            .await
            .iter()
            .any(|o| o.1 == "cabinet_supply_loss")
            .then_some(())
    })
    .await;

    // kill -9, restart, and the same faults keep coming: nothing is opened twice.
    hub.kill_9();
    hub.restart();
    hub.wait_connected().await;
    p.send(
        &lamp("L1"),
        format!(
            r#"{{"ts":{},"on":true,"power_w":2,"voltage_v":230}}"#,
            night + 120 * minute
        ),
    )
    .await;
    p.send(
        &cabinet,
        format!(
            r#"{{"ts":{},"supply":false,"power_kw":0,"voltage_v":0}}"#,
            night + 121 * minute
        ),
    )
    .await;
    p.flush().await;
    eventually(
        Duration::from_secs(15),
        "the readings after the restart",
        || async {
            (db.count("SELECT count(*) FROM light_readings").await == 3 + 9 + 1).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await; // the rules' turn on the last batch
    assert_eq!(
        outages(&db).await,
        [
            ("C0".into(), "cabinet_supply_loss".into(), "open".into()),
            ("L1".into(), "lamp_failure".into(), "open".into()),
        ],
        "one outage each; the dark lamps of the cabinet raised nothing"
    );
    let events = db
        .count("SELECT count(*) FROM outage_events WHERE transition = 'opened'")
        .await;
    assert_eq!(events, 2, "every opening is in the audit trail");

    // The supply comes back: the cabinet's outage is resolved, with its event.
    p.send(
        &cabinet,
        format!(
            r#"{{"ts":{},"supply":true,"power_kw":0.2,"voltage_v":230}}"#,
            night + 130 * minute
        ),
    )
    .await;
    p.flush().await;
    eventually(
        Duration::from_secs(15),
        "the cabinet's outage resolved",
        || async {
            outages(&db)
                .await
                .contains(&("C0".into(), "cabinet_supply_loss".into(), "resolved".into()))
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        db.count("SELECT count(*) FROM outage_events WHERE transition = 'resolved'")
            .await,
        1
    );
    assert!(hub.terminate());
}

async fn outage_kinds(db: &TestDb, kind: &str) -> Vec<String> {
    outages(db)
        .await
        .into_iter()
        .filter(|o| o.1 == kind && o.2 == "open")
        .map(|o| o.0)
        .collect()
}

#[tokio::test]
async fn a_changed_rules_file_applies_without_restart_and_a_bad_one_is_refused() {
    let setup = Setup::start(&[(Kind::Light, 2)]).await;
    let file = rules_file("[voltage]\nmax_v = 253.0\n");
    let mut hub = hub_with_rules(&setup, &file, &[]).await;
    let Setup {
        tenant: t,
        db,
        broker,
    } = setup;
    let mut p = Publisher::connect(broker.port()).await;
    let night = last_night_ms();
    let reading = |volts: f64, k: i64| {
        format!(
            r#"{{"ts":{},"on":true,"power_w":70,"voltage_v":{volts}}}"#,
            night + k * 60_000
        )
    };
    let lamp = |d: &str| format!("city/{t}/light/{d}/telemetry");
    p.send(&lamp("L0"), reading(250.0, 0)).await;
    p.flush().await;
    db.wait_count("SELECT count(*) FROM light_readings", 1)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(outage_kinds(&db, "voltage_out_of_range").await.is_empty());

    // Tighter band: the next 250 V reading is out of range, with no restart.
    std::fs::write(&file, "[voltage]\nmax_v = 245.0\n").unwrap();
    let reloads = |outcome: &'static str| {
        let hub = &hub;
        move || {
            let n = hub
                .metric(&format!(
                    "cityhub_rules_reloads_total{{outcome=\"{outcome}\"}}"
                ))
                .unwrap_or(0.0);
            async move { (n >= 1.0).then_some(()) }
        }
    };
    eventually(Duration::from_secs(10), "the reload", reloads("applied")).await;
    p.send(&lamp("L0"), reading(250.0, 1)).await;
    p.flush().await;
    eventually(Duration::from_secs(10), "the tighter band", || async {
        (outage_kinds(&db, "voltage_out_of_range").await == ["L0"]).then_some(())
    })
    .await;

    // A bad file is refused: the hub runs on with the rules in force (245 V).
    std::fs::write(&file, "[voltage]\nmin_v = 300.0\n").unwrap();
    eventually(Duration::from_secs(10), "the refusal", reloads("refused")).await;
    assert!(hub.is_running());
    p.send(&lamp("L1"), reading(250.0, 2)).await;
    p.flush().await;
    eventually(Duration::from_secs(10), "the rules in force", || async {
        (outage_kinds(&db, "voltage_out_of_range").await == ["L0", "L1"]).then_some(())
    })
    .await;
    assert!(hub.terminate());
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

#[tokio::test]
async fn commands_set_expectations_and_repairs_are_verified_or_reopened_by_telemetry() {
    let setup = Setup::start(&[(Kind::Light, 3)]).await;
    // Readings from last night would be silent by the wall clock: silence is off here.
    let file = rules_file("[work_orders]\nverify_hold_s = 1800\n[silence]\nintervals = 1000.0\n");
    let mut hub = hub_with_rules(&setup, &file, &[]).await;
    let Setup {
        tenant: t,
        db,
        broker,
    } = setup;
    let ids = db.device_ids(&t).await;
    let mut store = db.store().await;
    let night = last_night_ms();
    let at = |minutes: i64| model::Timestamp::from_unix_ms(night + minutes * 60_000).unwrap();

    // An operator switched L0 off for the night; the lamp acknowledged it.
    const ID: &str = "6f1c3c9e-8a5e-4f0e-9a57-3c0f2b1d7e01";
    let body = serde_json::json!({"id": ID, "action": "set_light", "on": false});
    store
        .admin
        .record_command(
            ID,
            ids["L0"],
            "set_light",
            &body,
            at(-5).to_datetime(),
            None,
            "operator",
        )
        .await
        .unwrap();
    let mut p = Publisher::connect(broker.port()).await;
    p.send(
        &format!("city/{t}/light/L0/cmd/ack"),
        format!(
            r#"{{"id":"{ID}","ts":{},"status":"ok"}}"#,
            night - 4 * 60_000
        ),
    )
    .await;
    p.flush().await;
    eventually(Duration::from_secs(10), "the acknowledgement", || async {
        (db.count("SELECT count(*) FROM commands WHERE status = 'acked'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    let lamp = |d: &str| format!("city/{t}/light/{d}/telemetry");
    let dark = |k: i64| {
        format!(
            r#"{{"ts":{},"on":false,"power_w":0.4}}"#,
            night + k * 60_000
        )
    };
    let lit = |k: i64| format!(r#"{{"ts":{},"on":true,"power_w":69}}"#, night + k * 60_000);
    for k in [0, 15, 30] {
        for d in ["L0", "L1", "L2"] {
            p.send(&lamp(d), dark(k)).await;
        }
    }
    p.flush().await;
    eventually(
        Duration::from_secs(15),
        "L1's and L2's failures",
        || async { (outage_kinds(&db, "lamp_failure").await == ["L1", "L2"]).then_some(()) },
    )
    .await;
    let orders = store.admin.work_orders(None).await.unwrap();
    assert_eq!(orders.len(), 2, "one work order per outage: {orders:?}");
    assert!(orders
        .iter()
        .all(|o| o.team == "lighting-crew" && o.state == model::WorkOrderState::New));

    // The crew reports both done at +40 min. L1 burns from then on; L2 stays dark.
    for o in &orders {
        for step in ["assigned", "in_progress", "done"] {
            let who = Some("crew-7").filter(|_| step == "assigned");
            store
                .detection
                .transition_work_order(
                    o.id,
                    tests::db::state(step),
                    "dispatcher",
                    None,
                    at(40),
                    who,
                )
                .await
                .unwrap();
        }
    }
    for k in [45, 60, 75, 90] {
        p.send(&lamp("L1"), lit(k)).await;
        p.send(&lamp("L2"), dark(k)).await;
    }
    p.flush().await;
    let state_of = |ext: &'static str| {
        let db = &db;
        async move {
            db.client
                .query_one(
                    "SELECT w.state FROM work_orders w JOIN devices d ON d.id = w.device_id
                     WHERE d.ext_id = $1 AND w.kind = 'lamp_failure'",
                    &[&ext],
                )
                .await
                .unwrap()
                .get::<_, String>(0)
        }
    };
    eventually(Duration::from_secs(15), "the verdicts", || async {
        let states = (state_of("L1").await, state_of("L2").await);
        (states == ("verified".into(), "reopened".into())).then_some(())
    })
    .await;
    let reason: String = db
        .client
        .query_one(
            "SELECT e.detail FROM work_order_events e JOIN work_orders w ON w.id = e.work_order_id
             JOIN devices d ON d.id = w.device_id WHERE d.ext_id = 'L2' AND e.to_state = 'reopened'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(reason.contains("still shows lamp_failure"), "{reason}");
    assert!(hub.terminate());
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

#[tokio::test]
async fn a_maintenance_window_planned_from_the_command_line_holds_its_outages() {
    let Setup {
        tenant: t,
        db,
        broker,
    } = Setup::start(&[(Kind::Light, 2)]).await;
    let night = last_night_ms();
    let iso = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339()
    };
    let plan = |target: &str, reason: &str| {
        std::process::Command::new(tests::hub::cityhub_binary())
            .args(["maintenance", "add", "--tenant", &t, "--scope", "device"])
            .args(["--target", target, "--reason", reason, "--by", "planner"])
            .args([
                "--from",
                &iso(night - 3_600_000),
                "--until",
                &iso(now_ms() + 3_600_000),
            ])
            .env("CITYHUB_CONFIG", "/dev/null")
            .env("CITYHUB_DATABASE_URL", &db.url)
            .output()
            .unwrap()
    };
    let out = plan("L1", "relamping on this street");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let refused = plan("L9", "no such lamp");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("L9"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(
        db.count("SELECT count(*) FROM audit_log WHERE action = 'maintenance.add'")
            .await,
        1
    );

    // The hub loads the window at start: L1's voltage swing waits, L0's opens.
    let mut hub = HubProcess::spawn(&db.url, broker.port(), &unique("hub-"));
    hub.wait_connected().await;
    let mut p = Publisher::connect(broker.port()).await;
    for d in ["L0", "L1"] {
        p.send(
            &format!("city/{t}/light/{d}/telemetry"),
            format!(r#"{{"ts":{night},"on":true,"power_w":70,"voltage_v":262}}"#),
        )
        .await;
    }
    p.flush().await;
    db.wait_count("SELECT count(*) FROM light_readings", 2)
        .await;
    eventually(Duration::from_secs(10), "L0's outage", || async {
        (outage_kinds(&db, "voltage_out_of_range").await == ["L0"]).then_some(())
    })
    .await;
    eventually(Duration::from_secs(10), "the suppression counted", || {
        let n = hub
            .metric("cityhub_rules_maintenance_suppressed_total")
            .unwrap_or(0.0);
        async move { (n >= 1.0).then_some(()) }
    })
    .await;
    assert_eq!(outage_kinds(&db, "voltage_out_of_range").await, ["L0"]);
    assert!(hub.terminate());
}

/// PostgreSQL restarts under a running hub: readings keep being stored, and the rules keep
/// opening outages on the new connections, without a hub restart.
#[tokio::test]
async fn outages_keep_opening_after_a_postgres_restart() {
    let pg = tests::PrivatePostgres::start();
    let t = unique("t");
    let db = TestDb::on_server(&pg.url("postgres")).await;
    db.import(&tests::db::devices(&t, &[(Kind::Light, 3)]))
        .await;
    let broker = tests::broker::TestBroker::start();
    let mut hub = HubProcess::spawn(&db.url, broker.port(), &unique("hub-"));
    hub.wait_connected().await;
    let mut p = Publisher::connect(broker.port()).await;
    let over_voltage = |d: &str| {
        (
            format!("city/{t}/light/{d}/telemetry"),
            format!(r#"{{"ts":{},"voltage_v":262}}"#, now_ms()),
        )
    };
    // A retained status of two hours ago comes first, as a broker hands it to a
    // subscriber: one old message in a quiet stream must hold nothing back.
    let status = format!("city/{t}/light/L2/status");
    let old = format!(r#"{{"ts":{},"state":"online"}}"#, now_ms() - 7_200_000);
    p.send_retained(&status, old).await;
    let (topic, payload) = over_voltage("L0");
    p.send(&topic, payload).await;
    p.flush().await;
    let count = |kind: &'static str| {
        let url = db.url.clone();
        async move {
            let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .ok()?;
            tokio::spawn(conn);
            let sql = "SELECT count(*) FROM outages WHERE kind = $1";
            c.query_one(sql, &[&kind])
                .await
                .ok()
                .map(|r| r.get::<_, i64>(0))
        }
    };
    eventually(Duration::from_secs(20), "the first outage", || async {
        (count("voltage_out_of_range").await == Some(1)).then_some(())
    })
    .await;

    pg.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let health = tests::hub::http_get(hub.http_port, "/health").expect("/health answers");
    assert!(health.contains(r#""status":"degraded""#), "{health}");
    assert!(health.contains("the database"), "{health}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    pg.start_again();
    // The rules connect anew on their own, without a reading to make them try.
    eventually(
        Duration::from_secs(15),
        "the rules' new connection",
        || async {
            (hub.metric("cityhub_rules_db_reconnects_total")
                .unwrap_or(0.0)
                >= 1.0)
                .then_some(())
        },
    )
    .await;
    let (topic, payload) = over_voltage("L1");
    p.send(&topic, payload).await;
    p.flush().await;
    eventually(
        Duration::from_secs(40),
        "an outage after the restart",
        || async { (count("voltage_out_of_range").await == Some(2)).then_some(()) },
    )
    .await;
    assert!(hub.is_running());
}

/// A lamp whose clock runs four minutes ahead sends a reading, then its last will. It is
/// heard from when the reading arrived, not when its clock said: it is offline from the
/// will on, and the outage is not resolved when the hub's clock reaches the reading's
/// stamp, with nothing new from the lamp.
#[tokio::test]
async fn a_clock_ahead_neither_extends_hearing_nor_resolves_a_silence() {
    let setup = Setup::start(&[(Kind::Light, 1)]).await;
    let file = rules_file("[silence]\ngrace_s = 30\n");
    // A minute of the hub's time a second.
    let clock = simulators::clock::SimClock::starting_at(model::Timestamp::now(), 60.0);
    let _hub = hub_with_rules(&setup, &file, &[("CITYHUB_SIM_CLOCK", &clock.to_string())]).await;
    let Setup {
        tenant: t,
        db,
        broker,
    } = setup;
    let mut p = Publisher::connect(broker.port()).await;
    let ahead = clock.now().add_secs(240);
    // Online, by its clock four minutes from now.
    p.send(
        &format!("city/{t}/light/L0/status"),
        format!(r#"{{"ts":{},"state":"online"}}"#, ahead.micros() / 1000),
    )
    .await;
    p.send(
        &format!("city/{t}/light/L0/telemetry"),
        // Off: neither a day burner by day nor (one reading) a failure by night.
        format!(
            r#"{{"ts":{},"on":false,"power_w":0}}"#,
            ahead.micros() / 1000
        ),
    )
    .await;
    p.send(
        &format!("city/{t}/light/L0/status"),
        r#"{"state":"offline"}"#,
    )
    .await;
    p.flush().await;
    let offline = (
        "L0".to_owned(),
        "device_offline".to_owned(),
        "open".to_owned(),
    );
    eventually(Duration::from_secs(20), "L0 offline", || async {
        outages(&db).await.contains(&offline).then_some(())
    })
    .await;
    let latest = db
        .client
        .query_one("SELECT last_seen, online FROM device_latest", &[])
        .await
        .unwrap();
    let seen: chrono::DateTime<chrono::Utc> = latest.get(0);
    assert_eq!(
        latest.get::<_, Option<bool>>(1),
        Some(false),
        "its last will came after its online status, whatever the status's stamp"
    );
    assert!(
        model::Timestamp::from_datetime(seen) < ahead.add_secs(-120),
        "last seen {seen}: when the reading arrived, not {ahead:?}"
    );
    // The hub's clock passes the reading's stamp by two minutes.
    while clock.now() < ahead.add_secs(120) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(outages(&db).await, [offline], "nothing new was heard");
}

/// A lamp imported while the hub runs is judged from its first accepted reading, not from
/// the rules' next reload of the inventory a minute later.
#[tokio::test]
async fn a_device_imported_while_the_hub_runs_is_judged_from_its_first_readings() {
    let setup = Setup::start(&[(Kind::Light, 1)]).await;
    let file = rules_file("[lamp_failure]\non_delay_s = 0\n[silence]\nintervals = 1000.0\n");
    let _hub = hub_with_rules(&setup, &file, &[]).await;
    let Setup {
        tenant: t,
        db,
        broker,
    } = setup;
    // The rules have loaded the inventory of one lamp; a second joins it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    db.import(&tests::db::devices(&t, &[(Kind::Light, 2)]))
        .await;
    let mut p = Publisher::connect(broker.port()).await;
    let imported = std::time::Instant::now();
    let failed = (
        "L1".to_owned(),
        "lamp_failure".to_owned(),
        "open".to_owned(),
    );
    loop {
        p.send(
            &format!("city/{t}/light/L1/telemetry"),
            format!(
                r#"{{"ts":{},"on":true,"power_w":0,"fault":"lamp_failure"}}"#,
                now_ms()
            ),
        )
        .await;
        p.flush().await;
        if outages(&db).await.contains(&failed) {
            break;
        }
        assert!(
            imported.elapsed() < Duration::from_secs(20),
            "no failure of L1 within 20 s of its import: {:?}",
            outages(&db).await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

//! The binary as an operator meets it: clear errors, secrets never shown.

use std::process::{Command, Stdio};
use std::time::Duration;

use tests::hub::cityhub_binary;
use tests::TestDb;

fn cityhub(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(cityhub_binary())
        .args(args)
        .env("CITYHUB_CONFIG", "/dev/null")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run cityhub");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_unreachable_database_is_a_clear_error() {
    let (ok, _, err) = cityhub(
        &["migrate"],
        &[(
            "CITYHUB_DATABASE_URL",
            "postgres://cityhub:s3cret-pw@127.0.0.1:1/cityhub",
        )],
    );
    assert!(!ok);
    assert!(
        err.contains("cannot prepare the database 127.0.0.1:1/cityhub"),
        "{err}"
    );
    assert!(!err.contains("s3cret-pw"), "the password leaked: {err}");
}

#[test]
fn a_bad_configuration_file_names_the_file_and_the_setting() {
    let dir = std::env::temp_dir().join(tests::unique("cfg-"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cityhub.toml");
    std::fs::write(&file, "[storage]\nretention_days = 0\n").unwrap();
    let (ok, _, err) = cityhub(&["--config", file.to_str().unwrap(), "migrate"], &[]);
    assert!(!ok);
    assert!(
        err.contains("retention_days must be between 1 and 36500"),
        "{err}"
    );
    std::fs::write(&file, "[ingest.mqtt]\nprot = 1883\n").unwrap();
    let (ok, _, err) = cityhub(&["--config", file.to_str().unwrap(), "migrate"], &[]);
    assert!(!ok);
    assert!(
        err.contains("cityhub.toml") && err.contains("unknown field `prot`"),
        "{err}"
    );
    let (ok, _, err) = cityhub(&["--mqtt-port", "0", "migrate"], &[]);
    assert!(!ok && err.contains("ingest.mqtt.port"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_effective_configuration_hides_secrets() {
    let (ok, out, _) = cityhub(
        &["config"],
        &[
            ("CITYHUB_DATABASE_URL", "postgres://u:db-secret@h/x"),
            ("CITYHUB_MQTT_USERNAME", "cityhub-ingest"),
            ("CITYHUB_MQTT_PASSWORD", "mqtt-secret"),
            ("CITYHUB_COMMANDS_MQTT_USERNAME", "cityhub-commands"),
            ("CITYHUB_COMMANDS_MQTT_PASSWORD", "commands-secret"),
        ],
    );
    assert!(ok);
    assert!(
        out.contains("database_url = \"postgres://u:***@h/x\""),
        "where the database is, without its password: {out}"
    );
    assert!(out.contains("username = \"cityhub-ingest\""), "{out}");
    assert!(
        out.contains("mqtt_username = \"cityhub-commands\""),
        "{out}"
    );
    assert!(
        !out.contains("db-secret")
            && !out.contains("mqtt-secret")
            && !out.contains("commands-secret"),
        "{out}"
    );
}

#[tokio::test]
async fn a_bad_inventory_is_refused_whole_with_the_feature_named() {
    let db = TestDb::new().await;
    let dir = std::env::temp_dir().join(tests::unique("inv-"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("city.geojson");
    std::fs::write(
        &file,
        r#"{"type":"FeatureCollection","features":[
          {"type":"Feature","geometry":{"type":"Point","coordinates":[0,0]},"properties":{"id":"ok1","kind":"light","tenant":"x"}},
          {"type":"Feature","geometry":{"type":"Point","coordinates":[0,0]},"properties":{"id":"bad","kind":"lantern","tenant":"x"}}]}"#,
    )
    .unwrap();
    let (ok, _, err) = cityhub(
        &["devices", "import", file.to_str().unwrap()],
        &[("CITYHUB_DATABASE_URL", &db.url)],
    );
    assert!(!ok);
    assert!(err.contains("feature 1: kind `lantern`"), "{err}");
    assert_eq!(
        db.count("SELECT count(*) FROM devices").await,
        0,
        "nothing half-imported"
    );

    std::fs::write(
        &file,
        r#"{"type":"FeatureCollection","features":[
          {"type":"Feature","geometry":{"type":"Point","coordinates":[0,0]},"properties":{"id":"ok1","kind":"light","tenant":"x"}},
          {"type":"Feature","geometry":{"type":"LineString","coordinates":[[0,0],[0,0.01]]},"properties":{"id":"28","kind":"route","tenant":"x"}}]}"#,
    )
    .unwrap();
    let (ok, out, err) = cityhub(
        &["devices", "import", file.to_str().unwrap()],
        &[("CITYHUB_DATABASE_URL", &db.url)],
    );
    assert!(ok, "{err}");
    assert!(out.contains("Imported 1 devices and 1 routes"), "{out}");
    assert_eq!(db.count("SELECT count(*) FROM routes").await, 1);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn serve_logs_never_show_secrets_and_stops_on_sigterm() {
    let db = TestDb::new().await;
    let broker = tests::TestBroker::start();
    let url = db.url.replace("postgres@", "postgres:db-secret@");
    let http = simulators::broker::free_port().unwrap();
    let child = Command::new(cityhub_binary())
        .arg("serve")
        .env("CITYHUB_CONFIG", "/dev/null")
        .env("CITYHUB_DATABASE_URL", &url)
        .env("CITYHUB_MQTT_PORT", broker.port().to_string())
        .env("CITYHUB_MQTT_USERNAME", tests::broker::HUB_USER)
        .env("CITYHUB_MQTT_PASSWORD", tests::broker::HUB_PASSWORD)
        .env(
            "CITYHUB_COMMANDS_MQTT_USERNAME",
            tests::broker::COMMANDS_USER,
        )
        .env(
            "CITYHUB_COMMANDS_MQTT_PASSWORD",
            tests::broker::COMMANDS_PASSWORD,
        )
        .env("CITYHUB_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("CITYHUB_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tests::eventually(Duration::from_secs(20), "/health", || async {
        tests::hub::http_get(http, "/health")
            .ok()
            .filter(|b| b.contains("\"status\":\"ok\""))
            .map(|_| ())
    })
    .await;
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("cityhub stopped."), "{log}");
    assert!(
        !log.contains("db-secret") && !log.contains(tests::broker::HUB_PASSWORD),
        "a secret leaked"
    );
}

/// A file written by someone else: a misspelled rating, a cabinet that is not there, a
/// property nobody reads. Each is named; `--strict` writes nothing.
#[tokio::test]
async fn an_inventory_says_what_the_hub_will_not_use_and_strict_refuses_it() {
    let db = TestDb::new().await;
    let dir = std::env::temp_dir().join(tests::unique("inv-"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("vendor.geojson");
    std::fs::write(
        &file,
        r#"{"type":"FeatureCollection","features":[
          {"type":"Feature","geometry":{"type":"Point","coordinates":[-9.14,38.71]},"properties":{"id":"C-1","kind":"cabinet","tenant":"v"}},
          {"type":"Feature","geometry":{"type":"Point","coordinates":[-9.14,38.71]},"properties":{"id":"L-1","kind":"light","tenant":"v","cabinet":"C-1","rated_w":60}},
          {"type":"Feature","geometry":{"type":"Point","coordinates":[-9.14,38.71]},"properties":{"id":"L-2","kind":"light","tenant":"v","cabinet":"C-9","rated_power_w":60,"pole_height_m":8}}]}"#,
    )
    .unwrap();
    let env = [("CITYHUB_DATABASE_URL", db.url.as_str())];
    let path = file.to_str().unwrap();
    let (ok, _, err) = cityhub(&["devices", "import", "--strict", path], &env);
    assert!(!ok, "{err}");
    for said in [
        "feature 1 (`L-1`): unknown property `rated_w`: did you mean `rated_power_w`?",
        "feature 1 (`L-1`): a lamp without `rated_power_w`",
        "feature 2 (`L-2`): unknown property `pole_height_m`",
        "`v/L-2`: cabinet `C-9`, but tenant `v` has no cabinet of that id",
        "refused (--strict): 4 warning(s) above; nothing was written",
    ] {
        assert!(err.contains(said), "{said}\n{err}");
    }
    assert_eq!(db.count("SELECT count(*) FROM devices").await, 0);
    assert_eq!(db.count("SELECT count(*) FROM tenants").await, 0);
    // Without --strict it loads, says the same, and keeps the extras as they came.
    let (ok, out, err) = cityhub(&["devices", "import", path], &env);
    assert!(ok, "{err}");
    assert!(err.contains("did you mean `rated_power_w`?"), "{err}");
    assert!(out.contains("Imported 3 devices and 0 routes"), "{out}");
    assert!(out.contains("4 warnings"), "{out}");
    assert_eq!(
        db.count("SELECT count(*) FROM devices WHERE ext_id = 'L-1' AND rated_power_w IS NULL AND props->>'rated_w' = '60'")
            .await,
        1
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_generated_city_imports_whole() {
    let db = TestDb::new().await;
    let dir = std::env::temp_dir().join(tests::unique("city-"));
    let out = dir.to_str().unwrap();
    let (ok, stdout, err) = cityhub(
        &[
            "simulate",
            "city",
            "--seed",
            "4",
            "--tenant",
            "gen",
            "--lamps",
            "500",
            "--meters",
            "120",
            "--vehicles",
            "12",
            "--out",
            out,
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert!(
        stdout.contains("500 lamps, 120 meters, 2 routes, 12 vehicles"),
        "{stdout}"
    );
    let inventory = dir.join("inventory.geojson");
    let (ok, _, err) = cityhub(
        &["devices", "import", "--strict", inventory.to_str().unwrap()],
        &[("CITYHUB_DATABASE_URL", &db.url)],
    );
    assert!(ok, "the generated inventory is clean: {err}");
    assert!(!err.contains("warning"), "{err}");
    let lamps = db.count("SELECT count(*) FROM devices WHERE kind = 'light' AND cabinet IS NOT NULL AND rated_power_w > 0").await;
    let cabinets = db
        .count("SELECT count(*) FROM devices WHERE kind = 'cabinet'")
        .await;
    assert_eq!(
        (lamps, db.count("SELECT count(*) FROM devices").await),
        (500, 500 + 120 + 12 + cabinets)
    );
    // Every lamp's cabinet is a device of the inventory.
    let orphans = db
        .count("SELECT count(*) FROM devices l WHERE l.kind = 'light' AND NOT EXISTS (SELECT 1 FROM devices c WHERE c.kind = 'cabinet' AND c.ext_id = l.cabinet)")
        .await;
    assert_eq!(orphans, 0);
    let (ok, _, err) = cityhub(
        &["simulate", "city", "--tenant", "Bad Name", "--out", out],
        &[],
    );
    assert!(!ok && err.contains("--tenant `Bad Name`"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_bad_rules_file_stops_the_hub_at_start_with_the_reason() {
    let dir = std::env::temp_dir().join(tests::unique("rules-"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rules.toml");
    std::fs::write(&file, "[voltage]\nmin_v = 260.0\n").unwrap();
    let (ok, _, err) = cityhub(&["--rules-file", file.to_str().unwrap(), "serve"], &[]);
    assert!(!ok);
    assert!(
        err.contains("rules.toml") && err.contains("min_v must be below max_v"),
        "{err}"
    );
    let (ok, _, err) = cityhub(&["--rules-file", "/nonexistent/rules.toml", "serve"], &[]);
    assert!(
        !ok && err.contains("cannot read the rules file /nonexistent/rules.toml"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn reports_show_the_alarm_load_and_the_crews_record() {
    let db = TestDb::new().await;
    db.import(&tests::db::devices("rep", &[(model::Kind::Light, 12)]))
        .await;
    let ids = db.device_ids("rep").await;
    let mut store = db.store().await;
    // Twelve lamps fail within minutes an hour ago: a flood. L0 comes back twice more.
    // (Inside one 10-minute bucket of the UTC clock, a minute after it starts.)
    let ten_min = 600;
    let hour_ago = (chrono::Utc::now().timestamp() - 3600).div_euclid(ten_min) * ten_min + 60;
    let at = |m: i64| {
        chrono::DateTime::from_timestamp(hour_ago + m * 20, 0)
            .unwrap()
            .to_rfc3339()
    };
    let mut changes = Vec::new();
    for i in 0..12 {
        let id = ids[&format!("L{i}")];
        changes.push(tests::db::opened_with_order(
            id,
            "lamp_failure",
            &at(i),
            "crew-a",
            600,
        ));
    }
    for m in [13, 14] {
        changes.push(tests::db::opened(ids["L0"], "lamp_failure", &at(m)));
    }
    store
        .detection
        .apply_outage_changes(&changes)
        .await
        .unwrap();
    let url = db.url.clone();
    let env = [("CITYHUB_DATABASE_URL", url.as_str())];

    let (ok, out, err) = cityhub(&["report", "alarms", "--hours", "2", "--top", "1"], &env);
    assert!(ok, "{err}");
    assert!(out.contains("| lamp_failure | 12 | 14 |"), "{out}");
    assert!(out.contains("Flood: 12 outages opened"), "{out}");
    assert!(out.contains("| rep | L0 | lamp_failure | 1 | 3 |"), "{out}");

    let (ok, out, err) = cityhub(&["report", "teams", "--days", "1"], &env);
    assert!(ok, "{err}");
    assert!(
        out.contains("| crew-a | 12 | 0 | 0 | 12 | 0 | 0 |"),
        "{out}"
    );
    assert!(out.contains("12 work orders past their deadline"), "{out}");

    let (ok, _, err) = cityhub(&["report", "alarms", "--hours", "0"], &env);
    assert!(!ok && err.contains("--hours must be at least 1"), "{err}");
}

/// Output read by a pipe whose reader has gone (`cityhub config | head -1`, `audit
/// verify | head`) ends the command quietly, as other tools do: no panic, no backtrace.
#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    let mut child = Command::new(cityhub_binary())
        .arg("config")
        .env("CITYHUB_CONFIG", "/dev/null")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cityhub");
    // The reader goes away before the first line is written.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("cityhub ends");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
}

#[tokio::test]
async fn a_simulated_city_can_bring_its_last_days_and_they_open_no_outage() {
    let db = TestDb::new().await;
    let truth = std::env::temp_dir().join(tests::unique("truth-"));
    let run = |days: &str, import: bool| {
        let mut args = vec![
            "simulate",
            "run",
            "--seed",
            "3",
            "--tenant",
            "hist",
            "--lamps",
            "40",
            "--meters",
            "6",
            "--vehicles",
            "2",
            "--duration-secs",
            "1",
            "--mqtt-port",
            "1",
            "--history-days",
            days,
            "--truth",
            truth.to_str().unwrap(),
        ];
        if import {
            args.push("--import");
        }
        cityhub(&args, &[("CITYHUB_DATABASE_URL", &db.url)])
    };

    // Without the inventory every message is refused, and said to be.
    let (ok, _, err) = run("1", false);
    assert!(ok, "{err}");
    assert!(
        err.contains("messages refused (devices not imported? see --import)"),
        "{err}"
    );
    assert_eq!(db.count("SELECT count(*) FROM light_readings").await, 0);
    let (ok, _, err) = run("31", true);
    assert!(!ok && err.contains("--history-days"), "{err}");

    let before = chrono::Utc::now();
    let (ok, _, err) = run("2", true);
    let after = chrono::Utc::now();
    assert!(ok, "{err}");
    assert!(err.contains("History from"), "{err}");
    // Two days of each device at its interval (lamps 15 min, meters hourly, buses 10 s),
    // all before the run started, none older than two days.
    let per_device = |table: &'static str| {
        let db = &db;
        async move {
            let r = db
                .client
                .query_one(
                    &format!(
                        "SELECT min(n), max(n), min(lo), max(hi) FROM
                         (SELECT count(*) AS n, min(ts) AS lo, max(ts) AS hi FROM {table} GROUP BY device_id) x"
                    ),
                    &[],
                )
                .await
                .unwrap();
            let (least, most): (i64, i64) = (r.get(0), r.get(1));
            let (first, last): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
                (r.get(2), r.get(3));
            (least, most, first, last)
        }
    };
    for (table, devices, every_s) in [
        ("light_readings", 40, 900),
        ("meter_readings", 6, 3600),
        ("vehicle_readings", 2, 10),
    ] {
        let (least, most, first, last) = per_device(table).await;
        let expected = 2 * 86_400 / every_s;
        assert!(
            (expected - 1..=expected + 1).contains(&least) && most <= expected + 1,
            "{table}: {least}..{most} readings a device, {expected} expected"
        );
        assert!(first >= before - chrono::Duration::days(2) - chrono::Duration::seconds(1));
        assert!(last < after, "{table}: {last} is not in the past");
        let stored = db
            .count(&format!("SELECT count(DISTINCT device_id) FROM {table}"))
            .await;
        assert_eq!(stored, devices, "{table}");
    }
    // The latest state of every device, and no outage: the rules never judged the past.
    let devices = db.count("SELECT count(*) FROM devices").await;
    assert_eq!(
        db.count("SELECT count(*) FROM device_latest").await,
        devices
    );
    assert_eq!(db.count("SELECT count(*) FROM outages").await, 0);

    // Again: the city goes on from its newest message, nothing written twice.
    let lamps_before = db.count("SELECT count(*) FROM light_readings").await;
    let (ok, _, err) = run("2", true);
    assert!(ok, "{err}");
    let (least, most, ..) = per_device("light_readings").await;
    assert!(
        most <= 2 * 96 + 2,
        "{least}..{most} lamp readings a device after a second run"
    );
    let lamps_after = db.count("SELECT count(*) FROM light_readings").await;
    assert!(
        lamps_after - lamps_before <= 40,
        "{lamps_before} -> {lamps_after}"
    );
    // Its counters go on from what each device said last: none goes back.
    for (table, counter) in [
        ("light_readings", "energy_wh"),
        ("light_readings", "burn_hours"),
        ("meter_readings", "total"),
    ] {
        let back = db
            .count(&format!(
                "SELECT count(*) FROM (SELECT {counter} < lag({counter}) OVER (PARTITION BY device_id ORDER BY ts) AS back FROM {table}) x WHERE back"
            ))
            .await;
        assert_eq!(back, 0, "{table}.{counter} went back {back} times");
    }
    // A history cannot lie ahead of now.
    let (ok, _, err) = cityhub(
        &[
            "simulate",
            "run",
            "--tenant",
            "hist",
            "--lamps",
            "40",
            "--history-days",
            "1",
            "--start",
            "2999-01-01T00:00:00Z",
            "--duration-secs",
            "1",
            "--mqtt-port",
            "1",
        ],
        &[("CITYHUB_DATABASE_URL", &db.url)],
    );
    assert!(!ok && err.contains("must not be ahead of now"), "{err}");

    // Commands other than `serve` drop no readings, whatever retention they are given.
    for args in [&["migrate"][..], &["devices", "import", "/dev/null"][..]] {
        let _ = cityhub(
            args,
            &[
                ("CITYHUB_DATABASE_URL", &db.url),
                ("CITYHUB_RETENTION_DAYS", "1"),
            ],
        );
    }
    assert_eq!(
        db.count("SELECT count(*) FROM light_readings").await,
        lamps_after
    );
    let _ = std::fs::remove_file(truth);
}

/// The configuration shipped for /etc/cityhub is valid once its secrets come from the
/// environment (as the systemd units give them), and says which is missing otherwise.
#[test]
fn the_shipped_configuration_is_valid_with_its_secrets_from_the_environment() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/cityhub.toml");
    let secrets = [
        ("CITYHUB_MQTT_PASSWORD", "ingest-pw"),
        ("CITYHUB_COMMANDS_MQTT_PASSWORD", "commands-pw"),
        (
            "CITYHUB_HTTP_SESSION_SECRET",
            "3f9a1c7e5b2d8046a1e9c3b7d5f20864",
        ),
    ];
    let (ok, out, err) = cityhub(&["--config", shipped, "config"], &secrets);
    assert!(ok, "{err}");
    assert!(out.contains("client_id = \"cityhub-ingest\""), "{out}");
    assert!(
        !out.contains("ingest-pw") && !out.contains("commands-pw"),
        "{out}"
    );
    let (ok, _, err) = cityhub(&["--config", shipped, "config"], &secrets[1..]);
    assert!(!ok && err.contains("ingest.mqtt.password"), "{err}");
}

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
    assert!(out.contains("| L0 | lamp_failure | 1 | 3 |"), "{out}");

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

//! A database written by an earlier version, migrated by this one with its data intact.
//!
//! `fixtures/schema-15.sql.gz` is `pg_dump` of a database that a build with 15
//! migrations (the one before inventory notices and leases) set up and filled: a simulated town (20 lamps, a
//! cabinet, 3 meters, 2 buses, a route) with a day of readings, a user, an API token, a
//! maintenance window, an open and a resolved outage, and their audit entries.

use std::io::Write;
use std::process::{Command, Stdio};

use tests::api::{Auth, Req, TestApi};
use tests::db::{timescale_mode, with_dbname};
use tests::hub::cityhub_binary;
use tests::unique;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/schema-15.sql.gz");

/// Row counts of the tables whose data must survive, in a fixed order.
const COUNTED: [&str; 11] = [
    "devices",
    "routes",
    "light_readings",
    "cabinet_readings",
    "meter_readings",
    "vehicle_readings",
    "users",
    "api_tokens",
    "maintenance_windows",
    "outages",
    "outage_events",
];

async fn version(client: &tokio_postgres::Client) -> i32 {
    client
        .query_one("SELECT max(version) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0)
}

async fn counts(client: &tokio_postgres::Client) -> Vec<i64> {
    let mut out = Vec::new();
    for table in COUNTED {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap_or_else(|e| panic!("{table}: {e}"))
            .get(0);
        out.push(n);
    }
    out
}

#[tokio::test]
async fn a_database_of_an_earlier_version_is_migrated_with_its_data_intact() {
    if timescale_mode() == store::TimescaleMode::Require {
        // The fixture is of native partitioning; a TimescaleDB database is not converted.
        return;
    }
    let server = tests::db::server_url();
    let name = unique("cityhub_upgrade_");
    let (admin, conn) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
        .await
        .expect("the test PostgreSQL");
    tokio::spawn(conn);
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let url = with_dbname(&server, &name);
    // Restored as the earlier version left it.
    let dump = std::fs::read(FIXTURE).expect("the fixture");
    let mut sql = Vec::new();
    std::io::copy(&mut flate2::read::GzDecoder::new(dump.as_slice()), &mut sql)
        .expect("gunzip the fixture");
    let mut psql = Command::new("psql")
        .args([url.as_str(), "-q", "-v", "ON_ERROR_STOP=1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql (Debian's postgresql-client)");
    psql.stdin.take().unwrap().write_all(&sql).unwrap();
    let restored = psql.wait_with_output().unwrap();
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let before = counts(&client).await;
    assert!(
        before.iter().all(|&n| n > 0),
        "the fixture has data: {before:?}"
    );
    assert_eq!(version(&client).await, 15);

    // This version migrates it, twice (the second does nothing).
    for _ in 0..2 {
        let out = Command::new(cityhub_binary())
            .arg("migrate")
            .env("CITYHUB_CONFIG", "/dev/null")
            .env("CITYHUB_DATABASE_URL", &url)
            .env("CITYHUB_TIMESCALEDB", "auto")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let latest = store::schema::migrations(store::StoragePath::Partitioned)
        .last()
        .map(|m| m.0)
        .unwrap();
    assert_eq!(version(&client).await, latest);
    assert_eq!(counts(&client).await, before, "every row kept");
    let chain = store::Admin::from(store::Db::connect(&url).await.unwrap())
        .verify_audit(&[])
        .await
        .unwrap();
    assert_eq!(chain.first_bad, None, "the audit chain still holds");

    // And it serves what the earlier version stored: the user signs in with the password
    // set then, and sees the outages and a lamp's day of readings.
    let api = TestApi::start(&url).await;
    let login = serde_json::json!({"username": "olga", "password": "a long enough password"});
    let r = api
        .call(Req::post("/api/v1/login", &Auth::None, &login.to_string()))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let auth = Auth::Cookie(r.session_cookie().expect("a session"));
    let r = api.call(Req::get("/api/v1/outages", &auth)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut kinds: Vec<String> = r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["kind"].as_str().map(str::to_owned))
        .collect();
    kinds.sort();
    assert!(kinds.contains(&"lamp_failure".to_owned()), "{}", r.body);
    let (lamp, first): (String, chrono::DateTime<chrono::Utc>) = client
        .query_one(
            "SELECT d.ext_id, min(r.ts) FROM light_readings r JOIN devices d ON d.id = r.device_id
             GROUP BY d.ext_id ORDER BY d.ext_id LIMIT 1",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    let r = api
        .call(Req::get(
            &format!(
                "/api/v1/devices/{lamp}/history?bucket=hour&from={}&to={}",
                first.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                (first + chrono::Duration::days(2))
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            &auth,
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        !r.json()["points"].as_array().unwrap().is_empty(),
        "{}",
        r.body
    );
    drop(client);
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
}

//! PostgreSQL replicas: the API's heavy reads on a streaming replica, and a primary that
//! fails over to its synchronous standby without losing an acknowledged reading.

use std::time::Duration;

use model::Kind;
use tests::api::{add_token, add_user, Auth, Req, TestApi};
use tests::db::{devices, with_dbname};
use tests::hub::HubProcess;
use tests::{eventually, now_ms, unique, PrivatePostgres, Publisher, TestDb};

/// Empties a primary's `synchronous_standby_names` when dropped (an ALTER SYSTEM needs no
/// commit of its own, so it works while every commit waits).
struct Unblock(String);

impl Drop for Unblock {
    fn drop(&mut self) {
        tests::db::execute_detached(
            &self.0,
            &[
                "ALTER SYSTEM RESET synchronous_standby_names",
                "SELECT pg_reload_conf()",
            ],
        );
    }
}

async fn execute(url: &str, sql: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(conn);
    client.batch_execute(sql).await.expect(sql);
}

/// Points in a lamp's raw history over the last hour, as the API answers it.
async fn points(api: &TestApi, auth: &Auth, lamp: &str) -> usize {
    let from = chrono::Utc::now() - chrono::Duration::hours(1);
    let path = format!(
        "/api/v1/devices/{lamp}/history?bucket=raw&from={}",
        from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let r = api.call(Req::get(&path, auth)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["points"].as_array().expect("points").len()
}

#[tokio::test]
async fn heavy_reads_go_to_the_replica_and_the_rest_to_the_primary() {
    let primary = PrivatePostgres::start();
    let db = TestDb::on_server(&primary.url("postgres")).await;
    let tenant = unique("t");
    db.import(&devices(&tenant, &[(Kind::Light, 2)])).await;
    let mut admin = db.admin().await;
    add_user(&mut admin, "olga", "operator", &[&tenant], None).await;
    let auth = Auth::Token(add_token(&mut admin, "olga", "replica").await);
    let reading = |minutes_ago: i64| {
        format!(
            "INSERT INTO light_readings (device_id, ts, dim)
             SELECT id, now() - interval '{minutes_ago} minutes', 40 FROM devices WHERE ext_id = 'L0'"
        )
    };
    execute(&db.url, &reading(20)).await;
    let standby = PrivatePostgres::standby_of(&primary);
    let read_url = with_dbname(&standby.url("postgres"), &db.name);
    let api =
        TestApi::start_configured(&db.url, |c| c.database_read_url = Some(read_url.clone())).await;
    assert_eq!(points(&api, &auth, "L0").await, 1);

    // The replica stops replaying: what the primary takes next is not on it.
    execute(&read_url, "SELECT pg_wal_replay_pause()").await;
    execute(&db.url, &reading(10)).await;
    db.import(&devices(&tenant, &[(Kind::Light, 3)])).await;
    assert_eq!(
        points(&api, &auth, "L0").await,
        1,
        "the history is read on the replica"
    );
    // The lamp imported since is found on the primary; its history, on the replica, is
    // empty rather than missing.
    assert_eq!(points(&api, &auth, "L2").await, 0);
    let r = api
        .call(Req::get("/api/v1/devices?kind=light", &auth))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["items"].as_array().unwrap().len(),
        3,
        "lists are read on the primary"
    );
    execute(&read_url, "SELECT pg_wal_replay_resume()").await;
    eventually(Duration::from_secs(10), "the replica caught up", || async {
        (points(&api, &auth, "L0").await == 2).then_some(())
    })
    .await;

    // The replica gone: the heavy reads fail with a clear error, /health says which
    // database, and the rest goes on.
    standby.crash();
    let r = api.call(Req::get("/health", &Auth::None)).await;
    assert!(
        r.body
            .contains("the read replica (database_read_url) cannot be reached"),
        "{}",
        r.body
    );
    let from = chrono::Utc::now() - chrono::Duration::hours(1);
    let r = api
        .call(Req::get(
            &format!(
                "/api/v1/devices/L0/history?bucket=raw&from={}",
                from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            &auth,
        ))
        .await;
    assert_eq!(r.status, 503, "{}", r.body);
    let r = api.call(Req::get("/api/v1/outages", &auth)).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// With synchronous replication a reading is acknowledged to its device only once the
/// standby has it: the primary's machine fails, the standby is promoted, and the hub,
/// given both hosts and `target_session_attrs=read-write`, goes on with the new primary
/// on its own. Every reading the broker acknowledged is there.
#[tokio::test]
async fn the_standby_promoted_after_the_primary_fails_has_every_acknowledged_reading() {
    const LAMPS: usize = 10;
    let primary = PrivatePostgres::start();
    let db = TestDb::on_server(&primary.url("postgres")).await;
    let tenant = unique("t");
    db.import(&devices(&tenant, &[(Kind::Light, LAMPS)])).await;
    let standby = PrivatePostgres::standby_of(&primary);
    let server = primary.url("postgres");
    execute(&server, "ALTER SYSTEM SET synchronous_standby_names = '*'").await;
    execute(&server, "SELECT pg_reload_conf()").await;
    let both = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{}?target_session_attrs=read-write&connect_timeout=2",
        primary.port, standby.port, db.name
    );
    let broker = tests::broker::TestBroker::start();
    let mut hub = HubProcess::spawn(&both, broker.port(), &unique("hub-"));
    hub.wait_connected().await;
    let mut p = Publisher::connect(broker.port()).await;
    let start = now_ms();
    let mut sent = 0;
    for round in 0..20_i64 {
        if round == 10 {
            // The broker has acknowledged the first half: the hub committed it, and with
            // synchronous replication the standby has it too.
            primary.crash();
            standby.promote();
        }
        for i in 0..LAMPS {
            p.send(
                &format!("city/{tenant}/light/L{i}/telemetry"),
                format!(r#"{{"ts":{},"dim":50}}"#, start + round * 1000),
            )
            .await;
            sent += 1;
        }
        p.flush().await;
    }
    let promoted = with_dbname(&standby.url("postgres"), &db.name);
    eventually(
        Duration::from_secs(60),
        "every reading on the new primary",
        || async {
            let (client, conn) = tokio_postgres::connect(&promoted, tokio_postgres::NoTls)
                .await
                .ok()?;
            tokio::spawn(conn);
            let n: i64 = client
                .query_one("SELECT count(*) FROM light_readings", &[])
                .await
                .ok()?
                .get(0);
            (n == sent as i64).then_some(())
        },
    )
    .await;
    assert!(hub.is_running(), "the hub rode out the failover");
}

/// With its only synchronous standby gone, the primary takes no writes: the hub's
/// `/health` says so once its leases have gone unrenewed for their time to live.
#[tokio::test]
async fn a_primary_waiting_for_a_missing_synchronous_standby_shows_in_health() {
    let primary = PrivatePostgres::start();
    let db = TestDb::on_server(&primary.url("postgres")).await;
    let standby = PrivatePostgres::standby_of(&primary);
    let server = primary.url("postgres");
    execute(&server, "ALTER SYSTEM SET synchronous_standby_names = '*'").await;
    execute(&server, "SELECT pg_reload_conf()").await;
    // Whatever happens below, the primary takes writes again before it is cleaned up.
    let _unblock = Unblock(server.clone());
    let broker = tests::broker::TestBroker::start();
    let mut hub = HubProcess::spawn_with(
        &db.url,
        broker.port(),
        &unique("hub-"),
        &[("CITYHUB_LEASE_TTL_S", "2")],
    );
    hub.wait_connected().await;
    let health = || tests::hub::http_get(hub.http_port, "/health").unwrap_or_default();
    assert!(health().contains(r#""status":"ok""#), "{}", health());
    standby.crash();
    let answer = eventually(Duration::from_secs(20), "the hub saying so", || async {
        let h = health();
        h.contains("the database takes no writes").then_some(h)
    })
    .await;
    assert!(answer.contains(r#""status":"degraded""#), "{answer}");
    assert!(answer.contains("has not renewed its lease `"), "{answer}");
}

//! No acknowledged reading is lost and none is stored twice: `kill -9` of the hub, a
//! PostgreSQL restart, the hub down while devices publish, a batch the database refuses.

use std::time::Duration;

use model::Kind;
use tests::db::devices;
use tests::hub::ingest_config;
use tests::{
    eventually, now_ms, unique, HubProcess, InProcessHub, PrivatePostgres, Publisher, Setup,
    TestBroker, TestDb,
};
use tokio_postgres::NoTls;

const DEVICES: usize = 20;

/// Publishes `n` single-reading messages, round robin over the lamps, at about `rate`/s,
/// each with its own timestamp; returns the publisher once the broker acknowledged all.
fn stream(port: u16, tenant: String, n: usize, rate: u64) -> tokio::task::JoinHandle<Publisher> {
    tokio::spawn(async move {
        let mut p = Publisher::connect(port).await;
        let base = now_ms() - n as i64;
        let started = std::time::Instant::now();
        for i in 0..n {
            let topic = format!("city/{tenant}/light/L{}/telemetry", i % DEVICES);
            p.send(
                &topic,
                format!(r#"{{"ts":{},"dim":{}}}"#, base + i as i64, i % 100),
            )
            .await;
            let due = Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        p.flush().await;
        p
    })
}

/// Counts on a fresh connection each time (the server may have restarted in between).
async fn count(url: &str, sql: &str) -> Option<i64> {
    let (c, conn) = tokio_postgres::connect(url, NoTls).await.ok()?;
    tokio::spawn(conn);
    c.query_one(sql, &[]).await.ok().map(|r| r.get(0))
}

async fn assert_exactly(url: &str, n: usize, limit: Duration) {
    let sql = "SELECT count(*) FROM light_readings";
    eventually(limit, "every published reading", || async {
        (count(url, sql).await == Some(n as i64)).then_some(())
    })
    .await;
    // Stays exactly n: nothing arrives twice later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(url, sql).await, Some(n as i64));
    let distinct = count(
        url,
        "SELECT count(DISTINCT (device_id, ts)) FROM light_readings",
    )
    .await;
    assert_eq!(distinct, Some(n as i64));
    assert_eq!(
        count(url, "SELECT count(*) FROM dead_letters").await,
        Some(0)
    );
}

#[tokio::test]
async fn kill_9_mid_stream_then_restart_stores_exactly_n() {
    const N: usize = 20_000;
    let Setup {
        tenant: t,
        db,
        broker,
    } = Setup::start(&[(Kind::Light, DEVICES)]).await;
    let mut hub = HubProcess::spawn(&db.url, broker.port(), &unique("hub-"));
    hub.wait_connected().await;
    let publisher = stream(broker.port(), t.clone(), N, 4_000);
    eventually(
        Duration::from_secs(30),
        "a quarter of the stream committed",
        || async {
            (db.count("SELECT count(*) FROM light_readings").await >= (N / 4) as i64).then_some(())
        },
    )
    .await;
    hub.kill_9();
    let at_kill = db.count("SELECT count(*) FROM light_readings").await;
    assert!(
        at_kill < N as i64,
        "the stream must still be running when the hub dies"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    hub.restart();
    let p = publisher.await.unwrap();
    assert_eq!(p.sent(), N as u64);
    assert_exactly(&db.url, N, Duration::from_secs(60)).await;
    assert!(hub.terminate(), "clean exit on SIGTERM");
}

#[tokio::test]
async fn postgres_restart_mid_stream_stores_exactly_n() {
    const N: usize = 12_000;
    let pg = PrivatePostgres::start();
    let t = unique("t");
    let db = TestDb::on_server(&pg.url("postgres")).await;
    db.import(&devices(&t, &[(Kind::Light, DEVICES)])).await;
    let broker = TestBroker::start();
    let hub = InProcessHub::start(ingest_config(broker.port(), &unique("hub-")), &db.url).await;
    let publisher = stream(broker.port(), t.clone(), N, 3_000);
    eventually(
        Duration::from_secs(30),
        "a quarter of the stream committed",
        || async {
            (count(&db.url, "SELECT count(*) FROM light_readings").await >= Some((N / 4) as i64))
                .then_some(())
        },
    )
    .await;
    pg.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.start_again();
    publisher.await.unwrap();
    assert_exactly(&db.url, N, Duration::from_secs(60)).await;
    assert!(
        hub.metrics.write_retries.get() > 0,
        "the hub noticed the restart and retried"
    );
    hub.stop().await;
}

#[tokio::test]
async fn messages_published_while_the_hub_is_down_are_ingested_after_it_starts() {
    const N: usize = 5_000;
    let Setup {
        tenant: t,
        db,
        broker,
    } = Setup::start(&[(Kind::Light, DEVICES)]).await;
    let client_id = unique("hub-");
    let mut hub = HubProcess::spawn(&db.url, broker.port(), &client_id);
    hub.wait_connected().await;
    assert!(hub.terminate(), "clean exit on SIGTERM");
    stream(broker.port(), t.clone(), N, 50_000).await.unwrap();
    assert_eq!(db.count("SELECT count(*) FROM light_readings").await, 0);
    hub.restart();
    assert_exactly(&db.url, N, Duration::from_secs(60)).await;
}

#[tokio::test]
async fn a_broker_restart_keeps_the_hub_session_and_its_queue() {
    const N: usize = 3_000;
    let Setup {
        tenant: t,
        db,
        mut broker,
    } = Setup::start(&[(Kind::Light, DEVICES)]).await;
    let client_id = unique("hub-");
    let mut hub = HubProcess::spawn(&db.url, broker.port(), &client_id);
    hub.wait_connected().await;
    assert!(hub.terminate());
    stream(broker.port(), t.clone(), N, 50_000).await.unwrap();
    // The broker restarts while holding the hub's queued messages.
    broker.broker.restart().unwrap();
    hub.restart();
    assert_exactly(&db.url, N, Duration::from_secs(60)).await;
    // The session was there: nothing to report.
    assert_eq!(
        hub.metric("cityhub_ingest_mqtt_sessions_lost_total"),
        Some(0.0)
    );
    assert!(health(&hub).contains(r#""status":"ok""#));
}

#[tokio::test]
async fn a_hub_without_its_broker_says_so_in_health_until_it_is_back() {
    let Setup { db, mut broker, .. } = Setup::start(&[(Kind::Light, DEVICES)]).await;
    let mut hub = HubProcess::spawn(&db.url, broker.port(), &unique("hub-"));
    hub.wait_connected().await;
    assert!(health(&hub).contains(r#""status":"ok""#));
    broker.broker.restart().unwrap();
    // A broker that comes back within moments is not a problem worth a page.
    hub.wait_connected().await;
    assert!(health(&hub).contains(r#""status":"ok""#));
    broker.broker.stop().unwrap();
    let answer = eventually(Duration::from_secs(40), "health to say so", || async {
        let answer = health(&hub);
        answer
            .contains("no connection to the MQTT broker since")
            .then_some(answer)
    })
    .await;
    assert!(answer.contains(r#""status":"degraded""#), "{answer}");
    broker.broker.restart().unwrap();
    eventually(Duration::from_secs(40), "health to be ok again", || async {
        health(&hub).contains(r#""status":"ok""#).then_some(())
    })
    .await;
}

fn health(hub: &HubProcess) -> String {
    tests::hub::http_get(hub.http_port, "/health").expect("/health answers")
}

#[tokio::test]
async fn a_session_the_broker_no_longer_holds_is_counted_and_reported_by_health() {
    let Setup {
        tenant: t,
        db,
        broker,
    } = Setup::start(&[(Kind::Light, DEVICES)]).await;
    let mut hub = HubProcess::spawn(&db.url, broker.port(), &unique("hub-"));
    hub.wait_connected().await;
    db.wait_count(
        "SELECT count(*) FROM settings WHERE key LIKE 'mqtt_session:%'",
        1,
    )
    .await;
    assert!(hub.terminate());
    // Back to the session the broker kept: quiet.
    hub.restart();
    hub.wait_connected().await;
    assert_eq!(
        hub.metric("cityhub_ingest_mqtt_sessions_lost_total"),
        Some(0.0)
    );
    assert!(health(&hub).contains(r#""status":"ok""#));
    assert!(hub.terminate());

    // Readings queued for the hub, then its session discarded (by its own account, the
    // only one the shipped broker lets do it): they are gone, and the hub says so.
    stream(broker.port(), t, 10, 1_000).await.unwrap();
    tests::broker::discard_hub_session(broker.port()).await;
    hub.restart();
    hub.wait_connected().await;
    assert_eq!(
        hub.metric("cityhub_ingest_mqtt_sessions_lost_total"),
        Some(1.0)
    );
    let answer = health(&hub);
    assert!(answer.contains(r#""status":"degraded""#), "{answer}");
    assert!(
        answer.contains("did not keep the hub's session"),
        "{answer}"
    );
    assert_eq!(db.count("SELECT count(*) FROM light_readings").await, 0);

    // A restart does not make the loss any smaller: still reported.
    assert!(hub.terminate());
    hub.restart();
    hub.wait_connected().await;
    let answer = health(&hub);
    assert!(
        answer.contains("did not keep the hub's session"),
        "{answer}"
    );
    assert!(hub.terminate());

    // The session discarded again, and the hub started with another client id on the
    // same account: the broker keys the session by the account, and so does the hub.
    tests::broker::discard_hub_session(broker.port()).await;
    let mut renamed = HubProcess::spawn(&db.url, broker.port(), &unique("another-id-"));
    renamed.wait_connected().await;
    assert_eq!(
        renamed.metric("cityhub_ingest_mqtt_sessions_lost_total"),
        Some(1.0),
        "a new client id does not hide the loss"
    );
}

#[tokio::test]
async fn a_message_the_database_refuses_is_dead_lettered_alone() {
    let t = unique("t");
    let db = TestDb::new().await;
    db.import(&devices(&t, &[(Kind::Light, 3)])).await;
    // A rule the decoder does not know about: the database refuses dim = 13.
    db.client
        .batch_execute("ALTER TABLE light_readings ADD CONSTRAINT unlucky CHECK (dim <> 13)")
        .await
        .unwrap();
    let broker = TestBroker::start();
    let mut config = ingest_config(broker.port(), &unique("hub-"));
    config.batch_max_wait_ms = 500; // one batch for all of them
    let hub = InProcessHub::start(config, &db.url).await;
    let mut p = Publisher::connect(broker.port()).await;
    let ts = now_ms();
    for (i, dim) in [10, 11, 13, 14].into_iter().enumerate() {
        p.send(
            &format!("city/{t}/light/L{}/telemetry", i % 3),
            format!(r#"{{"ts":{},"dim":{dim}}}"#, ts + i as i64),
        )
        .await;
    }
    p.flush().await;
    eventually(
        Duration::from_secs(15),
        "three rows and one dead letter",
        || async {
            let rows = db.count("SELECT count(*) FROM light_readings").await;
            let dead = db
                .count("SELECT count(*) FROM dead_letters WHERE code = 'storage_refused'")
                .await;
            (rows == 3 && dead == 1).then_some(())
        },
    )
    .await;
    let reason: String = db
        .client
        .query_one("SELECT reason FROM dead_letters", &[])
        .await
        .unwrap()
        .get(0);
    assert!(reason.contains("unlucky"), "{reason}");
    // Ingestion goes on.
    p.send(
        &format!("city/{t}/light/L0/telemetry"),
        format!(r#"{{"ts":{},"dim":50}}"#, ts + 10),
    )
    .await;
    p.flush().await;
    eventually(Duration::from_secs(10), "the next reading", || async {
        (db.count("SELECT count(*) FROM light_readings").await == 4).then_some(())
    })
    .await;
    hub.stop().await;
}

#[tokio::test]
async fn idle_http_connections_never_take_the_descriptors_of_ingestion_or_health() {
    const N: usize = 200;
    let Setup {
        tenant: t,
        db,
        broker,
    } = Setup::start(&[(Kind::Light, DEVICES)]).await;
    // 256 descriptors, as the hub was allowed on a small system.
    let mut hub = HubProcess::spawn_limited(&db.url, broker.port(), &unique("hub-"), &[], 256);
    hub.wait_connected().await;
    // Four hundred sockets that say nothing, more than the process could hold.
    let mut idle = Vec::new();
    for _ in 0..400 {
        if let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", hub.http_port)).await {
            idle.push(s);
        }
    }
    assert!(health(&hub).contains(r#""status":"ok""#));
    let open = hub.metric("cityhub_api_connections").unwrap();
    assert!(open <= 16.0, "{open} connections open");
    // Ingestion and the database keep working.
    stream(broker.port(), t, N, 2_000).await.unwrap();
    assert_exactly(&db.url, N, Duration::from_secs(60)).await;
    assert!(health(&hub).contains(r#""status":"ok""#));
    drop(idle);
    assert!(hub.terminate());
}

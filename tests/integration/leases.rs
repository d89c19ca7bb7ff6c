//! Several hub instances on one database and broker: leases, their takeover, the fence
//! that refuses a stale holder's writes, and the stream moving to another instance when
//! its holder is killed.

use std::time::Duration;

use model::Kind;
use store::leases::Taken;
use store::StoreError;
use tests::db::{devices, opened};
use tests::hub::HubProcess;
use tests::{eventually, now_ms, unique, Publisher, Setup, TestDb};

fn held(t: Taken) -> store::leases::Lease {
    match t {
        Taken::Held(l) => l,
        Taken::Busy(l) => panic!("busy: {l:?}"),
    }
}

#[tokio::test]
async fn a_lease_has_one_holder_and_a_greater_epoch_after_each_takeover() {
    let db = TestDb::new().await;
    let a = db.admin().await;
    let b = db.admin().await;
    let first = held(a.take_lease("stream", "a", 60_000).await.unwrap());
    assert_eq!((first.holder.as_str(), first.epoch), ("a", 1));
    // Not expired: b waits, and is told who holds it.
    match b.take_lease("stream", "b", 60_000).await.unwrap() {
        Taken::Busy(l) => assert_eq!((l.holder.as_str(), l.epoch), ("a", 1)),
        other => panic!("{other:?}"),
    }
    // The holder renews at its epoch; asking again is a renewal too.
    let renewed = a.renew_lease(&first, 60_000).await.unwrap().unwrap();
    assert_eq!(renewed.epoch, 1);
    assert!(renewed.expires_at >= first.expires_at);
    assert_eq!(
        held(a.take_lease("stream", "a", 60_000).await.unwrap()).epoch,
        1
    );
    // Other leases are apart.
    assert_eq!(
        held(b.take_lease("commands", "b", 60_000).await.unwrap()).epoch,
        1
    );

    // Given back, it is b's at once, at the next epoch; a cannot renew it any more.
    a.release_lease(&renewed).await.unwrap();
    let second = held(b.take_lease("stream", "b", 60_000).await.unwrap());
    assert_eq!((second.holder.as_str(), second.epoch), ("b", 2));
    assert_eq!(a.renew_lease(&renewed, 60_000).await.unwrap(), None);
    // Expired (b stopped renewing): a takes it, at epoch 3.
    let short = held(b.take_lease("stream", "b", 200).await.unwrap());
    assert_eq!(short.epoch, 2);
    assert!(matches!(
        a.take_lease("stream", "a", 60_000).await.unwrap(),
        Taken::Busy(_)
    ));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let third = held(a.take_lease("stream", "a", 60_000).await.unwrap());
    assert_eq!((third.holder.as_str(), third.epoch), ("a", 3));
    let names: Vec<(String, String)> = a
        .leases()
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.name, l.holder))
        .collect();
    assert_eq!(
        names,
        [
            ("commands".to_owned(), "b".to_owned()),
            ("stream".to_owned(), "a".to_owned())
        ]
    );
    // A name the table does not take.
    assert!(a.take_lease("Stream!", "a", 1_000).await.is_err());
}

/// A holder paused past its lease (a long GC, a frozen VM, SIGSTOP) wakes up with
/// decisions to write: the database refuses them, and what the new holder wrote stands.
#[tokio::test]
async fn a_paused_holders_late_write_is_refused_by_the_database() {
    let db = TestDb::new().await;
    let tenant = unique("t");
    db.import(&devices(&tenant, &[(Kind::Light, 2)])).await;
    let ids = db.device_ids(&tenant).await;
    let admin = db.admin().await;
    let paused = held(admin.take_lease("stream", "paused", 200).await.unwrap());
    let mut stale = db.detection().await;
    stale.set_fence(Some(paused.fence()));
    // While it holds the lease, its writes go through.
    stale
        .apply_outage_changes(&[opened(ids["L0"], "lamp_failure", "2026-03-01T00:00:00Z")])
        .await
        .unwrap();
    // It pauses; its lease runs out and another instance takes over.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let next = held(admin.take_lease("stream", "next", 60_000).await.unwrap());
    assert_eq!(next.epoch, paused.epoch + 1);
    let mut current = db.detection().await;
    current.set_fence(Some(next.fence()));
    current
        .apply_outage_changes(&[opened(ids["L1"], "lamp_failure", "2026-03-01T00:05:00Z")])
        .await
        .unwrap();
    // It wakes up and writes what it had decided: refused, nothing of it stored.
    let late = stale
        .apply_outage_changes(&[opened(ids["L1"], "lamp_voltage", "2026-03-01T00:06:00Z")])
        .await
        .unwrap_err();
    assert!(
        matches!(&late, StoreError::Fenced { lease, epoch, .. } if lease == "stream" && *epoch == paused.epoch),
        "{late:?}"
    );
    assert!(late.to_string().contains("next at epoch 2"), "{late}");
    let work_order = stale
        .transition_work_order(
            1,
            model::WorkOrderState::Closed,
            "rules",
            None,
            model::Timestamp::now(),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(work_order, StoreError::Fenced { .. }),
        "{work_order:?}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM outages").await,
        2,
        "the paused holder's first outage and the new holder's"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM outages WHERE kind = 'lamp_voltage'")
            .await,
        0
    );
    // Without a fence (a single hub before leases, or a tool), writes are not checked.
    let mut unfenced = db.detection().await;
    unfenced
        .apply_outage_changes(&[opened(ids["L0"], "lamp_voltage", "2026-03-01T00:07:00Z")])
        .await
        .unwrap();
}

/// A fenced transaction in flight (the rules resolving a whole city's silences at once)
/// holds up a takeover until it ends, but never its own holder's renewals: a holder busy
/// writing keeps its lease.
#[tokio::test]
async fn a_write_in_flight_holds_up_a_takeover_but_not_a_renewal() {
    let db = TestDb::new().await;
    let admin = db.admin().await;
    let lease = held(admin.take_lease("stream", "busy", 300).await.unwrap());
    let (mut client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let tx = client.transaction().await.unwrap();
    lease.fence().check(&tx).await.unwrap();

    let renewed = tokio::time::timeout(Duration::from_secs(5), admin.renew_lease(&lease, 300))
        .await
        .expect("a renewal does not wait for the holder's writes")
        .unwrap()
        .expect("still the holder's");
    // Its lease runs out while the write goes on: another instance asking first hears it
    // is busy, then, once it has expired, waits for the write before it takes over.
    let other = db.admin().await;
    let asked = tokio::time::timeout(
        Duration::from_secs(5),
        other.take_lease("stream", "other", 60_000),
    )
    .await
    .expect("asking for a lease held does not wait for its holder's writes");
    assert!(matches!(asked.unwrap(), Taken::Busy(_)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut takeover =
        tokio::spawn(async move { other.take_lease("stream", "other", 60_000).await });
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut takeover)
            .await
            .is_err(),
        "the takeover waits for the write in flight"
    );
    tx.commit().await.unwrap();
    let taken = held(takeover.await.unwrap().unwrap());
    assert_eq!(
        (taken.holder.as_str(), taken.epoch),
        ("other", renewed.epoch + 1)
    );
}

/// One reading of each of `lamps` lamps, at `at_ms`.
async fn round(p: &mut Publisher, tenant: &str, at_ms: i64, lamps: usize) {
    for i in 0..lamps {
        p.send(
            &format!("city/{tenant}/light/L{i}/telemetry"),
            format!(r#"{{"ts":{at_ms},"on":true,"dim":50}}"#),
        )
        .await;
    }
    p.flush().await;
}

/// Two instances on one database and broker: one runs ingestion and the rules, the other
/// stands by. Killing the first with SIGKILL moves them to the second within the lease's
/// time to live, and every reading published, before, during and after, is stored once.
#[tokio::test]
async fn killing_the_instance_that_ingests_moves_the_stream_to_another_and_loses_nothing() {
    const LAMPS: usize = 20;
    let Setup {
        tenant: t,
        db,
        broker,
    } = Setup::start(&[(Kind::Light, LAMPS)]).await;
    // One MQTT session for the city, whichever instance holds it.
    let client_id = unique("hub-");
    let settings = [("CITYHUB_LEASE_TTL_S", "2")];
    let mut first = HubProcess::spawn_with(&db.url, broker.port(), &client_id, &settings);
    first.wait_connected().await;
    let second = HubProcess::spawn_with(&db.url, broker.port(), &client_id, &settings);
    // The second answers the API but does not ingest.
    eventually(
        Duration::from_secs(20),
        "the second instance's API",
        || async {
            tests::hub::http_get(second.http_port, "/health")
                .ok()
                .filter(|h| h.contains("\"status\""))
        },
    )
    .await;
    assert_eq!(
        second
            .metric("cityhub_ingest_mqtt_connects_total")
            .unwrap_or(0.0),
        0.0,
        "one instance ingests"
    );

    let mut p = Publisher::connect(broker.port()).await;
    let start = now_ms();
    for k in 0..5 {
        round(&mut p, &t, start + k * 1000, LAMPS).await;
    }
    db.wait_count("SELECT count(*) FROM light_readings", 5 * LAMPS as i64)
        .await;
    first.kill_9();
    let killed = std::time::Instant::now();
    // Published while nobody ingests: the broker keeps them in the city's session.
    for k in 5..10 {
        round(&mut p, &t, start + k * 1000, LAMPS).await;
    }
    eventually(
        Duration::from_secs(15),
        "the second instance ingesting",
        || async {
            (second
                .metric("cityhub_ingest_mqtt_connects_total")
                .unwrap_or(0.0)
                >= 1.0)
                .then_some(())
        },
    )
    .await;
    let takeover = killed.elapsed();
    eprintln!("stream taken over {takeover:?} after the SIGKILL");
    assert!(
        takeover < Duration::from_secs(10),
        "taken over in {takeover:?}"
    );
    for k in 10..15 {
        round(&mut p, &t, start + k * 1000, LAMPS).await;
    }
    // Every reading acknowledged by the broker is stored (once: a reading's key is its
    // device and time).
    db.wait_count("SELECT count(*) FROM light_readings", 15 * LAMPS as i64)
        .await;
    let holder: String = db
        .client
        .query_one("SELECT holder FROM leases WHERE name = 'stream'", &[])
        .await
        .unwrap()
        .get(0);
    let epoch: i64 = db
        .client
        .query_one("SELECT epoch FROM leases WHERE name = 'stream'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(epoch, 2, "taken over once; holder {holder}");
    // The singletons moved too: the command dispatcher, the upkeep, the rollups, the audit
    // anchor and the webhooks.
    eventually(
        Duration::from_secs(15),
        "every lease held by the second",
        || async {
            let rows = db
                .client
                .query(
                    "SELECT count(*) FROM leases WHERE holder = $1 AND expires_at > now()",
                    &[&holder],
                )
                .await
                .ok()?;
            (rows[0].get::<_, i64>(0) == 6).then_some(())
        },
    )
    .await;
    // Its metrics say so: six pieces of work held, each taken once.
    assert_eq!(second.metric("cityhub_lease_held"), Some(6.0));
    assert_eq!(second.metric("cityhub_lease_taken_total"), Some(6.0));
}

/// An instance set up with another ingest account than the one that ingested before it
/// takes the stream over, but what the broker queued for the other session is read by
/// nobody: it says so in its log and in `/health`.
#[tokio::test]
async fn an_instance_with_another_mqtt_session_says_the_previous_queue_is_unread() {
    let Setup {
        tenant: _,
        db,
        broker,
    } = Setup::start(&[(Kind::Light, 1)]).await;
    let settings = [("CITYHUB_LEASE_TTL_S", "2")];
    let mut first = HubProcess::spawn_with(&db.url, broker.port(), &unique("hub-"), &settings);
    first.wait_connected().await;
    // Another account (with the shipped broker configuration, the account is the session).
    let other = tests::broker::tester(broker.port());
    let mut second = HubProcess::spawn_with(
        &db.url,
        broker.port(),
        &other,
        &[
            ("CITYHUB_LEASE_TTL_S", "2"),
            ("CITYHUB_MQTT_USERNAME", &other),
            ("CITYHUB_MQTT_PASSWORD", tests::broker::TESTER_PASSWORD),
        ],
    );
    let health =
        |hub: &HubProcess| tests::hub::http_get(hub.http_port, "/health").unwrap_or_default();
    eventually(
        Duration::from_secs(20),
        "the second instance's API",
        || async { health(&second).contains("\"status\"").then_some(()) },
    )
    .await;
    assert!(
        health(&second).contains(r#""status":"ok""#),
        "{}",
        health(&second)
    );
    first.kill_9();
    second.wait_connected().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let answer = loop {
        let h = health(&second);
        if h.contains("read by nobody") {
            break h;
        }
        let leases: Vec<(String, Option<String>)> = db
            .client
            .query(
                "SELECT holder, detail FROM leases WHERE name = 'stream'",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert!(
            std::time::Instant::now() < deadline,
            "no warning: {h}; stream lease {leases:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(answer.contains(r#""status":"degraded""#), "{answer}");
}

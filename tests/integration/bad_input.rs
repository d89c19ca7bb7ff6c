//! Nothing a device sends can break ingestion: every bad-input class is dead-lettered with
//! a clear reason, acknowledged, and good traffic keeps flowing around it.

use std::time::Duration;

use model::Kind;
use tests::hub::ingest_config;
use tests::{eventually, now_ms, unique, InProcessHub, Publisher, Setup};

#[tokio::test]
async fn every_bad_input_class_is_dead_lettered_while_good_traffic_flows() {
    let Setup {
        tenant: t,
        db,
        broker,
    } = Setup::start(&[(Kind::Light, 3), (Kind::Meter, 1)]).await;
    let mut config = ingest_config(broker.port(), &unique("hub-"));
    config.limits.max_payload_bytes = 2048;
    let hub = InProcessHub::start(config, &db.url).await;
    let mut p = Publisher::connect(broker.port()).await;
    let ts = now_ms();
    let light = |d: &str| format!("city/{t}/light/{d}/telemetry");

    // (topic, payload, expected reason code, fragment of the stored reason)
    let bad: Vec<(String, Vec<u8>, &str, &str)> = vec![
        (
            light("L0"),
            br#"{"ts":"#.to_vec(),
            "invalid_json",
            "not valid JSON",
        ),
        (
            light("L0"),
            b"\xff\xfe\x00garbage".to_vec(),
            "invalid_json",
            "not valid JSON",
        ),
        (
            light("L0"),
            b"42".to_vec(),
            "not_an_object",
            "found a number",
        ),
        (
            light("L0"),
            format!(r#"{{"ts":{ts},"on":"yes"}}"#).into_bytes(),
            "wrong_type",
            "field `on`: expected a boolean, got a string",
        ),
        (
            light("L0"),
            br#"{"on":true}"#.to_vec(),
            "missing_ts",
            "missing required field `ts`",
        ),
        (
            light("L0"),
            format!(r#"{{"ts":{}}}"#, ts + 600_000).into_bytes(),
            "future_ts",
            "in the future",
        ),
        (
            light("L0"),
            format!(r#"{{"ts":{}}}"#, ts - 400 * 86_400_000).into_bytes(),
            "expired_ts",
            "older than the retention of 365 days",
        ),
        (
            light("L0"),
            format!(r#"{{"ts":{ts},"dim":150}}"#).into_bytes(),
            "out_of_range",
            "field `dim`: 150 is out of range 0..100",
        ),
        (
            light("L0"),
            format!(r#"{{"ts":{ts},"fault":"x\u0000y"}}"#)
                .replace('\0', "\\u0000")
                .into_bytes(),
            "wrong_type",
            "NUL",
        ),
        (
            "city/nowhere/light/L0/telemetry".to_owned(),
            format!(r#"{{"ts":{ts}}}"#).into_bytes(),
            "unknown_tenant",
            "unknown tenant `nowhere`",
        ),
        (
            light("L9"),
            format!(r#"{{"ts":{ts}}}"#).into_bytes(),
            "unknown_device",
            "unknown device `L9`",
        ),
        (
            format!("city/{t}/meter/L0/telemetry"),
            format!(r#"{{"ts":{ts}}}"#).into_bytes(),
            "kind_mismatch",
            "registered as a light, but the topic says meter",
        ),
        (
            format!("city/{t}/lamp/L0/telemetry"),
            format!(r#"{{"ts":{ts}}}"#).into_bytes(),
            "bad_topic",
            "kind must be one of",
        ),
        (
            light("L0"),
            format!(r#"{{"ts":{ts},"fault":"{}"}}"#, "x".repeat(3000)).into_bytes(),
            "oversize",
            "over the limit of 2048 bytes",
        ),
    ];
    // Good traffic interleaved with the bad, from other lamps.
    let mut good = 0;
    for (i, (topic, payload, _, _)) in bad.iter().enumerate() {
        p.send(topic, payload.clone()).await;
        for d in ["L1", "L2"] {
            p.send(
                &light(d),
                format!(r#"{{"ts":{},"dim":{}}}"#, ts - i as i64, i),
            )
            .await;
            good += 1;
        }
    }
    // A mixed array: good objects kept, each bad one dead-lettered with its position.
    p.send(
        &light("L0"),
        format!(
            r#"[{{"ts":{ts},"dim":1}},{{"dim":2}},{{"ts":{},"dim":"3"}},{{"ts":{},"dim":4}}]"#,
            ts - 1,
            ts - 2
        ),
    )
    .await;
    good += 2;
    p.flush().await;

    let expected_dead = bad.len() as i64 + 2;
    eventually(
        Duration::from_secs(10),
        "all rows and dead letters",
        || async {
            let rows = db.count("SELECT count(*) FROM light_readings").await;
            let dead = db.count("SELECT count(*) FROM dead_letters").await;
            (rows == good && dead == expected_dead).then_some(())
        },
    )
    .await;

    for (topic, payload, code, fragment) in &bad {
        let row = db
            .client
            .query_one("SELECT reason, payload, received_at > now() - interval '1 minute' FROM dead_letters WHERE topic = $1 AND code = $2 AND payload = $3", &[topic, code, payload])
            .await
            .unwrap_or_else(|e| panic!("no single dead letter {code} on {topic}: {e}"));
        let reason: String = row.get(0);
        assert!(
            reason.contains(fragment),
            "{code}: `{reason}` should contain `{fragment}`"
        );
        assert_eq!(
            row.get::<_, Vec<u8>>(1),
            *payload,
            "raw bytes kept as received"
        );
        assert!(row.get::<_, bool>(2));
    }
    let elements: Vec<(String, i32)> = db
        .client
        .query(
            "SELECT code, element FROM dead_letters WHERE element IS NOT NULL ORDER BY element",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        elements,
        [("missing_ts".to_owned(), 1), ("wrong_type".to_owned(), 2)]
    );

    // Every message was acknowledged and counted.
    let dead_total: u64 = model::Rejection::CODES
        .iter()
        .map(|reason| {
            hub.metrics
                .dead_letters
                .get_or_create(&ingest::metrics::ReasonLabel { reason })
                .get()
        })
        .sum();
    assert_eq!(dead_total, expected_dead as u64);
    hub.stop().await;
}

#[tokio::test]
async fn the_same_message_delivered_twice_leaves_one_row() {
    let Setup {
        tenant: t,
        db,
        broker,
    } = Setup::start(&[(Kind::Light, 1)]).await;
    let hub = InProcessHub::start(ingest_config(broker.port(), &unique("hub-")), &db.url).await;
    let mut p = Publisher::connect(broker.port()).await;
    let ts = now_ms();
    let topic = format!("city/{t}/light/L0/telemetry");
    let msg = format!(r#"[{{"ts":{},"dim":1}},{{"ts":{ts},"dim":2}}]"#, ts - 1000);
    // Twice in quick succession (one batch), then again after it was committed.
    p.send(&topic, msg.clone()).await;
    p.send(&topic, msg.clone()).await;
    p.flush().await;
    eventually(Duration::from_secs(10), "first rows", || async {
        (db.count("SELECT count(*) FROM light_readings").await == 2).then_some(())
    })
    .await;
    p.send(&topic, msg.clone()).await;
    p.send(&topic, format!(r#"{{"ts":{},"dim":3}}"#, ts + 1))
        .await;
    p.flush().await;
    eventually(Duration::from_secs(10), "the new reading", || async {
        (db.count("SELECT count(*) FROM light_readings").await == 3).then_some(())
    })
    .await;
    assert_eq!(hub.metrics.duplicates.get(), 4);
    assert_eq!(db.count("SELECT count(*) FROM dead_letters").await, 0);
    hub.stop().await;
}

/// Status rows and dead letters, as stored.
async fn status_and_dead(db: &tests::TestDb) -> (i64, i64) {
    (
        db.count("SELECT count(*) FROM device_status_log").await,
        db.count("SELECT count(*) FROM dead_letters").await,
    )
}

/// Starts the hub and shows it listening: a reading sent after the start is stored (the
/// first of the test's readings).
async fn start_listening(
    config: ingest::IngestConfig,
    db: &tests::TestDb,
    p: &mut Publisher,
    tenant: &str,
) -> InProcessHub {
    let hub = InProcessHub::start(config, &db.url).await;
    p.send(
        &format!("city/{tenant}/light/L0/telemetry"),
        format!(r#"{{"ts":{}}}"#, now_ms()),
    )
    .await;
    p.flush().await;
    db.wait_count("SELECT count(*) FROM light_readings", 1)
        .await;
    hub
}

#[tokio::test]
async fn a_retained_message_is_recorded_once_however_often_the_broker_sends_it_again() {
    let Setup {
        tenant: t,
        db,
        broker,
    } = Setup::start(&[(Kind::Light, 2)]).await;
    let config = || ingest_config(broker.port(), "cityhub-ingest");
    // A last will without `ts` (the hub stamps it when received) and a bad payload, both
    // retained: the broker sends them to a new subscription of the hub.
    let status = format!("city/{t}/light/L0/status");
    let mut p = Publisher::connect(broker.port()).await;
    p.send_retained(&status, r#"{"state":"online"}"#).await;
    p.send_retained(&format!("city/{t}/light/L1/telemetry"), "not json")
        .await;
    p.flush().await;

    let hub = InProcessHub::start(config(), &db.url).await;
    eventually(Duration::from_secs(10), "both recorded", || async {
        (status_and_dead(&db).await == (1, 1)).then_some(())
    })
    .await;
    assert_eq!(hub.metrics.retained_repeats.get(), 0);
    hub.stop().await;

    // A restart resumes the session, whose subscriptions the broker kept: the stored
    // copies are not sent again (a reading sent after the start shows the hub listening).
    let hub = start_listening(config(), &db, &mut p, &t).await;
    assert_eq!(hub.metrics.retained_repeats.get(), 0);
    hub.stop().await;
    assert_eq!(status_and_dead(&db).await, (1, 1));

    // A broker that lost the session sends them to the new subscriptions: recognised,
    // acknowledged, not recorded (judged against the database: this run has not seen
    // them).
    tests::broker::discard_hub_session(broker.port()).await;
    let hub = InProcessHub::start(config(), &db.url).await;
    eventually(Duration::from_secs(10), "the retained repeats", || async {
        (hub.metrics.retained_repeats.get() == 2).then_some(())
    })
    .await;
    hub.stop().await;
    assert_eq!(status_and_dead(&db).await, (1, 1));

    // A new retained status while the hub runs arrives live, then again as retained when
    // the session is taken from the running hub and it subscribes anew: one row (judged
    // against what this run recorded).
    let hub = InProcessHub::start(config(), &db.url).await;
    p.send_retained(&status, r#"{"state":"offline"}"#).await;
    p.flush().await;
    eventually(Duration::from_secs(10), "the new status", || async {
        (status_and_dead(&db).await == (2, 1)).then_some(())
    })
    .await;
    tests::broker::discard_hub_session(broker.port()).await;
    eventually(
        Duration::from_secs(20),
        "the hub back, repeats judged",
        || async {
            (hub.metrics.connects.get() == 2 && hub.metrics.retained_repeats.get() == 2)
                .then_some(())
        },
    )
    .await;
    hub.stop().await;
    assert_eq!(status_and_dead(&db).await, (2, 1));
    assert_eq!(
        db.count("SELECT count(*) FROM device_latest WHERE NOT online")
            .await,
        1,
        "the device is offline, as it last said"
    );
}

#[tokio::test]
async fn a_retained_status_contradicted_by_a_later_one_is_not_taken_again_at_a_restart() {
    let Setup {
        tenant: t,
        db,
        broker,
    } = Setup::start(&[(Kind::Light, 1)]).await;
    let config = || ingest_config(broker.port(), "cityhub-ingest");
    let status = format!("city/{t}/light/L0/status");
    let mut p = Publisher::connect(broker.port()).await;
    // Against the contract: `online` retained, then `offline` not retained, so the broker
    // still holds `online`.
    let hub = InProcessHub::start(config(), &db.url).await;
    p.send_retained(&status, r#"{"state":"online"}"#).await;
    p.flush().await;
    p.send(&status, r#"{"state":"offline"}"#).await;
    p.flush().await;
    eventually(Duration::from_secs(10), "both recorded", || async {
        (status_and_dead(&db).await == (2, 0)).then_some(())
    })
    .await;
    hub.stop().await;

    let hub = start_listening(config(), &db, &mut p, &t).await;
    hub.stop().await;
    assert_eq!(status_and_dead(&db).await, (2, 0), "nothing recorded again");
    assert_eq!(
        db.count("SELECT count(*) FROM device_latest WHERE NOT online")
            .await,
        1,
        "offline, as it last said"
    );
}

#[tokio::test]
async fn a_device_back_online_while_the_hub_was_away_is_online_after_its_restart() {
    let Setup {
        tenant: t,
        db,
        broker,
    } = Setup::start(&[(Kind::Light, 1)]).await;
    let config = || ingest_config(broker.port(), "cityhub-ingest");
    let status = format!("city/{t}/light/L0/status");
    let (online, offline) = (r#"{"state":"online"}"#, r#"{"state":"offline"}"#);
    let mut p = Publisher::connect(broker.port()).await;
    // As the contract asks: every status retained, its last will too, without `ts`.
    let hub = InProcessHub::start(config(), &db.url).await;
    p.send_retained(&status, online).await;
    p.flush().await;
    p.send_retained(&status, offline).await;
    p.flush().await;
    eventually(Duration::from_secs(10), "both recorded", || async {
        (status_and_dead(&db).await == (2, 0)).then_some(())
    })
    .await;
    hub.stop().await;
    // Back online while the hub is away: the same bytes as its first `online`.
    p.send_retained(&status, online).await;
    p.flush().await;
    let hub = InProcessHub::start(config(), &db.url).await;
    eventually(
        Duration::from_secs(10),
        "the new online recorded",
        || async { (status_and_dead(&db).await == (3, 0)).then_some(()) },
    )
    .await;
    hub.stop().await;
    assert_eq!(
        db.count("SELECT count(*) FROM device_latest WHERE online")
            .await,
        1,
        "online, as it last said"
    );
}

#[tokio::test]
async fn dead_letters_keep_a_prefix_and_each_device_only_its_hourly_share() {
    let Setup {
        tenant: t,
        db,
        broker,
    } = Setup::start(&[(Kind::Light, 2)]).await;
    let mut config = ingest_config(broker.port(), &unique("hub-"));
    config.dead_letter_bytes = 1024;
    config.dead_letters_per_device_per_hour = 5;
    let hub = InProcessHub::start(config, &db.url).await;
    let mut p = Publisher::connect(broker.port()).await;
    // Thirty 1 MB payloads from one lamp (over the 256 KiB limit), each different.
    let payload = |i: u8| -> Vec<u8> { (0..1_000_000u32).map(|k| (k as u8) ^ i).collect() };
    for i in 0..30 {
        p.send(&format!("city/{t}/light/L0/telemetry"), payload(i))
            .await;
    }
    // Another lamp's refusals are its own share.
    p.send(&format!("city/{t}/light/L1/telemetry"), "not json")
        .await;
    p.flush().await;
    eventually(Duration::from_secs(30), "every refusal counted", || async {
        let counted = hub.metrics.dead_letters_unstored.get()
            + db.count("SELECT count(*) FROM dead_letters").await as u64;
        (counted == 31).then_some(())
    })
    .await;
    let metrics = hub.metrics.clone();
    hub.stop().await;

    let rows = db
        .client
        .query(
            "SELECT topic, code, length(payload), size, sha256, payload FROM dead_letters ORDER BY topic, id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        6,
        "five of the first lamp's, one of the other's"
    );
    // The first five sent are the ones stored (whatever order their batches committed in).
    let mut stored: Vec<u8> = Vec::new();
    for r in &rows[..5] {
        assert_eq!(r.get::<_, String>(1), "oversize");
        assert_eq!(
            (r.get::<_, i32>(2), r.get::<_, Option<i32>>(3)),
            (1024, Some(1_000_000)),
            "a prefix, and the size of the whole"
        );
        let sha: Vec<u8> = r.get(4);
        let n = (0..30u8)
            .find(|&i| store::mqtt::payload_digest(&payload(i))[..] == sha[..])
            .expect("the digest of one payload sent");
        assert_eq!(r.get::<_, Vec<u8>>(5), payload(n)[..1024]);
        stored.push(n);
    }
    stored.sort_unstable();
    assert_eq!(stored, [0, 1, 2, 3, 4]);
    assert_eq!(rows[5].get::<_, String>(1), "invalid_json");
    assert_eq!(rows[5].get::<_, Vec<u8>>(5), b"not json");
    // Counted all the same: 31 refusals, 25 of them not stored.
    assert_eq!(
        metrics
            .dead_letters
            .get_or_create(&ingest::metrics::ReasonLabel { reason: "oversize" })
            .get(),
        30
    );
    assert_eq!(metrics.dead_letters_unstored.get(), 25);
    assert_eq!(
        metrics.dead_letter_bytes_left_out.get(),
        5 * (1_000_000 - 1024)
    );
    // 30 MB sent; the table holds a few kilobytes of it.
    let table_bytes = db
        .count("SELECT pg_total_relation_size('dead_letters')")
        .await;
    assert!(table_bytes < 1_000_000, "{table_bytes} bytes");
}

#[tokio::test]
async fn dead_letters_and_topic_digests_older_than_their_retention_are_deleted() {
    let Setup {
        tenant: _,
        db,
        broker,
    } = Setup::start(&[(Kind::Light, 1)]).await;
    db.client
        .batch_execute(
            "INSERT INTO dead_letters (received_at, topic, payload, reason, code)
             VALUES (now() - interval '31 days', 'city/x/light/L0/telemetry', 'old', 'test', 'invalid_json'),
                    (now() - interval '29 days', 'city/x/light/L0/telemetry', 'recent', 'test', 'invalid_json');
             INSERT INTO mqtt_topic_digests (topic, sha256, received_at)
             VALUES ('city/x/light/L0/status', decode(repeat('00', 32), 'hex'), now() - interval '31 days'),
                    ('city/x/light/L1/status', decode(repeat('11', 32), 'hex'), now() - interval '29 days')",
        )
        .await
        .unwrap();
    let mut hub = tests::HubProcess::spawn_with(
        &db.url,
        broker.port(),
        &unique("hub-"),
        &[("CITYHUB_DEAD_LETTER_RETENTION_DAYS", "30")],
    );
    hub.wait_connected().await;
    eventually(
        Duration::from_secs(20),
        "the old dead letter deleted",
        || async { (db.count("SELECT count(*) FROM dead_letters").await == 1).then_some(()) },
    )
    .await;
    let kept: Vec<u8> = db
        .client
        .query_one("SELECT payload FROM dead_letters", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, b"recent");
    eventually(
        Duration::from_secs(20),
        "the old digest forgotten",
        || async {
            let topics = db.count("SELECT count(*) FROM mqtt_topic_digests").await;
            let recent = db
            .count("SELECT count(*) FROM mqtt_topic_digests WHERE topic = 'city/x/light/L1/status'")
            .await;
            (topics == 1 && recent == 1).then_some(())
        },
    )
    .await;
    assert!(hub.terminate());
}

/// An account that may publish for many devices (a gateway) makes device ids up: they
/// share one dead-letter share per tenant, and leave no row of their own behind. An empty
/// retained status (how MQTT clears one) is no dead letter at all.
#[tokio::test]
async fn made_up_devices_share_their_tenants_dead_letters_and_an_empty_status_clears() {
    let Setup {
        tenant: t,
        db,
        broker,
    } = Setup::start(&[(Kind::Light, 1)]).await;
    let mut config = ingest_config(broker.port(), &unique("hub-"));
    config.dead_letters_per_device_per_hour = 5;
    let hub = InProcessHub::start(config, &db.url).await;
    let mut p = Publisher::connect(broker.port()).await;
    for n in 0..200 {
        let topic = format!("city/{t}/light/MADE-UP-{n}/telemetry");
        p.send(&topic, format!(r#"{{"ts":{}}}"#, tests::now_ms()))
            .await;
    }
    p.send_retained(&format!("city/{t}/light/L0/status"), "")
        .await;
    p.flush().await;
    eventually(Duration::from_secs(30), "every refusal counted", || async {
        let counted = hub.metrics.dead_letters_unstored.get()
            + db.count("SELECT count(*) FROM dead_letters").await as u64;
        (counted == 200).then_some(())
    })
    .await;
    hub.stop().await;
    assert_eq!(
        db.count("SELECT count(*) FROM dead_letters").await,
        5,
        "one share for the tenant's made-up ids"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM dead_letters WHERE code <> 'unknown_device'")
            .await,
        0,
        "the empty status is no dead letter"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM mqtt_topic_digests WHERE topic LIKE '%MADE-UP%'")
            .await,
        0
    );
}

/// A tenant and device imported while the hub runs are known to it at once: their first
/// message, a moment after the import and before any other message could have made the
/// hub look again, is stored, not refused as an unknown tenant.
#[tokio::test]
async fn a_tenant_imported_while_the_hub_runs_is_known_before_its_first_message() {
    let Setup {
        tenant: t,
        db,
        broker,
    } = Setup::start(&[(Kind::Light, 1)]).await;
    let mut p = Publisher::connect(broker.port()).await;
    let hub = start_listening(
        ingest_config(broker.port(), &unique("hub-")),
        &db,
        &mut p,
        &t,
    )
    .await;
    let newcomer = unique("n");
    db.import(&tests::db::devices(&newcomer, &[(Kind::Cabinet, 1)]))
        .await;
    // Well within the second after which a miss would make the hub look again, and far
    // from its periodic reload: only the import's announcement can have told it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.send(
        &format!("city/{newcomer}/cabinet/C0/telemetry"),
        format!(r#"{{"ts":{},"supply":true}}"#, now_ms()),
    )
    .await;
    p.flush().await;
    db.wait_count("SELECT count(*) FROM cabinet_readings", 1)
        .await;
    assert_eq!(
        db.count("SELECT count(*) FROM dead_letters").await,
        0,
        "nothing refused"
    );
    hub.stop().await;
}

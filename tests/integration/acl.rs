//! The shipped ACL: a device publishes only under its own topic and reads only its own commands.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions};
use simulators::broker::BrokerUser;
use tests::broker::{COMMANDS_PASSWORD, COMMANDS_USER, HUB_PASSWORD, HUB_USER};
use tests::{Publisher, Recorder, TestBroker};

/// What a recorder received, as sorted "topic payload" lines.
async fn drain(rec: &mut Recorder) -> Vec<String> {
    let mut got: Vec<String> = rec
        .until_quiet(Duration::from_millis(700))
        .await
        .into_iter()
        .map(|(t, p)| format!("{t} {}", String::from_utf8_lossy(&p)))
        .collect();
    got.sort();
    got
}

#[tokio::test]
async fn a_device_credential_cannot_publish_under_another_device() {
    let l1 = BrokerUser::new("lisbon/light/L1", "secret-1");
    let l2 = BrokerUser::new("lisbon/light/L2", "secret-2");
    let broker = TestBroker::with_users(&[l1.clone(), l2.clone()]);
    let mut hub_view = Recorder::subscribe(
        broker.port(),
        HUB_USER,
        HUB_PASSWORD,
        "city/+/+/+/telemetry",
    )
    .await;

    let mut dev = Publisher::connect_as(broker.port(), &l1.name, &l1.password).await;
    dev.send("city/lisbon/light/L1/telemetry", "own").await;
    dev.send("city/lisbon/light/L2/telemetry", "spoofed L2")
        .await;
    dev.send("city/porto/light/L1/telemetry", "other tenant")
        .await;
    dev.send("city/lisbon/meter/L1/telemetry", "other kind")
        .await;
    dev.flush().await;
    assert_eq!(
        drain(&mut hub_view).await,
        ["city/lisbon/light/L1/telemetry own"]
    );
}

#[tokio::test]
async fn a_device_reads_only_its_own_commands_and_cannot_command_others() {
    let l1 = BrokerUser::new("lisbon/light/L1", "secret-1");
    let l2 = BrokerUser::new("lisbon/light/L2", "secret-2");
    let broker = TestBroker::with_users(&[l1.clone(), l2.clone()]);
    let mut l2_inbox = Recorder::subscribe(broker.port(), &l2.name, &l2.password, "city/#").await;

    let mut hub = Publisher::connect_as(broker.port(), COMMANDS_USER, COMMANDS_PASSWORD).await;
    hub.send("city/lisbon/light/L1/cmd", "for L1").await;
    hub.send("city/lisbon/light/L2/cmd", "for L2").await;
    hub.flush().await;
    // L1 tries to command L2 directly.
    let mut rogue = Publisher::connect_as(broker.port(), &l1.name, &l1.password).await;
    rogue.send("city/lisbon/light/L2/cmd", "rogue").await;
    rogue.flush().await;
    assert_eq!(
        drain(&mut l2_inbox).await,
        ["city/lisbon/light/L2/cmd for L2"]
    );
}

#[tokio::test]
async fn anonymous_and_wrong_passwords_are_refused() {
    let broker = TestBroker::start();
    for creds in [None, Some((HUB_USER, "wrong"))] {
        let mut o = MqttOptions::new(tests::unique("anon-"), "127.0.0.1", broker.port());
        if let Some((u, p)) = creds {
            o.set_credentials(u, p);
        }
        let (_client, mut eventloop) = AsyncClient::new(o, 10);
        let outcome = tokio::time::timeout(Duration::from_secs(5), eventloop.poll())
            .await
            .unwrap();
        assert!(
            outcome.is_err(),
            "{creds:?} must be refused, got {outcome:?}"
        );
    }
}

/// Connects with `client_id` as `user` and waits for the broker's answer: `Ok` with
/// whether it kept a session, or the refusal.
async fn connect_once(
    port: u16,
    user: &BrokerUser,
    client_id: &str,
    clean: bool,
) -> Result<bool, String> {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_credentials(&user.name, &user.password)
        .set_clean_session(clean);
    let (client, mut eventloop) = AsyncClient::new(o, 10);
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(a))) => return Ok(a.session_present),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .expect("the broker answers");
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
    answer
}

#[tokio::test]
async fn no_device_credential_can_take_over_or_wipe_the_hubs_session() {
    let tenant = tests::unique("t");
    let db = tests::TestDb::new().await;
    db.import(&tests::db::devices(&tenant, &[(model::Kind::Light, 1)]))
        .await;
    let device = BrokerUser::new(format!("{tenant}/light/L0"), "device-secret");
    let broker = TestBroker::with_users(std::slice::from_ref(&device));
    // The hub under its documented client id, as it is deployed.
    let config = || tests::hub::ingest_config(broker.port(), "cityhub-ingest");

    // The hub's persistent session exists; the hub is down while its device reports.
    tests::InProcessHub::start(config(), &db.url)
        .await
        .stop()
        .await;
    let mut lamp = Publisher::connect_as(broker.port(), &device.name, &device.password).await;
    let base = tests::now_ms() - 1_000;
    for i in 0..100 {
        lamp.send(
            &format!("city/{tenant}/light/L0/telemetry"),
            format!(r#"{{"ts":{}}}"#, base + i),
        )
        .await;
    }
    lamp.flush().await;
    drop(lamp);

    // The device's credential used with the hub's client id, with a clean session (which
    // would discard the hub's queue) and with a persistent one: the broker gives the
    // connection the device's own name, and the hub's session is left alone.
    for clean in [true, false] {
        let kept = connect_once(broker.port(), &device, "cityhub-ingest", clean).await;
        assert_eq!(
            kept,
            Ok(false),
            "a session of the device's own (clean: {clean})"
        );
    }

    // The hub comes back to its session: every reading is stored.
    let hub = tests::InProcessHub::start(config(), &db.url).await;
    db.wait_count("SELECT count(*) FROM light_readings", 100)
        .await;

    // Against the running hub, the same attempt does not throw it out.
    assert!(connect_once(broker.port(), &device, "cityhub-ingest", true)
        .await
        .is_ok());
    let mut lamp = Publisher::connect_as(broker.port(), &device.name, &device.password).await;
    lamp.send(
        &format!("city/{tenant}/light/L0/telemetry"),
        format!(r#"{{"ts":{}}}"#, base + 500),
    )
    .await;
    lamp.flush().await;
    db.wait_count("SELECT count(*) FROM light_readings", 101)
        .await;
    assert_eq!(hub.metrics.connection_errors.get(), 0);
    assert_eq!(hub.metrics.connects.get(), 1);
    hub.stop().await;
}

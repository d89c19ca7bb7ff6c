//! The shipped ACL: a device publishes only under its own topic and reads only its own commands.

use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions};
use simulators::broker::BrokerUser;
use tests::broker::{HUB_PASSWORD, HUB_USER};
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

    let mut hub = Publisher::connect_as(broker.port(), HUB_USER, HUB_PASSWORD).await;
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

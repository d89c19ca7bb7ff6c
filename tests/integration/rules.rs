//! Outages through the whole stack: readings -> ingest -> rules -> outages table.

use std::time::Duration;

use model::Kind;
use tests::{eventually, unique, HubProcess, Publisher, Setup, TestDb};

/// Yesterday 23:00 UTC in Unix ms: night in Lisbon, where the test devices stand.
fn last_night_ms() -> i64 {
    let now = chrono::Utc::now().timestamp_millis();
    let day = 86_400_000;
    (now - day).div_euclid(day) * day + 23 * 3_600_000
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

//! A simulated city through the whole stack: fleet -> broker -> hub -> database, and a
//! command from the hub's side answered by a simulated lamp.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use model::Timestamp;
use simulators::city::{City, CitySpec};
use simulators::clock::SimClock;
use simulators::fleet::run::{FleetRun, FleetStats};
use simulators::fleet::{Fleet, FleetSpec};
use tests::broker::{fleet_credentials, tester, COMMANDS_PASSWORD, COMMANDS_USER, TESTER_PASSWORD};
use tests::hub::ingest_config;
use tests::{eventually, unique, InProcessHub, Publisher, Recorder, TestBroker, TestDb};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_command_to_a_simulated_lamp_is_acked_and_its_next_telemetry_shows_it() {
    let tenant = unique("sim");
    let city = Arc::new(City::generate(&CitySpec {
        seed: 11,
        tenant: tenant.clone(),
        // Hundreds of lamps on one connection: their subscriptions exceed one small packet.
        lamps: 600,
        meters: 10,
        vehicles: 3,
        ..CitySpec::default()
    }));
    let db = TestDb::new().await;
    db.import(&city.devices()).await;
    let broker = TestBroker::start();
    let hub = InProcessHub::start(ingest_config(broker.port(), &unique("hub-")), &db.url).await;

    // Real time, readings every 2 s so the city is visibly alive within the test.
    let start = Timestamp::now();
    let spec = FleetSpec {
        seed: 11,
        lamp_interval_s: 2,
        cabinet_interval_s: 2,
        meter_interval_s: 2,
        vehicle_interval_s: 1,
    };
    let fleet = Fleet::new(city.clone(), spec, start);
    let stats = Arc::new(FleetStats::default());
    let stop = CancellationToken::new();
    let run = FleetRun {
        host: "127.0.0.1".into(),
        port: broker.port(),
        credentials: fleet_credentials(),
        devices_per_connection: 400,
        // Some devices on a connection of their own, with a last will.
        own_connection_share: 0.02,
        clock: SimClock::starting_at(start, 1.0),
        client_prefix: unique("sim-"),
    };
    let connections = simulators::fleet::run::connection_groups(&fleet, &run).len();
    assert!(
        connections > fleet.len().div_ceil(400),
        "{connections} connections"
    );
    let task = tokio::spawn(simulators::fleet::run::run(
        fleet,
        run,
        stats.clone(),
        stop.clone(),
    ));
    eventually(
        Duration::from_secs(10),
        "every simulated connection",
        || {
            let up = stats.connected.load(Ordering::Relaxed);
            async move { (up == connections).then_some(()) }
        },
    )
    .await;
    // Every kind of device reports.
    for table in [
        "light_readings",
        "cabinet_readings",
        "meter_readings",
        "vehicle_readings",
    ] {
        let sql = format!("SELECT count(DISTINCT device_id) FROM {table}");
        eventually(Duration::from_secs(15), &sql, || {
            let sql = sql.clone();
            let db = &db;
            async move { (db.count(&sql).await > 0).then_some(()) }
        })
        .await;
    }

    let lamp = &city.lamps[0].id;
    let id = "0d6c1f8e-2b1a-4c53-9a7e-1b2c3d4e5f60";
    let mut control = Publisher::connect_as(broker.port(), COMMANDS_USER, COMMANDS_PASSWORD).await;
    control
        .send(
            &format!("city/{tenant}/light/{lamp}/cmd"),
            format!(
                r#"{{"id":"{id}","ts":{},"action":"set_light","on":true,"dim":40}}"#,
                Timestamp::now().micros() / 1000
            ),
        )
        .await;
    control.flush().await;
    let status: String = eventually(Duration::from_secs(10), "the command's ack", || async {
        db.client
            .query_opt(
                "SELECT status FROM command_acks WHERE id = $1::text::uuid",
                &[&id],
            )
            .await
            .unwrap()
            .map(|r| r.get(0))
    })
    .await;
    assert_eq!(status, "ok");
    eventually(
        Duration::from_secs(10),
        "telemetry with the commanded state",
        || async {
            let sql = r#"SELECT count(*) FROM light_readings r JOIN devices d ON d.id = r.device_id
                   WHERE d.ext_id = $1 AND r."on" AND r.dim = 40"#;
            let n: i64 = db.client.query_one(sql, &[lamp]).await.unwrap().get(0);
            (n > 0).then_some(())
        },
    )
    .await;
    assert_eq!(
        db.count("SELECT count(*) FROM dead_letters").await,
        0,
        "the simulated city speaks the contract"
    );
    assert!(stats.commands.load(Ordering::Relaxed) >= 1);
    stop.cancel();
    task.await.unwrap();
    hub.stop().await;
}

/// The ground truth matches what was actually published: a subscriber records the whole
/// stream of a scenario with every fault kind (a simulated day at 20,000x) and checks it.
#[tokio::test]
async fn the_ground_truth_matches_what_was_published() {
    use simulators::scenario::Scenario;
    use simulators::verify::{check, Seen};

    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/every-fault.toml"
    ))
    .unwrap();
    let scenario = Scenario::parse(&text).unwrap();
    let city = Arc::new(City::generate(&scenario.city_spec(&unique("sim"))));
    let broker = TestBroker::start();

    let filter = format!("city/{}/#", city.spec.tenant);
    let mut recorder = Recorder::subscribe(
        broker.port(),
        &tester(broker.port()),
        TESTER_PASSWORD,
        &filter,
    )
    .await;

    let start = scenario.start().unwrap();
    let plan = scenario.plan(&city, start).unwrap();
    let speed = 20_000.0;
    let clock = SimClock::starting_at(start, speed);
    let fleet = Fleet::new(
        city.clone(),
        FleetSpec {
            seed: scenario.city.seed,
            ..FleetSpec::default()
        },
        start,
    )
    .with_plan(&plan);
    let stats = Arc::new(FleetStats::default());
    let stop = CancellationToken::new();
    let run = FleetRun {
        host: "127.0.0.1".into(),
        port: broker.port(),
        credentials: fleet_credentials(),
        devices_per_connection: 200,
        own_connection_share: 0.0,
        clock,
        client_prefix: unique("sim-"),
    };
    let task = tokio::spawn(simulators::fleet::run::run(
        fleet,
        run,
        stats.clone(),
        stop.clone(),
    ));
    let end = start.add_secs(scenario.duration_s as i64);
    eventually(
        Duration::from_secs(60),
        "the end of the simulated day",
        || async { (clock.now() >= end).then_some(()) },
    )
    .await;
    stop.cancel();
    task.await.unwrap();
    let published = stats.published.load(Ordering::Relaxed) as usize;
    let seen: Vec<Seen> = recorder
        .at_least(
            published,
            Duration::from_secs(60),
            Duration::from_millis(500),
        )
        .await
        .into_iter()
        .map(|(topic, payload)| Seen { topic, payload })
        .collect();
    let published = stats.published.load(Ordering::Relaxed) as usize;
    assert_eq!(
        seen.len(),
        published,
        "the recorder saw every published message"
    );
    let problems = check(&city, &plan.faults, &seen);
    assert!(problems.is_empty(), "{problems:#?}");
}

//! `cityhub bench ingest`: the ingest rate, latency and memory of the whole path, against
//! the raw limits of its parts measured in the same run on the same machine.
//!
//! For each workload (one reading per message; 50 readings per message):
//! 1. broker limit: the load generator publishes at full speed (QoS 1) to a private broker
//!    running the shipped configuration while a subscriber only counts;
//! 2. COPY limit: the same rows, binary COPY into the reading table and nothing else;
//! 3. the hub (`cityhub serve`, a child process): full speed, then half of the rate it
//!    reached for the latency percentiles; peak RSS from the kernel.
//!
//! `cityhub bench detection` (in [`detection`]) runs the shipped scenarios through the
//! whole stack and scores the outages against their ground truth.
//! `cityhub bench api` (in [`api`]) measures the API at city scale while ingestion runs,
//! and a large export. `cityhub bench failover` (in [`failover`]) kills the instance that
//! ingests among several and counts what that lost.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use model::{decode_payload, Limits, RecordType, Timestamp};
use rumqttc::QoS;
use simulators::broker::{free_port, Broker, BrokerUser};
use simulators::load::{self, LoadConfig};
use store::{Admin, Db, Ingestion, ReadingBatch};
use tokio_util::sync::CancellationToken;

use crate::Config;

mod api;
pub(crate) mod detection;
mod failover;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Ingest throughput, latency and memory vs the broker's and COPY's raw limits
    Ingest(IngestBench),
    /// What driving a whole city's devices at their real reporting rates costs
    Simulate(SimulateBench),
    /// The rules engine alone: readings evaluated per second on one core
    Rules(RulesBench),
    /// Detection quality on the scenarios: precision, recall and delay per outage kind
    Detection(detection::DetectionBench),
    /// API latency at city scale while ingestion runs, and a large export
    Api(api::ApiBench),
    /// Several instances, the one holding the stream killed: readings and outages lost or
    /// doubled, and how long its work had no holder
    Failover(failover::FailoverBench),
}

#[derive(Args, Clone)]
pub struct RulesBench {
    /// Lamps (on 50-lamp cabinets)
    #[arg(long, default_value_t = 100_000)]
    lamps: usize,
    /// Readings per lamp
    #[arg(long, default_value_t = 20)]
    rounds: usize,
}

#[derive(Args, Clone)]
pub struct SimulateBench {
    /// Seconds to run
    #[arg(long, default_value_t = 60)]
    duration_secs: u64,
    #[arg(long, default_value_t = 100_000)]
    lamps: usize,
    #[arg(long, default_value_t = 50_000)]
    meters: usize,
    #[arg(long, default_value_t = 1_000)]
    vehicles: usize,
    /// Devices per MQTT connection
    #[arg(long, default_value_t = 1_000)]
    per_connection: usize,
}

#[derive(Args, Clone)]
pub struct IngestBench {
    /// Seconds of publishing per measurement
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Simulated lamps
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    /// Publisher connections
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Readings per message in the array workload
    #[arg(long, default_value_t = 50)]
    array_size: usize,
    #[arg(long, value_enum, default_value_t = Workloads::Both)]
    workload: Workloads,
    /// Keep the benchmark database afterwards
    #[arg(long)]
    keep_db: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workloads {
    Single,
    Array,
    Both,
}

const TENANT: &str = "bench";
const HUB_USER: &str = "cityhub-ingest";
const COMMANDS_USER: &str = "cityhub-commands";
const HUB_PASSWORD: &str = "bench-hub-password";
const LOAD_PASSWORD: &str = "bench-load-password";
/// The counting subscriber's account.
const COUNTER_USER: &str = "counter";
/// Accounts per base name (`loadgen-n`, `sim-n`): the shipped broker configuration makes
/// each connection's client id its user name, so every connection needs its own.
const BENCH_ACCOUNTS: usize = 512;

/// The benchmarks' private broker (the shipped configuration): the hub's two accounts, the
/// counting subscriber's, and [`BENCH_ACCOUNTS`] accounts each for load generators
/// (`loadgen`) and simulated fleets (`sim`), which open a connection per account.
fn bench_broker() -> anyhow::Result<Broker> {
    let mut users = vec![
        BrokerUser::new(HUB_USER, HUB_PASSWORD),
        BrokerUser::new(COMMANDS_USER, HUB_PASSWORD),
        BrokerUser::new(COUNTER_USER, LOAD_PASSWORD),
    ];
    let mut acl = format!("user {COUNTER_USER}\ntopic read city/#\n");
    for base in ["loadgen", "sim"] {
        let (accounts, lines) =
            simulators::broker::connection_accounts(base, LOAD_PASSWORD, BENCH_ACCOUNTS, "city/#");
        users.extend(accounts);
        acl.push_str(&lines);
    }
    Broker::start(None, &users, &acl).context("cannot start the benchmark's private broker")
}

pub async fn run(command: BenchCommand, config: Config) -> anyhow::Result<()> {
    match command {
        BenchCommand::Ingest(args) => ingest(args, config).await,
        BenchCommand::Simulate(args) => simulate(args).await,
        BenchCommand::Rules(args) => rules_engine(args),
        BenchCommand::Detection(args) => detection::run(args, config).await,
        BenchCommand::Api(args) => api::run(args, config).await,
        BenchCommand::Failover(args) => failover::run(args, config).await,
    }
}

#[derive(Debug, Default, Clone)]
struct Figures {
    readings_per_message: usize,
    broker_msgs_per_s: f64,
    copy_readings_per_s: f64,
    hub_msgs_per_s: f64,
    hub_readings_per_s: f64,
    half_rate_msgs_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Commit of readings to commit of the outages they caused, at half rate.
    outage_p99_ms: f64,
    outage_batches: u64,
    peak_rss_mb: f64,
    backlog_messages: u64,
    backlog_drain_s: f64,
    backlog_rss_mb: f64,
    lost: i64,
}

/// Readings published while the hub is down in the backlog phase (within the shipped
/// broker's queue of 2,000,000 messages / 1 GiB).
const BACKLOG_READINGS: u64 = 1_000_000;

/// Readings published at most in the full-speed phase. The publisher can outrun the hub
/// several times over, and what the hub has not taken waits in the broker's queue for its
/// session: the shipped broker keeps 1 GiB there and drops what comes after, which would
/// measure the broker's limit rather than the hub. Arrays of 50 take about 75 bytes a
/// reading, so this stays near 600 MB.
const FULL_SPEED_READINGS: u64 = 8_000_000;

async fn ingest(args: IngestBench, config: Config) -> anyhow::Result<()> {
    let broker = bench_broker()?;
    let bench_db = format!("cityhub_bench_{}", std::process::id());
    let url = create_database(&config.database_url, &bench_db).await?;
    let result = async {
        let mut db = Admin::from(Db::migrate(&url, config.storage.timescaledb, Some(30)).await?);
        let devices = bench_devices(args.devices);
        db.import_devices(&devices).await?;
        eprintln!(
            "bench ingest: {} lamps, {} s per measurement, {} publisher connections, storage {}",
            args.devices,
            args.duration_secs,
            args.connections,
            db.path().as_str()
        );
        let mut all = Vec::new();
        let sizes: &[usize] = match args.workload {
            Workloads::Single => &[1],
            Workloads::Array => &[args.array_size],
            Workloads::Both => &[1, args.array_size],
        };
        for &n in sizes {
            all.push(workload(&args, &config, &broker, &url, &mut db, n).await?);
        }
        anyhow::Ok(all)
    }
    .await;
    if !args.keep_db {
        drop_database(&config.database_url, &bench_db).await;
    }
    let all = result?;
    print_report(&all);
    Ok(())
}

/// CPU seconds (user + system) this process has used.
fn own_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the 14th, stime the 15th.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident memory of a process (`"self"` or a pid), from the kernel.
fn peak_rss_mb(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

async fn simulate(args: SimulateBench) -> anyhow::Result<()> {
    use simulators::city::{City, CitySpec};
    use simulators::clock::SimClock;
    use simulators::fleet::run::{FleetRun, FleetStats};
    use simulators::fleet::{Fleet, FleetSpec};

    let broker = bench_broker()?;
    let t = Instant::now();
    let city = Arc::new(City::generate(&CitySpec {
        lamps: args.lamps,
        meters: args.meters,
        vehicles: args.vehicles,
        ..CitySpec::default()
    }));
    let start = Timestamp::now();
    let fleet = Fleet::new(city.clone(), FleetSpec::default(), start);
    let devices = fleet.len();
    eprintln!(
        "bench simulate: {} lamps, {} cabinets, {} meters, {} vehicles ({devices} devices) generated in {:.2} s; running {} s at real reporting rates",
        city.lamps.len(),
        city.cabinets.len(),
        city.meters.len(),
        city.vehicles.len(),
        t.elapsed().as_secs_f64(),
        args.duration_secs
    );
    let stats = Arc::new(FleetStats::default());
    let stop = CancellationToken::new();
    let run = FleetRun {
        host: "127.0.0.1".into(),
        port: broker.port,
        credentials: Some(("sim".into(), LOAD_PASSWORD.into())),
        devices_per_connection: args.per_connection,
        own_connection_share: 0.0,
        clock: SimClock::starting_at(start, 1.0),
        client_prefix: "bench-sim".into(),
    };
    let cpu0 = own_cpu_seconds();
    let t0 = Instant::now();
    let task = tokio::spawn(simulators::fleet::run::run(
        fleet,
        run,
        stats.clone(),
        stop.clone(),
    ));
    let mut last = (Instant::now(), 0u64);
    while t0.elapsed() < Duration::from_secs(args.duration_secs) {
        tokio::time::sleep(
            Duration::from_secs(5)
                .min(Duration::from_secs(args.duration_secs).saturating_sub(t0.elapsed())),
        )
        .await;
        let published = stats.published.load(Ordering::Relaxed);
        eprintln!(
            "{:>4.0} s  connections {}/{}  published {published} ({:.0} msg/s)",
            t0.elapsed().as_secs_f64(),
            stats.connected.load(Ordering::Relaxed),
            devices.div_ceil(args.per_connection.max(1)),
            (published - last.1) as f64 / last.0.elapsed().as_secs_f64()
        );
        last = (Instant::now(), published);
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = own_cpu_seconds() - cpu0;
    let published = stats.published.load(Ordering::Relaxed);
    stop.cancel();
    let _ = task.await;
    // The first `devices` messages are the retained `online` statuses every device sends on
    // connecting; the rest are readings at their reporting intervals.
    eprintln!(
        "published {published} messages in {wall:.1} s ({devices} online statuses, {} readings); CPU {cpu:.1} s",
        published.saturating_sub(devices as u64)
    );
    println!(
        "RESULT msgs_per_s={:.0} cpu_cores={:.3} peak_rss_mb={:.0}",
        published as f64 / wall,
        cpu / wall,
        peak_rss_mb("self")
    );
    Ok(())
}

/// The benchmark's lamps burn (their readings say `on`), so they stand where it is night
/// when the run starts: at the equator, opposite the sun. Healthy readings raise no outage.
/// Healthy lamps at night with one in a hundred failing, evaluated on this thread only.
fn rules_engine(args: RulesBench) -> anyhow::Result<()> {
    use rules::{Asset, Engine, RulesConfig, State};

    let devices = bench_devices(args.lamps);
    let assets: Vec<Asset> = devices
        .iter()
        .enumerate()
        .map(|(i, d)| Asset {
            id: i as i32 + 1,
            name: d.id.clone(),
            kind: model::Kind::Light,
            cabinet: Some(-((i / 50) as i32) - 1),
            rated_power_w: d.rated_power_w,
            route: None,
            lon: d.lon,
            lat: d.lat,
        })
        .collect();
    let engine = Engine::new(RulesConfig::default(), assets, Default::default());
    let start = Timestamp::now();
    let limits = Limits::default();
    // Rows decoded beforehand: the engine's cost alone is measured.
    let mut rows = Vec::with_capacity(args.lamps * args.rounds);
    for round in 0..args.rounds {
        for lamp in 0..args.lamps {
            let ts = start.add_secs((round * 900) as i64 + (lamp % 900) as i64);
            let power = if lamp % 100 == 0 { 2.0 } else { 95.0 };
            let json = format!(
                r#"{{"ts":{},"on":true,"dim":100,"power_w":{power},"voltage_v":230.5}}"#,
                ts.micros() / 1000
            );
            let d = decode_payload(RecordType::Light, json.as_bytes(), ts, &limits);
            rows.extend(d.rows.into_iter().map(|r| (lamp as i32 + 1, r)));
        }
    }
    let mut state = State::default();
    let mut decisions = Vec::new();
    let t = Instant::now();
    for (asset, row) in &rows {
        engine.observe(&mut state, *asset, RecordType::Light, row, &mut decisions);
    }
    let elapsed = t.elapsed().as_secs_f64();
    let mut by_kind: std::collections::BTreeMap<String, usize> = Default::default();
    for d in &decisions {
        let key = match d {
            rules::Decision::Open { kind, .. } => format!("open {}", kind.as_str()),
            rules::Decision::Recur { kind, .. } => format!("recur {}", kind.as_str()),
            rules::Decision::Chattering { kind, .. } => format!("chattering {}", kind.as_str()),
            rules::Decision::Resolve { kind, .. } => format!("resolve {}", kind.as_str()),
        };
        *by_kind.entry(key).or_default() += 1;
    }
    eprintln!(
        "bench rules: {} readings of {} lamps in {elapsed:.2} s on one thread; decisions {by_kind:?}",
        rows.len(),
        args.lamps,
    );
    println!(
        "RESULT readings_per_s={:.0} decisions={}",
        rows.len() as f64 / elapsed,
        decisions.len()
    );
    Ok(())
}

fn bench_devices(n: usize) -> Vec<model::Device> {
    let hours = chrono::Utc::now().timestamp() as f64 / 3600.0 % 24.0;
    // Local solar time is UTC + lon/15 h: midnight where lon = -15 * hours (mod 360).
    let midnight_lon = ((-hours * 15.0) % 360.0 + 540.0) % 360.0 - 180.0;
    (0..n)
        .map(|i| model::Device {
            tenant: TENANT.into(),
            id: format!("B{i:06}"),
            kind: model::Kind::Light,
            district: Some(format!("d{}", i % 10)),
            cabinet: Some(format!("C{:04}", i / 50)),
            rated_power_w: Some(100.0),
            medium: None,
            route: None,
            lon: (midnight_lon + 0.001 * (i % 1000) as f64).clamp(-179.9, 179.9),
            lat: 0.001 * (i / 1000) as f64,
            props: Default::default(),
        })
        .collect()
}

fn load_config(
    args: &IngestBench,
    broker: &Broker,
    n: usize,
    rate: Option<f64>,
    tag: &str,
) -> LoadConfig {
    LoadConfig {
        host: "127.0.0.1".into(),
        port: broker.port,
        credentials: Some(("loadgen".into(), LOAD_PASSWORD.into())),
        tenant: TENANT.into(),
        devices: (0..args.devices).map(|i| format!("B{i:06}")).collect(),
        readings_per_message: n,
        qos: QoS::AtLeastOnce,
        duration: Duration::from_secs(args.duration_secs),
        rate,
        connections: args.connections,
        client_prefix: format!("bench-load-{tag}-{n}"),
        max_messages: None,
    }
}

/// Rules for the ingest benchmark unless `--rules-file` names others: a voltage swing opens
/// an outage and the next reading clears it, never held as chattering, so the rules write
/// outages all along.
fn bench_rules_file() -> anyhow::Result<std::path::PathBuf> {
    let path =
        std::env::temp_dir().join(format!("cityhub-bench-rules-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "[voltage]\non_delay_s = 0\noff_delay_s = 0\n[chattering]\nmax_raises = 1000000\n",
    )?;
    Ok(path)
}

async fn workload(
    args: &IngestBench,
    config: &Config,
    broker: &Broker,
    url: &str,
    db: &mut Admin,
    n: usize,
) -> anyhow::Result<Figures> {
    let mut f = Figures {
        readings_per_message: n,
        ..Figures::default()
    };
    eprintln!("\n== {n} reading(s) per message ==");

    // 1. The broker alone.
    let counter = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let subscriber = load::Subscriber {
        host: "127.0.0.1".into(),
        port: broker.port,
        credentials: Some((COUNTER_USER.into(), LOAD_PASSWORD.into())),
        client_id: COUNTER_USER.into(),
        filter: format!("city/{TENANT}/#"),
    };
    let sub = tokio::spawn(load::count_messages(
        subscriber,
        counter.clone(),
        ready_tx,
        stop.clone(),
    ));
    tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .context("the counting subscriber did not subscribe")??;
    let t0 = Instant::now();
    load::publish(
        load_config(args, broker, n, None, "broker"),
        CancellationToken::new(),
    )
    .await?;
    let published = wait_for(
        || counter.load(Ordering::Relaxed),
        None,
        Duration::from_secs(5),
    )
    .await;
    f.broker_msgs_per_s = published as f64 / t0.elapsed().as_secs_f64();
    stop.cancel();
    let _ = sub.await;
    eprintln!("broker alone: {:.0} msgs/s", f.broker_msgs_per_s);

    // 2. Binary COPY alone, the same rows (a day ahead so they never meet the hub's).
    f.copy_readings_per_s = copy_limit(url, args, n).await?;
    eprintln!("binary COPY alone: {:.0} readings/s", f.copy_readings_per_s);

    // 3. The hub, its rules raising and clearing an outage for every voltage swing.
    let http_port = free_port()?;
    let rules = match &config.rules_file {
        Some(file) => file.clone(),
        None => bench_rules_file()?,
    };
    let env = [("CITYHUB_RULES_FILE", rules.display().to_string())];
    let mut hub = Hub::spawn(url, broker.port, http_port, &format!("bench-hub-{n}"), &env)?;
    hub.wait_ready().await?;
    let before = hub.metrics()?;
    let t0 = Instant::now();
    let mut full_speed = load_config(args, broker, n, None, "hub");
    full_speed.max_messages = Some(FULL_SPEED_READINGS / n as u64);
    let report = load::publish(full_speed, CancellationToken::new()).await?;
    let target = before.rows + report.readings;
    let peak_buffered = std::cell::Cell::new(0.0f64);
    let rows = wait_for(
        || {
            let m = hub.metrics().unwrap_or_default();
            peak_buffered.set(peak_buffered.get().max(m.buffered_bytes));
            m.rows
        },
        Some(target),
        Duration::from_secs(120),
    )
    .await;
    let elapsed = t0.elapsed().as_secs_f64();
    let full = hub.metrics()?;
    f.hub_readings_per_s = (rows - before.rows) as f64 / elapsed;
    f.hub_msgs_per_s = (full.lag_count - before.lag_count) as f64 / elapsed;
    f.lost = report.readings as i64 - (rows - before.rows) as i64;
    let batches = (full.batches - before.batches).max(1);
    eprintln!(
        "hub peak payload bytes awaiting commit while draining: {:.1} MB",
        peak_buffered.get() / 1e6
    );
    eprintln!(
        "hub batches: {batches}, {:.0} readings and {:.1} ms of commit each on average",
        (rows - before.rows) as f64 / batches as f64,
        (full.batch_seconds_sum - before.batch_seconds_sum) * 1000.0 / batches as f64
    );
    eprintln!(
        "hub, full speed: {:.0} msgs/s, {:.0} readings/s ({} published, {} not committed)",
        f.hub_msgs_per_s, f.hub_readings_per_s, report.messages, f.lost
    );

    f.half_rate_msgs_per_s = f.hub_msgs_per_s / 2.0;
    let report = load::publish(
        load_config(args, broker, n, Some(f.half_rate_msgs_per_s), "half"),
        CancellationToken::new(),
    )
    .await?;
    let target = full.rows + report.readings;
    wait_for(
        || hub.metrics().map(|m| m.rows).unwrap_or(0),
        Some(target),
        Duration::from_secs(60),
    )
    .await;
    // The rules' last decisions of the phase are persisted within a tick.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let half = hub.metrics()?;
    f.p50_ms = half.lag_quantile(&full, 0.50) * 1000.0;
    f.p99_ms = half.lag_quantile(&full, 0.99) * 1000.0;
    f.outage_p99_ms = half.outage_quantile(&full, 0.99) * 1000.0;
    f.outage_batches = half.outage_count.saturating_sub(full.outage_count);
    f.peak_rss_mb = hub.peak_rss_mb();
    eprintln!(
        "hub, half rate ({:.0} msgs/s): publish-to-commit p50 <= {:.0} ms, p99 <= {:.0} ms; commit-to-outage p99 <= {:.0} ms ({} batches with outage decisions); peak RSS {:.0} MB",
        f.half_rate_msgs_per_s, f.p50_ms, f.p99_ms, f.outage_p99_ms, f.outage_batches, f.peak_rss_mb
    );
    hub.stop();

    // 4. A backlog: devices publish at full speed while the hub is down (the broker queues
    // for its session), then the hub starts and catches up. Memory stays within budget.
    let mut backlog = load_config(args, broker, n, None, "backlog");
    backlog.max_messages = Some(BACKLOG_READINGS / n as u64);
    let report = load::publish(backlog, CancellationToken::new()).await?;
    // A new process counts from zero.
    let mut hub = Hub::spawn(url, broker.port, http_port, &format!("bench-hub-{n}"), &[])?;
    let t0 = Instant::now();
    hub.wait_ready().await?;
    let target = report.readings;
    let rows = wait_for(
        || hub.metrics().map(|m| m.rows).unwrap_or(0),
        Some(target),
        Duration::from_secs(300),
    )
    .await;
    f.backlog_messages = report.messages;
    f.backlog_drain_s = t0.elapsed().as_secs_f64();
    f.backlog_rss_mb = hub.peak_rss_mb();
    f.lost += target as i64 - rows as i64;
    eprintln!(
        "backlog: {} messages ({} readings) queued while the hub was down, drained in {:.1} s; peak RSS {:.0} MB",
        report.messages, report.readings, f.backlog_drain_s, f.backlog_rss_mb
    );
    hub.stop();
    // The hub's session would otherwise keep queueing the next workload's messages; the
    // next hub is told it was discarded on purpose, not lost.
    load::clear_session(
        "127.0.0.1",
        broker.port,
        Some((HUB_USER.into(), HUB_PASSWORD.into())),
        HUB_USER,
    )
    .await?;
    db.forget_mqtt_session(&store::mqtt::session_key(Some(HUB_USER), HUB_USER))
        .await?;
    Ok(f)
}

async fn copy_limit(url: &str, args: &IngestBench, n: usize) -> anyhow::Result<f64> {
    let mut db = Ingestion::connect(url).await?;
    let registry_ids: Vec<i32> = sql(url)
        .await?
        .query("SELECT id FROM devices ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let base_ms = Timestamp::now().micros() / 1000 + 86_400_000 + n as i64 * 1_000_000;
    let limits = Limits {
        max_array_len: usize::MAX,
        max_payload_bytes: usize::MAX,
        ..Limits::default()
    };
    let mut payload = String::new();
    let mut rows_written = 0u64;
    let mut spent = Duration::ZERO;
    let budget = Duration::from_secs(args.duration_secs.min(10));
    let mut round = 0i64;
    while spent < budget {
        let mut batch = ReadingBatch::default();
        let mut rows = 0;
        while rows < 10_000 {
            for &id in &registry_ids {
                if rows >= 10_000 {
                    break;
                }
                let newest = base_ms + round * n as i64 + n as i64 - 1;
                load::light_payload(&mut payload, newest, n as i64);
                let now = Timestamp::from_unix_ms(newest).unwrap_or(Timestamp(0));
                let decoded = decode_payload(RecordType::Light, payload.as_bytes(), now, &limits);
                rows += decoded.rows.len();
                for row in decoded.rows {
                    batch.push(RecordType::Light, id, row);
                }
            }
            round += 1;
        }
        let t = Instant::now();
        rows_written += db.copy_only(&batch).await?;
        spent += t.elapsed();
    }
    Ok(rows_written as f64 / spent.as_secs_f64())
}

/// Polls `read` until it reaches `target` (or stops moving when there is none).
async fn wait_for(read: impl Fn() -> u64, target: Option<u64>, limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    let mut last = read();
    let mut still = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = read();
        if target.is_some_and(|t| now >= t) || Instant::now() > deadline {
            return now;
        }
        still = if now == last { still + 1 } else { 0 };
        if target.is_none() && still >= 10 {
            return now;
        }
        last = now;
    }
}

struct Hub {
    child: Child,
    http_port: u16,
}

#[derive(Debug, Default, Clone)]
struct Scrape {
    rows: u64,
    lag_count: u64,
    lag_buckets: Vec<(f64, u64)>,
    /// The rules' commit-to-outage histogram.
    outage_count: u64,
    outage_buckets: Vec<(f64, u64)>,
    batches: u64,
    batch_seconds_sum: f64,
    buffered_bytes: f64,
    mqtt_subscriptions: u64,
}

impl Scrape {
    /// Upper bound of the bucket holding quantile `q` of the observations since `earlier`.
    fn lag_quantile(&self, earlier: &Scrape, q: f64) -> f64 {
        quantile(
            (self.lag_count, &self.lag_buckets),
            (earlier.lag_count, &earlier.lag_buckets),
            q,
        )
    }

    /// The same, for the commit of readings to the commit of the outages they caused.
    fn outage_quantile(&self, earlier: &Scrape, q: f64) -> f64 {
        quantile(
            (self.outage_count, &self.outage_buckets),
            (earlier.outage_count, &earlier.outage_buckets),
            q,
        )
    }
}

/// Upper bound of the bucket holding quantile `q` of a cumulative histogram's observations
/// between two scrapes (count, buckets as (le, cumulative count)).
fn quantile(now: (u64, &[(f64, u64)]), earlier: (u64, &[(f64, u64)]), q: f64) -> f64 {
    let total = now.0.saturating_sub(earlier.0) as f64;
    for (le, n) in now.1 {
        let before = earlier
            .1
            .iter()
            .find(|(l, _)| l == le)
            .map(|(_, c)| *c)
            .unwrap_or(0);
        if n.saturating_sub(before) as f64 >= q * total {
            return *le;
        }
    }
    f64::INFINITY
}

impl Hub {
    /// `cityhub serve` on the benchmark's database and broker; `env` adds or overrides
    /// settings (`CITYHUB_SIM_CLOCK`, `CITYHUB_RULES_FILE`, ...).
    fn spawn(
        url: &str,
        mqtt_port: u16,
        http_port: u16,
        client_id: &str,
        env: &[(&str, String)],
    ) -> anyhow::Result<Hub> {
        let exe = crate::cityhub_binary()?;
        let child = Command::new(exe)
            .arg("serve")
            .env("CITYHUB_DATABASE_URL", url)
            .env("CITYHUB_MQTT_PORT", mqtt_port.to_string())
            .env("CITYHUB_MQTT_USERNAME", HUB_USER)
            .env("CITYHUB_MQTT_PASSWORD", HUB_PASSWORD)
            .env("CITYHUB_COMMANDS_MQTT_USERNAME", COMMANDS_USER)
            .env("CITYHUB_COMMANDS_MQTT_PASSWORD", HUB_PASSWORD)
            .env("CITYHUB_MQTT_CLIENT_ID", client_id)
            .env("CITYHUB_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
            .env("CITYHUB_RETENTION_DAYS", "30")
            .env("CITYHUB_CONFIG", "/dev/null")
            .env(
                "CITYHUB_LOG",
                std::env::var("CITYHUB_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start `cityhub serve`")?;
        Ok(Hub { child, http_port })
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // The MQTT session comes up right after the API: what is published before the
            // broker confirms the subscription never reaches the hub.
            if self.metrics().is_ok() && http_get(self.http_port, "/health").is_ok() {
                return self.wait_connected().await;
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("`cityhub serve` exited during start-up ({status})");
            }
            if Instant::now() > deadline {
                bail!("`cityhub serve` did not answer on /health within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the hub's MQTT session is up (and subscribed).
    async fn wait_connected(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.metrics().map(|m| m.mqtt_subscriptions).unwrap_or(0) == 0 {
            if let Some(status) = self.child.try_wait()? {
                bail!("`cityhub serve` exited during start-up ({status})");
            }
            if Instant::now() > deadline {
                bail!("`cityhub serve` did not connect to the broker within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // SUBACK follows CONNACK.
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(())
    }

    fn metrics(&self) -> anyhow::Result<Scrape> {
        let body = http_get(self.http_port, "/metrics")?;
        let mut s = Scrape::default();
        for line in body.lines() {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(v) = value.parse::<f64>() else {
                continue;
            };
            if name.starts_with("cityhub_ingest_rows_total") {
                s.rows += v as u64;
            } else if name == "cityhub_ingest_lag_seconds_count" {
                s.lag_count = v as u64;
            } else if name == "cityhub_ingest_buffered_bytes" {
                s.buffered_bytes = v;
            } else if name == "cityhub_ingest_batch_seconds_count" {
                s.batches = v as u64;
            } else if name == "cityhub_ingest_mqtt_subscriptions_total" {
                s.mqtt_subscriptions = v as u64;
            } else if name == "cityhub_ingest_batch_seconds_sum" {
                s.batch_seconds_sum = v;
            } else if let Some(le) = name
                .strip_prefix("cityhub_ingest_lag_seconds_bucket{le=\"")
                .and_then(|r| r.strip_suffix("\"}"))
            {
                s.lag_buckets
                    .push((le.parse().unwrap_or(f64::INFINITY), v as u64));
            } else if name == "cityhub_rules_commit_to_outage_seconds_count" {
                s.outage_count = v as u64;
            } else if let Some(le) = name
                .strip_prefix("cityhub_rules_commit_to_outage_seconds_bucket{le=\"")
                .and_then(|r| r.strip_suffix("\"}"))
            {
                s.outage_buckets
                    .push((le.parse().unwrap_or(f64::INFINITY), v as u64));
            }
        }
        Ok(s)
    }

    fn peak_rss_mb(&self) -> f64 {
        peak_rss_mb(&self.child.id().to_string())
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    if !body.starts_with("HTTP/1.0 200") && !body.starts_with("HTTP/1.1 200") {
        bail!("GET {path}: {}", body.lines().next().unwrap_or(""));
    }
    Ok(body)
}

/// The same server as `url`, database `name`, created fresh.
/// The benchmark's own connection, for the SQL it needs that the hub never runs (its
/// devices' ids in order, `VACUUM ANALYZE` before measuring reads).
pub async fn sql(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("cannot connect to {}", store::describe_target(url)))?;
    tokio::spawn(conn);
    Ok(client)
}

async fn create_database(url: &str, name: &str) -> anyhow::Result<String> {
    let admin = with_dbname(url, "postgres");
    let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("cannot connect to {}", store::describe_target(&admin)))?;
    tokio::spawn(conn);
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .await?;
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    Ok(with_dbname(url, name))
}

async fn drop_database(url: &str, name: &str) {
    let admin = with_dbname(url, "postgres");
    if let Ok((client, conn)) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await {
        tokio::spawn(conn);
        let _ = client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await;
    }
}

/// Replaces the database name of a `postgres://` URL (or appends `dbname=` to a key=value string).
pub fn with_dbname(url: &str, name: &str) -> String {
    if let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    {
        let scheme = &url[..url.len() - rest.len()];
        let (main, query) = match rest.split_once('?') {
            Some((m, q)) => (m, Some(q)),
            None => (rest, None),
        };
        let authority = main.split_once('/').map(|(a, _)| a).unwrap_or(main);
        let mut out = format!("{scheme}{authority}/{name}");
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        out
    } else {
        format!("{url} dbname={name}")
    }
}

fn print_report(all: &[Figures]) {
    println!("\n| readings/msg | broker alone msgs/s | hub msgs/s | msg ratio | COPY alone readings/s | hub readings/s | reading ratio | p50 ms | p99 ms (half rate) | peak RSS MB | backlog msgs | backlog drain s | backlog peak RSS MB | not committed |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for f in all {
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {:.0} | {} | {:.1} | {:.0} | {} |",
            f.readings_per_message,
            f.broker_msgs_per_s,
            f.hub_msgs_per_s,
            f.hub_msgs_per_s / f.broker_msgs_per_s,
            f.copy_readings_per_s,
            f.hub_readings_per_s,
            f.hub_readings_per_s / f.copy_readings_per_s,
            f.p50_ms,
            f.p99_ms,
            f.peak_rss_mb,
            f.backlog_messages,
            f.backlog_drain_s,
            f.backlog_rss_mb,
            f.lost
        );
    }
    let single = all
        .iter()
        .find(|f| f.readings_per_message == 1)
        .or(all.first());
    let array = all
        .iter()
        .find(|f| f.readings_per_message > 1)
        .or(all.last());
    let (Some(s), Some(a)) = (single, array) else {
        return;
    };
    let p99 = all.iter().map(|f| f.p99_ms).fold(0.0, f64::max);
    for f in all {
        println!(
            "rules at half rate, {} reading(s)/msg: commit-to-outage p99 <= {:.0} ms over {} batches with outage decisions",
            f.readings_per_message, f.outage_p99_ms, f.outage_batches
        );
    }
    let rss = all
        .iter()
        .map(|f| f.peak_rss_mb.max(f.backlog_rss_mb))
        .fold(0.0, f64::max);
    println!(
        "RESULT msgs_per_s={:.0} broker_limit_msgs_per_s={:.0} msg_ratio={:.2} readings_per_s={:.0} copy_limit_readings_per_s={:.0} reading_ratio={:.2} p99_ms={:.0} peak_rss_mb={:.0}",
        s.hub_msgs_per_s,
        s.broker_msgs_per_s,
        s.hub_msgs_per_s / s.broker_msgs_per_s,
        a.hub_readings_per_s,
        a.copy_readings_per_s,
        a.hub_readings_per_s / a.copy_readings_per_s,
        p99,
        rss
    );
}

#[cfg(test)]
mod tests {
    use super::with_dbname;

    #[test]
    fn database_names_are_replaced() {
        assert_eq!(
            with_dbname("postgres://u@h:5432/a", "b"),
            "postgres://u@h:5432/b"
        );
        assert_eq!(
            with_dbname("postgres://u:p@h/a?sslmode=disable", "b"),
            "postgres://u:p@h/b?sslmode=disable"
        );
        assert_eq!(with_dbname("postgresql://h", "b"), "postgresql://h/b");
        assert_eq!(with_dbname("host=h user=u", "b"), "host=h user=u dbname=b");
    }
}

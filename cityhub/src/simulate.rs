//! `cityhub simulate`: a generated city and its devices.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use ingest::backfill::Backfill;
use model::Timestamp;
use simulators::city::{City, CitySpec};
use simulators::clock::SimClock;
use simulators::fleet::run::{FleetRun, FleetStats};
use simulators::fleet::{Fleet, FleetSpec};
use simulators::scenario::{Scenario, ScenarioCity};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// The city's flags. Those not given come from the scenario, if any, else the defaults.
#[derive(Args, Clone)]
pub struct CitySize {
    /// Same seed, same city and same readings [default: 1]
    #[arg(long)]
    pub seed: Option<u64>,
    /// The municipality's slug
    #[arg(long, default_value = "simcity")]
    pub tenant: String,
    /// [default: 2000]
    #[arg(long)]
    pub lamps: Option<usize>,
    /// [default: 1000]
    #[arg(long)]
    pub meters: Option<usize>,
    /// [default: 20]
    #[arg(long)]
    pub vehicles: Option<usize>,
}

/// The city when neither the flags nor a scenario say otherwise.
const DEFAULT_CITY: ScenarioCity = ScenarioCity {
    seed: 1,
    lamps: 2_000,
    meters: 1_000,
    vehicles: 20,
};

#[derive(Args, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    size: CitySize,
    /// Simulated seconds per real second [default: the scenario's, or 1]
    #[arg(long)]
    speed: Option<f64>,
    /// Simulated start time, RFC 3339 [default: now]
    #[arg(long)]
    start: Option<String>,
    /// Devices sharing one MQTT connection (1: each its own, with a last will)
    #[arg(long, default_value_t = 1_000)]
    per_connection: usize,
    /// Share of devices (0 to 1) on a connection of their own, with a last will
    #[arg(long, default_value_t = 0.0)]
    own_connection_share: f64,
    /// MQTT account of the simulated devices: connection n signs in as `USERNAME-n`
    /// (the shipped broker configuration binds each connection to an account of its own)
    #[arg(long, env = "CITYHUB_SIM_USERNAME")]
    username: Option<String>,
    /// MQTT password of the simulated devices' accounts
    #[arg(long, env = "CITYHUB_SIM_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Import the city's inventory into the database first
    #[arg(long)]
    import: bool,
    /// Stop after this many real seconds
    #[arg(long)]
    duration_secs: Option<u64>,
    /// Inject a scenario's faults (TOML, see scenarios/); its city, start and speed apply
    /// unless given here, and the run ends with the scenario
    #[arg(long)]
    scenario: Option<std::path::PathBuf>,
    /// Where to write the scenario's ground truth (JSON lines)
    #[arg(long, default_value = "truth.jsonl")]
    truth: std::path::PathBuf,
    /// First write the city's readings of this many days before the start straight into
    /// the database, as if received when sent, so that charts and reports have a past (the
    /// rules judge none of it; the city's inventory must be in the database: --import)
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=30))]
    history_days: u32,
}

impl CitySize {
    /// The city to generate: these flags over `base`.
    fn spec(&self, base: &ScenarioCity) -> anyhow::Result<CitySpec> {
        let (lamps, meters, vehicles) = (
            self.lamps.unwrap_or(base.lamps),
            self.meters.unwrap_or(base.meters),
            self.vehicles.unwrap_or(base.vehicles),
        );
        if !model::topic::valid_tenant(&self.tenant) {
            bail!(
                "--tenant `{}` must be 1-32 characters of a-z, 0-9 and -",
                self.tenant
            );
        }
        if lamps > 1_000_000 || meters > 1_000_000 || vehicles > 100_000 {
            bail!("at most 1,000,000 lamps, 1,000,000 meters and 100,000 vehicles");
        }
        Ok(CitySpec {
            seed: self.seed.unwrap_or(base.seed),
            tenant: self.tenant.clone(),
            lamps,
            meters,
            vehicles,
            ..CitySpec::default()
        })
    }
}

fn describe(city: &City) -> String {
    format!(
        "City `{}` (seed {}): {} districts, {} cabinets, {} lamps, {} meters, {} routes, {} vehicles",
        city.spec.tenant,
        city.spec.seed,
        city.districts.len(),
        city.cabinets.len(),
        city.lamps.len(),
        city.meters.len(),
        city.routes.len(),
        city.vehicles.len()
    )
}

pub fn write_city(size: &CitySize, out: &Path) -> anyhow::Result<()> {
    let city = City::generate(&size.spec(&DEFAULT_CITY)?);
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let inventory = out.join("inventory.geojson");
    let map = out.join("map.geojson");
    std::fs::write(&inventory, city.inventory_geojson())
        .with_context(|| format!("cannot write {}", inventory.display()))?;
    std::fs::write(&map, city.map_geojson())
        .with_context(|| format!("cannot write {}", map.display()))?;
    say!(
        "{} -> {}, {}",
        describe(&city),
        inventory.display(),
        map.display()
    );
    Ok(())
}

/// Where a history of `days` before `start` begins, and the backfill to write it: the city
/// goes on from its newest message when it has spoken already (a second run writes only
/// what the first did not).
async fn prepare_history(
    config: &Config,
    tenant: &str,
    start: Timestamp,
    days: u32,
) -> anyhow::Result<(Timestamp, Backfill, HashMap<String, serde_json::Value>)> {
    if start > Timestamp::now() {
        bail!("--history-days writes the days up to the start, which must not be ahead of now (the start is {start})");
    }
    let db = store::Ingestion::from(crate::migrate(config).await?.into_db());
    let heard = db
        .tenant_last_heard(tenant)
        .await
        .context("cannot read when the city last spoke")?;
    // What the devices said last: their counters go on from there.
    let latest = db
        .tenant_latest_telemetry(tenant)
        .await
        .context("cannot read what the city said last")?;
    let mut from = start.add_secs(-i64::from(days) * 86_400);
    if let Some(heard) = heard {
        // A millisecond on: the contract's `ts` is whole milliseconds.
        from = from.max(Timestamp(Timestamp::from_datetime(heard).micros() + 1_000));
    }
    let backfill = Backfill::new(db, config.ingest.limits)
        .await
        .context("cannot read the inventory for the history")?;
    Ok((from, backfill, latest))
}

/// Writes what `fleet` sends from `from` until `until` through `backfill`, each message as
/// received when sent.
async fn write_history(
    mut backfill: Backfill,
    fleet: &mut Fleet,
    from: Timestamp,
    until: Timestamp,
) -> anyhow::Result<()> {
    let started = Instant::now();
    if from >= until {
        eprintln!("History: the city's readings reach {from} already; nothing to write.");
        return Ok(());
    }
    let mut out = Vec::new();
    let mut at = from;
    while at < until {
        // Ten simulated minutes at a time: each message is received at its step's end.
        at = Timestamp(until.micros().min(at.micros() + 600_000_000));
        fleet.due(at, &mut out);
        for m in out.drain(..) {
            backfill
                .take(&m.topic, m.payload.as_bytes(), at)
                .await
                .context("cannot write the history")?;
        }
    }
    let refused = backfill.refused;
    let written = backfill
        .finish()
        .await
        .context("cannot write the history")?;
    eprintln!(
        "History from {from} to {until}: {written} readings written in {:.1} s{}",
        started.elapsed().as_secs_f64(),
        if refused > 0 {
            format!("; {refused} messages refused (devices not imported? see --import)")
        } else {
            String::new()
        }
    );
    Ok(())
}

pub async fn run(args: RunArgs, config: Config) -> anyhow::Result<()> {
    let scenario = match &args.scenario {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Some(Scenario::parse(&text).with_context(|| format!("in {}", path.display()))?)
        }
        None => None,
    };
    // The scenario's city, start and pace, unless the command line says otherwise.
    let base = scenario.as_ref().map_or(DEFAULT_CITY, |s| s.city.clone());
    let speed = args
        .speed
        .or(scenario.as_ref().and_then(|s| s.speed))
        .unwrap_or(1.0);
    if !(speed > 0.0 && speed <= 100_000.0) {
        bail!("--speed must be above 0 and at most 100000");
    }
    let start = args
        .start
        .clone()
        .or_else(|| scenario.as_ref().and_then(|s| s.start.clone()));
    let now = start.is_none();
    let start = match &start {
        Some(s) => Timestamp::from_rfc3339(s)
            .with_context(|| format!("--start `{s}` is not RFC 3339 with an offset"))?,
        None => Timestamp::now(),
    };
    let city = Arc::new(City::generate(&args.size.spec(&base)?));
    if args.import {
        let mut db = crate::migrate(&config).await?;
        db.import_devices(&city.devices()).await?;
        db.import_routes(&city.route_lines()).await?;
    }
    let history = match args.history_days {
        0 => None,
        days => Some(prepare_history(&config, &city.spec.tenant, start, days).await?),
    };
    let mut fleet = Fleet::new(
        city.clone(),
        FleetSpec {
            seed: city.spec.seed,
            ..FleetSpec::default()
        },
        history
            .as_ref()
            .map_or(start, |(from, ..)| (*from).min(start)),
    );
    if let Some((from, backfill, latest)) = history {
        fleet.continue_counters(&latest);
        write_history(backfill, &mut fleet, from, start).await?;
    }
    // The simulated clock starts with the devices, after their history: at the start
    // given, or, starting now, at the wall clock's now (the devices then send at once what
    // fell due while the history was written).
    let clock = SimClock::starting_at(if now { Timestamp::now() } else { start }, speed);
    let mut faults = 0;
    let mut sim_end = None;
    if let Some(s) = &scenario {
        let plan = s.plan(&city, start)?;
        std::fs::write(&args.truth, plan.truth_jsonl(&city)).with_context(|| {
            format!("cannot write the ground truth to {}", args.truth.display())
        })?;
        eprintln!(
            "Scenario `{}`: {} faults over {} simulated seconds; ground truth in {}",
            s.name,
            plan.faults.len(),
            s.duration_s,
            args.truth.display()
        );
        if !plan.commands.is_empty() {
            eprintln!(
                "Scenario `{}` has {} commands: the hub sends commands (POST /api/v1/commands, or `cityhub bench detection`, which records them); this run only plays the devices, which answer whatever the hub sends.",
                s.name,
                plan.commands.len()
            );
        }
        faults = plan.faults.len();
        sim_end = Some(start.add_secs(s.duration_s as i64));
        fleet = fleet.with_plan(&plan);
    }
    if !(0.0..=1.0).contains(&args.own_connection_share) {
        bail!("--own-connection-share must be between 0 and 1");
    }
    let devices = fleet.len();
    eprintln!("{}", describe(&city));
    eprintln!(
        "Simulated clock at {speed}x from {start}; give the hub the same time with CITYHUB_SIM_CLOCK={clock}",
        speed = speed
    );
    let run = FleetRun {
        host: config.ingest.mqtt.host.clone(),
        port: config.ingest.mqtt.port,
        credentials: args
            .username
            .clone()
            .map(|u| (u, args.password.clone().unwrap_or_default())),
        devices_per_connection: args.per_connection,
        own_connection_share: args.own_connection_share,
        clock,
        client_prefix: format!("sim-{}", city.spec.tenant),
    };
    let connections = simulators::fleet::run::connection_groups(&fleet, &run).len();
    let stats = Arc::new(FleetStats::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(simulators::fleet::run::run(
        fleet,
        run,
        stats.clone(),
        stop.clone(),
    ));
    let started = Instant::now();
    let mut last = (Instant::now(), 0u64);
    // Checked often (the scenario's end), reported every 5 s.
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    ticker.tick().await;
    loop {
        let done = args
            .duration_secs
            .is_some_and(|d| started.elapsed() >= Duration::from_secs(d))
            || sim_end.is_some_and(|end| clock.now() >= end);
        if done {
            break;
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = ticker.tick() => {
                if last.0.elapsed() < Duration::from_secs(5) {
                    continue;
                }
                let published = stats.published.load(Ordering::Relaxed);
                let rate = (published - last.1) as f64 / last.0.elapsed().as_secs_f64();
                last = (Instant::now(), published);
                let now = clock.now();
                let injected = stats.faults_started.load(Ordering::Relaxed);
                eprintln!(
                    "sim {now}  devices {devices}  connections {}/{connections}  published {published} ({rate:.0} msg/s)  commands {}  faults {injected}/{faults}",
                    stats.connected.load(Ordering::Relaxed),
                    stats.commands.load(Ordering::Relaxed)
                );
            }
        }
    }
    stop.cancel();
    let _ = task.await;
    eprintln!(
        "Simulation stopped after {} messages.",
        stats.published.load(Ordering::Relaxed)
    );
    Ok(())
}

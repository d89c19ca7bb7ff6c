//! `cityhub simulate`: a generated city and its devices.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use model::Timestamp;
use simulators::city::{City, CitySpec};
use simulators::clock::SimClock;
use simulators::fleet::run::{FleetRun, FleetStats};
use simulators::fleet::{Fleet, FleetSpec};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

#[derive(Args, Clone)]
pub struct CitySize {
    /// Same seed, same city and same readings
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The municipality's slug
    #[arg(long, default_value = "simcity")]
    pub tenant: String,
    #[arg(long, default_value_t = 2_000)]
    pub lamps: usize,
    #[arg(long, default_value_t = 1_000)]
    pub meters: usize,
    #[arg(long, default_value_t = 20)]
    pub vehicles: usize,
}

#[derive(Args, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    size: CitySize,
    /// Simulated seconds per real second
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Simulated start time, RFC 3339 [default: now]
    #[arg(long)]
    start: Option<String>,
    /// Devices sharing one MQTT connection (1: each its own, with a last will)
    #[arg(long, default_value_t = 1_000)]
    per_connection: usize,
    /// MQTT user of the simulated devices
    #[arg(long, env = "CITYHUB_SIM_USERNAME")]
    username: Option<String>,
    /// MQTT password of the simulated devices
    #[arg(long, env = "CITYHUB_SIM_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Import the city's inventory into the database first
    #[arg(long)]
    import: bool,
    /// Stop after this many real seconds
    #[arg(long)]
    duration_secs: Option<u64>,
}

impl CitySize {
    fn spec(&self) -> anyhow::Result<CitySpec> {
        if !model::topic::valid_tenant(&self.tenant) {
            bail!(
                "--tenant `{}` must be 1-32 characters of a-z, 0-9 and -",
                self.tenant
            );
        }
        if self.lamps > 1_000_000 || self.meters > 1_000_000 || self.vehicles > 100_000 {
            bail!("at most 1,000,000 lamps, 1,000,000 meters and 100,000 vehicles");
        }
        Ok(CitySpec {
            seed: self.seed,
            tenant: self.tenant.clone(),
            lamps: self.lamps,
            meters: self.meters,
            vehicles: self.vehicles,
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
    let city = City::generate(&size.spec()?);
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let inventory = out.join("inventory.geojson");
    let map = out.join("map.geojson");
    std::fs::write(&inventory, city.inventory_geojson())
        .with_context(|| format!("cannot write {}", inventory.display()))?;
    std::fs::write(&map, city.map_geojson())
        .with_context(|| format!("cannot write {}", map.display()))?;
    println!(
        "{} -> {}, {}",
        describe(&city),
        inventory.display(),
        map.display()
    );
    Ok(())
}

pub async fn run(args: RunArgs, config: Config) -> anyhow::Result<()> {
    if !(args.speed > 0.0 && args.speed <= 100_000.0) {
        bail!("--speed must be above 0 and at most 100000");
    }
    let start = match &args.start {
        Some(s) => Timestamp::from_rfc3339(s)
            .with_context(|| format!("--start `{s}` is not RFC 3339 with an offset"))?,
        None => Timestamp::now(),
    };
    let city = Arc::new(City::generate(&args.size.spec()?));
    if args.import {
        let mut db = crate::migrate(&config).await?;
        db.import_devices(&city.devices()).await?;
    }
    let clock = SimClock::starting_at(start, args.speed);
    let fleet = Fleet::new(
        city.clone(),
        FleetSpec {
            seed: args.size.seed,
            ..FleetSpec::default()
        },
        start,
    );
    let devices = fleet.len();
    let connections = devices.div_ceil(args.per_connection.max(1));
    eprintln!("{}", describe(&city));
    eprintln!(
        "Simulated clock at {speed}x from {start}; give the hub the same time with CITYHUB_SIM_CLOCK={clock}",
        speed = args.speed
    );
    let run = FleetRun {
        host: config.ingest.mqtt.host.clone(),
        port: config.ingest.mqtt.port,
        credentials: args
            .username
            .clone()
            .map(|u| (u, args.password.clone().unwrap_or_default())),
        devices_per_connection: args.per_connection,
        clock,
        client_prefix: format!("sim-{}", city.spec.tenant),
    };
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
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    ticker.tick().await;
    loop {
        let done = args
            .duration_secs
            .is_some_and(|d| started.elapsed() >= Duration::from_secs(d));
        if done {
            break;
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = ticker.tick() => {
                let published = stats.published.load(Ordering::Relaxed);
                let rate = (published - last.1) as f64 / last.0.elapsed().as_secs_f64();
                last = (Instant::now(), published);
                eprintln!(
                    "sim {}  devices {devices}  connections {}/{connections}  published {published} ({rate:.0} msg/s)  commands {}",
                    clock.now(),
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

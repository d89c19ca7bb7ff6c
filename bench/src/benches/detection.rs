//! `cityhub bench detection`: detection quality through the whole stack.
//!
//! For each scenario (every `scenarios/*.toml` by default, in name order): a fresh
//! database holding the scenario's city, a private broker, `cityhub serve` as a child
//! process on the scenario's simulated clock, and the fleet injecting the scenario's
//! faults at the scenario's speed (times `--speed-factor`). When the scenario is over, and
//! the last windows with it (or sooner, once every expected outage has been written), the
//! hub is stopped and the outages it wrote are scored against the ground truth
//! ([`simulators::score`]): per outage kind, precision and recall, and how long after its
//! rule's window each outage was written.
//!
//! A rule's window ([`windows`]) is how long after a fault's start it can know, at the
//! latest, given the devices' reporting intervals and the rules' own delays.

pub(crate) mod windows;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use model::Timestamp;
use simulators::broker::free_port;
use simulators::city::City;
use simulators::clock::SimClock;
use simulators::fleet::run::{FleetRun, FleetStats};
use simulators::fleet::{Fleet, FleetSpec};
use simulators::scenario::Scenario;
use simulators::score::{wall_of, Detected, Score, Scoring, Truth};
use store::{Admin, Db, Detection};
use tokio_util::sync::CancellationToken;

use super::{create_database, drop_database, Hub, LOAD_PASSWORD, TENANT};
use crate::Config;

#[derive(Args, Clone)]
pub struct DetectionBench {
    /// A scenario to run (repeatable) [default: every scenarios/*.toml, in name order]
    #[arg(long = "scenario")]
    scenarios: Vec<PathBuf>,
    /// Run every scenario this many times faster than its own speed
    #[arg(long, default_value_t = 1.0)]
    speed_factor: f64,
    /// Keep each scenario's database (its name is printed) to look at the outages
    #[arg(long)]
    keep_db: bool,
}

/// Real time between starting the hub and the scenario's first simulated instant: the hub
/// must be subscribed before the devices speak (its first session would miss them).
const LEAD: Duration = Duration::from_secs(3);
/// After the last window closes, how long (real) outages may still arrive and be counted
/// (the delay target is 5 s: a few more show a miss of it as a delay, not as a miss).
const MARGIN: Duration = Duration::from_secs(8);
/// The longest the run waits (real) past the scenario's end for windows still open.
const MAX_DRAIN: Duration = Duration::from_secs(60);

pub async fn run(args: DetectionBench, config: Config) -> anyhow::Result<()> {
    if !(args.speed_factor > 0.0 && args.speed_factor <= 100.0) {
        bail!("--speed-factor must be above 0 and at most 100");
    }
    let paths = if args.scenarios.is_empty() {
        shipped_scenarios(Path::new("scenarios"))?
    } else {
        args.scenarios.clone()
    };
    let rules = config.rules()?;
    let mut scores = Vec::new();
    for path in &paths {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let scenario = Scenario::parse(&text).with_context(|| format!("in {}", path.display()))?;
        let t = Instant::now();
        let score = scenario_run(&scenario, &args, &config, &rules)
            .await
            .with_context(|| format!("scenario `{}`", scenario.name))?;
        let wall = t.elapsed().as_secs_f64();
        println!("\n## {} ({wall:.0} s)\n", scenario.name);
        print!("{}", score.table());
        print_findings(&score);
        println!(
            "{}: {} (wall {wall:.1} s)",
            scenario.name,
            score.totals().to_string().trim_start_matches("RESULT ")
        );
        scores.push(score);
    }
    let all = Score::combine(scores);
    println!("\n## all scenarios\n");
    print!("{}", all.table());
    println!("{}", all.totals());
    Ok(())
}

/// `dir/*.toml` in name order.
fn shipped_scenarios(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "cannot list {}: run from the repository's root or name --scenario files",
            dir.display()
        )
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        bail!("no scenarios in {}", dir.display());
    }
    Ok(paths)
}

/// The outages the hub opened up to `cutoff` (simulated).
async fn detected(db: &Admin, cutoff: Timestamp) -> anyhow::Result<Vec<Detected>> {
    Ok(db
        .outages()
        .await?
        .into_iter()
        .map(|o| Detected {
            asset: o.ext_id,
            kind: o.kind,
            opened_at: Timestamp::from_datetime(o.opened_at),
            recorded_wall: Timestamp::from_datetime(o.recorded_at),
            resolved_at: o.resolved_at.map(Timestamp::from_datetime),
        })
        .filter(|d| d.opened_at <= cutoff)
        .collect())
}

/// Misses and false positives, a few of each kind, for whoever reads the table.
fn print_findings(score: &Score) {
    const SHOWN: usize = 5;
    let mut shown: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut more = |what: &'static str, kind: &'static str| {
        let n = shown.entry((what, kind)).or_default();
        *n += 1;
        *n <= SHOWN
    };
    for e in &score.misses {
        if more("miss", e.kind) {
            let t = &e.truth;
            let end = t.end.map(|e| e.to_string()).unwrap_or_else(|| "-".into());
            println!(
                "miss: {} on {} ({}) from {} to {end}, window {:.0} s",
                e.kind,
                t.asset,
                e.fault.name(),
                t.start,
                e.window_s
            );
        }
    }
    for d in &score.false_positives {
        let kind = model::OutageKind::parse(&d.kind).map_or("other", model::OutageKind::as_str);
        if more("false positive", kind) {
            println!(
                "false positive: {} on {} opened at {} (written {})",
                d.kind, d.asset, d.opened_at, d.recorded_wall
            );
        }
    }
    for m in &score.late_resolutions {
        if more("late resolution", m.expected.kind) {
            let t = &m.expected.truth;
            let end = t.end.map(|e| e.to_string()).unwrap_or_else(|| "-".into());
            let resolved = m
                .detected
                .resolved_at
                .map(|r| r.to_string())
                .unwrap_or_else(|| "never".into());
            println!(
                "late resolution: {} on {} ({}) ended {end}, resolved {resolved}",
                m.expected.kind,
                t.asset,
                m.expected.fault.name()
            );
        }
    }
    for ((what, kind), n) in shown.into_iter().filter(|(_, n)| *n > SHOWN) {
        println!("{what}: {kind}: {} more", n - SHOWN);
    }
}

/// Records a scenario's command for each of its lamps, pending for the dispatcher;
/// returns how many.
async fn record_command(
    db: &mut Admin,
    c: &simulators::scenario::PlannedCommand,
    devices: &[model::Device],
    ids: &std::collections::HashMap<String, i32>,
    sent: u64,
) -> anyhow::Result<u64> {
    let action = c.body["action"].as_str().unwrap_or_default();
    let expires = c.body["expires"]
        .as_i64()
        .and_then(Timestamp::from_unix_ms)
        .map(Timestamp::to_datetime);
    let mut n = 0;
    for &lamp in &c.lamps {
        let name = &devices[lamp].id;
        let device = *ids
            .get(name)
            .with_context(|| format!("lamp {name} is not in the database"))?;
        n += 1;
        let id = format!("00000000-0000-4000-8000-{:012x}", sent + n);
        db.record_command(
            &id,
            device,
            action,
            &c.body,
            c.at.to_datetime(),
            expires,
            "scenario",
        )
        .await?;
    }
    Ok(n)
}

async fn scenario_run(
    scenario: &Scenario,
    args: &DetectionBench,
    config: &Config,
    rules: &rules::RulesConfig,
) -> anyhow::Result<Score> {
    let speed = scenario.speed.unwrap_or(1.0) * args.speed_factor;
    if !(speed > 0.0 && speed <= 100_000.0) {
        bail!("speed {speed} must be above 0 and at most 100000");
    }
    let start = scenario.start().unwrap_or_else(Timestamp::now);
    let end = start.add_secs(scenario.duration_s as i64);
    let city = Arc::new(City::generate(&scenario.city_spec(TENANT)));
    let plan = scenario.plan(&city, start)?;
    let truth: Vec<Truth> = plan
        .truth(&city)
        .iter()
        .filter_map(Truth::from_record)
        .collect();
    let devices = city.devices();
    let spec = FleetSpec {
        seed: city.spec.seed,
        ..FleetSpec::default()
    };
    let windows = windows::Windows::new(rules, &spec, &devices);
    let window_s = |t: &Truth| windows.window_s(t);
    let resolve_s = |t: &Truth| windows.resolve_s(t);
    let kinds: Vec<(String, model::Kind)> =
        devices.iter().map(|d| (d.id.clone(), d.kind)).collect();
    eprintln!(
        "bench detection: `{}`: {} cabinets, {} lamps, {} meters, {} vehicles; {} faults over {} simulated s at {speed}x",
        scenario.name,
        city.cabinets.len(),
        city.lamps.len(),
        city.meters.len(),
        city.vehicles.len(),
        plan.faults.len(),
        scenario.duration_s
    );

    let broker = super::bench_broker()?;
    let db_name = format!(
        "cityhub_bench_detection_{}_{}",
        std::process::id(),
        scenario
            .name
            .to_ascii_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    let url = create_database(&config.database_url, &db_name).await?;
    let result = async {
        let mut db = Admin::from(Db::migrate(&url, config.storage.timescaledb, Some(30)).await?);
        db.import_routes(&city.route_lines()).await?;
        db.import_devices(&devices).await?;
        drop(db);

        let clock = SimClock {
            wall_origin_ms: chrono::Utc::now().timestamp_millis() + LEAD.as_millis() as i64,
            sim_origin_ms: start.micros() / 1000,
            speed,
        };
        // The rollups' refresher works by simulated time: at a few hundred times real time
        // it does hours of a city's roll-up work every few seconds, a database load no
        // real city puts beside its rules. This measures the rules, so it refreshes hourly.
        let mut env = vec![
            ("CITYHUB_SIM_CLOCK", clock.to_string()),
            ("CITYHUB_ROLLUP_REFRESH_S", "3600".to_owned()),
        ];
        if let Some(file) = &config.rules_file {
            env.push(("CITYHUB_RULES_FILE", file.display().to_string()));
        }
        let client_id = format!("bench-detection-{}", std::process::id());
        let mut hub = Hub::spawn(&url, broker.port, free_port()?, &client_id, &env)?;
        hub.wait_connected().await?;
        let until_start = wall_of(&clock, start).micros() - Timestamp::now().micros();
        if until_start < 0 {
            bail!("the hub took longer than {LEAD:?} to subscribe; the devices started without it");
        }
        // The devices come up with the scenario: connected earlier, their `online` would be
        // hours of simulated time older than their first reading, and that is silence.
        tokio::time::sleep(Duration::from_micros(until_start as u64)).await;

        let fleet = Fleet::new(city.clone(), spec.clone(), start).with_plan(&plan);
        let stats = Arc::new(FleetStats::default());
        let stop = CancellationToken::new();
        let fleet_task = tokio::spawn(simulators::fleet::run::run(
            fleet,
            FleetRun {
                host: "127.0.0.1".into(),
                port: broker.port,
                credentials: Some(("sim".into(), LOAD_PASSWORD.into())),
                devices_per_connection: 1_000,
                own_connection_share: 0.0,
                clock,
                client_prefix: format!("bench-detection-sim-{}", std::process::id()),
            },
            stats.clone(),
            stop.clone(),
        ));

        // The devices keep reporting past the end while the last windows close: a fleet
        // that stopped would be silent, and silence is a fault.
        let last_window = simulators::score::expected(&truth, &kinds, &window_s)
            .iter()
            .map(|e| e.truth.start.micros() + (e.window_s * 1e6) as i64)
            .max()
            .unwrap_or(0);
        let end_wall = wall_of(&clock, end);
        let deadline = wall_of(&clock, Timestamp(last_window))
            .add_secs(MARGIN.as_secs() as i64)
            .max(end_wall.add_secs(1))
            .min(end_wall.add_secs(MAX_DRAIN.as_secs() as i64));
        let score = |detected: &[Detected]| {
            Scoring {
                truth: &truth,
                detected,
                scenario_end: end,
                clock,
                window_s: &window_s,
                devices: &kinds,
                resolve_s: &resolve_s,
            }
            .score()
        };
        let mut db = Admin::connect(&url).await?;
        // The scenario's commands go in as an operator's do: rows the hub's dispatcher
        // sends, the lamps answer and the rules follow.
        let device_ids: std::collections::HashMap<String, i32> = Detection::connect(&url)
            .await?
            .rule_assets()
            .await?
            .into_iter()
            .map(|a| (a.ext_id, a.id))
            .collect();
        let mut commands = plan.commands.iter().peekable();
        let mut sent = 0u64;
        let mut report = Instant::now();
        let mut checked = Instant::now();
        while Timestamp::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            while let Some(c) = commands.next_if(|c| c.at <= clock.now()) {
                sent += record_command(&mut db, c, &devices, &device_ids, sent).await?;
            }
            if let Some(status) = hub.child.try_wait()? {
                bail!("`cityhub serve` exited during the run ({status})");
            }
            // Past the end, windows may stay open long after their outages were written
            // (a power restore's meters: three hours, though they said "offline" at once).
            let past_end = Timestamp::now() > end_wall.add_secs(1);
            if past_end && checked.elapsed() >= Duration::from_secs(1) {
                checked = Instant::now();
                if score(&detected(&db, clock.now()).await?).misses.is_empty() {
                    break;
                }
            }
            if report.elapsed() >= Duration::from_secs(10) {
                report = Instant::now();
                eprintln!(
                    "bench detection: sim {}  published {}",
                    clock.now(),
                    stats.published.load(std::sync::atomic::Ordering::Relaxed)
                );
            }
        }
        // What the hub decides while it stops (no rows come in, time goes on) is not
        // detection: outages opened after this instant are left out.
        let cutoff = clock.now();
        let stopping = Instant::now();
        hub.stop();
        stop.cancel();
        let _ = fleet_task.await;
        eprintln!(
            "bench detection: `{}` over at sim {cutoff}; hub and fleet stopped in {:.1} s",
            scenario.name,
            stopping.elapsed().as_secs_f64()
        );

        anyhow::Ok(score(&detected(&db, cutoff).await?))
    }
    .await;
    if args.keep_db {
        eprintln!(
            "bench detection: `{}` kept in database {db_name}",
            scenario.name
        );
    } else {
        drop_database(&config.database_url, &db_name).await;
    }
    result
}

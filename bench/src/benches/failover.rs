//! `cityhub bench failover`: several hub instances on one database and one broker, the
//! instance holding the stream killed with SIGKILL while lamps publish, and what that
//! cost.
//!
//! `--instances` `cityhub serve` processes share the benchmark's database and private
//! broker (the shipped configuration), with the same MQTT accounts and client id, as
//! docs/scale-out.md deploys them. Lamps publish at `--rate` messages a second (QoS 1); one
//! reading in 250 is a voltage swing, which the rules open an outage for and resolve at the
//! next reading. `--kills` times, evenly spread over the run, the instance holding the
//! stream's lease is killed with SIGKILL and started again at once (as systemd's
//! `Restart=` does). Then:
//! - `lost`: readings the broker acknowledged that are not stored; `duplicated`: readings
//!   stored more than once;
//! - `missed_outages`: faults (a lamp's run of consecutive swings) with no outage opened
//!   at any of their swings; `duplicate_outages`: outages opened or raised again beyond
//!   one per fault, or at a reading that was no swing;
//! - `takeover_s`: the longest any lease the killed instance held went without a living
//!   holder, from the kill to the database showing another instance's epoch.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use rumqttc::QoS;
use simulators::broker::free_port;
use simulators::load::{self, LoadConfig};
use store::{Admin, Db};
use tokio_util::sync::CancellationToken;

use super::{
    bench_devices, bench_rules_file, create_database, drop_database, http_get, sql, Hub,
    LOAD_PASSWORD, TENANT,
};
use crate::Config;

#[derive(Args, Clone)]
pub struct FailoverBench {
    /// Hub instances on the one database and broker
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(2..=8))]
    instances: u16,
    /// Lamps publishing
    #[arg(long, default_value_t = 2_000)]
    devices: usize,
    /// Messages a second over all lamps (one reading each)
    #[arg(long, default_value_t = 2_000.0)]
    rate: f64,
    /// Seconds of publishing
    #[arg(long, default_value_t = 60)]
    duration_secs: u64,
    /// Times the instance holding the stream is killed during the run
    #[arg(long, default_value_t = 2)]
    kills: u32,
    /// Every instance's `lease_ttl_s`
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(2..=60))]
    lease_ttl_s: u64,
    /// Publisher connections
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Keep the benchmark database afterwards
    #[arg(long)]
    keep_db: bool,
}

/// The outage kind a voltage swing opens.
const SWING_KIND: &str = "voltage_out_of_range";
/// Swings this close to the end of the stored readings are not counted: the rules judge
/// a reading about half a second after it is committed.
const JUDGING_MARGIN_MS: i64 = 5_000;

/// One instance: its name in the leases it holds (`name/pid/nonce`) and its process.
struct Instance {
    name: String,
    hub: Hub,
}

impl Instance {
    fn start(
        name: &str,
        url: &str,
        broker_port: u16,
        env: &[(&str, String)],
    ) -> anyhow::Result<Instance> {
        let mut env = env.to_vec();
        env.push(("CITYHUB_INSTANCE", name.to_owned()));
        let hub = Hub::spawn(url, broker_port, free_port()?, "bench-failover-hub", &env)?;
        Ok(Instance {
            name: name.to_owned(),
            hub,
        })
    }

    async fn wait_answering(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(self.hub.http_port, "/health").is_err() {
            if let Some(status) = self.hub.child.try_wait()? {
                bail!("instance {} exited during start-up ({status})", self.name);
            }
            if Instant::now() > deadline {
                bail!("instance {} did not answer within 30 s", self.name);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    fn holds(&self, holder: &str) -> bool {
        holder.split('/').next() == Some(self.name.as_str())
    }
}

/// Who holds each lease: name -> (holder, epoch).
async fn holders(db: &Admin) -> anyhow::Result<HashMap<String, (String, i64)>> {
    Ok(db
        .leases()
        .await?
        .into_iter()
        .map(|l| (l.name, (l.holder, l.epoch)))
        .collect())
}

pub async fn run(args: FailoverBench, config: Config) -> anyhow::Result<()> {
    let broker = super::bench_broker()?;
    let bench_db = format!("cityhub_bench_failover_{}", std::process::id());
    let url = create_database(&config.database_url, &bench_db).await?;
    let result = measure(&args, &config, &broker, &url).await;
    if args.keep_db {
        eprintln!("bench failover: database {bench_db} kept");
    } else {
        drop_database(&config.database_url, &bench_db).await;
    }
    result
}

async fn measure(
    args: &FailoverBench,
    config: &Config,
    broker: &simulators::broker::Broker,
    url: &str,
) -> anyhow::Result<()> {
    let mut db = Admin::from(Db::migrate(url, config.storage.timescaledb, Some(30)).await?);
    db.import_devices(&bench_devices(args.devices)).await?;
    eprintln!(
        "bench failover: {} instances, {} lamps at {} msgs/s for {} s, {} kills, leases of {} s, storage {}",
        args.instances,
        args.devices,
        args.rate,
        args.duration_secs,
        args.kills,
        args.lease_ttl_s,
        db.path().as_str()
    );
    let rules = match &config.rules_file {
        Some(file) => file.clone(),
        None => bench_rules_file()?,
    };
    let env = [
        ("CITYHUB_RULES_FILE", rules.display().to_string()),
        ("CITYHUB_LEASE_TTL_S", args.lease_ttl_s.to_string()),
    ];
    let mut instances = Vec::new();
    for i in 0..args.instances {
        instances.push(Instance::start(&format!("f{i}"), url, broker.port, &env)?);
    }
    for instance in &mut instances {
        instance.wait_answering().await?;
    }
    // The stream's holder subscribed: what is published from now on reaches it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let subscribed = instances
            .iter()
            .any(|i| i.hub.metrics().is_ok_and(|m| m.mqtt_subscriptions > 0));
        if subscribed {
            break;
        }
        if Instant::now() > deadline {
            bail!("no instance subscribed to the broker within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let load = LoadConfig {
        host: "127.0.0.1".into(),
        port: broker.port,
        credentials: Some(("loadgen".into(), LOAD_PASSWORD.into())),
        tenant: TENANT.into(),
        devices: (0..args.devices).map(|i| format!("B{i:06}")).collect(),
        readings_per_message: 1,
        qos: QoS::AtLeastOnce,
        duration: Duration::from_secs(args.duration_secs),
        rate: Some(args.rate),
        connections: args.connections,
        client_prefix: "bench-failover-load".into(),
        max_messages: None,
    };
    let started = Instant::now();
    let publisher = tokio::spawn(load::publish(load, CancellationToken::new()));

    let mut takeover_s: f64 = 0.0;
    for k in 1..=args.kills {
        let at = Duration::from_secs_f64(
            args.duration_secs as f64 * f64::from(k) / f64::from(args.kills + 1),
        );
        tokio::time::sleep(at.saturating_sub(started.elapsed())).await;
        let before = holders(&db).await?;
        let Some((stream_holder, _)) = before.get("stream") else {
            bail!("nobody holds the stream");
        };
        let victim = instances
            .iter()
            .position(|i| i.holds(stream_holder))
            .context("the stream's holder is none of the benchmark's instances")?;
        let held: Vec<(String, i64)> = before
            .iter()
            .filter(|(_, (holder, _))| instances[victim].holds(holder))
            .map(|(name, (_, epoch))| (name.clone(), *epoch))
            .collect();
        let killed = Instant::now();
        instances[victim].hub.child.kill()?;
        let _ = instances[victim].hub.child.wait();
        let name = instances[victim].name.clone();
        // Started again at once, as `Restart=` does: a new process, a new holder name.
        instances[victim] = Instance::start(&name, url, broker.port, &env)?;
        let mut pending: HashMap<String, i64> = held.iter().cloned().collect();
        let mut longest = 0.0f64;
        let limit = Duration::from_secs(args.lease_ttl_s * 6);
        while !pending.is_empty() {
            if killed.elapsed() > limit {
                bail!(
                    "leases {:?} not taken over within {} s of the kill",
                    pending.keys().collect::<Vec<_>>(),
                    limit.as_secs()
                );
            }
            let now = holders(&db).await?;
            pending.retain(|name, epoch| {
                let moved = now.get(name).is_some_and(|(_, e)| e > epoch);
                if moved {
                    longest = longest.max(killed.elapsed().as_secs_f64());
                }
                !moved
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let now = holders(&db).await?;
        let names: Vec<&str> = held.iter().map(|(n, _)| n.as_str()).collect();
        eprintln!(
            "kill {k} at {:.1} s: instance {name} held {}; taken over within {longest:.2} s (stream now {})",
            killed.duration_since(started).as_secs_f64(),
            names.join(", "),
            now.get("stream").map(|(h, _)| h.as_str()).unwrap_or("nobody"),
        );
        takeover_s = takeover_s.max(longest);
    }
    let report = publisher
        .await
        .context("the publisher stopped")?
        .context("the publisher failed")?;
    eprintln!(
        "published {} readings, acknowledged by the broker, at {:.0} msgs/s",
        report.readings,
        report.msgs_per_s()
    );

    let client = sql(url).await?;
    let counts = || async {
        let r = client
            .query_one(
                "SELECT count(*), count(DISTINCT (device_id, ts)) FROM light_readings",
                &[],
            )
            .await?;
        anyhow::Ok((r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64))
    };
    // Everything acknowledged is stored, or nothing more arrives for 10 s.
    let mut last = (counts().await?, Instant::now());
    while last.0 .1 < report.readings && last.1.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = counts().await?;
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    let (stored, distinct) = last.0;
    let lost = report.readings.saturating_sub(distinct);
    let duplicated = stored - distinct;
    // The rules judge the last readings, then the outages are read.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Each run of a lamp's consecutive swings is one fault: one outage, opened at one of
    // its swings (the first, or a later one when the reading before was judged by an
    // instance that died before writing its decision).
    let readings = client
        .query(
            "SELECT device_id, (extract(epoch FROM ts) * 1000)::int8, voltage_v > 260
             FROM light_readings ORDER BY device_id, ts",
            &[],
        )
        .await?;
    let newest = readings
        .iter()
        .map(|r| r.get::<_, i64>(1))
        .max()
        .unwrap_or(0);
    let cutoff = newest - JUDGING_MARGIN_MS;
    // (device, time of a swing) -> its fault; each fault's first swing.
    let mut fault_of: HashMap<(i32, i64), usize> = HashMap::new();
    let mut faults: Vec<i64> = Vec::new();
    let mut previous: Option<(i32, bool)> = None;
    for r in &readings {
        let (device, at, swing): (i32, i64, bool) = (r.get(0), r.get(1), r.get(2));
        if swing {
            if previous != Some((device, true)) {
                faults.push(at);
            }
            fault_of.insert((device, at), faults.len() - 1);
        }
        previous = Some((device, swing));
    }
    let mut raised_per_fault = vec![0usize; faults.len()];
    let mut raised_elsewhere = 0usize;
    for r in client
        .query(
            "SELECT o.device_id, (extract(epoch FROM e.at) * 1000)::int8
             FROM outage_events e JOIN outages o ON o.id = e.outage_id
             WHERE o.kind = $1 AND e.transition IN ('opened', 'occurred again')",
            &[&SWING_KIND],
        )
        .await?
    {
        let key: (i32, i64) = (r.get(0), r.get(1));
        match fault_of.get(&key) {
            Some(&f) => raised_per_fault[f] += 1,
            None if key.1 <= cutoff => raised_elsewhere += 1,
            None => {}
        }
    }
    let judged: Vec<usize> = (0..faults.len()).filter(|&f| faults[f] <= cutoff).collect();
    let missed = judged.iter().filter(|&&f| raised_per_fault[f] == 0).count();
    let duplicate_outages = judged
        .iter()
        .map(|&f| raised_per_fault[f].saturating_sub(1))
        .sum::<usize>()
        + raised_elsewhere;
    eprintln!(
        "stored {stored} readings ({distinct} distinct); {} faults (runs of swings) judged, {} with an outage",
        judged.len(),
        judged.len() - missed
    );
    for mut instance in instances {
        instance.hub.stop();
    }
    println!(
        "RESULT lost={lost} duplicated={duplicated} duplicate_outages={duplicate_outages} missed_outages={missed} takeover_s={takeover_s:.2}"
    );
    Ok(())
}

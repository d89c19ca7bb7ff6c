//! Work that must run once, whichever of several hub instances runs it: each piece under
//! a lease of its own (`store::leases`). An instance that holds a lease runs its work and
//! renews the lease every fifth of its time to live; the others wait, and one takes it
//! over once it has expired (its holder died, hung or lost the database). A holder that
//! finds its lease taken stops the work; the writes it had in flight are refused by the
//! lease's fence (`store::leases::Fence`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use store::leases::{Lease, Taken};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LeaseLabel {
    lease: &'static str,
}

/// `cityhub_lease_held{lease}` (1 while this instance runs that work) and
/// `cityhub_lease_taken_total{lease}` (times it took it).
#[derive(Clone, Debug, Default)]
pub struct LeaseMetrics {
    held: Family<LeaseLabel, Gauge>,
    taken: Family<LeaseLabel, Counter>,
}

impl LeaseMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("cityhub_lease");
        r.register(
            "held",
            "1 while this instance holds the lease and runs its work",
            self.held.clone(),
        );
        r.register(
            "taken",
            "Times this instance took the lease",
            self.taken.clone(),
        );
    }
}

/// This process's leases: who it is and how long a lease lasts.
#[derive(Debug, Clone)]
pub struct Leasing {
    pub metrics: LeaseMetrics,
    /// Since when each lease held has not been renewed (its renewals failing or hanging).
    unrenewed: Arc<Mutex<HashMap<&'static str, Instant>>>,
    pub database_url: String,
    /// `instance/pid/nonce`: unique to this process, so that a restarted instance waits
    /// for its predecessor's leases to expire or be given back.
    pub holder: String,
    pub ttl: Duration,
}

impl Leasing {
    pub fn new(database_url: &str, instance: &str, ttl: Duration) -> Leasing {
        let instance = if instance.is_empty() {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "cityhub".into())
        } else {
            instance.to_owned()
        };
        Leasing {
            metrics: LeaseMetrics::default(),
            unrenewed: Arc::default(),
            database_url: database_url.to_owned(),
            holder: format!("{instance}/{}/{:08x}", std::process::id(), started_nanos()),
            ttl,
        }
    }

    fn ttl_ms(&self) -> i64 {
        self.ttl.as_millis() as i64
    }

    /// What `/health` says of the leases: those held but not renewed for a lease's time
    /// to live (the database takes no writes: it is away, or waits for a synchronous
    /// standby that is missing).
    pub fn problems(&self) -> Vec<String> {
        let unrenewed = self.unrenewed.lock().unwrap_or_else(|p| p.into_inner());
        let mut stuck: Vec<(&str, u64)> = unrenewed
            .iter()
            .filter(|(_, since)| since.elapsed() >= self.ttl)
            .map(|(name, since)| (*name, since.elapsed().as_secs()))
            .collect();
        stuck.sort();
        stuck
            .into_iter()
            .map(|(name, secs)| {
                format!(
                    "this instance has not renewed its lease `{name}` for {secs} s: the database takes no writes (away, or waiting for a synchronous standby that is missing)"
                )
            })
            .collect()
    }

    fn renewed(&self, name: &'static str, ok: bool) {
        let mut unrenewed = self.unrenewed.lock().unwrap_or_else(|p| p.into_inner());
        if ok {
            unrenewed.remove(name);
        } else {
            unrenewed.entry(name).or_insert_with(Instant::now);
        }
    }

    /// Runs `work` whenever this instance holds lease `name`, until `shutdown`. `work`
    /// gets the lease and a token cancelled at shutdown or when the lease is lost; it
    /// must end soon after. An error from `work` ends this too (and gives the lease
    /// back); ending on its own without being asked to is the same as an error.
    pub async fn run<F, Fut>(
        &self,
        name: &'static str,
        shutdown: CancellationToken,
        mut work: F,
    ) -> anyhow::Result<()>
    where
        F: FnMut(Lease, CancellationToken) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let renew_every = self.ttl / 5;
        let mut db: Option<store::Db> = None;
        let mut waiting_since: Option<Instant> = None;
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            let taken = match connected(&mut db, &self.database_url).await {
                Some(conn) => tokio::time::timeout(
                    renew_every,
                    conn.take_lease(name, &self.holder, self.ttl_ms()),
                )
                .await
                .map_err(|_| format!("no answer within {} ms", renew_every.as_millis()))
                .and_then(|r| r.map_err(|e| e.to_string())),
                None => Err("cannot connect to the database".to_owned()),
            };
            let lease = match taken {
                Ok(Taken::Held(lease)) => lease,
                Ok(Taken::Busy(other)) => {
                    if waiting_since.is_none() {
                        info!(message = "Standing by: another instance holds this work.", lease = name, holder = %other.holder, epoch = other.epoch);
                        waiting_since = Some(Instant::now());
                    }
                    if !pause(&shutdown, renew_every).await {
                        return Ok(());
                    }
                    continue;
                }
                Err(error) => {
                    warn!(message = "Cannot take a lease now; will retry.", lease = name, %error);
                    db = None;
                    if !pause(&shutdown, renew_every).await {
                        return Ok(());
                    }
                    continue;
                }
            };
            let waited_ms = waiting_since.take().map(|t| t.elapsed().as_millis() as u64);
            info!(message = "Lease taken; starting its work.", lease = name, epoch = lease.epoch, holder = %self.holder, waited_ms);
            let label = LeaseLabel { lease: name };
            self.metrics.taken.get_or_create(&label).inc();
            self.metrics.held.get_or_create(&label).set(1);
            let stop = CancellationToken::new();
            let mut held = lease.clone();
            let outcome = {
                // A task of its own: it goes on while a renewal waits for the database.
                let mut task = tokio::spawn(work(lease, stop.clone()));
                let mut failing = false;
                let mut ticks = tokio::time::interval(renew_every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        r = &mut task => break r.unwrap_or_else(|e| Err(anyhow::anyhow!("it panicked: {e}"))),
                        _ = shutdown.cancelled(), if !stop.is_cancelled() => stop.cancel(),
                        _ = ticks.tick(), if !stop.is_cancelled() => {
                            let renewal = match connected(&mut db, &self.database_url).await {
                                Some(conn) => tokio::time::timeout(renew_every, conn.renew_lease(&held, self.ttl_ms()))
                                    .await
                                    .map_err(|_| format!("no answer within {} ms", renew_every.as_millis()))
                                    .and_then(|r| r.map_err(|e| e.to_string())),
                                None => Err("cannot connect to the database".to_owned()),
                            };
                            self.renewed(name, renewal.is_ok());
                            match renewal {
                                Ok(Some(lease)) => {
                                    held = lease;
                                    failing = false;
                                }
                                Ok(None) => {
                                    warn!(message = "Lease lost to another instance; stopping its work.", lease = name, epoch = held.epoch);
                                    stop.cancel();
                                }
                                Err(error) => {
                                    db = None;
                                    // Without the database nothing this work decides can
                                    // be written (the fence refuses a stale holder's writes
                                    // once it is back), so it goes on: a single hub rides
                                    // out a database restart as it did without leases.
                                    if !failing {
                                        warn!(message = "Cannot renew a lease now; its work goes on, and stops if another instance has taken it by the time the database answers.", lease = name, %error);
                                        failing = true;
                                    }
                                }
                            }
                        }
                    }
                }
            };
            self.renewed(name, true);
            if let Some(conn) = connected(&mut db, &self.database_url).await {
                match tokio::time::timeout(renew_every, conn.release_lease(&held)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        warn!(message = "Cannot give a lease back; it expires on its own.", lease = name, %error)
                    }
                    Err(_) => {
                        warn!(
                            message = "Cannot give a lease back in time; it expires on its own.",
                            lease = name
                        )
                    }
                }
            }
            info!(
                message = "Lease work stopped.",
                lease = name,
                epoch = held.epoch
            );
            match outcome {
                Err(e) => return Err(e.context(format!("the work of lease `{name}` failed"))),
                Ok(()) if shutdown.is_cancelled() => return Ok(()),
                Ok(()) if stop.is_cancelled() => {}
                Ok(()) => anyhow::bail!("the work of lease `{name}` ended on its own"),
            }
        }
    }
}

/// The nanoseconds of the second this process asked: with its id, tells it from an
/// earlier process of the same instance that had the same id.
fn started_nanos() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

/// How long connecting to the database may take before the attempt counts as failed.
const CONNECT_WAIT: Duration = Duration::from_secs(5);

async fn connected<'a>(db: &'a mut Option<store::Db>, url: &str) -> Option<&'a store::Db> {
    if db.as_ref().is_none_or(|d| d.is_closed()) {
        *db = tokio::time::timeout(CONNECT_WAIT, store::Db::connect(url))
            .await
            .ok()
            .and_then(Result::ok);
    }
    db.as_ref()
}

/// Waits `d`; false when `shutdown` came first.
async fn pause(shutdown: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

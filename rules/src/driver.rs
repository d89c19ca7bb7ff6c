//! The driver: feeds the engine with committed rows and the passing of time, and persists
//! its decisions, one transaction per set.
//!
//! On start it loads the devices and the outages already open, so a restart (even after
//! `kill -9`) neither opens an outage twice nor forgets one; the database's partial unique
//! index makes sure of it whatever happens.

use std::sync::Arc;
use std::time::Duration;

use model::{Observation, Timestamp};
use store::{Db, OutageChange, StoreError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::engine::{Asset, Decision, Engine, OutageKind, State};
use crate::RulesConfig;

/// Where "now" comes from (the hub's clock: wall or simulated).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// How often silence is checked and devices reloaded, in real time.
const TICK: Duration = Duration::from_secs(1);
const RELOAD: Duration = Duration::from_secs(60);

async fn load(db: &Db, config: &RulesConfig) -> Result<Engine, StoreError> {
    let assets = db
        .rule_assets()
        .await?
        .into_iter()
        .map(|a| Asset {
            id: a.id,
            kind: a.kind,
            cabinet: a.cabinet_id,
            rated_power_w: a.rated_power_w,
            lon: a.lon,
            lat: a.lat,
        })
        .collect();
    Ok(Engine::new(config.clone(), assets))
}

fn to_change(d: &Decision) -> OutageChange {
    match d {
        Decision::Open {
            asset,
            kind,
            at,
            reason,
        } => OutageChange::Open {
            device_id: *asset,
            kind: kind.as_str(),
            at: *at,
            reason: reason.clone(),
        },
        Decision::Resolve { asset, kind, at } => OutageChange::Resolve {
            device_id: *asset,
            kind: kind.as_str(),
            at: *at,
        },
    }
}

/// Runs until `committed` closes (ingestion stopped) or `shutdown`.
pub async fn run(
    url: String,
    config: RulesConfig,
    mut committed: mpsc::Receiver<Vec<Observation>>,
    clock: Clock,
    shutdown: CancellationToken,
) -> Result<(), StoreError> {
    let mut db = Db::connect(&url).await?;
    let mut engine = load(&db, &config).await?;
    let mut state = State::default();
    let open = db.open_outages().await?;
    for (device, kind) in &open {
        if let Some(kind) = OutageKind::parse(kind) {
            state.restore_open(*device, kind);
        }
    }
    info!(message = "Rules engine started.", open_outages = open.len());
    let mut decisions = Vec::new();
    let mut tick = tokio::time::interval(TICK);
    let mut reload = tokio::time::interval(RELOAD);
    reload.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            batch = committed.recv() => match batch {
                Some(rows) => {
                    for o in &rows {
                        engine.observe(&mut state, o.device_id, o.record, &o.row, &mut decisions);
                    }
                }
                None => break,
            },
            _ = tick.tick() => engine.tick(&mut state, clock(), &mut decisions),
            _ = reload.tick() => match load(&db, &config).await {
                Ok(e) => engine = e,
                Err(error) => warn!(message = "Cannot reload devices for the rules.", %error),
            },
        }
        persist(&url, &mut db, &mut decisions, &shutdown).await;
    }
    persist(&url, &mut db, &mut decisions, &shutdown).await;
    info!(message = "Rules engine stopped.");
    Ok(())
}

/// Writes pending decisions, retrying while the database is away (they stay pending).
async fn persist(
    url: &str,
    db: &mut Db,
    decisions: &mut Vec<Decision>,
    shutdown: &CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    while !decisions.is_empty() {
        let changes: Vec<OutageChange> = decisions.iter().map(to_change).collect();
        match db.apply_outage_changes(&changes).await {
            Ok(()) => decisions.clear(),
            Err(error) => {
                warn!(message = "Cannot persist outage decisions; retrying.", %error, decisions = changes.len());
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                if let Ok(fresh) = Db::connect(url).await {
                    *db = fresh;
                }
            }
        }
    }
}

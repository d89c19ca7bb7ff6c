//! The driver: feeds the engine with committed rows and the passing of time, and persists
//! its decisions, one transaction per set.
//!
//! On start it loads the devices, routes, maintenance windows, the commands in force and
//! the outages already open, so a restart (even after `kill -9`) neither opens an outage
//! twice nor forgets one; the database's partial unique indexes make sure of it whatever
//! happens.
//!
//! Each committed batch is put in timestamp order and given to the engine, which judges
//! it once the stream's watermark, less `[stream] reorder_ms`, has passed it (see
//! `timeline`). A batch's command acknowledgements are recorded first, and what each told
//! its lamp goes in with the batch, so the readings around an acknowledgement are judged
//! by their times against what the lamp was told, whatever order they came in.
//!
//! Its decisions are written with the horizon they were judged up to (`store::progress`).
//! On start it judges the rows stored after the horizon on record: those an instance
//! that stopped or was killed had committed but not yet judged.
//!
//! While it runs it also:
//! - reloads the rules file when it changes (a bad file is refused and the old rules stay);
//! - verifies repairs reported done (or reopens them) from what the rules see;
//! - ends shelving that has expired.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use model::fields::cmd_ack;
use model::{Backoff, Cell, Committed, Observation, RecordType, Timestamp, WorkOrderState};
use store::leases::Fence;
use store::{Answer, Detection, OutageChange, StoreError, WorkOrderPlan};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::engine::{
    Asset, Decision, Engine, MaintenanceWindow, OutageKind, Route, State, Verdict,
};
use crate::metrics::{DecisionLabel, OutcomeLabel};
use crate::schedule::Instruction;
use crate::stream::StreamClock;
use crate::timeline::{rank, Input};
use crate::{RulesConfig, RulesMetrics};

pub use model::Clock;

/// How often time passes for the engine, in real time.
const TICK: Duration = Duration::from_millis(250);
/// How often the rules file, maintenance windows, repairs and shelving are looked at.
const HOUSEKEEPING: Duration = Duration::from_secs(2);
/// How often devices and routes are reloaded.
const RELOAD: Duration = Duration::from_secs(60);
/// Rows of a device the engine does not know reload the devices at most this often.
const LEARN_EVERY: Duration = Duration::from_secs(2);
/// How far past the horizon on record (and the reordering window) stored rows are judged
/// at start: what an instance that stopped had committed but not judged lies within
/// seconds of it.
const REPLAY_SPAN_S: i64 = 600;
/// Stored rows judged at start this close to the hub's clock set the stream's time.
const RECENT_S: i64 = 60;
/// At most this many stored rows are judged again at start.
const REPLAY_ROWS: usize = 200_000;
/// How far the horizon moves before it is recorded without any decision to go with it.
const PROGRESS_EVERY_US: i64 = 1_000_000;

/// The rules: the file they came from (watched for changes) and what it said at start.
#[derive(Debug, Clone)]
pub struct RulesSource {
    pub path: Option<PathBuf>,
    pub config: RulesConfig,
}

async fn load(db: &Detection, config: &RulesConfig, now: Timestamp) -> Result<Engine, StoreError> {
    let assets = db
        .rule_assets()
        .await?
        .into_iter()
        .map(|a| Asset {
            id: a.id,
            name: a.ext_id,
            kind: a.kind,
            cabinet: a.cabinet_id,
            rated_power_w: a.rated_power_w,
            route: a.route_id,
            lon: a.lon,
            lat: a.lat,
        })
        .collect();
    let routes = db
        .rule_routes()
        .await?
        .into_iter()
        .map(|r| {
            let route = Route {
                line: r.line,
                headway_s: r.headway_s,
            };
            (r.id, route)
        })
        .collect();
    let mut engine = Engine::new(config.clone(), assets, routes);
    engine.set_maintenance(maintenance(db, now).await?);
    Ok(engine)
}

/// Maintenance windows not over at `now` (one small query: read at every housekeeping).
async fn maintenance(db: &Detection, now: Timestamp) -> Result<Vec<MaintenanceWindow>, StoreError> {
    Ok(db
        .maintenance_windows(now.to_datetime())
        .await?
        .into_iter()
        .map(|w| MaintenanceWindow {
            from: Timestamp::from_datetime(w.starts_at),
            until: Timestamp::from_datetime(w.ends_at),
            assets: w.device_ids.into_iter().collect(),
        })
        .collect())
}

fn to_change(config: &RulesConfig, d: &Decision) -> OutageChange {
    match d {
        Decision::Open {
            asset,
            kind,
            at,
            reason,
        }
        | Decision::Recur {
            asset,
            kind,
            at,
            reason,
        } => {
            let severity = config.severity(kind.as_str());
            OutageChange::Open {
                device_id: *asset,
                kind: kind.as_str(),
                at: *at,
                reason: reason.clone(),
                severity: severity.as_str(),
                work_order: config
                    .assignment(kind.as_str(), severity)
                    .map(|a| WorkOrderPlan {
                        team: a.team,
                        deadline_s: a.deadline_s,
                    }),
            }
        }
        Decision::Chattering { asset, kind, at } => OutageChange::Chattering {
            device_id: *asset,
            kind: kind.as_str(),
            at: *at,
        },
        Decision::Resolve { asset, kind, at } => OutageChange::Resolve {
            device_id: *asset,
            kind: kind.as_str(),
            at: *at,
        },
    }
}

/// The rules file as last read: its modification time and what it said.
struct Watched {
    path: PathBuf,
    modified: Option<SystemTime>,
    text: String,
}

impl Watched {
    fn new(path: PathBuf) -> Watched {
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        Watched {
            path,
            modified,
            text,
        }
    }

    /// New rules when the file changed and is valid; a bad file is logged, counted and
    /// ignored (the rules in force stay), once per change.
    fn changed(&mut self, metrics: &RulesMetrics) -> Option<RulesConfig> {
        let outcome = self.read();
        let label = |outcome| OutcomeLabel { outcome };
        match &outcome {
            Some(Ok(_)) => metrics.reloads.get_or_create(&label("applied")).inc(),
            Some(Err(())) => metrics.reloads.get_or_create(&label("refused")).inc(),
            None => 0,
        };
        outcome.and_then(Result::ok)
    }

    fn read(&mut self) -> Option<Result<RulesConfig, ()>> {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if modified == self.modified {
            return None;
        }
        self.modified = modified;
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) => {
                error!(message = "Cannot read the rules file; the rules in force stay.", path = %self.path.display(), error = %e);
                return Some(Err(()));
            }
        };
        if text == self.text {
            return None;
        }
        self.text.clone_from(&text);
        match RulesConfig::parse(&text) {
            Ok(config) => {
                info!(message = "Rules file reloaded.", path = %self.path.display());
                Some(Ok(config))
            }
            Err(e) => {
                error!(message = "The changed rules file is refused; the rules in force stay.", path = %self.path.display(), error = %e);
                Some(Err(()))
            }
        }
    }
}

/// Connects and rebuilds the engine's state from the database: devices, routes,
/// maintenance windows, open outages, commands in force. Returns the open outages' count.
async fn start(
    url: &str,
    fence: &Option<Fence>,
    config: &RulesConfig,
    clock: &Clock,
) -> Result<(Detection, Engine, State, usize), StoreError> {
    let db = connect(url, fence).await?;
    let engine = load(&db, config, clock()).await?;
    let mut state = State::default();
    let open = db.open_outages().await?;
    for (device, kind, at) in &open {
        if let Some(kind) = OutageKind::parse(kind) {
            state.restore_open(*device, kind, Timestamp::from_datetime(*at));
        }
    }
    for command in db.commands_in_force(clock().to_datetime()).await? {
        if let Some(i) = Instruction::from_command(&command.body) {
            engine.instruct(&mut state, command.device_id, i);
        }
    }
    Ok((db, engine, state, open.len()))
}

/// A connection whose decisions are written under `fence` (the lease of the instance
/// that runs the rules, when several could).
async fn connect(url: &str, fence: &Option<Fence>) -> Result<Detection, StoreError> {
    let mut db = Detection::connect(url).await?;
    db.set_fence(fence.clone());
    Ok(db)
}

/// Runs until `committed` closes (ingestion stopped) or `shutdown`. With `fence`, every
/// decision is written only while that lease is still this instance's.
pub async fn run(
    url: String,
    source: RulesSource,
    mut committed: mpsc::Receiver<Committed>,
    clock: Clock,
    metrics: RulesMetrics,
    fence: Option<Fence>,
    shutdown: CancellationToken,
) -> Result<(), StoreError> {
    let mut config = source.config;
    let mut watched = source.path.map(Watched::new);
    // The database may not be there yet: the rules wait for it (ingestion waits for them,
    // its committed rows queue in the channel) rather than run without state.
    let mut backoff = Backoff::standard();
    let (mut db, mut engine, mut state, open) = loop {
        match start(&url, &fence, &config, &clock).await {
            Ok(started) => break started,
            Err(error) => {
                warn!(message = "Cannot start the rules engine yet; retrying.", %error);
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(backoff.failed()) => {}
                }
            }
        }
    };
    let mut decisions = Vec::new();
    let mut stream = StreamClock::new();
    let mut writer = Writer {
        url: &url,
        metrics: &metrics,
        shutdown: &shutdown,
        saved: db.judged_through().await.ok().flatten(),
    };
    let replayed = match replay(
        &mut db,
        &engine,
        &mut state,
        &mut stream,
        writer.saved,
        &clock,
        &mut decisions,
    )
    .await
    {
        Ok(n) => n,
        Err(error) => {
            warn!(message = "Cannot read the rows stored after the rules' last horizon; they are not judged.", %error);
            0
        }
    };
    metrics.rows_replayed.inc_by(replayed as u64);
    info!(
        message = "Rules engine started.",
        open_outages = open,
        replayed_rows = replayed
    );
    // The commit of the oldest readings whose decisions are not persisted yet.
    let mut caused_by = None;
    let mut learned: Option<std::time::Instant> = None;
    let mut tick = tokio::time::interval(TICK);
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
    let mut reload = tokio::time::interval(RELOAD);
    reload.tick().await;
    let mut reconnect = Reconnect::new();
    loop {
        // A restarted database closes the connection for good: connect anew before using
        // it again (persisting decisions does so too when a write fails).
        if db.is_closed() && reconnect.due() {
            match connect(&url, &fence).await {
                Ok(fresh) => {
                    info!(message = "The rules engine reconnected to the database.");
                    metrics.db_reconnects.inc();
                    db = fresh;
                    reconnect = Reconnect::new();
                }
                Err(error) => {
                    let retry_in_ms = reconnect.failed().as_millis() as u64;
                    warn!(message = "The rules engine cannot reach the database yet; retrying.", %error, retry_in_ms);
                }
            }
        }
        let before = decisions.len();
        let mut batch_at = None;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            batch = committed.recv() => match batch {
                Some(batch) => {
                    stream.batch(&batch, clock());
                    batch_at = Some(batch.at);
                    let rows = batch.rows;
                    // A device imported while the hub runs: the engine learns it before
                    // judging its first readings, not at the next minute's reload (at
                    // most every few seconds, whatever the rows name).
                    let unknown = rows.iter().any(|o| !engine.knows(o.device_id));
                    if unknown && learned.is_none_or(|t| t.elapsed() >= LEARN_EVERY) {
                        learned = Some(std::time::Instant::now());
                        match load(&db, &config, clock()).await {
                            Ok(mut e) => {
                                e.set_config(config.clone());
                                engine = e;
                            }
                            Err(error) => warn!(message = "Cannot reload devices for the rules.", %error),
                        }
                    }
                    take(&mut db, &engine, &mut state, rows, &mut decisions).await;
                    let horizon = horizon(&stream, &engine, &clock);
                    engine.advance(&mut state, horizon, &mut decisions);
                }
                None => break,
            },
            _ = tick.tick() => {
                let horizon = horizon(&stream, &engine, &clock);
                engine.advance(&mut state, horizon, &mut decisions);
            }
            _ = housekeeping.tick() => {
                if let Some(new) = watched.as_mut().and_then(|w| w.changed(&metrics)) {
                    config = new.clone();
                    engine.set_config(new);
                }
                if let Err(error) = verify_repairs(&mut db, &engine, &state, clock(), &metrics).await {
                    warn!(message = "Cannot verify repairs now; trying again shortly.", %error);
                }
                match maintenance(&db, clock()).await {
                    Ok(windows) => engine.set_maintenance(windows),
                    Err(error) => warn!(message = "Cannot read maintenance windows now; trying again shortly.", %error),
                }
                if let Err(error) = db.unshelve_expired(clock()).await {
                    warn!(message = "Cannot end expired shelving now; trying again shortly.", %error);
                }
            }
            _ = reload.tick() => match load(&db, &config, clock()).await {
                Ok(mut e) => {
                    e.set_config(config.clone());
                    engine = e;
                }
                Err(error) => warn!(message = "Cannot reload devices for the rules.", %error),
            },
        }
        if decisions.len() > before {
            if let Some(at) = batch_at {
                caused_by.get_or_insert(at);
            }
        }
        let suppressed = std::mem::take(&mut state.maintenance_suppressed);
        metrics.maintenance_suppressed.inc_by(suppressed);
        metrics.rows_late.inc_by(std::mem::take(&mut state.late));
        metrics
            .rows_dropped
            .inc_by(std::mem::take(&mut state.dropped));
        metrics
            .rows_forced
            .inc_by(std::mem::take(&mut state.forced));
        metrics.queued.set(engine.queued(&state) as i64);
        if let Some(h) = state.horizon() {
            metrics
                .horizon_lag_ms
                .set((clock().micros() - h.micros()) / 1000);
        }
        writer
            .persist(&mut db, &config, &mut decisions, state.horizon)
            .await;
        if let Some(at) = caused_by.take() {
            metrics
                .commit_to_outage_seconds
                .observe(at.elapsed().as_secs_f64());
        }
    }
    // Recorded however little it moved: the next start judges the rows after it.
    writer.saved = None;
    writer
        .persist(&mut db, &config, &mut decisions, state.horizon)
        .await;
    info!(message = "Rules engine stopped.");
    Ok(())
}

/// When to try connecting again: at once, then after a backoff that doubles to 10 s.
struct Reconnect {
    at: std::time::Instant,
    backoff: Backoff,
}

impl Reconnect {
    fn new() -> Reconnect {
        Reconnect {
            at: std::time::Instant::now(),
            backoff: Backoff::new(Duration::from_millis(250), Duration::from_secs(10)),
        }
    }

    fn due(&self) -> bool {
        std::time::Instant::now() >= self.at
    }

    /// An attempt failed: the wait before the next.
    fn failed(&mut self) -> Duration {
        let wait = self.backoff.failed();
        self.at = std::time::Instant::now() + wait;
        wait
    }
}

/// Puts committed rows in time order and gives them to the engine, what an acknowledged
/// command told its lamp first: late, it applies before the readings that follow it are
/// judged.
async fn take(
    db: &mut Detection,
    engine: &Engine,
    state: &mut State,
    mut rows: Vec<Observation>,
    decisions: &mut Vec<Decision>,
) {
    rows.sort_by_key(|o| (o.row.ts, rank(o.record), o.device_id));
    for input in answered(db, &rows).await {
        engine.receive(state, input, decisions);
    }
    for o in rows {
        engine.receive(state, Input::Row(o), decisions);
    }
}

/// Gives the engine the rows stored after `through` (the horizon on record), within the
/// reordering window and [`REPLAY_SPAN_S`] of it: what was committed but not judged when the rules last
/// stopped. The rows given.
///
/// When they are recent (a takeover, a quick restart), the stream's time goes on from the
/// newest of them, so that what the broker kept for the new session meanwhile is judged
/// in time order rather than as late. Older ones (the hub was stopped for a while) leave
/// the stream's time to the hub's clock until the first live batch.
async fn replay(
    db: &mut Detection,
    engine: &Engine,
    state: &mut State,
    stream: &mut StreamClock,
    through: Option<Timestamp>,
    clock: &Clock,
    decisions: &mut Vec<Decision>,
) -> Result<usize, StoreError> {
    let Some(through) = through else {
        return Ok(0);
    };
    // The horizon trails the stream by the reordering window: what was stored but not
    // judged lies within it and the moments the horizon had not yet been recorded.
    let span = engine.config().stream.reorder_ms / 1000 + REPLAY_SPAN_S;
    let until = through.add_secs(span).min(clock().add_secs(span));
    let stored = db.stored_after(through, until, REPLAY_ROWS).await?;
    if stored.truncated {
        warn!(message = "More rows were stored after the rules' last horizon than are judged again at start; the later ones are not.", rows = REPLAY_ROWS, from = %through);
    }
    let n = stored.rows.len();
    let now = clock();
    let batch = Committed {
        at: std::time::Instant::now(),
        rows: stored.rows,
    };
    let newest = batch.rows.iter().map(|o| o.row.ts).max();
    if newest.is_some_and(|t| t.add_secs(RECENT_S) >= now) {
        stream.batch(&batch, now);
    }
    take(db, engine, state, batch.rows, decisions).await;
    Ok(n)
}

/// How far the engine judges: the stream's time less the reordering window.
fn horizon(stream: &StreamClock, engine: &Engine, clock: &Clock) -> Timestamp {
    let now = stream.now(clock(), std::time::Instant::now());
    Timestamp(now.micros() - engine.config().stream.reorder_ms * 1000)
}

/// Records the devices' answers among `rows` and returns what each accepted command told
/// its lamp, from the time it was issued (or acknowledged, if earlier by the lamp's clock).
async fn answered(db: &mut Detection, rows: &[Observation]) -> Vec<Input> {
    let mut told = Vec::new();
    for ack in rows.iter().filter(|o| o.record == RecordType::CmdAck) {
        match answer(db, ack).await {
            Ok(Some(input)) => told.push(input),
            Ok(None) => {}
            Err(error) => {
                warn!(message = "Cannot record a command acknowledgement; what it told the lamp is missed.", %error, device = ack.device_id);
            }
        }
    }
    told
}

async fn answer(db: &mut Detection, ack: &Observation) -> Result<Option<Input>, StoreError> {
    let row = &ack.row;
    let id = match row.cell(cmd_ack::ID) {
        Cell::Uuid(u) => u.to_string(),
        _ => return Ok(None),
    };
    let Some(status) = row.cell(cmd_ack::STATUS).as_str() else {
        return Ok(None);
    };
    let detail = row.cell(cmd_ack::DETAIL);
    let answered = db.record_answer(
        &id,
        Some(ack.device_id),
        status,
        detail.as_str(),
        row.ts.to_datetime(),
    );
    // A redelivered answer (or one after the command expired) tells the lamp nothing new.
    let Some(Answer {
        command,
        first: true,
    }) = answered.await?
    else {
        return Ok(None);
    };
    if status != "ok" || command.device_id != ack.device_id {
        return Ok(None);
    }
    Ok(
        Instruction::from_command(&command.body).map(|instruction| Input::Instructed {
            asset: ack.device_id,
            from: row.ts.min(Timestamp::from_datetime(command.issued_at)),
            instruction,
        }),
    )
}

/// Repairs reported done are watched; telemetry verifies them or reopens them.
async fn verify_repairs(
    db: &mut Detection,
    engine: &Engine,
    state: &State,
    now: Timestamp,
    metrics: &RulesMetrics,
) -> Result<(), StoreError> {
    for wo in db.work_orders_done().await? {
        let (Some(kind), Some(done_at)) = (OutageKind::parse(&wo.kind), wo.done_at) else {
            continue;
        };
        let done_at = Timestamp::from_datetime(done_at);
        let (to, detail) = match engine.verdict(state, wo.device_id, kind, done_at) {
            Verdict::Pending => continue,
            Verdict::Verified => (
                WorkOrderState::Verified,
                "telemetry shows the asset working for the hold time".to_owned(),
            ),
            Verdict::Reopened(why) => (WorkOrderState::Reopened, why),
        };
        db.transition_work_order(wo.id, to, "rules", Some(&detail), now, None)
            .await?;
        metrics
            .repairs
            .get_or_create(&OutcomeLabel {
                outcome: to.as_str(),
            })
            .inc();
        info!(
            message = "Repair checked against telemetry.",
            work_order = wo.id,
            verdict = to.as_str()
        );
    }
    Ok(())
}

/// Where the decisions go, and the horizon on record.
struct Writer<'a> {
    url: &'a str,
    metrics: &'a RulesMetrics,
    shutdown: &'a CancellationToken,
    /// The horizon last recorded (as far as this instance knows).
    saved: Option<Timestamp>,
}

impl Writer<'_> {
    /// Writes pending decisions with the horizon they were judged up to, retrying while
    /// the database is away (they stay pending). Without decisions the horizon is recorded
    /// once it has moved [`PROGRESS_EVERY_US`] past the one on record; a failure then
    /// waits for the next call.
    async fn persist(
        &mut self,
        db: &mut Detection,
        config: &RulesConfig,
        decisions: &mut Vec<Decision>,
        horizon: Option<Timestamp>,
    ) {
        let moved = match (horizon, self.saved) {
            (Some(h), Some(s)) => h.micros() - s.micros() >= PROGRESS_EVERY_US,
            (h, s) => h.is_some() && s.is_none(),
        };
        if decisions.is_empty() && !moved {
            return;
        }
        let mut backoff = Backoff::standard();
        loop {
            let changes: Vec<OutageChange> =
                decisions.iter().map(|d| to_change(config, d)).collect();
            match db.apply_judged(&changes, horizon).await {
                Ok(()) => {
                    if horizon.is_some() {
                        self.saved = horizon;
                    }
                    for d in decisions.drain(..) {
                        let (decision, kind) = match d {
                            Decision::Open { kind, .. } => ("open", kind),
                            Decision::Recur { kind, .. } => ("recur", kind),
                            Decision::Chattering { kind, .. } => ("chattering", kind),
                            Decision::Resolve { kind, .. } => ("resolve", kind),
                        };
                        let label = DecisionLabel {
                            decision,
                            kind: kind.as_str(),
                        };
                        self.metrics.decisions.get_or_create(&label).inc();
                    }
                    return;
                }
                Err(error @ StoreError::Fenced { .. }) => {
                    // Another instance holds the rules now and rebuilds from what is stored:
                    // these decisions are not this instance's to write any more.
                    warn!(message = "Outage decisions dropped: the rules moved to another instance.", %error, decisions = changes.len());
                    decisions.clear();
                    return;
                }
                Err(_) if changes.is_empty() => return,
                Err(error) => {
                    warn!(message = "Cannot persist outage decisions; retrying.", %error, decisions = changes.len());
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff.failed()) => {}
                    }
                    if let Ok(fresh) = connect(self.url, &db.fence().cloned()).await {
                        *db = fresh;
                    }
                }
            }
        }
    }
}

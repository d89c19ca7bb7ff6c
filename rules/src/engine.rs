//! The engine: committed readings (and the passing of time) in, outage decisions out.
//!
//! It does no IO and never reads the clock: a reading carries its own time, and
//! [`Engine::advance`] is told how far the stream has got. All it remembers lives in
//! [`State`], which the driver owns (and can rebuild from the database after a restart).
//!
//! Inputs are judged in the order of their timestamps, not of their arrival, and the
//! passing of time (silence, off-delays, quiet chattering alarms, a maintenance window's
//! end) is a deadline judged in the same order: see `timeline`. The rules
//! themselves live by domain: [`crate::lighting`], [`crate::meters`] and
//! [`crate::transport`]; silence in [`crate::silence`]. This file holds what they share:
//! assets, decisions, and the alarm hygiene every rule goes through ([`Engine::update`]):
//! on- and off-delays, suppression by a cabinet, maintenance windows, chattering, the
//! order of an outage's steps, and the watch on repairs.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

pub use model::OutageKind;
use model::{Kind, RecordType, Row, Timestamp};

use crate::condition::Transition;
use crate::config::RulesConfig;
use crate::schedule::Instruction;
pub use crate::state::State;
use crate::state::{Due, Evidence, Key};

/// What the engine knows of a device from the inventory.
#[derive(Debug, Clone, PartialEq)]
pub struct Asset {
    pub id: i32,
    /// The inventory's id (for reasons a person reads).
    pub name: String,
    pub kind: Kind,
    /// The cabinet feeding a lamp (its device id).
    pub cabinet: Option<i32>,
    pub rated_power_w: Option<f64>,
    /// A vehicle's route (see [`Engine::new`]).
    pub route: Option<i32>,
    pub lon: f64,
    pub lat: f64,
}

/// Lamp outages that a cabinet's supply loss explains (and so suppresses).
fn explained_by_supply_loss(kind: OutageKind) -> bool {
    matches!(
        kind,
        OutageKind::LampFailure
            | OutageKind::VoltageOutOfRange
            | OutageKind::DeviceOffline
            | OutageKind::LampCycling
    )
}

/// A bus route: its line and the timetable's headway.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// (lon, lat) points.
    pub line: Vec<(f64, f64)>,
    pub headway_s: Option<f64>,
}

/// What the driver persists.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Open {
        asset: i32,
        kind: OutageKind,
        at: Timestamp,
        reason: String,
    },
    /// A chattering outage, held open, raised once more (an occurrence).
    Recur {
        asset: i32,
        kind: OutageKind,
        at: Timestamp,
        reason: String,
    },
    /// An open outage found chattering: it is held open until quiet.
    Chattering {
        asset: i32,
        kind: OutageKind,
        at: Timestamp,
    },
    Resolve {
        asset: i32,
        kind: OutageKind,
        at: Timestamp,
    },
}

/// A maintenance window: outages of these assets raised inside it are not opened (they
/// open when it ends if the fault is still there).
#[derive(Debug, Clone, PartialEq)]
pub struct MaintenanceWindow {
    pub from: Timestamp,
    pub until: Timestamp,
    pub assets: HashSet<i32>,
}

/// What telemetry says of a repair reported done.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Not enough evidence yet.
    Pending,
    /// The asset has behaved for the hold time.
    Verified,
    /// The fault is still (or again) there.
    Reopened(String),
}

/// One rule's verdict on one reading, through [`Engine::update`].
pub(crate) struct Check<R: FnOnce() -> String> {
    pub kind: OutageKind,
    pub faulty: bool,
    pub ts: Timestamp,
    pub on_delay_s: i64,
    pub off_delay_s: i64,
    pub reason: R,
}

/// Engines made so far: a new one (new devices, rules or maintenance windows) makes the
/// state recompute its time-driven deadlines.
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

fn next_generation() -> u64 {
    GENERATIONS.fetch_add(1, Ordering::Relaxed)
}

pub struct Engine {
    pub(crate) config: RulesConfig,
    pub(crate) assets: HashMap<i32, Asset>,
    /// Lamps per cabinet id.
    pub(crate) lamps_of: HashMap<i32, Vec<i32>>,
    /// Routes by id.
    pub(crate) routes: HashMap<i32, Route>,
    pub(crate) maintenance: Vec<MaintenanceWindow>,
    pub(crate) generation: u64,
}

impl Engine {
    /// Whether `id` is one of the devices it judges.
    pub fn knows(&self, id: i32) -> bool {
        self.assets.contains_key(&id)
    }

    pub fn new(config: RulesConfig, assets: Vec<Asset>, routes: HashMap<i32, Route>) -> Engine {
        let mut lamps_of: HashMap<i32, Vec<i32>> = HashMap::new();
        for a in &assets {
            if let (Kind::Light, Some(c)) = (a.kind, a.cabinet) {
                lamps_of.entry(c).or_default().push(a.id);
            }
        }
        Engine {
            config,
            assets: assets.into_iter().map(|a| (a.id, a)).collect(),
            lamps_of,
            routes,
            maintenance: Vec::new(),
            generation: next_generation(),
        }
    }

    pub fn config(&self) -> &RulesConfig {
        &self.config
    }

    /// New parameters (a reloaded rules file); what the engine remembers stays.
    pub fn set_config(&mut self, config: RulesConfig) {
        if config != self.config {
            self.config = config;
            self.generation = next_generation();
        }
    }

    pub fn set_maintenance(&mut self, windows: Vec<MaintenanceWindow>) {
        if windows != self.maintenance {
            self.maintenance = windows;
            self.generation = next_generation();
        }
    }

    /// An instruction the lamp acknowledged: what it should do from now on (rebuilding
    /// state on start; while running, instructions come through [`Engine::receive`]).
    pub fn instruct(&self, state: &mut State, asset: i32, instruction: Instruction) {
        match instruction {
            Instruction::Light(o) => {
                state.overrides.insert(asset, o);
            }
            Instruction::Schedule(s) => {
                // A new schedule ends a manual override, as on the controller.
                state.overrides.remove(&asset);
                state.schedules.insert(asset, s);
            }
        }
    }

    /// Receives one row and judges everything up to its time: for tests and replays that
    /// feed a stream already in order.
    pub fn observe(
        &self,
        state: &mut State,
        asset: i32,
        record: RecordType,
        row: &Row,
        out: &mut Vec<Decision>,
    ) {
        let ts = row.ts;
        let input = crate::state::Input::Row(model::Observation {
            device_id: asset,
            record,
            row: row.clone(),
        });
        self.receive(state, input, out);
        self.advance(state, ts, out);
    }

    /// The passing of time, for tests and replays: [`Engine::advance`].
    pub fn tick(&self, state: &mut State, now: Timestamp, out: &mut Vec<Decision>) {
        self.advance(state, now, out);
    }

    /// Judges one row of `asset`, now.
    pub(crate) fn judge_row(
        &self,
        state: &mut State,
        asset: i32,
        record: RecordType,
        row: &Row,
        out: &mut Vec<Decision>,
    ) {
        let Some(a) = self.assets.get(&asset) else {
            return;
        };
        if record == RecordType::Status {
            self.status(state, a, row, out);
            return;
        }
        self.heard_from(state, a, row.ts, out);
        match record {
            RecordType::Light => self.lamp(state, a, row, out),
            RecordType::Cabinet => self.cabinet(state, a, row, out),
            RecordType::Meter => self.meter(state, a, row, out),
            RecordType::Vehicle => self.vehicle(state, a, row, out),
            RecordType::Status | RecordType::Event | RecordType::CmdAck => {}
        }
    }

    /// A chattering outage held open resolves once its alarm has been quiet for the
    /// window (a deadline, see `timeline`).
    pub(crate) fn release_held(
        &self,
        state: &mut State,
        key: Key,
        now: Timestamp,
        out: &mut Vec<Decision>,
    ) {
        let window = self.config.chattering.window_s * 1_000_000;
        let quiet = state
            .raises
            .get(&key)
            .and_then(|r| r.back())
            .is_none_or(|last| now.micros() - last.micros() >= window);
        if !state.held.contains(&key) || state.is_active(key) || !quiet {
            return;
        }
        state.held.remove(&key);
        state.raises.remove(&key);
        self.resolve(state, key, now, out);
    }

    /// Opens what was raised inside a maintenance window once it is over, if still faulty.
    pub(crate) fn open_deferred(
        &self,
        state: &mut State,
        key: Key,
        now: Timestamp,
        out: &mut Vec<Decision>,
    ) {
        if !state.deferred.contains(&key) {
            return;
        }
        if self.in_maintenance(key.0, now) {
            // The windows changed: wait for the new end.
            let end = self.maintenance_end(key.0, now);
            state.deadlines.insert(Due::deferred(end, key));
            return;
        }
        state.deferred.remove(&key);
        let Some(a) = self.assets.get(&key.0) else {
            return;
        };
        if state.is_active(key) && !self.suppressed(state, a, key.1) {
            let reason = format!(
                "still faulty after the maintenance window ({})",
                key.1.as_str()
            );
            self.open(state, key, now, reason, out);
        }
    }

    /// A clearing condition's off-delay ran out (a deadline).
    pub(crate) fn expire(
        &self,
        state: &mut State,
        key: Key,
        now: Timestamp,
        out: &mut Vec<Decision>,
    ) {
        let Some(a) = self.assets.get(&key.0) else {
            return;
        };
        let cleared = state.conditions.get_mut(&key).and_then(|c| c.expire(now));
        if cleared == Some(Transition::Cleared) {
            self.cleared(state, a, key.1, now, out);
        }
    }

    fn in_maintenance(&self, asset: i32, ts: Timestamp) -> bool {
        self.maintenance
            .iter()
            .any(|w| w.from <= ts && ts < w.until && w.assets.contains(&asset))
    }

    /// When the maintenance of `asset` going on at `ts` ends (windows that overlap or
    /// follow one another without a gap count as one).
    pub(crate) fn maintenance_end(&self, asset: i32, ts: Timestamp) -> Timestamp {
        let mut end = ts;
        while let Some(next) = self
            .maintenance
            .iter()
            .filter(|w| w.from <= end && end < w.until && w.assets.contains(&asset))
            .map(|w| w.until)
            .max()
        {
            end = next;
        }
        end
    }

    /// Feeds a condition and turns its transitions into decisions, minding suppression,
    /// maintenance, chattering and repairs under watch.
    pub(crate) fn update<R: FnOnce() -> String>(
        &self,
        state: &mut State,
        a: &Asset,
        check: Check<R>,
        out: &mut Vec<Decision>,
    ) {
        let key = (a.id, check.kind);
        let ts = check.ts;
        // Most readings are healthy: no entry is made for a condition that stays normal.
        if !check.faulty && !state.conditions.contains_key(&key) {
            return;
        }
        let evidence = state.evidence.entry(key).or_insert(Evidence {
            last_fault: ts,
            healthy_since: None,
        });
        if check.faulty {
            if ts >= evidence.last_fault {
                *evidence = Evidence {
                    last_fault: ts,
                    healthy_since: None,
                };
            }
        } else if ts > evidence.last_fault && evidence.healthy_since.is_none_or(|h| ts < h) {
            evidence.healthy_since = Some(ts);
        }
        let condition = state.conditions.entry(key).or_default();
        let was_clearing = condition.clears_at();
        let transition = condition.observe(check.faulty, ts, check.on_delay_s, check.off_delay_s);
        if let Some(until) = condition.clears_at().filter(|u| Some(*u) != was_clearing) {
            state.deadlines.insert(Due::clear(until, key));
        }
        match transition {
            Some(Transition::Raised) => {
                self.raised(state, a, check.kind, ts, (check.reason)(), out)
            }
            Some(Transition::Cleared) => self.cleared(state, a, check.kind, ts, out),
            None => {}
        }
    }

    fn raised(
        &self,
        state: &mut State,
        a: &Asset,
        kind: OutageKind,
        ts: Timestamp,
        reason: String,
        out: &mut Vec<Decision>,
    ) {
        let key = (a.id, kind);
        let window = self.config.chattering.window_s * 1_000_000;
        let raises = state.raises.entry(key).or_default();
        raises.push_back(ts);
        while raises
            .front()
            .is_some_and(|t| ts.micros() - t.micros() > window)
        {
            raises.pop_front();
        }
        if self.suppressed(state, a, kind) {
            return;
        }
        if self.in_maintenance(a.id, ts) {
            state.maintenance_suppressed += 1;
            state.deferred.insert(key);
            let end = self.maintenance_end(a.id, ts);
            state.deadlines.insert(Due::deferred(end, key));
            return;
        }
        if let Some(&opened) = state.open.get(&key) {
            if state.held.contains(&key) {
                out.push(Decision::Recur {
                    asset: a.id,
                    kind,
                    at: ts.max(opened),
                    reason,
                });
                state.deadlines.insert(Due::release(
                    ts.add_secs(self.config.chattering.window_s),
                    key,
                ));
            }
            return;
        }
        self.open(state, key, ts, reason, out);
    }

    fn open(
        &self,
        state: &mut State,
        key: Key,
        at: Timestamp,
        reason: String,
        out: &mut Vec<Decision>,
    ) {
        if let std::collections::hash_map::Entry::Vacant(e) = state.open.entry(key) {
            e.insert(at);
            out.push(Decision::Open {
                asset: key.0,
                kind: key.1,
                at,
                reason,
            });
        }
    }

    /// Resolves an open outage, never before it opened: evidence judged late (a backlog
    /// that shows the fault had ended) resolves it at the instant it opened, not earlier.
    fn resolve(&self, state: &mut State, key: Key, at: Timestamp, out: &mut Vec<Decision>) {
        if let Some(opened) = state.open.remove(&key) {
            out.push(Decision::Resolve {
                asset: key.0,
                kind: key.1,
                at: at.max(opened),
            });
        }
    }

    fn cleared(
        &self,
        state: &mut State,
        a: &Asset,
        kind: OutageKind,
        ts: Timestamp,
        out: &mut Vec<Decision>,
    ) {
        let key = (a.id, kind);
        state.deferred.remove(&key);
        if let Some(&opened) = state.open.get(&key) {
            let recent = state.raises.get(&key).map_or(0, |r| r.len());
            if state.held.contains(&key) {
                // Quiet from here: resolved when the window since the last raise is over.
                let last = state.raises.get(&key).and_then(|r| r.back()).copied();
                let due = last.map_or(ts, |l| l.add_secs(self.config.chattering.window_s));
                state.deadlines.insert(Due::release(due.max(ts), key));
            } else if recent >= self.config.chattering.max_raises as usize {
                state.held.insert(key);
                out.push(Decision::Chattering {
                    asset: a.id,
                    kind,
                    at: ts.max(opened),
                });
                let last = state.raises.get(&key).and_then(|r| r.back()).copied();
                let due = last.map_or(ts, |l| l.add_secs(self.config.chattering.window_s));
                state.deadlines.insert(Due::release(due.max(ts), key));
            } else {
                self.resolve(state, key, ts, out);
            }
        }
        let explains_lamps = kind == OutageKind::CabinetSupplyLoss
            || (kind == OutageKind::DeviceOffline && a.kind == Kind::Cabinet);
        if explains_lamps {
            self.after_cabinet_back(state, a, ts);
        }
    }

    /// A lamp fault during its cabinet's supply loss is the cabinet's: one outage, not
    /// eighty; so is a lamp's silence while its cabinet is offline too. A cabinet without
    /// mains may well fall silent: its own silence is explained too.
    pub(crate) fn suppressed(&self, state: &State, a: &Asset, kind: OutageKind) -> bool {
        if a.kind == Kind::Cabinet {
            return kind == OutageKind::DeviceOffline
                && state
                    .open
                    .contains_key(&(a.id, OutageKind::CabinetSupplyLoss));
        }
        let Some(c) = a.cabinet.filter(|_| a.kind == Kind::Light) else {
            return false;
        };
        (explained_by_supply_loss(kind)
            && state.open.contains_key(&(c, OutageKind::CabinetSupplyLoss)))
            || (kind == OutageKind::DeviceOffline
                && state.open.contains_key(&(c, OutageKind::DeviceOffline)))
    }

    /// What its lamps showed while the cabinet was down is explained by it: their lamp
    /// conditions start over, and a lamp still failing raises its own outage from its next
    /// readings (or, for silence, when its own window runs out).
    ///
    /// A lamp that said "offline" with its cabinet is not taken at its word afterwards: it
    /// must be heard from within its own silence window from the cabinet's return, or it
    /// is found silent then (so the order in which a city's "online" messages come back
    /// after a power cut raises nothing).
    fn after_cabinet_back(&self, state: &mut State, cabinet: &Asset, ts: Timestamp) {
        state.dark.remove(&cabinet.id);
        for lamp in self.lamps_of.get(&cabinet.id).into_iter().flatten() {
            let silence = (*lamp, OutageKind::DeviceOffline);
            let explained = state.is_active(silence) && !state.open.contains_key(&silence);
            if state.offline.remove(lamp).is_some() || explained {
                self.seen(state, *lamp, ts);
            }
        }
        let own_silence = (cabinet.id, OutageKind::DeviceOffline);
        if !state.open.contains_key(&own_silence) {
            state.conditions.remove(&own_silence);
        }
        for lamp in self.lamps_of.get(&cabinet.id).into_iter().flatten() {
            for kind in [
                OutageKind::LampFailure,
                OutageKind::VoltageOutOfRange,
                OutageKind::DeviceOffline,
                OutageKind::LampCycling,
            ] {
                if !state.open.contains_key(&(*lamp, kind)) {
                    state.conditions.remove(&(*lamp, kind));
                }
            }
        }
    }

    /// Has a repair reported done at `done_at` held? Reopened when the rule has seen the
    /// fault since; verified when it has judged the asset healthy since and the asset kept
    /// reporting, without the fault, for the hold time; pending until one or the other.
    pub fn verdict(
        &self,
        state: &State,
        asset: i32,
        kind: OutageKind,
        done_at: Timestamp,
    ) -> Verdict {
        let Some(e) = state.evidence.get(&(asset, kind)) else {
            return Verdict::Pending;
        };
        if e.last_fault >= done_at {
            return Verdict::Reopened(format!(
                "telemetry still shows {} at {}, after the repair was reported done",
                kind.as_str(),
                e.last_fault
            ));
        }
        let hold = self.config.work_orders.verify_hold_s * 1_000_000;
        let held = e.healthy_since.is_some_and(|h| {
            let from = h.max(done_at);
            state
                .last_seen
                .get(&asset)
                .is_some_and(|seen| seen.micros() - from.micros() >= hold)
        });
        if held && !state.is_active((asset, kind)) {
            Verdict::Verified
        } else {
            Verdict::Pending
        }
    }

    /// The time-driven deadlines that depend on the rules, the devices or the maintenance
    /// windows, computed again for this engine (after a reload).
    pub(crate) fn refresh_deadlines(&self, state: &mut State) {
        if state.generation == self.generation {
            return;
        }
        state.generation = self.generation;
        state.deadlines.retain(|d| d.is_clear());
        let seen: Vec<i32> = state.last_seen.keys().copied().collect();
        for id in seen {
            self.schedule_silence(state, id);
        }
        let offline: Vec<(i32, Timestamp)> =
            state.offline.iter().map(|(id, t)| (*id, *t)).collect();
        for (id, since) in offline {
            self.schedule_offline(state, id, since);
        }
        let window = self.config.chattering.window_s;
        for key in state.held.iter() {
            let last = state.raises.get(key).and_then(|r| r.back()).copied();
            let due = last.map_or(state.now(), |l| l.add_secs(window));
            state.deadlines.insert(Due::release(due, *key));
        }
        let deferred: Vec<Key> = state.deferred.iter().copied().collect();
        for key in deferred {
            let end = self.maintenance_end(key.0, state.now());
            state.deadlines.insert(Due::deferred(end, key));
        }
    }
}

pub(crate) fn silence_kind(kind: Kind) -> OutageKind {
    match kind {
        Kind::Light | Kind::Cabinet => OutageKind::DeviceOffline,
        Kind::Meter => OutageKind::MeterSilent,
        Kind::Vehicle => OutageKind::VehicleSilent,
    }
}

//! The engine: committed readings (and the passing of time) in, outage decisions out.
//!
//! It does no IO and never reads the clock: a reading carries its own time, and
//! [`Engine::tick`] is told "now". All it remembers lives in [`State`], which the driver
//! owns (and can rebuild from the database after a restart).
//!
//! The rules themselves live by domain: [`crate::lighting`], [`crate::meters`] and
//! [`crate::transport`]. This file holds what they share: assets, decisions, silence, and
//! the alarm hygiene every rule goes through ([`Engine::update`]): on- and off-delays,
//! suppression by a cabinet, maintenance windows, chattering, and the watch on repairs.

use std::collections::{HashMap, HashSet, VecDeque};

use model::{Kind, RecordType, Row, Timestamp};

use crate::condition::{Condition, Transition};
use crate::config::RulesConfig;
use crate::lighting::LampState;
use crate::meters::Night;
use crate::schedule::{Instruction, Override, Schedule};
use crate::transport::Track;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutageKind {
    LampFailure,
    DayBurner,
    LampCycling,
    VoltageOutOfRange,
    DeviceOffline,
    CabinetSupplyLoss,
    Leak,
    Tamper,
    ReverseFlow,
    MeterSilent,
    VehicleSilent,
    OffRoute,
    Bunching,
    StoppedTooLong,
}

impl OutageKind {
    pub const ALL: [OutageKind; 14] = [
        OutageKind::LampFailure,
        OutageKind::DayBurner,
        OutageKind::LampCycling,
        OutageKind::VoltageOutOfRange,
        OutageKind::DeviceOffline,
        OutageKind::CabinetSupplyLoss,
        OutageKind::Leak,
        OutageKind::Tamper,
        OutageKind::ReverseFlow,
        OutageKind::MeterSilent,
        OutageKind::VehicleSilent,
        OutageKind::OffRoute,
        OutageKind::Bunching,
        OutageKind::StoppedTooLong,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OutageKind::LampFailure => "lamp_failure",
            OutageKind::DayBurner => "day_burner",
            OutageKind::LampCycling => "lamp_cycling",
            OutageKind::VoltageOutOfRange => "voltage_out_of_range",
            OutageKind::DeviceOffline => "device_offline",
            OutageKind::CabinetSupplyLoss => "cabinet_supply_loss",
            OutageKind::Leak => "leak",
            OutageKind::Tamper => "tamper",
            OutageKind::ReverseFlow => "reverse_flow",
            OutageKind::MeterSilent => "meter_silent",
            OutageKind::VehicleSilent => "vehicle_silent",
            OutageKind::OffRoute => "off_route",
            OutageKind::Bunching => "bunching",
            OutageKind::StoppedTooLong => "stopped_too_long",
        }
    }

    pub fn parse(s: &str) -> Option<OutageKind> {
        OutageKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Lamp outages that a cabinet's supply loss explains (and so suppresses).
    fn explained_by_supply_loss(self) -> bool {
        matches!(
            self,
            OutageKind::LampFailure
                | OutageKind::VoltageOutOfRange
                | OutageKind::DeviceOffline
                | OutageKind::LampCycling
        )
    }
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

pub(crate) type Key = (i32, OutageKind);

/// What a rule last saw of an asset that has been faulty: the evidence repairs are
/// verified with.
#[derive(Debug, Clone, Copy)]
struct Evidence {
    last_fault: Timestamp,
    /// The first healthy verdict after the last fault.
    healthy_since: Option<Timestamp>,
}

/// Everything the engine remembers between readings.
#[derive(Debug, Default, Clone)]
pub struct State {
    conditions: HashMap<Key, Condition>,
    open: HashSet<Key>,
    last_seen: HashMap<i32, Timestamp>,
    /// Devices whose last will (or own status) says offline, since when.
    offline: HashMap<i32, Timestamp>,
    /// Civil dawn and dusk per (place, solar day); lamps share their cabinet's.
    pub(crate) twilight: HashMap<(i32, i64), (Option<Timestamp>, Option<Timestamp>)>,
    pub(crate) overrides: HashMap<i32, Override>,
    pub(crate) schedules: HashMap<i32, Schedule>,
    pub(crate) lamps: HashMap<i32, LampState>,
    /// Lamps seen dark while they should burn, per cabinet.
    pub(crate) dark: HashMap<i32, HashSet<i32>>,
    /// Cabinets whose last report said the supply was lost.
    pub(crate) supply_lost: HashSet<i32>,
    pub(crate) nights: HashMap<i32, Night>,
    /// Last positions per route and vehicle.
    pub(crate) tracks: HashMap<i32, HashMap<i32, Track>>,
    /// Vehicle pairs (lower id first) found close together.
    pub(crate) bunched: HashSet<(i32, i32)>,
    /// When each vehicle's bunching was last judged.
    pub(crate) bunch_seen: HashMap<i32, Timestamp>,
    /// Recent raises per alarm, for chattering.
    raises: HashMap<Key, VecDeque<Timestamp>>,
    /// Outages held open because they chatter.
    held: HashSet<Key>,
    /// Raised inside a maintenance window (or while explained by a cabinet that has since
    /// recovered): opened when the window ends if still faulty.
    deferred: HashSet<Key>,
    evidence: HashMap<Key, Evidence>,
    /// Raises not opened because of a maintenance window.
    pub maintenance_suppressed: u64,
}

impl State {
    /// Outages currently open, for the driver's restart check and tests.
    pub fn open(&self) -> impl Iterator<Item = (i32, OutageKind)> + '_ {
        self.open.iter().copied()
    }

    /// Marks an outage as open (rebuilding state from the database after a restart).
    pub fn restore_open(&mut self, asset: i32, kind: OutageKind) {
        self.open.insert((asset, kind));
        self.conditions.insert((asset, kind), Condition::Active);
    }

    pub(crate) fn is_active(&self, key: Key) -> bool {
        self.conditions.get(&key).is_some_and(|c| c.is_active())
    }
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

pub struct Engine {
    pub(crate) config: RulesConfig,
    pub(crate) assets: HashMap<i32, Asset>,
    /// Lamps per cabinet id.
    pub(crate) lamps_of: HashMap<i32, Vec<i32>>,
    /// Routes by id.
    pub(crate) routes: HashMap<i32, Route>,
    maintenance: Vec<MaintenanceWindow>,
}

impl Engine {
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
        }
    }

    pub fn config(&self) -> &RulesConfig {
        &self.config
    }

    /// New parameters (a reloaded rules file); what the engine remembers stays.
    pub fn set_config(&mut self, config: RulesConfig) {
        self.config = config;
    }

    pub fn set_maintenance(&mut self, windows: Vec<MaintenanceWindow>) {
        self.maintenance = windows;
    }

    /// An instruction the lamp acknowledged: what it should do from now on.
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

    /// Evaluates one committed row of `asset`.
    pub fn observe(
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
        let ts = row.ts;
        if record == RecordType::Status {
            self.status(state, a, row, out);
            return;
        }
        self.heard_from(state, a, ts, out);
        match record {
            RecordType::Light => self.lamp(state, a, row, out),
            RecordType::Cabinet => self.cabinet(state, a, row, out),
            RecordType::Meter => self.meter(state, a, row, out),
            RecordType::Vehicle => self.vehicle(state, a, row, out),
            RecordType::Status | RecordType::Event | RecordType::CmdAck => {}
        }
    }

    /// A device's own word on its connection (its last will says offline). Offline is
    /// raised after the silence grace, from [`Engine::tick`], so that a cabinet's status
    /// arriving in the same moment explains its lamps' instead of raising eighty alarms.
    fn status(&self, state: &mut State, a: &Asset, row: &Row, out: &mut Vec<Decision>) {
        let ts = row.ts;
        if row.get(RecordType::Status, "state").as_str() == Some("offline") {
            state.offline.insert(a.id, ts);
            if self.config.silence.grace_s == 0 {
                self.silence(state, ts, out);
            }
            return;
        }
        // "Online" comes from the device itself: it is heard from.
        self.heard_from(state, a, ts, out);
    }

    /// A message from the device at `ts`: it is not silent.
    fn heard_from(&self, state: &mut State, a: &Asset, ts: Timestamp, out: &mut Vec<Decision>) {
        state.offline.remove(&a.id);
        let seen = state.last_seen.entry(a.id).or_insert(ts);
        *seen = (*seen).max(ts);
        let check = Check {
            kind: silence_kind(a.kind),
            faulty: false,
            ts,
            on_delay_s: 0,
            off_delay_s: 0,
            reason: String::new,
        };
        self.update(state, a, check, out);
    }

    /// The passing of time: silence, deferred and held outages.
    pub fn tick(&self, state: &mut State, now: Timestamp, out: &mut Vec<Decision>) {
        self.silence(state, now, out);
        self.release_held(state, now, out);
        self.open_deferred(state, now, out);
    }

    /// Raises silence outages for devices not heard from for too long as of `now`, and for
    /// devices offline by their own word for longer than the grace. Cabinets go first, so
    /// that their lamps' silences are explained by them.
    fn silence(&self, state: &mut State, now: Timestamp, out: &mut Vec<Decision>) {
        let s = self.config.silence;
        let mut silent = Vec::new();
        for (&id, &seen) in &state.last_seen {
            let Some(a) = self.assets.get(&id) else {
                continue;
            };
            let interval = match a.kind {
                Kind::Light => s.light_interval_s,
                Kind::Cabinet => s.cabinet_interval_s,
                Kind::Meter => s.meter_interval_s,
                Kind::Vehicle => s.vehicle_interval_s,
            };
            let limit = (interval as f64 * s.intervals * 1e6) as i64 + s.grace_s * 1_000_000;
            // Already raised: nothing to do, however long the silence lasts.
            if now.micros() - seen.micros() > limit && !state.is_active((id, silence_kind(a.kind)))
            {
                silent.push((a.kind != Kind::Cabinet, id, format!("silent since {seen}")));
            }
        }
        for (&id, &since) in &state.offline {
            let Some(a) = self.assets.get(&id) else {
                continue;
            };
            let waited = now.micros() - since.micros() >= s.grace_s * 1_000_000;
            if waited && !state.is_active((id, silence_kind(a.kind))) {
                let why = format!("offline by its own word since {since}");
                silent.push((a.kind != Kind::Cabinet, id, why));
            }
        }
        silent.sort();
        silent.dedup_by_key(|s| s.1);
        for (_, id, reason) in silent {
            let a = &self.assets[&id];
            let check = Check {
                kind: silence_kind(a.kind),
                faulty: true,
                ts: now,
                on_delay_s: 0,
                off_delay_s: 0,
                reason: || reason,
            };
            self.update(state, a, check, out);
        }
    }

    /// Chattering outages held open resolve once their alarm has been quiet for the window.
    fn release_held(&self, state: &mut State, now: Timestamp, out: &mut Vec<Decision>) {
        let window = self.config.chattering.window_s;
        let mut quiet: Vec<Key> = state
            .held
            .iter()
            .filter(|k| !state.is_active(**k))
            .filter(|k| {
                state
                    .raises
                    .get(k)
                    .and_then(|r| r.back())
                    .is_none_or(|last| now.micros() - last.micros() >= window * 1_000_000)
            })
            .copied()
            .collect();
        quiet.sort();
        for key in quiet {
            state.held.remove(&key);
            state.raises.remove(&key);
            if state.open.remove(&key) {
                out.push(Decision::Resolve {
                    asset: key.0,
                    kind: key.1,
                    at: now,
                });
            }
        }
    }

    /// Opens what was raised inside a maintenance window, once it is over, if still faulty.
    fn open_deferred(&self, state: &mut State, now: Timestamp, out: &mut Vec<Decision>) {
        if state.deferred.is_empty() {
            return;
        }
        let mut due: Vec<Key> = state
            .deferred
            .iter()
            .filter(|(id, _)| !self.in_maintenance(*id, now))
            .copied()
            .collect();
        due.sort();
        for key in due {
            state.deferred.remove(&key);
            let Some(a) = self.assets.get(&key.0) else {
                continue;
            };
            if state.is_active(key) && !self.suppressed(state, a, key.1) {
                let reason = format!(
                    "still faulty after the maintenance window ({})",
                    key.1.as_str()
                );
                self.open(state, key, now, reason, out);
            }
        }
    }

    fn in_maintenance(&self, asset: i32, ts: Timestamp) -> bool {
        self.maintenance
            .iter()
            .any(|w| w.from <= ts && ts < w.until && w.assets.contains(&asset))
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
        match condition.observe(check.faulty, ts, check.on_delay_s, check.off_delay_s) {
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
            return;
        }
        if state.open.contains(&key) {
            if state.held.contains(&key) {
                out.push(Decision::Recur {
                    asset: a.id,
                    kind,
                    at: ts,
                    reason,
                });
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
        if state.open.insert(key) {
            out.push(Decision::Open {
                asset: key.0,
                kind: key.1,
                at,
                reason,
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
        if state.open.contains(&key) && !state.held.contains(&key) {
            let recent = state.raises.get(&key).map_or(0, |r| r.len());
            if recent >= self.config.chattering.max_raises as usize {
                state.held.insert(key);
                out.push(Decision::Chattering {
                    asset: a.id,
                    kind,
                    at: ts,
                });
            } else {
                state.open.remove(&key);
                out.push(Decision::Resolve {
                    asset: a.id,
                    kind,
                    at: ts,
                });
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
    fn suppressed(&self, state: &State, a: &Asset, kind: OutageKind) -> bool {
        if a.kind == Kind::Cabinet {
            return kind == OutageKind::DeviceOffline
                && state.open.contains(&(a.id, OutageKind::CabinetSupplyLoss));
        }
        let Some(c) = a.cabinet.filter(|_| a.kind == Kind::Light) else {
            return false;
        };
        (kind.explained_by_supply_loss()
            && state.open.contains(&(c, OutageKind::CabinetSupplyLoss)))
            || (kind == OutageKind::DeviceOffline
                && state.open.contains(&(c, OutageKind::DeviceOffline)))
    }

    /// What its lamps showed while the cabinet was down is explained by it: their lamp
    /// conditions start over, and a lamp still failing raises its own outage from its next
    /// readings (or, for silence, at the next tick).
    ///
    /// A lamp that said "offline" with its cabinet is not taken at its word afterwards: it
    /// must be heard from within its own silence window from the cabinet's return, or it
    /// is found silent then (so the order in which a city's "online" messages come back
    /// after a power cut raises nothing).
    fn after_cabinet_back(&self, state: &mut State, cabinet: &Asset, ts: Timestamp) {
        state.dark.remove(&cabinet.id);
        for lamp in self.lamps_of.get(&cabinet.id).into_iter().flatten() {
            if state.offline.remove(lamp).is_some() {
                let seen = state.last_seen.entry(*lamp).or_insert(ts);
                *seen = (*seen).max(ts);
            }
        }
        let own_silence = (cabinet.id, OutageKind::DeviceOffline);
        if !state.open.contains(&own_silence) {
            state.conditions.remove(&own_silence);
        }
        for lamp in self.lamps_of.get(&cabinet.id).into_iter().flatten() {
            for kind in [
                OutageKind::LampFailure,
                OutageKind::VoltageOutOfRange,
                OutageKind::DeviceOffline,
                OutageKind::LampCycling,
            ] {
                if !state.open.contains(&(*lamp, kind)) {
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
}

pub(crate) fn silence_kind(kind: Kind) -> OutageKind {
    match kind {
        Kind::Light | Kind::Cabinet => OutageKind::DeviceOffline,
        Kind::Meter => OutageKind::MeterSilent,
        Kind::Vehicle => OutageKind::VehicleSilent,
    }
}

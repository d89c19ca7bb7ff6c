//! The engine: committed readings (and the passing of time) in, outage decisions out.
//!
//! It does no IO and never reads the clock: a reading carries its own time, and
//! [`Engine::tick`] is told "now". All it remembers lives in [`State`], which the driver
//! owns (and can rebuild from the database after a restart).

use std::collections::{HashMap, HashSet};

use model::{astro, Kind, RecordType, Row, Timestamp};

use crate::condition::{Condition, Transition};
use crate::config::RulesConfig;

/// What the engine knows of a device from the inventory.
#[derive(Debug, Clone, PartialEq)]
pub struct Asset {
    pub id: i32,
    pub kind: Kind,
    /// The cabinet feeding a lamp (its device id).
    pub cabinet: Option<i32>,
    pub rated_power_w: Option<f64>,
    pub lon: f64,
    pub lat: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutageKind {
    LampFailure,
    DayBurner,
    VoltageOutOfRange,
    DeviceOffline,
    CabinetSupplyLoss,
    Tamper,
    ReverseFlow,
    MeterSilent,
    VehicleSilent,
}

impl OutageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutageKind::LampFailure => "lamp_failure",
            OutageKind::DayBurner => "day_burner",
            OutageKind::VoltageOutOfRange => "voltage_out_of_range",
            OutageKind::DeviceOffline => "device_offline",
            OutageKind::CabinetSupplyLoss => "cabinet_supply_loss",
            OutageKind::Tamper => "tamper",
            OutageKind::ReverseFlow => "reverse_flow",
            OutageKind::MeterSilent => "meter_silent",
            OutageKind::VehicleSilent => "vehicle_silent",
        }
    }

    pub const ALL: [OutageKind; 9] = [
        OutageKind::LampFailure,
        OutageKind::DayBurner,
        OutageKind::VoltageOutOfRange,
        OutageKind::DeviceOffline,
        OutageKind::CabinetSupplyLoss,
        OutageKind::Tamper,
        OutageKind::ReverseFlow,
        OutageKind::MeterSilent,
        OutageKind::VehicleSilent,
    ];

    pub fn parse(s: &str) -> Option<OutageKind> {
        OutageKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Lamp outages that a cabinet's supply loss explains (and so suppresses).
    fn explained_by_supply_loss(self) -> bool {
        matches!(
            self,
            OutageKind::LampFailure | OutageKind::VoltageOutOfRange | OutageKind::DeviceOffline
        )
    }
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
    Resolve {
        asset: i32,
        kind: OutageKind,
        at: Timestamp,
    },
}

/// Everything the engine remembers between readings.
#[derive(Debug, Default, Clone)]
pub struct State {
    conditions: HashMap<(i32, OutageKind), Condition>,
    open: HashSet<(i32, OutageKind)>,
    last_seen: HashMap<i32, Timestamp>,
    /// Civil dawn and dusk per (place, solar day); lamps share their cabinet's.
    twilight: HashMap<(i32, i64), (Option<Timestamp>, Option<Timestamp>)>,
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
}

pub struct Engine {
    config: RulesConfig,
    assets: HashMap<i32, Asset>,
    /// Lamps per cabinet id.
    lamps_of: HashMap<i32, Vec<i32>>,
}

impl Engine {
    pub fn new(config: RulesConfig, assets: Vec<Asset>) -> Engine {
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
        }
    }

    pub fn config(&self) -> &RulesConfig {
        &self.config
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
        if record != RecordType::Status {
            let seen = state.last_seen.entry(asset).or_insert(ts);
            *seen = (*seen).max(ts);
            let silent = silence_kind(a.kind);
            self.update(
                state,
                a,
                silent,
                false,
                ts,
                0,
                0,
                || "reporting again".into(),
                out,
            );
        }
        let num = |f: &str| row.get(record, f).as_f64();
        let flag = |f: &str| row.get(record, f).as_bool();
        match record {
            RecordType::Light => self.lamp(state, a, row, out),
            RecordType::Cabinet => {
                if let Some(supply) = flag("supply") {
                    let d = self.config.cabinet_supply_loss;
                    self.update(
                        state,
                        a,
                        OutageKind::CabinetSupplyLoss,
                        !supply,
                        ts,
                        d.on_delay_s,
                        d.off_delay_s,
                        || "cabinet reports mains supply lost".into(),
                        out,
                    );
                }
                if let Some(v) = num("voltage_v").filter(|v| *v > 0.0) {
                    self.voltage(state, a, v, ts, out);
                }
            }
            RecordType::Meter => {
                let d = self.config.meter_flags;
                if let Some(t) = flag("tamper") {
                    self.update(
                        state,
                        a,
                        OutageKind::Tamper,
                        t,
                        ts,
                        d.on_delay_s,
                        d.off_delay_s,
                        || "meter reports tampering".into(),
                        out,
                    );
                }
                if let Some(r) = flag("reverse_flow") {
                    self.update(
                        state,
                        a,
                        OutageKind::ReverseFlow,
                        r,
                        ts,
                        d.on_delay_s,
                        d.off_delay_s,
                        || "meter reports reverse flow".into(),
                        out,
                    );
                }
            }
            RecordType::Status => {
                let offline = row.get(record, "state").as_str() == Some("offline");
                let kind = silence_kind(a.kind);
                self.update(
                    state,
                    a,
                    kind,
                    offline,
                    ts,
                    0,
                    0,
                    || "the device reported itself offline".into(),
                    out,
                );
            }
            RecordType::Vehicle | RecordType::Event | RecordType::CmdAck => {}
        }
    }

    /// Raises silence outages for devices not heard from for too long as of `now`.
    pub fn tick(&self, state: &mut State, now: Timestamp, out: &mut Vec<Decision>) {
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
            let limit = (interval as f64 * s.intervals * 1e6) as i64;
            // Already raised: nothing to do, however long the silence lasts.
            if now.micros() - seen.micros() > limit
                && !state.open.contains(&(id, silence_kind(a.kind)))
            {
                silent.push((a.clone(), seen));
            }
        }
        silent.sort_by_key(|(a, _)| a.id);
        for (a, seen) in silent {
            let reason = || format!("silent since {seen}");
            self.update(
                state,
                &a,
                silence_kind(a.kind),
                true,
                now,
                0,
                0,
                reason,
                out,
            );
        }
    }

    fn lamp(&self, state: &mut State, a: &Asset, row: &Row, out: &mut Vec<Decision>) {
        let r = RecordType::Light;
        let ts = row.ts;
        let power = row.get(r, "power_w").as_f64();
        let on = row.get(r, "on").as_bool();
        let fault = row.get(r, "fault").as_str();
        let (dawn, dusk) = self.twilight(state, a, ts);
        let dark = match (dawn, dusk) {
            (Some(dawn), Some(dusk)) => ts < dawn || ts >= dusk,
            _ => astro::is_dark(a.lon, a.lat, ts),
        };
        let rated = a.rated_power_w.filter(|w| *w > 0.0);
        // Lamp failure: the device says so, or it should burn and draws too little. By day
        // a healthy and a failed lamp look alike, so daylight readings without a fault say
        // nothing either way.
        let lf = self.config.lamp_failure;
        let failing = match (fault, power, rated) {
            (Some(_), _, _) => Some(true),
            (None, Some(p), Some(w)) if dark => Some(p < lf.min_power_ratio * w),
            _ => None,
        };
        let reason = || match (fault, power, rated) {
            (Some(f), _, _) => format!("the lamp reports {f}"),
            (_, Some(p), Some(w)) => {
                format!("draws {p:.1} W of {w:.0} W rated while it should burn")
            }
            _ => "the lamp does not burn while it should".into(),
        };
        if let Some(faulty) = failing {
            self.update(
                state,
                a,
                OutageKind::LampFailure,
                faulty,
                ts,
                lf.on_delay_s,
                lf.off_delay_s,
                reason,
                out,
            );
        }
        // Day burner: burning in daylight, well clear of dusk and dawn.
        let db = self.config.day_burner;
        if let (Some(dawn), Some(dusk)) = (dawn, dusk) {
            let daylight = ts > dawn.add_secs(db.margin_s) && ts < dusk.add_secs(-db.margin_s);
            if daylight {
                let burning = on == Some(true)
                    && match (power, rated) {
                        (Some(p), Some(w)) => p > db.min_power_ratio * w,
                        _ => true,
                    };
                self.update(
                    state,
                    a,
                    OutageKind::DayBurner,
                    burning,
                    ts,
                    db.on_delay_s,
                    db.off_delay_s,
                    || "burning in daylight".into(),
                    out,
                );
            }
        }
        if let Some(v) = row.get(r, "voltage_v").as_f64().filter(|v| *v > 0.0) {
            self.voltage(state, a, v, ts, out);
        }
    }

    fn voltage(
        &self,
        state: &mut State,
        a: &Asset,
        v: f64,
        ts: Timestamp,
        out: &mut Vec<Decision>,
    ) {
        let c = self.config.voltage;
        let key = (a.id, OutageKind::VoltageOutOfRange);
        let active = state.conditions.get(&key).is_some_and(|c| c.is_active());
        // Hysteresis: once raised, the voltage must come well inside the band to clear.
        let (lo, hi) = if active {
            (c.min_v + c.hysteresis_v, c.max_v - c.hysteresis_v)
        } else {
            (c.min_v, c.max_v)
        };
        let faulty = !(lo..=hi).contains(&v);
        let reason = || format!("{v:.1} V outside {:.0}-{:.0} V", c.min_v, c.max_v);
        self.update(
            state,
            a,
            OutageKind::VoltageOutOfRange,
            faulty,
            ts,
            c.on_delay_s,
            c.off_delay_s,
            reason,
            out,
        );
    }

    fn twilight(
        &self,
        state: &mut State,
        a: &Asset,
        ts: Timestamp,
    ) -> (Option<Timestamp>, Option<Timestamp>) {
        let place = a.cabinet.unwrap_or(a.id);
        // The solar day at the place's longitude, as `astro` counts it.
        let day = (ts.micros() + (a.lon / 15.0 * 3.6e9) as i64).div_euclid(86_400_000_000);
        *state
            .twilight
            .entry((place, day))
            .or_insert_with(|| astro::civil_twilight(a.lon, a.lat, ts))
    }

    /// Feeds a condition and turns its transitions into decisions, minding suppression.
    #[allow(clippy::too_many_arguments)]
    fn update(
        &self,
        state: &mut State,
        a: &Asset,
        kind: OutageKind,
        faulty: bool,
        ts: Timestamp,
        on_delay_s: i64,
        off_delay_s: i64,
        reason: impl FnOnce() -> String,
        out: &mut Vec<Decision>,
    ) {
        // Most readings are healthy: no entry is made for a condition that stays normal.
        if !faulty && !state.conditions.contains_key(&(a.id, kind)) {
            return;
        }
        let condition = state.conditions.entry((a.id, kind)).or_default();
        match condition.observe(faulty, ts, on_delay_s, off_delay_s) {
            Some(Transition::Raised)
                if !self.suppressed(state, a, kind) && state.open.insert((a.id, kind)) =>
            {
                out.push(Decision::Open {
                    asset: a.id,
                    kind,
                    at: ts,
                    reason: reason(),
                });
            }
            Some(Transition::Cleared) => {
                if state.open.remove(&(a.id, kind)) {
                    out.push(Decision::Resolve {
                        asset: a.id,
                        kind,
                        at: ts,
                    });
                }
                if kind == OutageKind::CabinetSupplyLoss {
                    self.after_supply_back(state, a);
                }
            }
            Some(Transition::Raised) | None => {}
        }
    }

    /// A lamp fault during its cabinet's supply loss is the cabinet's: one outage, not
    /// eighty. When the supply is back, lamps still failing get outages of their own.
    fn suppressed(&self, state: &State, a: &Asset, kind: OutageKind) -> bool {
        kind.explained_by_supply_loss()
            && a.kind == Kind::Light
            && a.cabinet
                .is_some_and(|c| state.open.contains(&(c, OutageKind::CabinetSupplyLoss)))
    }

    fn after_supply_back(&self, state: &mut State, cabinet: &Asset) {
        // What its lamps showed while the supply was gone is explained by it: their lamp
        // conditions start over, and a lamp still failing raises its own outage from its
        // next readings.
        for lamp in self.lamps_of.get(&cabinet.id).into_iter().flatten() {
            for kind in [
                OutageKind::LampFailure,
                OutageKind::VoltageOutOfRange,
                OutageKind::DeviceOffline,
            ] {
                if !state.open.contains(&(*lamp, kind)) {
                    state.conditions.remove(&(*lamp, kind));
                }
            }
        }
    }
}

fn silence_kind(kind: Kind) -> OutageKind {
    match kind {
        Kind::Light | Kind::Cabinet => OutageKind::DeviceOffline,
        Kind::Meter => OutageKind::MeterSilent,
        Kind::Vehicle => OutageKind::VehicleSilent,
    }
}

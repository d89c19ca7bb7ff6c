//! Lighting rules: lamp failure, day burner, lamp cycling, voltage, and a cabinet's supply
//! loss, reported or inferred from its lamps going dark together.

use model::fields::{cabinet, light};
use model::{astro, Row, Timestamp};

use crate::engine::{Asset, Check, Decision, Engine, OutageKind};
use crate::schedule::Expected;
use crate::state::State;

impl Engine {
    pub(crate) fn lamp(&self, state: &mut State, a: &Asset, row: &Row, out: &mut Vec<Decision>) {
        let ts = row.ts;
        let power = row.cell(light::POWER_W).as_f64();
        let on = row.cell(light::ON).as_bool();
        let dim = row.cell(light::DIM).as_f64();
        let volts = row.cell(light::VOLTAGE_V).as_f64();
        let fault = row.cell(light::FAULT).as_str();
        let (dawn, dusk) = self.twilight(state, a, ts);
        let dark = match (dawn, dusk) {
            (Some(dawn), Some(dusk)) => ts < dawn || ts >= dusk,
            _ => astro::is_dark(a.lon, a.lat, ts),
        };
        let expected = self.expected(state, a, ts, dawn, dusk, dark);
        let rated = a.rated_power_w.filter(|w| *w > 0.0);
        // The level it should burn at: its own reported dim when it says it burns (a
        // controller may dim by itself), else what it was told.
        let level = match (on, dim) {
            (Some(true), Some(d)) if d > 0.0 => d,
            _ => expected.dim,
        };
        let lf = self.config.lamp_failure;
        let low = |p: f64, w: f64| p < lf.min_power_ratio * w * level / 100.0;
        // Photocells and controllers' clocks switch lamps minutes either side of civil
        // twilight: close to it, a lamp's darkness is no evidence of anything.
        let near_twilight = |margin_s: i64| {
            [dawn, dusk]
                .into_iter()
                .flatten()
                .any(|t| (ts.micros() - t.micros()).abs() < margin_s * 1_000_000)
        };
        // Lamp failure: the device says so, or it should burn and draws too little. When it
        // should not burn (or close to twilight), a healthy and a failed lamp look alike:
        // such readings without a fault say nothing either way.
        let judged = expected.burns() && !near_twilight(lf.twilight_margin_s);
        let failing = match (fault, power, rated) {
            (Some(_), _, _) => Some(true),
            (None, Some(p), Some(w)) if judged => Some(low(p, w)),
            // Without a rating (or a power reading) its own word is all there is: burning
            // when it should, with no fault, it is well.
            (None, p, _) if judged && on == Some(true) && p.is_none_or(|p| p > 0.0) => Some(false),
            _ => None,
        };
        if failing.is_none() && !expected.burns() {
            // A failure seen before a stretch when the lamp should not burn (a morning's
            // last dark reading) is not confirmed by the next evening's first one.
            state.forget_pending((a.id, OutageKind::LampFailure));
        }
        if let Some(faulty) = failing {
            let reason = || match (fault, power, rated) {
                (Some(f), _, _) => format!("the lamp reports {f}"),
                (_, Some(p), Some(w)) => {
                    format!("draws {p:.1} W of {w:.0} W rated while it should burn at {level:.0} %")
                }
                _ => "the lamp does not burn while it should".into(),
            };
            let check = Check {
                kind: OutageKind::LampFailure,
                faulty,
                ts,
                on_delay_s: lf.on_delay_s,
                off_delay_s: lf.off_delay_s,
                reason,
            };
            self.update(state, a, check, out);
        }
        // Dark while it should burn (no power, or no voltage), clear of twilight: evidence
        // for its cabinet.
        if let Some(c) = a.cabinet {
            let margin = self.config.cabinet_supply_loss.twilight_margin_s;
            let is_dark = expected.burns()
                && !near_twilight(margin)
                && (volts == Some(0.0)
                    || matches!((power, rated), (Some(p), Some(w)) if low(p, w)));
            if power.is_some() || volts.is_some() {
                self.lamp_dark(state, c, a.id, is_dark, ts, out);
            }
        }
        self.day_burner(state, a, ts, (dawn, dusk), expected, on, power, out);
        if let Some(on) = on {
            self.cycling(state, a, on, expected.burns(), ts, out);
        }
        if let Some(v) = volts.filter(|v| *v > 0.0) {
            self.voltage(state, a, v, ts, out);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn day_burner(
        &self,
        state: &mut State,
        a: &Asset,
        ts: Timestamp,
        (dawn, dusk): (Option<Timestamp>, Option<Timestamp>),
        expected: Expected,
        on: Option<bool>,
        power: Option<f64>,
        out: &mut Vec<Decision>,
    ) {
        // Burning in daylight, well clear of dusk and dawn, when nothing said it should.
        let db = self.config.day_burner;
        let (Some(dawn), Some(dusk)) = (dawn, dusk) else {
            return;
        };
        let daylight = ts > dawn.add_secs(db.margin_s) && ts < dusk.add_secs(-db.margin_s);
        if !daylight {
            return;
        }
        let burning = on == Some(true)
            && match (power, a.rated_power_w.filter(|w| *w > 0.0)) {
                (Some(p), Some(w)) => p > db.min_power_ratio * w,
                _ => true,
            };
        let check = Check {
            kind: OutageKind::DayBurner,
            faulty: burning && !expected.burns(),
            ts,
            on_delay_s: db.on_delay_s,
            off_delay_s: db.off_delay_s,
            reason: || "burning in daylight".into(),
        };
        self.update(state, a, check, out);
    }

    /// Lamp cycling: the relay changes again and again (a lamp at the end of its life, a
    /// failing photocell or controller).
    ///
    /// A change is the lamp obeying when it switches to what it should now do and what it
    /// should do changed since its previous change: dusk and dawn, a schedule's steps, an
    /// operator's command and its expiry. Those are expected behaviour and never count.
    /// Raised at the change that makes `min_switches` unexplained ones within `window_s`;
    /// once raised, every report without an unexplained change is normal, so it clears
    /// `off_delay_s` after the first steady report unless the relay changes again.
    fn cycling(
        &self,
        state: &mut State,
        a: &Asset,
        on: bool,
        should_burn: bool,
        ts: Timestamp,
        out: &mut Vec<Decision>,
    ) {
        let c = self.config.lamp_cycling;
        let lamp = state.lamps.entry(a.id).or_default();
        let mut switched = false;
        if lamp.on.is_some_and(|was| was != on) {
            let obeys = on == should_burn && lamp.should_at_switch != Some(should_burn);
            lamp.should_at_switch = Some(should_burn);
            if !obeys {
                lamp.switches.push_back(ts);
                switched = true;
            }
        }
        lamp.on = Some(on);
        let window = c.window_s * 1_000_000;
        while lamp
            .switches
            .front()
            .is_some_and(|t| ts.micros() - t.micros() > window)
        {
            lamp.switches.pop_front();
        }
        let switches = lamp.switches.len();
        let active = state.is_active((a.id, OutageKind::LampCycling));
        if !switched && !active {
            return;
        }
        let check = Check {
            kind: OutageKind::LampCycling,
            faulty: if active {
                switched
            } else {
                switches >= c.min_switches as usize
            },
            ts,
            on_delay_s: 0,
            off_delay_s: c.off_delay_s,
            reason: || {
                format!(
                    "the relay switched {switches} times within {} min while nothing told it to",
                    c.window_s / 60
                )
            },
        };
        self.update(state, a, check, out);
    }

    pub(crate) fn cabinet(&self, state: &mut State, a: &Asset, row: &Row, out: &mut Vec<Decision>) {
        let ts = row.ts;
        if let Some(supply) = row.cell(cabinet::SUPPLY).as_bool() {
            if supply && state.supply_lost.remove(&a.id) {
                // Back: darkness seen while it was gone proves nothing any more.
                state.dark.remove(&a.id);
            }
            if !supply {
                state.supply_lost.insert(a.id);
            }
            self.supply(state, a, ts, out);
        }
        if let Some(v) = row.cell(cabinet::VOLTAGE_V).as_f64().filter(|v| *v > 0.0) {
            self.voltage(state, a, v, ts, out);
        }
    }

    /// The share of a cabinet's lamps seen dark while they should burn.
    fn dark_share(&self, state: &State, cabinet: i32) -> Option<(usize, usize)> {
        let lamps = self.lamps_of.get(&cabinet)?.len();
        let dark = state.dark.get(&cabinet).map_or(0, |d| d.len());
        (lamps >= self.config.cabinet_supply_loss.min_lamps).then_some((dark, lamps))
    }

    fn inferred_loss(&self, state: &State, cabinet: i32) -> bool {
        let dark = state.dark.get(&cabinet).map_or(0, |d| d.len());
        self.most_dark(cabinet, dark)
    }

    /// Whether `dark` of the cabinet's lamps are most of them (for cabinets big enough).
    fn most_dark(&self, cabinet: i32, dark: usize) -> bool {
        let c = self.config.cabinet_supply_loss;
        self.lamps_of.get(&cabinet).is_some_and(|lamps| {
            lamps.len() >= c.min_lamps && dark as f64 >= c.dark_share * lamps.len() as f64
        })
    }

    /// Every lamp reading passes here: most change nothing, and cost a set lookup.
    fn lamp_dark(
        &self,
        state: &mut State,
        cabinet: i32,
        lamp: i32,
        dark: bool,
        ts: Timestamp,
        out: &mut Vec<Decision>,
    ) {
        let set = state.dark.entry(cabinet).or_default();
        let changed = if dark {
            set.insert(lamp)
        } else {
            set.remove(&lamp)
        };
        if !changed {
            return;
        }
        let now = set.len();
        let before = if dark { now - 1 } else { now + 1 };
        if self.most_dark(cabinet, before) == self.most_dark(cabinet, now) {
            return;
        }
        if let Some(c) = self.assets.get(&cabinet) {
            self.supply(state, c, ts, out);
        }
    }

    /// A cabinet's supply is lost when it says so or when most of its lamps are dark.
    fn supply(&self, state: &mut State, cabinet: &Asset, ts: Timestamp, out: &mut Vec<Decision>) {
        let d = self.config.cabinet_supply_loss;
        let reported = state.supply_lost.contains(&cabinet.id);
        let faulty = reported || self.inferred_loss(state, cabinet.id);
        let reason = || match self.dark_share(state, cabinet.id) {
            Some((dark, lamps)) if !reported => {
                format!("{dark} of its {lamps} lamps went dark together")
            }
            _ => "the cabinet reports its mains supply lost".into(),
        };
        let reason = reason();
        let check = Check {
            kind: OutageKind::CabinetSupplyLoss,
            faulty,
            ts,
            on_delay_s: d.on_delay_s,
            off_delay_s: d.off_delay_s,
            reason: || reason,
        };
        self.update(state, cabinet, check, out);
    }

    pub(crate) fn voltage(
        &self,
        state: &mut State,
        a: &Asset,
        v: f64,
        ts: Timestamp,
        out: &mut Vec<Decision>,
    ) {
        let c = self.config.voltage;
        // Hysteresis: once raised, the voltage must come well inside the band to clear.
        let (lo, hi) = if state.is_active((a.id, OutageKind::VoltageOutOfRange)) {
            (c.min_v + c.hysteresis_v, c.max_v - c.hysteresis_v)
        } else {
            (c.min_v, c.max_v)
        };
        let check = Check {
            kind: OutageKind::VoltageOutOfRange,
            faulty: !(lo..=hi).contains(&v),
            ts,
            on_delay_s: c.on_delay_s,
            off_delay_s: c.off_delay_s,
            reason: || format!("{v:.1} V outside {:.0}-{:.0} V", c.min_v, c.max_v),
        };
        self.update(state, a, check, out);
    }

    /// What the lamp should do at `ts`: a command in force, else its schedule, else the
    /// astronomical clock (burn from civil dusk to civil dawn at full output).
    fn expected(
        &self,
        state: &mut State,
        a: &Asset,
        ts: Timestamp,
        dawn: Option<Timestamp>,
        dusk: Option<Timestamp>,
        dark: bool,
    ) -> Expected {
        if let Some(o) = state.overrides.get(&a.id) {
            if o.until.is_none_or(|u| ts < u) {
                return o.expected;
            }
            state.overrides.remove(&a.id);
        }
        match state.schedules.get(&a.id) {
            Some(s) => s.at(ts, a.lon, dawn, dusk, dark),
            None if dark => Expected::FULL,
            None => Expected::OFF,
        }
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
}

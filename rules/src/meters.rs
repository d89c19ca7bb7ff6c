//! Meter rules: leaks (water that never stops flowing through the night), tampering and
//! reverse flow.

use model::fields::meter;
use model::{Row, Timestamp};

use crate::engine::{Asset, Check, Decision, Engine, OutageKind};
use crate::state::{Night, State};

impl Engine {
    pub(crate) fn meter(&self, state: &mut State, a: &Asset, row: &Row, out: &mut Vec<Decision>) {
        let ts = row.ts;
        let d = self.config.meter_flags;
        for (field, kind, reason) in [
            (
                meter::TAMPER,
                OutageKind::Tamper,
                "the meter reports tampering",
            ),
            (
                meter::REVERSE_FLOW,
                OutageKind::ReverseFlow,
                "the meter reports reverse flow",
            ),
        ] {
            if let Some(flag) = row.cell(field).as_bool() {
                let check = Check {
                    kind,
                    faulty: flag,
                    ts,
                    on_delay_s: d.on_delay_s,
                    off_delay_s: d.off_delay_s,
                    reason: || reason.into(),
                };
                self.update(state, a, check, out);
            }
        }
        if let Some(flow) = row.cell(meter::FLOW_M3H).as_f64() {
            self.leak(state, a, flow, ts, out);
        }
    }

    /// A leak shows at night: household water drops to zero for a while, a leak does not.
    /// The verdict on a night is given at the first reading after its window.
    fn leak(
        &self,
        state: &mut State,
        a: &Asset,
        flow: f64,
        ts: Timestamp,
        out: &mut Vec<Decision>,
    ) {
        let c = self.config.leak;
        let day = 86_400.0;
        let length = (c.night_end_h - c.night_start_h).rem_euclid(24.0) * 3600.0;
        // Seconds of local solar time since the start of a night window.
        let since_start = ts.micros() as f64 / 1e6 + a.lon * 240.0 - c.night_start_h * 3600.0;
        let night = (since_start / day).floor() as i64;
        let inside = since_start.rem_euclid(day) < length;
        let current = state.nights.get(&a.id).copied();
        if inside {
            let mut n = match current {
                Some(n) if n.night == night => n,
                _ => Night {
                    night,
                    readings: 0,
                    min_flow: f64::INFINITY,
                    judged: false,
                },
            };
            n.readings += 1;
            n.min_flow = n.min_flow.min(flow);
            state.nights.insert(a.id, n);
            return;
        }
        let Some(mut n) = current.filter(|n| n.night == night && !n.judged) else {
            return;
        };
        n.judged = true;
        state.nights.insert(a.id, n);
        if n.readings < c.min_readings {
            return;
        }
        let min = n.min_flow;
        let check = Check {
            kind: OutageKind::Leak,
            faulty: min > c.min_flow_m3h,
            ts,
            on_delay_s: 0,
            off_delay_s: 0,
            reason: || format!("water never stopped through the night: at least {min:.2} m3/h"),
        };
        self.update(state, a, check, out);
    }
}

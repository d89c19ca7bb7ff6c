//! Detection quality: the outages a hub opened, scored against a scenario's ground truth.
//!
//! Pure: the caller runs the scenario, reads the outages back and says how long each rule
//! may take (`window_s`); this module matches and counts.
//!
//! - **What is expected.** Each fault of the truth expects one outage of the kind
//!   [`outage_kind`] names on its asset: `driver_failure` is a `lamp_failure`, the other
//!   outage-like kinds are themselves, except that a silence is named after the device
//!   that falls silent: `device_offline` for lamps and cabinets, `meter_silent` for
//!   meters, `vehicle_silent` for vehicles (a `device_offline` fault on a meter expects a
//!   `meter_silent` outage). A city-wide `power_restore` expects the silence of every
//!   cabinet, meter and vehicle; lamps expect nothing (every lamp hangs on a cabinet, whose
//!   outage explains it). Bad traffic is not an outage and is not scored here.
//! - **Matching.** A detected outage matches an unmatched expected one of the same kind on
//!   the same asset (for `bunching`, either vehicle of the pair) when it was opened (in
//!   simulated time) within `[start - 1 s, end + window]`, where `end` is the fault's end
//!   or, for a fault that lasts, the scenario's. Each expected outage matches at most one
//!   detection; detections left over are false positives, expected outages left over are
//!   misses.
//! - **Delay.** A rule cannot know before `start + window` (simulated), so the delay of a
//!   match is how long after that instant, in real seconds, the outage row was written:
//!   `max(0, recorded_wall - wall(start + window))`, with simulated instants turned into
//!   wall instants by the run's [`SimClock`]. The simulated time from the fault's start
//!   to the outage's `opened_at` is kept too, for the table.
//! - **Resolution.** A matched outage whose fault ended must be resolved, and by the end
//!   plus the rule's resolve window (`resolve_s`: the device's next report and the rule's
//!   off-delay), when that instant falls inside the run, with [`RESOLVE_SLACK_REAL_S`] of
//!   real time for the hub to work through what arrived (a detection may be written up to
//!   5 s after its window); one that is not is a late resolution. Chronology is the database's (an outage never resolves before it opens),
//!   but a resolution before the fault even started is counted late too.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use model::{Kind, OutageKind, Timestamp};

use crate::clock::SimClock;
use crate::scenario::{FaultKind, TruthRecord};

/// Real seconds a resolution may come after its resolve window: the hub working through
/// what arrived at once (a whole city reconnecting), which the simulated clock counts at
/// its speed (one real second is 375 simulated at 375x).
pub const RESOLVE_SLACK_REAL_S: f64 = 1.0;

/// One fault of the ground truth, its times resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Truth {
    pub kind: FaultKind,
    /// The asset's id (`*` for the whole city).
    pub asset: String,
    pub start: Timestamp,
    /// `None`: it lasts to the end of the scenario.
    pub end: Option<Timestamp>,
    /// The other vehicle of a bunching pair.
    pub partner: Option<String>,
}

impl Truth {
    /// From a line of ground truth; `None` when its times are not RFC 3339.
    pub fn from_record(r: &TruthRecord) -> Option<Truth> {
        let end = match &r.end {
            Some(e) => Some(Timestamp::from_rfc3339(e)?),
            None => None,
        };
        Some(Truth {
            kind: r.kind,
            asset: r.asset.clone(),
            start: Timestamp::from_rfc3339(&r.start)?,
            end,
            partner: r.partner.clone(),
        })
    }
}

/// An outage the hub opened.
#[derive(Debug, Clone, PartialEq)]
pub struct Detected {
    /// The device's id.
    pub asset: String,
    /// The outage kind (`outages.kind`).
    pub kind: String,
    /// Simulated time of the evidence.
    pub opened_at: Timestamp,
    /// Wall-clock time the outage row was written.
    pub recorded_wall: Timestamp,
    /// Simulated time it was resolved, if it was.
    pub resolved_at: Option<Timestamp>,
}

/// The outage a fault of `kind` on one asset should open; `None` for the city-wide power
/// restore (see [`expected`]) and for bad traffic. Silences are renamed after the device
/// by [`expected`].
pub fn outage_kind(kind: FaultKind) -> Option<&'static str> {
    use FaultKind::*;
    let outage = match kind {
        LampFailure | DriverFailure => OutageKind::LampFailure,
        DayBurner => OutageKind::DayBurner,
        LampCycling => OutageKind::LampCycling,
        VoltageOutOfRange => OutageKind::VoltageOutOfRange,
        CabinetSupplyLoss => OutageKind::CabinetSupplyLoss,
        DeviceOffline | Backlog => OutageKind::DeviceOffline,
        Leak => OutageKind::Leak,
        Tamper => OutageKind::Tamper,
        ReverseFlow => OutageKind::ReverseFlow,
        MeterSilent => OutageKind::MeterSilent,
        VehicleSilent => OutageKind::VehicleSilent,
        OffRoute => OutageKind::OffRoute,
        Bunching => OutageKind::Bunching,
        StoppedTooLong => OutageKind::StoppedTooLong,
        PowerRestore | MalformedJson | WrongTypes | UnknownDevice | Oversize | Duplicates
        | OutOfOrder => return None,
    };
    Some(outage.as_str())
}

/// The silence fault of a device of `kind`.
fn silence_of(kind: Kind) -> FaultKind {
    match kind {
        Kind::Light | Kind::Cabinet => FaultKind::DeviceOffline,
        Kind::Meter => FaultKind::MeterSilent,
        Kind::Vehicle => FaultKind::VehicleSilent,
    }
}

fn is_silence(kind: FaultKind) -> bool {
    matches!(
        kind,
        FaultKind::DeviceOffline
            | FaultKind::MeterSilent
            | FaultKind::VehicleSilent
            | FaultKind::Backlog
    )
}

/// One outage the hub should open.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    /// The fault on this asset (a power restore's share of it on each device).
    pub truth: Truth,
    /// The fault as the scenario named it (`power_restore` for its expansions).
    pub fault: FaultKind,
    pub kind: &'static str,
    /// Simulated seconds after the start by which the rule can know, at the latest.
    pub window_s: f64,
}

/// The outages `truth` should open, on `devices` (id, kind): a power restore expands over
/// them, and a silence takes the name of its device's kind. `window_s` is asked about the
/// fault as it applies to each asset (a power restore's share on a meter is a
/// `meter_silent` fault of that meter).
pub fn expected(
    truth: &[Truth],
    devices: &[(String, Kind)],
    window_s: &dyn Fn(&Truth) -> f64,
) -> Vec<Expected> {
    let kind_of: HashMap<&str, Kind> = devices.iter().map(|(id, k)| (id.as_str(), *k)).collect();
    let mut out = Vec::new();
    let mut push = |mut t: Truth, fault: FaultKind| {
        if is_silence(t.kind) {
            if let Some(k) = kind_of.get(t.asset.as_str()) {
                t.kind = silence_of(*k);
            }
        }
        if let Some(kind) = outage_kind(t.kind) {
            let window_s = window_s(&t);
            out.push(Expected {
                truth: t,
                fault,
                kind,
                window_s,
            });
        }
    };
    for t in truth {
        if t.kind == FaultKind::PowerRestore {
            for (id, kind) in devices.iter().filter(|(_, k)| *k != Kind::Light) {
                let share = Truth {
                    kind: silence_of(*kind),
                    asset: id.clone(),
                    partner: None,
                    ..t.clone()
                };
                push(share, t.kind);
            }
        } else {
            push(t.clone(), t.kind);
        }
    }
    out
}

/// What to score.
pub struct Scoring<'a> {
    pub truth: &'a [Truth],
    pub detected: &'a [Detected],
    /// Faults without an end last until here (simulated).
    pub scenario_end: Timestamp,
    /// The run's clock: simulated instants to wall instants.
    pub clock: SimClock,
    /// Simulated seconds after a fault's start by which its rule can know, at the latest.
    pub window_s: &'a dyn Fn(&Truth) -> f64,
    /// Every device of the city (id, kind): what a power restore expands to.
    pub devices: &'a [(String, Kind)],
    /// Simulated seconds after a fault's end by which its outage must be resolved; `None`
    /// where the rule cannot know (a lamp's failure that ends by day).
    pub resolve_s: &'a dyn Fn(&Truth) -> Option<f64>,
}

/// A detection matched to the outage it was expected as.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub expected: Expected,
    pub detected: Detected,
    /// Real seconds after `start + window` that the row was written (0 if before).
    pub delay_s: f64,
    /// Simulated seconds from the fault's start to `opened_at`.
    pub sim_s: f64,
}

/// Matches, misses and false positives of one run (or of several, [`Score::combine`]d).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Score {
    pub matches: Vec<Match>,
    pub misses: Vec<Expected>,
    pub false_positives: Vec<Detected>,
    /// Matches not resolved by their fault's end plus the resolve window.
    pub late_resolutions: Vec<Match>,
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct KindRow {
    pub kind: String,
    pub expected: usize,
    pub detected: usize,
    pub tp: usize,
    pub fp: usize,
    pub fn_: usize,
    pub precision: f64,
    pub recall: f64,
    /// Real seconds beyond the window; `None` without matches.
    pub delay_p50_s: Option<f64>,
    pub delay_p99_s: Option<f64>,
    /// Median simulated seconds from a fault's start to its outage.
    pub sim_median_s: Option<f64>,
}

/// The figures targets are set on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Totals {
    /// Lowest precision over the kinds that had anything expected or detected (1 if none).
    pub precision_min: f64,
    /// Lowest recall over those kinds (1 if none).
    pub recall_min: f64,
    /// 99th percentile of the delay beyond the window over all matches (0 if none).
    pub delay_p99_s: f64,
    /// Matched outages not resolved in time after their fault ended.
    pub late_resolutions: usize,
}

impl fmt::Display for Totals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RESULT precision_min={:.3} recall_min={:.3} delay_p99_s={:.2} late_resolutions={}",
            self.precision_min, self.recall_min, self.delay_p99_s, self.late_resolutions
        )
    }
}

/// `sim` as a wall-clock instant under `clock`.
pub fn wall_of(clock: &SimClock, sim: Timestamp) -> Timestamp {
    let sim_elapsed_us = (sim.micros() - clock.sim_origin_ms * 1000) as f64;
    Timestamp(clock.wall_origin_ms * 1000 + (sim_elapsed_us / clock.speed) as i64)
}

fn secs_between(from: Timestamp, to: Timestamp) -> f64 {
    (to.micros() - from.micros()) as f64 / 1e6
}

/// `start + s` for fractional simulated seconds.
fn plus(t: Timestamp, s: f64) -> Timestamp {
    Timestamp(t.micros() + (s * 1e6) as i64)
}

impl Scoring<'_> {
    pub fn score(&self) -> Score {
        let expected = expected(self.truth, self.devices, self.window_s);
        let mut taken = vec![false; expected.len()];
        let mut by_key: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
        for (i, e) in expected.iter().enumerate() {
            by_key.entry((e.kind, &e.truth.asset)).or_default().push(i);
            if let Some(p) = &e.truth.partner {
                by_key.entry((e.kind, p)).or_default().push(i);
            }
        }
        let mut detected: Vec<&Detected> = self.detected.iter().collect();
        detected.sort_by_key(|d| (d.opened_at, d.recorded_wall));
        let mut score = Score::default();
        for d in detected {
            let fits = |e: &Expected| {
                let t = &e.truth;
                let last = plus(t.end.unwrap_or(self.scenario_end), e.window_s);
                t.start.add_secs(-1) <= d.opened_at && d.opened_at <= last
            };
            // The earliest fault it fits, so a later one on the same asset stays open.
            let found = by_key
                .get(&(d.kind.as_str(), d.asset.as_str()))
                .into_iter()
                .flatten()
                .copied()
                .filter(|&i| !taken[i] && fits(&expected[i]))
                .min_by_key(|&i| (expected[i].truth.start, i));
            match found {
                Some(i) => {
                    taken[i] = true;
                    let e = &expected[i];
                    let due = wall_of(&self.clock, plus(e.truth.start, e.window_s));
                    score.matches.push(Match {
                        expected: e.clone(),
                        detected: d.clone(),
                        delay_s: secs_between(due, d.recorded_wall).max(0.0),
                        sim_s: secs_between(e.truth.start, d.opened_at),
                    });
                }
                None => score.false_positives.push(d.clone()),
            }
        }
        score.misses = expected
            .into_iter()
            .zip(taken)
            .filter(|(_, t)| !t)
            .map(|(e, _)| e)
            .collect();
        score.late_resolutions = score
            .matches
            .iter()
            .filter(|m| {
                let t = &m.expected.truth;
                let (Some(end), Some(w)) = (t.end, (self.resolve_s)(t)) else {
                    return false;
                };
                let due = plus(end, w);
                let latest = plus(end, w + RESOLVE_SLACK_REAL_S * self.clock.speed);
                due <= self.scenario_end
                    && !m
                        .detected
                        .resolved_at
                        .is_some_and(|r| t.start <= r && r <= latest)
            })
            .cloned()
            .collect();
        score
    }
}

/// The `q` quantile of `values` by nearest rank; `None` when empty.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = (q * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        1.0
    } else {
        num as f64 / den as f64
    }
}

impl Score {
    /// Several runs as one.
    pub fn combine(scores: impl IntoIterator<Item = Score>) -> Score {
        let mut all = Score::default();
        for s in scores {
            all.matches.extend(s.matches);
            all.misses.extend(s.misses);
            all.false_positives.extend(s.false_positives);
            all.late_resolutions.extend(s.late_resolutions);
        }
        all
    }

    /// One row per kind that had anything expected or detected, in [`OutageKind::ALL`] order
    /// (kinds not listed there after them, by name).
    pub fn rows(&self) -> Vec<KindRow> {
        #[derive(Default)]
        struct Acc {
            tp: usize,
            fp: usize,
            fn_: usize,
            delays: Vec<f64>,
            sims: Vec<f64>,
        }
        let mut acc: BTreeMap<String, Acc> = BTreeMap::new();
        for m in &self.matches {
            let a = acc.entry(m.expected.kind.to_owned()).or_default();
            a.tp += 1;
            a.delays.push(m.delay_s);
            a.sims.push(m.sim_s);
        }
        for e in &self.misses {
            acc.entry(e.kind.to_owned()).or_default().fn_ += 1;
        }
        for d in &self.false_positives {
            acc.entry(d.kind.clone()).or_default().fp += 1;
        }
        let order = |k: &str| OutageKind::ALL.iter().position(|o| o.as_str() == k);
        let mut rows: Vec<KindRow> = acc
            .into_iter()
            .map(|(kind, a)| KindRow {
                expected: a.tp + a.fn_,
                detected: a.tp + a.fp,
                tp: a.tp,
                fp: a.fp,
                fn_: a.fn_,
                precision: ratio(a.tp, a.tp + a.fp),
                recall: ratio(a.tp, a.tp + a.fn_),
                delay_p50_s: percentile(&a.delays, 0.50),
                delay_p99_s: percentile(&a.delays, 0.99),
                sim_median_s: percentile(&a.sims, 0.50),
                kind,
            })
            .collect();
        rows.sort_by(|a, b| {
            (order(&a.kind).is_none(), order(&a.kind), &a.kind).cmp(&(
                order(&b.kind).is_none(),
                order(&b.kind),
                &b.kind,
            ))
        });
        rows
    }

    pub fn totals(&self) -> Totals {
        let rows = self.rows();
        let delays: Vec<f64> = self.matches.iter().map(|m| m.delay_s).collect();
        Totals {
            precision_min: rows.iter().map(|r| r.precision).fold(1.0, f64::min),
            recall_min: rows.iter().map(|r| r.recall).fold(1.0, f64::min),
            delay_p99_s: percentile(&delays, 0.99).unwrap_or(0.0),
            late_resolutions: self.late_resolutions.len(),
        }
    }

    /// The rows as a Markdown table.
    pub fn table(&self) -> String {
        let opt = |v: Option<f64>, digits: usize| match v {
            Some(v) => format!("{v:.digits$}"),
            None => "-".into(),
        };
        let mut out = String::from(
            "| kind | expected | detected | tp | fp | fn | precision | recall | delay p50 s | delay p99 s | median sim s to detection |\n\
             |---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for r in self.rows() {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {:.3} | {:.3} | {} | {} | {} |\n",
                r.kind,
                r.expected,
                r.detected,
                r.tp,
                r.fp,
                r.fn_,
                r.precision,
                r.recall,
                opt(r.delay_p50_s, 2),
                opt(r.delay_p99_s, 2),
                opt(r.sim_median_s, 0)
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests;

//! Rule parameters, read from a TOML file (documented in `docs/rules.md`) and validated.

use std::collections::BTreeMap;

use model::Kind;
pub use model::Severity;
use serde::Deserialize;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    pub lamp_failure: LampFailure,
    pub day_burner: DayBurner,
    pub lamp_cycling: LampCycling,
    pub voltage: Voltage,
    pub silence: Silence,
    pub cabinet_supply_loss: SupplyLoss,
    pub meter_flags: Delays,
    pub leak: Leak,
    pub off_route: OffRoute,
    pub bunching: Bunching,
    pub stopped_too_long: StoppedTooLong,
    pub chattering: Chattering,
    pub stream: StreamOrder,
    /// Severity per outage kind (`critical`, `major`, `minor`); kinds not named keep their
    /// default ([`crate::OutageKind::default_severity`]).
    pub severity: BTreeMap<String, Severity>,
    pub work_orders: WorkOrders,
}

/// On- and off-delays of a rule, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Delays {
    pub on_delay_s: i64,
    pub off_delay_s: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LampFailure {
    /// A lamp that should burn but draws less than this share of its expected power (its
    /// rating at the dim level it should have) has failed.
    pub min_power_ratio: f64,
    /// Within this long of civil dusk or dawn a lamp's power is not judged (photocells and
    /// controllers' clocks switch minutes either side of it).
    pub twilight_margin_s: i64,
    pub on_delay_s: i64,
    pub off_delay_s: i64,
}

impl Default for LampFailure {
    fn default() -> Self {
        // Longer than a cabinet's reporting interval, so that a cabinet's supply loss is
        // known before its lamps' darkness raises eighty alarms.
        LampFailure {
            min_power_ratio: 0.3,
            twilight_margin_s: 900,
            on_delay_s: 600,
            off_delay_s: 900,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DayBurner {
    /// Burning above this share of the rating in daylight counts.
    pub min_power_ratio: f64,
    /// Daylight starts this long after civil dawn and ends this long before civil dusk.
    pub margin_s: i64,
    pub on_delay_s: i64,
    pub off_delay_s: i64,
}

impl Default for DayBurner {
    fn default() -> Self {
        DayBurner {
            min_power_ratio: 0.2,
            margin_s: 1800,
            on_delay_s: 0,
            off_delay_s: 900,
        }
    }
}

/// A lamp whose relay keeps switching while it should stay as it is.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LampCycling {
    /// This many relay changes within `window_s` raise it.
    pub min_switches: u32,
    pub window_s: i64,
    /// Clears after this long without a relay change.
    pub off_delay_s: i64,
}

impl Default for LampCycling {
    fn default() -> Self {
        LampCycling {
            min_switches: 3,
            window_s: 3600,
            off_delay_s: 3600,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Voltage {
    pub min_v: f64,
    pub max_v: f64,
    /// A raised alarm clears only this far inside the band.
    pub hysteresis_v: f64,
    pub on_delay_s: i64,
    pub off_delay_s: i64,
}

impl Default for Voltage {
    fn default() -> Self {
        // EN 50160: 230 V +/- 10 %.
        Voltage {
            min_v: 207.0,
            max_v: 253.0,
            hysteresis_v: 3.0,
            on_delay_s: 0,
            off_delay_s: 600,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Silence {
    /// A device is silent after this many of its reporting intervals without a message.
    pub intervals: f64,
    /// Plus this long, for messages still on their way through the broker and the hub.
    pub grace_s: i64,
    pub light_interval_s: i64,
    pub cabinet_interval_s: i64,
    pub meter_interval_s: i64,
    pub vehicle_interval_s: i64,
}

impl Default for Silence {
    fn default() -> Self {
        Silence {
            intervals: 3.0,
            grace_s: model::REPORT_GRACE_S,
            light_interval_s: Kind::Light.reporting_interval_s(),
            cabinet_interval_s: Kind::Cabinet.reporting_interval_s(),
            meter_interval_s: Kind::Meter.reporting_interval_s(),
            vehicle_interval_s: Kind::Vehicle.reporting_interval_s(),
        }
    }
}

impl Silence {
    /// A device of `kind`'s reporting interval, seconds.
    pub fn interval_s(&self, kind: Kind) -> i64 {
        match kind {
            Kind::Light => self.light_interval_s,
            Kind::Cabinet => self.cabinet_interval_s,
            Kind::Meter => self.meter_interval_s,
            Kind::Vehicle => self.vehicle_interval_s,
        }
    }
}

/// A cabinet's supply loss: reported by the cabinet, or inferred when most of its lamps go
/// dark together while they should burn.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupplyLoss {
    pub on_delay_s: i64,
    pub off_delay_s: i64,
    /// Inferred when at least this share of the cabinet's lamps are dark (0 W or 0 V) ...
    pub dark_share: f64,
    /// ... and the cabinet has at least this many lamps.
    pub min_lamps: usize,
    /// Lamps dark within this long of civil dusk or dawn are no evidence.
    pub twilight_margin_s: i64,
}

impl Default for SupplyLoss {
    fn default() -> Self {
        SupplyLoss {
            on_delay_s: 0,
            off_delay_s: 0,
            dark_share: 0.8,
            min_lamps: 5,
            twilight_margin_s: 900,
        }
    }
}

/// Water that never stops flowing through the night.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Leak {
    /// The night window, hours of local solar time (the meter's longitude).
    pub night_start_h: f64,
    pub night_end_h: f64,
    /// Flow at or below this is "no flow".
    pub min_flow_m3h: f64,
    /// A night counts only with at least this many readings in the window.
    pub min_readings: u32,
}

impl Default for Leak {
    fn default() -> Self {
        Leak {
            night_start_h: 1.0,
            night_end_h: 4.0,
            min_flow_m3h: 0.01,
            min_readings: 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OffRoute {
    /// Farther than this from its route's line.
    pub max_distance_m: f64,
    pub on_delay_s: i64,
    pub off_delay_s: i64,
}

impl Default for OffRoute {
    fn default() -> Self {
        OffRoute {
            max_distance_m: 200.0,
            on_delay_s: 120,
            off_delay_s: 60,
        }
    }
}

/// Two vehicles of one route too close together.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Bunching {
    /// Closer than this share of the timetable's headway (as distance at their speed) ...
    pub headway_share: f64,
    /// ... and never further apart than this (also the limit for routes without a headway).
    pub max_gap_m: f64,
    /// Positions further apart in time than this are not compared.
    pub max_age_s: i64,
    /// A close pair stays close until its gap exceeds the limit by this share.
    pub hysteresis: f64,
    pub on_delay_s: i64,
    pub off_delay_s: i64,
}

impl Default for Bunching {
    fn default() -> Self {
        Bunching {
            headway_share: 0.25,
            max_gap_m: 150.0,
            max_age_s: 30,
            hysteresis: 0.0,
            on_delay_s: 60,
            off_delay_s: 60,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoppedTooLong {
    /// Slower than this counts as stopped.
    pub max_speed_mps: f64,
    pub on_delay_s: i64,
    pub off_delay_s: i64,
}

impl Default for StoppedTooLong {
    fn default() -> Self {
        StoppedTooLong {
            max_speed_mps: 0.5,
            on_delay_s: 300,
            off_delay_s: 30,
        }
    }
}

/// An alarm raised `max_raises` times within `window_s` is chattering: it stays open (one
/// outage, its occurrences counted) until it has been quiet for `window_s`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Chattering {
    pub max_raises: u32,
    pub window_s: i64,
}

impl Default for Chattering {
    fn default() -> Self {
        Chattering {
            max_raises: 3,
            window_s: 3600,
        }
    }
}

/// How the engine orders the stream (see `rules::timeline`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamOrder {
    /// Inputs are judged this long (stream time, milliseconds) behind the stream's
    /// watermark, so that those arriving out of order by up to this much more than the
    /// watermark allows for are judged in order. Every decision waits this long.
    pub reorder_ms: i64,
    /// At most this many inputs wait for the stream (memory: a few hundred bytes each); a
    /// backlog published faster than that has its oldest judged at once.
    pub max_queued: usize,
}

impl Default for StreamOrder {
    fn default() -> Self {
        StreamOrder {
            reorder_ms: 500,
            max_queued: 100_000,
        }
    }
}

/// Work orders: who repairs what, by when, and how a repair is verified.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkOrders {
    /// A repair is verified when the asset has behaved for this long after "done".
    pub verify_hold_s: i64,
    /// Rules in order; the first matching an outage's kind and severity applies. Outages
    /// no rule matches get no work order.
    pub policy: Vec<Policy>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Outage kinds this rule covers; empty: all.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Severities this rule covers; empty: all.
    #[serde(default)]
    pub severities: Vec<Severity>,
    pub team: String,
    pub deadline_h: f64,
}

impl Default for WorkOrders {
    fn default() -> Self {
        use crate::OutageKind::*;
        let rule = |kinds: &[crate::OutageKind], team: &str, deadline_h: f64| Policy {
            kinds: kinds.iter().map(|k| k.as_str().to_owned()).collect(),
            severities: Vec::new(),
            team: team.into(),
            deadline_h,
        };
        WorkOrders {
            verify_hold_s: 900,
            policy: vec![
                rule(&[CabinetSupplyLoss], "power-crew", 4.0),
                rule(
                    &[
                        LampFailure,
                        DayBurner,
                        LampCycling,
                        VoltageOutOfRange,
                        DeviceOffline,
                    ],
                    "lighting-crew",
                    72.0,
                ),
                rule(&[Leak, Tamper, ReverseFlow, MeterSilent], "metering", 48.0),
                rule(
                    &[VehicleSilent, OffRoute, Bunching, StoppedTooLong],
                    "transport-control",
                    1.0,
                ),
            ],
        }
    }
}

/// What a policy gives an outage.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub team: String,
    pub deadline_s: i64,
}

#[derive(Debug, Error, PartialEq)]
pub enum ConfigError {
    #[error("not a valid rules file: {0}")]
    Toml(String),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot read the rules file {path}: {why}")]
    Read { path: String, why: String },
    #[error("in the rules file {path}: {source}")]
    InFile {
        path: String,
        source: Box<ConfigError>,
    },
}

/// Whether a rules file may name `kind`: an outage kind, or `inspection` (work orders
/// raised by people, e.g. from citizen reports).
fn known_kind(kind: &str) -> bool {
    kind == model::INSPECTION || crate::OutageKind::parse(kind).is_some()
}

impl RulesConfig {
    /// The rules of the file at `path`, or the built-in defaults without one.
    pub fn load(path: Option<&std::path::Path>) -> Result<RulesConfig, ConfigError> {
        let Some(path) = path else {
            return Ok(RulesConfig::default());
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: shown.clone(),
            why: e.to_string(),
        })?;
        RulesConfig::parse(&text).map_err(|e| ConfigError::InFile {
            path: shown,
            source: Box::new(e),
        })
    }

    pub fn parse(text: &str) -> Result<RulesConfig, ConfigError> {
        let c: RulesConfig = toml::from_str(text).map_err(|e| ConfigError::Toml(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    /// The severity of an outage of `kind`: the file's, else the kind's default (minor for
    /// `inspection`, which people raise).
    pub fn severity(&self, kind: &str) -> Severity {
        self.severity.get(kind).copied().unwrap_or_else(|| {
            crate::OutageKind::parse(kind).map_or(Severity::Minor, |k| k.default_severity())
        })
    }

    /// The team and deadline of an outage, by the first policy rule that matches.
    pub fn assignment(&self, kind: &str, severity: Severity) -> Option<Assignment> {
        self.work_orders
            .policy
            .iter()
            .find(|p| {
                (p.kinds.is_empty() || p.kinds.iter().any(|k| k == kind))
                    && (p.severities.is_empty() || p.severities.contains(&severity))
            })
            .map(|p| Assignment {
                team: p.team.clone(),
                deadline_s: (p.deadline_h * 3600.0).round() as i64,
            })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |s: String| Err(ConfigError::Invalid(s));
        let ratio = |v: f64| (0.0..=1.0).contains(&v);
        if !ratio(self.lamp_failure.min_power_ratio)
            || !ratio(self.day_burner.min_power_ratio)
            || !ratio(self.cabinet_supply_loss.dark_share)
        {
            return bad("min_power_ratio and dark_share must be between 0 and 1".into());
        }
        let v = &self.voltage;
        if !(v.min_v < v.max_v && v.hysteresis_v >= 0.0 && 2.0 * v.hysteresis_v < v.max_v - v.min_v)
        {
            return bad("voltage: min_v must be below max_v, with the hysteresis fitting twice between them".into());
        }
        let delays = [
            self.lamp_failure.on_delay_s,
            self.lamp_failure.off_delay_s,
            self.lamp_failure.twilight_margin_s,
            self.cabinet_supply_loss.twilight_margin_s,
            self.day_burner.on_delay_s,
            self.day_burner.off_delay_s,
            self.day_burner.margin_s,
            self.lamp_cycling.off_delay_s,
            v.on_delay_s,
            v.off_delay_s,
            self.silence.grace_s,
            self.cabinet_supply_loss.on_delay_s,
            self.cabinet_supply_loss.off_delay_s,
            self.meter_flags.on_delay_s,
            self.meter_flags.off_delay_s,
            self.off_route.on_delay_s,
            self.off_route.off_delay_s,
            self.bunching.on_delay_s,
            self.bunching.off_delay_s,
            self.stopped_too_long.on_delay_s,
            self.stopped_too_long.off_delay_s,
            self.work_orders.verify_hold_s,
        ];
        if delays.iter().any(|d| !(0..=7 * 86_400).contains(d)) {
            return bad("delays, margins and hold times must be between 0 s and 7 days".into());
        }
        let windows = [
            self.lamp_cycling.window_s,
            self.chattering.window_s,
            self.bunching.max_age_s,
        ];
        if !(0..=600_000).contains(&self.stream.reorder_ms) {
            return bad("stream.reorder_ms must be between 0 and 600000 (10 min)".into());
        }
        if !(1_000..=10_000_000).contains(&self.stream.max_queued) {
            return bad("stream.max_queued must be between 1000 and 10000000".into());
        }
        if windows.iter().any(|w| !(1..=7 * 86_400).contains(w)) {
            return bad("windows and ages must be between 1 s and 7 days".into());
        }
        if self.lamp_cycling.min_switches < 2 || self.chattering.max_raises < 2 {
            return bad(
                "lamp_cycling.min_switches and chattering.max_raises must be at least 2".into(),
            );
        }
        let s = &self.silence;
        if s.intervals < 1.0
            || [
                s.light_interval_s,
                s.cabinet_interval_s,
                s.meter_interval_s,
                s.vehicle_interval_s,
            ]
            .iter()
            .any(|i| *i <= 0)
        {
            return bad(
                "silence: intervals must be at least 1 and every reporting interval positive"
                    .into(),
            );
        }
        let l = &self.leak;
        let hour = |h: f64| (0.0..24.0).contains(&h);
        if !hour(l.night_start_h) || !hour(l.night_end_h) || l.night_start_h == l.night_end_h {
            return bad(
                "leak: night_start_h and night_end_h must be different hours in 0-24".into(),
            );
        }
        if l.min_flow_m3h < 0.0 || l.min_readings == 0 {
            return bad(
                "leak: min_flow_m3h must not be negative and min_readings at least 1".into(),
            );
        }
        if self.off_route.max_distance_m <= 0.0 || self.bunching.max_gap_m <= 0.0 {
            return bad("off_route.max_distance_m and bunching.max_gap_m must be positive".into());
        }
        if !(self.bunching.headway_share > 0.0 && self.bunching.headway_share <= 1.0) {
            return bad("bunching.headway_share must be above 0 and at most 1".into());
        }
        if !(0.0..=2.0).contains(&self.bunching.hysteresis) {
            return bad("bunching.hysteresis must be between 0 and 2".into());
        }
        if self.stopped_too_long.max_speed_mps < 0.0 {
            return bad("stopped_too_long.max_speed_mps must not be negative".into());
        }
        for kind in self.severity.keys() {
            if !known_kind(kind) {
                return bad(format!("severity: `{kind}` is not an outage kind"));
            }
        }
        for (i, p) in self.work_orders.policy.iter().enumerate() {
            if let Some(k) = p.kinds.iter().find(|k| !known_kind(k)) {
                return bad(format!(
                    "work_orders.policy[{i}]: `{k}` is not an outage kind"
                ));
            }
            if p.team.trim().is_empty() {
                return bad(format!("work_orders.policy[{i}]: team must not be empty"));
            }
            if !(p.deadline_h > 0.0 && p.deadline_h <= 24.0 * 365.0) {
                return bad(format!(
                    "work_orders.policy[{i}]: deadline_h must be above 0 and at most a year"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_files_override_them() {
        RulesConfig::default().validate().unwrap();
        let c = RulesConfig::parse("[voltage]\nmax_v = 250.0\n").unwrap();
        assert_eq!(c.voltage.max_v, 250.0);
        assert_eq!(c.voltage.min_v, 207.0);
    }

    /// The shipped rules file says exactly what the built-in defaults are.
    #[test]
    fn the_shipped_rules_file_is_the_defaults_written_out() {
        let shipped = RulesConfig::parse(include_str!("../../deploy/rules.toml")).unwrap();
        let defaults = RulesConfig::default();
        for kind in crate::OutageKind::ALL {
            assert_eq!(
                shipped.severity.get(kind.as_str()),
                Some(&kind.default_severity()),
                "{kind:?} in deploy/rules.toml"
            );
        }
        assert_eq!(
            RulesConfig {
                severity: BTreeMap::new(),
                ..shipped
            },
            defaults
        );
    }

    #[test]
    fn policies_pick_the_first_matching_rule() {
        let c = RulesConfig::parse(
            r#"
            [severity]
            lamp_failure = "major"
            [work_orders]
            verify_hold_s = 60
            [[work_orders.policy]]
            kinds = ["lamp_failure"]
            severities = ["critical"]
            team = "night-crew"
            deadline_h = 2
            [[work_orders.policy]]
            team = "contractor-a"
            deadline_h = 48
            "#,
        )
        .unwrap();
        assert_eq!(c.severity("lamp_failure"), Severity::Major);
        assert_eq!(c.severity("leak"), Severity::Major, "the kind's default");
        assert_eq!(c.severity("meter_silent"), Severity::Minor);
        assert_eq!(c.severity("cabinet_supply_loss"), Severity::Critical);
        let a = c.assignment("lamp_failure", Severity::Major).unwrap();
        assert_eq!((a.team.as_str(), a.deadline_s), ("contractor-a", 48 * 3600));
        let a = c.assignment("lamp_failure", Severity::Critical).unwrap();
        assert_eq!((a.team.as_str(), a.deadline_s), ("night-crew", 7200));
        let none = RulesConfig::parse("[work_orders]\npolicy = []").unwrap();
        assert_eq!(none.assignment("leak", Severity::Minor), None);
    }

    #[test]
    fn bad_files_are_explained() {
        let check = |text: &str, fragment: &str| {
            let err = RulesConfig::parse(text).unwrap_err().to_string();
            assert!(
                err.contains(fragment),
                "`{err}` should mention `{fragment}`"
            );
        };
        check("[voltage]\nmin_v = 260.0", "min_v must be below max_v");
        check("[lamp_failure]\nmin_power_ratio = 2.0", "between 0 and 1");
        check("[day_burner]\nmargin_s = -5", "between 0 s and 7 days");
        check("[silence]\nintervals = 0.5", "intervals must be at least 1");
        check("[lamp_failure]\nratio = 0.3", "unknown field `ratio`");
        check("[[voltage]]", "not a valid rules file");
        check("[lamp_cycling]\nmin_switches = 1", "at least 2");
        check("[chattering]\nwindow_s = 0", "between 1 s and 7 days");
        check("[leak]\nnight_start_h = 25", "different hours");
        check("[bunching]\nmax_gap_m = 0", "must be positive");
        check(
            "[stream]\nreorder_ms = 3600000",
            "reorder_ms must be between",
        );
        check(
            "[severity]\nlamp_fail = \"major\"",
            "`lamp_fail` is not an outage kind",
        );
        check("[severity]\nleak = \"urgent\"", "unknown variant `urgent`");
        check(
            "[[work_orders.policy]]\nkinds = [\"leek\"]\nteam = \"a\"\ndeadline_h = 1",
            "`leek` is not an outage kind",
        );
        check(
            "[[work_orders.policy]]\nteam = \"\"\ndeadline_h = 1",
            "team must not be empty",
        );
        check(
            "[[work_orders.policy]]\nteam = \"a\"\ndeadline_h = 0",
            "deadline_h must be above 0",
        );
    }
}

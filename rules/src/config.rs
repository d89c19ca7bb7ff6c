//! Rule parameters, read from a TOML file (documented in `docs/rules.md`) and validated.

use serde::Deserialize;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    pub lamp_failure: LampFailure,
    pub day_burner: DayBurner,
    pub voltage: Voltage,
    pub silence: Silence,
    pub cabinet_supply_loss: Delays,
    pub meter_flags: Delays,
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
    /// A lamp that should burn but draws less than this share of its rating has failed.
    pub min_power_ratio: f64,
    pub on_delay_s: i64,
    pub off_delay_s: i64,
}

impl Default for LampFailure {
    fn default() -> Self {
        // Longer than a cabinet's reporting interval, so that a cabinet's supply loss is
        // known before its lamps' darkness raises eighty alarms.
        LampFailure {
            min_power_ratio: 0.3,
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
    pub light_interval_s: i64,
    pub cabinet_interval_s: i64,
    pub meter_interval_s: i64,
    pub vehicle_interval_s: i64,
}

impl Default for Silence {
    fn default() -> Self {
        Silence {
            intervals: 3.0,
            light_interval_s: 900,
            cabinet_interval_s: 300,
            meter_interval_s: 3600,
            vehicle_interval_s: 10,
        }
    }
}

#[derive(Debug, Error, PartialEq)]
pub enum ConfigError {
    #[error("not a valid rules file: {0}")]
    Toml(String),
    #[error("{0}")]
    Invalid(String),
}

impl RulesConfig {
    pub fn parse(text: &str) -> Result<RulesConfig, ConfigError> {
        let c: RulesConfig = toml::from_str(text).map_err(|e| ConfigError::Toml(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |s: &str| Err(ConfigError::Invalid(s.to_owned()));
        let ratio = |v: f64| (0.0..=1.0).contains(&v);
        if !ratio(self.lamp_failure.min_power_ratio) || !ratio(self.day_burner.min_power_ratio) {
            return bad("min_power_ratio must be between 0 and 1");
        }
        let v = &self.voltage;
        if !(v.min_v < v.max_v && v.hysteresis_v >= 0.0 && 2.0 * v.hysteresis_v < v.max_v - v.min_v)
        {
            return bad("voltage: min_v must be below max_v, with the hysteresis fitting twice between them");
        }
        let delays = [
            self.lamp_failure.on_delay_s,
            self.lamp_failure.off_delay_s,
            self.day_burner.on_delay_s,
            self.day_burner.off_delay_s,
            self.day_burner.margin_s,
            v.on_delay_s,
            v.off_delay_s,
            self.cabinet_supply_loss.on_delay_s,
            self.cabinet_supply_loss.off_delay_s,
            self.meter_flags.on_delay_s,
            self.meter_flags.off_delay_s,
        ];
        if delays.iter().any(|d| !(0..=7 * 86_400).contains(d)) {
            return bad("delays and margins must be between 0 s and 7 days");
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
                "silence: intervals must be at least 1 and every reporting interval positive",
            );
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
    }
}

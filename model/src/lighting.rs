//! What a lamp should do under a lighting profile (the `set_schedule` body): shared by
//! the rules (what a lamp is expected to show) and the simulated lamps (what they show),
//! so both read a profile the same way.
//!
//! ```json
//! {"action": "set_schedule", "dusk_offset_min": -10, "dawn_offset_min": 10, "dim": 100,
//!  "steps": [{"from": "00:30", "to": "05:00", "dim": 40}]}
//! ```
//!
//! The lamp burns from civil dusk + `dusk_offset_min` to civil dawn + `dawn_offset_min` at
//! `dim`; each step sets another level between two times of local solar time (`dim` 0 is
//! off: part-night switching). Every field is optional.

use serde::Deserialize;

use crate::Timestamp;

/// What a lamp should show.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Expected {
    pub on: bool,
    /// Percent of full output.
    pub dim: f64,
}

impl Expected {
    pub const OFF: Expected = Expected {
        on: false,
        dim: 0.0,
    };
    pub const FULL: Expected = Expected {
        on: true,
        dim: 100.0,
    };

    pub fn burns(self) -> bool {
        self.on && self.dim > 0.0
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Schedule {
    pub dusk_offset_min: f64,
    pub dawn_offset_min: f64,
    pub dim: f64,
    pub steps: Vec<Step>,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            dusk_offset_min: 0.0,
            dawn_offset_min: 0.0,
            dim: 100.0,
            steps: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Step {
    /// `HH:MM`, local solar time.
    pub from: String,
    pub to: String,
    pub dim: f64,
}

impl Schedule {
    /// Reads a `set_schedule` body; `None` when it does not parse or a step's time is not
    /// `HH:MM` (a lamp rejects such a profile).
    pub fn from_command(body: &serde_json::Value) -> Option<Schedule> {
        let s: Schedule = serde_json::from_value(body.clone()).ok()?;
        s.steps
            .iter()
            .all(|st| minutes(&st.from).is_some() && minutes(&st.to).is_some())
            .then_some(s)
    }
}

/// Minutes after midnight of `HH:MM`.
fn minutes(hhmm: &str) -> Option<f64> {
    let (h, m) = hhmm.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(f64::from(h * 60 + m))
}

impl Schedule {
    /// What the lamp should do at `ts` given that day's civil dawn and dusk at its place
    /// (`None` in polar day or night, where `dark` decides).
    pub fn at(
        &self,
        ts: Timestamp,
        lon: f64,
        dawn: Option<Timestamp>,
        dusk: Option<Timestamp>,
        dark: bool,
    ) -> Expected {
        let burning = match (dawn, dusk) {
            (Some(dawn), Some(dusk)) => {
                let dawn = dawn.add_secs((self.dawn_offset_min * 60.0) as i64);
                let dusk = dusk.add_secs((self.dusk_offset_min * 60.0) as i64);
                ts < dawn || ts >= dusk
            }
            _ => dark,
        };
        if !burning {
            return Expected::OFF;
        }
        let local = (ts.micros() as f64 / 6e7 + lon * 4.0).rem_euclid(1440.0);
        let dim = self
            .steps
            .iter()
            .find(|s| {
                let (Some(from), Some(to)) = (minutes(&s.from), minutes(&s.to)) else {
                    return false;
                };
                if from <= to {
                    (from..to).contains(&local)
                } else {
                    local >= from || local < to
                }
            })
            .map_or(self.dim, |s| s.dim)
            .clamp(0.0, 100.0);
        Expected { on: dim > 0.0, dim }
    }
}

/// What a lamp at (`lon`, `lat`) should show at `ts` under `profile` (a `set_schedule`
/// body; none, or one that does not parse, is dusk to dawn at full output, as a lamp no
/// schedule covers follows), by the astronomical clock.
pub fn scheduled(
    profile: Option<&serde_json::Value>,
    lon: f64,
    lat: f64,
    ts: Timestamp,
) -> Expected {
    let schedule = profile.and_then(Schedule::from_command).unwrap_or_default();
    let (dawn, dusk) = crate::astro::civil_twilight(lon, lat, ts);
    schedule.at(ts, lon, dawn, dusk, crate::astro::is_dark(lon, lat, ts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(hhmm: &str) -> Timestamp {
        Timestamp::from_rfc3339(&format!("2026-11-22T{hhmm}:00Z")).unwrap()
    }

    #[test]
    fn schedules_follow_dusk_dawn_offsets_and_part_night_steps() {
        let s: Schedule = serde_json::from_value(json!({
            "dusk_offset_min": 15, "dim": 90,
            "steps": [{"from": "23:00", "to": "02:00", "dim": 50}, {"from": "02:00", "to": "05:00", "dim": 0}]
        }))
        .unwrap();
        let (dawn, dusk) = (Some(t("07:00")), Some(t("17:45")));
        // Longitude 0: local solar time is UTC.
        let at = |hhmm: &str| s.at(t(hhmm), 0.0, dawn, dusk, false);
        assert_eq!(at("17:50"), Expected::OFF, "dusk + 15 min not reached");
        assert_eq!(
            at("18:10"),
            Expected {
                on: true,
                dim: 90.0
            }
        );
        assert_eq!(
            at("23:30"),
            Expected {
                on: true,
                dim: 50.0
            }
        );
        assert_eq!(
            at("01:59"),
            Expected {
                on: true,
                dim: 50.0
            }
        );
        assert_eq!(at("03:00"), Expected::OFF, "part-night off");
        assert_eq!(
            at("06:00"),
            Expected {
                on: true,
                dim: 90.0
            }
        );
        assert_eq!(at("12:00"), Expected::OFF);
        // 15 degrees east: local solar time is an hour ahead of UTC.
        assert_eq!(s.at(t("22:30"), 15.0, dawn, dusk, false).dim, 50.0);
        // Polar night: darkness decides.
        assert_eq!(
            s.at(t("12:00"), 0.0, None, None, true),
            Expected {
                on: true,
                dim: 90.0
            }
        );
    }

    #[test]
    fn a_lamp_follows_its_profile_or_burns_dusk_to_dawn_at_full_output() {
        // Lisbon, 22 November: civil dusk near 17:45 UTC, dawn near 06:55 UTC.
        let (lon, lat) = (-9.14, 38.71);
        assert_eq!(scheduled(None, lon, lat, t("22:00")), Expected::FULL);
        assert_eq!(scheduled(None, lon, lat, t("12:00")), Expected::OFF);
        let part_night = json!({"dim": 80, "steps": [{"from": "00:00", "to": "05:00", "dim": 0}]});
        assert_eq!(
            scheduled(Some(&part_night), lon, lat, t("20:00")),
            Expected {
                on: true,
                dim: 80.0
            }
        );
        assert_eq!(
            scheduled(Some(&part_night), lon, lat, t("03:00")),
            Expected::OFF
        );
        // A profile that does not parse is the default.
        let broken = json!({"steps": [{"from": "25:00", "to": "05:00", "dim": 0}]});
        assert_eq!(
            scheduled(Some(&broken), lon, lat, t("22:00")),
            Expected::FULL
        );
    }
}

//! Scenarios: faults injected at known times, and the ground truth they leave behind.
//!
//! A scenario (TOML, see `scenarios/`) names a city, a start and a duration in simulated
//! time, and a list of faults: a kind, when it starts (seconds after the start), how long it
//! lasts, and how many assets it hits (chosen from the seed) or which one. [`Scenario::plan`]
//! resolves that against a city into [`PlannedFault`]s; the fleet injects them and
//! [`Plan::truth`] is what a detector should find: one JSON line per fault.

use chrono::SecondsFormat;
use model::Timestamp;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::city::{City, CitySpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    // Lighting.
    LampFailure,
    DriverFailure,
    DayBurner,
    LampCycling,
    VoltageOutOfRange,
    CabinetSupplyLoss,
    DeviceOffline,
    /// A lamp keeps its connection but holds its readings back, then sends them all as one
    /// array (newest first) when the fault ends: silent on the wire until then.
    Backlog,
    /// City-wide outage: every device is silent, then all reconnect at once with backlogs.
    PowerRestore,
    // Meters.
    Leak,
    Tamper,
    ReverseFlow,
    MeterSilent,
    // Transport.
    VehicleSilent,
    OffRoute,
    Bunching,
    StoppedTooLong,
    // Bad traffic: messages the hub must dead-letter (or, for duplicates, store once).
    MalformedJson,
    WrongTypes,
    UnknownDevice,
    Oversize,
    Duplicates,
    OutOfOrder,
}

/// What a fault kind hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Lamp,
    Cabinet,
    Meter,
    WaterMeter,
    Vehicle,
    AnyDevice,
    City,
}

impl FaultKind {
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    pub fn target(self) -> Target {
        use FaultKind::*;
        match self {
            LampFailure | DriverFailure | DayBurner | LampCycling | VoltageOutOfRange
            | WrongTypes | Backlog => Target::Lamp,
            CabinetSupplyLoss => Target::Cabinet,
            Leak => Target::WaterMeter,
            Tamper | ReverseFlow | MeterSilent => Target::Meter,
            VehicleSilent | OffRoute | Bunching | StoppedTooLong => Target::Vehicle,
            DeviceOffline | MalformedJson | UnknownDevice | Oversize | Duplicates | OutOfOrder => {
                Target::AnyDevice
            }
            PowerRestore => Target::City,
        }
    }

    /// Bad traffic happens at an instant, `count` messages of it.
    pub fn is_bad_traffic(self) -> bool {
        use FaultKind::*;
        matches!(
            self,
            MalformedJson | WrongTypes | UnknownDevice | Oversize | Duplicates | OutOfOrder
        )
    }
}

fn one() -> usize {
    1
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub kind: FaultKind,
    /// Seconds after the scenario's start.
    pub at_s: u64,
    /// How long it lasts; absent: to the end of the scenario.
    pub duration_s: Option<u64>,
    /// Assets hit (chosen from the seed), or messages sent for bad traffic.
    #[serde(default = "one")]
    pub count: usize,
    /// A specific asset id instead of a seeded choice.
    pub asset: Option<String>,
}

/// What an operator (or a schedule change) tells some lamps at a time: the `cmd` body
/// without `id` and `ts`, which are filled in when it is sent.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    /// Seconds after the scenario's start.
    pub at_s: u64,
    /// `set_light` or `set_schedule` with its fields (`on`, `dim`, `steps`, ...).
    pub body: toml::Table,
    /// A `set_light` expires this long after it is sent.
    pub expires_s: Option<u64>,
    /// Lamps it reaches (chosen from the seed among those no fault hits).
    #[serde(default = "one")]
    pub count: usize,
    /// Specific lamps instead of a seeded choice.
    #[serde(default)]
    pub lamps: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScenarioCity {
    pub seed: u64,
    pub lamps: usize,
    pub meters: usize,
    pub vehicles: usize,
}

impl Default for ScenarioCity {
    fn default() -> Self {
        ScenarioCity {
            seed: 1,
            lamps: 2_000,
            meters: 500,
            vehicles: 20,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    /// Simulated start, RFC 3339; absent: when the run starts.
    pub start: Option<String>,
    pub duration_s: u64,
    /// Suggested speed (simulated seconds per real second).
    #[serde(default)]
    pub speed: Option<f64>,
    #[serde(default)]
    pub city: ScenarioCity,
    #[serde(default, rename = "fault")]
    pub faults: Vec<FaultSpec>,
    /// Commands sent during the run: what the lamps were told is expected behaviour,
    /// never a fault (no ground truth of their own).
    #[serde(default, rename = "command")]
    pub commands: Vec<CommandSpec>,
}

#[derive(Debug, Error, PartialEq)]
pub enum ScenarioError {
    #[error("not a valid scenario: {0}")]
    Toml(String),
    #[error("`start` {0} is not RFC 3339 with an offset")]
    Start(String),
    #[error("fault {index} ({kind}): {why}")]
    Fault {
        index: usize,
        kind: String,
        why: String,
    },
    #[error("command {index}: {why}")]
    Command { index: usize, why: String },
}

/// One fault resolved to an asset of the city.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedFault {
    pub kind: FaultKind,
    /// The asset's device index in fleet order (cabinets, lamps, meters, vehicles); `None`
    /// for the whole city.
    pub device: Option<usize>,
    pub asset: String,
    pub start: Timestamp,
    pub end: Option<Timestamp>,
    /// Bad-traffic messages to send.
    pub count: usize,
    /// The second vehicle of a bunching pair.
    pub partner: Option<usize>,
}

/// A command of the scenario resolved to lamps.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedCommand {
    pub at: Timestamp,
    /// Device indices in fleet order.
    pub lamps: Vec<usize>,
    /// The `cmd` body: `action` and its fields, `expires` (Unix ms) when it has one; the
    /// sender adds `id` and `ts`.
    pub body: serde_json::Value,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub faults: Vec<PlannedFault>,
    pub commands: Vec<PlannedCommand>,
}

/// One line of ground truth.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TruthRecord {
    pub kind: FaultKind,
    pub asset: String,
    pub start: String,
    pub end: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
    /// The other vehicle of a bunching pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<String>,
}

fn rfc3339(t: Timestamp) -> String {
    t.to_datetime().to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Plan {
    /// The ground truth, one JSON object per line.
    pub fn truth(&self, city: &City) -> Vec<TruthRecord> {
        let first_vehicle = city.cabinets.len() + city.lamps.len() + city.meters.len();
        self.faults
            .iter()
            .map(|f| TruthRecord {
                kind: f.kind,
                asset: f.asset.clone(),
                start: rfc3339(f.start),
                end: f.end.map(rfc3339),
                count: f.kind.is_bad_traffic().then_some(f.count),
                partner: f
                    .partner
                    .map(|p| city.vehicles[p - first_vehicle].id.clone()),
            })
            .collect()
    }

    pub fn truth_jsonl(&self, city: &City) -> String {
        self.truth(city)
            .iter()
            .filter_map(|r| serde_json::to_string(r).ok())
            .map(|l| l + "\n")
            .collect()
    }
}

impl Scenario {
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Toml(e.to_string()))?;
        for (index, f) in s.faults.iter().enumerate() {
            let bad = |why: &str| ScenarioError::Fault {
                index,
                kind: f.kind.name(),
                why: why.to_owned(),
            };
            if f.at_s >= s.duration_s {
                return Err(bad("starts after the scenario ends"));
            }
            if f.count == 0 {
                return Err(bad("count must be at least 1"));
            }
            if f.kind.target() == Target::City && f.duration_s.is_none() {
                return Err(bad(
                    "a city-wide outage needs a duration (the restore is the point)",
                ));
            }
        }
        for (index, c) in s.commands.iter().enumerate() {
            let bad = |why: &str| ScenarioError::Command {
                index,
                why: why.to_owned(),
            };
            if c.at_s >= s.duration_s {
                return Err(bad("is sent after the scenario ends"));
            }
            if c.count == 0 {
                return Err(bad("count must be at least 1"));
            }
            match c.body.get("action").and_then(|a| a.as_str()) {
                Some("set_light") | Some("set_schedule") => {}
                _ => return Err(bad("body.action must be set_light or set_schedule")),
            }
        }
        if let Some(start) = &s.start {
            Timestamp::from_rfc3339(start).ok_or_else(|| ScenarioError::Start(start.clone()))?;
        }
        Ok(s)
    }

    pub fn city_spec(&self, tenant: &str) -> CitySpec {
        CitySpec {
            seed: self.city.seed,
            tenant: tenant.to_owned(),
            lamps: self.city.lamps,
            meters: self.city.meters,
            vehicles: self.city.vehicles,
            ..CitySpec::default()
        }
    }

    pub fn start(&self) -> Option<Timestamp> {
        self.start.as_deref().and_then(Timestamp::from_rfc3339)
    }

    /// Resolves the faults against `city` for a run starting at `start`. Assets are
    /// drawn from the seed, each at most once across the scenario's faults.
    pub fn plan(&self, city: &City, start: Timestamp) -> Result<Plan, ScenarioError> {
        let cab = city.cabinets.len();
        let lamps = cab..cab + city.lamps.len();
        let meters = lamps.end..lamps.end + city.meters.len();
        let vehicles = meters.end..meters.end + city.vehicles.len();
        let id_of = |d: usize| -> String {
            if d < cab {
                city.cabinets[d].id.clone()
            } else if lamps.contains(&d) {
                city.lamps[d - cab].id.clone()
            } else if meters.contains(&d) {
                city.meters[d - meters.start].id.clone()
            } else {
                city.vehicles[d - vehicles.start].id.clone()
            }
        };
        let total = vehicles.end;
        let mut used = vec![false; total];
        let mut plan = Plan::default();
        for (index, f) in self.faults.iter().enumerate() {
            let bad = |why: String| ScenarioError::Fault {
                index,
                kind: f.kind.name(),
                why,
            };
            let fault_start = start.add_secs(f.at_s as i64);
            let end_s = f.duration_s.map(|d| (f.at_s + d).min(self.duration_s));
            let fault_end = end_s.map(|e| start.add_secs(e as i64));
            let candidates: Vec<usize> = match f.kind.target() {
                Target::City => {
                    plan.faults.push(PlannedFault {
                        kind: f.kind,
                        device: None,
                        asset: "*".into(),
                        start: fault_start,
                        end: fault_end,
                        count: 1,
                        partner: None,
                    });
                    continue;
                }
                Target::Lamp => lamps.clone().collect(),
                Target::Cabinet => (0..cab).collect(),
                Target::Meter => meters.clone().collect(),
                Target::WaterMeter => meters
                    .clone()
                    .filter(|&d| city.meters[d - meters.start].medium == "water")
                    .collect(),
                Target::Vehicle => vehicles.clone().collect(),
                Target::AnyDevice => (0..total).collect(),
            };
            let chosen: Vec<usize> = match &f.asset {
                Some(id) => {
                    let d = candidates
                        .iter()
                        .copied()
                        .find(|&d| id_of(d) == *id)
                        .ok_or_else(|| {
                            bad(format!("asset `{id}` is not a device this fault can hit"))
                        })?;
                    vec![d]
                }
                None => {
                    let mut rng = ChaCha8Rng::seed_from_u64(
                        self.city.seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9),
                    );
                    let mut free: Vec<usize> =
                        candidates.into_iter().filter(|&d| !used[d]).collect();
                    free.shuffle(&mut rng);
                    // Bad traffic sends `count` messages from one device.
                    let n = if f.kind.is_bad_traffic() { 1 } else { f.count };
                    if free.len() < n {
                        return Err(bad(format!(
                            "needs {n} assets, the city has {} left",
                            free.len()
                        )));
                    }
                    free.truncate(n);
                    free
                }
            };
            // Every chosen asset is taken before partners are picked: a bus chosen for one
            // pair is never also another's partner.
            for &d in &chosen {
                used[d] = true;
            }
            for d in chosen {
                let partner = (f.kind == FaultKind::Bunching)
                    .then(|| {
                        let route = &city.vehicles[d - vehicles.start].route;
                        vehicles.clone().find(|&o| {
                            o != d && !used[o] && city.vehicles[o - vehicles.start].route == *route
                        })
                    })
                    .flatten();
                if f.kind == FaultKind::Bunching && partner.is_none() {
                    return Err(bad("bunching needs two vehicles on one route".into()));
                }
                if let Some(p) = partner {
                    used[p] = true;
                }
                let bad_traffic = f.kind.is_bad_traffic();
                plan.faults.push(PlannedFault {
                    kind: f.kind,
                    device: Some(d),
                    asset: id_of(d),
                    start: fault_start,
                    end: if bad_traffic {
                        Some(fault_start)
                    } else {
                        fault_end
                    },
                    count: if bad_traffic { f.count } else { 1 },
                    partner,
                });
            }
        }
        for (index, c) in self.commands.iter().enumerate() {
            let bad = |why: String| ScenarioError::Command { index, why };
            let chosen: Vec<usize> = if c.lamps.is_empty() {
                let mut rng = ChaCha8Rng::seed_from_u64(
                    self.city.seed ^ (index as u64 + 1).wrapping_mul(0xC2B2_AE3D),
                );
                let mut free: Vec<usize> = lamps.clone().filter(|&d| !used[d]).collect();
                free.shuffle(&mut rng);
                if free.len() < c.count {
                    return Err(bad(format!(
                        "needs {} lamps no fault hits, the city has {}",
                        c.count,
                        free.len()
                    )));
                }
                free.truncate(c.count);
                free
            } else {
                c.lamps
                    .iter()
                    .map(|id| {
                        lamps
                            .clone()
                            .find(|&d| id_of(d) == *id)
                            .ok_or_else(|| bad(format!("`{id}` is not a lamp of the city")))
                    })
                    .collect::<Result<_, _>>()?
            };
            let at = start.add_secs(c.at_s as i64);
            let mut body = serde_json::to_value(&c.body).map_err(|e| bad(format!("body: {e}")))?;
            if let Some(e) = c.expires_s {
                body["expires"] = serde_json::json!(at.add_secs(e as i64).micros() / 1000);
            }
            plan.commands.push(PlannedCommand {
                at,
                lamps: chosen,
                body,
            });
        }
        plan.commands.sort_by_key(|c| c.at);
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
        name = "t"
        description = "test"
        start = "2026-11-22T16:00:00Z"
        duration_s = 7200
        [city]
        seed = 3
        lamps = 200
        meters = 50
        vehicles = 10
        [[fault]]
        kind = "lamp_failure"
        at_s = 600
        duration_s = 1800
        count = 3
        [[fault]]
        kind = "bunching"
        at_s = 100
        [[fault]]
        kind = "malformed_json"
        at_s = 60
        count = 5
        [[fault]]
        kind = "power_restore"
        at_s = 3600
        duration_s = 600
    "#;

    #[test]
    fn plans_are_deterministic_and_assets_distinct() {
        let s = Scenario::parse(TEXT).unwrap();
        let city = City::generate(&s.city_spec("x"));
        let start = s.start().unwrap();
        let a = s.plan(&city, start).unwrap();
        assert_eq!(a, s.plan(&city, start).unwrap());
        assert_eq!(a.faults.len(), 3 + 1 + 1 + 1);
        let lamps: Vec<&str> = a
            .faults
            .iter()
            .filter(|f| f.kind == FaultKind::LampFailure)
            .map(|f| f.asset.as_str())
            .collect();
        assert!(lamps.iter().all(|id| id.starts_with('L')));
        let mut ids: Vec<&str> = a
            .faults
            .iter()
            .filter_map(|f| f.device.map(|_| f.asset.as_str()))
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 5, "distinct assets");
        let truth = a.truth_jsonl(&city);
        assert!(
            truth.contains(r#"{"kind":"lamp_failure","asset":"L"#),
            "{truth}"
        );
        assert!(
            truth
                .contains(r#""start":"2026-11-22T16:10:00.000Z","end":"2026-11-22T16:40:00.000Z""#),
            "{truth}"
        );
        assert!(
            truth.contains(r#""kind":"malformed_json""#) && truth.contains(r#""count":5"#),
            "{truth}"
        );
        assert!(
            truth.contains(r#""kind":"bunching""#) && truth.contains(r#""end":null,"partner":"V"#),
            "{truth}"
        );
    }

    #[test]
    fn bad_scenarios_are_explained() {
        let check = |text: &str, fragment: &str| {
            let err = Scenario::parse(text).map(|_| ()).unwrap_err().to_string();
            assert!(
                err.contains(fragment),
                "`{err}` should mention `{fragment}`"
            );
        };
        check("name='x'", "missing field");
        check(
            "name='x'\ndescription='d'\nduration_s=10\n[[fault]]\nkind='gremlins'\nat_s=1",
            "unknown variant `gremlins`",
        );
        check(
            "name='x'\ndescription='d'\nduration_s=10\n[[fault]]\nkind='leak'\nat_s=20",
            "fault 0 (leak): starts after the scenario ends",
        );
        check(
            "name='x'\ndescription='d'\nduration_s=10\n[[fault]]\nkind='power_restore'\nat_s=1",
            "needs a duration",
        );
        check(
            "name='x'\ndescription='d'\nduration_s=10\nstart='soon'",
            "not RFC 3339",
        );
        let s = Scenario::parse("name='x'\ndescription='d'\nduration_s=10\n[city]\nlamps=20\nmeters=1\nvehicles=0\n[[fault]]\nkind='leak'\nat_s=1\ncount=5").unwrap();
        let city = City::generate(&s.city_spec("x"));
        let err = s.plan(&city, Timestamp::now()).unwrap_err().to_string();
        assert!(err.contains("needs 5 assets"), "{err}");
    }

    #[test]
    fn every_shipped_scenario_parses_and_plans() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let s = Scenario::parse(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let city = City::generate(&s.city_spec("x"));
            s.plan(&city, s.start().unwrap_or_else(Timestamp::now))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            names.push(s.name);
        }
        names.sort();
        for wanted in [
            "every-fault",
            "power-restore",
            "quiet-night",
            "rush-hour",
            "storm-night",
            "water-leaks",
        ] {
            assert!(
                names.iter().any(|n| n == wanted),
                "{wanted} missing from {names:?}"
            );
        }
    }
}

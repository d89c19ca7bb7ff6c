//! (Tests.) Replays a scenario straight into the rules engine: the simulated fleet's messages are
//! decoded and observed in time order, with no broker and no database. Fast enough to run
//! every shipped scenario in a unit test, and it separates the engine's own verdicts from
//! what the full stack adds (`cityhub bench detection` measures the latter).

use std::collections::HashMap;
use std::sync::Arc;

use model::{decode_payload, Limits, RecordType, Timestamp};
use rules::{Asset, Decision, Engine, RulesConfig, State};
use simulators::city::{City, CitySpec};
use simulators::fleet::{Fleet, FleetSpec};
use simulators::scenario::{Scenario, TruthRecord};

/// An outage the engine opened: asset id (the inventory's), kind, simulated time.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    pub asset: String,
    pub kind: &'static str,
    pub at: Timestamp,
}

pub struct Replay {
    pub opened: Vec<Opened>,
    pub truth: Vec<TruthRecord>,
    /// Every device of the city (id, kind).
    pub devices: Vec<(String, model::Kind)>,
    /// The scenario's end, simulated.
    pub end: Timestamp,
}

/// Runs `scenario` through the engine, with time passing every `tick_s` simulated seconds.
pub fn replay(scenario: &Scenario, config: RulesConfig, tick_s: i64) -> anyhow::Result<Replay> {
    let spec = CitySpec {
        seed: scenario.city.seed,
        lamps: scenario.city.lamps,
        meters: scenario.city.meters,
        vehicles: scenario.city.vehicles,
        ..CitySpec::default()
    };
    let city = Arc::new(City::generate(&spec));
    let start = match &scenario.start {
        Some(s) => Timestamp::from_rfc3339(s).ok_or_else(|| anyhow::anyhow!("bad start {s}"))?,
        None => Timestamp::now(),
    };
    let plan = scenario.plan(&city, start)?;
    let devices = city.devices();
    let names: Vec<String> = devices.iter().map(|d| d.id.clone()).collect();
    let index: HashMap<&str, i32> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i as i32 + 1))
        .collect();
    let route_lines = city.route_lines();
    let route_id: HashMap<&str, i32> = route_lines
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.as_str(), i as i32 + 1))
        .collect();
    let assets = devices
        .iter()
        .enumerate()
        .map(|(i, d)| Asset {
            id: i as i32 + 1,
            name: d.id.clone(),
            kind: d.kind,
            cabinet: d.cabinet.as_deref().and_then(|c| index.get(c).copied()),
            rated_power_w: d.rated_power_w,
            route: d.route.as_deref().and_then(|r| route_id.get(r).copied()),
            lon: d.lon,
            lat: d.lat,
        })
        .collect();
    let routes = route_lines
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let headway_s = r.props.get("headway_s").and_then(|h| h.as_f64());
            let route = rules::Route {
                line: r.line.clone(),
                headway_s,
            };
            (i as i32 + 1, route)
        })
        .collect();
    let engine = Engine::new(config, assets, routes);
    let mut state = State::default();
    let mut fleet = Fleet::new(
        city.clone(),
        FleetSpec {
            seed: city.spec.seed,
            ..FleetSpec::default()
        },
        start,
    )
    .with_plan(&plan);
    let end = start.add_secs(scenario.duration_s as i64);
    let limits = Limits::default();
    let mut decisions = Vec::new();
    let mut out = Vec::new();
    let mut now = start;
    let debug_devs: Vec<String> = std::env::var("DEBUG_DEVS")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    while now <= end {
        out.clear();
        fleet.due(now, &mut out);
        for m in &out {
            if debug_devs.iter().any(|d| m.topic.contains(d))
                && now > start.add_secs(3600)
                && now < start.add_secs(3700)
            {
                eprintln!("{} {}", m.topic, m.payload);
            }
            let Ok(topic) = model::topic::Topic::parse(&m.topic) else {
                continue;
            };
            let Some(record) = RecordType::of(topic.kind, topic.channel) else {
                continue;
            };
            let Some(&id) = index.get(topic.device) else {
                continue;
            };
            let d = decode_payload(record, m.payload.as_bytes(), now, &limits);
            for row in &d.rows {
                engine.observe(&mut state, id, record, row, &mut decisions);
            }
        }
        engine.tick(&mut state, now, &mut decisions);
        now = now.add_secs(tick_s);
    }
    let opened = decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Open {
                asset, kind, at, ..
            } => Some(Opened {
                asset: names[*asset as usize - 1].clone(),
                kind: kind.as_str(),
                at: *at,
            }),
            _ => None,
        })
        .collect();
    let devices = devices.iter().map(|d| (d.id.clone(), d.kind)).collect();
    Ok(Replay {
        opened,
        truth: plan.truth(&city),
        devices,
        end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use simulators::clock::SimClock;
    use simulators::score::{Detected, Scoring, Truth};

    /// Every shipped scenario, straight into the engine: each kind's outages are exactly
    /// the ground truth's (no miss, no false alarm), each within a day of its fault.
    #[test]
    fn the_engine_finds_exactly_the_faults_of_every_shipped_scenario() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        assert!(files.len() >= 6, "{files:?}");
        for file in files {
            let scenario = Scenario::parse(&std::fs::read_to_string(&file).unwrap()).unwrap();
            let r = replay(&scenario, RulesConfig::default(), 5).unwrap();
            let truth: Vec<Truth> = r.truth.iter().filter_map(Truth::from_record).collect();
            let clock = SimClock {
                wall_origin_ms: 0,
                sim_origin_ms: 0,
                speed: 1.0,
            };
            let detected: Vec<Detected> = r
                .opened
                .iter()
                .map(|o| Detected {
                    asset: o.asset.clone(),
                    kind: o.kind.to_owned(),
                    opened_at: o.at,
                    recorded_wall: o.at,
                })
                .collect();
            let score = Scoring {
                truth: &truth,
                detected: &detected,
                scenario_end: r.end,
                clock,
                window_s: &|_| 86_400.0,
                devices: &r.devices,
            }
            .score();
            let totals = score.totals();
            assert!(
                totals.precision_min == 1.0 && totals.recall_min == 1.0,
                "{}:\n{}",
                scenario.name,
                score.table()
            );
        }
    }
}

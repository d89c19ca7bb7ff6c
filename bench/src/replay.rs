//! (Tests.) Replays a scenario straight into the rules engine: the simulated fleet's messages are
//! decoded and observed in time order, with no broker and no database. Fast enough to run
//! every shipped scenario in a unit test, and it separates the engine's own verdicts from
//! what the full stack adds (`cityhub bench detection` measures the latter).

use std::collections::HashMap;
use std::sync::Arc;

use model::{decode_payload, Limits, RecordType, Timestamp};
use rules::schedule::Instruction;
use rules::{Asset, Decision, Engine, Input, RulesConfig, State};
use simulators::city::{City, CitySpec};
use simulators::fleet::{Fleet, FleetSpec};
use simulators::scenario::{Scenario, TruthRecord};

/// An outage the engine opened: asset id (the inventory's), kind, simulated time, and
/// when it resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    pub asset: String,
    pub kind: &'static str,
    pub at: Timestamp,
    pub resolved_at: Option<Timestamp>,
}

pub struct Replay {
    pub opened: Vec<Opened>,
    pub truth: Vec<TruthRecord>,
    /// Every device of the city (id, kind).
    pub devices: Vec<(String, model::Kind)>,
    /// The city's inventory.
    pub inventory: Vec<model::Device>,
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
    let reorder_ms = config.stream.reorder_ms;
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
    // The scenario's commands: sent as the dispatcher would, answered by the fleet; an
    // answer `ok` tells the engine what the lamp should do, as the driver does.
    let mut commands = plan.commands.iter().peekable();
    let mut sent: HashMap<String, serde_json::Value> = HashMap::new();
    let tenant = city.spec.tenant.clone();
    while now <= end {
        out.clear();
        fleet.due(now, &mut out);
        while let Some(c) = commands.next_if(|c| c.at <= now) {
            for &lamp in &c.lamps {
                let id = format!("00000000-0000-4000-8000-{:012x}", sent.len() + 1);
                let mut body = c.body.clone();
                body["id"] = id.clone().into();
                body["ts"] = (now.micros() / 1000).into();
                let topic = format!("city/{tenant}/light/{}/cmd", names[lamp]);
                fleet.command(&topic, body.to_string().as_bytes(), now, &mut out);
                sent.insert(id, body);
            }
        }
        for m in &out {
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
            for row in d.rows {
                if record == RecordType::CmdAck {
                    use model::fields::cmd_ack;
                    let told = match (row.cell(cmd_ack::ID), row.cell(cmd_ack::STATUS).as_str()) {
                        (model::Cell::Uuid(u), Some("ok")) => sent.get(&u.to_string()),
                        _ => None,
                    };
                    if let Some(instruction) = told.and_then(Instruction::from_command) {
                        let from = row.ts.min(now);
                        let told = Input::Instructed {
                            asset: id,
                            from,
                            instruction,
                        };
                        engine.receive(&mut state, told, &mut decisions);
                    }
                }
                let o = model::Observation {
                    device_id: id,
                    record,
                    row,
                };
                engine.receive(&mut state, Input::Row(o), &mut decisions);
            }
        }
        let horizon = Timestamp(now.micros() - reorder_ms * 1000);
        engine.advance(&mut state, horizon, &mut decisions);
        now = now.add_secs(tick_s);
    }
    engine.advance(&mut state, end, &mut decisions);
    let mut opened: Vec<Opened> = Vec::new();
    let mut open: HashMap<(i32, &'static str), usize> = HashMap::new();
    for d in &decisions {
        match d {
            Decision::Open {
                asset, kind, at, ..
            } => {
                open.insert((*asset, kind.as_str()), opened.len());
                opened.push(Opened {
                    asset: names[*asset as usize - 1].clone(),
                    kind: kind.as_str(),
                    at: *at,
                    resolved_at: None,
                });
            }
            Decision::Resolve { asset, kind, at } => {
                if let Some(i) = open.remove(&(*asset, kind.as_str())) {
                    opened[i].resolved_at = Some(*at);
                }
            }
            Decision::Recur { .. } | Decision::Chattering { .. } => {}
        }
    }
    Ok(Replay {
        opened,
        truth: plan.truth(&city),
        devices: devices.iter().map(|d| (d.id.clone(), d.kind)).collect(),
        inventory: devices,
        end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use simulators::clock::SimClock;
    use simulators::score::{Detected, Scoring, Truth};

    /// Every shipped scenario, straight into the engine: each kind's outages are exactly
    /// the ground truth's (no miss, no false alarm), each within a day of its fault, and
    /// each whose fault ended resolved by its end plus the rule's resolve window.
    #[test]
    fn the_engine_finds_exactly_the_faults_of_every_shipped_scenario() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        assert!(files.len() >= 10, "{files:?}");
        let rules = RulesConfig::default();
        for file in files {
            let scenario = Scenario::parse(&std::fs::read_to_string(&file).unwrap()).unwrap();
            let r = replay(&scenario, rules.clone(), 5).unwrap();
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
                    resolved_at: o.resolved_at,
                })
                .collect();
            let spec = FleetSpec::default();
            let windows =
                crate::benches::detection::windows::Windows::new(&rules, &spec, &r.inventory);
            let score = Scoring {
                truth: &truth,
                detected: &detected,
                scenario_end: r.end,
                clock,
                window_s: &|_| 86_400.0,
                devices: &r.devices,
                resolve_s: &|t| windows.resolve_s(t),
            }
            .score();
            let totals = score.totals();
            let late: Vec<String> = score
                .late_resolutions
                .iter()
                .map(|m| {
                    format!(
                        "{} on {} ended {:?} resolved {:?}",
                        m.expected.kind,
                        m.expected.truth.asset,
                        m.expected.truth.end.map(|e| e.to_string()),
                        m.detected.resolved_at.map(|r| r.to_string())
                    )
                })
                .collect();
            assert!(
                totals.precision_min == 1.0 && totals.recall_min == 1.0 && late.is_empty(),
                "{}:\n{}\nlate: {late:#?}\nfalse positives: {:#?}",
                scenario.name,
                score.table(),
                score.false_positives
            );
        }
    }
}

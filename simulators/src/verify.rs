//! Checks a published message stream against a scenario's ground truth: every fault shows
//! its signature on its asset inside its window, and not outside it.

use std::collections::HashMap;

use model::Timestamp;
use serde_json::Value;

use crate::city::{City, Route};
use crate::scenario::{FaultKind, PlannedFault};

/// A message as a subscriber saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub topic: String,
    pub payload: Vec<u8>,
}

struct Reading {
    ts: Timestamp,
    v: Value,
}

/// Everything wrong with the stream; empty when it matches the truth.
pub fn check(city: &City, plan: &[PlannedFault], seen: &[Seen]) -> Vec<String> {
    let mut telemetry: HashMap<&str, Vec<Reading>> = HashMap::new();
    let mut raw: HashMap<&str, Vec<&Seen>> = HashMap::new();
    let mut status: HashMap<&str, Vec<(Timestamp, String)>> = HashMap::new();
    for s in seen {
        let mut parts = s.topic.split('/');
        let (Some(_), Some(_), Some(_), Some(device), Some(channel)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            continue;
        };
        raw.entry(device).or_default().push(s);
        let Ok(v) = serde_json::from_slice::<Value>(&s.payload) else {
            continue;
        };
        let items = match v {
            Value::Array(a) => a,
            other => vec![other],
        };
        for item in items {
            let Some(ts) = item
                .get("ts")
                .and_then(Value::as_i64)
                .and_then(Timestamp::from_unix_ms)
            else {
                continue;
            };
            match channel {
                "telemetry" => telemetry
                    .entry(device)
                    .or_default()
                    .push(Reading { ts, v: item }),
                "status" => {
                    let state = item
                        .get("state")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    status.entry(device).or_default().push((ts, state));
                }
                _ => {}
            }
        }
    }
    let mut problems = Vec::new();
    let empty = Vec::new();
    for f in plan {
        let inside = |t: Timestamp| t >= f.start && f.end.is_none_or(|e| t < e);
        let of = |id: &str| telemetry.get(id).unwrap_or(&empty);
        let mine = of(&f.asset);
        let (ins, outs): (Vec<&Reading>, Vec<&Reading>) = mine.iter().partition(|r| inside(r.ts));
        let mut fail = |why: String| {
            problems.push(format!(
                "{:?} on {} from {}: {why}",
                f.kind, f.asset, f.start
            ))
        };
        let b = |r: &Reading, k: &str| r.v.get(k).and_then(Value::as_bool).unwrap_or(false);
        let num = |r: &Reading, k: &str| r.v.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
        let text = |r: &Reading, k: &str| r.v.get(k).and_then(Value::as_str).map(str::to_owned);
        // A signature must hold on every reading inside (and some exist) and on none outside.
        let mut signature = |name: &str, holds: &dyn Fn(&Reading) -> bool| {
            if ins.is_empty() {
                fail(format!("no readings inside the window to show {name}"));
            } else if !ins.iter().all(|r| holds(r)) {
                fail(format!("{name} missing inside the window"));
            }
            if outs.iter().any(|r| holds(r)) {
                fail(format!("{name} outside the window"));
            }
        };
        match f.kind {
            FaultKind::LampFailure => signature("fault lamp_failure", &|r| {
                text(r, "fault").as_deref() == Some("lamp_failure")
            }),
            FaultKind::DriverFailure => signature("fault driver_failure", &|r| {
                text(r, "fault").as_deref() == Some("driver_failure")
            }),
            FaultKind::DayBurner => {
                if !ins.iter().any(|r| b(r, "on") && num(r, "lux") > 1000.0) {
                    fail("never burns in daylight".into());
                }
                if outs.iter().any(|r| b(r, "on") && num(r, "lux") > 1000.0) {
                    fail("burns in daylight outside the window".into());
                }
            }
            FaultKind::LampCycling => {
                let ons = ins.iter().filter(|r| b(r, "on")).count();
                if ons == 0 || ons == ins.len() || ins.len() < 4 {
                    fail(format!("{} readings, {ons} on: not cycling", ins.len()));
                }
            }
            FaultKind::VoltageOutOfRange => {
                signature("voltage over 253 V", &|r| num(r, "voltage_v") > 253.0)
            }
            FaultKind::CabinetSupplyLoss => signature("supply lost", &|r| !b(r, "supply")),
            FaultKind::Tamper => signature("tamper", &|r| b(r, "tamper")),
            FaultKind::ReverseFlow => signature("reverse flow", &|r| b(r, "reverse_flow")),
            FaultKind::StoppedTooLong => {
                signature("standing still", &|r| num(r, "speed_mps") == 0.0)
            }
            FaultKind::Leak => {
                // At night (0-4 h local), a healthy water meter reads zero flow.
                let night = |r: &Reading| {
                    let h = (r.ts.micros() / 3_600_000_000
                        + (city.spec.center.0 / 15.0).round() as i64)
                        .rem_euclid(24);
                    h <= 4
                };
                let nights_in: Vec<&&Reading> = ins.iter().filter(|r| night(r)).collect();
                if nights_in.is_empty() || nights_in.iter().any(|r| num(r, "flow_m3h") <= 0.0) {
                    fail("night flow does not stay above zero".into());
                }
                if outs.iter().any(|r| night(r) && num(r, "flow_m3h") > 0.0) {
                    fail("night flow before the leak".into());
                }
            }
            FaultKind::DeviceOffline | FaultKind::MeterSilent | FaultKind::VehicleSilent => {
                if !ins.is_empty() {
                    fail(format!("{} readings while silent", ins.len()));
                }
                if f.kind == FaultKind::DeviceOffline {
                    let st = status.get(f.asset.as_str()).unwrap_or(&Vec::new()).clone();
                    if !st.iter().any(|(t, s)| {
                        *t == Timestamp(f.start.micros() / 1000 * 1000) && s == "offline"
                    }) {
                        fail("no offline status at the start".into());
                    }
                }
            }
            FaultKind::Backlog => {
                // Its readings of the window come as one array, sent at its end.
                let held = raw.get(f.asset.as_str()).into_iter().flatten().any(|s| {
                    s.topic.ends_with("/telemetry")
                        && serde_json::from_slice::<Value>(&s.payload).is_ok_and(|v| {
                            v.as_array().is_some_and(|a| {
                                a.len() >= 2
                                    && a.iter().all(|r| {
                                        r.get("ts")
                                            .and_then(Value::as_i64)
                                            .and_then(Timestamp::from_unix_ms)
                                            .is_some_and(inside)
                                    })
                            })
                        })
                });
                if !held {
                    fail("no backlog array of the window's readings".into());
                }
            }
            FaultKind::PowerRestore => {
                let arrays = seen
                    .iter()
                    .filter(|s| s.topic.ends_with("/telemetry") && s.payload.first() == Some(&b'['))
                    .count();
                if arrays == 0 {
                    fail("no backlog arrays after the restore".into());
                }
            }
            FaultKind::OffRoute => {
                let route = route_of(city, &f.asset);
                signature("over 300 m from the route", &|r| {
                    route.is_some_and(|route| {
                        distance_to_route(route, num(r, "lon"), num(r, "lat")) > 300.0
                    })
                });
            }
            FaultKind::Bunching => {
                let partner = f.partner.map(|p| {
                    city.vehicles[p - city.cabinets.len() - city.lamps.len() - city.meters.len()]
                        .id
                        .clone()
                });
                let theirs = partner.as_deref().map(of).unwrap_or(&empty);
                // The two report on their own phases: allow for what a bus covers in between.
                let close = ins.iter().filter(|r| {
                    theirs
                        .iter()
                        .filter(|o| (o.ts.micros() - r.ts.micros()).abs() < 10_000_000)
                        .any(|o| {
                            let dt = (o.ts.micros() - r.ts.micros()).abs() as f64 / 1e6;
                            metres(num(r, "lon"), num(r, "lat"), num(o, "lon"), num(o, "lat"))
                                < 60.0 + 9.0 * dt
                        })
                });
                if close.count() == 0 {
                    fail("the pair never runs within 60 m".into());
                }
            }
            kind if kind.is_bad_traffic() => {
                let sent: Vec<&&Seen> = match kind {
                    FaultKind::UnknownDevice => raw
                        .iter()
                        .filter(|(d, _)| d.starts_with("GHOST-"))
                        .flat_map(|(_, v)| v)
                        .collect(),
                    _ => raw
                        .get(f.asset.as_str())
                        .map(|v| v.iter().collect())
                        .unwrap_or_default(),
                };
                let n = match kind {
                    FaultKind::MalformedJson => sent
                        .iter()
                        .filter(|s| serde_json::from_slice::<Value>(&s.payload).is_err())
                        .count(),
                    FaultKind::WrongTypes => sent
                        .iter()
                        .filter(|s| s.payload.windows(10).any(|w| w == br#""on":"yes""#))
                        .count(),
                    FaultKind::UnknownDevice => sent.len(),
                    FaultKind::Oversize => {
                        sent.iter().filter(|s| s.payload.len() > 256 * 1024).count()
                    }
                    FaultKind::Duplicates => {
                        let mut counts: HashMap<&[u8], usize> = HashMap::new();
                        for s in &sent {
                            *counts.entry(&s.payload).or_default() += 1;
                        }
                        counts
                            .values()
                            .max()
                            .copied()
                            .unwrap_or(0)
                            .saturating_sub(1)
                    }
                    FaultKind::OutOfOrder => sent
                        .iter()
                        .filter(|s| {
                            let v: Value =
                                serde_json::from_slice(&s.payload).unwrap_or(Value::Null);
                            let ts: Vec<i64> = v
                                .as_array()
                                .map(|a| a.iter().filter_map(|o| o["ts"].as_i64()).collect())
                                .unwrap_or_default();
                            ts.len() > 1 && ts.windows(2).all(|w| w[0] > w[1])
                        })
                        .count(),
                    _ => 0,
                };
                if n != f.count {
                    let topics: Vec<String> =
                        sent.iter().map(|s| s.topic.clone()).take(3).collect();
                    fail(format!(
                        "{n} such messages seen, {} in the truth ({topics:?})",
                        f.count
                    ));
                }
            }
            _ => {}
        }
    }
    problems
}

fn route_of<'a>(city: &'a City, vehicle: &str) -> Option<&'a Route> {
    let v = city.vehicles.iter().find(|v| v.id == vehicle)?;
    city.routes.iter().find(|r| r.id == v.route)
}

/// Metres between two WGS84 points (equirectangular; fine at city scale).
pub fn metres(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let k = 111_320.0;
    let x = (lon2 - lon1) * k * ((lat1 + lat2) / 2.0).to_radians().cos();
    let y = (lat2 - lat1) * k;
    (x * x + y * y).sqrt()
}

/// Metres from a point to a route's line.
pub fn distance_to_route(route: &Route, lon: f64, lat: f64) -> f64 {
    route
        .line
        .windows(2)
        .map(|w| {
            let k = 111_320.0;
            let c = lat.to_radians().cos();
            let (ax, ay) = ((w[0].0 - lon) * k * c, (w[0].1 - lat) * k);
            let (bx, by) = ((w[1].0 - lon) * k * c, (w[1].1 - lat) * k);
            let (dx, dy) = (bx - ax, by - ay);
            let len2 = dx * dx + dy * dy;
            let t = if len2 > 0.0 {
                (-(ax * dx + ay * dy) / len2).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let (px, py) = (ax + t * dx, ay + t * dy);
            (px * px + py * py).sqrt()
        })
        .fold(f64::INFINITY, f64::min)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::fleet::{Fleet, FleetSpec};
    use crate::scenario::Scenario;

    /// Every fault kind at once, replayed without a broker: the fleet publishes what the
    /// truth says, and the checker notices when it does not.
    #[test]
    fn the_fleet_injects_what_the_truth_says() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scenarios/every-fault.toml"
        ))
        .unwrap();
        let scenario = Scenario::parse(&text).unwrap();
        let city = Arc::new(City::generate(&scenario.city_spec("t")));
        let start = scenario.start().unwrap();
        let plan = scenario.plan(&city, start).unwrap();
        let mut fleet = Fleet::new(
            city.clone(),
            FleetSpec {
                seed: scenario.city.seed,
                ..FleetSpec::default()
            },
            start,
        )
        .with_plan(&plan);
        let mut out = Vec::new();
        let end = start.add_secs(scenario.duration_s as i64);
        let mut t = start;
        while t < end {
            t = t.add_secs(60);
            fleet.due(t, &mut out);
        }
        let seen: Vec<Seen> = out
            .iter()
            .map(|m| Seen {
                topic: m.topic.clone(),
                payload: m.payload.clone().into_bytes(),
            })
            .collect();
        let problems = check(&city, &plan.faults, &seen);
        assert!(problems.is_empty(), "{problems:#?}");
        let kinds: std::collections::HashSet<FaultKind> =
            plan.faults.iter().map(|f| f.kind).collect();
        assert_eq!(kinds.len(), 22, "every fault kind is exercised");

        // Against a plan that did not happen, the checker complains.
        let mut wrong = plan.faults.clone();
        wrong
            .iter_mut()
            .for_each(|f| f.start = f.start.add_secs(1800));
        assert!(!check(&city, &wrong, &seen).is_empty());
    }
}

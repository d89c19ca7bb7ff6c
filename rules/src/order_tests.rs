//! Metamorphic tests of the engine: the same readings, statuses and acknowledged commands
//! give the same outages, opened and resolved at the same instants, whatever order they
//! arrive in (within the reordering window), however they are split into batches, however
//! often they are delivered again, and however often time is passed. And when another
//! instance takes the rules over mid-stream, starting from the open outages, no outage is
//! opened twice nor resolved before it opened.

use std::collections::HashMap;

use model::{decode_payload, Limits, Observation, RecordType, Timestamp};
use proptest::prelude::*;
use serde_json::json;

use crate::config::RulesConfig;
use crate::engine::{Decision, Engine, OutageKind, State};
use crate::engine_tests::{at, engine, BUSES, CABINET, LAMPS, METER};
use crate::schedule::Instruction;
use crate::timeline::Input;

/// What a device (or an operator) does at some instant.
#[derive(Debug, Clone)]
enum Act {
    Lamp {
        lamp: usize,
        on: bool,
        power: f64,
        volts: u8,
        fault: bool,
    },
    Cabinet {
        supply: bool,
    },
    Status {
        /// 0: the cabinet, else a lamp.
        device: usize,
        online: bool,
    },
    Command {
        lamp: usize,
        on: bool,
        dim: u8,
        minutes: Option<u16>,
    },
    Water {
        flow: f64,
    },
    Bus {
        bus: usize,
        metres: f64,
        off_route: bool,
        speed: f64,
    },
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        6 => (0usize..4, any::<bool>(), 0.0f64..110.0, 0u8..3, proptest::bool::weighted(0.1))
            .prop_map(|(lamp, on, power, volts, fault)| Act::Lamp { lamp, on, power, volts, fault }),
        1 => any::<bool>().prop_map(|supply| Act::Cabinet { supply }),
        1 => (0usize..5, any::<bool>()).prop_map(|(device, online)| Act::Status { device, online }),
        1 => (0usize..4, any::<bool>(), 0u8..=100, proptest::option::of(1u16..240))
            .prop_map(|(lamp, on, dim, minutes)| Act::Command { lamp, on, dim, minutes }),
        2 => (0.0f64..0.3).prop_map(|flow| Act::Water { flow }),
        3 => (0usize..2, 0.0f64..1700.0, proptest::bool::weighted(0.2), 0.0f64..10.0)
            .prop_map(|(bus, metres, off_route, speed)| Act::Bus { bus, metres, off_route, speed }),
    ]
}

/// 15:00 UTC in Lisbon on 2026-11-22: daylight, dusk, a night with its leak window, dawn.
fn start() -> Timestamp {
    at("15:00")
}

fn row(device: i32, record: RecordType, ts: Timestamp, fields: serde_json::Value) -> Input {
    let mut body = fields;
    body["ts"] = json!(ts.micros() / 1000);
    let bytes = body.to_string();
    let decoded = decode_payload(record, bytes.as_bytes(), ts, &Limits::default());
    let row = decoded.rows.into_iter().next().expect("a valid row");
    Input::Row(Observation {
        device_id: device,
        record,
        row,
    })
}

fn input(ts: Timestamp, act: &Act) -> Input {
    match *act {
        Act::Lamp {
            lamp,
            on,
            power,
            volts,
            fault,
        } => {
            let volts = [0.0, 230.0, 262.0][volts as usize];
            let fault = if fault {
                json!("lamp_failure")
            } else {
                json!(null)
            };
            let fields = json!({"on": on, "power_w": power, "voltage_v": volts, "fault": fault});
            row(LAMPS[lamp], RecordType::Light, ts, fields)
        }
        Act::Cabinet { supply } => row(
            CABINET,
            RecordType::Cabinet,
            ts,
            json!({"supply": supply, "voltage_v": if supply { 230 } else { 0 }}),
        ),
        Act::Status { device, online } => {
            let id = if device == 0 {
                CABINET
            } else {
                LAMPS[device - 1]
            };
            let state = if online { "online" } else { "offline" };
            row(id, RecordType::Status, ts, json!({ "state": state }))
        }
        Act::Command {
            lamp,
            on,
            dim,
            minutes,
        } => {
            let mut body = json!({"action": "set_light", "on": on, "dim": dim});
            if let Some(m) = minutes {
                body["expires"] = json!(ts.add_secs(m as i64 * 60).micros() / 1000);
            }
            Input::Instructed {
                asset: LAMPS[lamp],
                from: ts,
                instruction: Instruction::from_command(&body).expect("a set_light body"),
            }
        }
        Act::Water { flow } => row(
            METER,
            RecordType::Meter,
            ts,
            json!({"medium": "water", "flow_m3h": flow}),
        ),
        Act::Bus {
            bus,
            metres,
            off_route,
            speed,
        } => {
            let lon = -9.15 + metres / 86_850.0;
            let lat = if off_route { 38.73 } else { 38.72 };
            let fields = json!({"lon": lon, "lat": lat, "speed_mps": speed});
            row(BUSES[bus], RecordType::Vehicle, ts, fields)
        }
    }
}

/// The stream: inputs at their times, one per (time, rank, device) as the database keeps
/// them, in time order.
fn stream(acts: &[(u32, Act)]) -> Vec<Input> {
    let mut inputs: Vec<Input> = acts
        .iter()
        .map(|(s, a)| input(start().add_secs(*s as i64), a))
        .collect();
    inputs.sort_by_key(|i| i.key());
    inputs.dedup_by_key(|i| i.key());
    inputs
}

/// How far behind the newest input's time the test judges (the driver's reorder window).
const WINDOW_S: i64 = 900;

fn end() -> Timestamp {
    start().add_secs(20 * 3600)
}

fn run(engine: &Engine, deliveries: &[Vec<Input>], ticks: &[u8]) -> Vec<Decision> {
    let mut state = State::default();
    let mut out = Vec::new();
    let mut newest: Option<Timestamp> = None;
    for (i, batch) in deliveries.iter().enumerate() {
        for input in batch {
            newest = newest.max(Some(input.key().0));
            engine.receive(&mut state, input.clone(), &mut out);
        }
        let Some(newest) = newest else { continue };
        let horizon = newest.add_secs(-WINDOW_S);
        // Time passed at some instant before the horizon, then up to it.
        let share = ticks.get(i).copied().unwrap_or(0) as i64;
        let before = Timestamp(horizon.micros() - (share * 1_000_000 * WINDOW_S) / 256);
        let before = before.max(state_horizon(&state));
        engine.advance(&mut state, before, &mut out);
        engine.advance(&mut state, horizon, &mut out);
    }
    engine.advance(&mut state, end(), &mut out);
    assert_eq!(engine.queued(&state), 0);
    out
}

/// As [`run`], but another instance takes the rules over before batch `cut`. The new
/// holder starts, as the driver does, from the outages open in the database (the
/// decisions so far). What the first had received and not yet judged is lost with it;
/// with `replay`, the rows among it are read back from the database (one per key, in time
/// order) and given to the new holder before anything else, as the driver does.
fn run_taken_over(
    engine: &Engine,
    deliveries: &[Vec<Input>],
    ticks: &[u8],
    cut: usize,
    replay: bool,
) -> Vec<Decision> {
    let cut = cut.min(deliveries.len());
    let mut first = State::default();
    let mut out = run_part(engine, &mut first, &deliveries[..cut], ticks, false);
    let mut stored: Vec<Input> = deliveries[..cut]
        .iter()
        .flatten()
        .filter(|i| matches!(i, Input::Row(_)) && Some(i.key().0) > first.horizon)
        .cloned()
        .collect();
    stored.sort_by_key(|i| i.key());
    stored.dedup_by_key(|i| i.key());
    // What the database holds of each open outage: its latest step (`last_seen`).
    let mut open: HashMap<(i32, OutageKind), Timestamp> = HashMap::new();
    for d in &out {
        match d {
            Decision::Open {
                asset, kind, at, ..
            }
            | Decision::Recur {
                asset, kind, at, ..
            }
            | Decision::Chattering { asset, kind, at } => {
                let step = open.entry((*asset, *kind)).or_insert(*at);
                *step = (*step).max(*at);
            }
            Decision::Resolve { asset, kind, .. } => {
                open.remove(&(*asset, *kind));
            }
        }
    }
    let mut state = State::default();
    for ((asset, kind), at) in open {
        state.restore_open(asset, kind, at);
    }
    let mut rest = deliveries[cut..].to_vec();
    if replay && !stored.is_empty() {
        rest.insert(0, stored);
    }
    let mut ticks = ticks.get(cut..).unwrap_or(&[]).to_vec();
    if replay {
        ticks.insert(0, 0);
    }
    out.extend(run_part(engine, &mut state, &rest, &ticks, true));
    out
}

/// The batches of [`run`] on `state`; to the end of the day when `last`.
fn run_part(
    engine: &Engine,
    state: &mut State,
    deliveries: &[Vec<Input>],
    ticks: &[u8],
    last: bool,
) -> Vec<Decision> {
    let mut out = Vec::new();
    let mut newest: Option<Timestamp> = None;
    for (i, batch) in deliveries.iter().enumerate() {
        for input in batch {
            newest = newest.max(Some(input.key().0));
            engine.receive(state, input.clone(), &mut out);
        }
        let Some(newest) = newest else { continue };
        let horizon = newest.add_secs(-WINDOW_S);
        let share = ticks.get(i).copied().unwrap_or(0) as i64;
        let before = Timestamp(horizon.micros() - (share * 1_000_000 * WINDOW_S) / 256);
        let before = before.max(state_horizon(state));
        engine.advance(state, before, &mut out);
        engine.advance(state, horizon, &mut out);
    }
    if last {
        engine.advance(state, end(), &mut out);
    }
    out
}

fn state_horizon(state: &State) -> Timestamp {
    state.horizon.unwrap_or(Timestamp(i64::MIN))
}

/// Decisions in a canonical order, with their times, for comparison.
fn canonical(decisions: &[Decision]) -> Vec<String> {
    let mut v: Vec<String> = decisions
        .iter()
        .map(|d| {
            let (at, rest) = match d {
                Decision::Open { at, .. }
                | Decision::Recur { at, .. }
                | Decision::Chattering { at, .. }
                | Decision::Resolve { at, .. } => (*at, format!("{d:?}")),
            };
            format!("{:020} {rest}", at.micros())
        })
        .collect();
    v.sort();
    v
}

/// Per (asset, kind): opened before anything else happens to it, steps in time order.
fn check_chronology(decisions: &[Decision]) -> Result<(), TestCaseError> {
    let mut last: HashMap<(i32, OutageKind), Timestamp> = HashMap::new();
    for d in decisions {
        match d {
            Decision::Open {
                asset, kind, at, ..
            } => {
                prop_assert!(last.insert((*asset, *kind), *at).is_none(), "{d:?} twice");
            }
            Decision::Recur {
                asset, kind, at, ..
            }
            | Decision::Chattering { asset, kind, at } => {
                let opened = last.get(&(*asset, *kind)).copied();
                prop_assert!(opened.is_some_and(|o| o <= *at), "{d:?} before {opened:?}");
                last.insert((*asset, *kind), *at);
            }
            Decision::Resolve { asset, kind, at } => {
                let before = last.remove(&(*asset, *kind));
                prop_assert!(before.is_some_and(|o| o <= *at), "{d:?} before {before:?}");
            }
        }
    }
    Ok(())
}

/// Deliveries: each input late by up to the window (so never behind the horizon), some
/// again at any later point, cut into batches.
fn deliveries(
    inputs: &[Input],
    delays: &[u16],
    again: &[(usize, usize)],
    cuts: &[usize],
) -> Vec<Vec<Input>> {
    let mut arriving: Vec<(i64, usize, Input)> = inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let delay = delays.get(i).copied().unwrap_or(0) as i64 % WINDOW_S;
            (input.key().0.micros() + delay * 1_000_000, i, input.clone())
        })
        .collect();
    arriving.sort_by_key(|a| (a.0, a.1));
    let mut order: Vec<Input> = arriving.into_iter().map(|a| a.2).collect();
    // Redeliveries of rows (a device's acknowledged command is never delivered twice: the
    // driver passes on only the answer that moved the command).
    for &(which, place) in again {
        if order.is_empty() {
            break;
        }
        let item = order[which % order.len()].clone();
        if matches!(item, Input::Row(_)) {
            let place = (which % order.len() + 1 + place % order.len()).min(order.len());
            order.insert(place, item);
        }
    }
    let mut batches = Vec::new();
    let mut rest = order.as_slice();
    for &cut in cuts {
        if rest.is_empty() {
            break;
        }
        let n = 1 + cut % rest.len();
        batches.push(rest[..n].to_vec());
        rest = &rest[n..];
    }
    if !rest.is_empty() {
        batches.push(rest.to_vec());
    }
    batches
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn order_batching_redelivery_and_ticks_change_no_outage(
        acts in proptest::collection::vec((0u32..(18 * 3600), act()), 1..160),
        delays in proptest::collection::vec(0u16..900, 160),
        again in proptest::collection::vec((0usize..1000, 0usize..1000), 0..20),
        cuts in proptest::collection::vec(0usize..40, 0..60),
        ticks in proptest::collection::vec(any::<u8>(), 60),
        unrated in any::<bool>(),
        takeover in proptest::option::of(0usize..60),
    ) {
        let mut engine = engine(RulesConfig::default());
        if unrated {
            // A lamp the inventory gives no rating: judged by its own word alone.
            engine.assets.get_mut(&LAMPS[3]).unwrap().rated_power_w = None;
        }
        let inputs = stream(&acts);
        let reference = run(&engine, std::slice::from_ref(&inputs), &[]);
        check_chronology(&reference)?;
        let shuffled = deliveries(&inputs, &delays, &again, &cuts);
        let other = run(&engine, &shuffled, &ticks);
        check_chronology(&other)?;
        prop_assert_eq!(canonical(&reference), canonical(&other));
        // Another instance takes the rules over mid-stream (its holder died), with or
        // without the rows its predecessor stored but had not judged: what it forgot may
        // change later verdicts, but an outage open at the takeover is never opened
        // again, and nothing resolves before it opened.
        if let Some(cut) = takeover {
            for replay in [false, true] {
                check_chronology(&run_taken_over(&engine, &shuffled, &ticks, cut, replay))?;
            }
        }
    }
}

/// A late backlog that shows the device kept working resolves its silence when it
/// arrives, never before the outage opened, and its readings are judged by the other
/// rules at their own times.
#[test]
fn a_late_backlog_resolves_the_silence_when_it_arrives() {
    let engine = engine(RulesConfig::default());
    let mut state = State::default();
    let mut out = Vec::new();
    let lamp = LAMPS[0];
    let burning = |ts| {
        input(
            ts,
            &Act::Lamp {
                lamp: 0,
                on: true,
                power: 98.0,
                volts: 1,
                fault: false,
            },
        )
    };
    engine.receive(&mut state, burning(at("02:00")), &mut out);
    // The rest of the city keeps the stream going until 06:00.
    let mut now = at("02:00");
    while now < at("06:00") {
        now = now.add_secs(60);
        let other = input(
            now,
            &Act::Lamp {
                lamp: 1,
                on: true,
                power: 98.0,
                volts: 1,
                fault: false,
            },
        );
        engine.receive(&mut state, other, &mut out);
        engine.advance(&mut state, Timestamp(now.micros() - 500_000), &mut out);
    }
    let silent: Vec<&Decision> = out
        .iter()
        .filter(|d| matches!(d, Decision::Open { asset, .. } if *asset == lamp))
        .collect();
    assert_eq!(silent.len(), 1, "{out:?}");
    let Decision::Open {
        kind, at: opened, ..
    } = silent[0]
    else {
        unreachable!()
    };
    assert_eq!(*kind, OutageKind::DeviceOffline);
    // 3 intervals of 15 min plus 10 s after it was last heard.
    assert_eq!(*opened, at("02:45").add_secs(10));
    // 06:00: the backlog, 02:06 to 05:51, in one array (one batch), newest first.
    let before = out.len();
    let mut backlog: Vec<Input> = (0..16)
        .map(|i| burning(at("02:06").add_secs(i * 900)))
        .collect();
    backlog.reverse();
    backlog.sort_by_key(|i| i.key());
    for i in backlog {
        engine.receive(&mut state, i, &mut out);
    }
    engine.advance(
        &mut state,
        Timestamp(at("06:00").micros() - 500_000),
        &mut out,
    );
    let after = &out[before..];
    let resolved: Vec<Timestamp> = after
        .iter()
        .filter_map(|d| match d {
            Decision::Resolve { asset, at, .. } if *asset == lamp => Some(*at),
            _ => None,
        })
        .collect();
    // Heard at the stream's time when it arrived: the horizon plus the reordering window.
    assert_eq!(
        resolved,
        [at("06:00")],
        "resolved when it was heard: {after:?}"
    );
    assert!(
        after.iter().all(|d| !matches!(d, Decision::Open { .. })),
        "{after:?}"
    );
    assert_eq!(state.late, 16);
}

/// The reading that shows a failed lamp burning again was stored, but the instance that
/// stored it was killed before the stream passed its time. The instance that takes the
/// rules over resolves the outage from it when it reads back what was stored after the
/// horizon on record; without that, the outage would stay open (and the lamp's next
/// failure would merge into it).
#[test]
fn a_reading_stored_but_not_judged_when_the_rules_stopped_is_judged_after_the_takeover() {
    let engine = engine(RulesConfig::default());
    let lamp = |ts, fault| {
        input(
            at(ts),
            &Act::Lamp {
                lamp: 0,
                on: true,
                power: if fault { 0.0 } else { 98.0 },
                volts: 1,
                fault,
            },
        )
    };
    let other = |ts| {
        input(
            at(ts),
            &Act::Lamp {
                lamp: 1,
                on: true,
                power: 98.0,
                volts: 1,
                fault: false,
            },
        )
    };
    let deliveries = vec![
        vec![
            lamp("21:00", true),
            lamp("21:15", true),
            lamp("21:30", true),
            lamp("21:45", true),
            lamp("22:00", false),
        ],
        vec![other("22:10"), other("22:20")],
    ];
    let failed = |d: &&Decision| matches!(d, Decision::Open { asset, kind: OutageKind::LampFailure, .. } if *asset == LAMPS[0]);
    let resolved = |out: &[Decision]| -> Vec<Timestamp> {
        out.iter()
            .filter_map(|d| match d {
                Decision::Resolve {
                    asset,
                    kind: OutageKind::LampFailure,
                    at,
                } if *asset == LAMPS[0] => Some(*at),
                _ => None,
            })
            .collect()
    };
    let reference = run(&engine, &deliveries, &[]);
    assert_eq!(reference.iter().filter(failed).count(), 1, "{reference:?}");
    let fixed = resolved(&reference);
    assert_eq!(fixed.len(), 1, "{reference:?}");
    assert!(fixed[0] >= at("22:00"), "{reference:?}");

    // Taken over after the first batch: its horizon (21:45) passed the failure, not the
    // repair.
    let lost = run_taken_over(&engine, &deliveries, &[], 1, false);
    assert_eq!(lost.iter().filter(failed).count(), 1, "{lost:?}");
    assert_eq!(resolved(&lost), [], "without the stored rows: {lost:?}");
    let replayed = run_taken_over(&engine, &deliveries, &[], 1, true);
    assert_eq!(replayed.iter().filter(failed).count(), 1, "{replayed:?}");
    assert_eq!(resolved(&replayed), fixed, "{replayed:?}");
}

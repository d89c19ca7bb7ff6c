//! The engine with injected time: no database, no sleeping.

use model::{decode_payload, Kind, Limits, RecordType, Timestamp};
use proptest::prelude::*;

use crate::config::RulesConfig;
use crate::engine::{Asset, Decision, Engine, OutageKind, State, Verdict};

pub(crate) const CABINET: i32 = 1;
pub(crate) const LAMPS: [i32; 4] = [2, 3, 4, 5];
pub(crate) const METER: i32 = 10;
pub(crate) const BUSES: [i32; 2] = [20, 21];
const ROUTE: i32 = 7;

pub(crate) fn asset(id: i32, kind: Kind) -> Asset {
    Asset {
        id,
        name: format!("D{id}"),
        kind,
        cabinet: None,
        rated_power_w: None,
        route: None,
        lon: -9.14,
        lat: 38.72,
    }
}

pub(crate) fn engine(config: RulesConfig) -> Engine {
    let mut assets = vec![asset(CABINET, Kind::Cabinet)];
    for id in LAMPS {
        assets.push(Asset {
            cabinet: Some(CABINET),
            rated_power_w: Some(100.0),
            ..asset(id, Kind::Light)
        });
    }
    assets.push(asset(METER, Kind::Meter));
    for id in BUSES {
        assets.push(Asset {
            route: Some(ROUTE),
            ..asset(id, Kind::Vehicle)
        });
    }
    // A route due east along the parallel 38.72 N, about 1.7 km long.
    let route = crate::Route {
        line: vec![(-9.15, 38.72), (-9.13, 38.72)],
        // Buses every 5 minutes: about 2.4 km apart at 8 m/s.
        headway_s: Some(300.0),
    };
    let routes = [(ROUTE, route)].into();
    Engine::new(config, assets, routes)
}

/// Rules whose devices are never found silent: for tests of other rules that feed a few
/// readings hours apart.
pub(crate) fn without_silence() -> RulesConfig {
    let mut c = RulesConfig::default();
    c.silence.intervals = 1_000.0;
    c
}

/// Lisbon, 2026-11-22: civil dusk about 17:45 UTC, civil dawn about 06:55 UTC.
pub(crate) fn at(hhmm: &str) -> Timestamp {
    Timestamp::from_rfc3339(&format!("2026-11-22T{hhmm}:00Z")).unwrap()
}

pub(crate) struct Run {
    pub engine: Engine,
    pub state: State,
    pub out: Vec<Decision>,
}

impl Run {
    pub fn new(config: RulesConfig) -> Run {
        Run {
            engine: engine(config),
            state: State::default(),
            out: Vec::new(),
        }
    }

    pub fn feed(
        &mut self,
        asset: i32,
        record: RecordType,
        ts: Timestamp,
        fields: &str,
    ) -> Vec<Decision> {
        let json = format!(
            r#"{{"ts":{}{}{fields}}}"#,
            ts.micros() / 1000,
            if fields.is_empty() { "" } else { "," }
        );
        let d = decode_payload(record, json.as_bytes(), ts, &Limits::default());
        assert!(d.rejected.is_empty(), "{json}: {:?}", d.rejected);
        let before = self.out.len();
        let dropped = self.state.dropped;
        for row in &d.rows {
            self.engine
                .observe(&mut self.state, asset, record, row, &mut self.out);
        }
        assert_eq!(
            self.state.dropped, dropped,
            "{json} is older than what device {asset} already said: not judged"
        );
        self.out[before..].to_vec()
    }

    pub fn lamp(
        &mut self,
        id: i32,
        ts: Timestamp,
        on: bool,
        power: f64,
        volts: f64,
    ) -> Vec<Decision> {
        self.feed(
            id,
            RecordType::Light,
            ts,
            &format!(r#""on":{on},"power_w":{power},"voltage_v":{volts}"#),
        )
    }

    pub fn tick(&mut self, now: Timestamp) -> Vec<Decision> {
        let before = self.out.len();
        self.engine.tick(&mut self.state, now, &mut self.out);
        self.out[before..].to_vec()
    }
}

pub(crate) fn opened(d: &[Decision]) -> Vec<(i32, OutageKind)> {
    d.iter()
        .filter_map(|d| match d {
            Decision::Open { asset, kind, .. } => Some((*asset, *kind)),
            _ => None,
        })
        .collect()
}

pub(crate) fn resolved(d: &[Decision]) -> Vec<(i32, OutageKind)> {
    d.iter()
        .filter_map(|d| match d {
            Decision::Resolve { asset, kind, .. } => Some((*asset, *kind)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_dark_lamp_at_night_is_a_lamp_failure_until_it_burns_again() {
    let mut r = Run::new(without_silence());
    assert!(r.lamp(2, at("19:00"), true, 98.0, 230.0).is_empty());
    assert!(
        r.lamp(2, at("19:15"), true, 4.0, 230.0).is_empty(),
        "on-delay: 10 min"
    );
    let d = r.lamp(2, at("19:30"), true, 3.0, 230.0);
    assert_eq!(opened(&d), [(2, OutageKind::LampFailure)]);
    match &d[0] {
        Decision::Open {
            reason, at: when, ..
        } => {
            assert!(reason.contains("draws 3.0 W of 100 W"), "{reason}");
            assert_eq!(*when, at("19:30"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        r.lamp(2, at("19:45"), true, 3.0, 230.0).is_empty(),
        "one outage, not one per reading"
    );
    // Daylight (the next day) says nothing about a failed lamp.
    let next = |hhmm| at(hhmm).add_secs(86_400);
    assert!(r.lamp(2, next("12:00"), false, 0.4, 230.0).is_empty());
    // Burning again: cleared after the off-delay (15 min).
    assert!(r.lamp(2, next("20:00"), true, 97.0, 230.0).is_empty());
    assert_eq!(
        resolved(&r.lamp(2, next("20:15"), true, 97.0, 230.0)),
        [(2, OutageKind::LampFailure)]
    );
}

#[test]
fn a_reported_fault_is_a_failure_by_day_too() {
    let mut r = Run::new(RulesConfig::default());
    r.feed(
        3,
        RecordType::Light,
        at("12:00"),
        r#""on":false,"power_w":0,"fault":"driver_failure""#,
    );
    let d = r.feed(
        3,
        RecordType::Light,
        at("12:15"),
        r#""on":false,"power_w":0,"fault":"driver_failure""#,
    );
    assert_eq!(opened(&d), [(3, OutageKind::LampFailure)]);
}

#[test]
fn burning_in_daylight_is_a_day_burner_but_not_near_dusk() {
    let mut r = Run::new(without_silence());
    assert_eq!(
        opened(&r.lamp(4, at("11:00"), true, 99.0, 230.0)),
        [(4, OutageKind::DayBurner)]
    );
    assert!(r.lamp(4, at("11:10"), false, 0.4, 230.0).is_empty());
    assert_eq!(
        resolved(&r.lamp(4, at("11:25"), false, 0.4, 230.0)),
        [(4, OutageKind::DayBurner)]
    );
    assert!(
        r.lamp(4, at("17:30"), true, 99.0, 230.0).is_empty(),
        "within 30 min of dusk"
    );
}

#[test]
fn voltage_needs_to_come_well_inside_the_band_to_clear() {
    let mut r = Run::new(RulesConfig::default());
    assert_eq!(
        opened(&r.lamp(5, at("19:00"), true, 99.0, 262.0)),
        [(5, OutageKind::VoltageOutOfRange)]
    );
    // 252 V is inside 207-253 V but not 3 V inside: still an alarm.
    assert!(r.lamp(5, at("19:10"), true, 99.0, 252.0).is_empty());
    assert!(r.lamp(5, at("19:40"), true, 99.0, 252.0).is_empty());
    assert!(r.lamp(5, at("19:50"), true, 99.0, 231.0).is_empty());
    assert_eq!(
        resolved(&r.lamp(5, at("20:00"), true, 99.0, 231.0)),
        [(5, OutageKind::VoltageOutOfRange)]
    );
}

#[test]
fn a_cabinet_supply_loss_is_one_outage_and_lamps_still_failing_after_it_get_their_own() {
    let mut r = Run::new(without_silence());
    for id in LAMPS {
        r.lamp(id, at("18:00"), true, 99.0, 230.0);
    }
    let d = r.feed(
        CABINET,
        RecordType::Cabinet,
        at("19:00"),
        r#""supply":false,"power_kw":0,"voltage_v":0"#,
    );
    assert_eq!(opened(&d), [(CABINET, OutageKind::CabinetSupplyLoss)]);
    for minute in ["19:05", "19:20", "19:35"] {
        for id in LAMPS {
            let d = r.lamp(id, at(minute), true, 0.0, 0.0);
            assert!(d.is_empty(), "lamp {id} is explained by its cabinet: {d:?}");
        }
    }
    // Supply back (the cabinet reports first); lamp 2 stays dark, the others burn.
    let d = r.feed(
        CABINET,
        RecordType::Cabinet,
        at("20:00"),
        r#""supply":true,"power_kw":0.3,"voltage_v":230"#,
    );
    assert_eq!(resolved(&d), [(CABINET, OutageKind::CabinetSupplyLoss)]);
    assert!(
        opened(&d).is_empty(),
        "lamps have not reported since: nothing to say yet"
    );
    let mut after = Vec::new();
    for minute in ["20:05", "20:20"] {
        for id in LAMPS {
            let power = if id == 2 { 0.5 } else { 98.0 };
            after.extend(r.lamp(id, at(minute), true, power, 230.0));
        }
    }
    assert_eq!(opened(&after), [(2, OutageKind::LampFailure)]);
    let open: Vec<_> = r.state.open().collect();
    assert_eq!(open, [(2, OutageKind::LampFailure)]);
}

#[test]
fn silence_and_last_will_make_a_device_offline_and_a_reading_brings_it_back() {
    let mut r = Run::new(RulesConfig::default());
    r.lamp(2, at("18:00"), true, 99.0, 230.0);
    r.feed(
        METER,
        RecordType::Meter,
        at("18:00"),
        r#""medium":"water","total":1"#,
    );
    // Lamps report every 15 min: silent after 45 min. Meters hourly: after 3 h.
    assert!(r.tick(at("18:44")).is_empty());
    assert_eq!(
        opened(&r.tick(at("18:46"))),
        [(2, OutageKind::DeviceOffline)]
    );
    assert!(r.tick(at("18:50")).is_empty(), "raised once");
    assert_eq!(
        opened(&r.tick(at("21:01"))),
        [(METER, OutageKind::MeterSilent)]
    );
    assert_eq!(
        resolved(&r.lamp(2, at("21:05"), true, 99.0, 230.0)),
        [(2, OutageKind::DeviceOffline)]
    );
    // The last will: raised after the grace (10 s), from the tick.
    assert!(r
        .feed(3, RecordType::Status, at("21:06"), r#""state":"offline""#)
        .is_empty());
    assert!(r.tick(at("21:06").add_secs(5)).is_empty());
    assert_eq!(
        opened(&r.tick(at("21:06").add_secs(11))),
        [(3, OutageKind::DeviceOffline)]
    );
    assert_eq!(
        resolved(&r.feed(3, RecordType::Status, at("21:20"), r#""state":"online""#)),
        [(3, OutageKind::DeviceOffline)]
    );
}

#[test]
fn meter_flags_open_and_clear() {
    let mut r = Run::new(RulesConfig::default());
    let d = r.feed(
        METER,
        RecordType::Meter,
        at("10:00"),
        r#""tamper":true,"reverse_flow":true"#,
    );
    assert_eq!(
        opened(&d),
        [
            (METER, OutageKind::Tamper),
            (METER, OutageKind::ReverseFlow)
        ]
    );
    let d = r.feed(
        METER,
        RecordType::Meter,
        at("11:00"),
        r#""tamper":false,"reverse_flow":true"#,
    );
    assert_eq!(resolved(&d), [(METER, OutageKind::Tamper)]);
}

proptest! {
    /// Whatever the readings, decisions per (asset, kind) alternate Open, Resolve, Open...,
    /// so the database's one-open-outage rule can never be violated by the engine.
    #[test]
    fn decisions_alternate_per_asset_and_kind(readings in proptest::collection::vec((0usize..4, 0i64..1440, any::<bool>(), 0.0f64..120.0, 180.0f64..270.0), 1..120)) {
        let mut r = Run::new(RulesConfig::default());
        let mut sorted = readings;
        sorted.sort_by_key(|x| (x.1, x.0));
        // One reading per lamp and minute, as the database keeps them.
        sorted.dedup_by_key(|x| (x.0, x.1));
        for (i, minute, on, power, volts) in sorted {
            let ts = at("00:00").add_secs(minute * 60);
            r.lamp(LAMPS[i], ts, on, power, volts);
            r.tick(ts);
        }
        let mut open = std::collections::HashSet::new();
        for d in &r.out {
            match d {
                Decision::Open { asset, kind, .. } => prop_assert!(open.insert((*asset, *kind)), "opened twice: {d:?}"),
                Decision::Recur { asset, kind, .. } | Decision::Chattering { asset, kind, .. } => prop_assert!(open.contains(&(*asset, *kind)), "not open: {d:?}"),
                Decision::Resolve { asset, kind, .. } => prop_assert!(open.remove(&(*asset, *kind)), "resolved unopened: {d:?}"),
            }
        }
        let mut state_open: Vec<_> = r.state.open().collect();
        state_open.sort();
        let mut ours: Vec<_> = open.into_iter().collect();
        ours.sort();
        prop_assert_eq!(state_open, ours);
    }
}

fn light(r: &mut Run, id: i32, hhmm: &str, fields: &str) -> Vec<Decision> {
    r.feed(id, RecordType::Light, at(hhmm), fields)
}

#[test]
fn commands_in_force_set_what_a_lamp_should_do() {
    use crate::schedule::Instruction;
    use serde_json::json;
    let mut r = Run::new(without_silence());
    let cmd = |body| Instruction::from_command(&body).unwrap();
    // Switched off at night by an operator until 20:00: dark is what it should be.
    let off = cmd(json!({"action": "set_light", "on": false, "expires": "2026-11-22T20:00:00Z"}));
    r.engine.instruct(&mut r.state, 2, off);
    for hhmm in ["19:00", "19:15", "19:30", "19:45"] {
        assert!(light(&mut r, 2, hhmm, r#""on":false,"power_w":0.4"#).is_empty());
    }
    // The command has expired: the astronomical clock again, and it should burn.
    light(&mut r, 2, "20:05", r#""on":false,"power_w":0.4"#);
    let d = light(&mut r, 2, "20:20", r#""on":false,"power_w":0.4"#);
    assert_eq!(opened(&d), [(2, OutageKind::LampFailure)]);

    // Dimmed to 40 %: 38 W is healthy, 8 W is not (below 30 % of 40 W).
    r.engine.instruct(
        &mut r.state,
        3,
        cmd(json!({"action": "set_light", "on": true, "dim": 40})),
    );
    assert!(light(&mut r, 3, "19:00", r#""on":true,"power_w":38"#).is_empty());
    light(&mut r, 3, "19:15", r#""on":true,"power_w":8"#);
    let d = light(&mut r, 3, "19:30", r#""on":true,"power_w":8"#);
    assert_eq!(opened(&d), [(3, OutageKind::LampFailure)]);

    // Switched on by day for a test: burning is no day burner.
    r.engine.instruct(
        &mut r.state,
        4,
        cmd(json!({"action": "set_light", "on": true})),
    );
    assert!(light(&mut r, 4, "11:00", r#""on":true,"power_w":99"#).is_empty());
    // A schedule replaces the override: part-night off from 01:00 (local solar time).
    let schedule = cmd(
        json!({"action": "set_schedule", "steps": [{"from": "01:00", "to": "05:00", "dim": 0}]}),
    );
    r.engine.instruct(&mut r.state, 4, schedule);
    assert_eq!(
        opened(&light(&mut r, 4, "11:30", r#""on":true,"power_w":99"#)),
        [(4, OutageKind::DayBurner)]
    );
    for hhmm in ["02:00", "02:15", "02:30"] {
        let night = at(hhmm).add_secs(86_400);
        let d = r.feed(4, RecordType::Light, night, r#""on":false,"power_w":0.4"#);
        assert!(d.is_empty(), "{d:?}");
    }
}

#[test]
fn a_later_set_light_ends_the_one_held_and_its_expiry_returns_the_schedule() {
    use crate::schedule::Instruction;
    use serde_json::json;
    let mut r = Run::new(without_silence());
    let cmd = |body| Instruction::from_command(&body).unwrap();
    // Switched on by day until 16:00 for a test, then sent back to its schedule at 11:30:
    // told what the schedule asks for (off) for a minute.
    let test = cmd(json!({"action": "set_light", "on": true, "expires": "2026-11-22T16:00:00Z"}));
    r.engine.instruct(&mut r.state, 4, test);
    assert!(light(&mut r, 4, "11:00", r#""on":true,"power_w":99"#).is_empty());
    let resume = cmd(
        json!({"action": "set_light", "on": false, "dim": 0, "expires": "2026-11-22T11:31:00Z"}),
    );
    r.engine.instruct(&mut r.state, 4, resume);
    for hhmm in ["11:45", "12:00"] {
        let d = light(&mut r, 4, hhmm, r#""on":false,"power_w":0.4"#);
        assert!(d.is_empty(), "{d:?}");
    }
    // The schedule again, not the test held until 16:00: burning by day is a day burner.
    let mut d = Vec::new();
    for hhmm in ["12:15", "12:30", "12:45", "13:00", "13:15"] {
        d.extend(light(&mut r, 4, hhmm, r#""on":true,"power_w":99"#));
    }
    assert_eq!(opened(&d), [(4, OutageKind::DayBurner)], "{d:?}");
}

#[test]
fn a_relay_switching_again_and_again_is_lamp_cycling() {
    let mut r = Run::new(RulesConfig::default());
    let mut all = Vec::new();
    for (i, hhmm) in ["20:00", "20:15", "20:30", "20:45"].iter().enumerate() {
        let on = i % 2 == 0;
        let power = if on { 98.0 } else { 0.4 };
        all.extend(light(
            &mut r,
            5,
            hhmm,
            &format!(r#""on":{on},"power_w":{power}"#),
        ));
    }
    assert_eq!(opened(&all), [(5, OutageKind::LampCycling)], "{all:?}");
    // Steady again: cleared an hour (the off-delay) after the first steady report.
    let mut later = Vec::new();
    for hhmm in [
        "21:00", "21:15", "21:30", "21:45", "22:00", "22:15", "22:30", "22:45",
    ] {
        later.extend(light(&mut r, 5, hhmm, r#""on":true,"power_w":98"#));
    }
    assert_eq!(resolved(&later), [(5, OutageKind::LampCycling)]);
    // Dusk and dawn are one switch each: nothing.
    let mut r = Run::new(without_silence());
    light(&mut r, 2, "17:30", r#""on":false,"power_w":0.4"#);
    light(&mut r, 2, "18:00", r#""on":true,"power_w":98"#);
    let dawn = at("07:30").add_secs(86_400);
    let d = r.feed(2, RecordType::Light, dawn, r#""on":false,"power_w":0.4"#);
    assert!(d.is_empty(), "{d:?}");
}

#[test]
fn most_lamps_of_a_cabinet_dark_together_is_its_supply_loss() {
    let config =
        RulesConfig::parse("[cabinet_supply_loss]\nmin_lamps = 4\ndark_share = 0.75").unwrap();
    let mut r = Run::new(config);
    for id in LAMPS {
        light(
            &mut r,
            id,
            "19:00",
            r#""on":true,"power_w":98,"voltage_v":230"#,
        );
    }
    let mut d = light(&mut r, 2, "19:10", r#""on":true,"power_w":0,"voltage_v":0"#);
    d.extend(light(
        &mut r,
        3,
        "19:11",
        r#""on":true,"power_w":0,"voltage_v":0"#,
    ));
    assert!(d.is_empty(), "two of four is not most: {d:?}");
    let d = light(&mut r, 4, "19:12", r#""on":true,"power_w":0,"voltage_v":0"#);
    assert_eq!(opened(&d), [(CABINET, OutageKind::CabinetSupplyLoss)]);
    match &d[0] {
        Decision::Open { reason, .. } => assert!(
            reason.contains("3 of its 4 lamps went dark together"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    // The lamps' own failures are explained by it.
    let mut lamps = Vec::new();
    for hhmm in ["19:25", "19:40"] {
        for id in [2, 3, 4] {
            lamps.extend(light(
                &mut r,
                id,
                hhmm,
                r#""on":true,"power_w":0,"voltage_v":0"#,
            ));
        }
    }
    assert!(lamps.is_empty(), "{lamps:?}");
    // Back: once most of its lamps burn again the inferred loss clears.
    let d = light(
        &mut r,
        2,
        "19:50",
        r#""on":true,"power_w":98,"voltage_v":230"#,
    );
    assert_eq!(resolved(&d), [(CABINET, OutageKind::CabinetSupplyLoss)]);
}

#[test]
fn a_cabinet_and_its_lamps_going_offline_together_is_one_outage() {
    let mut r = Run::new(RulesConfig::default());
    // The lamps' last wills arrive before the cabinet's.
    for id in LAMPS {
        r.feed(id, RecordType::Status, at("20:00"), r#""state":"offline""#);
    }
    r.feed(
        CABINET,
        RecordType::Status,
        at("20:00"),
        r#""state":"offline""#,
    );
    let d = r.tick(at("20:01"));
    assert_eq!(opened(&d), [(CABINET, OutageKind::DeviceOffline)]);
    // Back online: the cabinet resolves, and a lamp that stays silent gets its own.
    let mut d = r.feed(
        CABINET,
        RecordType::Status,
        at("20:30"),
        r#""state":"online""#,
    );
    for id in [3, 4, 5] {
        d.extend(r.feed(id, RecordType::Status, at("20:30"), r#""state":"online""#));
    }
    assert_eq!(resolved(&d), [(CABINET, OutageKind::DeviceOffline)]);
    // Lamp 2's "online" may be on its way: it gets its own silence window (45 min and the
    // grace) from the cabinet's return, and only then is found silent.
    let lamp_2 = |d: Vec<Decision>| -> Vec<(i32, OutageKind)> {
        opened(&d).into_iter().filter(|o| o.0 == 2).collect()
    };
    assert!(lamp_2(r.tick(at("20:31"))).is_empty());
    // (The cabinet keeps reporting: were it silent, it would explain lamp 2 again.)
    r.feed(
        CABINET,
        RecordType::Cabinet,
        at("21:10"),
        r#""supply":true"#,
    );
    assert!(lamp_2(r.tick(at("21:15"))).is_empty());
    assert_eq!(
        lamp_2(r.tick(at("21:16"))),
        [(2, OutageKind::DeviceOffline)]
    );
}

fn water(r: &mut Run, hhmm: &str, flow: f64) -> Vec<Decision> {
    r.feed(
        METER,
        RecordType::Meter,
        at(hhmm),
        &format!(r#""medium":"water","flow_m3h":{flow}"#),
    )
}

#[test]
fn water_that_never_stops_through_the_night_is_a_leak() {
    let mut r = Run::new(without_silence());
    // Lisbon's solar time is about 37 min behind UTC: the 01:00-04:00 window is
    // 01:37-04:37 UTC.
    let mut d = Vec::new();
    for (hhmm, flow) in [
        ("00:40", 0.3),
        ("01:40", 0.1),
        ("02:40", 0.09),
        ("03:40", 0.12),
    ] {
        d.extend(water(&mut r, hhmm, flow));
    }
    assert!(d.is_empty(), "judged only when the night is over: {d:?}");
    let d = water(&mut r, "04:40", 0.5);
    assert_eq!(opened(&d), [(METER, OutageKind::Leak)]);
    match &d[0] {
        Decision::Open { reason, .. } => assert!(reason.contains("0.09 m3/h"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // A household: flow drops to zero for a while every night. The next night is clean.
    let next = |hhmm: &str| at(hhmm).add_secs(86_400);
    let mut d = Vec::new();
    for (ts, flow) in [
        (next("01:40"), 0.1),
        (next("02:40"), 0.0),
        (next("03:40"), 0.2),
        (next("04:40"), 0.3),
    ] {
        let fields = format!(r#""medium":"water","flow_m3h":{flow}"#);
        d.extend(r.feed(METER, RecordType::Meter, ts, &fields));
    }
    assert_eq!(resolved(&d), [(METER, OutageKind::Leak)]);
}

fn bus(r: &mut Run, id: i32, ts: Timestamp, lon: f64, lat: f64, speed: f64) -> Vec<Decision> {
    r.feed(
        id,
        RecordType::Vehicle,
        ts,
        &format!(r#""lat":{lat},"lon":{lon},"speed_mps":{speed},"bearing_deg":90"#),
    )
}

#[test]
fn vehicles_off_route_bunched_or_stopped() {
    let mut r = Run::new(without_silence());
    let t0 = at("08:00");
    // Bus 20 drives east along its route; 1 km north of it for over two minutes.
    let mut d = Vec::new();
    for s in (0..=150).step_by(10) {
        d.extend(bus(
            &mut r,
            20,
            t0.add_secs(s),
            -9.149 + s as f64 * 1e-5,
            38.729,
            8.0,
        ));
    }
    assert_eq!(opened(&d), [(20, OutageKind::OffRoute)]);
    match &d[0] {
        Decision::Open {
            reason, at: when, ..
        } => {
            assert!(reason.contains("m from its route"), "{reason}");
            assert_eq!(*when, t0.add_secs(120), "on-delay: 2 min");
        }
        other => panic!("{other:?}"),
    }
    let back = bus(&mut r, 20, t0.add_secs(160), -9.14, 38.72, 8.0);
    assert!(back.is_empty(), "off-delay");
    assert_eq!(
        resolved(&bus(&mut r, 20, t0.add_secs(230), -9.14, 38.72, 8.0)),
        [(20, OutageKind::OffRoute)]
    );

    // Bus 21 follows 20 m behind bus 20, the same way: one outage for the pair.
    let t1 = at("09:00");
    let mut d = Vec::new();
    for s in (0..=70).step_by(10) {
        let lon = -9.145 + s as f64 * 1e-4;
        d.extend(bus(&mut r, 20, t1.add_secs(s), lon, 38.72, 8.0));
        d.extend(bus(
            &mut r,
            21,
            t1.add_secs(s + 1),
            lon - 0.0002,
            38.72,
            8.0,
        ));
    }
    assert_eq!(opened(&d), [(20, OutageKind::Bunching)]);
    // Passing each other the other way is no bunching: close for seconds only.
    let mut r2 = Run::new(without_silence());
    let mut d = Vec::new();
    let metre = 1.0 / 86_850.0; // a metre of longitude at 38.72 N
    for s in (0..=120).step_by(10) {
        let east = -9.145 + 8.0 * s as f64 * metre;
        let west = -9.137 - 8.0 * s as f64 * metre;
        d.extend(bus(&mut r2, 20, t1.add_secs(s), east, 38.72, 8.0));
        d.extend(r2.feed(
            21,
            RecordType::Vehicle,
            t1.add_secs(s),
            &format!(r#""lat":38.72,"lon":{west},"speed_mps":8,"bearing_deg":270"#),
        ));
    }
    assert!(opened(&d).is_empty(), "{d:?}");

    // Stopped for more than five minutes.
    let t2 = at("10:00");
    let mut d = Vec::new();
    for s in (0..=310).step_by(10) {
        d.extend(bus(&mut r2, 21, t2.add_secs(s), -9.14, 38.72, 0.0));
    }
    assert_eq!(opened(&d), [(21, OutageKind::StoppedTooLong)]);
}

#[test]
fn a_chattering_alarm_is_held_open_and_counted_until_quiet() {
    let config = RulesConfig::parse("[voltage]\noff_delay_s = 0").unwrap();
    let mut r = Run::new(config);
    let mut d = Vec::new();
    for (i, minute) in (0..8).map(|i| (i, i * 5)) {
        let volts = if i % 2 == 0 { 262.0 } else { 230.0 };
        let ts = at("19:00").add_secs(minute * 60);
        d.extend(r.lamp(5, ts, true, 99.0, volts));
    }
    let kinds: Vec<&str> = d
        .iter()
        .map(|d| match d {
            Decision::Open { .. } => "open",
            Decision::Recur { .. } => "recur",
            Decision::Chattering { .. } => "chattering",
            Decision::Resolve { .. } => "resolve",
        })
        .collect();
    // Raised, cleared, raised, cleared, raised (third time within the hour), then held:
    // the fourth raise is an occurrence of the same outage.
    assert_eq!(
        kinds,
        [
            "open",
            "resolve",
            "open",
            "resolve",
            "open",
            "chattering",
            "recur"
        ]
    );
    // Quiet for the window (an hour after the last raise): resolved by the tick.
    assert!(r.tick(at("20:00")).is_empty());
    r.lamp(5, at("20:10"), true, 99.0, 230.0);
    assert_eq!(
        resolved(&r.tick(at("20:31"))),
        [(5, OutageKind::VoltageOutOfRange)]
    );
}

#[test]
fn faults_inside_a_maintenance_window_open_only_if_they_outlast_it() {
    let mut r = Run::new(RulesConfig::default());
    r.engine.set_maintenance(vec![crate::MaintenanceWindow {
        from: at("19:00"),
        until: at("21:00"),
        assets: [2, 3].into(),
    }]);
    let mut d = Vec::new();
    for hhmm in ["19:10", "19:25", "19:40"] {
        d.extend(r.lamp(2, at(hhmm), true, 0.0, 230.0));
        d.extend(r.lamp(3, at(hhmm), true, 0.0, 230.0));
    }
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(r.state.maintenance_suppressed, 2);
    // Lamp 3 is repaired inside the window; lamp 2 is still dark when it ends.
    for hhmm in ["20:00", "20:20", "20:40"] {
        r.lamp(3, at(hhmm), true, 98.0, 230.0);
        r.lamp(2, at(hhmm), true, 0.0, 230.0);
    }
    assert!(r.tick(at("20:59")).is_empty());
    assert_eq!(opened(&r.tick(at("21:00"))), [(2, OutageKind::LampFailure)]);
}

#[test]
fn a_repair_is_verified_by_telemetry_or_reopened() {
    let config = RulesConfig::parse("[work_orders]\nverify_hold_s = 1800").unwrap();
    let mut r = Run::new(config);
    let lf = OutageKind::LampFailure;
    for hhmm in ["19:00", "19:15"] {
        r.lamp(2, at(hhmm), true, 0.0, 230.0);
        r.lamp(3, at(hhmm), true, 0.0, 230.0);
    }
    // Both reported done at 19:20; lamp 2 burns afterwards, lamp 3 does not.
    let done = at("19:20");
    assert_eq!(r.engine.verdict(&r.state, 2, lf, done), Verdict::Pending);
    for hhmm in ["19:30", "19:45"] {
        r.lamp(2, at(hhmm), true, 98.0, 230.0);
    }
    assert_eq!(
        r.engine.verdict(&r.state, 2, lf, done),
        Verdict::Pending,
        "hold: 30 min"
    );
    r.lamp(2, at("20:00"), true, 98.0, 230.0);
    assert_eq!(r.engine.verdict(&r.state, 2, lf, done), Verdict::Verified);
    // "Done" before the last faulty reading is contradicted by it.
    assert!(matches!(
        r.engine.verdict(&r.state, 2, lf, at("19:10")),
        Verdict::Reopened(_)
    ));
    r.lamp(3, at("19:30"), true, 0.0, 230.0);
    match r.engine.verdict(&r.state, 3, lf, done) {
        Verdict::Reopened(why) => assert!(why.contains("still shows lamp_failure"), "{why}"),
        other => panic!("{other:?}"),
    }
}

//! The engine with injected time: no database, no sleeping.

use model::{decode_payload, Kind, Limits, RecordType, Timestamp};
use proptest::prelude::*;

use crate::config::RulesConfig;
use crate::engine::{Asset, Decision, Engine, OutageKind, State};

const CABINET: i32 = 1;
const LAMPS: [i32; 4] = [2, 3, 4, 5];
const METER: i32 = 10;

fn engine(config: RulesConfig) -> Engine {
    let mut assets = vec![Asset {
        id: CABINET,
        kind: Kind::Cabinet,
        cabinet: None,
        rated_power_w: None,
        lon: -9.14,
        lat: 38.72,
    }];
    for id in LAMPS {
        assets.push(Asset {
            id,
            kind: Kind::Light,
            cabinet: Some(CABINET),
            rated_power_w: Some(100.0),
            lon: -9.14,
            lat: 38.72,
        });
    }
    assets.push(Asset {
        id: METER,
        kind: Kind::Meter,
        cabinet: None,
        rated_power_w: None,
        lon: -9.14,
        lat: 38.72,
    });
    Engine::new(config, assets)
}

/// Lisbon, 2026-11-22: civil dusk about 17:45 UTC, civil dawn about 06:55 UTC.
fn at(hhmm: &str) -> Timestamp {
    Timestamp::from_rfc3339(&format!("2026-11-22T{hhmm}:00Z")).unwrap()
}

struct Run {
    engine: Engine,
    state: State,
    out: Vec<Decision>,
}

impl Run {
    fn new(config: RulesConfig) -> Run {
        Run {
            engine: engine(config),
            state: State::default(),
            out: Vec::new(),
        }
    }

    fn feed(
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
        for row in &d.rows {
            self.engine
                .observe(&mut self.state, asset, record, row, &mut self.out);
        }
        self.out[before..].to_vec()
    }

    fn lamp(&mut self, id: i32, ts: Timestamp, on: bool, power: f64, volts: f64) -> Vec<Decision> {
        self.feed(
            id,
            RecordType::Light,
            ts,
            &format!(r#""on":{on},"power_w":{power},"voltage_v":{volts}"#),
        )
    }

    fn tick(&mut self, now: Timestamp) -> Vec<Decision> {
        let before = self.out.len();
        self.engine.tick(&mut self.state, now, &mut self.out);
        self.out[before..].to_vec()
    }
}

fn opened(d: &[Decision]) -> Vec<(i32, OutageKind)> {
    d.iter()
        .filter_map(|d| match d {
            Decision::Open { asset, kind, .. } => Some((*asset, *kind)),
            _ => None,
        })
        .collect()
}

fn resolved(d: &[Decision]) -> Vec<(i32, OutageKind)> {
    d.iter()
        .filter_map(|d| match d {
            Decision::Resolve { asset, kind, .. } => Some((*asset, *kind)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_dark_lamp_at_night_is_a_lamp_failure_until_it_burns_again() {
    let mut r = Run::new(RulesConfig::default());
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
    // Daylight says nothing about a failed lamp.
    assert!(r.lamp(2, at("12:00"), false, 0.4, 230.0).is_empty());
    // Burning again: cleared after the off-delay (15 min).
    assert!(r.lamp(2, at("20:00"), true, 97.0, 230.0).is_empty());
    assert_eq!(
        resolved(&r.lamp(2, at("20:15"), true, 97.0, 230.0)),
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
    let mut r = Run::new(RulesConfig::default());
    assert!(
        r.lamp(4, at("17:30"), true, 99.0, 230.0).is_empty(),
        "within 30 min of dusk"
    );
    assert_eq!(
        opened(&r.lamp(4, at("11:00"), true, 99.0, 230.0)),
        [(4, OutageKind::DayBurner)]
    );
    assert!(r.lamp(4, at("11:10"), false, 0.4, 230.0).is_empty());
    assert_eq!(
        resolved(&r.lamp(4, at("11:25"), false, 0.4, 230.0)),
        [(4, OutageKind::DayBurner)]
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
    let mut r = Run::new(RulesConfig::default());
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
    let d = r.feed(3, RecordType::Status, at("21:06"), r#""state":"offline""#);
    assert_eq!(opened(&d), [(3, OutageKind::DeviceOffline)]);
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
        sorted.sort_by_key(|x| x.1);
        for (i, minute, on, power, volts) in sorted {
            let ts = at("00:00").add_secs(minute * 60);
            r.lamp(LAMPS[i], ts, on, power, volts);
            r.tick(ts);
        }
        let mut open = std::collections::HashSet::new();
        for d in &r.out {
            match d {
                Decision::Open { asset, kind, .. } => prop_assert!(open.insert((*asset, *kind)), "opened twice: {d:?}"),
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

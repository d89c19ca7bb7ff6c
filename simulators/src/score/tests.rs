//! Scoring cases: truth and detections in, counts per kind out (`check`).

use super::*;

const START: &str = "2026-11-22T18:00:00Z";

fn at(s: i64) -> Timestamp {
    Timestamp::from_rfc3339(START).unwrap().add_secs(s)
}

/// Simulated START is wall 1,000,000 ms, 100 simulated seconds per real second.
fn clock() -> SimClock {
    SimClock {
        wall_origin_ms: 1_000_000,
        sim_origin_ms: at(0).micros() / 1000,
        speed: 100.0,
    }
}

fn truth(kind: FaultKind, asset: &str, start: i64, end: Option<i64>) -> Truth {
    Truth {
        kind,
        asset: asset.into(),
        start: at(start),
        end: end.map(at),
        partner: None,
    }
}

/// Opened at simulated `opened`, written `late` real seconds after that instant.
fn seen(kind: &str, asset: &str, opened: i64, late: f64) -> Detected {
    let opened_at = at(opened);
    Detected {
        asset: asset.into(),
        kind: kind.into(),
        opened_at,
        recorded_wall: plus(wall_of(&clock(), opened_at), late),
        resolved_at: None,
    }
}

fn devices() -> Vec<(String, Kind)> {
    vec![
        ("C1".into(), Kind::Cabinet),
        ("L1".into(), Kind::Light),
        ("M1".into(), Kind::Meter),
        ("V1".into(), Kind::Vehicle),
    ]
}

/// Windows of 600 simulated seconds; the scenario ends at 7200.
fn run(truth: &[Truth], detected: &[Detected]) -> Score {
    Scoring {
        truth,
        detected,
        scenario_end: at(7200),
        clock: clock(),
        window_s: &|_| 600.0,
        devices: &devices(),
        resolve_s: &|_| Some(300.0),
    }
    .score()
}

/// (kind, tp, fp, fn) per row.
fn counts(score: &Score) -> Vec<(String, usize, usize, usize)> {
    score
        .rows()
        .into_iter()
        .map(|r| (r.kind, r.tp, r.fp, r.fn_))
        .collect()
}

fn check(truth: &[Truth], detected: &[Detected], want: &[(&str, usize, usize, usize)]) {
    let got = counts(&run(truth, detected));
    let want: Vec<(String, usize, usize, usize)> = want
        .iter()
        .map(|&(k, tp, fp, fn_)| (k.to_owned(), tp, fp, fn_))
        .collect();
    assert_eq!(got, want, "truth {truth:?}\ndetected {detected:?}");
}

#[test]
fn detections_match_within_start_to_end_plus_window() {
    use FaultKind::*;
    let fault = [truth(LampFailure, "L1", 1000, Some(2000))];
    check(
        &fault,
        &[seen("lamp_failure", "L1", 1500, 0.0)],
        &[("lamp_failure", 1, 0, 0)],
    );
    // A second early, and the end plus the window, still count.
    check(
        &fault,
        &[seen("lamp_failure", "L1", 999, 0.0)],
        &[("lamp_failure", 1, 0, 0)],
    );
    check(
        &fault,
        &[seen("lamp_failure", "L1", 2600, 0.0)],
        &[("lamp_failure", 1, 0, 0)],
    );
    // Before, after, on another asset or of another kind: a false positive and a miss.
    for wrong in [
        seen("lamp_failure", "L1", 998, 0.0),
        seen("lamp_failure", "L1", 2601, 0.0),
        seen("lamp_failure", "L2", 1500, 0.0),
    ] {
        check(&fault, &[wrong], &[("lamp_failure", 0, 1, 1)]);
    }
    check(
        &fault,
        &[seen("day_burner", "L1", 1500, 0.0)],
        &[("lamp_failure", 0, 0, 1), ("day_burner", 0, 1, 0)],
    );
    // Without an end the fault lasts to the scenario's end.
    check(
        &[truth(LampFailure, "L1", 1000, None)],
        &[seen("lamp_failure", "L1", 7800, 0.0)],
        &[("lamp_failure", 1, 0, 0)],
    );
    // One detection per expected outage; the second is a false positive.
    check(
        &fault,
        &[
            seen("lamp_failure", "L1", 1500, 0.0),
            seen("lamp_failure", "L1", 1900, 0.0),
        ],
        &[("lamp_failure", 1, 1, 0)],
    );
    // Two faults on one asset take one detection each, in order.
    check(
        &[
            truth(LampFailure, "L1", 1000, Some(2000)),
            truth(LampFailure, "L1", 3000, Some(4000)),
        ],
        &[
            seen("lamp_failure", "L1", 3100, 0.0),
            seen("lamp_failure", "L1", 1100, 0.0),
        ],
        &[("lamp_failure", 2, 0, 0)],
    );
}

#[test]
fn fault_kinds_map_to_the_outages_they_open() {
    use FaultKind::*;
    check(
        &[truth(DriverFailure, "L1", 0, None)],
        &[seen("lamp_failure", "L1", 900, 0.0)],
        &[("lamp_failure", 1, 0, 0)],
    );
    // Bad traffic is not an outage.
    check(&[truth(MalformedJson, "L1", 0, Some(0))], &[], &[]);
    // Bunching: on either vehicle of the pair, once.
    let mut pair = truth(Bunching, "V1", 0, Some(600));
    pair.partner = Some("V2".into());
    check(
        &[pair.clone()],
        &[seen("bunching", "V2", 60, 0.0)],
        &[("bunching", 1, 0, 0)],
    );
    check(
        &[pair],
        &[
            seen("bunching", "V1", 60, 0.0),
            seen("bunching", "V2", 61, 0.0),
        ],
        &[("bunching", 1, 1, 0)],
    );
    // A power restore: one silence per cabinet, meter and vehicle; lamps expect nothing.
    let cut = [truth(PowerRestore, "*", 3600, Some(4800))];
    check(
        &cut,
        &[
            seen("device_offline", "C1", 3600, 0.0),
            seen("meter_silent", "M1", 3601, 0.0),
            seen("device_offline", "L1", 3600, 0.0),
        ],
        &[
            ("device_offline", 1, 1, 0),
            ("meter_silent", 1, 0, 0),
            ("vehicle_silent", 0, 0, 1),
        ],
    );
    // A device going offline is silent under its own kind's name.
    check(
        &[
            truth(DeviceOffline, "M1", 0, Some(3600)),
            truth(DeviceOffline, "V1", 0, Some(3600)),
            truth(DeviceOffline, "L1", 0, Some(3600)),
        ],
        &[
            seen("meter_silent", "M1", 10, 0.0),
            seen("vehicle_silent", "V1", 10, 0.0),
            seen("device_offline", "L1", 10, 0.0),
        ],
        &[
            ("device_offline", 1, 0, 0),
            ("meter_silent", 1, 0, 0),
            ("vehicle_silent", 1, 0, 0),
        ],
    );
    let e = expected(&cut, &devices(), &|_| 40.0);
    assert_eq!(e.len(), 3);
    assert!(e
        .iter()
        .all(|e| e.fault == PowerRestore && e.window_s == 40.0));
    assert_eq!(e[2].truth.kind, VehicleSilent);
    assert_eq!(e[2].truth.asset, "V1");
}

#[test]
fn delay_is_real_time_past_the_window_end() {
    let fault = [truth(FaultKind::VoltageOutOfRange, "L1", 1000, Some(5000))];
    // The window ends at simulated 1600: wall 1,000,000 ms + 16 s. Written 2.5 s after.
    let d = Detected {
        asset: "L1".into(),
        kind: "voltage_out_of_range".into(),
        opened_at: at(1200),
        recorded_wall: Timestamp::from_unix_ms(1_000_000 + 16_000 + 2_500).unwrap(),
        resolved_at: None,
    };
    let s = run(&fault, &[d]);
    assert_eq!(s.matches.len(), 1);
    assert!((s.matches[0].delay_s - 2.5).abs() < 1e-6, "{:?}", s.matches);
    assert_eq!(s.matches[0].sim_s, 200.0);
    // Written before the window ended: no delay.
    let s = run(&fault, &[seen("voltage_out_of_range", "L1", 1200, 1.0)]);
    assert_eq!(s.matches[0].delay_s, 0.0);
    let row = &s.rows()[0];
    assert_eq!(
        (row.delay_p99_s, row.sim_median_s),
        (Some(0.0), Some(200.0))
    );
}

#[test]
fn totals_and_rates_cover_only_kinds_with_something_to_count() {
    use FaultKind::*;
    let nothing = run(&[], &[]);
    assert!(nothing.rows().is_empty());
    assert_eq!(
        nothing.totals(),
        Totals {
            precision_min: 1.0,
            recall_min: 1.0,
            delay_p99_s: 0.0,
            late_resolutions: 0,
        }
    );
    let a = run(
        &[
            truth(Tamper, "M1", 0, Some(100)),
            truth(Tamper, "M2", 0, Some(100)),
            truth(ReverseFlow, "M3", 0, Some(100)),
        ],
        &[
            seen("tamper", "M1", 10, 3.0),
            seen("reverse_flow", "M3", 10, 0.0),
        ],
    );
    let b = run(&[], &[seen("leak", "M9", 10, 0.0)]);
    let rows = a.rows();
    assert_eq!((rows[0].precision, rows[0].recall), (1.0, 0.5));
    let all = Score::combine([a, b]);
    let t = all.totals();
    assert_eq!((t.precision_min, t.recall_min), (0.0, 0.5));
    assert_eq!(
        t.to_string(),
        "RESULT precision_min=0.000 recall_min=0.500 delay_p99_s=0.00 late_resolutions=2",
        "the two matches were never resolved"
    );
    let table = all.table();
    assert!(
        table.contains("| leak | 0 | 1 | 0 | 1 | 0 | 0.000 | 1.000 | - | - | - |"),
        "{table}"
    );
    assert!(
        table.contains("| tamper | 2 | 1 | 1 | 0 | 1 | 1.000 | 0.500 |"),
        "{table}"
    );
    // Rows in the order of the outage kinds' vocabulary.
    let kinds: Vec<String> = all.rows().into_iter().map(|r| r.kind).collect();
    assert_eq!(kinds, ["leak", "tamper", "reverse_flow"]);
}

#[test]
fn percentiles_are_nearest_rank() {
    assert_eq!(percentile(&[], 0.5), None);
    assert_eq!(percentile(&[3.0], 0.99), Some(3.0));
    let v: Vec<f64> = (1..=100).map(f64::from).collect();
    assert_eq!(percentile(&v, 0.50), Some(50.0));
    assert_eq!(percentile(&v, 0.99), Some(99.0));
    assert_eq!(percentile(&[5.0, 1.0], 0.5), Some(1.0));
}

#[test]
fn truth_lines_resolve_their_times() {
    let line = r#"{"kind":"bunching","asset":"V1","start":"2026-11-22T18:00:00.000Z","end":null,"partner":"V2"}"#;
    let r: TruthRecord = serde_json::from_str(line).unwrap();
    let t = Truth::from_record(&r).unwrap();
    assert_eq!((t.start, t.end), (at(0), None));
    assert_eq!(t.partner.as_deref(), Some("V2"));
    let mut bad = r.clone();
    bad.start = "tonight".into();
    assert_eq!(Truth::from_record(&bad), None);
    assert_eq!(wall_of(&clock(), at(100)).micros(), 1_001_000_000);
}

#[test]
fn an_outage_is_resolved_by_its_faults_end_plus_the_resolve_window() {
    use FaultKind::*;
    let fault = [truth(VoltageOutOfRange, "L1", 1000, Some(5000))];
    let resolved = |r: Option<i64>| Detected {
        resolved_at: r.map(at),
        ..seen("voltage_out_of_range", "L1", 1200, 0.0)
    };
    // Due by 5000 + 300, and a real second (100 simulated at 100x) for the hub's work.
    for (r, late) in [
        (Some(5100), 0),
        (Some(5300), 0),
        (Some(5400), 0),
        (Some(5401), 1),
        (None, 1),
        (Some(900), 1),
    ] {
        let s = run(&fault, &[resolved(r)]);
        assert_eq!(s.late_resolutions.len(), late, "resolved at {r:?}");
        assert_eq!(s.totals().late_resolutions, late);
    }
    // A fault lasting to the end, or ending too close to it, is not judged.
    let lasting = [truth(VoltageOutOfRange, "L1", 1000, None)];
    assert!(run(&lasting, &[resolved(None)]).late_resolutions.is_empty());
    let near_end = [truth(VoltageOutOfRange, "L1", 1000, Some(7000))];
    assert!(run(&near_end, &[resolved(None)])
        .late_resolutions
        .is_empty());
    assert!(run(&fault, &[resolved(None)])
        .totals()
        .to_string()
        .ends_with("late_resolutions=1"));
}

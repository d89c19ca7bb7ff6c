//! The device contract, case by case.

use crate::record::{Cell, RecordType};
use crate::{decode_payload, Limits, Rejection, Timestamp};

const NOW_MS: i64 = 1_795_338_000_000; // 2026-11-22T09:00:00Z

fn now() -> Timestamp {
    Timestamp::from_unix_ms(NOW_MS).unwrap()
}

/// Decodes and expects exactly one row.
fn row(record: RecordType, payload: &str) -> crate::Row {
    let d = decode_payload(record, payload.as_bytes(), now(), &Limits::default());
    assert!(d.rejected.is_empty(), "{payload}: {:?}", d.rejected);
    assert_eq!(d.rows.len(), 1, "{payload}");
    d.rows.into_iter().next().unwrap()
}

/// Decodes and expects one rejection of the whole payload whose text contains `fragment`.
fn rejected(record: RecordType, payload: &[u8], code: &str, fragment: &str) {
    let d = decode_payload(record, payload, now(), &Limits::default());
    assert!(d.rows.is_empty(), "{payload:?} produced rows");
    assert_eq!(d.rejected.len(), 1, "{payload:?}");
    let r = &d.rejected[0];
    assert_eq!(r.reason.code(), code, "{}", r.reason);
    assert!(
        r.reason.to_string().contains(fragment),
        "`{}` lacks `{fragment}`",
        r.reason
    );
    assert_eq!(r.raw, payload);
}

#[test]
fn light_fields_land_in_their_cells() {
    let r = row(
        RecordType::Light,
        r#"{"ts":1795338000000,"on":true,"dim":60,"power_w":41.5,"voltage_v":230.1,"current_a":0.19,"pf":0.95,"energy_wh":1200,"burn_hours":3001.5,"lux":12,"fault":null,"vendor":"acme"}"#,
    );
    assert_eq!(r.ts, now());
    let l = RecordType::Light;
    assert_eq!(r.get(l, "on"), &Cell::Bool(true));
    assert_eq!(r.get(l, "dim"), &Cell::Num(60.0));
    assert_eq!(r.get(l, "power_w"), &Cell::Num(41.5));
    assert_eq!(r.get(l, "pf"), &Cell::Num(0.95));
    assert_eq!(r.get(l, "fault"), &Cell::Null);
    assert_eq!(r.extra.as_ref().unwrap()["vendor"], "acme");
}

#[test]
fn a_blank_fault_is_no_fault() {
    let l = RecordType::Light;
    for blank in [r#""""#, r#""  ""#, "null"] {
        let r = row(l, &format!(r#"{{"ts":1795338000000,"fault":{blank}}}"#));
        assert_eq!(r.get(l, "fault"), &Cell::Null, "{blank}");
    }
    let r = row(l, r#"{"ts":1795338000000,"fault":"driver_failure"}"#);
    assert_eq!(r.get(l, "fault"), &Cell::Text("driver_failure".into()));
    // Elsewhere an empty string is a value like any other.
    let r = row(RecordType::Vehicle, r#"{"ts":1795338000000,"route":""}"#);
    assert_eq!(
        r.get(RecordType::Vehicle, "route"),
        &Cell::Text(String::new())
    );
}

#[test]
fn every_kind_decodes() {
    let c = row(
        RecordType::Cabinet,
        r#"{"ts":"2026-11-22T09:00:00Z","supply":false,"contactor_on":true,"door_open":false,"power_kw":3.2,"energy_kwh":10}"#,
    );
    assert_eq!(c.get(RecordType::Cabinet, "supply"), &Cell::Bool(false));
    let m = row(
        RecordType::Meter,
        r#"{"ts":1795338000000,"medium":"water","total":123.456,"flow_m3h":0.3,"battery_pct":88,"tamper":false,"reverse_flow":true}"#,
    );
    assert_eq!(
        m.get(RecordType::Meter, "medium"),
        &Cell::Text("water".into())
    );
    assert_eq!(m.get(RecordType::Meter, "reverse_flow"), &Cell::Bool(true));
    let v = row(
        RecordType::Vehicle,
        r#"{"ts":1795338000000,"lat":38.7,"lon":-9.1,"speed_mps":11.2,"bearing_deg":270,"route":"28","trip":"28-0712","occupancy_pct":120,"odometer_m":1e6}"#,
    );
    assert_eq!(
        v.get(RecordType::Vehicle, "route"),
        &Cell::Text("28".into())
    );
    assert_eq!(
        v.get(RecordType::Vehicle, "occupancy_pct"),
        &Cell::Num(120.0)
    );
    let e = row(
        RecordType::Event,
        r#"{"ts":1795338000000,"code":"door_open","detail":"cabinet door"}"#,
    );
    assert_eq!(
        e.get(RecordType::Event, "code"),
        &Cell::Text("door_open".into())
    );
    let a = row(
        RecordType::CmdAck,
        r#"{"id":"5b0f8f2e-6a55-4f7e-9a43-3f1b1c2d3e4f","ts":1795338000000,"status":"ok"}"#,
    );
    assert!(matches!(a.get(RecordType::CmdAck, "id"), Cell::Uuid(_)));
}

#[test]
fn status_without_ts_takes_the_receive_time() {
    let s = row(RecordType::Status, r#"{"state":"offline"}"#);
    assert_eq!(s.ts, now());
    assert_eq!(
        s.get(RecordType::Status, "state"),
        &Cell::Text("offline".into())
    );
}

#[test]
fn rfc3339_offsets_and_unix_ms_are_the_same_instant() {
    let a = row(RecordType::Light, r#"{"ts":"2026-11-22T10:00:00+01:00"}"#);
    let b = row(RecordType::Light, r#"{"ts":1795338000000}"#);
    assert_eq!(a.ts, b.ts);
}

#[test]
fn arrays_keep_good_objects_and_reject_bad_ones_alone() {
    let payload = br#"[{"ts":1795338000000,"dim":10},{"dim":20},{"ts":1795338001000,"dim":"x"},7,{"ts":1795338002000,"dim":30}]"#;
    let d = decode_payload(RecordType::Light, payload, now(), &Limits::default());
    let dims: Vec<_> = d
        .rows
        .iter()
        .map(|r| r.get(RecordType::Light, "dim").as_f64())
        .collect();
    assert_eq!(dims, [Some(10.0), Some(30.0)]);
    let bad: Vec<_> = d
        .rejected
        .iter()
        .map(|r| {
            (
                r.index,
                r.reason.code(),
                String::from_utf8_lossy(&r.raw).into_owned(),
            )
        })
        .collect();
    assert_eq!(
        bad,
        [
            (Some(1), "missing_ts", r#"{"dim":20}"#.to_owned()),
            (
                Some(2),
                "wrong_type",
                r#"{"ts":1795338001000,"dim":"x"}"#.to_owned()
            ),
            (Some(3), "not_an_object", "7".to_owned()),
        ]
    );
}

#[test]
fn every_bad_input_class_has_a_clear_reason() {
    use RecordType::*;
    rejected(Light, b"{not json", "invalid_json", "not valid JSON");
    rejected(Light, b"\xff\xfe", "invalid_json", "not valid JSON");
    rejected(Light, b"", "invalid_json", "empty");
    rejected(Light, b"42", "not_an_object", "a number");
    rejected(Light, br#""on""#, "not_an_object", "a string");
    rejected(Light, br#"{"on":true}"#, "missing_ts", "`ts`");
    rejected(Light, br#"{"ts":null}"#, "missing_ts", "`ts`");
    rejected(Light, br#"{"ts":"yesterday"}"#, "wrong_type", "RFC 3339");
    rejected(
        Light,
        br#"{"ts":1.5}"#,
        "wrong_type",
        "integer Unix milliseconds",
    );
    rejected(Light, br#"{"ts":true}"#, "wrong_type", "got a boolean");
    rejected(
        Light,
        br#"{"ts":1795338000000,"on":"yes"}"#,
        "wrong_type",
        "field `on`: expected a boolean, got a string",
    );
    rejected(
        Light,
        br#"{"ts":1795338000000,"power_w":"40"}"#,
        "wrong_type",
        "field `power_w`: expected a number",
    );
    rejected(
        Light,
        br#"{"ts":1795338000000,"dim":101}"#,
        "out_of_range",
        "field `dim`: 101 is out of range 0..100",
    );
    rejected(
        Light,
        br#"{"ts":1795338000000,"pf":1.2}"#,
        "out_of_range",
        "0..1",
    );
    rejected(
        Vehicle,
        br#"{"ts":1795338000000,"lat":91}"#,
        "out_of_range",
        "-90..90",
    );
    // Physically impossible values, which would overflow a city's sums.
    rejected(
        Light,
        br#"{"ts":1795338000000,"power_w":1.7e308}"#,
        "out_of_range",
        "field `power_w`",
    );
    rejected(
        Cabinet,
        br#"{"ts":1795338000000,"energy_kwh":1e300}"#,
        "out_of_range",
        "field `energy_kwh`",
    );
    rejected(
        Meter,
        br#"{"ts":1795338000000,"total":-1}"#,
        "out_of_range",
        "field `total`",
    );
    rejected(
        Meter,
        br#"{"ts":1795338000000,"medium":"gas"}"#,
        "wrong_type",
        "`gas` is not one of water, electricity, heat",
    );
    rejected(
        Light,
        br#"{"ts":1795338000000,"on":true,"on":false}"#,
        "invalid_json",
        "duplicate field `on`",
    );
    rejected(
        Light,
        br#"{"ts":1795338300001}"#,
        "future_ts",
        "in the future",
    );
    rejected(
        Light,
        br#"{"ts":1000}"#,
        "expired_ts",
        "older than the retention",
    );
    rejected(
        Event,
        br#"{"ts":1795338000000}"#,
        "wrong_type",
        "field `code`: is required",
    );
    rejected(
        Status,
        br#"{"state":"asleep"}"#,
        "wrong_type",
        "`asleep` is not one of online, offline",
    );
    rejected(
        CmdAck,
        br#"{"id":"nope","ts":1795338000000,"status":"ok"}"#,
        "wrong_type",
        "UUID",
    );
    rejected(
        Light,
        br#"{"ts":1795338000000,"fault":"a\u0000b"}"#,
        "wrong_type",
        "NUL",
    );
    rejected(
        Light,
        br#"{"ts":1795338000000,"vendor":{"x":["\u0000"]}}"#,
        "wrong_type",
        "NUL",
    );
}

#[test]
fn five_minutes_ahead_is_accepted_one_ms_more_is_not() {
    row(RecordType::Light, r#"{"ts":1795338300000}"#);
    rejected(
        RecordType::Light,
        br#"{"ts":1795338300001}"#,
        "future_ts",
        "300 s",
    );
}

#[test]
fn size_and_array_limits() {
    let limits = Limits {
        max_payload_bytes: 64,
        max_array_len: 2,
        ..Limits::default()
    };
    let big = format!(r#"{{"ts":1795338000000,"fault":"{}"}}"#, "x".repeat(64));
    let d = decode_payload(RecordType::Light, big.as_bytes(), now(), &limits);
    assert_eq!(
        d.rejected[0].reason,
        Rejection::Oversize {
            size: big.len(),
            limit: 64
        }
    );
    let three = br#"[{"ts":1},{"ts":2},{"ts":3}]"#;
    let d = decode_payload(RecordType::Light, three, now(), &limits);
    assert_eq!(d.rejected[0].reason.code(), "too_many_objects");
    assert!(d.rows.is_empty());
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any bytes decode to rows and rejections without panicking, and every byte of a
        /// refused payload is kept for the dead letter.
        #[test]
        fn never_panics_and_never_loses_input(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let d = decode_payload(RecordType::Light, &bytes, now(), &Limits::default());
            if d.rows.is_empty() && d.rejected.len() == 1 && d.rejected[0].index.is_none() {
                prop_assert_eq!(&d.rejected[0].raw, &bytes);
            }
            prop_assert!(!(d.rows.is_empty() && d.rejected.is_empty()) || bytes.starts_with(b"[") || bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'['));
        }

        /// An array of n objects yields exactly n outcomes, good or bad, in order.
        #[test]
        fn arrays_account_for_every_element(dims in proptest::collection::vec(-50i32..150, 0..40)) {
            let body: Vec<String> = dims.iter().enumerate()
                .map(|(i, d)| format!(r#"{{"ts":{},"dim":{d}}}"#, NOW_MS - i as i64))
                .collect();
            let payload = format!("[{}]", body.join(","));
            let d = decode_payload(RecordType::Light, payload.as_bytes(), now(), &Limits::default());
            let good = dims.iter().filter(|d| (0..=100).contains(*d)).count();
            prop_assert_eq!(d.rows.len(), good);
            prop_assert_eq!(d.rejected.len(), dims.len() - good);
            for r in &d.rejected {
                prop_assert_eq!(r.reason.code(), "out_of_range");
            }
        }
    }
}

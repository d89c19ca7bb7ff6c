//! How long after a fault's start its rule can know, at the latest (simulated seconds).
//!
//! R is the device's reporting interval (the fleet's), D a rule's on-delay:
//!
//! - rules on readings (lamp failure, voltage, cabinet supply loss, tamper, reverse flow,
//!   off route, bunching, stopped too long): the first faulty reading comes within R, and
//!   the condition is confirmed by the first reading at least D later:
//!   `R + ceil(D / R) * R`;
//! - lamp cycling: `(min_switches + 1) * R`;
//! - silence (device offline, meter silent, vehicle silent, and a power restore's share on
//!   each device): `intervals * R + grace_s` (a device that says it is offline is known at
//!   once, so these come early);
//! - day burner: the reading rule, counted from when daylight starts for the rule (civil
//!   dawn plus `margin_s` at the lamp's place) if the fault starts before;
//! - leak: the end of the first whole night window (local solar time, `leak.night_start_h`
//!   to `night_end_h`) starting at or after the fault's start, plus R.
//!
//! And how long after a fault's end its outage must be resolved ([`Windows::resolve_s`]):
//! the device's next report (R; the first steady one for cycling, after the last report
//! the cycling lamp was due to make) plus the rule's off-delay, plus `[stream] reorder_ms`
//! and a few seconds; the end of the next night window for a leak; nothing for a lamp's
//! failure that ends by day or a day burner that ends by night (no report can tell then).

use std::collections::HashMap;

use model::{astro, Device, Kind, Timestamp};
use rules::RulesConfig;
use simulators::fleet::FleetSpec;
use simulators::scenario::FaultKind;
use simulators::score::Truth;

pub struct Windows<'a> {
    rules: &'a RulesConfig,
    spec: &'a FleetSpec,
    devices: HashMap<&'a str, &'a Device>,
}

const DAY_S: i64 = 86_400;

impl<'a> Windows<'a> {
    pub fn new(rules: &'a RulesConfig, spec: &'a FleetSpec, devices: &'a [Device]) -> Windows<'a> {
        Windows {
            rules,
            spec,
            devices: devices.iter().map(|d| (d.id.as_str(), d)).collect(),
        }
    }

    fn interval_s(&self, kind: Kind) -> f64 {
        f64::from(match kind {
            Kind::Light => self.spec.lamp_interval_s,
            Kind::Cabinet => self.spec.cabinet_interval_s,
            Kind::Meter => self.spec.meter_interval_s,
            Kind::Vehicle => self.spec.vehicle_interval_s,
        })
    }

    pub fn window_s(&self, t: &Truth) -> f64 {
        use FaultKind::*;
        let device = self.devices.get(t.asset.as_str());
        let r = match device {
            Some(d) => self.interval_s(d.kind),
            // Not a device (the whole city, or bad traffic): nothing is scored on it.
            None => return 0.0,
        };
        let reading = |on_delay_s: i64| r + (on_delay_s as f64 / r).ceil() * r;
        let c = self.rules;
        match t.kind {
            LampFailure | DriverFailure => reading(c.lamp_failure.on_delay_s),
            VoltageOutOfRange => reading(c.voltage.on_delay_s),
            CabinetSupplyLoss => reading(c.cabinet_supply_loss.on_delay_s),
            Tamper | ReverseFlow => reading(c.meter_flags.on_delay_s),
            OffRoute => reading(c.off_route.on_delay_s),
            Bunching => reading(c.bunching.on_delay_s),
            StoppedTooLong => reading(c.stopped_too_long.on_delay_s),
            LampCycling => f64::from(c.lamp_cycling.min_switches + 1) * r,
            DeviceOffline | MeterSilent | VehicleSilent | Backlog => {
                c.silence.intervals * r + c.silence.grace_s as f64
            }
            DayBurner => {
                let d = device.map_or((0.0, 0.0), |d| (d.lon, d.lat));
                let from = daylight_from(t.start, d.0, d.1, c.day_burner.margin_s);
                secs(t.start, from) + reading(c.day_burner.on_delay_s)
            }
            Leak => {
                let lon = device.map_or(0.0, |d| d.lon);
                let night = &c.leak;
                let until = night_window_end(t.start, lon, night.night_start_h, night.night_end_h);
                secs(t.start, until) + r
            }
            // A power restore is scored as each device's silence; bad traffic is not scored.
            PowerRestore | MalformedJson | WrongTypes | UnknownDevice | Oversize | Duplicates
            | OutOfOrder => 0.0,
        }
    }
}

impl Windows<'_> {
    /// Simulated seconds after `t`'s end by which its outage must be resolved.
    pub fn resolve_s(&self, t: &Truth) -> Option<f64> {
        use FaultKind::*;
        let device = self.devices.get(t.asset.as_str())?;
        let end = t.end?;
        let r = self.interval_s(device.kind);
        let c = self.rules;
        let slack = c.stream.reorder_ms as f64 / 1000.0 + 5.0;
        let dark = |at: Timestamp| astro::is_dark(device.lon, device.lat, at);
        let after = |off: i64| Some(r + off as f64 + slack);
        match t.kind {
            DeviceOffline | MeterSilent | VehicleSilent | Backlog => after(0),
            LampFailure | DriverFailure => {
                let off = c.lamp_failure.off_delay_s;
                let until = end.add_secs(r as i64 + off + slack as i64);
                (dark(end) && dark(until)).then_some(r + off as f64 + slack)
            }
            DayBurner => {
                let db = c.day_burner;
                let until = end.add_secs(r as i64 + db.off_delay_s + slack as i64);
                let d = (device.lon, device.lat);
                let daylight = |at: Timestamp| daylight_from(at, d.0, d.1, db.margin_s) == at;
                (daylight(end) && daylight(until)).then_some(r + db.off_delay_s as f64 + slack)
            }
            // The cycling lamp's last report is due a minute after its end, then it reports
            // at R again.
            LampCycling => Some(60.0 + r + c.lamp_cycling.off_delay_s as f64 + slack),
            VoltageOutOfRange => after(c.voltage.off_delay_s),
            CabinetSupplyLoss => {
                let lamps = self.interval_s(Kind::Light);
                Some(r.max(lamps) + c.cabinet_supply_loss.off_delay_s as f64 + slack)
            }
            Tamper | ReverseFlow => after(c.meter_flags.off_delay_s),
            OffRoute => after(c.off_route.off_delay_s),
            Bunching => after(c.bunching.off_delay_s + c.bunching.max_age_s),
            StoppedTooLong => after(c.stopped_too_long.off_delay_s),
            Leak => {
                let l = &c.leak;
                let next = night_window_end(end, device.lon, l.night_start_h, l.night_end_h);
                Some(secs(end, next) + r + slack)
            }
            PowerRestore | MalformedJson | WrongTypes | UnknownDevice | Oversize | Duplicates
            | OutOfOrder => None,
        }
    }
}

fn secs(from: Timestamp, to: Timestamp) -> f64 {
    (to.micros() - from.micros()) as f64 / 1e6
}

/// The first instant at or after `start` that the day burner rule counts as daylight at
/// (`lon`, `lat`): civil dawn plus `margin_s`, up to civil dusk minus it. `start` itself
/// where the sun does not cross civil twilight.
fn daylight_from(start: Timestamp, lon: f64, lat: f64, margin_s: i64) -> Timestamp {
    for day in 0..3 {
        let (Some(dawn), Some(dusk)) = astro::civil_twilight(lon, lat, start.add_secs(day * DAY_S))
        else {
            return start;
        };
        let from = start.max(dawn.add_secs(margin_s));
        if from < dusk.add_secs(-margin_s) {
            return from;
        }
    }
    start
}

/// The end (UTC) of the first night window, `start_h` to `end_h` local solar time at
/// `lon` (UTC + lon/15 h), that starts at or after `after`.
fn night_window_end(after: Timestamp, lon: f64, start_h: f64, end_h: f64) -> Timestamp {
    let offset_us = (lon / 15.0 * 3600.0 * 1e6) as i64;
    let local = after.micros() + offset_us;
    let day_us = DAY_S * 1_000_000;
    let midnight = local.div_euclid(day_us) * day_us;
    let hours = |h: f64| (h * 3600.0 * 1e6) as i64;
    let mut window_start = midnight + hours(start_h);
    if window_start < local {
        window_start += day_us;
    }
    let length = hours((end_h - start_h).rem_euclid(24.0));
    Timestamp(window_start + length - offset_us)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        Timestamp::from_rfc3339(s).unwrap()
    }

    fn device(id: &str, kind: Kind) -> Device {
        Device {
            tenant: "t".into(),
            id: id.into(),
            kind,
            district: None,
            cabinet: None,
            rated_power_w: None,
            medium: None,
            route: None,
            // Lisbon.
            lon: -9.14,
            lat: 38.72,
            props: Default::default(),
        }
    }

    fn truth(kind: FaultKind, asset: &str, start: &str) -> Truth {
        Truth {
            kind,
            asset: asset.into(),
            start: at(start),
            end: None,
            partner: None,
        }
    }

    #[test]
    fn windows_follow_intervals_and_delays() {
        let rules = RulesConfig::default();
        let spec = FleetSpec::default();
        let devices = [
            device("L1", Kind::Light),
            device("C1", Kind::Cabinet),
            device("M1", Kind::Meter),
            device("V1", Kind::Vehicle),
        ];
        let w = Windows::new(&rules, &spec, &devices);
        let check = |kind: FaultKind, asset: &str, start: &str, want: f64| {
            let got = w.window_s(&truth(kind, asset, start));
            assert!(
                (got - want).abs() < 1.0,
                "{kind:?} on {asset} from {start}: {got} s, want {want} s"
            );
        };
        let evening = "2026-11-22T20:00:00Z";
        // Lamp failure: 900 s to the first reading, 600 s on-delay -> one more reading.
        check(FaultKind::LampFailure, "L1", evening, 1800.0);
        check(FaultKind::DriverFailure, "L1", evening, 1800.0);
        check(FaultKind::VoltageOutOfRange, "L1", evening, 900.0);
        check(FaultKind::CabinetSupplyLoss, "C1", evening, 300.0);
        check(FaultKind::Tamper, "M1", evening, 3600.0);
        check(FaultKind::LampCycling, "L1", evening, 3600.0);
        check(FaultKind::DeviceOffline, "C1", evening, 910.0);
        check(FaultKind::MeterSilent, "M1", evening, 10_810.0);
        check(FaultKind::VehicleSilent, "V1", evening, 40.0);
        check(FaultKind::OffRoute, "V1", evening, 130.0);
        check(FaultKind::StoppedTooLong, "V1", evening, 310.0);
        // Lisbon's civil dawn on 23 November is about 07:08 UTC; plus 30 min of margin.
        let w_db = w.window_s(&truth(FaultKind::DayBurner, "L1", "2026-11-23T06:00:00Z"));
        assert!(
            (6_000.0..6_600.0).contains(&w_db),
            "day burner from 06:00: {w_db} s"
        );
        check(FaultKind::DayBurner, "L1", "2026-11-23T12:00:00Z", 900.0);
        // A leak from 13:00 UTC: the night window ends at 04:00 local (lon -9.14: 04:36:34 UTC).
        let leak = w.window_s(&truth(FaultKind::Leak, "M1", "2026-11-22T13:00:00Z"));
        let want = secs(at("2026-11-22T13:00:00Z"), at("2026-11-23T04:36:34Z")) + 3600.0;
        assert!((leak - want).abs() < 2.0, "leak: {leak} s, want {want} s");
        check(FaultKind::MalformedJson, "L1", evening, 0.0);
    }

    #[test]
    fn night_windows_start_at_or_after_the_fault() {
        let check = |after: &str, lon: f64, start_h: f64, end_h: f64, want: &str| {
            assert_eq!(
                night_window_end(at(after), lon, start_h, end_h),
                at(want),
                "{after} at lon {lon}, {start_h}-{end_h} h"
            );
        };
        check(
            "2026-11-22T13:00:00Z",
            0.0,
            1.0,
            4.0,
            "2026-11-23T04:00:00Z",
        );
        // Already inside a window: the next whole one.
        check(
            "2026-11-23T02:00:00Z",
            0.0,
            1.0,
            4.0,
            "2026-11-24T04:00:00Z",
        );
        check(
            "2026-11-23T01:00:00Z",
            0.0,
            1.0,
            4.0,
            "2026-11-23T04:00:00Z",
        );
        // Across midnight.
        check(
            "2026-11-22T13:00:00Z",
            0.0,
            23.0,
            4.0,
            "2026-11-23T04:00:00Z",
        );
        // East of Greenwich local time is ahead: 01:00-04:00 at lon 15 is 00:00-03:00 UTC.
        check(
            "2026-11-22T13:00:00Z",
            15.0,
            1.0,
            4.0,
            "2026-11-23T03:00:00Z",
        );
    }
}

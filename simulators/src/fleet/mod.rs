//! Device fleets: every device of a generated city reporting per the device contract.
//!
//! [`Fleet`] is a state machine and does no IO: [`Fleet::due`] yields the readings due up
//! to a simulated time, [`Fleet::command`] answers a `cmd` with its `cmd/ack` and the
//! telemetry that shows the new state. Readings are scheduled on a fixed grid per device
//! (interval and phase from the seed) and their values follow from the seed, the device
//! and the tick, so the same city and seed give the same message stream whenever and
//! however fast it is replayed. [`run`] connects a fleet to a broker.

mod faults;
pub mod run;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Write as _;
use std::sync::Arc;

use model::lighting::Schedule;
use model::{astro, Timestamp};
use serde_json::Value;

use crate::city::{position_on, City, BUS_SPEED_MPS};

/// Reporting intervals, simulated seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSpec {
    pub seed: u64,
    pub lamp_interval_s: u32,
    pub cabinet_interval_s: u32,
    pub meter_interval_s: u32,
    pub vehicle_interval_s: u32,
}

impl Default for FleetSpec {
    fn default() -> Self {
        FleetSpec {
            seed: 1,
            lamp_interval_s: 900,
            cabinet_interval_s: 300,
            meter_interval_s: 3600,
            vehicle_interval_s: 10,
        }
    }
}

/// One MQTT message a device publishes.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Index of the publishing device in [`Fleet::devices`] order.
    pub device: usize,
    pub topic: String,
    pub payload: String,
    pub retain: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Dev {
    Cabinet(usize),
    Lamp(usize),
    Meter(usize),
    Vehicle(usize),
}

/// A command in force on a lamp.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Override {
    on: bool,
    dim: f64,
    until: Option<Timestamp>,
}

#[derive(Debug, Clone, Default)]
struct Counters {
    last: Option<Timestamp>,
    energy: f64,
    hours: f64,
}

pub struct Fleet {
    city: Arc<City>,
    spec: FleetSpec,
    devices: Vec<Dev>,
    topics: Vec<String>,
    interval_us: Vec<i64>,
    queue: BinaryHeap<Reverse<(i64, usize)>>,
    counters: Vec<Counters>,
    overrides: Vec<Option<Override>>,
    /// The profile each lamp was given (`set_schedule`); `None`: dusk to dawn at full.
    schedules: Vec<Option<Schedule>>,
    cabinet_rated_w: Vec<f64>,
    lamp_index: std::collections::HashMap<String, usize>,
    start: Timestamp,
    // Scenario faults (see `faults`).
    plan: Vec<crate::scenario::PlannedFault>,
    device_faults: Vec<Vec<usize>>,
    city_faults: Vec<usize>,
    /// (time, plan index, starts) in time order; `next_event` is the first not yet emitted.
    events: Vec<(i64, usize, bool)>,
    next_event: usize,
    /// Readings held while the city's power is out, per device.
    backlog: Vec<Vec<String>>,
    /// The city's south-west corner (lon, lat).
    south_west: (f64, f64),
}

/// A uniform number in [0, 1) from (seed, a, b): splitmix64.
fn noise(seed: u64, a: u64, b: u64) -> f64 {
    let mut z =
        seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

fn r2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

impl Fleet {
    /// Every device starts reporting within one interval of `start`.
    pub fn new(city: Arc<City>, spec: FleetSpec, start: Timestamp) -> Fleet {
        let tenant = &city.spec.tenant;
        let mut devices = Vec::new();
        let mut topics = Vec::new();
        let mut interval_us = Vec::new();
        let mut push = |dev: Dev, kind: &str, id: &str, every_s: u32| {
            devices.push(dev);
            topics.push(format!("city/{tenant}/{kind}/{id}/telemetry"));
            interval_us.push(every_s.max(1) as i64 * 1_000_000);
        };
        for (i, c) in city.cabinets.iter().enumerate() {
            push(Dev::Cabinet(i), "cabinet", &c.id, spec.cabinet_interval_s);
        }
        for (i, l) in city.lamps.iter().enumerate() {
            push(Dev::Lamp(i), "light", &l.id, spec.lamp_interval_s);
        }
        for (i, m) in city.meters.iter().enumerate() {
            push(Dev::Meter(i), "meter", &m.id, spec.meter_interval_s);
        }
        for (i, v) in city.vehicles.iter().enumerate() {
            push(Dev::Vehicle(i), "vehicle", &v.id, spec.vehicle_interval_s);
        }
        let queue = (0..devices.len())
            .map(|d| {
                let phase = (noise(spec.seed, d as u64, 0) * interval_us[d] as f64) as i64;
                // Whole milliseconds: the contract's integer `ts`.
                Reverse(((start.micros() + phase) / 1000 * 1000, d))
            })
            .collect();
        let mut cabinet_rated_w = vec![0.0; city.cabinets.len()];
        let cabinet_pos: std::collections::HashMap<&str, usize> = city
            .cabinets
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.as_str(), i))
            .collect();
        for l in &city.lamps {
            if let Some(&c) = cabinet_pos.get(l.cabinet.as_str()) {
                cabinet_rated_w[c] += l.rated_power_w;
            }
        }
        let lamp_index = city
            .lamps
            .iter()
            .enumerate()
            .map(|(i, l)| (l.id.clone(), i))
            .collect();
        Fleet {
            plan: Vec::new(),
            device_faults: vec![Vec::new(); devices.len()],
            city_faults: Vec::new(),
            events: Vec::new(),
            next_event: 0,
            backlog: vec![Vec::new(); devices.len()],
            south_west: city
                .districts
                .iter()
                .flat_map(|d| d.outline.iter().copied())
                .fold((f64::INFINITY, f64::INFINITY), |a, p| {
                    (a.0.min(p.0), a.1.min(p.1))
                }),
            counters: vec![Counters::default(); devices.len()],
            overrides: vec![None; city.lamps.len()],
            schedules: vec![None; city.lamps.len()],
            city,
            spec,
            devices,
            topics,
            interval_us,
            queue,
            cabinet_rated_w,
            lamp_index,
            start,
        }
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// When the next reading or scenario event is due.
    pub fn next_due(&self) -> Option<Timestamp> {
        let reading = self.queue.peek().map(|Reverse((t, _))| *t);
        let event = self.next_event_at();
        match (reading, event) {
            (Some(a), Some(b)) => Some(Timestamp(a.min(b))),
            (a, b) => a.or(b).map(Timestamp),
        }
    }

    /// Appends every reading and scenario event due at or before `now`, in time order.
    pub fn due(&mut self, now: Timestamp, out: &mut Vec<Message>) {
        loop {
            let reading = self.queue.peek().map(|&Reverse((t, d))| (t, d));
            let event = self.next_event_at();
            match (reading, event) {
                (_, Some(e)) if e <= now.micros() && reading.is_none_or(|(t, _)| e <= t) => {
                    self.event(out)
                }
                (Some((t, d)), _) if t <= now.micros() => {
                    self.queue.pop();
                    let ts = Timestamp(t);
                    let effects = self.effects(d, ts);
                    // A cycling lamp reports every minute while it cycles.
                    let every = if effects.cycling {
                        60_000_000
                    } else {
                        self.interval_us[d]
                    };
                    self.queue.push(Reverse((t + every, d)));
                    if effects.silent {
                        continue;
                    }
                    let payload = self.reading(d, ts);
                    if effects.holding {
                        self.backlog[d].push(payload);
                        continue;
                    }
                    out.push(Message {
                        device: d,
                        topic: self.topics[d].clone(),
                        payload,
                        retain: false,
                    });
                }
                _ => break,
            }
        }
    }

    /// Carries on each device's cumulative counters (lamps' energy and burning hours,
    /// cabinets' energy, meters' index) from what it said last, keyed by its telemetry
    /// topic: a device that restarts keeps its meters. Buses' odometers follow their
    /// place on the route.
    pub fn continue_counters(&mut self, latest: &std::collections::HashMap<String, Value>) {
        for d in 0..self.devices.len() {
            let Some(said) = latest.get(&self.topics[d]) else {
                continue;
            };
            let number = |k: &str| said.get(k).and_then(Value::as_f64);
            let c = &mut self.counters[d];
            let (energy, hours) = match self.devices[d] {
                Dev::Lamp(_) => (number("energy_wh"), number("burn_hours")),
                Dev::Cabinet(_) => (number("energy_kwh"), None),
                Dev::Meter(_) => (number("total"), None),
                Dev::Vehicle(_) => (None, None),
            };
            c.energy = energy.unwrap_or(c.energy);
            c.hours = hours.unwrap_or(c.hours);
        }
    }

    /// Index of a lamp's device, by its id.
    pub fn lamp_device(&self, id: &str) -> Option<usize> {
        self.lamp_index
            .get(id)
            .map(|i| self.city.cabinets.len() + i)
    }

    /// Answers a command on `topic` (`city/{tenant}/light/{id}/cmd`) received at `now`:
    /// the `cmd/ack`, then, when it was carried out, telemetry showing the new state.
    pub fn command(&mut self, topic: &str, payload: &[u8], now: Timestamp, out: &mut Vec<Message>) {
        let id = topic.split('/').nth(3).unwrap_or_default();
        let Some(lamp) = self.lamp_index.get(id).copied() else {
            return;
        };
        let device = self.city.cabinets.len() + lamp;
        let cmd: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
        let Some(cmd_id) = cmd.get("id").and_then(Value::as_str) else {
            return;
        };
        let now = Timestamp(now.micros() / 1000 * 1000);
        let (status, detail) = match cmd.get("action").and_then(Value::as_str) {
            Some("set_light") => {
                let on = cmd.get("on").and_then(Value::as_bool).unwrap_or(true);
                let dim = cmd
                    .get("dim")
                    .and_then(Value::as_f64)
                    .unwrap_or(100.0)
                    .clamp(0.0, 100.0);
                let until = match cmd.get("expires") {
                    Some(Value::Number(n)) => n.as_i64().and_then(Timestamp::from_unix_ms),
                    Some(Value::String(s)) => Timestamp::from_rfc3339(s),
                    _ => None,
                };
                if until.is_some_and(|u| u <= now) {
                    ("rejected", Some("the command had expired"))
                } else {
                    self.overrides[lamp] = Some(Override { on, dim, until });
                    ("ok", None)
                }
            }
            Some("set_schedule") => match Schedule::from_command(&cmd) {
                // A new profile ends a manual override, as the rules expect.
                Some(s) => {
                    self.overrides[lamp] = None;
                    self.schedules[lamp] = Some(s);
                    ("ok", None)
                }
                None => ("rejected", Some("the profile is not valid")),
            },
            Some("reboot") => {
                self.overrides[lamp] = None;
                self.counters[device].last = None;
                ("ok", None)
            }
            _ => ("rejected", Some("unknown action")),
        };
        let tenant = &self.city.spec.tenant;
        let mut ack =
            serde_json::json!({"id": cmd_id, "ts": now.micros() / 1000, "status": status});
        if let Some(d) = detail {
            ack["detail"] = Value::String(d.into());
        }
        out.push(Message {
            device,
            topic: format!("city/{tenant}/light/{id}/cmd/ack"),
            payload: ack.to_string(),
            retain: false,
        });
        if status == "ok" {
            out.push(Message {
                device,
                topic: self.topics[device].clone(),
                payload: self.reading(device, now),
                retain: false,
            });
        }
    }

    /// `online` on every device's status topic, retained (what a device says on connecting).
    /// Devices connected before the fleet's start come online at the start: a device that
    /// said "online" and then stayed quiet would be silent.
    pub fn online(&self, device: usize, now: Timestamp) -> Message {
        let ts = now.max(self.start);
        Message {
            device,
            topic: self.status_topic(device),
            payload: format!(r#"{{"state":"online","ts":{}}}"#, ts.micros() / 1000),
            retain: true,
        }
    }

    pub fn status_topic(&self, device: usize) -> String {
        self.topics[device].trim_end_matches("telemetry").to_owned() + "status"
    }

    fn reading(&mut self, d: usize, ts: Timestamp) -> String {
        let seed = self.spec.seed;
        let tick = (ts.micros() / 1000) as u64;
        let n = |k: u64| noise(seed, d as u64 * 16 + k, tick);
        let fx = self.effects(d, ts);
        let c = &mut self.counters[d];
        let hours = c
            .last
            .map(|l| (ts.micros() - l.micros()).max(0) as f64 / 3.6e9)
            .unwrap_or(0.0);
        c.last = Some(ts);
        let ms = ts.micros() / 1000;
        let mut p = String::with_capacity(200);
        match self.devices[d] {
            Dev::Lamp(i) => {
                let lamp = &self.city.lamps[i];
                let dark = astro::is_dark(lamp.at.0, lamp.at.1, ts);
                let ov = self.overrides[i].filter(|o| o.until.is_none_or(|u| ts < u));
                let (mut on, mut dim) = match (ov, &self.schedules[i]) {
                    (Some(o), _) => (o.on, if o.on { o.dim } else { 0.0 }),
                    (None, Some(s)) => {
                        let (dawn, dusk) = astro::civil_twilight(lamp.at.0, lamp.at.1, ts);
                        let e = s.at(ts, lamp.at.0, dawn, dusk, dark);
                        (e.on, e.dim)
                    }
                    (None, None) if dark => (true, 100.0),
                    (None, None) => (false, 0.0),
                };
                if fx.day_burner {
                    (on, dim) = (true, 100.0);
                }
                if fx.cycling {
                    on = (ms / 60_000) % 2 == 0;
                    dim = if on { 100.0 } else { 0.0 };
                }
                let mut power = if on {
                    lamp.rated_power_w * dim / 100.0 * (0.96 + 0.08 * n(1))
                } else {
                    0.4
                };
                let mut volts = if fx.over_voltage { 262.0 } else { 228.0 } + 4.0 * n(2);
                let mut fault = "null";
                if fx.lamp_failure && on {
                    power = 0.6;
                    fault = r#""lamp_failure""#;
                }
                if fx.driver_failure {
                    power = 0.0;
                    fault = r#""driver_failure""#;
                }
                if fx.supply_loss {
                    // Mains gone: the relay may say on, nothing burns (controllers on backup).
                    (power, volts) = (0.0, 0.0);
                }
                c.energy += power * hours;
                if on && power > 1.0 {
                    c.hours += hours;
                }
                let lux = if dark { 2.0 } else { 4000.0 + 2000.0 * n(3) };
                let current = if volts > 0.0 { power / volts } else { 0.0 };
                let _ = write!(
                    p,
                    r#"{{"ts":{ms},"on":{on},"dim":{},"power_w":{},"voltage_v":{},"current_a":{},"pf":{},"energy_wh":{},"burn_hours":{},"lux":{},"fault":{fault}}}"#,
                    r2(dim),
                    r2(power),
                    r2(volts),
                    (current * 1000.0).round() / 1000.0,
                    if on { 0.95 } else { 0.5 },
                    r2(c.energy),
                    r2(c.hours),
                    r2(lux)
                );
            }
            Dev::Cabinet(i) => {
                let cab = &self.city.cabinets[i];
                let on = astro::is_dark(cab.at.0, cab.at.1, ts);
                let supply = !fx.supply_loss;
                let kw = match (supply, on) {
                    (false, _) => 0.0,
                    (true, true) => self.cabinet_rated_w[i] / 1000.0 * (0.97 + 0.06 * n(1)),
                    (true, false) => 0.02,
                };
                let volts = if supply { 229.0 + 3.0 * n(2) } else { 0.0 };
                c.energy += kw * hours;
                let _ = write!(
                    p,
                    r#"{{"ts":{ms},"supply":{supply},"contactor_on":{on},"door_open":false,"power_kw":{},"voltage_v":{},"current_a":{},"energy_kwh":{}}}"#,
                    r2(kw),
                    r2(volts),
                    r2(kw * 1000.0 / 230.0),
                    r2(c.energy)
                );
            }
            Dev::Meter(i) => {
                let m = &self.city.meters[i];
                let hour =
                    ((ms / 3_600_000 + (m.at.0 / 15.0).round() as i64).rem_euclid(24)) as u32;
                let profile = match hour {
                    0..=5 => 0.05,
                    6..=9 => 1.0,
                    10..=17 => 0.4,
                    18..=22 => 0.8,
                    _ => 0.2,
                };
                let battery = r2(100.0
                    - (ts.micros() - self.start.micros()) as f64 / 3.6e9 / 24.0 / 365.0 * 10.0);
                match m.medium {
                    "water" => {
                        // Household water drops to zero at night: leaks are what does not.
                        let mut flow = if hour <= 4 {
                            0.0
                        } else {
                            profile * 0.3 * (0.5 + n(1))
                        };
                        if fx.leak {
                            flow += 0.08 + 0.05 * n(4);
                        }
                        c.energy += flow * hours;
                        if fx.reverse_flow {
                            flow = -(0.05 + 0.05 * n(5));
                        }
                        let (tamper, reverse) = (fx.tamper, fx.reverse_flow);
                        let _ = write!(
                            p,
                            r#"{{"ts":{ms},"medium":"water","total":{},"flow_m3h":{},"pressure_bar":{},"battery_pct":{battery},"tamper":{tamper},"reverse_flow":{reverse}}}"#,
                            (c.energy * 1000.0).round() / 1000.0,
                            r2(flow),
                            r2(3.0 + 0.4 * n(2))
                        );
                    }
                    medium => {
                        let kw = profile * if medium == "heat" { 6.0 } else { 1.5 } * (0.5 + n(1));
                        c.energy += kw * hours;
                        let temps = if medium == "heat" {
                            format!(
                                r#","temp_supply_c":{},"temp_return_c":{}"#,
                                r2(68.0 + 4.0 * n(2)),
                                r2(42.0 + 4.0 * n(3))
                            )
                        } else {
                            String::new()
                        };
                        let (tamper, reverse) = (fx.tamper, fx.reverse_flow);
                        let _ = write!(
                            p,
                            r#"{{"ts":{ms},"medium":"{medium}","total":{},"power_kw":{}{temps},"battery_pct":{battery},"tamper":{tamper},"reverse_flow":{reverse}}}"#,
                            (c.energy * 1000.0).round() / 1000.0,
                            r2(kw)
                        );
                    }
                }
            }
            Dev::Vehicle(i) => {
                let v = &self.city.vehicles[i];
                let route = self.city.routes.iter().find(|r| r.id == v.route);
                let Some(route) = route else {
                    return format!(r#"{{"ts":{ms}}}"#);
                };
                let since_start = |at: Timestamp| (at.micros() - self.start.micros()) as f64 / 1e6;
                let mut m = v.start_m + BUS_SPEED_MPS * since_start(ts);
                let mut speed = BUS_SPEED_MPS * (0.9 + 0.2 * n(1));
                if let Some(leader) = fx.bunch_behind {
                    let cab_lamps_meters =
                        self.city.cabinets.len() + self.city.lamps.len() + self.city.meters.len();
                    let lead = &self.city.vehicles[leader - cab_lamps_meters];
                    m = lead.start_m + BUS_SPEED_MPS * since_start(ts) - 10.0;
                }
                if let Some(at) = fx.stopped_since {
                    m = v.start_m + BUS_SPEED_MPS * since_start(at);
                    speed = 0.0;
                }
                let (lon, lat) = position_on(route, m);
                let (mut lon, mut lat) = (lon, lat);
                if fx.off_route {
                    // A detour a kilometre outside the city, where no route runs.
                    let (west, south) = self.south_west;
                    let k = 111_320.0;
                    lon = west - (1000.0 - m.rem_euclid(300.0)) / (k * south.to_radians().cos());
                    lat = south - 1000.0 / k;
                    lon = (lon * 1e7).round() / 1e7;
                    lat = (lat * 1e7).round() / 1e7;
                }
                let (lon2, lat2) = position_on(route, m + 5.0);
                let bearing = (lon2 - lon)
                    .atan2(lat2 - lat)
                    .to_degrees()
                    .rem_euclid(360.0);
                let trip = (m / (2.0 * route.length_m)).floor() as i64;
                let _ = write!(
                    p,
                    r#"{{"ts":{ms},"lat":{lat},"lon":{lon},"speed_mps":{},"bearing_deg":{},"route":"{}","trip":"{}-{trip}","occupancy_pct":{},"odometer_m":{}}}"#,
                    r2(speed),
                    r2(bearing),
                    route.id,
                    route.id,
                    r2(100.0 * n(2)),
                    r2(m)
                );
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::city::CitySpec;
    use model::{decode_payload, Limits, RecordType, Topic};

    fn city(seed: u64) -> Arc<City> {
        Arc::new(City::generate(&CitySpec {
            seed,
            lamps: 300,
            meters: 60,
            vehicles: 6,
            ..CitySpec::default()
        }))
    }

    fn stream(seed: u64, hours: i64) -> Vec<Message> {
        let start = Timestamp::from_rfc3339("2026-11-22T15:00:00Z").unwrap();
        let mut fleet = Fleet::new(
            city(seed),
            FleetSpec {
                seed,
                ..FleetSpec::default()
            },
            start,
        );
        let mut out = Vec::new();
        // In uneven steps: the stream must not depend on how time is sliced.
        let mut t = start;
        while t < start.add_secs(hours * 3600) {
            t = t.add_secs(7 + (t.micros() / 1_000_000 % 13));
            fleet.due(t, &mut out);
        }
        out
    }

    #[test]
    fn devices_connected_early_come_online_at_the_start() {
        let start = Timestamp::from_rfc3339("2026-11-22T15:00:00Z").unwrap();
        let fleet = Fleet::new(city(1), FleetSpec::default(), start);
        let early = fleet.online(0, start.add_secs(-3600));
        assert!(
            early
                .payload
                .contains(&format!("{}", start.micros() / 1000)),
            "{}",
            early.payload
        );
        let later = start.add_secs(60);
        let m = fleet.online(0, later);
        assert!(
            m.payload.contains(&format!("{}", later.micros() / 1000)),
            "{}",
            m.payload
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_stream() {
        let a = stream(4, 3);
        assert!(a.len() > 1000, "{}", a.len());
        assert_eq!(a, stream(4, 3));
        assert_ne!(a, stream(5, 3));
    }

    #[test]
    fn every_message_follows_the_contract() {
        let now = Timestamp::from_rfc3339("2026-11-22T18:00:00Z").unwrap();
        for m in stream(2, 3) {
            let topic = Topic::parse(&m.topic).unwrap();
            let record = RecordType::of(topic.kind, topic.channel).unwrap();
            let d = decode_payload(record, m.payload.as_bytes(), now, &Limits::default());
            assert!(
                d.rejected.is_empty(),
                "{} {}: {:?}",
                m.topic,
                m.payload,
                d.rejected
            );
            assert_eq!(d.rows.len(), 1);
        }
    }

    #[test]
    fn connections_are_shared_or_owned_as_configured() {
        let fleet = Fleet::new(city(1), FleetSpec::default(), Timestamp::now());
        let groups = |share: f64| {
            let cfg = run::FleetRun {
                host: String::new(),
                port: 0,
                credentials: None,
                devices_per_connection: 50,
                own_connection_share: share,
                clock: crate::clock::SimClock::wall(),
                client_prefix: String::new(),
            };
            run::connection_groups(&fleet, &cfg)
        };
        let n = fleet.len();
        assert_eq!(groups(0.0).len(), n.div_ceil(50));
        assert_eq!(groups(1.0).len(), n);
        let some = groups(0.2);
        let singles = some.iter().filter(|g| g.len() == 1).count();
        assert!((n / 10..n * 3 / 10).contains(&singles), "{singles} of {n}");
        let mut all: Vec<usize> = some.concat();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..n).collect::<Vec<_>>(),
            "every device in exactly one connection"
        );
    }

    #[test]
    fn lamps_burn_at_night_and_obey_commands() {
        let start = Timestamp::from_rfc3339("2026-11-22T12:00:00Z").unwrap();
        let mut fleet = Fleet::new(city(1), FleetSpec::default(), start);
        let mut out = Vec::new();
        fleet.due(start.add_secs(900), &mut out);
        let noon: Vec<&Message> = out.iter().filter(|m| m.topic.contains("/light/")).collect();
        assert!(!noon.is_empty() && noon.iter().all(|m| m.payload.contains(r#""on":false"#)));
        out.clear();
        fleet.due(start.add_secs(9 * 3600), &mut out); // 21:00 UTC in Lisbon
        let evening = start.add_secs(8 * 3600).micros() / 1000; // 20:00 UTC, well after dusk
        let night: Vec<&Message> = out
            .iter()
            .filter(|m| m.topic.contains("/light/"))
            .filter(|m| {
                serde_json::from_str::<Value>(&m.payload).unwrap()["ts"]
                    .as_i64()
                    .unwrap()
                    >= evening
            })
            .collect();
        assert!(!night.is_empty() && night.iter().all(|m| m.payload.contains(r#""on":true"#)));

        out.clear();
        let now = start.add_secs(9 * 3600);
        let cmd = br#"{"id":"5b0f8f2e-6a55-4f7e-9a43-3f1b1c2d3e4f","ts":0,"action":"set_light","on":true,"dim":40}"#;
        fleet.command("city/simcity/light/L000001/cmd", cmd, now, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].topic, "city/simcity/light/L000001/cmd/ack");
        assert!(out[0].payload.contains(r#""status":"ok""#) && out[0].payload.contains("5b0f8f2e"));
        assert!(
            out[1].payload.contains(r#""on":true,"dim":40"#),
            "{}",
            out[1].payload
        );
        out.clear();
        fleet.command(
            "city/simcity/light/L000001/cmd",
            br#"{"id":"x","action":"fly"}"#,
            now,
            &mut out,
        );
        assert!(out.len() == 1 && out[0].payload.contains("rejected"));
    }

    #[test]
    fn lamps_follow_the_profile_they_are_given() {
        let start = Timestamp::from_rfc3339("2026-11-22T12:00:00Z").unwrap();
        let mut fleet = Fleet::new(city(1), FleetSpec::default(), start);
        let topic = "city/simcity/light/L000002/cmd";
        // 21:00 UTC: about 20:23 local solar time in Lisbon, after dusk.
        let evening = start.add_secs(9 * 3600);
        let mut out = Vec::new();
        let profile = |steps: &str| {
            format!(
                r#"{{"id":"6c1e0d2a-0000-4000-8000-000000000001","ts":0,"action":"set_schedule","dim":80,"steps":{steps}}}"#
            )
        };
        let state = |out: &[Message]| -> (bool, f64) {
            let v: Value = serde_json::from_str(&out[1].payload).unwrap();
            (v["on"].as_bool().unwrap(), v["dim"].as_f64().unwrap())
        };
        fleet.command(
            topic,
            profile(r#"[{"from":"20:00","to":"23:00","dim":30}]"#).as_bytes(),
            evening,
            &mut out,
        );
        assert!(
            out[0].payload.contains(r#""status":"ok""#),
            "{}",
            out[0].payload
        );
        assert_eq!(state(&out), (true, 30.0), "the step in force");
        out.clear();
        // Part-night: off between 20:00 and 23:00 local solar time.
        fleet.command(
            topic,
            profile(r#"[{"from":"20:00","to":"23:00","dim":0}]"#).as_bytes(),
            evening,
            &mut out,
        );
        assert_eq!(state(&out), (false, 0.0));
        out.clear();
        // Outside any step, the profile's level; at noon, off.
        fleet.command(topic, profile("[]").as_bytes(), evening, &mut out);
        assert_eq!(state(&out), (true, 80.0));
        out.clear();
        fleet.command(topic, profile("[]").as_bytes(), start, &mut out);
        assert_eq!(state(&out), (false, 0.0));
        out.clear();
        // The same evaluation as the rules': model::lighting.
        let lamp = &fleet.city.lamps[2];
        let (dawn, dusk) = astro::civil_twilight(lamp.at.0, lamp.at.1, evening);
        let s = Schedule::from_command(&serde_json::json!({"dim": 80})).unwrap();
        assert_eq!(s.at(evening, lamp.at.0, dawn, dusk, true).dim, 80.0);
        fleet.command(
            topic,
            profile(r#"[{"from":"25:00","to":"01:00","dim":5}]"#).as_bytes(),
            evening,
            &mut out,
        );
        assert!(out.len() == 1 && out[0].payload.contains("the profile is not valid"));
    }
}

//! Faults in the fleet: what a planned fault does to a device's readings, and the timed
//! events (status changes, the reconnect storm, bad traffic) it adds to the stream.

use model::Timestamp;

use super::{Fleet, Message};
use crate::scenario::{FaultKind, Plan};

/// The faults in force on one device at one time.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Effects {
    pub lamp_failure: bool,
    pub driver_failure: bool,
    pub day_burner: bool,
    pub cycling: bool,
    pub over_voltage: bool,
    pub supply_loss: bool,
    pub leak: bool,
    pub tamper: bool,
    pub reverse_flow: bool,
    pub off_route: bool,
    /// Follow this vehicle closely (bunching).
    pub bunch_behind: Option<usize>,
    /// Stopped where it was at this time.
    pub stopped_since: Option<Timestamp>,
    /// Publishes nothing.
    pub silent: bool,
    /// Holds its readings until the city's power comes back (or its backlog fault ends).
    pub holding: bool,
}

impl Fleet {
    /// Attaches a scenario's plan: its faults shape readings from now on.
    pub fn with_plan(mut self, plan: &Plan) -> Fleet {
        let cab = self.city.cabinets.len();
        for (i, f) in plan.faults.iter().enumerate() {
            self.events.push((f.start.micros(), i, true));
            if let Some(end) = f.end {
                if !f.kind.is_bad_traffic() {
                    self.events.push((end.micros(), i, false));
                }
            }
            match f.device {
                None => self.city_faults.push(i),
                Some(d) => {
                    self.device_faults[d].push(i);
                    if let Some(p) = f.partner {
                        self.device_faults[p].push(i);
                    }
                    if f.kind == FaultKind::CabinetSupplyLoss {
                        let id = &self.city.cabinets[d].id;
                        for (l, lamp) in self.city.lamps.iter().enumerate() {
                            if lamp.cabinet == *id {
                                self.device_faults[cab + l].push(i);
                            }
                        }
                    }
                }
            }
        }
        self.events.sort_by_key(|&(t, i, start)| (t, !start, i));
        self.plan = plan.faults.clone();
        self
    }

    /// How many of the plan's faults have started by `now`.
    pub fn faults_started(&self, now: Timestamp) -> usize {
        self.plan.iter().filter(|f| f.start <= now).count()
    }

    fn active(&self, i: usize, ts: Timestamp) -> bool {
        let f = &self.plan[i];
        f.start <= ts && f.end.is_none_or(|e| ts < e)
    }

    pub(super) fn effects(&self, d: usize, ts: Timestamp) -> Effects {
        let mut e = Effects::default();
        for &i in &self.city_faults {
            if self.active(i, ts) {
                e.holding = true;
            }
        }
        for &i in &self.device_faults[d] {
            if !self.active(i, ts) {
                continue;
            }
            let f = &self.plan[i];
            match f.kind {
                FaultKind::LampFailure => e.lamp_failure = true,
                FaultKind::DriverFailure => e.driver_failure = true,
                FaultKind::DayBurner => e.day_burner = true,
                FaultKind::LampCycling => e.cycling = true,
                FaultKind::VoltageOutOfRange => e.over_voltage = true,
                FaultKind::CabinetSupplyLoss => e.supply_loss = true,
                FaultKind::Leak => e.leak = true,
                FaultKind::Tamper => e.tamper = true,
                FaultKind::ReverseFlow => e.reverse_flow = true,
                FaultKind::OffRoute => e.off_route = true,
                FaultKind::Bunching if f.partner == Some(d) => e.bunch_behind = f.device,
                FaultKind::StoppedTooLong => e.stopped_since = Some(f.start),
                FaultKind::DeviceOffline | FaultKind::MeterSilent | FaultKind::VehicleSilent => {
                    e.silent = true
                }
                FaultKind::Backlog => e.holding = true,
                _ => {}
            }
        }
        e
    }

    /// The next timed event at or before `now`, if any.
    pub(super) fn next_event_at(&self) -> Option<i64> {
        self.events.get(self.next_event).map(|e| e.0)
    }

    /// Emits what the next event adds to the stream.
    pub(super) fn event(&mut self, out: &mut Vec<Message>) {
        let Some(&(t, i, start)) = self.events.get(self.next_event) else {
            return;
        };
        self.next_event += 1;
        let ts = Timestamp(t / 1000 * 1000);
        let f = self.plan[i].clone();
        match (f.kind, f.device) {
            (FaultKind::PowerRestore, _) => {
                for d in 0..self.len() {
                    if start {
                        out.push(self.status(d, ts, false));
                    } else {
                        // The reconnect storm: every device at once, its backlog as an array.
                        let held = std::mem::take(&mut self.backlog[d]);
                        out.push(self.status(d, ts, true));
                        if !held.is_empty() {
                            out.push(Message {
                                device: d,
                                topic: self.topics[d].clone(),
                                payload: format!("[{}]", held.join(",")),
                                retain: false,
                            });
                        }
                    }
                }
            }
            (FaultKind::DeviceOffline, Some(d)) => out.push(self.status(d, ts, !start)),
            (FaultKind::Backlog, Some(d)) if !start => {
                // Everything it held, in one array, newest first: the order is the hub's
                // to restore.
                let mut held = std::mem::take(&mut self.backlog[d]);
                held.reverse();
                if !held.is_empty() {
                    out.push(Message {
                        device: d,
                        topic: self.topics[d].clone(),
                        payload: format!("[{}]", held.join(",")),
                        retain: false,
                    });
                }
            }
            (kind, Some(d)) if kind.is_bad_traffic() => self.bad_traffic(kind, d, f.count, ts, out),
            _ => {}
        }
    }

    fn status(&self, d: usize, ts: Timestamp, online: bool) -> Message {
        let state = if online { "online" } else { "offline" };
        Message {
            device: d,
            topic: self.status_topic(d),
            payload: format!(r#"{{"state":"{state}","ts":{}}}"#, ts.micros() / 1000),
            retain: true,
        }
    }

    fn bad_traffic(
        &mut self,
        kind: FaultKind,
        d: usize,
        count: usize,
        ts: Timestamp,
        out: &mut Vec<Message>,
    ) {
        let ms = ts.micros() / 1000;
        let topic = self.topics[d].clone();
        let tenant = self.city.spec.tenant.clone();
        let mut push = |topic: String, payload: String| {
            out.push(Message {
                device: d,
                topic,
                payload,
                retain: false,
            })
        };
        match kind {
            FaultKind::MalformedJson => {
                (0..count).for_each(|k| push(topic.clone(), format!(r#"{{"ts":{ms},"dim":{k}"#)))
            }
            FaultKind::WrongTypes => (0..count).for_each(|k| {
                push(
                    topic.clone(),
                    format!(r#"{{"ts":{},"on":"yes","dim":"full"}}"#, ms + k as i64),
                )
            }),
            FaultKind::UnknownDevice => (0..count).for_each(|k| {
                push(
                    format!("city/{tenant}/light/GHOST-{k}/telemetry"),
                    format!(r#"{{"ts":{ms},"on":true}}"#),
                )
            }),
            FaultKind::Oversize => (0..count).for_each(|_| {
                push(
                    topic.clone(),
                    format!(r#"{{"ts":{ms},"fault":"{}"}}"#, "x".repeat(300_000)),
                )
            }),
            FaultKind::Duplicates => {
                let reading = self.reading(d, ts);
                out.push(Message {
                    device: d,
                    topic: topic.clone(),
                    payload: reading.clone(),
                    retain: false,
                });
                for _ in 0..count {
                    out.push(Message {
                        device: d,
                        topic: topic.clone(),
                        payload: reading.clone(),
                        retain: false,
                    });
                }
            }
            FaultKind::OutOfOrder => {
                for k in 0..count as i64 {
                    // Three readings a second apart, newest first.
                    let base = ts.add_secs(-(3 * k + 3));
                    let mut items: Vec<String> = (0..3)
                        .map(|j| self.reading(d, Timestamp(base.micros() + j * 1_000_000)))
                        .collect();
                    items.reverse();
                    out.push(Message {
                        device: d,
                        topic: topic.clone(),
                        payload: format!("[{}]", items.join(",")),
                        retain: false,
                    });
                }
            }
            _ => {}
        }
    }
}

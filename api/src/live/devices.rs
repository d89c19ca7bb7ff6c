//! Device state events from the rows ingestion commits.
//!
//! [`tap`] sits on the channel from ingestion to the rules engine: it passes every
//! committed batch on unchanged and, only while some client listens, copies out the few
//! fields that make a device's state (online, on, dim, fault, cabinet contactor, supply and
//! door, vehicle position) into a bounded queue with `try_send`. A full queue drops the
//! copy and the clients are told to refetch: ingestion never waits for live events.
//!
//! [`run`] owns the device directory (id -> tenant, inventory id, kind) and each device's
//! last known state, seeded from `device_latest`; it publishes a device only when its
//! state differs from what was known (a vehicle: on every new position).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use model::{Cell, Committed, Kind, RecordType, Timestamp};
use serde_json::{json, Map, Value};
use store::changes::DeviceEntry;
use store::Reads;
use tokio::sync::mpsc;
use tracing::warn;

use super::{Change, DeviceEvent, EventHub, EventType};

/// Committed batches whose sightings may wait for the device task.
pub(crate) const SIGHTINGS_QUEUE: usize = 64;

/// Unknown devices (imported since) make the directory reload at most this often.
const RELOAD_EVERY: Duration = Duration::from_secs(10);

/// What one committed row says about its device's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Sighting {
    pub device_id: i32,
    pub ts: Timestamp,
    pub update: Update,
}

/// The state fields a row carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    Online(bool),
    Light {
        on: Option<bool>,
        dim: Option<f64>,
        fault: Option<String>,
    },
    Cabinet {
        contactor_on: Option<bool>,
        supply: Option<bool>,
        door_open: Option<bool>,
    },
    Vehicle(Map<String, Value>),
    /// A reading that carries nothing of the state (a meter's), but shows it is alive.
    Heard,
}

/// Passes committed batches from ingestion to the rules, copying out device states while
/// clients listen. Ends when ingestion closes its side; if the rules are gone, batches
/// are still taken (and dropped) so that ingestion never blocks on this hop.
pub async fn tap(
    mut from_ingest: mpsc::Receiver<Committed>,
    to_rules: mpsc::Sender<Committed>,
    hub: EventHub,
) {
    let mut rules_open = true;
    while let Some(batch) = from_ingest.recv().await {
        if hub.has_clients() {
            let seen = sightings(&batch);
            if !seen.is_empty() && hub.0.sightings.try_send(seen).is_err() {
                hub.publish(Change::Resync {
                    reason: "lagged",
                    types: vec![EventType::Device],
                    tenants: None,
                });
            }
        }
        if rules_open && to_rules.send(batch).await.is_err() {
            rules_open = false;
        }
    }
}

/// The state fields of a batch's rows.
pub fn sightings(batch: &Committed) -> Vec<Sighting> {
    let mut out = Vec::new();
    for o in &batch.rows {
        let row = &o.row;
        let update = match o.record {
            RecordType::Status => match row.get(o.record, "state").as_str() {
                Some("online") => Update::Online(true),
                Some("offline") => Update::Online(false),
                _ => continue,
            },
            RecordType::Light => Update::Light {
                on: row.get(o.record, "on").as_bool(),
                dim: row.get(o.record, "dim").as_f64(),
                fault: row.get(o.record, "fault").as_str().map(str::to_owned),
            },
            RecordType::Cabinet => Update::Cabinet {
                contactor_on: row.get(o.record, "contactor_on").as_bool(),
                supply: row.get(o.record, "supply").as_bool(),
                door_open: row.get(o.record, "door_open").as_bool(),
            },
            RecordType::Vehicle => {
                let mut m = Map::new();
                for f in VEHICLE_FIELDS {
                    match row.get(o.record, f) {
                        Cell::Num(n) => {
                            m.insert((*f).into(), json!(n));
                        }
                        Cell::Text(s) => {
                            m.insert((*f).into(), json!(s));
                        }
                        _ => {}
                    }
                }
                if !m.contains_key("lat") || !m.contains_key("lon") {
                    continue;
                }
                Update::Vehicle(m)
            }
            RecordType::Meter => Update::Heard,
            RecordType::Event | RecordType::CmdAck => continue,
        };
        out.push(Sighting {
            device_id: o.device_id,
            ts: row.ts,
            update,
        });
    }
    out
}

const VEHICLE_FIELDS: &[&str] = &[
    "lat",
    "lon",
    "bearing_deg",
    "speed_mps",
    "route",
    "trip",
    "occupancy_pct",
];

/// A device's state as clients see it.
#[derive(Debug, Clone, PartialEq, Default)]
struct State {
    online: Option<bool>,
    fields: Map<String, Value>,
}

impl State {
    /// The state `device_latest` knows.
    fn seeded(entry: &DeviceEntry) -> State {
        let mut s = State {
            online: entry.online,
            fields: Map::new(),
        };
        if let Some(Value::Object(t)) = &entry.telemetry {
            let get = |k: &str| t.get(k).cloned();
            match Kind::parse(&entry.kind) {
                Some(Kind::Light) => {
                    s.set("on", get("on"));
                    s.set("dim", get("dim"));
                    s.fields
                        .insert("fault".into(), get("fault").unwrap_or(Value::Null));
                }
                Some(Kind::Cabinet) => {
                    s.set("on", get("contactor_on"));
                    s.set("supply", get("supply"));
                    s.set("door_open", get("door_open"));
                }
                _ => {}
            }
        }
        s
    }

    fn set(&mut self, key: &str, value: Option<Value>) {
        if let Some(v) = value {
            self.fields.insert(key.into(), v);
        }
    }

    /// Applies a sighting; whether clients should hear of it.
    fn apply(&mut self, update: &Update) -> bool {
        let before = self.clone();
        match update {
            Update::Online(on) => self.online = Some(*on),
            Update::Light { on, dim, fault } => {
                self.set("on", on.map(Value::from));
                self.set("dim", dim.map(Value::from));
                self.fields.insert(
                    "fault".into(),
                    fault.clone().map_or(Value::Null, Value::from),
                );
            }
            Update::Cabinet {
                contactor_on,
                supply,
                door_open,
            } => {
                self.set("on", contactor_on.map(Value::from));
                self.set("supply", supply.map(Value::from));
                self.set("door_open", door_open.map(Value::from));
            }
            Update::Vehicle(m) => {
                for (k, v) in m {
                    self.fields.insert(k.clone(), v.clone());
                }
                return true;
            }
            Update::Heard => {}
        }
        *self != before
    }

    fn to_json(&self, entry: &DeviceEntry, ts: Timestamp) -> String {
        let mut m = Map::new();
        m.insert("id".into(), json!(entry.id));
        m.insert("tenant".into(), json!(entry.tenant));
        m.insert("device".into(), json!(entry.ext_id));
        m.insert("kind".into(), json!(entry.kind));
        m.insert("ts".into(), json!(super::rfc3339(ts.to_datetime())));
        if let Some(online) = self.online {
            m.insert("online".into(), json!(online));
        }
        for (k, v) in &self.fields {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m).to_string()
    }
}

/// The device directory and states.
struct Devices {
    entries: HashMap<i32, (DeviceEntry, State)>,
    max_id: i32,
    last_reload: Option<Instant>,
}

impl Devices {
    /// Loads devices above the highest id known (all of them the first time).
    async fn load_more(&mut self, db: &Reads) -> Result<(), store::StoreError> {
        self.last_reload = Some(Instant::now());
        for entry in db.device_entries(self.max_id).await? {
            self.max_id = self.max_id.max(entry.id);
            let state = State::seeded(&entry);
            self.entries.insert(entry.id, (entry, state));
        }
        Ok(())
    }
}

/// Turns sightings into device events until the API stops.
pub(crate) async fn run(hub: EventHub, mut rx: mpsc::Receiver<Vec<Sighting>>) {
    let stop = hub.stopping();
    let mut devices = Devices {
        entries: HashMap::new(),
        max_id: 0,
        last_reload: None,
    };
    let mut db: Option<Reads> = None;
    loop {
        let batch = tokio::select! {
            _ = stop.cancelled() => return,
            b = rx.recv() => match b { Some(b) => b, None => return },
        };
        let unknown = batch
            .iter()
            .any(|s| !devices.entries.contains_key(&s.device_id));
        let due = devices
            .last_reload
            .is_none_or(|t| t.elapsed() >= RELOAD_EVERY);
        if unknown && due {
            if db.is_none() {
                db = Reads::connect(&hub.0.url).await.ok();
            }
            if let Some(conn) = &db {
                if let Err(error) = devices.load_more(conn).await {
                    warn!(message = "Cannot read the devices for live events; will retry.", %error);
                    db = None;
                }
            }
        }
        let mut events = Vec::new();
        let mut newest: HashMap<i32, usize> = HashMap::new();
        for s in &batch {
            let Some((entry, state)) = devices.entries.get_mut(&s.device_id) else {
                continue;
            };
            if state.apply(&s.update) {
                let event = DeviceEvent {
                    device_id: entry.id,
                    tenant_id: entry.tenant_id,
                    data: Arc::from(state.to_json(entry, s.ts)),
                };
                // One event per device per batch: its newest state.
                match newest.get(&entry.id) {
                    Some(&i) => events[i] = event,
                    None => {
                        newest.insert(entry.id, events.len());
                        events.push(event);
                    }
                }
            }
        }
        if !events.is_empty() {
            hub.publish(Change::Devices(events));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: &str, telemetry: Option<Value>, online: Option<bool>) -> DeviceEntry {
        DeviceEntry {
            id: 1,
            tenant_id: 1,
            tenant: "t".into(),
            ext_id: "L1".into(),
            kind: kind.into(),
            telemetry,
            online,
        }
    }

    fn light(on: Option<bool>, dim: Option<f64>, fault: Option<&str>) -> Update {
        Update::Light {
            on,
            dim,
            fault: fault.map(str::to_owned),
        }
    }

    #[test]
    fn only_changes_of_state_are_news() {
        let e = entry(
            "light",
            Some(json!({"on": true, "dim": 100.0, "power_w": 80.0})),
            Some(true),
        );
        let mut s = State::seeded(&e);
        // Check: (update, is news).
        let cases = [
            (light(Some(true), Some(100.0), None), false),
            (light(Some(true), Some(60.0), None), true),
            (light(Some(true), Some(60.0), None), false),
            (light(None, None, None), false),
            (light(Some(true), None, Some("lamp_failure")), true),
            (Update::Online(true), false),
            (Update::Online(false), true),
            (Update::Heard, false),
        ];
        for (i, (update, news)) in cases.into_iter().enumerate() {
            assert_eq!(s.apply(&update), news, "case {i}: {update:?}");
        }
        let out: Value = serde_json::from_str(&s.to_json(&e, Timestamp(0))).unwrap();
        assert_eq!(out["online"], json!(false));
        assert_eq!(out["fault"], json!("lamp_failure"));
        assert_eq!(out["dim"], json!(60.0));
        assert_eq!(out["device"], json!("L1"));
    }

    #[test]
    fn every_vehicle_position_is_news() {
        let e = entry("vehicle", None, None);
        let mut s = State::seeded(&e);
        let mut m = Map::new();
        m.insert("lat".into(), json!(1.0));
        m.insert("lon".into(), json!(2.0));
        assert!(s.apply(&Update::Vehicle(m.clone())));
        assert!(s.apply(&Update::Vehicle(m)));
    }
}

//! The payload fields of the contract, one table-driven schema per record type.
//!
//! A [`RecordType`] lists its fields ([`FieldSpec`]) in column order. Decoding fills a
//! [`Row`] with one [`Cell`] per field; `store` writes the cells to the matching table in the
//! same order. Adding a field to the contract is one line here and one column in a migration.

use serde_json::{Map, Value};

use crate::{Channel, Kind, Timestamp};

/// What kind of row a message on a channel produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordType {
    Light,
    Cabinet,
    Meter,
    Vehicle,
    Event,
    Status,
    CmdAck,
}

impl RecordType {
    pub const ALL: [RecordType; 7] = [
        RecordType::Light,
        RecordType::Cabinet,
        RecordType::Meter,
        RecordType::Vehicle,
        RecordType::Event,
        RecordType::Status,
        RecordType::CmdAck,
    ];

    /// The record type of a message, or `None` for the hub's own `cmd` channel.
    pub fn of(kind: Kind, channel: Channel) -> Option<RecordType> {
        Some(match channel {
            Channel::Telemetry => match kind {
                Kind::Light => RecordType::Light,
                Kind::Cabinet => RecordType::Cabinet,
                Kind::Meter => RecordType::Meter,
                Kind::Vehicle => RecordType::Vehicle,
            },
            Channel::Event => RecordType::Event,
            Channel::Status => RecordType::Status,
            Channel::CmdAck => RecordType::CmdAck,
            Channel::Cmd => return None,
        })
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            RecordType::Light => "light",
            RecordType::Cabinet => "cabinet",
            RecordType::Meter => "meter",
            RecordType::Vehicle => "vehicle",
            RecordType::Event => "event",
            RecordType::Status => "status",
            RecordType::CmdAck => "cmd_ack",
        }
    }

    /// Whether `ts` may be left out. Only `status`: a last will is composed when the device
    /// connects, so the device cannot know when it will be published; the hub's receive
    /// time stands in.
    pub fn ts_optional(self) -> bool {
        self == RecordType::Status
    }

    /// Every number has a physical range: a value outside it is a broken sensor or an
    /// attack, and is dead-lettered (`out_of_range`) rather than summed into a city's
    /// rollups and reports, where one 1e308 would overflow them.
    pub fn fields(self) -> &'static [FieldSpec] {
        use FieldType::*;
        const PCT: FieldType = Real(0.0, 100.0);
        match self {
            RecordType::Light => {
                const F: &[FieldSpec] = &[
                    FieldSpec::opt("on", Bool),
                    FieldSpec::opt("dim", PCT),
                    FieldSpec::opt("power_w", Double(-1e6, 1e6)),
                    FieldSpec::opt("voltage_v", Double(-1e5, 1e5)),
                    FieldSpec::opt("current_a", Double(-1e5, 1e5)),
                    FieldSpec::opt("pf", Real(0.0, 1.0)),
                    FieldSpec::opt("energy_wh", Double(0.0, 1e15)),
                    FieldSpec::opt("burn_hours", Double(0.0, 1e7)),
                    FieldSpec::opt("lux", Double(0.0, 1e7)),
                    FieldSpec::opt("fault", Text(64, None)).blank_is_null(),
                ];
                F
            }
            RecordType::Cabinet => {
                const F: &[FieldSpec] = &[
                    FieldSpec::opt("supply", Bool),
                    FieldSpec::opt("contactor_on", Bool),
                    FieldSpec::opt("door_open", Bool),
                    FieldSpec::opt("power_kw", Double(-1e5, 1e5)),
                    FieldSpec::opt("voltage_v", Double(-1e5, 1e5)),
                    FieldSpec::opt("current_a", Double(-1e5, 1e5)),
                    FieldSpec::opt("energy_kwh", Double(0.0, 1e13)),
                ];
                F
            }
            RecordType::Meter => {
                const F: &[FieldSpec] = &[
                    FieldSpec::opt("medium", Text(16, Some(&["water", "electricity", "heat"]))),
                    FieldSpec::opt("total", Double(0.0, 1e13)),
                    FieldSpec::opt("flow_m3h", Double(-1e6, 1e6)),
                    FieldSpec::opt("power_kw", Double(-1e6, 1e6)),
                    FieldSpec::opt("pressure_bar", Double(-1e3, 1e4)),
                    FieldSpec::opt("temp_supply_c", Double(-100.0, 1000.0)),
                    FieldSpec::opt("temp_return_c", Double(-100.0, 1000.0)),
                    FieldSpec::opt("battery_pct", PCT),
                    FieldSpec::opt("tamper", Bool),
                    FieldSpec::opt("reverse_flow", Bool),
                ];
                F
            }
            RecordType::Vehicle => {
                const F: &[FieldSpec] = &[
                    FieldSpec::opt("lat", Double(-90.0, 90.0)),
                    FieldSpec::opt("lon", Double(-180.0, 180.0)),
                    FieldSpec::opt("speed_mps", Real(0.0, 1000.0)),
                    FieldSpec::opt("bearing_deg", Real(0.0, 360.0)),
                    FieldSpec::opt("route", Text(64, None)),
                    FieldSpec::opt("trip", Text(64, None)),
                    FieldSpec::opt("occupancy_pct", Real(0.0, 1000.0)),
                    FieldSpec::opt("odometer_m", Double(0.0, 1e12)),
                ];
                F
            }
            RecordType::Event => {
                const F: &[FieldSpec] = &[
                    FieldSpec::req("code", Text(64, None)),
                    FieldSpec::opt("detail", Text(1024, None)),
                ];
                F
            }
            RecordType::Status => {
                const F: &[FieldSpec] = &[FieldSpec::req(
                    "state",
                    Text(16, Some(&["online", "offline"])),
                )];
                F
            }
            RecordType::CmdAck => {
                const F: &[FieldSpec] = &[
                    FieldSpec::req("id", Uuid),
                    FieldSpec::req("status", Text(16, Some(&["ok", "rejected", "failed"]))),
                    FieldSpec::opt("detail", Text(1024, None)),
                ];
                F
            }
        }
    }

    /// Position of a field in [`Row::cells`].
    pub fn field_index(self, name: &str) -> Option<usize> {
        self.fields().iter().position(|f| f.name == name)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    pub name: &'static str,
    pub ty: FieldType,
    pub required: bool,
    /// A blank string (empty or only spaces) means none, as `null` does: a device's way
    /// of saying "no fault".
    pub blank_is_null: bool,
}

impl FieldSpec {
    const fn opt(name: &'static str, ty: FieldType) -> FieldSpec {
        FieldSpec {
            name,
            ty,
            required: false,
            blank_is_null: false,
        }
    }
    const fn req(name: &'static str, ty: FieldType) -> FieldSpec {
        FieldSpec {
            name,
            ty,
            required: true,
            blank_is_null: false,
        }
    }
    const fn blank_is_null(self) -> FieldSpec {
        FieldSpec {
            blank_is_null: true,
            ..self
        }
    }
}

/// The JSON type a field takes, its allowed range, and its column type.
#[derive(Debug, Clone, Copy)]
pub enum FieldType {
    Bool,
    /// A number stored as `real` (4 bytes), inclusive range.
    Real(f64, f64),
    /// A number stored as `double precision`, inclusive range.
    Double(f64, f64),
    /// A string of at most this many bytes, optionally from a fixed set.
    Text(usize, Option<&'static [&'static str]>),
    /// A UUID string, stored as `uuid`.
    Uuid,
}

/// One decoded value; `Null` where the field was absent or JSON `null`.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Bool(bool),
    Num(f64),
    Text(String),
    Uuid(uuid::Uuid),
}

impl Cell {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Cell::Num(v) => Some(*v),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Cell::Bool(v) => Some(*v),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Cell::Text(v) => Some(v),
            _ => None,
        }
    }
}

/// One accepted object of a payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub ts: Timestamp,
    /// One per [`RecordType::fields`], in order.
    pub cells: Vec<Cell>,
    /// Fields the contract does not name, kept as they came.
    pub extra: Option<Map<String, Value>>,
}

impl Row {
    pub fn get(&self, record: RecordType, field: &str) -> &Cell {
        record
            .field_index(field)
            .and_then(|i| self.cells.get(i))
            .unwrap_or(&Cell::Null)
    }
}

/// Rows ingestion committed in one transaction, handed on (to the rules engine) with the
/// moment of the commit, so that what follows can be timed from it.
#[derive(Debug, Clone)]
pub struct Committed {
    pub at: std::time::Instant,
    pub rows: Vec<Observation>,
}

/// A committed row of a device, as ingestion hands it on (to the rules engine).
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub device_id: i32,
    pub record: RecordType,
    pub row: Row,
}

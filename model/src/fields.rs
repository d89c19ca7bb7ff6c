//! The contract's fields named in code: `row.cell(fields::light::POWER_W)`. A field that
//! does not exist does not compile, where a name in a string (`"power_w"`) would silently
//! read nothing; each constant is held to [`RecordType::fields`] by a test.

use crate::{Cell, RecordType, Row};

/// One field of a record type: its column in [`Row::cells`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub record: RecordType,
    pub index: usize,
    pub name: &'static str,
}

impl Field {
    const fn new(record: RecordType, index: usize, name: &'static str) -> Field {
        Field {
            record,
            index,
            name,
        }
    }
}

impl Row {
    /// The value of `field` (`Null` when absent).
    pub fn cell(&self, field: Field) -> &Cell {
        self.cells.get(field.index).unwrap_or(&Cell::Null)
    }
}

/// `Light` records ([`RecordType::Light`]).
pub mod light {
    use super::Field;
    use crate::RecordType;

    pub const ON: Field = Field::new(RecordType::Light, 0, "on");
    pub const DIM: Field = Field::new(RecordType::Light, 1, "dim");
    pub const POWER_W: Field = Field::new(RecordType::Light, 2, "power_w");
    pub const VOLTAGE_V: Field = Field::new(RecordType::Light, 3, "voltage_v");
    pub const CURRENT_A: Field = Field::new(RecordType::Light, 4, "current_a");
    pub const PF: Field = Field::new(RecordType::Light, 5, "pf");
    pub const ENERGY_WH: Field = Field::new(RecordType::Light, 6, "energy_wh");
    pub const BURN_HOURS: Field = Field::new(RecordType::Light, 7, "burn_hours");
    pub const LUX: Field = Field::new(RecordType::Light, 8, "lux");
    pub const FAULT: Field = Field::new(RecordType::Light, 9, "fault");
}

/// `Cabinet` records ([`RecordType::Cabinet`]).
pub mod cabinet {
    use super::Field;
    use crate::RecordType;

    pub const SUPPLY: Field = Field::new(RecordType::Cabinet, 0, "supply");
    pub const CONTACTOR_ON: Field = Field::new(RecordType::Cabinet, 1, "contactor_on");
    pub const DOOR_OPEN: Field = Field::new(RecordType::Cabinet, 2, "door_open");
    pub const POWER_KW: Field = Field::new(RecordType::Cabinet, 3, "power_kw");
    pub const VOLTAGE_V: Field = Field::new(RecordType::Cabinet, 4, "voltage_v");
    pub const CURRENT_A: Field = Field::new(RecordType::Cabinet, 5, "current_a");
    pub const ENERGY_KWH: Field = Field::new(RecordType::Cabinet, 6, "energy_kwh");
}

/// `Meter` records ([`RecordType::Meter`]).
pub mod meter {
    use super::Field;
    use crate::RecordType;

    pub const MEDIUM: Field = Field::new(RecordType::Meter, 0, "medium");
    pub const TOTAL: Field = Field::new(RecordType::Meter, 1, "total");
    pub const FLOW_M3H: Field = Field::new(RecordType::Meter, 2, "flow_m3h");
    pub const POWER_KW: Field = Field::new(RecordType::Meter, 3, "power_kw");
    pub const PRESSURE_BAR: Field = Field::new(RecordType::Meter, 4, "pressure_bar");
    pub const TEMP_SUPPLY_C: Field = Field::new(RecordType::Meter, 5, "temp_supply_c");
    pub const TEMP_RETURN_C: Field = Field::new(RecordType::Meter, 6, "temp_return_c");
    pub const BATTERY_PCT: Field = Field::new(RecordType::Meter, 7, "battery_pct");
    pub const TAMPER: Field = Field::new(RecordType::Meter, 8, "tamper");
    pub const REVERSE_FLOW: Field = Field::new(RecordType::Meter, 9, "reverse_flow");
}

/// `Vehicle` records ([`RecordType::Vehicle`]).
pub mod vehicle {
    use super::Field;
    use crate::RecordType;

    pub const LAT: Field = Field::new(RecordType::Vehicle, 0, "lat");
    pub const LON: Field = Field::new(RecordType::Vehicle, 1, "lon");
    pub const SPEED_MPS: Field = Field::new(RecordType::Vehicle, 2, "speed_mps");
    pub const BEARING_DEG: Field = Field::new(RecordType::Vehicle, 3, "bearing_deg");
    pub const ROUTE: Field = Field::new(RecordType::Vehicle, 4, "route");
    pub const TRIP: Field = Field::new(RecordType::Vehicle, 5, "trip");
    pub const OCCUPANCY_PCT: Field = Field::new(RecordType::Vehicle, 6, "occupancy_pct");
    pub const ODOMETER_M: Field = Field::new(RecordType::Vehicle, 7, "odometer_m");
}

/// `Event` records ([`RecordType::Event`]).
pub mod event {
    use super::Field;
    use crate::RecordType;

    pub const CODE: Field = Field::new(RecordType::Event, 0, "code");
    pub const DETAIL: Field = Field::new(RecordType::Event, 1, "detail");
}

/// `Status` records ([`RecordType::Status`]).
pub mod status {
    use super::Field;
    use crate::RecordType;

    pub const STATE: Field = Field::new(RecordType::Status, 0, "state");
}

/// `CmdAck` records ([`RecordType::CmdAck`]).
pub mod cmd_ack {
    use super::Field;
    use crate::RecordType;

    pub const ID: Field = Field::new(RecordType::CmdAck, 0, "id");
    pub const STATUS: Field = Field::new(RecordType::CmdAck, 1, "status");
    pub const DETAIL: Field = Field::new(RecordType::CmdAck, 2, "detail");
}

/// Every named field.
pub const ALL: [Field; 41] = [
    light::ON,
    light::DIM,
    light::POWER_W,
    light::VOLTAGE_V,
    light::CURRENT_A,
    light::PF,
    light::ENERGY_WH,
    light::BURN_HOURS,
    light::LUX,
    light::FAULT,
    cabinet::SUPPLY,
    cabinet::CONTACTOR_ON,
    cabinet::DOOR_OPEN,
    cabinet::POWER_KW,
    cabinet::VOLTAGE_V,
    cabinet::CURRENT_A,
    cabinet::ENERGY_KWH,
    meter::MEDIUM,
    meter::TOTAL,
    meter::FLOW_M3H,
    meter::POWER_KW,
    meter::PRESSURE_BAR,
    meter::TEMP_SUPPLY_C,
    meter::TEMP_RETURN_C,
    meter::BATTERY_PCT,
    meter::TAMPER,
    meter::REVERSE_FLOW,
    vehicle::LAT,
    vehicle::LON,
    vehicle::SPEED_MPS,
    vehicle::BEARING_DEG,
    vehicle::ROUTE,
    vehicle::TRIP,
    vehicle::OCCUPANCY_PCT,
    vehicle::ODOMETER_M,
    event::CODE,
    event::DETAIL,
    status::STATE,
    cmd_ack::ID,
    cmd_ack::STATUS,
    cmd_ack::DETAIL,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_its_column_and_every_column_has_a_field() {
        for f in ALL {
            assert_eq!(f.record.fields()[f.index].name, f.name, "{f:?}");
        }
        let columns: usize = RecordType::ALL.iter().map(|r| r.fields().len()).sum();
        assert_eq!(ALL.len(), columns);
    }
}

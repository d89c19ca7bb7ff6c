//! The domain's vocabulary as types: what kind an outage is and how severe. The rules, the
//! store, the API and the benchmarks speak of these, never of strings; the database and
//! the API's JSON hold their names (`as_str`), read back with `parse`.

use serde::{Deserialize, Serialize};

/// What an outage is about (docs/rules.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutageKind {
    LampFailure,
    DayBurner,
    LampCycling,
    VoltageOutOfRange,
    DeviceOffline,
    CabinetSupplyLoss,
    Leak,
    Tamper,
    ReverseFlow,
    MeterSilent,
    VehicleSilent,
    OffRoute,
    Bunching,
    StoppedTooLong,
}

impl OutageKind {
    pub const ALL: [OutageKind; 14] = [
        OutageKind::LampFailure,
        OutageKind::DayBurner,
        OutageKind::LampCycling,
        OutageKind::VoltageOutOfRange,
        OutageKind::DeviceOffline,
        OutageKind::CabinetSupplyLoss,
        OutageKind::Leak,
        OutageKind::Tamper,
        OutageKind::ReverseFlow,
        OutageKind::MeterSilent,
        OutageKind::VehicleSilent,
        OutageKind::OffRoute,
        OutageKind::Bunching,
        OutageKind::StoppedTooLong,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OutageKind::LampFailure => "lamp_failure",
            OutageKind::DayBurner => "day_burner",
            OutageKind::LampCycling => "lamp_cycling",
            OutageKind::VoltageOutOfRange => "voltage_out_of_range",
            OutageKind::DeviceOffline => "device_offline",
            OutageKind::CabinetSupplyLoss => "cabinet_supply_loss",
            OutageKind::Leak => "leak",
            OutageKind::Tamper => "tamper",
            OutageKind::ReverseFlow => "reverse_flow",
            OutageKind::MeterSilent => "meter_silent",
            OutageKind::VehicleSilent => "vehicle_silent",
            OutageKind::OffRoute => "off_route",
            OutageKind::Bunching => "bunching",
            OutageKind::StoppedTooLong => "stopped_too_long",
        }
    }

    pub fn parse(s: &str) -> Option<OutageKind> {
        OutageKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The severity an outage of this kind has unless the rules file says otherwise: a
    /// cabinet's supply loss (every lamp it feeds dark) above everything; what harms
    /// people, property or the network (a leak, a voltage out of the band, tampering,
    /// water flowing back, a bus off its route or stopped in traffic) above one lamp, one
    /// silent meter or one bus's tracker.
    pub fn default_severity(self) -> Severity {
        use OutageKind::*;
        match self {
            CabinetSupplyLoss => Severity::Critical,
            Leak | VoltageOutOfRange | Tamper | ReverseFlow | OffRoute | StoppedTooLong => {
                Severity::Major
            }
            LampFailure | DayBurner | LampCycling | DeviceOffline | MeterSilent | VehicleSilent
            | Bunching => Severity::Minor,
        }
    }
}

/// How much an outage matters; the alarm list is ordered by it, then by age.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Major,
    #[default]
    Minor,
}

impl Severity {
    pub const ALL: [Severity; 3] = [Severity::Critical, Severity::Major, Severity::Minor];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Major => "major",
            Severity::Minor => "minor",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Most severe first: 0 for critical.
    pub fn rank(self) -> i16 {
        self as i16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_serde_agrees() {
        for k in OutageKind::ALL {
            assert_eq!(OutageKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        for s in Severity::ALL {
            assert_eq!(Severity::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(OutageKind::parse("lamp_fail"), None);
        assert_eq!(
            Severity::ALL.map(Severity::rank),
            [0, 1, 2],
            "most severe first"
        );
    }
}

//! The domain's vocabulary as types: what kind an outage is, how severe, where it and a
//! work order stand in their life cycles (with the work order's steps as one function),
//! what a command's delivery came to, and people's roles. The rules, the store, the API
//! and the benchmarks speak of these, never of strings; the database and the API's JSON
//! hold their names (`as_str`, the same as serde's), read back with `parse`. With the
//! `openapi` feature each is also an OpenAPI schema listing its names.

use serde::{Deserialize, Serialize};

/// A set of names, as the database and the API's JSON hold them: for code that reads or
/// checks any of them (a query parameter, a column).
pub trait Vocabulary: Sized + Copy + 'static {
    /// Every value, in order.
    fn all() -> &'static [Self];
    /// The name stored and sent.
    fn as_str(self) -> &'static str;
    /// The value of a name, if it is one.
    fn parse(s: &str) -> Option<Self>;
    /// Every name, in order.
    fn names() -> Vec<&'static str> {
        Self::all().iter().map(|v| v.as_str()).collect()
    }
}

/// An enum of names: `ALL` in order, `as_str` (the name stored and sent: the variant's
/// name in snake case, as serde writes it), `parse`.
macro_rules! vocabulary {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        // Written out, not passed in: a literal passed through a macro is not read by
        // the OpenAPI derive, which would then list the variants' Rust names.
        #[serde(rename_all = "snake_case")]
        $vis enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            pub const ALL: [$name; [$($text),+].len()] = [$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            pub fn parse(s: &str) -> Option<$name> {
                $name::ALL.into_iter().find(|v| v.as_str() == s)
            }

            /// Its position in `ALL`, which lists the variants as they are declared.
            pub fn index(self) -> usize {
                self as usize
            }
        }

        impl Vocabulary for $name {
            fn all() -> &'static [$name] {
                &$name::ALL
            }

            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }

            fn parse(s: &str) -> Option<$name> {
                $name::parse(s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary! {
    /// What an outage is about (docs/rules.md).
    pub enum OutageKind {
        LampFailure = "lamp_failure",
        DayBurner = "day_burner",
        LampCycling = "lamp_cycling",
        VoltageOutOfRange = "voltage_out_of_range",
        DeviceOffline = "device_offline",
        CabinetSupplyLoss = "cabinet_supply_loss",
        Leak = "leak",
        Tamper = "tamper",
        ReverseFlow = "reverse_flow",
        MeterSilent = "meter_silent",
        VehicleSilent = "vehicle_silent",
        OffRoute = "off_route",
        Bunching = "bunching",
        StoppedTooLong = "stopped_too_long",
    }
}

/// The kind of a work order that no outage raised: people reported something (a
/// citizen's report on a device with no open outage) and a crew goes to look.
pub const INSPECTION: &str = "inspection";

impl OutageKind {
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

vocabulary! {
    /// How much an outage matters; the alarm list is ordered by it, then by age.
    #[derive(Default)]
    pub enum Severity {
        Critical = "critical",
        Major = "major",
        #[default]
        Minor = "minor",
    }
}

impl Severity {
    /// Most severe first: 0 for critical.
    pub fn rank(self) -> i16 {
        self as i16
    }
}

vocabulary! {
    /// Where an outage stands: open until the fault clears (resolved); acknowledged once
    /// someone in the control room has seen it; closed once resolved and its work order
    /// closed.
    pub enum OutageState {
        Open = "open",
        Acknowledged = "acknowledged",
        Resolved = "resolved",
        Closed = "closed",
    }
}

impl OutageState {
    /// Whether the fault is still there (open, seen or not): what can be acknowledged,
    /// shelved, assigned, and what the map and counts show.
    pub fn active(self) -> bool {
        matches!(self, OutageState::Open | OutageState::Acknowledged)
    }
}

vocabulary! {
    /// Where a work order stands in its life cycle ([`WorkOrderState::can_become`]).
    pub enum WorkOrderState {
        New = "new",
        Assigned = "assigned",
        InProgress = "in_progress",
        Done = "done",
        Verified = "verified",
        Reopened = "reopened",
        Closed = "closed",
    }
}

impl WorkOrderState {
    /// Whether a work order may go from this state to `to`: the life cycle, in one place.
    ///
    /// Strict on purpose: only a verified repair closes (so a closed order was confirmed
    /// by telemetry), and only a done or verified one can be reopened (an order still
    /// being worked on needs no reopening when its fault recurs).
    pub fn can_become(self, to: WorkOrderState) -> bool {
        use WorkOrderState::*;
        matches!(
            (self, to),
            (New, Assigned)
                | (Assigned, InProgress)
                | (InProgress, Done)
                | (Reopened, Assigned)
                | (Reopened, InProgress)
                | (Done, Verified)
                | (Done, Reopened)
                | (Verified, Closed)
                | (Verified, Reopened)
        )
    }

    /// Whether people may move an order to this state. `verified` is the hub's alone:
    /// telemetry verifies a repair, nobody declares it; `new` is where orders start.
    pub fn set_by_people(self) -> bool {
        !matches!(self, WorkOrderState::Verified | WorkOrderState::New)
    }

    /// Whether the work is over, as far as the crew is concerned.
    pub fn finished(self) -> bool {
        matches!(
            self,
            WorkOrderState::Done | WorkOrderState::Verified | WorkOrderState::Closed
        )
    }
}

vocabulary! {
    /// What a command's delivery to one device came to, in the order of its life.
    pub enum CommandStatus {
        Pending = "pending",
        Sent = "sent",
        Acked = "acked",
        Rejected = "rejected",
        Failed = "failed",
        Expired = "expired",
    }
}

vocabulary! {
    /// A user's role (docs/api.md, "Roles").
    pub enum Role {
        /// Everything, within their tenants.
        Admin = "admin",
        /// The control room: reads, acknowledges, shelves and comments on outages.
        Operator = "operator",
        /// Reads, moves work orders along and assigns them, comments on outages.
        Dispatcher = "dispatcher",
        /// A field crew member: their team's work orders, started and finished.
        Crew = "crew",
        /// Reads.
        Viewer = "viewer",
        /// Reads, usually over several municipalities.
        RegionalViewer = "regional_viewer",
    }
}

vocabulary! {
    /// What a device is, as the map and the API show it: its effective state, not only what
    /// it last said. In order of precedence: the first that holds is the device's state
    /// ([`DeviceState::of`]). The first nine are abnormal, most urgent first; the rest are
    /// a healthy device's normal states.
    pub enum DeviceState {
        /// An active outage of critical severity on the device (the worst one decides).
        OutageCritical = "outage_critical",
        /// An active outage of major severity.
        OutageMajor = "outage_major",
        /// An active outage of minor severity.
        OutageMinor = "outage_minor",
        /// A lamp whose cabinet has lost its supply (an active supply-loss outage on the
        /// cabinet): dark whatever it last said.
        NoSupply = "no_supply",
        /// In a running maintenance window: its faults are not raised until it ends.
        Maintenance = "maintenance",
        /// Said it is offline (or its last will did).
        Offline = "offline",
        /// Not heard from within its expected reporting interval (plus the grace).
        Stale = "stale",
        /// Never heard from.
        NeverHeard = "never_heard",
        /// Reports a fault no outage covers (yet).
        Fault = "fault",
        /// A lamp held by an operator's override (an override schedule or a light
        /// setting with an expiry, in force), not by its schedule.
        Override = "override",
        /// A lamp burning dimmed (below 100 %).
        Dimmed = "dimmed",
        /// A lamp burning at full level.
        On = "on",
        /// A lamp switched off.
        Off = "off",
        /// Any other device, healthy.
        Ok = "ok",
    }
}

/// What the hub knows of a device, from which its [`DeviceState`] follows.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DeviceFacts {
    /// A lamp (on, off, dimmed and override apply to lamps only).
    pub lamp: bool,
    /// The newest message, if any.
    pub last_seen: Option<crate::Timestamp>,
    /// What its newest status said (`None`: no status yet).
    pub online: Option<bool>,
    /// Its newest telemetry reports a fault.
    pub fault: bool,
    /// The severity of its worst active outage.
    pub worst_outage: Option<Severity>,
    /// It is a lamp whose cabinet has an active supply-loss outage.
    pub supply_lost: bool,
    /// A maintenance window covering it is running.
    pub maintenance: bool,
    /// An operator's override holds it (lamps).
    pub overridden: bool,
    /// A lamp's relay as last reported.
    pub on: Option<bool>,
    /// A lamp's dimming level (%) as last reported.
    pub dim_pct: Option<f64>,
}

impl DeviceState {
    /// The state of a device with `facts` at `now`, when a device of its kind is expected
    /// to report at least every `stale_after_s` seconds.
    pub fn of(facts: &DeviceFacts, now: crate::Timestamp, stale_after_s: i64) -> DeviceState {
        use DeviceState::*;
        if let Some(severity) = facts.worst_outage {
            return match severity {
                Severity::Critical => OutageCritical,
                Severity::Major => OutageMajor,
                Severity::Minor => OutageMinor,
            };
        }
        if facts.supply_lost {
            return NoSupply;
        }
        if facts.maintenance {
            return Maintenance;
        }
        let Some(seen) = facts.last_seen else {
            return NeverHeard;
        };
        if facts.online == Some(false) {
            return Offline;
        }
        if now.micros() - seen.micros() > stale_after_s.saturating_mul(1_000_000) {
            return Stale;
        }
        if facts.fault {
            return Fault;
        }
        if !facts.lamp {
            return Ok;
        }
        if facts.overridden {
            return Override;
        }
        match (facts.on, facts.dim_pct) {
            (Some(false), _) => Off,
            (_, Some(d)) if d < 100.0 && d > 0.0 => Dimmed,
            (Some(true), _) => On,
            (None, Some(d)) if d <= 0.0 => Off,
            // Heard from, healthy, but its relay never reported.
            (None, _) => Ok,
        }
    }

    /// Whether an operator should look: every state before the normal ones.
    pub fn abnormal(self) -> bool {
        self < DeviceState::Override
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<T>(all: &[T], parse: fn(&str) -> Option<T>, name: fn(T) -> &'static str)
    where
        T: Copy + PartialEq + std::fmt::Debug + Serialize,
    {
        for v in all {
            assert_eq!(parse(name(*v)), Some(*v));
            assert_eq!(serde_json::to_value(v).unwrap(), name(*v), "serde agrees");
        }
        assert_eq!(parse(""), None);
    }

    #[test]
    fn names_round_trip_and_serde_agrees() {
        round_trips(&OutageKind::ALL, OutageKind::parse, OutageKind::as_str);
        round_trips(&Severity::ALL, Severity::parse, Severity::as_str);
        round_trips(&OutageState::ALL, OutageState::parse, OutageState::as_str);
        round_trips(
            &WorkOrderState::ALL,
            WorkOrderState::parse,
            WorkOrderState::as_str,
        );
        round_trips(
            &CommandStatus::ALL,
            CommandStatus::parse,
            CommandStatus::as_str,
        );
        round_trips(&Role::ALL, Role::parse, Role::as_str);
        round_trips(&DeviceState::ALL, DeviceState::parse, DeviceState::as_str);
        assert_eq!(OutageKind::parse("lamp_fail"), None);
        assert_eq!(
            Severity::ALL.map(Severity::rank),
            [0, 1, 2],
            "most severe first"
        );
        for (i, s) in DeviceState::ALL.into_iter().enumerate() {
            assert_eq!(s.index(), i, "{s}");
        }
    }

    #[test]
    fn the_work_order_life_cycle() {
        use WorkOrderState::*;
        let allowed: Vec<(WorkOrderState, WorkOrderState)> = WorkOrderState::ALL
            .into_iter()
            .flat_map(|from| WorkOrderState::ALL.map(|to| (from, to)))
            .filter(|(from, to)| from.can_become(*to))
            .collect();
        assert_eq!(
            allowed,
            [
                (New, Assigned),
                (Assigned, InProgress),
                (InProgress, Done),
                (Done, Verified),
                (Done, Reopened),
                (Verified, Reopened),
                (Verified, Closed),
                (Reopened, Assigned),
                (Reopened, InProgress),
            ]
        );
        // Every state but closed leads somewhere, and every state but new is reached.
        for s in WorkOrderState::ALL {
            let out = WorkOrderState::ALL.iter().any(|t| s.can_become(*t));
            let into = WorkOrderState::ALL.iter().any(|f| f.can_become(s));
            assert_eq!(out, s != Closed, "{s}");
            assert_eq!(into, s != New, "{s}");
        }
        assert!(!Verified.set_by_people() && Closed.set_by_people());
    }

    fn at(s: i64) -> crate::Timestamp {
        crate::Timestamp::from_unix_ms(s * 1000).unwrap()
    }

    /// A lamp heard from at 1,000 s, well, burning at full level.
    fn lamp() -> DeviceFacts {
        DeviceFacts {
            lamp: true,
            last_seen: Some(at(1_000)),
            online: Some(true),
            on: Some(true),
            dim_pct: Some(100.0),
            ..DeviceFacts::default()
        }
    }

    #[test]
    fn a_device_is_in_the_first_state_that_holds() {
        use DeviceState::*;
        let now = at(1_100);
        let of = |f: DeviceFacts| DeviceState::of(&f, now, 910);
        assert_eq!(of(lamp()), On);
        assert_eq!(
            of(DeviceFacts {
                dim_pct: Some(40.0),
                ..lamp()
            }),
            Dimmed
        );
        assert_eq!(
            of(DeviceFacts {
                on: Some(false),
                dim_pct: Some(0.0),
                ..lamp()
            }),
            Off
        );
        assert_eq!(
            of(DeviceFacts {
                on: None,
                dim_pct: None,
                ..lamp()
            }),
            Ok
        );
        assert_eq!(
            of(DeviceFacts {
                overridden: true,
                on: Some(false),
                ..lamp()
            }),
            Override
        );
        assert_eq!(
            of(DeviceFacts {
                fault: true,
                overridden: true,
                ..lamp()
            }),
            Fault
        );
        // Stale past one interval and the grace, not at it.
        assert_eq!(DeviceState::of(&lamp(), at(1_910), 910), On);
        assert_eq!(DeviceState::of(&lamp(), at(1_911), 910), Stale);
        assert_eq!(
            DeviceState::of(
                &DeviceFacts {
                    fault: true,
                    ..lamp()
                },
                at(9_000),
                910
            ),
            Stale
        );
        assert_eq!(
            of(DeviceFacts {
                online: Some(false),
                ..lamp()
            }),
            Offline
        );
        assert_eq!(
            of(DeviceFacts {
                last_seen: None,
                online: None,
                ..lamp()
            }),
            NeverHeard
        );
        assert_eq!(
            of(DeviceFacts {
                maintenance: true,
                online: Some(false),
                ..lamp()
            }),
            Maintenance
        );
        assert_eq!(
            of(DeviceFacts {
                supply_lost: true,
                maintenance: true,
                ..lamp()
            }),
            NoSupply
        );
        assert_eq!(
            of(DeviceFacts {
                worst_outage: Some(Severity::Major),
                supply_lost: true,
                ..lamp()
            }),
            OutageMajor
        );
        assert_eq!(
            of(DeviceFacts {
                worst_outage: Some(Severity::Critical),
                ..lamp()
            }),
            OutageCritical
        );
        assert_eq!(
            of(DeviceFacts {
                worst_outage: Some(Severity::Minor),
                ..lamp()
            }),
            OutageMinor
        );
        // Other kinds have no relay: well is `ok`, whatever a lamp-only fact says.
        let meter = DeviceFacts {
            lamp: false,
            overridden: true,
            ..lamp()
        };
        assert_eq!(of(meter), Ok);
        assert!(!Ok.abnormal() && !On.abnormal() && !Override.abnormal());
        assert!(Fault.abnormal() && Stale.abnormal() && OutageCritical.abnormal());
    }

    proptest::proptest! {
        /// Whatever else is known: an active outage shows its severity; a lamp that said
        /// it is off is never shown burning; a device never heard from and in no outage,
        /// supply loss or maintenance is `never_heard`; only lamps are on, off, dimmed or
        /// held.
        #[test]
        fn what_the_map_shows_never_contradicts_the_facts(
            lamp in proptest::bool::ANY,
            seen in proptest::option::of(0i64..10_000),
            online in proptest::option::of(proptest::bool::ANY),
            fault in proptest::bool::ANY,
            worst in proptest::option::of(0usize..3),
            supply_lost in proptest::bool::ANY,
            maintenance in proptest::bool::ANY,
            overridden in proptest::bool::ANY,
            on in proptest::option::of(proptest::bool::ANY),
            dim in proptest::option::of(0.0f64..=100.0),
            now in 0i64..20_000,
            stale_after in 1i64..5_000,
        ) {
            let facts = DeviceFacts {
                lamp,
                last_seen: seen.map(at),
                online,
                fault,
                worst_outage: worst.map(|i| Severity::ALL[i]),
                supply_lost,
                maintenance,
                overridden,
                on,
                dim_pct: dim,
            };
            let state = DeviceState::of(&facts, at(now), stale_after);
            use DeviceState::*;
            match facts.worst_outage {
                Some(Severity::Critical) => proptest::prop_assert_eq!(state, OutageCritical),
                Some(Severity::Major) => proptest::prop_assert_eq!(state, OutageMajor),
                Some(Severity::Minor) => proptest::prop_assert_eq!(state, OutageMinor),
                None => proptest::prop_assert!(!matches!(state, OutageCritical | OutageMajor | OutageMinor)),
            }
            if on == Some(false) {
                proptest::prop_assert!(!matches!(state, On | Dimmed));
            }
            if seen.is_none() && worst.is_none() && !supply_lost && !maintenance {
                proptest::prop_assert_eq!(state, NeverHeard);
            }
            if !lamp {
                proptest::prop_assert!(!matches!(state, On | Off | Dimmed | Override));
            }
            if state == Stale {
                proptest::prop_assert!(now - seen.unwrap() > stale_after);
            }
        }
    }
}

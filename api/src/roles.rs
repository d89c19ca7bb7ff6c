//! Roles and what each may do: one table, no IO, so the rules can be read (and tested) in
//! one place. Tenants are the other half of access and are applied in the SQL: a role
//! says what kind of thing a person may do, their tenants say to which assets.

use serde::Serialize;
use utoipa::ToSchema;

/// A user's role (`users.role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, within their tenants.
    Admin,
    /// The control room: reads, acknowledges, shelves and comments on outages.
    Operator,
    /// Reads, moves work orders along and assigns them, comments on outages.
    Dispatcher,
    /// A field crew member: their team's work orders, started and finished.
    Crew,
    /// Reads.
    Viewer,
    /// Reads, usually over several municipalities.
    RegionalViewer,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Admin,
        Role::Operator,
        Role::Dispatcher,
        Role::Crew,
        Role::Viewer,
        Role::RegionalViewer,
    ];

    /// The role as stored; `None` for a name the database should have refused.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Dispatcher => "dispatcher",
            Role::Crew => "crew",
            Role::Viewer => "viewer",
            Role::RegionalViewer => "regional_viewer",
        }
    }

    /// "an operator", "a viewer": for error messages.
    fn with_article(self) -> String {
        let name = self.as_str().replace('_', " ");
        let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        format!("{article} {name}")
    }
}

/// Something a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    ReadOutages,
    ReadWorkOrders,
    ReadReports,
    ReadDevices,
    AcknowledgeOutage,
    ShelveOutage,
    CommentOutage,
    TransitionWorkOrder,
    /// Give an outage to a team or person (opens or reassigns its work order).
    AssignOutage,
    /// Send commands to devices (one, a list, a cabinet, a district, a polygon).
    SendCommands,
    /// Create, change and remove lighting schedules and overrides.
    ManageSchedules,
    /// Export readings in bulk.
    ExportReadings,
    /// List, add and disable users.
    ManageUsers,
}

impl Permission {
    /// What it is, as in "a viewer may not {describe}".
    fn describe(self) -> &'static str {
        match self {
            Permission::ReadOutages => "list outages",
            Permission::ReadWorkOrders => "list work orders",
            Permission::ReadReports => "read reports",
            Permission::ReadDevices => "list devices",
            Permission::AcknowledgeOutage => "acknowledge outages",
            Permission::ShelveOutage => "shelve or unshelve outages",
            Permission::CommentOutage => "comment on outages",
            Permission::TransitionWorkOrder => "move work orders",
            Permission::AssignOutage => "assign outages",
            Permission::SendCommands => "send commands",
            Permission::ManageSchedules => "change lighting schedules",
            Permission::ExportReadings => "export readings",
            Permission::ManageUsers => "manage users",
        }
    }
}

/// Whether `role` may do `p` at all (within their tenants).
///
/// Crews see their team's work orders and the devices (to find the asset) but not the
/// outage list or the reports: those are the control room's and the managers'.
pub fn allows(role: Role, p: Permission) -> bool {
    use Permission::*;
    match role {
        Role::Admin => true,
        Role::Operator => !matches!(p, TransitionWorkOrder | AssignOutage | ManageUsers),
        Role::Dispatcher => matches!(
            p,
            ReadOutages
                | ReadWorkOrders
                | ReadReports
                | ReadDevices
                | CommentOutage
                | TransitionWorkOrder
                | AssignOutage
                | ExportReadings
        ),
        Role::Crew => matches!(p, ReadWorkOrders | ReadDevices | TransitionWorkOrder),
        Role::Viewer | Role::RegionalViewer => matches!(
            p,
            ReadOutages | ReadWorkOrders | ReadReports | ReadDevices | ExportReadings
        ),
    }
}

/// Why `role` may not do `p`, when it may not.
pub fn refusal(role: Role, p: Permission) -> Option<String> {
    (!allows(role, p)).then(|| format!("{} may not {}", role.with_article(), p.describe()))
}

/// The work order states people may move an order to through the API. `verified` is
/// missing on purpose: telemetry verifies a repair (the rules do it), nobody declares it.
pub const HUMAN_STEPS: [&str; 5] = ["assigned", "in_progress", "done", "reopened", "closed"];

/// The states a crew member may move their team's orders to: they start and finish work.
pub const CREW_STEPS: [&str; 2] = ["in_progress", "done"];

/// Why `role` may not move a work order to `to` (or change its assignee), when it may not.
/// Whether the step exists from the order's current state is the life cycle's question,
/// answered later with the state it is in.
pub fn step_refusal(role: Role, to: &str, reassigns: bool) -> Option<String> {
    if let Some(why) = refusal(role, Permission::TransitionWorkOrder) {
        return Some(why);
    }
    if to == "verified" {
        return Some(
            "nobody marks a repair verified by hand: the hub verifies it from the asset's telemetry"
                .into(),
        );
    }
    if role == Role::Crew {
        if !CREW_STEPS.contains(&to) {
            return Some(format!(
                "a crew member may move work orders to in_progress or done, not to {to}"
            ));
        }
        if reassigns {
            return Some("a crew member may not reassign work orders".into());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_table() {
        use Permission::*;
        let all = [
            ReadOutages,
            ReadWorkOrders,
            ReadReports,
            ReadDevices,
            AcknowledgeOutage,
            ShelveOutage,
            CommentOutage,
            TransitionWorkOrder,
            AssignOutage,
            SendCommands,
            ManageSchedules,
            ExportReadings,
            ManageUsers,
        ];
        // Per role, the permissions it has; every other one is refused.
        let table: [(Role, &[Permission]); 6] = [
            (Role::Admin, &all),
            (
                Role::Operator,
                &[
                    ReadOutages,
                    ReadWorkOrders,
                    ReadReports,
                    ReadDevices,
                    AcknowledgeOutage,
                    ShelveOutage,
                    CommentOutage,
                    SendCommands,
                    ManageSchedules,
                    ExportReadings,
                ],
            ),
            (
                Role::Dispatcher,
                &[
                    ReadOutages,
                    ReadWorkOrders,
                    ReadReports,
                    ReadDevices,
                    CommentOutage,
                    TransitionWorkOrder,
                    AssignOutage,
                    ExportReadings,
                ],
            ),
            (
                Role::Crew,
                &[ReadWorkOrders, ReadDevices, TransitionWorkOrder],
            ),
            (
                Role::Viewer,
                &[
                    ReadOutages,
                    ReadWorkOrders,
                    ReadReports,
                    ReadDevices,
                    ExportReadings,
                ],
            ),
            (
                Role::RegionalViewer,
                &[
                    ReadOutages,
                    ReadWorkOrders,
                    ReadReports,
                    ReadDevices,
                    ExportReadings,
                ],
            ),
        ];
        for (role, granted) in table {
            for p in all {
                assert_eq!(allows(role, p), granted.contains(&p), "{role:?} {p:?}");
            }
        }
    }

    #[test]
    fn refusals_are_sentences() {
        assert_eq!(
            refusal(Role::Viewer, Permission::AcknowledgeOutage).as_deref(),
            Some("a viewer may not acknowledge outages")
        );
        assert_eq!(
            refusal(Role::Operator, Permission::TransitionWorkOrder).as_deref(),
            Some("an operator may not move work orders")
        );
        assert_eq!(
            refusal(Role::RegionalViewer, Permission::CommentOutage).as_deref(),
            Some("a regional viewer may not comment on outages")
        );
        assert_eq!(refusal(Role::Admin, Permission::ShelveOutage), None);
    }

    #[test]
    fn who_may_take_which_step() {
        assert_eq!(step_refusal(Role::Crew, "in_progress", false), None);
        assert_eq!(step_refusal(Role::Crew, "done", false), None);
        assert!(step_refusal(Role::Crew, "closed", false)
            .unwrap()
            .contains("not to closed"));
        assert!(step_refusal(Role::Crew, "done", true)
            .unwrap()
            .contains("reassign"));
        assert_eq!(step_refusal(Role::Dispatcher, "assigned", true), None);
        assert!(step_refusal(Role::Admin, "verified", false)
            .unwrap()
            .contains("telemetry"));
        assert!(step_refusal(Role::Operator, "done", false).is_some());
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
    }
}

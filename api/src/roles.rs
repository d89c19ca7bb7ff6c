//! Roles and what each may do: one table, no IO, so the rules can be read (and tested) in
//! one place. Tenants are the other half of access and are applied in the SQL: a role
//! says what kind of thing a person may do, their tenants say to which assets.

pub use model::{Role, WorkOrderState};

/// "an operator", "a viewer": for error messages.
fn with_article(role: Role) -> String {
    let name = role.as_str().replace('_', " ");
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
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
    /// Subscribe the city's other systems to events (webhooks).
    ManageWebhooks,
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
            Permission::ManageWebhooks => "manage webhooks",
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
        Role::Operator => !matches!(
            p,
            TransitionWorkOrder | AssignOutage | ManageUsers | ManageWebhooks
        ),
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
    (!allows(role, p)).then(|| format!("{} may not {}", with_article(role), p.describe()))
}

/// Why `role` may not move a work order to `to` (or change its assignee), when it may not.
/// Whether the step exists from the order's current state is the life cycle's question
/// ([`WorkOrderState::can_become`]), answered later with the state it is in.
pub fn step_refusal(role: Role, to: WorkOrderState, reassigns: bool) -> Option<String> {
    if let Some(why) = refusal(role, Permission::TransitionWorkOrder) {
        return Some(why);
    }
    if !to.set_by_people() {
        return Some(match to {
            WorkOrderState::Verified => {
                "nobody marks a repair verified by hand: the hub verifies it from the asset's telemetry"
                    .into()
            }
            _ => format!("nobody moves a work order to {to}: orders start there"),
        });
    }
    if role == Role::Crew {
        // A crew member starts and finishes work.
        if !matches!(to, WorkOrderState::InProgress | WorkOrderState::Done) {
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

/// The states `role` may move an order in state `from` to now: the life cycle's steps
/// from there that the role may take.
pub fn next_states(role: Role, from: WorkOrderState) -> Vec<WorkOrderState> {
    WorkOrderState::ALL
        .into_iter()
        .filter(|to| from.can_become(*to) && step_refusal(role, *to, false).is_none())
        .collect()
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
        use WorkOrderState::*;
        assert_eq!(step_refusal(Role::Crew, InProgress, false), None);
        assert_eq!(step_refusal(Role::Crew, Done, false), None);
        assert!(step_refusal(Role::Crew, Closed, false)
            .unwrap()
            .contains("not to closed"));
        assert!(step_refusal(Role::Crew, Done, true)
            .unwrap()
            .contains("reassign"));
        assert_eq!(step_refusal(Role::Dispatcher, Assigned, true), None);
        assert!(step_refusal(Role::Admin, Verified, false)
            .unwrap()
            .contains("telemetry"));
        assert!(step_refusal(Role::Admin, New, false).is_some());
        assert!(step_refusal(Role::Operator, Done, false).is_some());
        assert_eq!(next_states(Role::Dispatcher, Done), [Reopened]);
        assert_eq!(next_states(Role::Crew, Done), []);
        assert_eq!(next_states(Role::Crew, Reopened), [InProgress]);
        assert_eq!(next_states(Role::Admin, Verified), [Reopened, Closed]);
        assert_eq!(next_states(Role::Viewer, New), []);
    }
}

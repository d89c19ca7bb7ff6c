//! The domain's names written into SQL text, from `model`'s vocabulary: no query spells a
//! state, a status or a severity, so one renamed or added in `model` cannot leave a query
//! behind. (The schema's CHECK constraints and partial indexes hold the same names, as
//! migrations written once; a statement whose `ON CONFLICT ... WHERE` names an index's
//! predicate gets its text from here too, which PostgreSQL matches to the index.)
//!
//! Names are lower-case words joined by underscores: nothing to escape.

use std::sync::LazyLock;

use model::{CommandStatus, OutageState, Severity, Vocabulary, WorkOrderState};

/// `'name'`.
pub(crate) fn lit<V: Vocabulary>(value: V) -> String {
    let name = value.as_str();
    debug_assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
    format!("'{name}'")
}

/// `('a', 'b')`, for `IN`.
pub(crate) fn list<V: Vocabulary>(values: impl IntoIterator<Item = V>) -> String {
    let names: Vec<String> = values.into_iter().map(lit).collect();
    format!("({})", names.join(", "))
}

/// An outage still there ([`OutageState::active`]): the predicate of the index that allows
/// one such outage per device and kind.
pub(crate) static OUTAGE_ACTIVE: LazyLock<String> =
    LazyLock::new(|| list(OutageState::ALL.into_iter().filter(|s| s.active())));

/// A work order whose work is over for the crew ([`WorkOrderState::finished`]).
pub(crate) static WORK_FINISHED: LazyLock<String> =
    LazyLock::new(|| list(WorkOrderState::ALL.into_iter().filter(|s| s.finished())));

/// A work order that telemetry can send back: those that may become reopened.
pub(crate) static WORK_REOPENABLE: LazyLock<String> = LazyLock::new(|| {
    list(
        WorkOrderState::ALL
            .into_iter()
            .filter(|s| s.can_become(WorkOrderState::Reopened)),
    )
});

/// A command not delivered or answered yet: it may still be sent, or expire.
pub(crate) static COMMAND_UNANSWERED: LazyLock<String> =
    LazyLock::new(|| list([CommandStatus::Pending, CommandStatus::Sent]));

/// `o.severity` as [`Severity::rank`], most severe 0: for ordering.
pub(crate) static SEVERITY_RANK: LazyLock<String> = LazyLock::new(|| {
    let arms: Vec<String> = Severity::ALL
        .into_iter()
        .map(|s| format!("WHEN {} THEN {}", lit(s), s.rank()))
        .collect();
    format!("(CASE o.severity {} END)::int2", arms.join(" "))
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_sql_literals() {
        assert_eq!(*OUTAGE_ACTIVE, "('open', 'acknowledged')");
        assert_eq!(*WORK_FINISHED, "('done', 'verified', 'closed')");
        assert_eq!(*WORK_REOPENABLE, "('done', 'verified')");
        assert_eq!(*COMMAND_UNANSWERED, "('pending', 'sent')");
        assert_eq!(
            *SEVERITY_RANK,
            "(CASE o.severity WHEN 'critical' THEN 0 WHEN 'major' THEN 1 WHEN 'minor' THEN 2 END)::int2"
        );
        assert_eq!(lit(OutageState::Closed), "'closed'");
    }
}

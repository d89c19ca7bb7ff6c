//! Commands sent to devices, and what their acknowledgements said. The acknowledgements
//! themselves are readings (`command_acks`); this table is the hub's side: what was asked,
//! by whom, and whether it is in force.

use chrono::{DateTime, Utc};
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

use crate::{Db, StoreError};

/// Migration 7: command delivery and lighting schedules.
pub const MIGRATION: &str = "SELECT 1;";

/// Actions a command can carry.
pub const COMMAND_ACTIONS: [&str; 3] = ["set_light", "set_schedule", "reboot"];

/// A command as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRow {
    pub id: String,
    pub device_id: i32,
    pub action: String,
    /// The payload as sent.
    pub body: serde_json::Value,
    pub issued_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// `pending`, `sent`, `acked`, `rejected`, `failed` or `expired`.
    pub status: String,
    pub acked_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, device_id, action, body, issued_at, expires_at, status, acked_at";

fn command(r: &Row) -> CommandRow {
    CommandRow {
        id: r.get(0),
        device_id: r.get(1),
        action: r.get(2),
        body: r.get(3),
        issued_at: r.get(4),
        expires_at: r.get(5),
        status: r.get(6),
        acked_at: r.get(7),
    }
}

/// The status a device's answer (`ok`, `rejected`, `failed`) gives its command.
fn ack_status(answer: &str) -> Option<&'static str> {
    match answer {
        "ok" => Some("acked"),
        "rejected" => Some("rejected"),
        "failed" => Some("failed"),
        _ => None,
    }
}

impl Db {
    /// Records a command before it is sent (status `pending`); `id` is the uuid the device
    /// will echo in its acknowledgement, so it can be used once only.
    #[allow(clippy::too_many_arguments)] // one per column; a struct would only rename them
    pub async fn record_command(
        &mut self,
        id: &str,
        device_id: i32,
        action: &str,
        body: &serde_json::Value,
        issued_at: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
        issued_by: &str,
    ) -> Result<(), StoreError> {
        if !COMMAND_ACTIONS.contains(&action) {
            return Err(StoreError::UnknownAction(action.to_owned()));
        }
        if let Some(expires_at) = expires_at.filter(|e| *e <= issued_at) {
            return Err(StoreError::ExpiresBeforeIssued {
                issued_at,
                expires_at,
            });
        }
        let inserted = self
            .client()
            .execute(
                "INSERT INTO commands (id, device_id, action, body, issued_at, expires_at, issued_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&id, &device_id, &action, body, &issued_at, &expires_at, &issued_by],
            )
            .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                Err(StoreError::DuplicateCommand(id.to_owned()))
            }
            Err(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                Err(StoreError::NoDevice(device_id))
            }
            Err(e) => Err(StoreError::db("recording a command")(e)),
        }
    }

    /// Records a device's answer (`ok`, `rejected` or `failed`) to a command and returns
    /// the command; `None` when the hub never recorded it (sent by something else). Only
    /// the first answer counts: a redelivered or late one leaves the command as it is.
    pub async fn command_acked(
        &mut self,
        id: &str,
        status: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<CommandRow>, StoreError> {
        let new_status =
            ack_status(status).ok_or_else(|| StoreError::UnknownAckStatus(status.to_owned()))?;
        let updated = self
            .client()
            .query_opt(
                &format!(
                    "UPDATE commands SET status = $2, acked_at = $3
                     WHERE id = $1 AND status IN ('pending', 'sent') RETURNING {COLUMNS}"
                ),
                &[&id, &new_status, &at],
            )
            .await
            .map_err(StoreError::db("recording a command acknowledgement"))?;
        if let Some(row) = updated {
            return Ok(Some(command(&row)));
        }
        let row = self
            .client()
            .query_opt(
                &format!("SELECT {COLUMNS} FROM commands WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(StoreError::db("reading a command"))?;
        Ok(row.as_ref().map(command))
    }

    /// The light settings and schedules in force at `now`: per device and action, the
    /// newest command the device accepted that was issued by `now` and has not expired.
    pub async fn commands_in_force(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<CommandRow>, StoreError> {
        let rows = self
            .client()
            .query(
                &format!(
                    "SELECT DISTINCT ON (device_id, action) {COLUMNS} FROM commands
                     WHERE status = 'acked' AND action IN ('set_light', 'set_schedule')
                       AND issued_at <= $1 AND (expires_at IS NULL OR expires_at > $1)
                     ORDER BY device_id, action, issued_at DESC, id DESC"
                ),
                &[&now],
            )
            .await
            .map_err(StoreError::db("listing commands in force"))?;
        Ok(rows.iter().map(command).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_answer_gives_a_command_status() {
        assert_eq!(ack_status("ok"), Some("acked"));
        assert_eq!(ack_status("rejected"), Some("rejected"));
        assert_eq!(ack_status("failed"), Some("failed"));
        assert_eq!(ack_status("OK"), None);
        assert_eq!(ack_status("acked"), None);
    }
}

//! Commands sent to devices, and what their acknowledgements said. The acknowledgements
//! themselves are readings (`command_acks`); this table is the hub's side: what was asked,
//! by whom, and whether it is in force.

use crate::handles::{Admin, Detection, Dispatch};
use chrono::{DateTime, Utc};
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

use model::CommandStatus;

use crate::sql::{lit, COMMAND_UNANSWERED};

use crate::error::named;
use crate::StoreError;

/// Migration 7: command batches, their delivery, and lighting schedules.
///
/// A batch is what one person (or a schedule change) asked for: the target as given, the
/// action, its expiry and how many devices it reached. Each device's command is a row of
/// `commands` linked to its batch, moved along by UPDATEs only (pending -> sent -> acked,
/// rejected, failed or expired), so the table's change notifications see every step.
pub const MIGRATION: &str = r#"
CREATE TABLE command_batches (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id integer NOT NULL REFERENCES tenants (id),
    issued_by text NOT NULL,
    issued_at timestamptz NOT NULL,
    -- The target as asked: {"device": ...}, {"devices": [...]}, {"cabinet": ...},
    -- {"district": ...}, {"polygon": [[lon, lat], ...]} or {"schedule": id}.
    target jsonb NOT NULL,
    action text NOT NULL CHECK (action IN ('set_light', 'set_schedule', 'reboot')),
    body jsonb NOT NULL,
    -- NULL for schedule pushes: held until delivered (a newer push supersedes them).
    expires_at timestamptz,
    devices integer NOT NULL CHECK (devices >= 0),
    -- The device count the person confirmed (NULL when one device was reached).
    confirmed integer,
    -- `api` (a person) or `schedule` (a schedule change or an override's end).
    origin text NOT NULL DEFAULT 'api' CHECK (origin IN ('api', 'schedule')),
    CHECK (expires_at IS NULL OR expires_at > issued_at)
);
CREATE INDEX command_batches_newest ON command_batches (tenant_id, issued_at DESC, id DESC);

ALTER TABLE commands
    ADD COLUMN batch_id bigint REFERENCES command_batches (id),
    ADD COLUMN sent_at timestamptz,
    ADD COLUMN attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN detail text,
    -- The hub's time when the device's answer was recorded (for the answer counters).
    ADD COLUMN answered_at timestamptz;
CREATE INDEX commands_batch ON commands (batch_id, device_id);
CREATE INDEX commands_pending ON commands (issued_at, id) WHERE status = 'pending';
CREATE INDEX commands_sent ON commands (expires_at) WHERE status = 'sent';
CREATE INDEX commands_answered ON commands (answered_at) WHERE answered_at IS NOT NULL;

-- Lighting profiles (the set_schedule body) for a tenant, a district, a cabinet's lamps or
-- a list of lamps. A lamp follows, among the rows that cover it and are not removed: an
-- override first, then the most specific scope (devices, cabinet, district, tenant),
-- then the newest. An override ends at `expires_at` (`removed_at` is then set to it).
CREATE TABLE lighting_schedules (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id integer NOT NULL REFERENCES tenants (id),
    scope text NOT NULL CHECK (scope IN ('tenant', 'district', 'cabinet', 'devices')),
    -- The district or cabinet; NULL for the tenant and a device list.
    target text,
    devices text[],
    profile jsonb NOT NULL,
    override boolean NOT NULL DEFAULT false,
    expires_at timestamptz,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL,
    removed_at timestamptz,
    removed_by text,
    CHECK (override = (expires_at IS NOT NULL)),
    CHECK ((scope IN ('district', 'cabinet')) = (target IS NOT NULL)),
    CHECK ((scope = 'devices') = (devices IS NOT NULL))
);
CREATE INDEX lighting_schedules_live ON lighting_schedules (tenant_id) WHERE removed_at IS NULL;
CREATE INDEX lighting_schedules_overrides ON lighting_schedules (expires_at)
    WHERE override AND removed_at IS NULL;
"#;

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
    pub status: CommandStatus,
    pub acked_at: Option<DateTime<Utc>>,
}

/// A device's answer to a command, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub command: CommandRow,
    /// This answer moved the command (not a redelivery, not after another answer or
    /// after it expired).
    pub first: bool,
}

const COLUMNS: &str = "id, device_id, action, body, issued_at, expires_at, status, acked_at";

fn command(r: &Row) -> Result<CommandRow, StoreError> {
    Ok(CommandRow {
        id: r.get(0),
        device_id: r.get(1),
        action: r.get(2),
        body: r.get(3),
        issued_at: r.get(4),
        expires_at: r.get(5),
        status: named(r, 6, "command status", CommandStatus::parse)?,
        acked_at: r.get(7),
    })
}

/// The status a device's answer (`ok`, `rejected`, `failed`) gives its command.
fn ack_status(answer: &str) -> Option<CommandStatus> {
    match answer {
        "ok" => Some(CommandStatus::Acked),
        "rejected" => Some(CommandStatus::Rejected),
        "failed" => Some(CommandStatus::Failed),
        _ => None,
    }
}

impl Admin {
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
}

impl Detection {
    /// Records a device's answer (`ok`, `rejected` or `failed`) to a command and returns
    /// the command; `None` when the hub never recorded it (sent by something else). Only
    /// the first answer counts: a redelivered or late one leaves the command as it is.
    pub async fn command_acked(
        &mut self,
        id: &str,
        status: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<CommandRow>, StoreError> {
        self.command_answered(id, None, status, None, at).await
    }

    /// [`Db::command_acked`] as a device answers: only the device the command went to
    /// (`device_id`, when given) moves it, and its `detail` (why it refused or failed) is
    /// kept. An answer after the command expired is kept in `command_acks` but leaves the
    /// command `expired`.
    pub async fn command_answered(
        &mut self,
        id: &str,
        device_id: Option<i32>,
        status: &str,
        detail: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Option<CommandRow>, StoreError> {
        let answer = self
            .record_answer(id, device_id, status, detail, at)
            .await?;
        Ok(answer.map(|a| a.command))
    }

    /// [`Db::command_answered`], saying whether this answer was the one that counted (a
    /// redelivered or late answer finds the command already answered or expired).
    pub async fn record_answer(
        &mut self,
        id: &str,
        device_id: Option<i32>,
        status: &str,
        detail: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Option<Answer>, StoreError> {
        let new_status =
            ack_status(status).ok_or_else(|| StoreError::UnknownAckStatus(status.to_owned()))?;
        let updated = self
            .client()
            .query_opt(
                &format!(
                    "UPDATE commands SET status = $2, acked_at = $3, detail = $4, answered_at = now()
                     WHERE id = $1 AND status IN {unanswered}
                       AND ($5::int4 IS NULL OR device_id = $5)
                     RETURNING {COLUMNS}",
                    unanswered = *COMMAND_UNANSWERED
                ),
                &[&id, &new_status.as_str(), &at, &detail, &device_id],
            )
            .await
            .map_err(StoreError::db("recording a command acknowledgement"))?;
        if let Some(row) = updated {
            return Ok(Some(Answer {
                command: command(&row)?,
                first: true,
            }));
        }
        let row = self
            .client()
            .query_opt(
                &format!("SELECT {COLUMNS} FROM commands WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(StoreError::db("reading a command"))?;
        row.as_ref()
            .map(|r| {
                Ok(Answer {
                    command: command(r)?,
                    first: false,
                })
            })
            .transpose()
    }

    /// The light settings and schedules in force at `now`: per device and action, the
    /// newest command the device accepted that was issued by `now`, if it has not expired.
    /// A later setting replaces an earlier one on the device: once it expires the lamp
    /// follows its schedule, not an earlier setting that would have held longer (as the
    /// rules engine has it while it runs).
    pub async fn commands_in_force(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<CommandRow>, StoreError> {
        let rows = self
            .client()
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM (
                         SELECT DISTINCT ON (device_id, action) {COLUMNS} FROM commands
                         WHERE status = {acked} AND action IN ('set_light', 'set_schedule')
                           AND issued_at <= $1
                         ORDER BY device_id, action, issued_at DESC, id DESC
                     ) newest
                     WHERE expires_at IS NULL OR expires_at > $1
                     ORDER BY device_id, action",
                    acked = lit(CommandStatus::Acked)
                ),
                &[&now],
            )
            .await
            .map_err(StoreError::db("listing commands in force"))?;
        rows.iter().map(command).collect()
    }
}

/// A command due to be published: its topic's parts and the payload to send.
#[derive(Debug, Clone, PartialEq)]
pub struct DueCommand {
    pub id: String,
    pub tenant: String,
    pub kind: String,
    pub ext_id: String,
    /// The body as recorded (`action` and its fields); `id` and `ts` are added when sent.
    pub body: serde_json::Value,
    pub issued_at: DateTime<Utc>,
}

impl DueCommand {
    /// `city/{tenant}/{kind}/{device}/cmd`.
    pub fn topic(&self) -> String {
        format!("city/{}/{}/{}/cmd", self.tenant, self.kind, self.ext_id)
    }

    /// The payload: the body with the command's `id` and the sending time `ts` (Unix ms).
    pub fn payload(&self, now: DateTime<Utc>) -> Vec<u8> {
        let mut body = self.body.clone();
        if let Some(map) = body.as_object_mut() {
            map.insert("id".into(), serde_json::Value::String(self.id.clone()));
            map.insert("ts".into(), serde_json::Value::from(now.timestamp_millis()));
        }
        body.to_string().into_bytes()
    }
}

/// Answers recorded since a point, by status, for the answer counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnswerCounts {
    pub acked: u64,
    pub rejected: u64,
    pub failed: u64,
    /// The newest `answered_at` counted: pass it back next time.
    pub until: Option<DateTime<Utc>>,
}

impl Dispatch {
    /// Pending commands that may go now, oldest first, at most `limit`: not expired, to
    /// devices not known to be offline (`device_latest.online` false, from their status or
    /// last will), and not among `in_flight` (published, broker's answer awaited). Their
    /// `attempts` go up by one.
    pub async fn due_commands(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        in_flight: &[String],
    ) -> Result<Vec<DueCommand>, StoreError> {
        let rows = self
            .client()
            .query(
                &format!(
                    "WITH due AS (
                     SELECT c.id FROM commands c
                     LEFT JOIN device_latest l ON l.device_id = c.device_id
                     WHERE c.status = {pending}
                       AND (c.expires_at IS NULL OR c.expires_at > $1)
                       AND l.online IS DISTINCT FROM false
                       AND NOT (c.id = ANY($3))
                     ORDER BY c.issued_at, c.id
                     LIMIT $2
                     FOR UPDATE OF c SKIP LOCKED
                 )
                 UPDATE commands c SET attempts = c.attempts + 1
                 FROM due, devices d, tenants t
                 WHERE c.id = due.id AND d.id = c.device_id AND t.id = d.tenant_id
                 RETURNING c.id, t.slug, d.kind, d.ext_id, c.body, c.issued_at",
                    pending = lit(CommandStatus::Pending)
                ),
                &[&now, &limit, &in_flight],
            )
            .await
            .map_err(StoreError::db("reading the commands due"))?;
        let mut due: Vec<DueCommand> = rows
            .iter()
            .map(|r| DueCommand {
                id: r.get(0),
                tenant: r.get(1),
                kind: r.get(2),
                ext_id: r.get(3),
                body: r.get(4),
                issued_at: r.get(5),
            })
            .collect();
        due.sort_by(|a, b| (a.issued_at, &a.id).cmp(&(b.issued_at, &b.id)));
        Ok(due)
    }

    /// The broker took these commands, each at its time (the hub's clock): `sent`, unless
    /// an answer came first (a quick device answers before the broker's acknowledgement
    /// is recorded); `sent_at` either way. Returns how many were taken for the first time.
    pub async fn commands_sent(
        &self,
        taken: &[(String, DateTime<Utc>)],
    ) -> Result<u64, StoreError> {
        if taken.is_empty() {
            return Ok(0);
        }
        let (ids, times): (Vec<&str>, Vec<DateTime<Utc>>) =
            taken.iter().map(|(id, at)| (id.as_str(), *at)).unzip();
        self.client()
            .execute(
                "UPDATE commands c
                 SET status = CASE WHEN c.status = $3 THEN $4 ELSE c.status END,
                     sent_at = t.at
                 FROM unnest($1::text[], $2::timestamptz[]) AS t(id, at)
                 WHERE c.id = t.id AND c.sent_at IS NULL",
                &[
                    &ids,
                    &times,
                    &CommandStatus::Pending.as_str(),
                    &CommandStatus::Sent.as_str(),
                ],
            )
            .await
            .map_err(StoreError::db("marking commands sent"))
    }

    /// Commands past their expiry without an answer: `expired`. Returns how many.
    pub async fn expire_commands(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.client()
            .execute(
                &format!(
                    "UPDATE commands SET status = {expired}
                     WHERE status IN {unanswered} AND expires_at <= $1",
                    expired = lit(CommandStatus::Expired),
                    unanswered = *COMMAND_UNANSWERED
                ),
                &[&now],
            )
            .await
            .map_err(StoreError::db("expiring commands"))
    }

    /// Commands waiting to be sent (including those held for offline devices).
    pub async fn pending_commands(&self) -> Result<i64, StoreError> {
        let row = self
            .client()
            .query_one(
                &format!(
                    "SELECT count(*) FROM commands WHERE status = {}",
                    lit(CommandStatus::Pending)
                ),
                &[],
            )
            .await
            .map_err(StoreError::db("counting pending commands"))?;
        Ok(row.get(0))
    }

    /// Answers recorded after `since` (all of them when `None`).
    pub async fn answers_since(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<AnswerCounts, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT status, count(*), max(answered_at) FROM commands
                 WHERE answered_at IS NOT NULL AND ($1::timestamptz IS NULL OR answered_at > $1)
                 GROUP BY status",
                &[&since],
            )
            .await
            .map_err(StoreError::db("counting command answers"))?;
        let mut counts = AnswerCounts {
            until: since,
            ..AnswerCounts::default()
        };
        for r in &rows {
            let n = u64::try_from(r.get::<_, i64>(1)).unwrap_or(0);
            match CommandStatus::parse(r.get(0)) {
                Some(CommandStatus::Acked) => counts.acked += n,
                Some(CommandStatus::Rejected) => counts.rejected += n,
                Some(CommandStatus::Failed) => counts.failed += n,
                _ => {}
            }
            let newest: Option<DateTime<Utc>> = r.get(2);
            counts.until = counts.until.max(newest);
        }
        Ok(counts)
    }

    /// Devices reached by batches numbered above `after`, and the highest batch number.
    pub async fn issued_since(&self, after: i64) -> Result<(u64, i64), StoreError> {
        let row = self
            .client()
            .query_one(
                "SELECT coalesce(sum(devices), 0)::int8, coalesce(max(id), $1)
                 FROM command_batches WHERE id > $1",
                &[&after],
            )
            .await
            .map_err(StoreError::db("counting issued commands"))?;
        Ok((u64::try_from(row.get::<_, i64>(0)).unwrap_or(0), row.get(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_answer_gives_a_command_status() {
        assert_eq!(ack_status("ok"), Some(CommandStatus::Acked));
        assert_eq!(ack_status("rejected"), Some(CommandStatus::Rejected));
        assert_eq!(ack_status("failed"), Some(CommandStatus::Failed));
        assert_eq!(ack_status("OK"), None);
        assert_eq!(ack_status("acked"), None);
    }
}

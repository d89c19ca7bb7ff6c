//! Changes as they are committed: the listener of the change notifications (migration 8,
//! see [`crate::service_requests`]) and the rows behind them.
//!
//! [`ChangeListener`] is one connection that `LISTEN`s on [`CHANGES_CHANNEL`]; its
//! notifications arrive in commit order. Each names the ids that changed, or, for a large
//! statement, how many changed and in which tenants ([`ChangeNote::Bulk`]). The rows are
//! read back with [`ChangeListener::outage_changes`] and its siblings, on the same
//! connection. When the connection ends, [`ChangeListener::next`] answers `None`;
//! notifications sent while nobody listened are lost, so whoever reconnects must assume
//! it missed some.

use crate::handles::Reads;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};
use tracing::{debug, warn};

use crate::service_requests::CHANGES_CHANNEL;
use crate::StoreError;

/// The `application_name` of the listener's connection (as `pg_stat_activity` shows it).
pub const LISTENER_NAME: &str = "cityhub change listener";

/// What a change notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    Outage,
    WorkOrder,
    Command,
}

/// One notification.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeNote {
    /// Outage or work order event ids.
    Events { kind: ChangeKind, ids: Vec<i64> },
    /// Command ids.
    Commands { ids: Vec<String> },
    /// More changed in one statement than a notification lists: how many, and where.
    Bulk {
        kind: ChangeKind,
        count: i64,
        tenants: Vec<i32>,
    },
}

#[derive(Deserialize)]
struct Payload {
    t: String,
    #[serde(default)]
    ids: Option<serde_json::Value>,
    #[serde(default)]
    bulk: Option<i64>,
    #[serde(default)]
    tenants: Option<Vec<i32>>,
}

/// Reads a notification's payload; `None` for one this hub does not know.
pub fn parse_note(payload: &str) -> Option<ChangeNote> {
    let p: Payload = serde_json::from_str(payload).ok()?;
    let kind = match p.t.as_str() {
        "outage" => ChangeKind::Outage,
        "work_order" => ChangeKind::WorkOrder,
        "command" => ChangeKind::Command,
        _ => return None,
    };
    if let Some(count) = p.bulk {
        return Some(ChangeNote::Bulk {
            kind,
            count,
            tenants: p.tenants.unwrap_or_default(),
        });
    }
    let ids = p.ids?;
    match kind {
        ChangeKind::Command => Some(ChangeNote::Commands {
            ids: serde_json::from_value(ids).ok()?,
        }),
        _ => Some(ChangeNote::Events {
            kind,
            ids: serde_json::from_value(ids).ok()?,
        }),
    }
}

/// An outage event with the outage as it is now.
#[derive(Debug, Clone, PartialEq)]
pub struct OutageChangeRow {
    pub outage_id: i64,
    pub tenant_id: i32,
    pub tenant: String,
    pub device_id: i32,
    pub ext_id: String,
    pub kind: String,
    pub state: String,
    pub severity: String,
    pub transition: String,
    pub actor: String,
    pub detail: Option<String>,
    pub at: DateTime<Utc>,
}

/// A work order event with the order it moved.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkOrderChangeRow {
    pub work_order_id: i64,
    pub tenant_id: i32,
    pub tenant: String,
    pub device_id: i32,
    pub ext_id: String,
    pub outage_id: Option<i64>,
    pub kind: String,
    pub to_state: String,
    pub from_state: Option<String>,
    pub team: String,
    pub assignee: Option<String>,
    pub due_at: DateTime<Utc>,
    pub actor: String,
    pub at: DateTime<Utc>,
}

/// A command as it is now.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandChangeRow {
    pub id: String,
    pub tenant_id: i32,
    pub tenant: String,
    pub device_id: i32,
    pub ext_id: String,
    pub action: String,
    pub status: String,
    pub issued_at: DateTime<Utc>,
    pub acked_at: Option<DateTime<Utc>>,
}

/// A device as live events name it, with its newest known state.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceEntry {
    pub id: i32,
    pub tenant_id: i32,
    pub tenant: String,
    pub ext_id: String,
    pub kind: String,
    /// The newest telemetry's fields (`device_latest`), if any.
    pub telemetry: Option<serde_json::Value>,
    pub online: Option<bool>,
}

/// The channel on which a change to the device inventory (an insert or update of
/// `devices`, by any means) is announced, once per transaction (migration 16).
pub const DEVICES_CHANNEL: &str = "cityhub_devices";

/// Migration 16: a statement that changes `devices` announces it on [`DEVICES_CHANNEL`].
pub const DEVICES_MIGRATION: &str = r#"
CREATE FUNCTION cityhub_devices_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cityhub_devices', '');
    RETURN NULL;
END $$;
CREATE TRIGGER devices_changed AFTER INSERT OR UPDATE ON devices
    FOR EACH STATEMENT EXECUTE FUNCTION cityhub_devices_changed();
"#;

/// A connection told when the device inventory changes (ingestion's registry, so that a
/// device imported while the hub runs is known before its first message).
pub struct DeviceChanges {
    _client: Client,
    notes: mpsc::UnboundedReceiver<String>,
}

impl DeviceChanges {
    pub async fn connect(url: &str) -> Result<DeviceChanges, StoreError> {
        let (client, notes) = listen(url, "cityhub device registry", DEVICES_CHANNEL).await?;
        Ok(DeviceChanges {
            _client: client,
            notes,
        })
    }

    /// Waits for the next change; `None` once the connection has ended (changes made
    /// while nobody listened are not announced again).
    pub async fn changed(&mut self) -> Option<()> {
        self.notes.recv().await?;
        // Several announcements already here are one reload.
        while self.notes.try_recv().is_ok() {}
        Some(())
    }
}

/// The connection that listens for change notifications.
pub struct ChangeListener {
    client: Client,
    notes: mpsc::UnboundedReceiver<String>,
}

/// A connection named `name` that `LISTEN`s on `channel`, and the payloads of the
/// notifications it receives; the receiver closes when the connection ends.
async fn listen(
    url: &str,
    name: &str,
    channel: &str,
) -> Result<(Client, mpsc::UnboundedReceiver<String>), StoreError> {
    let target = crate::describe_target(url);
    let mut config: Config = url.parse().map_err(|source| StoreError::Connect {
        target: target.clone(),
        source,
    })?;
    config.application_name(name);
    let (client, mut connection) = config
        .connect(NoTls)
        .await
        .map_err(|source| StoreError::Connect { target, source })?;
    let (tx, notes) = mpsc::unbounded_channel();
    // The connection is driven here: it answers the client's queries and hands over
    // notifications. It ends with the connection, which closes `notes`.
    let name = name.to_owned();
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    debug!(message = "A listening connection ended.", name, %error);
                    return;
                }
                None => return,
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {channel}"))
        .await
        .map_err(StoreError::db("listening for changes"))?;
    Ok((client, notes))
}

impl ChangeListener {
    /// Connects and starts listening.
    pub async fn connect(url: &str) -> Result<ChangeListener, StoreError> {
        let (client, notes) = listen(url, LISTENER_NAME, CHANGES_CHANNEL).await?;
        Ok(ChangeListener { client, notes })
    }

    /// The next notification; `None` once the connection has ended. Payloads this hub
    /// does not understand are logged and skipped.
    pub async fn next(&mut self) -> Option<ChangeNote> {
        loop {
            let payload = self.notes.recv().await?;
            match parse_note(&payload) {
                Some(note) => return Some(note),
                None => warn!(message = "Unknown change notification skipped.", payload),
            }
        }
    }

    /// The outage events `ids` (of `outage_events`), with their outages.
    pub async fn outage_changes(&self, ids: &[i64]) -> Result<Vec<OutageChangeRow>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT o.id, d.tenant_id, t.slug, d.id, d.ext_id, o.kind, o.state, o.severity,
                        e.transition, e.actor, e.detail, e.at
                 FROM outage_events e
                 JOIN outages o ON o.id = e.outage_id
                 JOIN devices d ON d.id = o.device_id
                 JOIN tenants t ON t.id = d.tenant_id
                 WHERE e.id = ANY($1) ORDER BY e.id",
                &[&ids],
            )
            .await
            .map_err(StoreError::db("reading changed outages"))?;
        Ok(rows
            .iter()
            .map(|r| OutageChangeRow {
                outage_id: r.get(0),
                tenant_id: r.get(1),
                tenant: r.get(2),
                device_id: r.get(3),
                ext_id: r.get(4),
                kind: r.get(5),
                state: r.get(6),
                severity: r.get(7),
                transition: r.get(8),
                actor: r.get(9),
                detail: r.get(10),
                at: r.get(11),
            })
            .collect())
    }

    /// The work order events `ids`, with their orders.
    pub async fn work_order_changes(
        &self,
        ids: &[i64],
    ) -> Result<Vec<WorkOrderChangeRow>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT w.id, d.tenant_id, t.slug, d.id, d.ext_id, w.outage_id, w.kind,
                        e.to_state, e.from_state, w.team, w.assignee, w.due_at, e.actor, e.at
                 FROM work_order_events e
                 JOIN work_orders w ON w.id = e.work_order_id
                 JOIN devices d ON d.id = w.device_id
                 JOIN tenants t ON t.id = d.tenant_id
                 WHERE e.id = ANY($1) ORDER BY e.id",
                &[&ids],
            )
            .await
            .map_err(StoreError::db("reading changed work orders"))?;
        Ok(rows
            .iter()
            .map(|r| WorkOrderChangeRow {
                work_order_id: r.get(0),
                tenant_id: r.get(1),
                tenant: r.get(2),
                device_id: r.get(3),
                ext_id: r.get(4),
                outage_id: r.get(5),
                kind: r.get(6),
                to_state: r.get(7),
                from_state: r.get(8),
                team: r.get(9),
                assignee: r.get(10),
                due_at: r.get(11),
                actor: r.get(12),
                at: r.get(13),
            })
            .collect())
    }

    /// The commands `ids` as they are now.
    pub async fn command_changes(
        &self,
        ids: &[String],
    ) -> Result<Vec<CommandChangeRow>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT c.id, d.tenant_id, t.slug, d.id, d.ext_id, c.action, c.status,
                        c.issued_at, c.acked_at
                 FROM commands c
                 JOIN devices d ON d.id = c.device_id
                 JOIN tenants t ON t.id = d.tenant_id
                 WHERE c.id = ANY($1) ORDER BY c.issued_at, c.id",
                &[&ids],
            )
            .await
            .map_err(StoreError::db("reading changed commands"))?;
        Ok(rows
            .iter()
            .map(|r| CommandChangeRow {
                id: r.get(0),
                tenant_id: r.get(1),
                tenant: r.get(2),
                device_id: r.get(3),
                ext_id: r.get(4),
                action: r.get(5),
                status: r.get(6),
                issued_at: r.get(7),
                acked_at: r.get(8),
            })
            .collect())
    }
}

impl Reads {
    /// Tenant slugs by id.
    pub async fn tenant_slugs(&self) -> Result<HashMap<i32, String>, StoreError> {
        let rows = self
            .client()
            .query("SELECT id, slug FROM tenants", &[])
            .await
            .map_err(StoreError::db("reading tenants"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Devices with id above `after`, with their newest state, by id.
    pub async fn device_entries(&self, after: i32) -> Result<Vec<DeviceEntry>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT d.id, d.tenant_id, t.slug, d.ext_id, d.kind, l.telemetry, l.online
                 FROM devices d
                 JOIN tenants t ON t.id = d.tenant_id
                 LEFT JOIN device_latest l ON l.device_id = d.id
                 WHERE d.id > $1 ORDER BY d.id",
                &[&after],
            )
            .await
            .map_err(StoreError::db("reading devices"))?;
        Ok(rows
            .iter()
            .map(|r| DeviceEntry {
                id: r.get(0),
                tenant_id: r.get(1),
                tenant: r.get(2),
                ext_id: r.get(3),
                kind: r.get(4),
                telemetry: r.get(5),
                online: r.get(6),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_are_read() {
        assert_eq!(
            parse_note(r#"{"t":"outage","ids":[3,4]}"#),
            Some(ChangeNote::Events {
                kind: ChangeKind::Outage,
                ids: vec![3, 4]
            })
        );
        assert_eq!(
            parse_note(r#"{"t":"command","ids":["a","b"]}"#),
            Some(ChangeNote::Commands {
                ids: vec!["a".into(), "b".into()]
            })
        );
        assert_eq!(
            parse_note(r#"{"t":"work_order","bulk":500,"tenants":[1,2]}"#),
            Some(ChangeNote::Bulk {
                kind: ChangeKind::WorkOrder,
                count: 500,
                tenants: vec![1, 2]
            })
        );
        assert_eq!(parse_note(r#"{"t":"nothing","ids":[1]}"#), None);
        assert_eq!(parse_note("not json"), None);
        assert_eq!(parse_note(r#"{"t":"outage","ids":["x"]}"#), None);
    }
}

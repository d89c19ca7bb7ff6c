//! Live events: one hub-wide fan-out of what changes, read by every `/api/v1/events`
//! client.
//!
//! Two sources feed one `tokio::sync::broadcast` channel of [`Change`]s:
//!
//! - the database's change notifications (outages, work orders, commands), read by one
//!   `LISTEN` connection per hub ([`listen`]), whatever the number of clients; it
//!   reconnects when the database goes away and then tells every client to refetch
//!   (`resync`, reason `reconnected`);
//! - the rows ingestion commits, tapped on their way to the rules engine ([`devices`]):
//!   in process, because polling `device_latest` would need an index on its update time,
//!   which would cost every latest-state write (no more HOT updates) whether anyone
//!   watches or not. The tap does nothing while no client is connected, and never makes
//!   ingestion wait for a client.
//!
//! Each client reads the channel at its own pace ([`client`]): its backlog is bounded by
//! the channel's capacity, and one that falls further behind loses its backlog and gets
//! a `resync` instead. Sending never waits, so no client can hold up another, the
//! listener or ingestion.

pub mod client;
pub mod devices;

use model::Backoff;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use store::changes::{ChangeKind, ChangeListener, ChangeNote};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::roles::Permission;

/// Changes the channel holds for clients that read slowly; past it they get `resync`.
const CHANNEL_CAPACITY: usize = 4096;

/// The kinds of events, as clients name them in `types=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Outage,
    WorkOrder,
    Command,
    Device,
}

impl EventType {
    pub const ALL: [EventType; 4] = [
        EventType::Outage,
        EventType::WorkOrder,
        EventType::Command,
        EventType::Device,
    ];

    /// The SSE event name and the `types=` value.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Outage => "outage",
            EventType::WorkOrder => "work_order",
            EventType::Command => "command",
            EventType::Device => "device",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// What a role needs to read this type: the permission of its list.
    pub fn permission(self) -> Permission {
        match self {
            EventType::Outage => Permission::ReadOutages,
            EventType::WorkOrder => Permission::ReadWorkOrders,
            EventType::Command | EventType::Device => Permission::ReadDevices,
        }
    }

    fn of(kind: ChangeKind) -> EventType {
        match kind {
            ChangeKind::Outage => EventType::Outage,
            ChangeKind::WorkOrder => EventType::WorkOrder,
            ChangeKind::Command => EventType::Command,
        }
    }
}

/// One device's new state, as JSON ready to send.
#[derive(Debug, Clone)]
pub struct DeviceEvent {
    pub device_id: i32,
    pub tenant_id: i32,
    pub data: Arc<str>,
}

/// What the channel carries.
#[derive(Debug)]
pub enum Change {
    /// One outage, work order or command changed.
    One {
        ty: EventType,
        tenant_id: i32,
        /// A work order's team (crews see their own team's only).
        team: Option<String>,
        data: String,
    },
    /// Devices whose state changed in one committed batch.
    Devices(Vec<DeviceEvent>),
    /// Changes that were not sent one by one: refetch these lists.
    Resync {
        reason: &'static str,
        types: Vec<EventType>,
        /// `None`: every tenant.
        tenants: Option<Vec<i32>>,
    },
}

struct HubShared {
    url: String,
    tx: broadcast::Sender<Arc<Change>>,
    /// Ends every client's stream (the API is shutting down).
    stop: CancellationToken,
    started: AtomicBool,
    /// Committed rows' device states, from the tap to the device task.
    sightings: mpsc::Sender<Vec<devices::Sighting>>,
    sightings_rx: Mutex<Option<mpsc::Receiver<Vec<devices::Sighting>>>>,
}

/// The hub's live events: cheap to clone.
#[derive(Clone)]
pub struct EventHub(Arc<HubShared>);

impl EventHub {
    /// A hub reading changes from the database at `url`; [`EventHub::start`] starts it.
    pub fn new(url: &str) -> EventHub {
        let (tx, _) = broadcast::channel(CHANNEL_CAPACITY);
        let (sightings, sightings_rx) = mpsc::channel(devices::SIGHTINGS_QUEUE);
        EventHub(Arc::new(HubShared {
            url: url.to_owned(),
            tx,
            stop: CancellationToken::new(),
            started: AtomicBool::new(false),
            sightings,
            sightings_rx: Mutex::new(Some(sightings_rx)),
        }))
    }

    /// Starts the listener and the device task (once); both end, and every client's
    /// stream with them, when `shutdown` is cancelled.
    pub fn start(&self, shutdown: CancellationToken) {
        if self.0.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let hub = self.clone();
        let stop = self.0.stop.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            stop.cancel();
        });
        tokio::spawn(listen(hub.clone()));
        let rx = self
            .0
            .sightings_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(rx) = rx {
            tokio::spawn(devices::run(hub, rx));
        }
    }

    /// A new client's place in the channel.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.0.tx.subscribe()
    }

    /// Cancelled when the API stops.
    pub fn stopping(&self) -> CancellationToken {
        self.0.stop.clone()
    }

    /// Whether anyone listens (the device tap does nothing otherwise).
    pub fn has_clients(&self) -> bool {
        self.0.tx.receiver_count() > 0
    }

    /// Sends to every client; never waits (slow clients lag instead).
    fn publish(&self, change: Change) {
        let _ = self.0.tx.send(Arc::new(change));
    }
}

/// RFC 3339 in UTC, as the API writes times.
pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Keeps one `LISTEN` connection and turns its notifications into changes, until the
/// API stops. After a lost connection it reconnects (backing off up to 10 s) and asks
/// every client to refetch, since notifications sent meanwhile are gone.
async fn listen(hub: EventHub) {
    let stop = hub.stopping();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    let mut connected_before = false;
    loop {
        let connected = tokio::select! {
            _ = stop.cancelled() => return,
            c = ChangeListener::connect(&hub.0.url) => c,
        };
        let mut listener = match connected {
            Ok(l) => l,
            Err(error) => {
                warn!(message = "The change listener cannot connect; will retry.", %error);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff.failed()) => {}
                }
                continue;
            }
        };
        backoff.succeeded();
        if connected_before {
            info!(message = "The change listener reconnected; clients are told to refetch.");
            hub.publish(Change::Resync {
                reason: "reconnected",
                types: vec![EventType::Outage, EventType::WorkOrder, EventType::Command],
                tenants: None,
            });
        }
        connected_before = true;
        loop {
            let note = tokio::select! {
                _ = stop.cancelled() => return,
                n = listener.next() => n,
            };
            let Some(note) = note else {
                warn!(message = "The change listener lost its database connection; reconnecting.");
                break;
            };
            if let Err(error) = deliver(&hub, &listener, note).await {
                warn!(message = "Cannot read a change; clients are told to refetch.", %error);
                hub.publish(Change::Resync {
                    reason: "reconnected",
                    types: vec![EventType::Outage, EventType::WorkOrder, EventType::Command],
                    tenants: None,
                });
                if error.is_retryable() {
                    break;
                }
            }
        }
    }
}

/// Reads the rows a notification names and publishes them.
async fn deliver(
    hub: &EventHub,
    listener: &ChangeListener,
    note: ChangeNote,
) -> Result<(), store::StoreError> {
    match note {
        ChangeNote::Events {
            kind: ChangeKind::Outage,
            ids,
        } => {
            for o in listener.outage_changes(&ids).await? {
                hub.publish(Change::One {
                    ty: EventType::Outage,
                    tenant_id: o.tenant_id,
                    team: None,
                    data: json!({
                        "id": o.outage_id,
                        "tenant": o.tenant,
                        "device": o.ext_id,
                        "device_id": o.device_id,
                        "kind": o.kind,
                        "state": o.state,
                        "severity": o.severity,
                        "transition": o.transition,
                        "actor": o.actor,
                        "detail": o.detail,
                        "at": rfc3339(o.at),
                    })
                    .to_string(),
                });
            }
        }
        ChangeNote::Events { kind: _, ids } => {
            for w in listener.work_order_changes(&ids).await? {
                hub.publish(Change::One {
                    ty: EventType::WorkOrder,
                    tenant_id: w.tenant_id,
                    team: Some(w.team.clone()),
                    data: json!({
                        "id": w.work_order_id,
                        "tenant": w.tenant,
                        "device": w.ext_id,
                        "device_id": w.device_id,
                        "outage_id": w.outage_id,
                        "kind": w.kind,
                        "state": w.to_state,
                        "from": w.from_state,
                        "team": w.team,
                        "assignee": w.assignee,
                        "due_at": rfc3339(w.due_at),
                        "actor": w.actor,
                        "at": rfc3339(w.at),
                    })
                    .to_string(),
                });
            }
        }
        ChangeNote::Commands { ids } => {
            for c in listener.command_changes(&ids).await? {
                hub.publish(Change::One {
                    ty: EventType::Command,
                    tenant_id: c.tenant_id,
                    team: None,
                    data: json!({
                        "id": c.id,
                        "tenant": c.tenant,
                        "device": c.ext_id,
                        "device_id": c.device_id,
                        "action": c.action,
                        "status": c.status,
                        "issued_at": rfc3339(c.issued_at),
                        "acked_at": c.acked_at.map(rfc3339),
                    })
                    .to_string(),
                });
            }
        }
        ChangeNote::Bulk { kind, tenants, .. } => hub.publish(Change::Resync {
            reason: "bulk",
            types: vec![EventType::of(kind)],
            tenants: Some(tenants),
        }),
    }
    Ok(())
}

//! One client's stream: the hub's changes it may see, in SSE events.
//!
//! The client's backlog is its position in the hub's channel: bounded by the channel's
//! capacity, never blocking the sender. Device events are held per device and sent at
//! most once per [`DEVICE_INTERVAL`], the newest state only.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::Event;
use futures_util::Stream;
use serde_json::json;
use store::TenantRef;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::{Change, EventType};

/// At most one device event per device per interval, per client.
pub const DEVICE_INTERVAL: Duration = Duration::from_secs(1);

/// What one client receives.
#[derive(Debug, Clone)]
pub struct Filter {
    pub types: Vec<EventType>,
    /// The client's tenants (one, if it named one).
    pub tenants: Vec<TenantRef>,
    /// A crew member's team: their work orders only.
    pub team: Option<String>,
}

impl Filter {
    fn wants(&self, ty: EventType) -> bool {
        self.types.contains(&ty)
    }

    fn has_tenant(&self, id: i32) -> bool {
        self.tenants.iter().any(|t| t.id == id)
    }
}

struct Client {
    rx: broadcast::Receiver<Arc<Change>>,
    filter: Filter,
    tenant_ids: HashSet<i32>,
    /// Device events waiting for the next tick, by device.
    pending: HashMap<i32, Arc<str>>,
    tick: Interval,
    out: VecDeque<Event>,
    stop: CancellationToken,
}

/// The events `filter` lets through, from `rx`, until `stop`.
pub fn stream(
    rx: broadcast::Receiver<Arc<Change>>,
    filter: Filter,
    stop: CancellationToken,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let mut tick = tokio::time::interval(DEVICE_INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let client = Client {
        rx,
        tenant_ids: filter.tenants.iter().map(|t| t.id).collect(),
        filter,
        pending: HashMap::new(),
        tick,
        out: VecDeque::new(),
        stop,
    };
    futures_util::stream::unfold(client, |mut c| async move {
        loop {
            if let Some(event) = c.out.pop_front() {
                return Some((Ok(event), c));
            }
            tokio::select! {
                _ = c.stop.cancelled() => return None,
                r = c.rx.recv() => match r {
                    Ok(change) => c.accept(&change),
                    Err(RecvError::Lagged(_)) => {
                        c.pending.clear();
                        let event = c.resync("lagged", &c.filter.types, None);
                        c.out.push_back(event);
                    }
                    Err(RecvError::Closed) => return None,
                },
                _ = c.tick.tick(), if !c.pending.is_empty() => {
                    for (_, data) in c.pending.drain() {
                        c.out.push_back(Event::default().event("device").data(&*data));
                    }
                }
            }
        }
    })
}

impl Client {
    fn accept(&mut self, change: &Change) {
        match change {
            Change::One {
                ty,
                tenant_id,
                team,
                data,
            } => {
                let team_ok = match (&self.filter.team, ty) {
                    (Some(mine), EventType::WorkOrder) => team.as_deref() == Some(mine.as_str()),
                    _ => true,
                };
                if self.filter.wants(*ty) && self.tenant_ids.contains(tenant_id) && team_ok {
                    self.out
                        .push_back(Event::default().event(ty.as_str()).data(data));
                }
            }
            Change::Devices(events) => {
                if !self.filter.wants(EventType::Device) {
                    return;
                }
                for e in events {
                    if self.tenant_ids.contains(&e.tenant_id) {
                        self.pending.insert(e.device_id, e.data.clone());
                    }
                }
            }
            Change::Resync {
                reason,
                types,
                tenants,
            } => {
                let types: Vec<EventType> = types
                    .iter()
                    .copied()
                    .filter(|t| self.filter.wants(*t))
                    .collect();
                let touches_mine = tenants
                    .as_ref()
                    .is_none_or(|ts| ts.iter().any(|t| self.filter.has_tenant(*t)));
                if !types.is_empty() && touches_mine {
                    let event = self.resync(reason, &types, tenants.as_deref());
                    self.out.push_back(event);
                }
            }
        }
    }

    /// `resync` for `types`, naming the client's tenants among `tenants` (all of its own
    /// when `None`).
    fn resync(&self, reason: &str, types: &[EventType], tenants: Option<&[i32]>) -> Event {
        let names: Vec<&str> = self
            .filter
            .tenants
            .iter()
            .filter(|t| tenants.is_none_or(|ts| ts.contains(&t.id)))
            .map(|t| t.slug.as_str())
            .collect();
        let types: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
        Event::default()
            .event("resync")
            .data(json!({"reason": reason, "types": types, "tenants": names}).to_string())
    }
}

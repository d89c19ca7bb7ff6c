//! The device registry as ingestion sees it: topic (tenant, device) -> id and kind.
//!
//! Lookups borrow the topic's strings and allocate nothing. A refresher task reloads
//! changed devices from the database: as soon as the database announces a change of the
//! inventory (a device imported while the hub runs is known before its first message),
//! soon after a lookup misses, and every `full_every` in any case.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use model::{Kind, Rejection};
use store::changes::DeviceChanges;
use store::{Ingestion, RegisteredDevice};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Device id and kind by device name, within one tenant.
type TenantDevices = HashMap<String, (i32, Kind)>;

#[derive(Default)]
pub struct Registry {
    tenants: RwLock<HashMap<String, TenantDevices>>,
    missed: AtomicBool,
}

impl Registry {
    pub fn insert_all(&self, devices: impl IntoIterator<Item = RegisteredDevice>) -> usize {
        let mut map = self.tenants.write().unwrap_or_else(|p| p.into_inner());
        let mut n = 0;
        for d in devices {
            map.entry(d.tenant)
                .or_default()
                .insert(d.ext_id, (d.id, d.kind));
            n += 1;
        }
        n
    }

    /// Resolves a topic's device; refusals say which part is unknown or mismatched.
    pub fn resolve(&self, tenant: &str, device: &str, kind: Kind) -> Result<i32, Rejection> {
        let map = self.tenants.read().unwrap_or_else(|p| p.into_inner());
        let found = match map.get(tenant) {
            None => Err(Rejection::UnknownTenant(tenant.to_owned())),
            Some(devices) => match devices.get(device) {
                None => Err(Rejection::UnknownDevice {
                    tenant: tenant.to_owned(),
                    device: device.to_owned(),
                }),
                Some(&(_, registered)) if registered != kind => Err(Rejection::KindMismatch {
                    device: device.to_owned(),
                    registered: registered.as_str(),
                    topic: kind.as_str(),
                }),
                Some(&(id, _)) => Ok(id),
            },
        };
        if found.is_err() {
            self.missed.store(true, Ordering::Relaxed);
        }
        found
    }

    pub fn len(&self) -> usize {
        let map = self.tenants.read().unwrap_or_else(|p| p.into_inner());
        map.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Loads the whole registry, then keeps it current until `shutdown`.
    pub async fn load(
        db: &Ingestion,
    ) -> Result<(Arc<Registry>, Option<chrono::DateTime<chrono::Utc>>), store::StoreError> {
        let registry = Arc::new(Registry::default());
        let (devices, newest) = db.devices_changed_since(None).await?;
        let n = registry.insert_all(devices);
        info!(message = "Device registry loaded.", devices = n);
        Ok((registry, newest))
    }

    /// Keeps the registry current until `shutdown`: at once when the database announces
    /// a change of the inventory (`store::changes::DeviceChanges`), `miss_delay` after a
    /// lookup missed, and all of it every `full_every` in any case (announcements made
    /// while the listening connection was down are not repeated).
    pub async fn keep_current(
        self: Arc<Self>,
        url: String,
        mut newest: Option<chrono::DateTime<chrono::Utc>>,
        miss_delay: Duration,
        full_every: Duration,
        shutdown: CancellationToken,
    ) {
        let mut last_full = tokio::time::Instant::now();
        let mut db: Option<Ingestion> = None;
        let mut changes: Option<DeviceChanges> = None;
        loop {
            if changes.is_none() {
                changes = DeviceChanges::connect(&url)
                    .await
                    .map_err(|error| warn!(message = "Registry cannot listen for inventory changes.", %error))
                    .ok();
            }
            let announced = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(miss_delay) => false,
                change = next_change(&mut changes) => {
                    if change.is_none() {
                        changes = None;
                    }
                    change.is_some()
                }
            };
            let missed = self.missed.swap(false, Ordering::Relaxed);
            let full = last_full.elapsed() >= full_every;
            if !announced && !missed && !full {
                continue;
            }
            if full {
                // Everything again: a device written by a transaction that began before
                // one already read, but committed after it, has an older `updated_at`
                // than the newest seen.
                last_full = tokio::time::Instant::now();
            }
            if db.is_none() {
                db = Ingestion::connect(&url)
                    .await
                    .map_err(|error| warn!(message = "Registry refresh cannot connect.", %error))
                    .ok();
            }
            let Some(conn) = &db else { continue };
            match conn.devices_changed_since(newest.filter(|_| !full)).await {
                Ok((devices, n)) => {
                    newest = n.max(newest);
                    let count = self.insert_all(devices);
                    if count > 0 && !full {
                        info!(message = "Device registry updated.", devices = count);
                    }
                }
                Err(error) => {
                    warn!(message = "Registry refresh failed.", %error);
                    db = None;
                }
            }
        }
    }
}

/// The next inventory change announced; never, without a listening connection.
async fn next_change(changes: &mut Option<DeviceChanges>) -> Option<()> {
    match changes {
        Some(c) => c.changed().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_and_names_what_is_unknown() {
        let r = Registry::default();
        r.insert_all([RegisteredDevice {
            id: 7,
            tenant: "x".into(),
            ext_id: "L1".into(),
            kind: Kind::Light,
        }]);
        assert_eq!(r.resolve("x", "L1", Kind::Light), Ok(7));
        assert_eq!(
            r.resolve("y", "L1", Kind::Light).unwrap_err().code(),
            "unknown_tenant"
        );
        assert_eq!(
            r.resolve("x", "L2", Kind::Light).unwrap_err().code(),
            "unknown_device"
        );
        assert_eq!(
            r.resolve("x", "L1", Kind::Meter).unwrap_err().code(),
            "kind_mismatch"
        );
        assert!(r.missed.load(Ordering::Relaxed));
    }
}

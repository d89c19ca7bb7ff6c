//! Answers too big to build per request, kept briefly and shared: the map's state of
//! every device (`GET /api/v1/state`) is one query over 100k rows and megabytes of JSON,
//! and a control room has many screens asking for it at once.
//!
//! A snapshot younger than [`FRESH`] is served as it is. An older one, up to [`USABLE`],
//! is still served at once while one refresh runs in the background, so a busy hub never
//! makes a client wait for a rebuild; beyond that the request builds it (one build per
//! key at a time: the others wait for it and share the result). Live changes reach the
//! map over `GET /api/v1/events` meanwhile, so a snapshot a second old loses nothing.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;

use crate::error::ApiError;

/// Served without a second look.
pub const FRESH: Duration = Duration::from_secs(1);
/// Served while a newer one is built.
pub const USABLE: Duration = Duration::from_secs(10);
/// Keys kept at most (tenant sets and kinds); the oldest goes first.
const MAX_KEYS: usize = 64;

/// What a snapshot is of: the tenants (sorted) and a device kind.
pub type Key = (Vec<i32>, Option<String>);

#[derive(Clone)]
struct Entry {
    body: Bytes,
    built: Instant,
}

#[derive(Default)]
struct Slot {
    entry: Option<Entry>,
    refreshing: bool,
    /// Held while a request builds this key's snapshot, so builds are not repeated.
    building: Arc<tokio::sync::Mutex<()>>,
}

/// The snapshots of one kind of answer.
#[derive(Default)]
pub struct Snapshots {
    slots: Mutex<HashMap<Key, Slot>>,
}

impl Snapshots {
    /// The snapshot of `key`, built by `build` when there is none usable.
    pub async fn get<F, Fut>(self: &Arc<Self>, key: Key, build: F) -> Result<Bytes, ApiError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Bytes, ApiError>> + Send + 'static,
    {
        let (entry, building) = self.look(&key);
        if let Some(entry) = &entry {
            let age = entry.built.elapsed();
            if age < FRESH {
                return Ok(entry.body.clone());
            }
            if age < USABLE {
                if self.claim_refresh(&key) {
                    let me = Arc::clone(self);
                    tokio::spawn(async move {
                        let built = build().await;
                        me.store(key, built.ok());
                    });
                }
                return Ok(entry.body.clone());
            }
        }
        let _turn = building.lock().await;
        // Someone else may have built it while this request waited.
        if let (Some(entry), _) = self.look(&key) {
            if entry.built.elapsed() < FRESH {
                return Ok(entry.body.clone());
            }
        }
        let body = build().await?;
        self.store(key, Some(body.clone()));
        Ok(body)
    }

    fn look(&self, key: &Key) -> (Option<Entry>, Arc<tokio::sync::Mutex<()>>) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if !slots.contains_key(key) && slots.len() >= MAX_KEYS {
            let oldest = slots
                .iter()
                .min_by_key(|(_, s)| s.entry.as_ref().map(|e| e.built))
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                slots.remove(&oldest);
            }
        }
        let slot = slots.entry(key.clone()).or_default();
        (slot.entry.clone(), Arc::clone(&slot.building))
    }

    /// Whether this caller starts the background refresh of `key` (nobody else has).
    fn claim_refresh(&self, key: &Key) -> bool {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        match slots.get_mut(key) {
            Some(slot) if !slot.refreshing => {
                slot.refreshing = true;
                true
            }
            _ => false,
        }
    }

    fn store(&self, key: Key, body: Option<Bytes>) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = slots.entry(key).or_default();
        slot.refreshing = false;
        if let Some(body) = body {
            slot.entry = Some(Entry {
                body,
                built: Instant::now(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn counting(
        builds: &Arc<AtomicUsize>,
    ) -> impl Fn() -> std::future::Ready<Result<Bytes, ApiError>> {
        let builds = Arc::clone(builds);
        move || {
            let n = builds.fetch_add(1, Ordering::SeqCst) + 1;
            std::future::ready(Ok(Bytes::from(n.to_string())))
        }
    }

    #[tokio::test]
    async fn a_fresh_snapshot_is_shared_a_stale_one_served_while_it_is_rebuilt() {
        let snapshots = Arc::new(Snapshots::default());
        let builds = Arc::new(AtomicUsize::new(0));
        let key: Key = (vec![1], None);
        let first = snapshots.get(key.clone(), counting(&builds)).await.unwrap();
        let again = snapshots.get(key.clone(), counting(&builds)).await.unwrap();
        assert_eq!((first.as_ref(), again.as_ref()), (&b"1"[..], &b"1"[..]));
        assert_eq!(builds.load(Ordering::SeqCst), 1);

        // Another key is its own snapshot.
        let other = snapshots
            .get((vec![2], None), counting(&builds))
            .await
            .unwrap();
        assert_eq!(other.as_ref(), b"2");

        // Made stale: the old one is answered at once, a rebuild follows in the background.
        {
            let mut slots = snapshots.slots.lock().unwrap();
            let entry = slots.get_mut(&key).unwrap().entry.as_mut().unwrap();
            entry.built -= FRESH + Duration::from_millis(10);
        }
        let stale = snapshots.get(key.clone(), counting(&builds)).await.unwrap();
        assert_eq!(stale.as_ref(), b"1");
        for _ in 0..100 {
            if builds.load(Ordering::SeqCst) == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let rebuilt = snapshots.get(key.clone(), counting(&builds)).await.unwrap();
        assert_eq!(rebuilt.as_ref(), b"3");

        // Too old to serve: the request waits for a new one.
        {
            let mut slots = snapshots.slots.lock().unwrap();
            let entry = slots.get_mut(&key).unwrap().entry.as_mut().unwrap();
            entry.built -= USABLE;
        }
        let waited = snapshots.get(key, counting(&builds)).await.unwrap();
        assert_eq!(waited.as_ref(), b"4");
    }

    #[tokio::test]
    async fn a_failed_build_is_an_error_and_keeps_nothing() {
        let snapshots = Arc::new(Snapshots::default());
        let key: Key = (vec![1], Some("light".into()));
        let failed = snapshots
            .get(key.clone(), || async {
                Err(ApiError::unavailable("the database is unavailable"))
            })
            .await;
        assert!(failed.is_err());
        let builds = Arc::new(AtomicUsize::new(0));
        let body = snapshots.get(key, counting(&builds)).await.unwrap();
        assert_eq!(body.as_ref(), b"1");
    }
}

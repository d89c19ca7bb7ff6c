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
struct Entry<T> {
    body: T,
    built: Instant,
}

struct Slot<T> {
    entry: Option<Entry<T>>,
    refreshing: bool,
    /// Held while a request builds this key's snapshot, so builds are not repeated.
    building: Arc<tokio::sync::Mutex<()>>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            entry: None,
            refreshing: false,
            building: Arc::default(),
        }
    }
}

/// The snapshots of one kind of answer (`T`: its body, in every encoding it is served in).
pub struct Snapshots<T = Bytes> {
    slots: Mutex<HashMap<Key, Slot<T>>>,
}

impl<T> Default for Snapshots<T> {
    fn default() -> Self {
        Snapshots {
            slots: Mutex::default(),
        }
    }
}

/// An answer as JSON and as gzip of the same JSON, compressed once when it is built.
#[derive(Clone)]
pub struct Encoded {
    pub json: Bytes,
    /// None should compressing fail: the JSON alone is served.
    pub gzip: Option<Bytes>,
}

impl Encoded {
    /// Compresses `json` (at the fastest level: it is built every second under load).
    pub fn new(json: Bytes) -> Encoded {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(json.len() / 8),
            flate2::Compression::fast(),
        );
        let gzip = gz
            .write_all(&json)
            .and_then(|()| gz.finish())
            .map(Bytes::from)
            .ok();
        Encoded { json, gzip }
    }
}

/// Whether an `Accept-Encoding` header takes gzip (named or `*`, without `q=0`).
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    accept_encoding.is_some_and(|v| {
        v.split(',').any(|part| {
            let mut it = part.split(';').map(str::trim);
            let name = it.next().unwrap_or_default();
            let refused = it.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
    })
}

impl<T: Clone + Send + Sync + 'static> Snapshots<T> {
    /// The snapshot of `key`, built by `build` when there is none usable.
    pub async fn get<F, Fut>(self: &Arc<Self>, key: Key, build: F) -> Result<T, ApiError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, ApiError>> + Send + 'static,
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

    fn look(&self, key: &Key) -> (Option<Entry<T>>, Arc<tokio::sync::Mutex<()>>) {
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

    fn store(&self, key: Key, body: Option<T>) {
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

    #[test]
    fn gzip_is_served_to_clients_that_take_it() {
        for (header, takes) in [
            (None, false),
            (Some(""), false),
            (Some("gzip"), true),
            (Some("gzip, deflate, br"), true),
            (Some("br;q=1.0, GZIP;q=0.5"), true),
            (Some("gzip;q=0"), false),
            (Some("deflate, gzip; q=0.0"), false),
            (Some("*"), true),
            (Some("identity"), false),
            (Some("x-gzip-not"), false),
        ] {
            assert_eq!(accepts_gzip(header), takes, "{header:?}");
        }
    }

    #[test]
    fn the_gzip_body_is_the_json_compressed() {
        use std::io::Read;
        let json =
            Bytes::from("{\"ext_id\":[".to_owned() + &"\"B000001\",".repeat(1000) + "\"B\"]}");
        let e = Encoded::new(json.clone());
        let gzip = e.gzip.expect("compressed");
        assert!(gzip.len() * 10 < json.len(), "{} bytes", gzip.len());
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gzip[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, json);
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

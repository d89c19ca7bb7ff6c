//! A few database connections shared by the requests.
//!
//! A request takes a connection for its duration and gives it back when done; at most
//! [`Pool::new`]'s `size` exist, and a request that finds none free waits for one (so a
//! burst of requests queues here instead of opening hundreds of connections). A
//! connection that broke is dropped rather than returned, and a new one is opened on
//! demand, so the API recovers by itself after a database restart.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use store::{Access, Actions, Db, Handle, Reads};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// How long a request waits for a free connection before giving up with a 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

struct Shared {
    url: String,
    idle: Mutex<Vec<Db>>,
    permits: Arc<Semaphore>,
}

/// The connections of the API.
#[derive(Clone)]
pub struct Pool(Arc<Shared>);

/// A connection held by a request as the handle it needs (what it reads, what people do,
/// or signing in); back to the pool when dropped.
pub struct Conn<H: Handle> {
    db: Option<H>,
    pool: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
}

impl Pool {
    /// A pool of at most `size` connections to `url`, opened when first needed.
    pub fn new(url: &str, size: usize) -> Pool {
        Pool(Arc::new(Shared {
            url: url.to_owned(),
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(size.max(1))),
        }))
    }

    /// A connection of its own, outside the pool, for one long read (an export) that
    /// must not keep a connection the requests share. How many may exist is the
    /// caller's to bound (exports take a slot first: `v1::exports::slots`).
    pub async fn dedicated(&self) -> Result<Reads, ApiError> {
        Reads::connect(&self.0.url).await.map_err(ApiError::from)
    }

    /// A connection for reads.
    pub async fn reads(&self) -> Result<Conn<Reads>, ApiError> {
        self.get().await
    }

    /// A connection for what people do.
    pub async fn actions(&self) -> Result<Conn<Actions>, ApiError> {
        self.get().await
    }

    /// A connection for signing in and the users an admin manages.
    pub async fn access(&self) -> Result<Conn<Access>, ApiError> {
        self.get().await
    }

    /// A connection: an idle one, or a new one while fewer than `size` exist.
    async fn get<H: Handle>(&self) -> Result<Conn<H>, ApiError> {
        let permit = tokio::time::timeout(ACQUIRE_TIMEOUT, self.0.permits.clone().acquire_owned())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        let idle = self.idle().pop();
        let db = match idle {
            Some(db) if !db.is_closed() => db,
            _ => Db::connect(&self.0.url).await.map_err(ApiError::from)?,
        };
        Ok(Conn {
            db: Some(H::from(db)),
            pool: self.0.clone(),
            _permit: permit,
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Db>> {
        lock(&self.0.idle)
    }
}

fn lock(idle: &Mutex<Vec<Db>>) -> std::sync::MutexGuard<'_, Vec<Db>> {
    // The list holds connections only; one left by a panicking holder is still fine.
    idle.lock().unwrap_or_else(|p| p.into_inner())
}

fn busy() -> ApiError {
    ApiError::unavailable("the server is too busy to reach the database; try again shortly")
}

impl<H: Handle> Deref for Conn<H> {
    type Target = H;
    fn deref(&self) -> &H {
        // Set in `get`, taken only in `drop`.
        self.db.as_ref().expect("a held connection")
    }
}

impl<H: Handle> DerefMut for Conn<H> {
    fn deref_mut(&mut self) -> &mut H {
        self.db.as_mut().expect("a held connection")
    }
}

impl<H: Handle> Drop for Conn<H> {
    fn drop(&mut self) {
        if let Some(db) = self.db.take().map(H::into_db) {
            if !db.is_closed() {
                lock(&self.pool.idle).push(db);
            }
        }
    }
}

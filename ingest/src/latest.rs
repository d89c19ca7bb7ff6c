//! The latest-state table, kept off the acknowledgement path.
//!
//! The newest state of each device is derived from committed readings, so it need not
//! delay the commit that acknowledges them. Committed batches hand their newest state per
//! device here; one task merges what arrives while it writes and upserts the merged set
//! in one statement per round, at most one round per `min_interval`. Under load the rounds
//! grow (one row per device however many readings it sent meanwhile), so the table keeps
//! up with any ingest rate and costs the database at most one row per device per interval.

use model::Backoff;
use std::time::Duration;

use store::{merge_latest, Ingestion, LatestUpdates};
use tokio::sync::mpsc;
use tracing::{info, warn};

pub(crate) async fn keep_latest(
    url: String,
    mut updates: mpsc::UnboundedReceiver<LatestUpdates>,
    min_interval: Duration,
) {
    let mut pending = LatestUpdates::new();
    let mut db: Option<Ingestion> = None;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    let mut last_round = tokio::time::Instant::now() - min_interval;
    loop {
        if pending.is_empty() {
            match updates.recv().await {
                Some(u) => pending = u,
                None => break,
            }
        }
        // Collect until the interval since the last round has passed (or the hub stops).
        let due = last_round + min_interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(due) => break,
                u = updates.recv() => match u {
                    Some(u) => merge_latest(&mut pending, u),
                    None => break,
                },
            }
        }
        last_round = tokio::time::Instant::now();
        // Take everything that arrived meanwhile.
        while let Ok(u) = updates.try_recv() {
            merge_latest(&mut pending, u);
        }
        let result = match &db {
            Some(conn) => conn.upsert_latest(&pending).await,
            None => match Ingestion::connect(&url).await {
                Ok(conn) => db.insert(conn).upsert_latest(&pending).await,
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(()) => {
                pending.clear();
                backoff.succeeded();
            }
            Err(error) => {
                warn!(message = "Cannot update the latest state; will retry.", %error, devices = pending.len());
                db = None;
                tokio::time::sleep(backoff.failed()).await;
            }
        }
    }
    if !pending.is_empty() {
        if let Ok(conn) = Ingestion::connect(&url).await {
            if let Err(error) = conn.upsert_latest(&pending).await {
                warn!(message = "Latest state not updated at shutdown.", %error, devices = pending.len());
            }
        }
    }
    info!(message = "Latest-state updates stopped.");
}

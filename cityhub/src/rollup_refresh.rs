//! The lamp rollups' refresher: every `storage.rollup_refresh_s` seconds it rolls up the
//! closed 15-minute buckets that got readings (`store::Db::refresh_rollups`). On
//! TimescaleDB it materializes the continuous aggregates (their policies do too) and
//! rebuilds the districts' days that got readings.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Refreshes until `stop`; a failed refresh is logged and retried at the next tick (its
/// transaction rolled back, so its marks are still there).
pub async fn run(
    database_url: String,
    clock: model::Clock,
    every: Duration,
    stop: CancellationToken,
) {
    let mut db: Option<store::Admin> = None;
    loop {
        if db.as_ref().is_none_or(|d| d.is_closed()) {
            db = match store::Admin::connect(&database_url).await {
                Ok(d) => Some(d),
                Err(error) => {
                    warn!(message = "The rollup refresher cannot connect; will retry.", %error);
                    None
                }
            };
        }
        if let Some(d) = db.as_mut() {
            let now = clock().to_datetime();
            let started = std::time::Instant::now();
            tokio::select! {
                _ = stop.cancelled() => return,
                r = d.refresh_rollups(now) => match r {
                    Ok(o) if o.buckets > 0 => debug!(
                        message = "Rollups refreshed.",
                        buckets = o.buckets,
                        runs = o.runs,
                        elapsed_ms = started.elapsed().as_millis() as u64
                    ),
                    Ok(_) => {}
                    Err(error) => warn!(message = "The rollup refresh failed; will retry.", %error),
                },
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

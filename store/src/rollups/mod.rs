//! Lamp telemetry rolled up by 15 minutes, hour and day per device: `light_15min`,
//! `light_hour`, `light_day`, the same columns on both storage paths.
//!
//! Each storage path has its module: [`timescale`] and [`native`]; this one holds what
//! both share (the rollups' names, bucket arithmetic, the marks, the refresher's entry).
//!
//! On TimescaleDB they are continuous aggregates (hierarchical: hour from 15 minutes, day
//! from hour) with refresh policies; the 15-minute and hour aggregates answer with
//! real-time aggregation, so readers never need the raw tail, and the day aggregate from
//! its materialized rows, today included ([`TIMESCALE_DAY_TO_TODAY`]); the districts'
//! days are a table rebuilt from the marks below ([`timescale_district_table`]). On native
//! partitioning they are tables kept by [`Db::refresh_rollups`]:
//!
//! - every batch that writes lamp readings appends the 15-minute buckets it touched to
//!   `light_rollup_marks`, in the batch's own transaction (a few rows per batch, no unique
//!   key, so concurrent writers never wait on each other);
//! - the refresher takes the marks of closed buckets (ended more than [`GRACE_S`] ago),
//!   oldest first, a run of contiguous buckets at a time, and in one transaction deletes
//!   those marks, recomputes the 15-minute rows of those buckets from the raw readings,
//!   the energy and burning time of the buckets whose predecessor changed, then the hours
//!   and days around them. A backlog that arrives hours late leaves marks on old buckets,
//!   and they are rolled again; a crash rolls the transaction back with its marks.
//! - `rollup_state.complete_before` says up to where the rollups hold every closed
//!   bucket; readers take what lies after it from the raw readings.
//!
//! Energy and burning time come from the cumulative counters (`energy_wh`, `burn_hours`):
//! a bucket counts the counter's last value minus the last value of the device's previous
//! bucket, when that one is at most [`LOOKBACK`] earlier; otherwise (the first bucket, a
//! longer silence, a counter that went back) it counts from its own first reading. Burning
//! time without a counter step falls back to the share of readings that said `on` times
//! the bucket's length. (On TimescaleDB a continuous aggregate cannot look at the previous
//! bucket: it counts from its first reading to its last, and the readers, the history
//! and `light_district_day`, take the step from the previous bucket's last values.)

mod native;
pub(crate) mod timescale;

use crate::handles::{Admin, Reads};
use chrono::{DateTime, Duration, DurationRound, Utc};
use tokio_postgres::Transaction;

use crate::{StoragePath, StoreError};

/// A bucket is rolled up once it ended this long ago; later readings re-roll it.
pub const GRACE_S: i64 = 60;
/// How far back a bucket looks for its predecessor's counter values (SQL interval).
pub const LOOKBACK: &str = "2 hours";
/// The origin of every bucket: buckets are aligned to UTC.
pub const ORIGIN: &str = "TIMESTAMPTZ '2000-01-01 00:00:00+00'";
/// One 15-minute bucket.
pub const QUARTER: Duration = Duration::minutes(15);

/// The three rollups of lamp telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollup {
    Quarter,
    Hour,
    Day,
}

impl Rollup {
    pub fn table(self) -> &'static str {
        match self {
            Rollup::Quarter => "light_15min",
            Rollup::Hour => "light_hour",
            Rollup::Day => "light_day",
        }
    }

    pub fn step(self) -> Duration {
        match self {
            Rollup::Quarter => QUARTER,
            Rollup::Hour => Duration::hours(1),
            Rollup::Day => Duration::days(1),
        }
    }
}

/// The map reads every device's newest state at once: the few telemetry fields it needs
/// are kept as columns, computed when the row is written rather than parsed from the JSON
/// of 100k rows per request.
const LATEST_COLUMNS: &str = "
ALTER TABLE device_latest
    ADD COLUMN lamp_on boolean GENERATED ALWAYS AS ((telemetry->>'on')::boolean) STORED,
    ADD COLUMN dim_pct double precision GENERATED ALWAYS AS ((telemetry->>'dim')::double precision) STORED,
    ADD COLUMN has_fault boolean GENERATED ALWAYS AS ((telemetry->>'fault') IS NOT NULL) STORED;
";

/// Migration 6: the rollups on `path`.
pub fn migration(path: StoragePath) -> String {
    let rollups = match path {
        StoragePath::Partitioned => native::migration(),
        StoragePath::TimescaleDb => timescale::migration(),
    };
    format!("{LATEST_COLUMNS}{rollups}")
}

/// Days per district, for the energy report, on both storage paths.
pub(crate) const DISTRICT_DAYS: &str = "
-- Days per district, for the energy report: from light_day and each lamp's district
-- when the day was last rolled up. `district` '' stands for lamps without one.
CREATE TABLE light_district_day (
    tenant_id integer NOT NULL,
    district text NOT NULL,
    bucket timestamptz NOT NULL,
    energy_wh double precision,
    burning_s double precision,
    lamps integer NOT NULL,
    rated_wh double precision,
    PRIMARY KEY (tenant_id, district, bucket)
);";

/// What one refresh did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RefreshOutcome {
    /// 15-minute buckets recomputed from the raw readings.
    pub buckets: usize,
    /// Transactions (runs of contiguous buckets).
    pub runs: usize,
}

/// The start of the 15-minute bucket holding `t`.
pub fn quarter_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(QUARTER).unwrap_or(t)
}

/// Records, in a batch's transaction, the 15-minute buckets (Unix seconds / 900) that got
/// lamp readings. One row per bucket and batch.
pub(crate) async fn mark(
    tx: &Transaction<'_>,
    quarters: &std::collections::BTreeSet<i64>,
) -> Result<(), StoreError> {
    let starts: Vec<i64> = quarters.iter().map(|q| q * 900).collect();
    tx.execute(
        "INSERT INTO light_rollup_marks (bucket) SELECT to_timestamp(s) FROM unnest($1::int8[]) s",
        &[&starts],
    )
    .await
    .map_err(StoreError::db("marking buckets for the rollups"))?;
    Ok(())
}

impl Admin {
    /// Native partitioning: rolls up every closed 15-minute bucket that got readings since
    /// its last roll-up, then moves `complete_before` to the end of the closed buckets.
    /// TimescaleDB: materializes the continuous aggregates up to the closed buckets now
    /// (the days up to the end of today), finest first, rather than when their policies
    /// next run (TimescaleDB redoes only the ranges whose readings changed), waiting up to
    /// [`POLICY_WAIT`] for a policy that is refreshing the same aggregate, then rebuilds
    /// the districts' days that got readings; the outcome then counts nothing.
    pub async fn refresh_rollups(
        &mut self,
        now: DateTime<Utc>,
    ) -> Result<RefreshOutcome, StoreError> {
        let closed_before = quarter_of(now - Duration::seconds(GRACE_S));
        match self.path() {
            StoragePath::TimescaleDb => {
                self.refresh_timescale(closed_before).await?;
                Ok(RefreshOutcome::default())
            }
            StoragePath::Partitioned => self.refresh_native(closed_before).await,
        }
    }
}

impl Reads {
    /// Up to where the lamp rollups hold every closed bucket (infinity on TimescaleDB,
    /// whose aggregates answer the rest in real time).
    pub async fn rollups_complete_before(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = self
            .query_opt_cached(
                "SELECT CASE WHEN complete_before = 'infinity' THEN 'infinity'::text
                             WHEN complete_before = '-infinity' THEN '-infinity'::text END,
                        CASE WHEN isfinite(complete_before) THEN complete_before END
                 FROM rollup_state WHERE name = 'light'",
                &[],
            )
            .await
            .map_err(StoreError::db("reading the rollups' progress"))?;
        // No row: nothing was ever rolled up.
        let Some(row) = row else {
            return Ok(None);
        };
        let special: Option<String> = row.get(0);
        let at: Option<DateTime<Utc>> = row.get(1);
        Ok(match special.as_deref() {
            Some("infinity") => Some(DateTime::<Utc>::MAX_UTC),
            Some(_) => None,
            None => at,
        })
    }
}

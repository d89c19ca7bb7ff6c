//! Lamp telemetry rolled up by 15 minutes, hour and day per device: `light_15min`,
//! `light_hour`, `light_day`, the same columns on both storage paths.
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

use chrono::{DateTime, Duration, DurationRound, Utc};
use tokio_postgres::error::SqlState;
use tokio_postgres::Transaction;
use tracing::debug;

use crate::{Db, StoragePath, StoreError};

/// A bucket is rolled up once it ended this long ago; later readings re-roll it.
pub const GRACE_S: i64 = 60;
/// How far back a bucket looks for its predecessor's counter values (SQL interval).
pub const LOOKBACK: &str = "2 hours";
/// 15-minute rows (a device's bucket) a refresh transaction aims to write: a backlog of
/// days goes a day at a time for 10k reporting lamps, ten buckets at a time for 100k.
const RUN_ROWS: i64 = 1_000_000;
/// 15-minute buckets in a day: a run never spans two days.
const QUARTERS_A_DAY: usize = 96;
/// The origin of every bucket: buckets are aligned to UTC.
pub const ORIGIN: &str = "TIMESTAMPTZ '2000-01-01 00:00:00+00'";
/// How long a refresh on TimescaleDB waits for a policy's refresh of the same aggregate.
const POLICY_WAIT: std::time::Duration = std::time::Duration::from_secs(600);
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

/// Columns of every rollup, after `device_id, bucket`.
const COLUMNS: &str = "samples, on_samples, fault_samples, power_sum, power_n, power_max, \
    dim_sum, dim_n, voltage_min, voltage_max, energy_first_wh, energy_last_wh, burn_first_h, \
    burn_last_h, energy_wh, burning_s";

fn table_ddl(name: &str) -> String {
    format!(
        "CREATE TABLE {name} (
    device_id integer NOT NULL,
    bucket timestamptz NOT NULL,
    samples integer NOT NULL,
    on_samples integer NOT NULL,
    fault_samples integer NOT NULL,
    power_sum double precision,
    power_n integer NOT NULL,
    power_max double precision,
    dim_sum double precision,
    dim_n integer NOT NULL,
    voltage_min double precision,
    voltage_max double precision,
    energy_first_wh double precision,
    energy_last_wh double precision,
    -- Energy used in the bucket (see store::rollups), Wh.
    energy_wh double precision,
    burn_first_h double precision,
    burn_last_h double precision,
    -- Seconds the lamp burned in the bucket.
    burning_s double precision,
    PRIMARY KEY (device_id, bucket)
) WITH (fillfactor = 70);
-- Hours and days are rewritten at every refresh of their buckets: the room left on each
-- page lets PostgreSQL do so in place, without new index entries. The refresher reads
-- and rewrites rollups by time range, for every device.
CREATE INDEX {name}_bucket ON {name} (bucket);
"
    )
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
        StoragePath::Partitioned => {
            let mut sql = String::new();
            for r in [Rollup::Quarter, Rollup::Hour, Rollup::Day] {
                sql.push_str(&table_ddl(r.table()));
            }
            sql.push_str(&format!(
                "
{DISTRICT_DAYS}
-- 15-minute buckets that got lamp readings since they were last rolled up. Appended by
-- every batch in its transaction; taken by the refresher.
CREATE TABLE light_rollup_marks (bucket timestamptz NOT NULL);
CREATE INDEX light_rollup_marks_bucket ON light_rollup_marks (bucket);
-- Readings stored before the rollups existed are rolled up by the first refresh.
INSERT INTO light_rollup_marks (bucket)
    SELECT DISTINCT date_bin(INTERVAL '15 minutes', ts, {ORIGIN}) FROM light_readings;
-- Up to where the rollups hold every closed bucket; readers take the rest from the raw rows.
CREATE TABLE rollup_state (
    name text PRIMARY KEY,
    complete_before timestamptz NOT NULL
);
INSERT INTO rollup_state VALUES ('light', '-infinity');
"
            ));
            sql
        }
        StoragePath::TimescaleDb => timescale(),
    };
    format!("{LATEST_COLUMNS}{rollups}")
}

/// Days per district, for the energy report, on both storage paths.
const DISTRICT_DAYS: &str = "
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

/// Continuous aggregates. Real-time aggregation (`materialized_only = false`) answers the
/// buckets not yet materialized from the raw rows, so `complete_before` is infinity.
fn timescale() -> String {
    let hour = coarser("light_hour", "1 hour", "light_15min", "7 days", "5 minutes");
    let day = coarser("light_day", "1 day", "light_hour", "30 days", "1 hour");
    format!("{TIMESCALE_QUARTER}{hour}{day}{TIMESCALE_DISTRICTS}")
}

const TIMESCALE_QUARTER: &str = r#"
CREATE MATERIALIZED VIEW light_15min
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT device_id,
       time_bucket(INTERVAL '15 minutes', ts) AS bucket,
       count(*)::integer AS samples,
       count(*) FILTER (WHERE "on")::integer AS on_samples,
       count(fault)::integer AS fault_samples,
       sum(power_w) AS power_sum,
       count(power_w)::integer AS power_n,
       max(power_w) AS power_max,
       sum(dim)::double precision AS dim_sum,
       count(dim)::integer AS dim_n,
       min(voltage_v) AS voltage_min,
       max(voltage_v) AS voltage_max,
       first(energy_wh, ts) AS energy_first_wh,
       last(energy_wh, ts) AS energy_last_wh,
       greatest(last(energy_wh, ts) - first(energy_wh, ts), 0) AS energy_wh,
       first(burn_hours, ts) AS burn_first_h,
       last(burn_hours, ts) AS burn_last_h,
       greatest(last(burn_hours, ts) - first(burn_hours, ts), 0) * 3600 AS burning_s
FROM light_readings
GROUP BY device_id, time_bucket(INTERVAL '15 minutes', ts)
WITH NO DATA;
SELECT add_continuous_aggregate_policy('light_15min',
    start_offset => INTERVAL '7 days', end_offset => INTERVAL '15 minutes',
    schedule_interval => INTERVAL '1 minute');

"#;

/// A continuous aggregate `name` of `width` buckets over the finer one `source`,
/// refreshed every `every` over the last `start`.
fn coarser(name: &str, width: &str, source: &str, start: &str, every: &str) -> String {
    format!(
        r#"CREATE MATERIALIZED VIEW {name}
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
{}
WITH NO DATA;
SELECT add_continuous_aggregate_policy('{name}',
    start_offset => INTERVAL '{start}', end_offset => INTERVAL '{width}',
    schedule_interval => INTERVAL '{every}');

"#,
        coarser_select(width, source)
    )
}

/// The rows of `width` buckets over the finer rollup rows of `source` (a table, or a
/// subquery in parentheses with an alias), with the columns of every rollup.
pub(crate) fn coarser_select(width: &str, source: &str) -> String {
    format!(
        r#"SELECT device_id,
       time_bucket(INTERVAL '{width}', bucket) AS bucket,
       sum(samples)::integer AS samples,
       sum(on_samples)::integer AS on_samples,
       sum(fault_samples)::integer AS fault_samples,
       sum(power_sum) AS power_sum,
       sum(power_n)::integer AS power_n,
       max(power_max) AS power_max,
       sum(dim_sum) AS dim_sum,
       sum(dim_n)::integer AS dim_n,
       min(voltage_min) AS voltage_min,
       max(voltage_max) AS voltage_max,
       first(energy_first_wh, bucket) AS energy_first_wh,
       last(energy_last_wh, bucket) AS energy_last_wh,
       greatest(last(energy_last_wh, bucket) - first(energy_first_wh, bucket), 0) AS energy_wh,
       first(burn_first_h, bucket) AS burn_first_h,
       last(burn_last_h, bucket) AS burn_last_h,
       greatest(last(burn_last_h, bucket) - first(burn_first_h, bucket), 0) * 3600 AS burning_s
FROM {source}
GROUP BY device_id, time_bucket(INTERVAL '{width}', bucket)"#
    )
}

const TIMESCALE_DISTRICTS: &str = r#"CREATE VIEW light_district_day AS
SELECT d.tenant_id, coalesce(d.district, '') AS district, r.bucket,
       sum(r.energy_wh) AS energy_wh, sum(r.burning_s) AS burning_s,
       count(*)::integer AS lamps, sum(d.rated_power_w * r.burning_s / 3600.0) AS rated_wh
FROM light_day r JOIN devices d ON d.id = r.device_id
WHERE d.kind = 'light'
GROUP BY 1, 2, 3;

CREATE TABLE rollup_state (
    name text PRIMARY KEY,
    complete_before timestamptz NOT NULL
);
INSERT INTO rollup_state VALUES ('light', 'infinity');
"#;

/// Days per district from the day aggregate (the days `filter` keeps): a day's energy and
/// burning time count from the lamp's last counter values of the day before, when it has
/// one (the continuous aggregate alone counts from the day's first reading, missing the
/// step into it).
fn timescale_district_days(filter: &str) -> String {
    format!(
        "SELECT d.tenant_id, coalesce(d.district, '') AS district, r.bucket,
       sum(r.energy_wh) AS energy_wh, sum(r.burning_s) AS burning_s,
       count(*)::integer AS lamps, sum(d.rated_power_w * r.burning_s / 3600.0) AS rated_wh
FROM (
    SELECT r.device_id, r.bucket,
           CASE WHEN r.energy_last_wh >= p.energy_last_wh
                THEN r.energy_last_wh - p.energy_last_wh ELSE r.energy_wh END AS energy_wh,
           CASE WHEN r.burn_last_h >= p.burn_last_h
                THEN (r.burn_last_h - p.burn_last_h) * 3600 ELSE r.burning_s END AS burning_s
    FROM light_day r
    LEFT JOIN light_day p ON p.device_id = r.device_id AND p.bucket = r.bucket - INTERVAL '1 day'
    {filter}
) r
JOIN devices d ON d.id = r.device_id
WHERE d.kind = 'light'
GROUP BY 1, 2, 3"
    )
}

/// Migration 9 on TimescaleDB: days per district, a view ([`timescale_district_days`]).
pub fn timescale_districts_from_day_before() -> String {
    format!(
        "CREATE OR REPLACE VIEW light_district_day AS\n{};\n",
        timescale_district_days("")
    )
}

/// Migration 10 on TimescaleDB: the day aggregate answers from its materialized rows only,
/// and its policy refreshes it every 5 minutes up to the newest bucket, so that today is
/// materialized too, as of the refresh. Read in real time, today's bucket was computed on
/// every query from the hour aggregate, the 15-minute aggregate and the newest raw
/// readings of every lamp asked for: seconds for a district's energy report. A day
/// aggregate refresh reads the hour aggregate in real time, so today holds every reading
/// up to that refresh; it is redone once the finer aggregates' refreshes change it.
pub const TIMESCALE_DAY_TO_TODAY: &str = "
ALTER MATERIALIZED VIEW light_day SET (timescaledb.materialized_only = true);
SELECT remove_continuous_aggregate_policy('light_day');
SELECT add_continuous_aggregate_policy('light_day',
    start_offset => INTERVAL '30 days', end_offset => NULL,
    schedule_interval => INTERVAL '5 minutes');
";

/// Migration 11 on TimescaleDB: the districts' days become a table kept by
/// [`Db::refresh_rollups`], as on native partitioning. As a view, every energy report
/// aggregated the day aggregate of every lamp in the district over the whole range, with
/// each day's step from the day before: seconds at 10k lamps a district. Every batch that
/// writes lamp readings marks their 15-minute buckets, as on native partitioning; the
/// refresher rebuilds the days of the marks it took, and the day after each (whose energy
/// counts from their last counter values), once the aggregates hold them. Every day that
/// already holds lamp readings (a chunk of `light_readings`) is marked, so the first
/// refresh builds them.
pub fn timescale_district_table() -> String {
    format!(
        "
DROP VIEW light_district_day;
{DISTRICT_DAYS}
-- 15-minute buckets that got lamp readings since their days were last rebuilt. Appended
-- by every batch in its transaction; the refresher deletes the rows it took by `id`.
CREATE TABLE light_rollup_marks (
    bucket timestamptz NOT NULL,
    id bigint GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX light_rollup_marks_bucket ON light_rollup_marks (bucket);
INSERT INTO light_rollup_marks (bucket)
    SELECT DISTINCT generate_series(time_bucket(INTERVAL '1 day', range_start),
                                    range_end - INTERVAL '1 microsecond', INTERVAL '1 day')
    FROM timescaledb_information.chunks
    WHERE hypertable_schema = current_schema() AND hypertable_name = 'light_readings';
"
    )
}

/// Rebuilds the districts' days `$1` (day starts, deleted first) from the materialized
/// day aggregate, on TimescaleDB.
fn timescale_rebuild_districts() -> String {
    format!(
        "INSERT INTO light_district_day\n{}",
        timescale_district_days("WHERE r.bucket = ANY($1)")
    )
}

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

/// 15-minute buckets rolled up in one transaction when each holds `rows_per_bucket` rows:
/// about [`RUN_ROWS`], from one bucket to a whole day.
pub fn run_length(rows_per_bucket: u64) -> usize {
    (RUN_ROWS / rows_per_bucket.max(1) as i64).clamp(1, QUARTERS_A_DAY as i64) as usize
}

/// Splits sorted, distinct bucket starts into runs of contiguous buckets within one UTC
/// day, each at most `max` long: `[start, end)` pairs.
pub fn runs(buckets: &[DateTime<Utc>], max: usize) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut out: Vec<(DateTime<Utc>, DateTime<Utc>, usize)> = Vec::new();
    for &b in buckets {
        match out.last_mut() {
            Some((start, end, n))
                if *end == b && *n < max && start.date_naive() == b.date_naive() =>
            {
                *end = b + QUARTER;
                *n += 1;
            }
            _ => out.push((b, b + QUARTER, 1)),
        }
    }
    out.into_iter().map(|(s, e, _)| (s, e)).collect()
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

impl Db {
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
        let mut outcome = RefreshOutcome::default();
        let closed_before = quarter_of(now - Duration::seconds(GRACE_S));
        if self.path() == StoragePath::TimescaleDb {
            self.refresh_timescale(closed_before).await?;
            return Ok(outcome);
        }
        // The first run guesses from the lamps in the inventory; later ones from how many
        // rows a bucket of the run before held.
        let mut max_run = run_length(self.lamp_count().await?);
        loop {
            let pending: Vec<DateTime<Utc>> = self
                .client()
                .query(
                    "SELECT DISTINCT bucket FROM light_rollup_marks WHERE bucket < $1
                     ORDER BY bucket LIMIT $2",
                    &[&closed_before, &(max_run as i64)],
                )
                .await
                .map_err(StoreError::db("reading the rollup marks"))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let Some(&(lo, hi)) = runs(&pending, max_run).first() else {
                break;
            };
            let n = ((hi - lo).num_seconds() / QUARTER.num_seconds()) as usize;
            let tx = self
                .client_mut()
                .transaction()
                .await
                .map_err(StoreError::db("starting a rollup refresh"))?;
            let rows = roll_run(&tx, lo, hi).await?;
            tx.commit()
                .await
                .map_err(StoreError::db("committing a rollup refresh"))?;
            debug!(message = "Rolled up lamp telemetry.", from = %lo, to = %hi);
            outcome.buckets += n;
            outcome.runs += 1;
            max_run = run_length(rows / n as u64);
        }
        self.client()
            .execute(
                "UPDATE rollup_state SET complete_before = greatest(complete_before, $1)
                 WHERE name = 'light'",
                &[&closed_before],
            )
            .await
            .map_err(StoreError::db("recording the rollups' progress"))?;
        Ok(outcome)
    }

    /// TimescaleDB: takes the marks of closed hours, materializes the continuous
    /// aggregates (see [`Db::refresh_rollups`]), then rebuilds the districts' days of those
    /// marks and the day after each, and deletes the marks it took. A batch committing
    /// after the marks were read leaves its marks for the next refresh, whose
    /// materialization holds its readings; a failed rebuild leaves all of them.
    async fn refresh_timescale(&mut self, closed_before: DateTime<Utc>) -> Result<(), StoreError> {
        // A 15-minute bucket reaches the day aggregate once its hour is materialized.
        let hours_closed = closed_before
            .duration_trunc(Duration::hours(1))
            .unwrap_or(closed_before);
        let row = self
            .client()
            .query_one(
                "SELECT coalesce(array_agg(id), '{}'),
                        coalesce(array_agg(DISTINCT time_bucket(INTERVAL '1 day', bucket)), '{}')
                 FROM light_rollup_marks WHERE bucket < $1",
                &[&hours_closed],
            )
            .await
            .map_err(StoreError::db("reading the rollup marks"))?;
        let (ids, marked): (Vec<i64>, Vec<DateTime<Utc>>) = (row.get(0), row.get(1));
        // The day aggregate is read materialized only: it is refreshed to the end of
        // today, which holds the readings so far.
        let today_end = closed_before
            .duration_trunc(Duration::days(1))
            .unwrap_or(closed_before)
            + Duration::days(1);
        for (r, end) in [
            (Rollup::Quarter, closed_before),
            (Rollup::Hour, closed_before),
            (Rollup::Day, today_end),
        ] {
            let sql = format!(
                "CALL refresh_continuous_aggregate('{}', NULL, '{}')",
                r.table(),
                end.to_rfc3339()
            );
            // A policy refreshing the same aggregate makes TimescaleDB refuse at once;
            // wait for it rather than fail.
            let deadline = std::time::Instant::now() + POLICY_WAIT;
            loop {
                match self.client().batch_execute(&sql).await {
                    Err(e)
                        if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE)
                            && std::time::Instant::now() < deadline =>
                    {
                        debug!(
                            message = "Waiting for a concurrent refresh.",
                            rollup = r.table()
                        );
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                    done => break done,
                }
            }
            .map_err(StoreError::db("refreshing the continuous aggregates"))?;
        }
        if ids.is_empty() {
            return Ok(());
        }
        let mut days: Vec<DateTime<Utc>> = marked
            .iter()
            .flat_map(|&d| [d, d + Duration::days(1)])
            .collect();
        days.sort();
        days.dedup();
        let tx = self
            .client_mut()
            .transaction()
            .await
            .map_err(StoreError::db("starting a rebuild of districts' days"))?;
        tx.batch_execute("SELECT pg_advisory_xact_lock(727275); SET LOCAL jit = off")
            .await
            .map_err(StoreError::db("taking the rollup lock"))?;
        tx.execute(
            "DELETE FROM light_district_day WHERE bucket = ANY($1)",
            &[&days],
        )
        .await
        .map_err(StoreError::db("rebuilding districts' days"))?;
        tx.execute(&timescale_rebuild_districts(), &[&days])
            .await
            .map_err(StoreError::db("rebuilding districts' days"))?;
        tx.execute("DELETE FROM light_rollup_marks WHERE id = ANY($1)", &[&ids])
            .await
            .map_err(StoreError::db("taking the rollup marks"))?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a rebuild of districts' days"))?;
        debug!(message = "Rebuilt districts' days.", days = days.len());
        Ok(())
    }

    async fn lamp_count(&self) -> Result<u64, StoreError> {
        let lamps: i64 = self
            .client()
            .query_one("SELECT count(*) FROM devices WHERE kind = 'light'", &[])
            .await
            .map_err(StoreError::db("counting the lamps"))?
            .get(0);
        Ok(lamps.max(0) as u64)
    }

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

/// Rolls up the 15-minute buckets `[lo, hi)` and what depends on them, in `tx`; the
/// 15-minute rows written.
async fn roll_run(
    tx: &Transaction<'_>,
    lo: DateTime<Utc>,
    hi: DateTime<Utc>,
) -> Result<u64, StoreError> {
    // One refresher at a time, whichever hub runs it. Its statements are large scans
    // planned afresh each time: compiling them (JIT) costs more than it saves, and a run's
    // sorts should stay in memory. The rollups are derived data whose marks commit with
    // them: a commit lost in a crash loses nothing the next refresh does not redo.
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(727275); SET LOCAL jit = off;
         SET LOCAL work_mem = '256MB'; SET LOCAL synchronous_commit = off",
    )
    .await
    .map_err(StoreError::db("taking the rollup lock"))?;
    // Marks first: a batch committing after this statement leaves its mark for the next
    // run; one committed before it is seen by the recomputation below.
    tx.execute(
        "DELETE FROM light_rollup_marks WHERE bucket >= $1 AND bucket < $2",
        &[&lo, &hi],
    )
    .await
    .map_err(StoreError::db("taking the rollup marks"))?;
    let rows = tx
        .execute(&quarters_sql(), &[&lo, &hi])
        .await
        .map_err(StoreError::db("rolling up 15 minutes"))?;
    // Buckets up to LOOKBACK after the run that were rolled up before (a backlog arriving
    // late) count their energy from a predecessor that may have changed: recomputed, and
    // written only where their values change.
    tx.batch_execute("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
        .await
        .map_err(StoreError::db("planning the energy step"))?;
    let changed: Vec<DateTime<Utc>> = tx
        .query(&after_run_sql(), &[&hi])
        .await
        .map_err(StoreError::db("computing energy and burning time"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    tx.batch_execute("SET LOCAL enable_hashjoin = on; SET LOCAL enable_mergejoin = on")
        .await
        .map_err(StoreError::db("planning the energy step"))?;
    let last = changed
        .iter()
        .max()
        .copied()
        .map_or(hi, |c| c.max(hi - QUARTER));
    let (hour_lo, hour_hi) = cover(lo, last, Rollup::Hour);
    roll_up(tx, Rollup::Quarter, Rollup::Hour, hour_lo, hour_hi).await?;
    let (day_lo, day_hi) = cover(hour_lo, hour_hi - Duration::hours(1), Rollup::Day);
    roll_up(tx, Rollup::Hour, Rollup::Day, day_lo, day_hi).await?;
    // Districts' days, rebuilt whole: a district whose lamps left it loses its row.
    tx.batch_execute(&format!(
        "DELETE FROM light_district_day WHERE bucket >= '{lo}' AND bucket < '{hi}';
         INSERT INTO light_district_day
             SELECT d.tenant_id, coalesce(d.district, ''), r.bucket, sum(r.energy_wh),
                    sum(r.burning_s), count(*), sum(d.rated_power_w * r.burning_s / 3600.0)
             FROM light_day r JOIN devices d ON d.id = r.device_id
             WHERE r.bucket >= '{lo}' AND r.bucket < '{hi}' AND d.kind = 'light'
             GROUP BY 1, 2, 3;",
        lo = day_lo.to_rfc3339(),
        hi = day_hi.to_rfc3339(),
    ))
    .await
    .map_err(StoreError::db("rolling up districts' days"))?;
    Ok(rows)
}

/// A bucket's energy and burning time from its counters and its predecessor's (`near`,
/// `prev_energy`, `prev_burn`): see the module's documentation.
const ENERGY: &str = "CASE WHEN near AND energy_last_wh >= prev_energy
         THEN energy_last_wh - prev_energy
         ELSE greatest(energy_last_wh - energy_first_wh, 0) END";
const BURNING: &str = "CASE WHEN near AND burn_last_h >= prev_burn
         THEN (burn_last_h - prev_burn) * 3600
         ELSE 900.0 * on_samples / samples END";

/// Aggregates that take a value at the first or last time of its group: `(value column,
/// first or last, output name)`. Ordered aggregates would sort every group on its own;
/// instead a window over the group finds the time of its first and last non-null value
/// (`ft_<name>`), and the aggregate takes the value at that time (times are unique within
/// a device). `time` is the time column of the rows being grouped. Returns the window's
/// columns and the aggregates, each named `name`, in the order given.
fn first_last(time: &str, picks: &[(&str, bool, &str)]) -> (String, String) {
    let window = picks
        .iter()
        .map(|(value, first, name)| {
            let f = if *first { "min" } else { "max" };
            format!("{f}({time}) FILTER (WHERE {value} IS NOT NULL) OVER g AS ft_{name}")
        })
        .collect::<Vec<_>>()
        .join(", ");
    let aggregates = picks
        .iter()
        .map(|(value, _, name)| format!("max({value}) FILTER (WHERE {time} = ft_{name}) AS {name}"))
        .collect::<Vec<_>>()
        .join(", ");
    (window, aggregates)
}

/// The 15-minute rows of `[$1, $2)` from the raw readings, with energy and burning time:
/// each device's first bucket in the run takes its predecessor from the rows already
/// rolled up at most LOOKBACK before `$1`, the others from the bucket before them (the
/// aggregate's output is sorted by device and bucket, so that window needs no sort).
fn quarters_sql() -> String {
    let (window, picks) = first_last(
        "ts",
        &[
            ("energy_wh", true, "energy_first_wh"),
            ("energy_wh", false, "energy_last_wh"),
            ("burn_hours", true, "burn_first_h"),
            ("burn_hours", false, "burn_last_h"),
        ],
    );
    format!(
        "WITH q AS (
             SELECT device_id, bucket, count(*) AS samples,
                 count(*) FILTER (WHERE \"on\") AS on_samples, count(fault) AS fault_samples,
                 sum(power_w) AS power_sum, count(power_w) AS power_n, max(power_w) AS power_max,
                 sum(dim::float8) AS dim_sum, count(dim) AS dim_n,
                 min(voltage_v) AS voltage_min, max(voltage_v) AS voltage_max, {picks}
             FROM (
                 SELECT r.*, {window}
                 FROM (SELECT *, date_bin(INTERVAL '15 minutes', ts, {ORIGIN}) AS bucket
                       FROM light_readings WHERE ts >= $1 AND ts < $2) r
                 WINDOW g AS (PARTITION BY device_id, bucket)
             ) x
             GROUP BY device_id, bucket
         ), before AS (
             SELECT DISTINCT ON (device_id) device_id, bucket, energy_last_wh, burn_last_h
             FROM light_15min
             WHERE bucket >= $1::timestamptz - INTERVAL '{LOOKBACK}' AND bucket < $1
             ORDER BY device_id, bucket DESC
         ), w AS (
             SELECT q.*, lag(bucket) OVER d AS prev_bucket,
                    lag(energy_last_wh) OVER d AS prev_energy, lag(burn_last_h) OVER d AS prev_burn
             FROM q WINDOW d AS (PARTITION BY device_id ORDER BY bucket)
         ), v AS (
             SELECT w.device_id, w.bucket, samples, on_samples, fault_samples, power_sum,
                 power_n, power_max, dim_sum, dim_n, voltage_min, voltage_max,
                 w.energy_first_wh, w.energy_last_wh, w.burn_first_h, w.burn_last_h,
                 w.bucket - coalesce(w.prev_bucket, b.bucket) <= INTERVAL '{LOOKBACK}' AS near,
                 coalesce(w.prev_energy, b.energy_last_wh) AS prev_energy,
                 coalesce(w.prev_burn, b.burn_last_h) AS prev_burn
             FROM w LEFT JOIN before b ON b.device_id = w.device_id AND w.prev_bucket IS NULL
         )
         INSERT INTO light_15min (device_id, bucket, {COLUMNS})
         SELECT device_id, bucket, samples, on_samples, fault_samples, power_sum, power_n,
             power_max, dim_sum, dim_n, voltage_min, voltage_max, energy_first_wh,
             energy_last_wh, burn_first_h, burn_last_h, {ENERGY}, {BURNING}
         FROM v
         ON CONFLICT (device_id, bucket) DO UPDATE SET {updates}",
        updates = updates(),
    )
}

/// Energy and burning time of the 15-minute rows in `[$1, $1 + LOOKBACK)` (after a
/// run ending at `$1`), written where they change; returns the buckets written. Each row
/// is found by its key: the planner, misjudging the window's size, would otherwise hash
/// the whole table.
fn after_run_sql() -> String {
    format!(
        "WITH w AS (
             SELECT device_id, bucket, samples, on_samples, energy_first_wh, energy_last_wh,
                    burn_first_h, burn_last_h,
                    bucket - lag(bucket) OVER w <= INTERVAL '{LOOKBACK}' AS near,
                    lag(energy_last_wh) OVER w AS prev_energy,
                    lag(burn_last_h) OVER w AS prev_burn
             FROM light_15min
             WHERE bucket >= $1::timestamptz - INTERVAL '{LOOKBACK}'
               AND bucket < $1::timestamptz + INTERVAL '{LOOKBACK}'
               AND device_id IN (SELECT device_id FROM light_15min
                                 WHERE bucket >= $1
                                   AND bucket < $1::timestamptz + INTERVAL '{LOOKBACK}')
             WINDOW w AS (PARTITION BY device_id ORDER BY bucket)
         ), v AS (
             SELECT device_id, bucket, {ENERGY} AS energy_wh, {BURNING} AS burning_s
             FROM w WHERE bucket >= $1
         )
         UPDATE light_15min r SET energy_wh = v.energy_wh, burning_s = v.burning_s
         FROM v
         WHERE r.device_id = v.device_id AND r.bucket = v.bucket
           AND (r.energy_wh IS DISTINCT FROM v.energy_wh OR r.burning_s IS DISTINCT FROM v.burning_s)
         RETURNING r.bucket"
    )
}

/// The buckets of `to` covering `[first, last]`: `[start of first's, end of last's)`.
fn cover(first: DateTime<Utc>, last: DateTime<Utc>, to: Rollup) -> (DateTime<Utc>, DateTime<Utc>) {
    let step = to.step();
    let lo = first.duration_trunc(step).unwrap_or(first);
    let hi = last.duration_trunc(step).unwrap_or(last) + step;
    (lo, hi)
}

/// Recomputes `to`'s buckets in `[lo, hi)` from `from`'s rows.
async fn roll_up(
    tx: &Transaction<'_>,
    from: Rollup,
    to: Rollup,
    lo: DateTime<Utc>,
    hi: DateTime<Utc>,
) -> Result<(), StoreError> {
    tx.execute(&roll_up_sql(from, to), &[&lo, &hi])
        .await
        .map_err(StoreError::db("rolling up hours and days"))?;
    Ok(())
}

/// `to`'s rows of `[$1, $2)` from `from`'s.
fn roll_up_sql(from: Rollup, to: Rollup) -> String {
    let step = match to {
        Rollup::Quarter => "15 minutes",
        Rollup::Hour => "1 hour",
        Rollup::Day => "1 day",
    };
    let (window, picks) = first_last(
        "bucket",
        &[
            ("energy_first_wh", true, "energy_first_wh"),
            ("energy_last_wh", false, "energy_last_wh"),
            ("burn_first_h", true, "burn_first_h"),
            ("burn_last_h", false, "burn_last_h"),
        ],
    );
    format!(
        "INSERT INTO {to} (device_id, bucket, {COLUMNS})
         SELECT device_id, coarse, sum(samples), sum(on_samples), sum(fault_samples),
             sum(power_sum), sum(power_n), max(power_max), sum(dim_sum), sum(dim_n),
             min(voltage_min), max(voltage_max), {picks}, sum(energy_wh), sum(burning_s)
         FROM (
             SELECT s.*, {window}
             FROM (SELECT *, date_bin(INTERVAL '{step}', bucket, {ORIGIN}) AS coarse
                   FROM {from} WHERE bucket >= $1 AND bucket < $2) s
             WINDOW g AS (PARTITION BY device_id, coarse)
         ) x
         GROUP BY device_id, coarse
         ON CONFLICT (device_id, bucket) DO UPDATE SET {updates}",
        to = to.table(),
        from = from.table(),
        updates = updates(),
    )
}

/// `column = excluded.column` for every rollup column.
fn updates() -> String {
    COLUMNS
        .split(", ")
        .map(|c| format!("{c} = excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn marks_become_runs_of_contiguous_buckets() {
        let b = |m: i64| at("2026-03-01T00:00:00Z") + QUARTER * m as i32;
        assert_eq!(runs(&[], 16), vec![]);
        assert_eq!(
            runs(&[b(0), b(1), b(2), b(5), b(7), b(8)], 16),
            vec![(b(0), b(3)), (b(5), b(6)), (b(7), b(9))]
        );
        assert_eq!(
            runs(&[b(0), b(1), b(2), b(3), b(4)], 2),
            vec![(b(0), b(2)), (b(2), b(4)), (b(4), b(5))]
        );
        // A run ends with its day.
        assert_eq!(
            runs(&[b(94), b(95), b(96), b(97)], 96),
            vec![(b(94), b(96)), (b(96), b(98))]
        );
    }

    #[test]
    fn a_run_holds_about_a_million_rows_within_a_day() {
        assert_eq!(run_length(10_000), 96);
        assert_eq!(run_length(100_000), 10);
        assert_eq!(run_length(5_000_000), 1);
        assert_eq!(run_length(0), 96);
    }

    #[test]
    fn hours_and_days_cover_the_buckets() {
        assert_eq!(
            cover(
                at("2026-03-01T10:15:00Z"),
                at("2026-03-01T11:45:00Z"),
                Rollup::Hour
            ),
            (at("2026-03-01T10:00:00Z"), at("2026-03-01T12:00:00Z"))
        );
        assert_eq!(
            cover(
                at("2026-03-01T23:00:00Z"),
                at("2026-03-02T00:00:00Z"),
                Rollup::Day
            ),
            (at("2026-03-01T00:00:00Z"), at("2026-03-03T00:00:00Z"))
        );
        assert_eq!(
            quarter_of(at("2026-03-01T10:29:59Z")),
            at("2026-03-01T10:15:00Z")
        );
    }
}

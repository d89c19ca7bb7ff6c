//! The rollups on TimescaleDB: continuous aggregates, and the districts' days rebuilt
//! from the marks (see the module above for the whole story).

use chrono::{DateTime, Duration, DurationRound, Utc};
use tokio_postgres::error::SqlState;
use tracing::debug;

use super::{Rollup, DISTRICT_DAYS};
use crate::{Db, StoreError};

/// How long a refresh on TimescaleDB waits for a policy's refresh of the same aggregate.
const POLICY_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// Continuous aggregates. Real-time aggregation (`materialized_only = false`) answers the
/// buckets not yet materialized from the raw rows, so `complete_before` is infinity.
pub(super) fn migration() -> String {
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

impl Db {
    /// TimescaleDB: takes the marks of closed hours, materializes the continuous
    /// aggregates (see [`Db::refresh_rollups`]), then rebuilds the districts' days of those
    /// marks and the day after each, and deletes the marks it took. A batch committing
    /// after the marks were read leaves its marks for the next refresh, whose
    /// materialization holds its readings; a failed rebuild leaves all of them.
    pub(super) async fn refresh_timescale(
        &mut self,
        closed_before: DateTime<Utc>,
    ) -> Result<(), StoreError> {
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
}

//! The rollups on native partitioning: tables kept by the refresher from the marks that
//! every batch leaves (see the module above for the whole story).

use chrono::{DateTime, Duration, DurationRound, Utc};
use tokio_postgres::Transaction;
use tracing::debug;

use super::{RefreshOutcome, Rollup, DISTRICT_DAYS, LOOKBACK, ORIGIN, QUARTER};
use crate::{Db, StoreError};

/// 15-minute rows (a device's bucket) a refresh transaction aims to write: a backlog of
/// days goes a day at a time for 10k reporting lamps, ten buckets at a time for 100k.
const RUN_ROWS: i64 = 1_000_000;
/// 15-minute buckets in a day: a run never spans two days.
const QUARTERS_A_DAY: usize = 96;

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

/// Migration 6 on native partitioning: the rollups as tables, their marks and progress.
pub(super) fn migration() -> String {
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

impl Db {
    /// Native partitioning: see [`Db::refresh_rollups`].
    pub(super) async fn refresh_native(
        &mut self,
        closed_before: DateTime<Utc>,
    ) -> Result<RefreshOutcome, StoreError> {
        let mut outcome = RefreshOutcome::default();
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

    async fn lamp_count(&self) -> Result<u64, StoreError> {
        let lamps: i64 = self
            .client()
            .query_one(
                "SELECT count(*) FROM devices WHERE kind = $1",
                &[&model::Kind::Light.as_str()],
            )
            .await
            .map_err(StoreError::db("counting the lamps"))?
            .get(0);
        Ok(lamps.max(0) as u64)
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
             WHERE r.bucket >= '{lo}' AND r.bucket < '{hi}' AND d.kind = {light}
             GROUP BY 1, 2, 3;",
        light = crate::sql::lit(model::Kind::Light),
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
    use super::super::quarter_of;
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

//! Telemetry over time for the API: one device by its inventory id, its readings in time
//! buckets, the newest state of every device (the map), and lamp energy per district and
//! day. Always limited to the caller's tenants, in the SQL.
//!
//! Lamps' 15-minute, hourly and daily buckets come from the rollups (`crate::rollups`) up
//! to `rollup_state.complete_before` and from the raw readings after it; everything else
//! (other kinds, `raw` and `minute` buckets) is aggregated from the raw readings at query
//! time with `date_bin`, on the `(device_id, ts)` key of each reading table.

use crate::handles::Reads;
use chrono::{DateTime, Duration, DurationRound, Utc};

use crate::listings::{device_row, DeviceRow};
use crate::rollups::{Rollup, LOOKBACK, ORIGIN};
use crate::{StoragePath, StoreError};
use model::{CommandStatus, DeviceFacts, Kind, OutageKind, OutageState, Severity, Timestamp};

/// The width of a history's buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// Every reading on its own.
    Raw,
    Minute,
    Quarter,
    Hour,
    Day,
}

/// The most points a history answers (raw readings past it are cut off).
pub const MAX_POINTS: i64 = 10_000;
/// `auto` picks the finest bucket giving at most this many points.
pub const AUTO_POINTS: i64 = 1_000;
/// `auto` answers raw readings for ranges up to this long.
pub const AUTO_RAW: Duration = Duration::hours(1);

impl Bucket {
    pub const NAMES: [&'static str; 5] = ["raw", "minute", "15min", "hour", "day"];

    pub fn parse(s: &str) -> Option<Bucket> {
        Some(match s {
            "raw" => Bucket::Raw,
            "minute" => Bucket::Minute,
            "15min" => Bucket::Quarter,
            "hour" => Bucket::Hour,
            "day" => Bucket::Day,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Raw => "raw",
            Bucket::Minute => "minute",
            Bucket::Quarter => "15min",
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }
    }

    /// The bucket's width; none for raw readings.
    pub fn step(self) -> Option<Duration> {
        match self {
            Bucket::Raw => None,
            Bucket::Minute => Some(Duration::minutes(1)),
            Bucket::Quarter => Some(Duration::minutes(15)),
            Bucket::Hour => Some(Duration::hours(1)),
            Bucket::Day => Some(Duration::days(1)),
        }
    }

    fn interval(self) -> &'static str {
        match self {
            Bucket::Raw => "0",
            Bucket::Minute => "1 minute",
            Bucket::Quarter => "15 minutes",
            Bucket::Hour => "1 hour",
            Bucket::Day => "1 day",
        }
    }

    fn rollup(self) -> Option<Rollup> {
        match self {
            Bucket::Quarter => Some(Rollup::Quarter),
            Bucket::Hour => Some(Rollup::Hour),
            Bucket::Day => Some(Rollup::Day),
            _ => None,
        }
    }

    /// The bucket `auto` picks for a range: raw readings up to [`AUTO_RAW`], then the
    /// finest bucket that gives at most [`AUTO_POINTS`] points.
    pub fn auto(span: Duration) -> Bucket {
        if span <= AUTO_RAW {
            return Bucket::Raw;
        }
        [Bucket::Minute, Bucket::Quarter, Bucket::Hour]
            .into_iter()
            .find(|b| b.points(span) <= AUTO_POINTS)
            .unwrap_or(Bucket::Day)
    }

    /// How many buckets a range spans (at most; raw readings are not counted).
    pub fn points(self, span: Duration) -> i64 {
        match self.step() {
            None => 0,
            Some(step) => {
                let (s, w) = (span.num_seconds(), step.num_seconds());
                (s + w - 1) / w + 1
            }
        }
    }

    /// The start of the bucket holding `t` (UTC-aligned).
    pub fn floor(self, t: DateTime<Utc>) -> DateTime<Utc> {
        match self.step() {
            None => t,
            Some(step) => t.duration_trunc(step).unwrap_or(t),
        }
    }
}

/// A reading table's aggregates per bucket: (name, SQL over the raw columns).
struct KindSpec {
    table: &'static str,
    aggs: &'static [(&'static str, &'static str)],
    /// Cumulative counters: (name, column, scale). A bucket counts the step from the
    /// previous bucket's last value (when at most the lookback earlier) to its own.
    counters: &'static [(&'static str, &'static str, f64)],
}

const LIGHT: KindSpec = KindSpec {
    table: "light_readings",
    aggs: &[
        ("samples", "count(*)::float8"),
        (
            "on_ratio",
            "(count(*) FILTER (WHERE \"on\"))::float8 / count(*)",
        ),
        ("fault_samples", "count(fault)::float8"),
        ("power_avg_w", "avg(power_w)"),
        ("power_max_w", "max(power_w)"),
        ("dim_avg", "avg(dim)::float8"),
        ("voltage_min_v", "min(voltage_v)"),
        ("voltage_max_v", "max(voltage_v)"),
    ],
    counters: &[
        ("energy_wh", "energy_wh", 1.0),
        ("burning_s", "burn_hours", 3600.0),
    ],
};

const CABINET: KindSpec = KindSpec {
    table: "cabinet_readings",
    aggs: &[
        ("samples", "count(*)::float8"),
        ("supply_ratio", "avg(supply::int)::float8"),
        ("contactor_on_ratio", "avg(contactor_on::int)::float8"),
        (
            "door_open_samples",
            "(count(*) FILTER (WHERE door_open))::float8",
        ),
        ("power_avg_kw", "avg(power_kw)"),
        ("power_max_kw", "max(power_kw)"),
        ("voltage_min_v", "min(voltage_v)"),
        ("voltage_max_v", "max(voltage_v)"),
    ],
    counters: &[("energy_kwh", "energy_kwh", 1.0)],
};

const METER: KindSpec = KindSpec {
    table: "meter_readings",
    aggs: &[
        ("samples", "count(*)::float8"),
        ("flow_avg_m3h", "avg(flow_m3h)"),
        ("flow_min_m3h", "min(flow_m3h)"),
        ("flow_max_m3h", "max(flow_m3h)"),
        ("power_avg_kw", "avg(power_kw)"),
        ("pressure_avg_bar", "avg(pressure_bar)"),
        ("temp_supply_avg_c", "avg(temp_supply_c)"),
        ("temp_return_avg_c", "avg(temp_return_c)"),
        ("battery_min_pct", "min(battery_pct)::float8"),
        ("tamper_samples", "(count(*) FILTER (WHERE tamper))::float8"),
        (
            "reverse_flow_samples",
            "(count(*) FILTER (WHERE reverse_flow))::float8",
        ),
        (
            "total",
            "(array_agg(total ORDER BY ts DESC) FILTER (WHERE total IS NOT NULL))[1]",
        ),
    ],
    counters: &[("consumption", "total", 1.0)],
};

const VEHICLE: KindSpec = KindSpec {
    table: "vehicle_readings",
    aggs: &[
        ("samples", "count(*)::float8"),
        ("speed_avg_mps", "avg(speed_mps)::float8"),
        ("speed_max_mps", "max(speed_mps)::float8"),
        ("occupancy_avg_pct", "avg(occupancy_pct)::float8"),
        (
            "lat",
            "(array_agg(lat ORDER BY ts DESC) FILTER (WHERE lat IS NOT NULL))[1]",
        ),
        (
            "lon",
            "(array_agg(lon ORDER BY ts DESC) FILTER (WHERE lon IS NOT NULL))[1]",
        ),
    ],
    counters: &[("distance_m", "odometer_m", 1.0)],
};

fn spec(kind: &str) -> Option<&'static KindSpec> {
    Some(match Kind::parse(kind)? {
        Kind::Light => &LIGHT,
        Kind::Cabinet => &CABINET,
        Kind::Meter => &METER,
        Kind::Vehicle => &VEHICLE,
    })
}

/// The fields of each point of a device kind's history, in order.
pub fn history_fields(kind: &str) -> Vec<&'static str> {
    spec(kind)
        .map(|s| {
            s.aggs
                .iter()
                .map(|a| a.0)
                .chain(s.counters.iter().map(|c| c.0))
                .collect()
        })
        .unwrap_or_default()
}

/// One bucket of a history: its start and the kind's fields ([`history_fields`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub at: DateTime<Utc>,
    pub values: Vec<Option<f64>>,
}

/// A history asked for.
#[derive(Debug, Clone, Copy)]
pub struct HistoryQuery<'a> {
    pub device_id: i32,
    pub kind: &'a str,
    pub bucket: Bucket,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// A history's points and where they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub points: Vec<Point>,
    /// Raw readings past [`MAX_POINTS`] were left out.
    pub truncated: bool,
    /// Where the rollups end and raw readings take over (lamps' 15min/hour/day only).
    pub rolled_up_until: Option<DateTime<Utc>>,
}

/// The aggregation of raw readings in buckets, with counter steps from the previous bucket:
/// `$1` device, `$2` first bucket, `$3` end, `$4` lookback in seconds, `$5` row limit.
fn raw_sql(s: &KindSpec, bucket: Bucket) -> String {
    raw_select(s, bucket, "$2::timestamptz", "")
}

/// [`raw_sql`] with the first bucket given by the SQL expression `first`.
fn raw_select(s: &KindSpec, bucket: Bucket, first: &str, floor: &str) -> String {
    let bin = match bucket {
        Bucket::Raw => "ts".to_owned(),
        b => format!("date_bin(INTERVAL '{}', ts, {ORIGIN})", b.interval()),
    };
    let mut inner: Vec<String> = s.aggs.iter().map(|(n, e)| format!("{e} AS {n}")).collect();
    let mut lags = Vec::new();
    let mut outer: Vec<String> = s.aggs.iter().map(|(n, _)| n.to_string()).collect();
    for (i, (name, col, scale)) in s.counters.iter().enumerate() {
        inner.push(format!(
            "(array_agg({col} ORDER BY ts) FILTER (WHERE {col} IS NOT NULL))[1] AS c{i}_first"
        ));
        inner.push(format!(
            "(array_agg({col} ORDER BY ts DESC) FILTER (WHERE {col} IS NOT NULL))[1] AS c{i}_last"
        ));
        lags.push(format!("lag(c{i}_last) OVER w AS c{i}_prev"));
        // Lamps without a burn-hours step: the share of readings that said on, times the
        // bucket's length (as the rollups do).
        let fallback = match (*name, bucket.step()) {
            ("burning_s", Some(step)) => format!("{}::float8 * on_ratio", step.num_seconds()),
            _ => format!("greatest(c{i}_last - c{i}_first, 0) * {scale}"),
        };
        outer.push(format!(
            "CASE WHEN near AND c{i}_last >= c{i}_prev THEN (c{i}_last - c{i}_prev) * {scale} \
             ELSE {fallback} END AS {name}"
        ));
    }
    let lags = if lags.is_empty() {
        String::new()
    } else {
        format!(", {}", lags.join(", "))
    };
    format!(
        "WITH b AS (
             SELECT {bin} AS bucket, {inner}
             FROM {table}
             WHERE device_id = $1 AND ts >= {first} - make_interval(secs => $4) AND ts < $3{floor}
             GROUP BY 1
         ), w AS (
             SELECT *, bucket - lag(bucket) OVER w <= make_interval(secs => $4) AS near{lags}
             FROM b WINDOW w AS (ORDER BY bucket)
         )
         SELECT bucket, {outer} FROM w WHERE bucket >= {first} ORDER BY bucket LIMIT $5",
        inner = inner.join(", "),
        outer = outer.join(", "),
        table = s.table,
    )
}

/// Lamps' rollup rows in `[$2, until)`, with the same fields as [`LIGHT`]: `$1` device,
/// `$2` first bucket, on TimescaleDB `$4` lookback in seconds.
///
/// On native partitioning the rollups hold each bucket's energy and burning time. A
/// TimescaleDB continuous aggregate cannot look at the previous bucket, so there they
/// are taken here, as for raw readings: the step from the previous bucket's last counter
/// value (at most the lookback earlier), else the aggregate's own.
fn rollup_select(r: Rollup, path: StoragePath, until: &str) -> String {
    let fields = "samples::float8, on_samples::float8 / samples, fault_samples::float8,
                power_sum / nullif(power_n, 0), power_max, dim_sum / nullif(dim_n, 0),
                voltage_min, voltage_max";
    match path {
        StoragePath::Partitioned => format!(
            "SELECT bucket, {fields}, energy_wh, burning_s
             FROM {} WHERE device_id = $1 AND bucket >= $2 AND bucket < {until}
             ORDER BY bucket",
            r.table()
        ),
        StoragePath::TimescaleDb => format!(
            "WITH w AS (
                 SELECT *, bucket - lag(bucket) OVER w <= make_interval(secs => $4) AS near,
                        lag(energy_last_wh) OVER w AS prev_energy,
                        lag(burn_last_h) OVER w AS prev_burn
                 FROM {source} WHERE device_id = $1
                   AND bucket >= $2::timestamptz - make_interval(secs => $4) AND bucket < {until}
                 WINDOW w AS (ORDER BY bucket)
             )
             SELECT bucket, {fields},
                    CASE WHEN near AND energy_last_wh >= prev_energy
                         THEN energy_last_wh - prev_energy ELSE energy_wh END,
                    CASE WHEN near AND burn_last_h >= prev_burn
                         THEN (burn_last_h - prev_burn) * 3600 ELSE burning_s END
             FROM w WHERE bucket >= $2 ORDER BY bucket",
            // The day aggregate is materialized only (migration 10); a device's days are
            // summed from its hours in real time, so they hold its newest readings.
            source = match r {
                Rollup::Day => format!(
                    "({}) d",
                    crate::rollups::timescale::coarser_select(
                        "1 day",
                        "(SELECT * FROM light_hour WHERE device_id = $1
                            AND bucket >= $2::timestamptz - make_interval(secs => $4)
                            AND bucket < $3) h"
                    )
                ),
                _ => r.table().to_owned(),
            },
        ),
    }
}

/// A lamp's history in rollup buckets, in one statement so that the rollups and the raw
/// readings are read as of one moment: the rollup rows up to where the rollups hold every
/// closed bucket (`rollup_state`, down to the bucket, within `[$2, $3]`), the raw readings
/// after it. Parameters as [`raw_sql`], and `$6`: a time at or before the boundary less
/// the lookback, before which no raw reading is read. Each row starts with a part number:
/// one row (part 0) holds only that boundary, in the bucket column, and
/// `rollup_state.complete_before` in Unix seconds (infinite when it is) in the next; the
/// rollup rows are part 1 and the raw buckets part 2. The rows are put in order by the
/// caller ([`in_order`]) rather than sorted by PostgreSQL, which costs more per row.
fn light_sql(r: Rollup, bucket: Bucket, path: StoragePath) -> String {
    let nulls = vec!["NULL::float8"; history_fields(Kind::Light.as_str()).len() - 1].join(", ");
    format!(
        "WITH s AS MATERIALIZED (
             SELECT complete_before FROM rollup_state WHERE name = 'light'
         ), c AS MATERIALIZED (
             SELECT coalesce((
                 SELECT CASE WHEN complete_before = '-infinity' THEN $2::timestamptz
                             WHEN complete_before >= $3 THEN $3::timestamptz
                             ELSE least(greatest(date_bin(INTERVAL '{width}', complete_before,
                                                          {ORIGIN}), $2), $3) END
                 FROM s), $2::timestamptz) AS until,
                 (SELECT extract(epoch FROM complete_before)::float8 FROM s) AS complete_before
         ), rolled AS ({rolled}), raw AS ({raw})
         SELECT 0 AS part, until, complete_before, {nulls} FROM c
         UNION ALL SELECT 1, * FROM rolled
         UNION ALL SELECT 2, * FROM raw",
        width = bucket.interval(),
        rolled = rollup_select(r, path, "(SELECT until FROM c)"),
        // The boundary is known only once the statement runs, too late to leave the raw
        // table's older partitions out when the executor starts: with a year of daily
        // partitions, opening them all costs more than the rest of the statement. `$6`, a
        // bound at or before the boundary, leaves them out; `least` with `now()` keeps the
        // planner from folding it, so that one generic plan serves every call.
        raw = raw_select(
            &LIGHT,
            bucket,
            "(SELECT until FROM c)",
            " AND ts >= least($6, now())"
        ),
    )
}

/// The rows of [`light_sql`]: its part 0 row, and the points of the others by part then
/// time. They arrive in that order as PostgreSQL reads them; sorting what is already in
/// order takes one pass.
fn in_order(rows: &[tokio_postgres::Row]) -> (Option<&tokio_postgres::Row>, Vec<Point>) {
    let boundary = rows.iter().find(|r| r.get::<_, i32>(0) == 0);
    let mut parts: Vec<(i32, Point)> = rows
        .iter()
        .filter_map(|r| {
            let part: i32 = r.get(0);
            (part != 0).then(|| (part, point(r, 1)))
        })
        .collect();
    parts.sort_by_key(|(part, p)| (*part, p.at));
    (boundary, parts.into_iter().map(|(_, p)| p).collect())
}

/// A point from a row of a bucket start then the fields, from column `first` on.
fn point(r: &tokio_postgres::Row, first: usize) -> Point {
    Point {
        at: r.get(first),
        values: (first + 1..r.len()).map(|i| r.get(i)).collect(),
    }
}

/// Points from rows of a bucket start then the fields, from column `first` on.
fn points(rows: &[tokio_postgres::Row], first: usize) -> Vec<Point> {
    rows.iter().map(|r| point(r, first)).collect()
}

/// A device with its newest state and how many outages are open on it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceDetail {
    pub device: DeviceRow,
    pub open_outages: i64,
}

/// The newest state of many devices, column by column (the map).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateColumns {
    pub ext_id: Vec<String>,
    pub tenant_id: Vec<i32>,
    pub kind: Vec<String>,
    pub lon: Vec<f64>,
    pub lat: Vec<f64>,
    /// What each device's effective state follows from.
    pub facts: Vec<DeviceFacts>,
    pub on: Vec<Option<bool>>,
    pub dim: Vec<Option<f64>>,
    /// Unix seconds.
    pub last_seen: Vec<Option<i64>>,
    /// From the inventory.
    pub district: Vec<Option<String>>,
}

/// Lamp energy of one district on one day.
#[derive(Debug, Clone, PartialEq)]
pub struct EnergyDay {
    pub tenant: String,
    pub district: Option<String>,
    pub day: DateTime<Utc>,
    pub energy_kwh: f64,
    pub burning_hours: f64,
    /// Lamps with readings that day.
    pub lamps_reporting: i64,
    /// What the lamps would have used at their rated power for the hours they burned.
    pub rated_kwh: Option<f64>,
}

static DEVICE_DETAIL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT d.id, t.slug, d.ext_id, d.kind, d.district, d.cabinet, d.rated_power_w,
        d.medium, d.route, d.lon, d.lat,
        l.telemetry_ts, l.telemetry, l.status_ts, l.online, l.last_seen,
        (SELECT count(*) FROM outages o
         WHERE o.device_id = d.id AND o.state IN {})
 FROM devices d
 JOIN tenants t ON t.id = d.tenant_id
 LEFT JOIN device_latest l ON l.device_id = d.id
 WHERE d.tenant_id = ANY($1) AND d.ext_id = $2
 ORDER BY t.slug",
        *crate::sql::OUTAGE_ACTIVE
    )
});

impl Reads {
    /// The devices of `tenants` with inventory id `ext_id` (one per tenant at most).
    pub async fn devices_by_ext_id(
        &self,
        tenants: &[i32],
        ext_id: &str,
    ) -> Result<Vec<DeviceDetail>, StoreError> {
        let rows = self
            .query_cached(&DEVICE_DETAIL, &[&tenants, &ext_id])
            .await
            .map_err(StoreError::db("reading a device"))?;
        Ok(rows
            .iter()
            .map(|r| DeviceDetail {
                device: device_row(r),
                open_outages: r.get(16),
            })
            .collect())
    }

    /// A device's readings in buckets. Buckets start in `[bucket.floor(from), to)`.
    pub async fn history(&self, q: &HistoryQuery<'_>) -> Result<History, StoreError> {
        let Some(spec) = spec(q.kind) else {
            return Ok(History {
                points: Vec::new(),
                truncated: false,
                rolled_up_until: None,
            });
        };
        let from = q.bucket.floor(q.from);
        let lookback = lookback_seconds(q.bucket);
        let limit = MAX_POINTS + 1;
        let (mut points, rolled_up_until) = match (q.bucket.rollup(), Kind::parse(q.kind)) {
            (Some(rollup), Some(Kind::Light)) => {
                // The boundary is at or after `from` and, down to the bucket, at or after
                // what this connection last saw of `complete_before`, which only grows.
                let step = q.bucket.step().unwrap_or_default();
                let seen = self.rolled_up_before().map_or(from, |c| c.min(q.to) - step);
                let floor = from.max(seen) - Duration::seconds(lookback.ceil() as i64);
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
                    [&q.device_id, &from, &q.to, &lookback, &limit, &floor];
                let rows = self
                    .query_cached(&light_sql(rollup, q.bucket, self.path()), &params)
                    .await
                    .map_err(StoreError::db("reading a lamp's history"))?;
                let (boundary, points) = in_order(&rows);
                let until = boundary.map(|r| r.get(1));
                if let Some(Some(seconds)) = boundary.map(|r| r.get::<_, Option<f64>>(2)) {
                    self.saw_rolled_up_before(seconds);
                }
                (points, until)
            }
            _ => {
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
                    [&q.device_id, &from, &q.to, &lookback, &limit];
                let rows = self
                    .query_cached(&raw_sql(spec, q.bucket), &params)
                    .await
                    .map_err(StoreError::db("reading a device's history"))?;
                (self::points(&rows, 0), None)
            }
        };
        // Rollup rows are bounded by the range; only raw readings can run past the limit.
        let truncated = points.len() as i64 > MAX_POINTS;
        points.truncate(MAX_POINTS as usize);
        Ok(History {
            points,
            truncated,
            rolled_up_until,
        })
    }

    /// The newest state of every device of `tenants` (of one kind if given), by id, with
    /// what its effective state follows from at `now` ([`model::DeviceState::of`]): its
    /// worst active outage, its cabinet's supply loss, a running maintenance window, an
    /// operator's override in force.
    pub async fn state_columns(
        &self,
        tenants: &[i32],
        kind: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<StateColumns, StoreError> {
        let active: Vec<&str> = OutageState::ALL
            .into_iter()
            .filter(|s| s.active())
            .map(OutageState::as_str)
            .collect();
        let rows = self
            .client()
            .query(
                "SELECT d.ext_id, d.tenant_id, d.kind, d.lon, d.lat,
                        l.lamp_on, l.dim_pct, extract(epoch FROM l.last_seen)::int8,
                        -- Heard from after an offline status: the device is back, as the
                        -- rules take it, whatever its status said last. (Heard: when its
                        -- message arrived at the latest, whatever its clock said.)
                        CASE WHEN l.online = false AND l.last_seen > l.status_ts THEN true
                             ELSE l.online END,
                        coalesce(l.has_fault, false), o.severities,
                        EXISTS (SELECT 1 FROM outages co JOIN devices c ON c.id = co.device_id
                                WHERE d.kind = $6 AND c.tenant_id = d.tenant_id
                                  AND c.ext_id = d.cabinet AND co.kind = $4
                                  AND co.state = ANY($3)),
                        EXISTS (SELECT 1 FROM maintenance_windows w
                                WHERE w.tenant_id = d.tenant_id
                                  AND w.starts_at <= $5 AND w.ends_at > $5
                                  AND CASE w.scope
                                      WHEN 'device' THEN d.ext_id = w.target
                                      WHEN 'cabinet' THEN (d.kind = $8 AND d.ext_id = w.target)
                                                          OR d.cabinet = w.target
                                      WHEN 'district' THEN d.district = w.target
                                      ELSE true END),
                        d.kind = $6 AND (
                          EXISTS (SELECT 1 FROM lighting_schedules s
                                  WHERE s.override AND s.removed_at IS NULL
                                    AND s.tenant_id = d.tenant_id
                                    AND (s.expires_at IS NULL OR s.expires_at > $5)
                                    AND (s.scope = 'tenant'
                                         OR (s.scope = 'district' AND s.target = d.district)
                                         OR (s.scope = 'cabinet' AND s.target = d.cabinet)
                                         OR (s.scope = 'devices' AND d.ext_id = ANY(s.devices))))
                          -- The newest light setting or profile the lamp accepted: a
                          -- setting still in force (a later one replaces an earlier one,
                          -- a profile ends it, as on the controller and in the rules).
                          OR coalesce((SELECT c.action = 'set_light' AND c.expires_at > $5
                                       FROM commands c
                                       WHERE c.device_id = d.id AND c.status = $7
                                         AND c.action IN ('set_light', 'set_schedule')
                                         AND c.issued_at <= $5
                                       ORDER BY c.issued_at DESC, c.id DESC LIMIT 1), false)),
                        d.district
                 FROM devices d
                 LEFT JOIN device_latest l ON l.device_id = d.id
                 LEFT JOIN (SELECT device_id, array_agg(DISTINCT severity) AS severities
                            FROM outages WHERE state = ANY($3)
                            GROUP BY device_id) o ON o.device_id = d.id
                 WHERE d.tenant_id = ANY($1) AND ($2::text IS NULL OR d.kind = $2)
                 ORDER BY d.id",
                &[
                    &tenants,
                    &kind,
                    &active,
                    &OutageKind::CabinetSupplyLoss.as_str(),
                    &now,
                    &Kind::Light.as_str(),
                    &CommandStatus::Acked.as_str(),
                    &Kind::Cabinet.as_str(),
                ],
            )
            .await
            .map_err(StoreError::db("reading the devices' state"))?;
        let n = rows.len();
        let mut c = StateColumns {
            ext_id: Vec::with_capacity(n),
            tenant_id: Vec::with_capacity(n),
            kind: Vec::with_capacity(n),
            lon: Vec::with_capacity(n),
            lat: Vec::with_capacity(n),
            facts: Vec::with_capacity(n),
            on: Vec::with_capacity(n),
            dim: Vec::with_capacity(n),
            last_seen: Vec::with_capacity(n),
            district: Vec::with_capacity(n),
        };
        for r in &rows {
            let kind: String = r.get(2);
            let on: Option<bool> = r.get(5);
            let dim: Option<f64> = r.get(6);
            let last_seen: Option<i64> = r.get(7);
            let severities: Option<Vec<String>> = r.get(10);
            c.facts.push(DeviceFacts {
                lamp: kind == Kind::Light.as_str(),
                last_seen: last_seen.and_then(|s| Timestamp::from_unix_ms(s.saturating_mul(1000))),
                online: r.get(8),
                fault: r.get(9),
                worst_outage: severities
                    .iter()
                    .flatten()
                    .filter_map(|s| Severity::parse(s))
                    .min(),
                supply_lost: r.get(11),
                maintenance: r.get(12),
                overridden: r.get::<_, Option<bool>>(13).unwrap_or(false),
                on,
                dim_pct: dim,
            });
            c.ext_id.push(r.get(0));
            c.tenant_id.push(r.get(1));
            c.kind.push(kind);
            c.lon.push(r.get(3));
            c.lat.push(r.get(4));
            c.on.push(on);
            c.dim.push(dim);
            c.last_seen.push(last_seen);
            c.district.push(r.get(14));
        }
        Ok(c)
    }

    /// Lamp energy and burning hours per tenant, district and UTC day, from the districts'
    /// days (`light_district_day`, kept by the refresher on both storage paths); days that
    /// start in `[from, to)`.
    pub async fn energy_report(
        &self,
        tenants: &[i32],
        district: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<EnergyDay>, StoreError> {
        let rows = self
            .query_cached(
                "SELECT t.slug, nullif(x.district, ''), x.bucket,
                        coalesce(x.energy_wh, 0) / 1000.0, coalesce(x.burning_s, 0) / 3600.0,
                        x.lamps::int8, x.rated_wh / 1000.0
                 FROM light_district_day x
                 JOIN tenants t ON t.id = x.tenant_id
                 WHERE x.tenant_id = ANY($1)
                   AND ($2::text IS NULL OR x.district = $2)
                   AND x.bucket >= $3 AND x.bucket < $4
                 ORDER BY 1, 2, 3",
                &[&tenants, &district, &from, &to],
            )
            .await
            .map_err(StoreError::db("reporting energy"))?;
        Ok(rows
            .iter()
            .map(|r| EnergyDay {
                tenant: r.get(0),
                district: r.get(1),
                day: r.get(2),
                energy_kwh: r.get(3),
                burning_hours: r.get(4),
                lamps_reporting: r.get(5),
                rated_kwh: r.get(6),
            })
            .collect())
    }
}

/// How far back a bucket looks for the previous counter value: the rollups' lookback, or
/// one bucket when buckets are longer.
fn lookback_seconds(bucket: Bucket) -> f64 {
    let base = parse_hours(LOOKBACK) * 3600.0;
    bucket
        .step()
        .map_or(base, |s| base.max(s.num_seconds() as f64))
}

fn parse_hours(interval: &str) -> f64 {
    interval
        .split_whitespace()
        .next()
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or(2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_the_finest_bucket_within_a_thousand_points() {
        for (span, expected) in [
            (Duration::minutes(5), Bucket::Raw),
            (Duration::hours(1), Bucket::Raw),
            (Duration::hours(2), Bucket::Minute),
            (Duration::minutes(998), Bucket::Minute),
            (Duration::hours(17), Bucket::Quarter),
            (Duration::days(10), Bucket::Quarter),
            (Duration::days(11), Bucket::Hour),
            (Duration::days(30), Bucket::Hour),
            (Duration::days(41), Bucket::Hour),
            (Duration::days(42), Bucket::Day),
            (Duration::days(400), Bucket::Day),
        ] {
            let got = Bucket::auto(span);
            assert_eq!(got, expected, "{span}");
            if got != Bucket::Raw {
                assert!(got.points(span) <= AUTO_POINTS, "{span}");
            }
        }
    }

    #[test]
    fn buckets_by_name_and_their_points() {
        for name in Bucket::NAMES {
            assert_eq!(Bucket::parse(name).unwrap().as_str(), name);
        }
        assert_eq!(Bucket::parse("week"), None);
        assert_eq!(Bucket::Hour.points(Duration::hours(24)), 25);
        assert_eq!(Bucket::Day.points(Duration::days(30)), 31);
        assert_eq!(lookback_seconds(Bucket::Raw), 7200.0);
        assert_eq!(lookback_seconds(Bucket::Day), 86400.0);
    }

    #[test]
    fn every_kind_names_its_fields() {
        assert_eq!(history_fields(Kind::Light.as_str()).len(), 10);
        assert_eq!(history_fields("light")[8], "energy_wh");
        assert_eq!(*history_fields("meter").last().unwrap(), "consumption");
        assert!(history_fields("teapot").is_empty());
    }
}

//! Lists for the API: outages, work orders and devices, scoped to a user's tenants, a page
//! at a time.
//!
//! Pages are keyset pages: each starts after the key of the last row of the page before
//! (newest first on `(opened_at, id)` for outages and work orders, `id` for devices), so a
//! row inserted while someone pages neither repeats nor shifts a row out of sight, and a
//! deep page costs what the first one does (no OFFSET). The tenant filter is in the SQL,
//! never applied to rows already read.

use crate::handles::Reads;
use chrono::{DateTime, Utc};
use model::{OutageState, WorkOrderState};
use tokio_postgres::Row;

use crate::outages::{outage_row, OUTAGE_COLUMNS};
use crate::work_orders::{work_order, COLUMNS as WORK_ORDER_COLUMNS};
use crate::{OutageRow, StoreError, WorkOrderRow};

/// A step in an outage's life, as kept in `outage_events`.
#[derive(Debug, Clone, PartialEq)]
pub struct OutageEvent {
    pub at: DateTime<Utc>,
    pub actor: String,
    /// opened, acknowledged, shelved, resolved, comment, assigned, ...
    pub transition: String,
    pub detail: Option<String>,
}

/// One page of a list: up to the limit asked for, and whether more follow.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub more: bool,
}

impl<T> Page<T> {
    /// Splits `limit + 1` rows read into a page of `limit` and whether more follow.
    pub(crate) fn from_rows(mut items: Vec<T>, limit: i64) -> Page<T> {
        let limit = usize::try_from(limit).unwrap_or(0);
        let more = items.len() > limit;
        items.truncate(limit);
        Page { items, more }
    }
}

/// Which outages to list. `None` filters take everything.
#[derive(Debug, Clone, Default)]
pub struct OutageQuery<'a> {
    /// The tenants the caller may see; nothing else is listed.
    pub tenants: &'a [i32],
    pub state: Option<OutageState>,
    pub kind: Option<&'a str>,
    /// A device's inventory id.
    pub device: Option<&'a str>,
    /// Opened at or after.
    pub from: Option<DateTime<Utc>>,
    /// Opened before.
    pub to: Option<DateTime<Utc>>,
    /// The order of the list.
    pub order: OutageOrder,
    /// The key of the last row of the previous page: its severity's rank (in
    /// [`OutageOrder::Severity`]), opening time and id.
    pub after: Option<(i16, DateTime<Utc>, i64)>,
    pub limit: i64,
}

/// How outages are listed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutageOrder {
    /// Most severe first (critical, major, minor), then newest first: what needs a person.
    #[default]
    Severity,
    /// Newest first.
    Newest,
}

/// Which work orders to list.
#[derive(Debug, Clone, Default)]
pub struct WorkOrderQuery<'a> {
    pub tenants: &'a [i32],
    pub state: Option<WorkOrderState>,
    pub team: Option<&'a str>,
    pub kind: Option<&'a str>,
    /// The district of the order's device.
    pub district: Option<&'a str>,
    /// The order's device, by its inventory id.
    pub device: Option<&'a str>,
    pub after: Option<(DateTime<Utc>, i64)>,
    pub limit: i64,
}

/// Which devices to list.
#[derive(Debug, Clone, Default)]
pub struct DeviceQuery<'a> {
    pub tenants: &'a [i32],
    pub kind: Option<&'a str>,
    pub district: Option<&'a str>,
    pub cabinet: Option<&'a str>,
    /// min lon, min lat, max lon, max lat (inclusive).
    pub bbox: Option<[f64; 4]>,
    /// The id of the last device of the previous page.
    pub after: Option<i32>,
    pub limit: i64,
}

/// A device with its newest state.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRow {
    pub id: i32,
    pub tenant: String,
    pub ext_id: String,
    pub kind: String,
    pub district: Option<String>,
    pub cabinet: Option<String>,
    pub rated_power_w: Option<f64>,
    pub medium: Option<String>,
    pub route: Option<String>,
    pub lon: f64,
    pub lat: f64,
    /// Nothing heard from it yet when `None`.
    pub latest: Option<DeviceLatest>,
}

/// The newest state of a device (`device_latest`).
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceLatest {
    pub telemetry_ts: Option<DateTime<Utc>>,
    pub telemetry: Option<serde_json::Value>,
    pub status_ts: Option<DateTime<Utc>>,
    pub online: Option<bool>,
    pub last_seen: DateTime<Utc>,
}

/// A device and its latest state from the columns `d.id, t.slug, d.ext_id, d.kind,
/// d.district, d.cabinet, d.rated_power_w, d.medium, d.route, d.lon, d.lat,
/// l.telemetry_ts, l.telemetry, l.status_ts, l.online, l.last_seen`, in this order.
pub(crate) fn device_row(r: &Row) -> DeviceRow {
    let last_seen: Option<DateTime<Utc>> = r.get(15);
    DeviceRow {
        id: r.get(0),
        tenant: r.get(1),
        ext_id: r.get(2),
        kind: r.get(3),
        district: r.get(4),
        cabinet: r.get(5),
        rated_power_w: r.get(6),
        medium: r.get(7),
        route: r.get(8),
        lon: r.get(9),
        lat: r.get(10),
        latest: last_seen.map(|last_seen| DeviceLatest {
            telemetry_ts: r.get(11),
            telemetry: r.get(12),
            status_ts: r.get(13),
            online: r.get(14),
            last_seen,
        }),
    }
}

/// Rows to read for a page: one more than asked, to know whether more follow.
fn read_limit(limit: i64) -> i64 {
    limit.max(0).saturating_add(1)
}

impl Reads {
    /// A page of outages, most severe first or newest first (by opening time, then id).
    pub async fn outage_page(&self, q: &OutageQuery<'_>) -> Result<Page<OutageRow>, StoreError> {
        let (rank, after_at, after_id) = match q.after {
            Some((rank, at, id)) => (Some(rank), Some(at), Some(id)),
            None => (None, None, None),
        };
        let (after, order) = match q.order {
            OutageOrder::Newest => (
                "(o.opened_at, o.id) < ($7, $8::int8)".to_owned(),
                "o.opened_at DESC, o.id DESC".to_owned(),
            ),
            OutageOrder::Severity => {
                let severity = &*crate::sql::SEVERITY_RANK;
                (
                format!("({severity} > $10::int2 OR ({severity} = $10::int2 AND (o.opened_at, o.id) < ($7, $8::int8)))"),
                format!("{severity}, o.opened_at DESC, o.id DESC"),
            )
            }
        };
        let limit = read_limit(q.limit);
        let rank = rank.unwrap_or(0);
        let state = q.state.map(OutageState::as_str);
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![
            &q.tenants, &state, &q.kind, &q.device, &q.from, &q.to, &after_at, &after_id, &limit,
        ];
        if q.order == OutageOrder::Severity {
            params.push(&rank);
        }
        let rows = self
            .client()
            .query(
                &format!(
                    "SELECT {OUTAGE_COLUMNS} FROM outages o JOIN devices d ON d.id = o.device_id
                     WHERE d.tenant_id = ANY($1)
                       AND ($2::text IS NULL OR o.state = $2)
                       AND ($3::text IS NULL OR o.kind = $3)
                       AND ($4::text IS NULL OR d.ext_id = $4)
                       AND ($5::timestamptz IS NULL OR o.opened_at >= $5)
                       AND ($6::timestamptz IS NULL OR o.opened_at < $6)
                       AND ($7::timestamptz IS NULL OR {after})
                     ORDER BY {order}
                     LIMIT $9"
                ),
                &params,
            )
            .await
            .map_err(StoreError::db("listing outages"))?;
        Ok(Page::from_rows(
            rows.iter().map(outage_row).collect::<Result<_, _>>()?,
            q.limit,
        ))
    }

    /// One outage of `tenants` with its events, oldest first; `None` when it does not exist
    /// or belongs to another tenant.
    pub async fn outage_in(
        &self,
        tenants: &[i32],
        id: i64,
    ) -> Result<Option<(OutageRow, Vec<OutageEvent>)>, StoreError> {
        let Some(row) = self
            .client()
            .query_opt(
                &format!(
                    "SELECT {OUTAGE_COLUMNS} FROM outages o JOIN devices d ON d.id = o.device_id
                     WHERE o.id = $1 AND d.tenant_id = ANY($2)"
                ),
                &[&id, &tenants],
            )
            .await
            .map_err(StoreError::db("reading an outage"))?
        else {
            return Ok(None);
        };
        let events = self
            .client()
            .query(
                "SELECT at, actor, transition, detail FROM outage_events
                 WHERE outage_id = $1 ORDER BY at, id",
                &[&id],
            )
            .await
            .map_err(StoreError::db("listing outage events"))?
            .iter()
            .map(|r| OutageEvent {
                at: r.get(0),
                actor: r.get(1),
                transition: r.get(2),
                detail: r.get(3),
            })
            .collect();
        Ok(Some((outage_row(&row)?, events)))
    }

    /// One work order of `tenants` (and of `team`, when set); `None` when it does not
    /// exist or is out of reach.
    pub async fn work_order_in(
        &self,
        tenants: &[i32],
        team: Option<&str>,
        id: i64,
    ) -> Result<Option<WorkOrderRow>, StoreError> {
        let row = self
            .client()
            .query_opt(
                &format!(
                    "SELECT {WORK_ORDER_COLUMNS} FROM work_orders w JOIN devices d ON d.id = w.device_id
                     WHERE w.id = $1 AND d.tenant_id = ANY($2) AND ($3::text IS NULL OR w.team = $3)"
                ),
                &[&id, &tenants, &team],
            )
            .await
            .map_err(StoreError::db("reading a work order"))?;
        row.as_ref().map(work_order).transpose()
    }

    /// A page of work orders, newest first (by the opening of their outage, then id).
    pub async fn work_order_page(
        &self,
        q: &WorkOrderQuery<'_>,
    ) -> Result<Page<WorkOrderRow>, StoreError> {
        let (after_at, after_id) = q.after.unzip();
        let rows = self
            .client()
            .query(
                &format!(
                    "SELECT {WORK_ORDER_COLUMNS} FROM work_orders w JOIN devices d ON d.id = w.device_id
                     WHERE d.tenant_id = ANY($1)
                       AND ($2::text IS NULL OR w.state = $2)
                       AND ($3::text IS NULL OR w.team = $3)
                       AND ($4::text IS NULL OR w.kind = $4)
                       AND ($5::timestamptz IS NULL OR (w.opened_at, w.id) < ($5, $6::int8))
                       AND ($8::text IS NULL OR d.district = $8)
                       AND ($9::text IS NULL OR d.ext_id = $9)
                     ORDER BY w.opened_at DESC, w.id DESC
                     LIMIT $7"
                ),
                &[
                    &q.tenants,
                    &q.state.map(WorkOrderState::as_str),
                    &q.team,
                    &q.kind,
                    &after_at,
                    &after_id,
                    &read_limit(q.limit),
                    &q.district,
                    &q.device,
                ],
            )
            .await
            .map_err(StoreError::db("listing work orders"))?;
        Ok(Page::from_rows(
            rows.iter().map(work_order).collect::<Result<_, _>>()?,
            q.limit,
        ))
    }

    /// A page of devices with their newest state, by id.
    pub async fn device_page(&self, q: &DeviceQuery<'_>) -> Result<Page<DeviceRow>, StoreError> {
        let bbox = q.bbox.map(|b| b.to_vec());
        let rows = self
            .client()
            .query(
                "SELECT d.id, t.slug, d.ext_id, d.kind, d.district, d.cabinet, d.rated_power_w,
                        d.medium, d.route, d.lon, d.lat,
                        l.telemetry_ts, l.telemetry, l.status_ts, l.online, l.last_seen
                 FROM devices d
                 JOIN tenants t ON t.id = d.tenant_id
                 LEFT JOIN device_latest l ON l.device_id = d.id
                 WHERE d.tenant_id = ANY($1)
                   AND ($2::text IS NULL OR d.kind = $2)
                   AND ($3::text IS NULL OR d.district = $3)
                   AND ($4::text IS NULL OR d.cabinet = $4)
                   AND ($5::float8[] IS NULL OR (d.lon BETWEEN $5[1] AND $5[3] AND d.lat BETWEEN $5[2] AND $5[4]))
                   AND ($6::int4 IS NULL OR d.id > $6)
                 ORDER BY d.id
                 LIMIT $7",
                &[
                    &q.tenants,
                    &q.kind,
                    &q.district,
                    &q.cabinet,
                    &bbox,
                    &q.after,
                    &read_limit(q.limit),
                ],
            )
            .await
            .map_err(StoreError::db("listing devices"))?;
        Ok(Page::from_rows(
            rows.iter().map(device_row).collect(),
            q.limit,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_knows_whether_more_follow() {
        assert_eq!(
            Page::from_rows(vec![1, 2, 3], 2),
            Page {
                items: vec![1, 2],
                more: true
            }
        );
        assert_eq!(
            Page::from_rows(vec![1, 2], 2),
            Page {
                items: vec![1, 2],
                more: false
            }
        );
        assert_eq!(read_limit(100), 101);
        assert_eq!(read_limit(i64::MAX), i64::MAX);
    }
}

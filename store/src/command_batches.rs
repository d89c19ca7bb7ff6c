//! Command batches: what a person (or a schedule change) asks of a group of devices. The
//! target is resolved to devices of one tenant inside the transaction that records the
//! batch, its per-device commands (`pending`) and its audit entry, so the count a person
//! confirmed is the count that was reached, or nothing is recorded.

use std::collections::HashMap;

use crate::handles::{Actions, Reads};
use chrono::{DateTime, SecondsFormat, Utc};
use model::{CommandStatus, Kind, Timestamp};
use serde_json::json;
use tokio_postgres::{GenericClient, Row, Transaction};

use crate::audit::{append, AuditEntry};
use crate::listings::Page;
use crate::sql::lit;
use crate::StoreError;

/// The most devices one batch may reach.
pub const MAX_BATCH_DEVICES: usize = 100_000;

/// What a command is aimed at, within one tenant.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandTarget {
    /// One device, by inventory id.
    Device(String),
    /// Several devices, by inventory id (each must exist).
    Devices(Vec<String>),
    /// The lamps a cabinet feeds (and, for a reboot, the cabinet itself).
    Cabinet(String),
    /// A district's devices.
    District(String),
    /// Devices inside a ring of [lon, lat] (WGS 84), closed or not.
    Polygon(Vec<[f64; 2]>),
}

impl CommandTarget {
    /// The target as asked, for the batch and the audit log.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            CommandTarget::Device(d) => json!({ "device": d }),
            CommandTarget::Devices(ds) => json!({ "devices": ds }),
            CommandTarget::Cabinet(c) => json!({ "cabinet": c }),
            CommandTarget::District(d) => json!({ "district": d }),
            CommandTarget::Polygon(ring) => json!({ "polygon": ring }),
        }
    }
}

/// Whether the point is inside the ring (even-odd rule; a point on an edge may fall
/// either way).
pub fn in_polygon(lon: f64, lat: f64, ring: &[[f64; 2]]) -> bool {
    let mut inside = false;
    let n = ring.len();
    if n < 3 {
        return false;
    }
    let mut j = n - 1;
    for i in 0..n {
        let ([xi, yi], [xj, yj]) = (ring[i], ring[j]);
        if (yi > lat) != (yj > lat) && lon < (xj - xi) * (lat - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// A device a command reaches.
#[derive(Debug, Clone, PartialEq)]
pub struct ReachedDevice {
    pub id: i32,
    pub ext_id: String,
    pub kind: String,
}

/// Lamps a `resume_schedule` batch counts on reaching each second beyond its first
/// minute (the dispatcher sends 200 a second by default).
pub const RESUME_LAMPS_PER_S: i64 = 100;

/// A batch to record.
#[derive(Debug, Clone)]
pub struct NewBatch<'a> {
    pub tenant_id: i32,
    pub target: &'a CommandTarget,
    pub action: &'a str,
    /// `action` and its fields (`on`, `dim`, `expires`, ...); `id` and `ts` are added per
    /// device when sent.
    pub body: serde_json::Value,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub issued_by: &'a str,
    /// The device count the person confirmed; required when more than one is reached.
    pub confirm: Option<i64>,
    /// A `set_light` that returns lamps to their schedule: each lamp is told what its
    /// profile in force asks for at `issued_at` (the body's `on` and `dim` are its own),
    /// and follows its schedule again once the command expires: `expires_at`, a second
    /// later per [`RESUME_LAMPS_PER_S`] lamps reached.
    pub resume_schedule: bool,
}

/// A batch as stored, with its commands counted by status.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRow {
    pub id: i64,
    pub tenant: String,
    pub issued_by: String,
    pub issued_at: DateTime<Utc>,
    pub target: serde_json::Value,
    pub action: String,
    pub body: serde_json::Value,
    /// None for schedule pushes: held until delivered.
    pub expires_at: Option<DateTime<Utc>>,
    pub devices: i32,
    pub origin: String,
    /// (status, count), for every status that has commands.
    pub statuses: Vec<(String, i64)>,
}

/// One device's command of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchCommandRow {
    pub id: String,
    pub device_id: i32,
    pub ext_id: String,
    pub kind: String,
    pub status: String,
    pub sent_at: Option<DateTime<Utc>>,
    pub acked_at: Option<DateTime<Utc>>,
    pub attempts: i32,
    pub detail: Option<String>,
    /// What this device was sent (`action` and its fields; `id` and `ts` are added when
    /// sent).
    pub body: serde_json::Value,
}

/// The columns [`command_row`] reads, from `commands c JOIN devices d`.
const COMMAND_COLUMNS: &str = "c.id, c.device_id, d.ext_id, d.kind, c.status, c.sent_at,
    c.acked_at, c.attempts, c.detail, c.body";

fn command_row(r: &Row) -> BatchCommandRow {
    BatchCommandRow {
        id: r.get(0),
        device_id: r.get(1),
        ext_id: r.get(2),
        kind: r.get(3),
        status: r.get(4),
        sent_at: r.get(5),
        acked_at: r.get(6),
        attempts: r.get(7),
        detail: r.get(8),
        body: r.get(9),
    }
}

const BATCH_COLUMNS: &str = "b.id, t.slug, b.issued_by, b.issued_at, b.target, b.action, b.body,
    b.expires_at, b.devices, b.origin,
    (SELECT coalesce(jsonb_object_agg(status, n), '{}') FROM
        (SELECT status, count(*) AS n FROM commands WHERE batch_id = b.id GROUP BY status) s)";

fn batch_row(r: &Row) -> BatchRow {
    let counts: serde_json::Value = r.get(10);
    let mut statuses: Vec<(String, i64)> = counts
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_i64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    statuses.sort();
    BatchRow {
        id: r.get(0),
        tenant: r.get(1),
        issued_by: r.get(2),
        issued_at: r.get(3),
        target: r.get(4),
        action: r.get(5),
        body: r.get(6),
        expires_at: r.get(7),
        devices: r.get(8),
        origin: r.get(9),
        statuses,
    }
}

/// The devices of `tenant` that `target` reaches with `action`: lamps for `set_light`
/// and `set_schedule`, every device for a reboot. A device, cabinet or district that is
/// not the tenant's is unknown (the same answer as one that does not exist).
pub(crate) async fn reach<C: GenericClient>(
    client: &C,
    tenant: i32,
    target: &CommandTarget,
    action: &str,
) -> Result<Vec<ReachedDevice>, StoreError> {
    let lights_only = action != "reboot";
    let select = format!(
        "SELECT d.id, d.ext_id, d.kind, d.lon, d.lat FROM devices d
         WHERE d.tenant_id = $1 AND (NOT $2 OR d.kind = {})",
        lit(Kind::Light)
    );
    let read = |r: &Row| {
        (
            ReachedDevice {
                id: r.get(0),
                ext_id: r.get(1),
                kind: r.get(2),
            },
            r.get::<_, f64>(3),
            r.get::<_, f64>(4),
        )
    };
    let err = StoreError::db("finding the devices a command reaches");
    let unknown = |scope: &str, name: &str| StoreError::NoCommandTarget {
        scope: scope.to_owned(),
        name: name.to_owned(),
    };
    let devices = match target {
        CommandTarget::Device(_) | CommandTarget::Devices(_) => {
            let wanted: Vec<String> = match target {
                CommandTarget::Device(ext) => vec![ext.clone()],
                CommandTarget::Devices(list) => list.clone(),
                _ => Vec::new(),
            };
            let rows = client
                .query(
                    "SELECT d.id, d.ext_id, d.kind FROM devices d
                     WHERE d.tenant_id = $1 AND d.ext_id = ANY($2) ORDER BY d.id",
                    &[&tenant, &wanted],
                )
                .await
                .map_err(err)?;
            let found: Vec<ReachedDevice> = rows
                .iter()
                .map(|r| ReachedDevice {
                    id: r.get(0),
                    ext_id: r.get(1),
                    kind: r.get(2),
                })
                .collect();
            if let Some(missing) = wanted
                .iter()
                .find(|w| !found.iter().any(|f| &f.ext_id == *w))
            {
                return Err(unknown("device", missing));
            }
            if lights_only {
                if let Some(other) = found.iter().find(|f| f.kind != Kind::Light.as_str()) {
                    return Err(StoreError::NotALamp {
                        device: other.ext_id.clone(),
                        kind: other.kind.clone(),
                        action: action.to_owned(),
                    });
                }
            }
            found
        }
        CommandTarget::Cabinet(cabinet) => {
            let exists = client
                .query_opt(
                    "SELECT 1 FROM devices WHERE tenant_id = $1 AND kind = $3 AND ext_id = $2",
                    &[&tenant, cabinet, &Kind::Cabinet.as_str()],
                )
                .await
                .map_err(StoreError::db("finding a cabinet"))?;
            if exists.is_none() {
                return Err(unknown("cabinet", cabinet));
            }
            client
                .query(
                    &format!(
                        "{select} AND (d.cabinet = $3 OR (d.kind = {cabinet} AND d.ext_id = $3)) ORDER BY d.id",
                        cabinet = lit(Kind::Cabinet)
                    ),
                    &[&tenant, &lights_only, cabinet],
                )
                .await
                .map_err(StoreError::db("finding a cabinet's lamps"))?
                .iter()
                .map(|r| read(r).0)
                .collect()
        }
        CommandTarget::District(district) => {
            let rows = client
                .query(
                    &format!("{select} AND d.district = $3 ORDER BY d.id"),
                    &[&tenant, &lights_only, district],
                )
                .await
                .map_err(StoreError::db("finding a district's devices"))?;
            if rows.is_empty() {
                let any = client
                    .query_opt(
                        "SELECT 1 FROM devices WHERE tenant_id = $1 AND district = $2 LIMIT 1",
                        &[&tenant, district],
                    )
                    .await
                    .map_err(StoreError::db("finding a district"))?;
                if any.is_none() {
                    return Err(unknown("district", district));
                }
            }
            rows.iter().map(|r| read(r).0).collect()
        }
        CommandTarget::Polygon(ring) => {
            let (mut min_lon, mut min_lat, mut max_lon, mut max_lat) =
                (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
            for [lon, lat] in ring {
                min_lon = min_lon.min(*lon);
                max_lon = max_lon.max(*lon);
                min_lat = min_lat.min(*lat);
                max_lat = max_lat.max(*lat);
            }
            let rows = client
                .query(
                    &format!(
                        "{select} AND d.lon BETWEEN $3 AND $4 AND d.lat BETWEEN $5 AND $6 ORDER BY d.id"
                    ),
                    &[&tenant, &lights_only, &min_lon, &max_lon, &min_lat, &max_lat],
                )
                .await
                .map_err(StoreError::db("finding the devices in a polygon"))?;
            rows.iter()
                .map(read)
                .filter(|(_, lon, lat)| in_polygon(*lon, *lat, ring))
                .map(|(d, _, _)| d)
                .collect()
        }
    };
    Ok(devices)
}

impl Reads {
    /// The devices `target` reaches in `tenant` with `action` (a preview: nothing is
    /// recorded).
    pub async fn command_reach(
        &self,
        tenant: i32,
        target: &CommandTarget,
        action: &str,
    ) -> Result<Vec<ReachedDevice>, StoreError> {
        reach(self.client(), tenant, target, action).await
    }

    /// A batch of the given tenants, with its counts per status.
    pub async fn command_batch(&self, tenants: &[i32], id: i64) -> Result<BatchRow, StoreError> {
        let row = self
            .client()
            .query_opt(
                &format!(
                    "SELECT {BATCH_COLUMNS} FROM command_batches b JOIN tenants t ON t.id = b.tenant_id
                     WHERE b.id = $1 AND b.tenant_id = ANY($2)"
                ),
                &[&id, &tenants],
            )
            .await
            .map_err(StoreError::db("reading a command batch"))?;
        row.as_ref().map(batch_row).ok_or(StoreError::NoBatch(id))
    }

    /// A page of batches of the given tenants, newest first (issue time, then id); with
    /// `device` (an inventory id), those that reached it.
    pub async fn command_batch_page(
        &self,
        tenants: &[i32],
        device: Option<&str>,
        after: Option<(DateTime<Utc>, i64)>,
        limit: i64,
    ) -> Result<Page<BatchRow>, StoreError> {
        let (after_at, after_id) = after.unzip();
        let rows = self
            .client()
            .query(
                &format!(
                    "SELECT {BATCH_COLUMNS} FROM command_batches b JOIN tenants t ON t.id = b.tenant_id
                     WHERE b.tenant_id = ANY($1)
                       AND ($2::timestamptz IS NULL OR (b.issued_at, b.id) < ($2, $3::int8))
                       AND ($5::text IS NULL OR b.id IN (
                           SELECT c.batch_id FROM commands c JOIN devices d ON d.id = c.device_id
                           WHERE d.ext_id = $5 AND d.tenant_id = ANY($1)))
                     ORDER BY b.issued_at DESC, b.id DESC LIMIT $4"
                ),
                &[&tenants, &after_at, &after_id, &(limit.max(0) + 1), &device],
            )
            .await
            .map_err(StoreError::db("listing command batches"))?;
        Ok(Page::from_rows(rows.iter().map(batch_row).collect(), limit))
    }

    /// A page of a batch's commands, by device id, optionally of one status.
    pub async fn batch_command_page(
        &self,
        tenants: &[i32],
        batch: i64,
        status: Option<CommandStatus>,
        after: Option<i32>,
        limit: i64,
    ) -> Result<Page<BatchCommandRow>, StoreError> {
        self.command_batch(tenants, batch).await?;
        let rows = self
            .client()
            .query(
                &format!(
                    "SELECT {COMMAND_COLUMNS}
                     FROM commands c JOIN devices d ON d.id = c.device_id
                     WHERE c.batch_id = $1 AND ($2::text IS NULL OR c.status = $2)
                       AND ($3::int4 IS NULL OR c.device_id > $3)
                     ORDER BY c.device_id LIMIT $4"
                ),
                &[
                    &batch,
                    &status.map(CommandStatus::as_str),
                    &after,
                    &(limit.max(0) + 1),
                ],
            )
            .await
            .map_err(StoreError::db("listing a batch's commands"))?;
        let items = rows.iter().map(command_row).collect();
        Ok(Page::from_rows(items, limit))
    }

    /// The commands the given batches sent to the devices with inventory id `ext_id`
    /// among `tenants`, with their batch.
    pub async fn device_commands_of(
        &self,
        tenants: &[i32],
        batches: &[i64],
        ext_id: &str,
    ) -> Result<Vec<(i64, BatchCommandRow)>, StoreError> {
        let rows = self
            .client()
            .query(
                &format!(
                    "SELECT {COMMAND_COLUMNS}, c.batch_id
                     FROM commands c JOIN devices d ON d.id = c.device_id
                     WHERE c.batch_id = ANY($1) AND d.ext_id = $2 AND d.tenant_id = ANY($3)"
                ),
                &[&batches, &ext_id, &tenants],
            )
            .await
            .map_err(StoreError::db("reading a device's commands"))?;
        Ok(rows.iter().map(|r| (r.get(10), command_row(r))).collect())
    }
}

impl Actions {
    /// Records a batch and one `pending` command per device reached, with its audit
    /// entry (`command.issue`), in one transaction. Refused, with nothing recorded, when
    /// it reaches no device, more than [`MAX_BATCH_DEVICES`], or more than one device
    /// without `confirm` equal to the count.
    pub async fn issue_commands(&mut self, batch: &NewBatch<'_>) -> Result<BatchRow, StoreError> {
        let tx = self
            .client_mut()
            .transaction()
            .await
            .map_err(StoreError::db("starting a command batch"))?;
        // A refusal names the action as asked.
        let asked = if batch.resume_schedule {
            "resume_schedule"
        } else {
            batch.action
        };
        let devices = reach(&tx, batch.tenant_id, batch.target, asked).await?;
        if devices.is_empty() {
            return Err(StoreError::NoDevicesReached);
        }
        if devices.len() > MAX_BATCH_DEVICES {
            return Err(StoreError::BatchTooLarge {
                reached: devices.len(),
                max: MAX_BATCH_DEVICES,
            });
        }
        let reached = devices.len() as i64;
        if reached > 1 && batch.confirm != Some(reached) {
            return Err(StoreError::ConfirmMismatch {
                reached,
                confirm: batch.confirm,
            });
        }
        let ids: Vec<i32> = devices.iter().map(|d| d.id).collect();
        // Lamps sent back to their schedule hold what it asks for a minute, and a second
        // longer per 100 lamps, so that a large group is reached before it expires.
        let expires_at = if batch.resume_schedule {
            batch.expires_at + chrono::Duration::seconds(reached / RESUME_LAMPS_PER_S)
        } else {
            batch.expires_at
        };
        let mut body = batch.body.clone();
        if batch.resume_schedule {
            body["expires"] = json!(expires_at.timestamp_millis());
        }
        let bodies = if batch.resume_schedule {
            scheduled_bodies(&tx, batch, &ids, &body["expires"]).await?
        } else {
            Vec::new()
        };
        let id = insert_batch(
            &tx,
            batch.tenant_id,
            &batch.target.to_json(),
            batch.action,
            &body,
            batch.issued_at,
            Some(expires_at),
            batch.issued_by,
            batch.confirm.filter(|_| reached > 1),
            "api",
            &ids,
            &bodies,
        )
        .await?;
        let row = read_batch(&tx, id).await?;
        append(
            &tx,
            &AuditEntry {
                actor: batch.issued_by.to_owned(),
                action: "command.issue".into(),
                target: format!("command_batch/{id}"),
                detail: json!({
                    "tenant": row.tenant,
                    "target": row.target,
                    "action": batch.action,
                    "body": body,
                    "devices": reached,
                    "expires": expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                }),
            },
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a command batch"))?;
        Ok(row)
    }
}

/// Each lamp's `set_light` body that tells it what its profile in force asks for at the
/// batch's time (by the astronomical clock at its place), in the order of `ids`.
async fn scheduled_bodies(
    tx: &Transaction<'_>,
    batch: &NewBatch<'_>,
    ids: &[i32],
    expires: &serde_json::Value,
) -> Result<Vec<serde_json::Value>, StoreError> {
    let profiles = crate::profiles::profiles(tx, batch.tenant_id).await?;
    let places: HashMap<i32, (f64, f64)> = tx
        .query(
            "SELECT id, lon, lat FROM devices WHERE id = ANY($1)",
            &[&ids],
        )
        .await
        .map_err(StoreError::db("reading the lamps' places"))?
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    let at = Timestamp::from_datetime(batch.issued_at);
    Ok(ids
        .iter()
        .map(|id| {
            let (lon, lat) = places.get(id).copied().unwrap_or_default();
            let profile = profiles.get(id).and_then(Option::as_ref);
            let e = model::lighting::scheduled(profile, lon, lat, at);
            json!({
                "action": "set_light",
                "on": e.on,
                "dim": e.dim.round() as i64,
                "expires": expires,
            })
        })
        .collect())
}

/// Inserts a batch and its per-device `pending` commands, each with `body` or, when
/// `bodies` are given, its own (in the order of `devices`); the batch's id.
#[allow(clippy::too_many_arguments)] // one per column of the batch
pub(crate) async fn insert_batch(
    tx: &Transaction<'_>,
    tenant: i32,
    target: &serde_json::Value,
    action: &str,
    body: &serde_json::Value,
    issued_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    issued_by: &str,
    confirmed: Option<i64>,
    origin: &str,
    devices: &[i32],
    bodies: &[serde_json::Value],
) -> Result<i64, StoreError> {
    let count = i32::try_from(devices.len()).unwrap_or(i32::MAX);
    let confirmed = confirmed.and_then(|c| i32::try_from(c).ok());
    let row = tx
        .query_one(
            "INSERT INTO command_batches
                 (tenant_id, issued_by, issued_at, target, action, body, expires_at, devices, confirmed, origin)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
            &[
                &tenant, &issued_by, &issued_at, target, &action, body, &expires_at, &count,
                &confirmed, &origin,
            ],
        )
        .await
        .map_err(StoreError::db("recording a command batch"))?;
    let id: i64 = row.get(0);
    tx.execute(
        "INSERT INTO commands (id, batch_id, device_id, action, body, issued_at, expires_at, issued_by)
         SELECT gen_random_uuid()::text, $1, x.d, $2, coalesce(x.b, $3), $4, $5, $6
         FROM unnest($7::int4[], $8::jsonb[]) AS x(d, b) WHERE x.d IS NOT NULL",
        &[&id, &action, body, &issued_at, &expires_at, &issued_by, &devices, &bodies],
    )
    .await
    .map_err(StoreError::db("recording a batch's commands"))?;
    Ok(id)
}

async fn read_batch(tx: &Transaction<'_>, id: i64) -> Result<BatchRow, StoreError> {
    let row = tx
        .query_one(
            &format!(
                "SELECT {BATCH_COLUMNS} FROM command_batches b JOIN tenants t ON t.id = b.tenant_id
                 WHERE b.id = $1"
            ),
            &[&id],
        )
        .await
        .map_err(StoreError::db("reading a command batch"))?;
    Ok(batch_row(&row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_in_a_ring() {
        let square = [[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0], [0.0, 0.0]];
        assert!(in_polygon(1.0, 1.0, &square));
        assert!(!in_polygon(3.0, 1.0, &square));
        assert!(!in_polygon(1.0, -0.5, &square));
        // A concave ring: an L without its upper right quarter.
        let l = [
            [0.0, 0.0],
            [2.0, 0.0],
            [2.0, 1.0],
            [1.0, 1.0],
            [1.0, 2.0],
            [0.0, 2.0],
        ];
        assert!(in_polygon(0.5, 1.5, &l));
        assert!(!in_polygon(1.5, 1.5, &l));
        assert!(
            !in_polygon(0.5, 0.5, &[[0.0, 0.0], [1.0, 1.0]]),
            "not a ring"
        );
    }
}

//! Maintenance windows: planned work on a device, a cabinet (and the lamps it feeds), a
//! district or a whole tenant. During a window, outages of the devices it covers are
//! expected; the rules read the windows with their devices expanded.

use crate::handles::{Admin, Detection};
use chrono::{DateTime, Utc};

use serde_json::json;

use crate::{AuditEntry, Db, StoreError};

/// What a maintenance window can cover.
pub const MAINTENANCE_SCOPES: [&str; 4] = ["device", "cabinet", "district", "tenant"];

/// A maintenance window with every device it covers.
#[derive(Debug, Clone, PartialEq)]
pub struct MaintenanceWindow {
    pub id: i64,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub reason: String,
    /// Sorted.
    pub device_ids: Vec<i32>,
}

impl Admin {
    /// Plans a maintenance window; returns its id. `target` is, by `scope`, a device's or a
    /// cabinet's inventory id, a district, or the tenant's own slug; it must exist now,
    /// so that a typo does not silently cover nothing. Audited in the same transaction
    /// (`maintenance.add`, by `created_by`).
    #[allow(clippy::too_many_arguments)] // one per column; a struct would only rename them
    pub async fn add_maintenance_window(
        &mut self,
        tenant: &str,
        scope: &str,
        target: &str,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        reason: &str,
        created_by: &str,
    ) -> Result<i64, StoreError> {
        if !MAINTENANCE_SCOPES.contains(&scope) {
            return Err(StoreError::UnknownScope(scope.to_owned()));
        }
        if ends_at <= starts_at {
            return Err(StoreError::BadWindow { starts_at, ends_at });
        }
        let tenant_id: i32 = self
            .client()
            .query_opt("SELECT id FROM tenants WHERE slug = $1", &[&tenant])
            .await
            .map_err(StoreError::db("looking up the tenant"))?
            .ok_or_else(|| StoreError::UnknownTenant(tenant.to_owned()))?
            .get(0);
        self.check_target(tenant, tenant_id, scope, target).await?;
        let tx = self
            .client_mut()
            .transaction()
            .await
            .map_err(StoreError::db("starting a maintenance window"))?;
        let id: i64 = tx
            .query_one(
                "INSERT INTO maintenance_windows (scope, tenant_id, target, starts_at, ends_at, reason, created_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                &[&scope, &tenant_id, &target, &starts_at, &ends_at, &reason, &created_by],
            )
            .await
            .map_err(StoreError::db("recording a maintenance window"))?
            .get(0);
        let detail = json!({"scope": scope, "target": target, "from": starts_at, "until": ends_at, "reason": reason});
        crate::audit::append(
            &tx,
            &AuditEntry {
                actor: created_by.to_owned(),
                action: "maintenance.add".to_owned(),
                target: format!("maintenance/{id}"),
                detail,
            },
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a maintenance window"))?;
        Ok(id)
    }
}

/// SQL: whether device `d` is one maintenance window `w` covers. A cabinet covers itself
/// and its lamps; a district, the tenant's devices in it; a tenant, all its devices.
pub(crate) fn window_covers() -> String {
    format!(
        "d.tenant_id = w.tenant_id AND CASE w.scope
             WHEN 'device' THEN d.ext_id = w.target
             WHEN 'cabinet' THEN (d.kind = {cabinet} AND d.ext_id = w.target) OR d.cabinet = w.target
             WHEN 'district' THEN d.district = w.target
             ELSE true END",
        cabinet = crate::sql::lit(model::Kind::Cabinet)
    )
}

impl Detection {
    /// Maintenance windows ending after `ending_after` (running or to come), earliest
    /// start first, with the devices each covers ([`window_covers`]).
    pub async fn maintenance_windows(
        &self,
        ending_after: DateTime<Utc>,
    ) -> Result<Vec<MaintenanceWindow>, StoreError> {
        let rows = self
            .client()
            .query(
                &format!(
                    "SELECT w.id, w.starts_at, w.ends_at, w.reason,
                        coalesce(array_agg(d.id ORDER BY d.id) FILTER (WHERE d.id IS NOT NULL), '{{}}')
                     FROM maintenance_windows w LEFT JOIN devices d ON {covers}
                     WHERE w.ends_at > $1
                     GROUP BY w.id
                     ORDER BY w.starts_at, w.id",
                    covers = window_covers()
                ),
                &[&ending_after],
            )
            .await
            .map_err(StoreError::db("listing maintenance windows"))?;
        Ok(rows
            .iter()
            .map(|r| MaintenanceWindow {
                id: r.get(0),
                starts_at: r.get(1),
                ends_at: r.get(2),
                reason: r.get(3),
                device_ids: r.get(4),
            })
            .collect())
    }
}

impl Db {
    /// Refuses a target the tenant does not have.
    async fn check_target(
        &self,
        tenant: &str,
        tenant_id: i32,
        scope: &str,
        target: &str,
    ) -> Result<(), StoreError> {
        let cabinet = format!(
            "kind = {} AND ext_id = $2",
            crate::sql::lit(model::Kind::Cabinet)
        );
        let condition = match scope {
            "device" => "ext_id = $2",
            "cabinet" => cabinet.as_str(),
            "district" => "district = $2",
            _ if target == tenant => return Ok(()),
            _ => {
                return Err(StoreError::TenantTarget {
                    tenant: tenant.to_owned(),
                    target: target.to_owned(),
                })
            }
        };
        let found: bool = self
            .client()
            .query_one(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM devices WHERE tenant_id = $1 AND {condition})"
                ),
                &[&tenant_id, &target],
            )
            .await
            .map_err(StoreError::db("looking up the maintenance target"))?
            .get(0);
        if found {
            Ok(())
        } else {
            Err(StoreError::UnknownTarget {
                tenant: tenant.to_owned(),
                scope: scope.to_owned(),
                target: target.to_owned(),
            })
        }
    }
}

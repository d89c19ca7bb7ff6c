//! The device registry: inventory import (devices and bus routes) and the lookup table
//! ingestion resolves topics with.

use crate::handles::{Admin, Ingestion};
use chrono::{DateTime, Utc};
use model::{Device, Kind, RouteLine};

use tokio_postgres::Transaction;

use crate::StoreError;

/// A registered device as ingestion needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredDevice {
    pub id: i32,
    pub tenant: String,
    pub ext_id: String,
    pub kind: Kind,
}

/// What an import changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportOutcome {
    pub tenants_created: u64,
    pub devices_written: u64,
}

/// A reference an inventory makes to something the tenant does not have: a lamp's
/// cabinet or a vehicle's route. The rules cannot use it (a cabinet's supply loss does not
/// explain the lamp; the bus has no line to be off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dangling {
    pub tenant: String,
    /// The lamp or vehicle.
    pub device: String,
    /// `cabinet` or `route`.
    pub property: &'static str,
    /// What it names.
    pub names: String,
}

impl std::fmt::Display for Dangling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.property == "cabinet" {
            "no cabinet of that id"
        } else {
            "no route of that id"
        };
        write!(
            f,
            "`{}/{}`: {} `{}`, but tenant `{}` has {what}",
            self.tenant, self.device, self.property, self.names, self.tenant
        )
    }
}

/// What an inventory import did, or would have done.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InventoryImport {
    pub outcome: ImportOutcome,
    pub routes_written: u64,
    /// The file's lamps and vehicles whose cabinet or route does not exist after it.
    pub dangling: Vec<Dangling>,
    /// Rolled back (`strict` and something to say): nothing was written.
    pub refused: bool,
}

impl Admin {
    /// Imports a parsed inventory, devices and routes, in one transaction, and names the
    /// file's lamps and vehicles whose cabinet or route the tenant does not have (in this
    /// file or already). `strict`: when the file has warnings or dangling references,
    /// nothing is written.
    pub async fn import_inventory(
        &mut self,
        inventory: &model::Inventory,
        strict: bool,
    ) -> Result<InventoryImport, StoreError> {
        let tx = self
            .client_mut()
            .transaction()
            .await
            .map_err(StoreError::db("starting the import"))?;
        let outcome = write_devices(&tx, &inventory.devices).await?;
        let routes_written = write_routes(&tx, &inventory.routes).await?;
        let dangling = dangling(&tx, &inventory.devices).await?;
        let refused = strict && (!inventory.warnings.is_empty() || !dangling.is_empty());
        if refused {
            tx.rollback()
                .await
                .map_err(StoreError::db("rolling the import back"))?;
        } else {
            tx.commit()
                .await
                .map_err(StoreError::db("committing the import"))?;
        }
        Ok(InventoryImport {
            outcome,
            routes_written,
            dangling,
            refused,
        })
    }

    /// Inserts or updates the devices of an inventory in one transaction; tenants are
    /// created as they appear. Devices not in the file are left as they are.
    pub async fn import_devices(
        &mut self,
        devices: &[Device],
    ) -> Result<ImportOutcome, StoreError> {
        let tx = self
            .client_mut()
            .transaction()
            .await
            .map_err(StoreError::db("starting the import"))?;
        let outcome = write_devices(&tx, devices).await?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing the import"))?;
        Ok(outcome)
    }

    /// Inserts or updates bus routes by tenant and id in one transaction; tenants are
    /// created as they appear. Returns how many routes were written.
    pub async fn import_routes(&mut self, routes: &[RouteLine]) -> Result<u64, StoreError> {
        let tx = self
            .client_mut()
            .transaction()
            .await
            .map_err(StoreError::db("starting the route import"))?;
        let written = write_routes(&tx, routes).await?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing the route import"))?;
        Ok(written)
    }
}

impl Ingestion {
    /// Devices changed after `since` (all of them when `None`), with the newest change time.
    pub async fn devices_changed_since(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<(Vec<RegisteredDevice>, Option<DateTime<Utc>>), StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT d.id, t.slug, d.ext_id, d.kind, d.updated_at FROM devices d
                 JOIN tenants t ON t.id = d.tenant_id
                 WHERE $1::timestamptz IS NULL OR d.updated_at > $1",
                &[&since],
            )
            .await
            .map_err(StoreError::db("loading the device registry"))?;
        let mut newest = since;
        let devices = rows
            .iter()
            .filter_map(|r| {
                let at: DateTime<Utc> = r.get(4);
                newest = newest.max(Some(at));
                Some(RegisteredDevice {
                    id: r.get(0),
                    tenant: r.get(1),
                    ext_id: r.get(2),
                    kind: Kind::parse(r.get(3))?,
                })
            })
            .collect();
        Ok((devices, newest))
    }

    /// When the newest message of any of `tenant`'s devices was heard, if ever.
    pub async fn tenant_last_heard(
        &self,
        tenant: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.client()
            .query_one(
                "SELECT max(l.last_seen) FROM device_latest l
                 JOIN devices d ON d.id = l.device_id JOIN tenants t ON t.id = d.tenant_id
                 WHERE t.slug = $1",
                &[&tenant],
            )
            .await
            .map(|r| r.get(0))
            .map_err(StoreError::db("reading when a tenant was last heard"))
    }

    /// The newest telemetry of each of `tenant`'s devices that has any, keyed by its
    /// telemetry topic (`city/{tenant}/{kind}/{id}/telemetry`).
    pub async fn tenant_latest_telemetry(
        &self,
        tenant: &str,
    ) -> Result<std::collections::HashMap<String, serde_json::Value>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT d.kind, d.ext_id, l.telemetry FROM device_latest l
                 JOIN devices d ON d.id = l.device_id JOIN tenants t ON t.id = d.tenant_id
                 WHERE t.slug = $1 AND l.telemetry IS NOT NULL",
                &[&tenant],
            )
            .await
            .map_err(StoreError::db("reading a tenant's newest telemetry"))?;
        Ok(rows
            .iter()
            .map(|r| {
                let (kind, id): (String, String) = (r.get(0), r.get(1));
                (format!("city/{tenant}/{kind}/{id}/telemetry"), r.get(2))
            })
            .collect())
    }
}

async fn create_tenants(tx: &Transaction<'_>, tenants: &[&str]) -> Result<u64, StoreError> {
    let mut tenants = tenants.to_vec();
    tenants.sort_unstable();
    tenants.dedup();
    tx.execute(
        "INSERT INTO tenants (slug, name) SELECT t, t FROM unnest($1::text[]) t
         ON CONFLICT (slug) DO NOTHING",
        &[&tenants],
    )
    .await
    .map_err(StoreError::db("creating tenants"))
}

async fn write_devices(
    tx: &Transaction<'_>,
    devices: &[Device],
) -> Result<ImportOutcome, StoreError> {
    let tenants: Vec<&str> = devices.iter().map(|d| d.tenant.as_str()).collect();
    let tenants_created = create_tenants(tx, &tenants).await?;
    let mut devices_written = 0;
    for chunk in devices.chunks(5_000) {
        let col = |f: fn(&Device) -> Option<String>| chunk.iter().map(f).collect::<Vec<_>>();
        let tenant: Vec<&str> = chunk.iter().map(|d| d.tenant.as_str()).collect();
        let ext: Vec<&str> = chunk.iter().map(|d| d.id.as_str()).collect();
        let kind: Vec<&str> = chunk.iter().map(|d| d.kind.as_str()).collect();
        let rated: Vec<Option<f64>> = chunk.iter().map(|d| d.rated_power_w).collect();
        let lon: Vec<f64> = chunk.iter().map(|d| d.lon).collect();
        let lat: Vec<f64> = chunk.iter().map(|d| d.lat).collect();
        let props: Vec<serde_json::Value> = chunk
            .iter()
            .map(|d| serde_json::Value::Object(d.props.clone()))
            .collect();
        devices_written += tx
            .execute(
                "INSERT INTO devices (tenant_id, ext_id, kind, district, cabinet, rated_power_w, medium, route, lon, lat, props)
                 SELECT t.id, d.ext, d.kind, d.district, d.cabinet, d.rated, d.medium, d.route, d.lon, d.lat, d.props
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::float8[], $7::text[], $8::text[], $9::float8[], $10::float8[], $11::jsonb[])
                      AS d(tenant, ext, kind, district, cabinet, rated, medium, route, lon, lat, props)
                 JOIN tenants t ON t.slug = d.tenant
                 ON CONFLICT (tenant_id, ext_id) DO UPDATE SET
                   kind = excluded.kind, district = excluded.district, cabinet = excluded.cabinet,
                   rated_power_w = excluded.rated_power_w, medium = excluded.medium, route = excluded.route,
                   lon = excluded.lon, lat = excluded.lat, props = excluded.props, updated_at = now()",
                &[
                    &tenant,
                    &ext,
                    &kind,
                    &col(|d| d.district.clone()),
                    &col(|d| d.cabinet.clone()),
                    &rated,
                    &col(|d| d.medium.clone()),
                    &col(|d| d.route.clone()),
                    &lon,
                    &lat,
                    &props,
                ],
            )
            .await
            .map_err(StoreError::db("writing devices"))?;
    }
    Ok(ImportOutcome {
        tenants_created,
        devices_written,
    })
}

async fn write_routes(tx: &Transaction<'_>, routes: &[RouteLine]) -> Result<u64, StoreError> {
    let tenants: Vec<&str> = routes.iter().map(|r| r.tenant.as_str()).collect();
    create_tenants(tx, &tenants).await?;
    let tenant: Vec<&str> = routes.iter().map(|r| r.tenant.as_str()).collect();
    let ext: Vec<&str> = routes.iter().map(|r| r.id.as_str()).collect();
    let line: Vec<serde_json::Value> = routes
        .iter()
        .map(|r| serde_json::json!(r.line.iter().map(|p| [p.0, p.1]).collect::<Vec<_>>()))
        .collect();
    let props: Vec<serde_json::Value> = routes
        .iter()
        .map(|r| serde_json::Value::Object(r.props.clone()))
        .collect();
    let written = tx
        .execute(
            "INSERT INTO routes (tenant_id, ext_id, line, props)
             SELECT t.id, r.ext, r.line, r.props
             FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::jsonb[]) AS r(tenant, ext, line, props)
             JOIN tenants t ON t.slug = r.tenant
             ON CONFLICT (tenant_id, ext_id) DO UPDATE SET line = excluded.line, props = excluded.props",
            &[&tenant, &ext, &line, &props],
        )
        .await
        .map_err(StoreError::db("writing routes"))?;
    Ok(written)
}

/// The lamps and vehicles of `devices` whose cabinet or route their tenant does not have.
async fn dangling(tx: &Transaction<'_>, devices: &[Device]) -> Result<Vec<Dangling>, StoreError> {
    let tenant: Vec<&str> = devices.iter().map(|d| d.tenant.as_str()).collect();
    let ext: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
    let rows = tx
        .query(
            "WITH file AS (SELECT * FROM unnest($1::text[], $2::text[]) AS f(tenant, ext))
             SELECT t.slug, d.ext_id, 'cabinet', d.cabinet
             FROM file f JOIN tenants t ON t.slug = f.tenant
             JOIN devices d ON d.tenant_id = t.id AND d.ext_id = f.ext
             WHERE d.kind = $3 AND d.cabinet IS NOT NULL AND NOT EXISTS (
                 SELECT 1 FROM devices c
                 WHERE c.tenant_id = d.tenant_id AND c.ext_id = d.cabinet AND c.kind = $4)
             UNION ALL
             SELECT t.slug, d.ext_id, 'route', d.route
             FROM file f JOIN tenants t ON t.slug = f.tenant
             JOIN devices d ON d.tenant_id = t.id AND d.ext_id = f.ext
             WHERE d.kind = $5 AND d.route IS NOT NULL AND NOT EXISTS (
                 SELECT 1 FROM routes r WHERE r.tenant_id = d.tenant_id AND r.ext_id = d.route)
             ORDER BY 1, 2",
            &[
                &tenant,
                &ext,
                &Kind::Light.as_str(),
                &Kind::Cabinet.as_str(),
                &Kind::Vehicle.as_str(),
            ],
        )
        .await
        .map_err(StoreError::db("checking the inventory's references"))?;
    Ok(rows
        .iter()
        .map(|r| Dangling {
            tenant: r.get(0),
            device: r.get(1),
            property: if r.get::<_, &str>(2) == "cabinet" {
                "cabinet"
            } else {
                "route"
            },
            names: r.get(3),
        })
        .collect())
}

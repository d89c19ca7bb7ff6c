//! The device registry: inventory import (devices and bus routes) and the lookup table
//! ingestion resolves topics with.

use chrono::{DateTime, Utc};
use model::{Device, Kind, RouteLine};

use crate::{Db, StoreError};

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

impl Db {
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
        let mut tenants: Vec<&str> = devices.iter().map(|d| d.tenant.as_str()).collect();
        tenants.sort_unstable();
        tenants.dedup();
        let tenants_created = tx
            .execute(
                "INSERT INTO tenants (slug, name) SELECT t, t FROM unnest($1::text[]) t
                 ON CONFLICT (slug) DO NOTHING",
                &[&tenants],
            )
            .await
            .map_err(StoreError::db("creating tenants"))?;
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
        tx.commit()
            .await
            .map_err(StoreError::db("committing the import"))?;
        Ok(ImportOutcome {
            tenants_created,
            devices_written,
        })
    }

    /// Inserts or updates bus routes by tenant and id in one transaction; tenants are
    /// created as they appear. Returns how many routes were written.
    pub async fn import_routes(&mut self, routes: &[RouteLine]) -> Result<u64, StoreError> {
        let tx = self
            .client_mut()
            .transaction()
            .await
            .map_err(StoreError::db("starting the route import"))?;
        let mut tenants: Vec<&str> = routes.iter().map(|r| r.tenant.as_str()).collect();
        tenants.sort_unstable();
        tenants.dedup();
        tx.execute(
            "INSERT INTO tenants (slug, name) SELECT t, t FROM unnest($1::text[]) t
             ON CONFLICT (slug) DO NOTHING",
            &[&tenants],
        )
        .await
        .map_err(StoreError::db("creating tenants"))?;
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
        tx.commit()
            .await
            .map_err(StoreError::db("committing the route import"))?;
        Ok(written)
    }

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
}

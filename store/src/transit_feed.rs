//! The newest position of each vehicle of a tenant, for the GTFS-Realtime feed.

use crate::handles::Reads;
use chrono::{DateTime, Utc};

use crate::StoreError;

/// A vehicle and what it last reported.
#[derive(Debug, Clone, PartialEq)]
pub struct VehiclePositionRow {
    /// The inventory id.
    pub ext_id: String,
    /// The route it reported, else the one of the inventory.
    pub route: Option<String>,
    pub trip: Option<String>,
    pub lat: f64,
    pub lon: f64,
    pub bearing_deg: Option<f64>,
    pub speed_mps: Option<f64>,
    pub occupancy_pct: Option<f64>,
    /// The time of the reading.
    pub ts: DateTime<Utc>,
}

impl Reads {
    /// Vehicles of `tenant_id` whose newest telemetry carries a position, by inventory id.
    pub async fn vehicle_positions(
        &self,
        tenant_id: i32,
    ) -> Result<Vec<VehiclePositionRow>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT d.ext_id, coalesce(l.telemetry->>'route', d.route), l.telemetry->>'trip',
                        (l.telemetry->>'lat')::float8, (l.telemetry->>'lon')::float8,
                        (l.telemetry->>'bearing_deg')::float8, (l.telemetry->>'speed_mps')::float8,
                        (l.telemetry->>'occupancy_pct')::float8, l.telemetry_ts
                 FROM devices d JOIN device_latest l ON l.device_id = d.id
                 WHERE d.tenant_id = $1 AND d.kind = $2 AND l.telemetry_ts IS NOT NULL
                   AND jsonb_typeof(l.telemetry->'lat') = 'number'
                   AND jsonb_typeof(l.telemetry->'lon') = 'number'
                 ORDER BY d.ext_id",
                &[&tenant_id, &model::Kind::Vehicle.as_str()],
            )
            .await
            .map_err(StoreError::db("reading vehicle positions"))?;
        Ok(rows
            .iter()
            .map(|r| VehiclePositionRow {
                ext_id: r.get(0),
                route: r.get(1),
                trip: r.get(2),
                lat: r.get(3),
                lon: r.get(4),
                bearing_deg: r.get(5),
                speed_mps: r.get(6),
                occupancy_pct: r.get(7),
                ts: r.get(8),
            })
            .collect())
    }
}

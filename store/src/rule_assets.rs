//! What the rules engine loads besides its decisions: the devices with what each rule
//! needs of them, and the bus routes vehicles should keep to.

use crate::handles::Detection;
use model::Kind;

use crate::StoreError;

/// A device as the rules engine needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleAsset {
    pub id: i32,
    /// The device's id in the inventory (what reasons name it by).
    pub ext_id: String,
    pub tenant_id: i32,
    pub kind: Kind,
    pub cabinet_id: Option<i32>,
    pub rated_power_w: Option<f64>,
    pub lon: f64,
    pub lat: f64,
    pub district: Option<String>,
    /// `routes.id` of a vehicle's route, when the inventory has that route.
    pub route_id: Option<i32>,
}

/// A bus route as the rules need it.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleRoute {
    /// `routes.id`.
    pub id: i32,
    /// (lon, lat) points.
    pub line: Vec<(f64, f64)>,
    /// The timetable's headway (the inventory's `headway_s`), when given.
    pub headway_s: Option<f64>,
}

impl Detection {
    /// Every device with what the rules need: lamps with their cabinet's device id,
    /// vehicles with their route's id.
    pub async fn rule_assets(&self) -> Result<Vec<RuleAsset>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT d.id, d.ext_id, d.tenant_id, d.kind, c.id, d.rated_power_w, d.lon, d.lat, d.district, r.id
                 FROM devices d
                 LEFT JOIN devices c ON c.tenant_id = d.tenant_id AND c.kind = $1 AND c.ext_id = d.cabinet
                 LEFT JOIN routes r ON r.tenant_id = d.tenant_id AND r.ext_id = d.route",
                &[&model::Kind::Cabinet.as_str()],
            )
            .await
            .map_err(StoreError::db("loading devices for the rules"))?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some(RuleAsset {
                    id: r.get(0),
                    ext_id: r.get(1),
                    tenant_id: r.get(2),
                    kind: Kind::parse(r.get(3))?,
                    cabinet_id: r.get(4),
                    rated_power_w: r.get(5),
                    lon: r.get(6),
                    lat: r.get(7),
                    district: r.get(8),
                    route_id: r.get(9),
                })
            })
            .collect())
    }

    /// Every bus route's line, by `routes.id` (what [`RuleAsset::route_id`] refers to).
    pub async fn rule_routes(&self) -> Result<Vec<RuleRoute>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT id, line, (props->>'headway_s')::float8 FROM routes ORDER BY id",
                &[],
            )
            .await
            .map_err(StoreError::db("loading routes for the rules"))?;
        rows.iter()
            .map(|r| {
                let id: i32 = r.get(0);
                let line: serde_json::Value = r.get(1);
                let line = serde_json::from_value(line).map_err(|e| StoreError::BadRouteLine {
                    id,
                    why: e.to_string(),
                })?;
                Ok(RuleRoute {
                    id,
                    line,
                    headway_s: r.get::<_, Option<f64>>(2).filter(|h| *h > 0.0),
                })
            })
            .collect()
    }
}

//! The city's inventory: a GeoJSON FeatureCollection with one Point feature per device.
//!
//! Properties: `id`, `kind`, `tenant` (required); `district`, `cabinet` (lights),
//! `rated_power_w` (lights), `medium` (meters), `route` (vehicles) (optional); any other
//! property is kept as it came.

use geojson::{GeoJson, Value as Geometry};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::topic::{valid_device, valid_tenant};
use crate::Kind;

/// One device of the inventory.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub tenant: String,
    pub id: String,
    pub kind: Kind,
    pub district: Option<String>,
    pub cabinet: Option<String>,
    pub rated_power_w: Option<f64>,
    pub medium: Option<String>,
    pub route: Option<String>,
    pub lon: f64,
    pub lat: f64,
    /// Every other property of the feature.
    pub props: Map<String, Value>,
}

#[derive(Debug, Error, PartialEq)]
pub enum InventoryError {
    #[error("inventory is not valid GeoJSON: {0}")]
    NotGeoJson(String),
    #[error("inventory must be a GeoJSON FeatureCollection")]
    NotACollection,
    #[error("feature {index}: {why}")]
    BadFeature { index: usize, why: String },
    #[error("feature {index}: device `{tenant}/{id}` is listed twice")]
    Duplicate {
        index: usize,
        tenant: String,
        id: String,
    },
}

/// Parses an inventory; the first bad feature fails the whole file so that a half-loaded
/// inventory never goes unnoticed.
pub fn parse_inventory(text: &str) -> Result<Vec<Device>, InventoryError> {
    let geojson: GeoJson = text
        .parse()
        .map_err(|e: geojson::Error| InventoryError::NotGeoJson(e.to_string()))?;
    let GeoJson::FeatureCollection(collection) = geojson else {
        return Err(InventoryError::NotACollection);
    };
    let mut seen = std::collections::HashSet::new();
    let mut devices = Vec::with_capacity(collection.features.len());
    for (index, feature) in collection.features.into_iter().enumerate() {
        let bad = |why: String| InventoryError::BadFeature { index, why };
        let (lon, lat) = match feature.geometry.map(|g| g.value) {
            Some(Geometry::Point(p)) if p.len() >= 2 => (p[0], p[1]),
            _ => return Err(bad("geometry must be a Point".into())),
        };
        if !(-180.0..=180.0).contains(&lon) || !(-90.0..=90.0).contains(&lat) {
            return Err(bad(format!(
                "coordinates {lon},{lat} are not WGS84 lon,lat"
            )));
        }
        let mut props = feature.properties.unwrap_or_default();
        let mut text = |key: &str| -> Result<Option<String>, InventoryError> {
            match props.remove(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(_) => Err(bad(format!("property `{key}` must be a string"))),
            }
        };
        let id = text("id")?.ok_or_else(|| bad("property `id` is required".into()))?;
        let tenant = text("tenant")?.ok_or_else(|| bad("property `tenant` is required".into()))?;
        let kind_name = text("kind")?.ok_or_else(|| bad("property `kind` is required".into()))?;
        let district = text("district")?;
        let cabinet = text("cabinet")?;
        let medium = text("medium")?;
        let route = text("route")?;
        if !valid_device(&id) {
            return Err(bad(format!(
                "id `{id}` must be 1-64 characters of A-Z, a-z, 0-9, _ . -"
            )));
        }
        if !valid_tenant(&tenant) {
            return Err(bad(format!(
                "tenant `{tenant}` must be 1-32 characters of a-z, 0-9, -"
            )));
        }
        let kind = Kind::parse(&kind_name).ok_or_else(|| {
            bad(format!(
                "kind `{kind_name}` must be light, cabinet, meter or vehicle"
            ))
        })?;
        let rated_power_w = match props.remove("rated_power_w") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(_) => return Err(bad("property `rated_power_w` must be a number".into())),
        };
        if !seen.insert((tenant.clone(), id.clone())) {
            return Err(InventoryError::Duplicate { index, tenant, id });
        }
        devices.push(Device {
            tenant,
            id,
            kind,
            district,
            cabinet,
            rated_power_w,
            medium,
            route,
            lon,
            lat,
            props,
        });
    }
    Ok(devices)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feature(props: &str, geometry: &str) -> String {
        format!(
            r#"{{"type":"FeatureCollection","features":[{{"type":"Feature","geometry":{geometry},"properties":{props}}}]}}"#
        )
    }
    const POINT: &str = r#"{"type":"Point","coordinates":[-9.14,38.71]}"#;

    #[test]
    fn reads_a_lamp_with_its_extra_properties() {
        let text = feature(
            r#"{"id":"L-1","kind":"light","tenant":"lisbon","district":"baixa","cabinet":"C-1","rated_power_w":70,"street":"Rua Augusta"}"#,
            POINT,
        );
        let devices = parse_inventory(&text).unwrap();
        assert_eq!(devices.len(), 1);
        let d = &devices[0];
        assert_eq!(
            (d.tenant.as_str(), d.id.as_str(), d.kind),
            ("lisbon", "L-1", Kind::Light)
        );
        assert_eq!(d.cabinet.as_deref(), Some("C-1"));
        assert_eq!(d.rated_power_w, Some(70.0));
        assert_eq!((d.lon, d.lat), (-9.14, 38.71));
        assert_eq!(d.props["street"], "Rua Augusta");
    }

    #[test]
    fn names_the_bad_feature() {
        let cases = [
            (
                feature(r#"{"kind":"light","tenant":"x"}"#, POINT),
                "`id` is required",
            ),
            (
                feature(r#"{"id":"a","kind":"lamp","tenant":"x"}"#, POINT),
                "kind `lamp`",
            ),
            (
                feature(r#"{"id":"a b","kind":"light","tenant":"x"}"#, POINT),
                "id `a b`",
            ),
            (
                feature(r#"{"id":"a","kind":"light","tenant":"X"}"#, POINT),
                "tenant `X`",
            ),
            (
                feature(
                    r#"{"id":"a","kind":"light","tenant":"x"}"#,
                    r#"{"type":"LineString","coordinates":[[0,0],[1,1]]}"#,
                ),
                "Point",
            ),
            (
                feature(
                    r#"{"id":"a","kind":"light","tenant":"x"}"#,
                    r#"{"type":"Point","coordinates":[200,0]}"#,
                ),
                "WGS84",
            ),
            (
                feature(
                    r#"{"id":"a","kind":"light","tenant":"x","rated_power_w":"70"}"#,
                    POINT,
                ),
                "rated_power_w",
            ),
        ];
        for (text, fragment) in cases {
            let err = parse_inventory(&text).unwrap_err().to_string();
            assert!(err.starts_with("feature 0:"), "{err}");
            assert!(err.contains(fragment), "{err} should mention {fragment}");
        }
        assert!(parse_inventory("{}")
            .unwrap_err()
            .to_string()
            .contains("GeoJSON"));
        assert_eq!(
            parse_inventory(r#"{"type":"Point","coordinates":[0,0]}"#).unwrap_err(),
            InventoryError::NotACollection
        );
    }

    #[test]
    fn refuses_duplicates() {
        let f = r#"{"type":"Feature","geometry":{"type":"Point","coordinates":[0,0]},"properties":{"id":"a","kind":"light","tenant":"x"}}"#;
        let text = format!(r#"{{"type":"FeatureCollection","features":[{f},{f}]}}"#);
        assert!(matches!(
            parse_inventory(&text),
            Err(InventoryError::Duplicate { index: 1, .. })
        ));
    }
}

//! The city's inventory: a GeoJSON FeatureCollection with one Point feature per device and
//! one LineString feature per bus route.
//!
//! Device properties: `id`, `kind`, `tenant` (required); `district`, `cabinet` (lights),
//! `rated_power_w` (lights), `medium` (meters), `route` (vehicles) (optional); the
//! descriptive [`DESCRIPTIVE`] ones; any other property is kept as it came.
//!
//! Route properties: `kind: "route"`, `id`, `tenant` (required); `headway_s`, `name`; any
//! other property is kept as it came. A vehicle's `route` names a route's `id`.
//!
//! A file that parses may still say something other than what its author meant: a
//! misspelled property (`rated_w`) is kept as an extra and the rules never see it. Such
//! things are [`Warning`]s, named with the feature and, for a property, the closest known
//! name; `cityhub devices import --strict` refuses a file that has any. The published
//! schema is `docs/inventory.schema.json`, explained in `docs/inventory.md`.

use std::collections::HashSet;

use geojson::{GeoJson, Value as Geometry};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::topic::{valid_device, valid_tenant};
use crate::Kind;

/// What an inventory file holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    pub devices: Vec<Device>,
    pub routes: Vec<RouteLine>,
    /// What the file says that the hub will not use as its author probably meant.
    pub warnings: Vec<Warning>,
}

/// Properties any device may carry to describe it; kept and shown, never judged.
pub const DESCRIPTIVE: [&str; 6] = [
    "name",
    "street",
    "address",
    "manufacturer",
    "model",
    "installed",
];

/// The properties the hub reads, per device kind.
fn properties_of(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Light => &["cabinet", "rated_power_w"],
        Kind::Meter => &["medium"],
        Kind::Vehicle => &["route"],
        Kind::Cabinet => &[],
    }
}

/// Every property name the hub knows, for suggestions.
const KNOWN: [&str; 15] = [
    "id",
    "kind",
    "tenant",
    "district",
    "cabinet",
    "rated_power_w",
    "medium",
    "route",
    "headway_s",
    "name",
    "street",
    "address",
    "manufacturer",
    "model",
    "installed",
];

/// Meter media the rules know.
pub const MEDIA: [&str; 3] = ["water", "electricity", "heat"];

/// Something a feature says that the hub will not use as its author probably meant.
#[derive(Debug, Clone, PartialEq)]
pub struct Warning {
    /// The feature's place in the file (from 0).
    pub index: usize,
    /// The feature's `id`.
    pub id: String,
    pub issue: Issue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Issue {
    /// Not a property the hub reads; kept as an extra. `suggestion`: the closest known one.
    UnknownProperty {
        name: String,
        suggestion: Option<&'static str>,
    },
    /// A property the hub reads for another kind of device only.
    NotForKind { name: &'static str, kind: Kind },
    /// A lamp without a rated power: its power cannot tell a failed lamp from a burning one.
    NoRatedPower,
    /// A meter's medium the rules do not know.
    UnknownMedium(String),
    /// A route's headway that is not a positive number of seconds.
    BadHeadway,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "feature {} (`{}`): ", self.index, self.id)?;
        match &self.issue {
            Issue::UnknownProperty {
                name,
                suggestion: Some(s),
            } => write!(
                f,
                "unknown property `{name}`: did you mean `{s}`? (kept as an extra property; the rules do not read it)"
            ),
            Issue::UnknownProperty {
                name,
                suggestion: None,
            } => write!(
                f,
                "unknown property `{name}` (kept as an extra property; the rules do not read it)"
            ),
            Issue::NotForKind { name, kind } => write!(
                f,
                "`{name}` is not read for a {} (kept, but nothing uses it)",
                kind.as_str()
            ),
            Issue::NoRatedPower => f.write_str(
                "a lamp without `rated_power_w`: a failed lamp is found only from its own fault reports, never from its power",
            ),
            Issue::UnknownMedium(m) => write!(
                f,
                "medium `{m}` is not one of water, electricity, heat"
            ),
            Issue::BadHeadway => {
                f.write_str("`headway_s` must be a positive number of seconds; bunching uses `max_gap_m` alone")
            }
        }
    }
}

/// The known property closest to `name`: the same once case and separators are ignored
/// (`ratedPowerW`), or near enough to be a slip (`rated_w`, `distict`).
pub fn closest_property(name: &str) -> Option<&'static str> {
    let bare = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let wanted = bare(name);
    if let Some(same) = KNOWN.iter().find(|k| bare(k) == wanted) {
        return Some(same);
    }
    KNOWN
        .iter()
        .map(|k| (strsim::jaro_winkler(&name.to_ascii_lowercase(), k), *k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// The warnings of one device.
fn device_warnings(index: usize, d: &Device) -> Vec<Warning> {
    let mut out = Vec::new();
    let mut warn = |issue| {
        out.push(Warning {
            index,
            id: d.id.clone(),
            issue,
        })
    };
    for name in d.props.keys() {
        if !DESCRIPTIVE.contains(&name.as_str()) {
            warn(Issue::UnknownProperty {
                name: name.clone(),
                suggestion: closest_property(name),
            });
        }
    }
    let given = [
        ("cabinet", d.cabinet.is_some()),
        ("rated_power_w", d.rated_power_w.is_some()),
        ("medium", d.medium.is_some()),
        ("route", d.route.is_some()),
    ];
    for (name, present) in given {
        if present && !properties_of(d.kind).contains(&name) {
            warn(Issue::NotForKind { name, kind: d.kind });
        }
    }
    if d.kind == Kind::Light && !d.rated_power_w.is_some_and(|w| w > 0.0) {
        warn(Issue::NoRatedPower);
    }
    if let Some(m) = d.medium.as_deref().filter(|m| !MEDIA.contains(m)) {
        if d.kind == Kind::Meter {
            warn(Issue::UnknownMedium(m.to_owned()));
        }
    }
    out
}

/// The warnings of one route.
fn route_warnings(index: usize, r: &RouteLine) -> Vec<Warning> {
    let mut out = Vec::new();
    for name in r.props.keys() {
        if name == "headway_s" || name == "name" {
            continue;
        }
        out.push(Warning {
            index,
            id: r.id.clone(),
            issue: Issue::UnknownProperty {
                name: name.clone(),
                suggestion: closest_property(name),
            },
        });
    }
    if let Some(h) = r.props.get("headway_s") {
        if !h.as_f64().is_some_and(|h| h > 0.0) {
            out.push(Warning {
                index,
                id: r.id.clone(),
                issue: Issue::BadHeadway,
            });
        }
    }
    out
}

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

/// One bus route of the inventory: the line its vehicles follow.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteLine {
    pub tenant: String,
    pub id: String,
    /// The line, as (lon, lat) positions; at least two.
    pub line: Vec<(f64, f64)>,
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
    #[error("feature {index}: {what} `{tenant}/{id}` is listed twice")]
    Duplicate {
        index: usize,
        /// `device` or `route`.
        what: &'static str,
        tenant: String,
        id: String,
    },
}

/// Parses an inventory; the first bad feature fails the whole file so that a half-loaded
/// inventory never goes unnoticed.
pub fn parse_inventory(text: &str) -> Result<Inventory, InventoryError> {
    let geojson: GeoJson = text
        .parse()
        .map_err(|e: geojson::Error| InventoryError::NotGeoJson(e.to_string()))?;
    let GeoJson::FeatureCollection(collection) = geojson else {
        return Err(InventoryError::NotACollection);
    };
    let mut inventory = Inventory::default();
    let mut seen = HashSet::new();
    for (index, feature) in collection.features.into_iter().enumerate() {
        let bad = |why: String| InventoryError::BadFeature { index, why };
        let geometry = feature.geometry.map(|g| g.value);
        let props = feature.properties.unwrap_or_default();
        let (what, tenant, id) = if props.get("kind") == Some(&Value::from("route")) {
            let route = parse_route(geometry, props).map_err(bad)?;
            let key = ("route", route.tenant.clone(), route.id.clone());
            inventory.warnings.extend(route_warnings(index, &route));
            inventory.routes.push(route);
            key
        } else {
            let device = parse_device(geometry, props).map_err(bad)?;
            let key = ("device", device.tenant.clone(), device.id.clone());
            inventory.warnings.extend(device_warnings(index, &device));
            inventory.devices.push(device);
            key
        };
        if !seen.insert((what, tenant.clone(), id.clone())) {
            return Err(InventoryError::Duplicate {
                index,
                what,
                tenant,
                id,
            });
        }
    }
    Ok(inventory)
}

/// A Point feature: one device.
fn parse_device(
    geometry: Option<Geometry>,
    mut props: Map<String, Value>,
) -> Result<Device, String> {
    let (lon, lat) = match geometry {
        Some(Geometry::Point(p)) if p.len() >= 2 => (p[0], p[1]),
        _ => {
            return Err(
                "geometry must be a Point (a device), or a LineString with kind `route`".into(),
            )
        }
    };
    check_wgs84(lon, lat)?;
    let (tenant, id) = identity(&mut props)?;
    let kind_name = take_text(&mut props, "kind")?.ok_or("property `kind` is required")?;
    let kind = Kind::parse(&kind_name).ok_or_else(|| {
        format!("kind `{kind_name}` must be light, cabinet, meter, vehicle or route")
    })?;
    let district = take_name(&mut props, "district")?;
    let cabinet = take_name(&mut props, "cabinet")?;
    let medium = take_text(&mut props, "medium")?;
    let route = take_name(&mut props, "route")?;
    let rated_power_w = match props.remove("rated_power_w") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64(),
        Some(_) => return Err("property `rated_power_w` must be a number".into()),
    };
    Ok(Device {
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
    })
}

/// A LineString feature with `kind: "route"`: one bus route.
fn parse_route(
    geometry: Option<Geometry>,
    mut props: Map<String, Value>,
) -> Result<RouteLine, String> {
    let positions = match geometry {
        Some(Geometry::LineString(positions)) if positions.len() >= 2 => positions,
        _ => {
            return Err("a route's geometry must be a LineString of at least two positions".into())
        }
    };
    let mut line = Vec::with_capacity(positions.len());
    for p in positions {
        let [lon, lat, ..] = p[..] else {
            return Err("every position of a route must be [lon, lat]".into());
        };
        check_wgs84(lon, lat)?;
        line.push((lon, lat));
    }
    props.remove("kind");
    let (tenant, id) = identity(&mut props)?;
    Ok(RouteLine {
        tenant,
        id,
        line,
        props,
    })
}

/// The `tenant` and `id` every feature carries, checked against the topic grammar (a
/// device's id is a topic level; a route's id is what vehicles report).
fn identity(props: &mut Map<String, Value>) -> Result<(String, String), String> {
    let id = take_text(props, "id")?.ok_or("property `id` is required")?;
    let tenant = take_text(props, "tenant")?.ok_or("property `tenant` is required")?;
    if !valid_device(&id) {
        return Err(format!(
            "id `{id}` must be 1-64 characters of A-Z, a-z, 0-9, _ . -"
        ));
    }
    if !valid_tenant(&tenant) {
        return Err(format!(
            "tenant `{tenant}` must be 1-32 characters of a-z, 0-9, -"
        ));
    }
    Ok((tenant, id))
}

/// Removes a text property; numbers are taken as their decimal text (`"route": 28`).
fn take_text(props: &mut Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match props.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(format!("property `{key}` must be a string")),
    }
}

/// The longest district, cabinet or route name: what the API's filters take.
pub const MAX_NAME_CHARS: usize = 64;

/// A name the API filters and targets by (a district, a cabinet, a route): 1 to
/// [`MAX_NAME_CHARS`] printable characters, so that whatever is imported can be asked for.
fn take_name(props: &mut Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    let name = take_text(props, key)?;
    match &name {
        Some(n) if n.is_empty() || n.chars().count() > MAX_NAME_CHARS || n.chars().any(char::is_control) => {
            Err(format!(
                "property `{key}` must be 1 to {MAX_NAME_CHARS} printable characters (it is what the API filters by), not {:?}",
                n.chars().take(MAX_NAME_CHARS + 1).collect::<String>()
            ))
        }
        _ => Ok(name),
    }
}

fn check_wgs84(lon: f64, lat: f64) -> Result<(), String> {
    if (-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat) {
        Ok(())
    } else {
        Err(format!("coordinates {lon},{lat} are not WGS84 lon,lat"))
    }
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
        let devices = parse_inventory(&text).unwrap().devices;
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

    fn route(props: &str, geometry: &str) -> String {
        feature(
            &format!(r#"{{"kind":"route","tenant":"lisbon","id":"28"{props}}}"#),
            geometry,
        )
    }
    const LINE: &str = r#"{"type":"LineString","coordinates":[[-9.14,38.71],[-9.13,38.72]]}"#;

    #[test]
    fn names_the_api_cannot_filter_by_are_refused() {
        let long = "d".repeat(MAX_NAME_CHARS + 1);
        for (props, why) in [
            (
                format!(r#""district":"{long}""#),
                "property `district` must be 1 to 64",
            ),
            (
                r#""district":"""#.to_owned(),
                "property `district` must be 1 to 64",
            ),
            (
                r#""cabinet":"C\u0000-1""#.to_owned(),
                "property `cabinet` must be 1 to 64",
            ),
            (r#""district":"a\nb""#.to_owned(), "printable"),
        ] {
            let text = feature(
                &format!(r#"{{"id":"L-1","kind":"light","tenant":"lisbon",{props}}}"#),
                POINT,
            );
            let err = parse_inventory(&text).unwrap_err().to_string();
            assert!(err.contains(why), "{props}: {err}");
        }
        let fits = "d".repeat(MAX_NAME_CHARS);
        let text = feature(
            &format!(r#"{{"id":"L-1","kind":"light","tenant":"lisbon","district":"{fits}"}}"#),
            POINT,
        );
        assert_eq!(
            parse_inventory(&text).unwrap().devices[0]
                .district
                .as_deref(),
            Some(fits.as_str())
        );
    }

    #[test]
    fn reads_a_route_with_its_extra_properties() {
        let inventory = parse_inventory(&route(r#","headway_s":600"#, LINE)).unwrap();
        assert!(inventory.devices.is_empty());
        let r = &inventory.routes[0];
        assert_eq!((r.tenant.as_str(), r.id.as_str()), ("lisbon", "28"));
        assert_eq!(r.line, vec![(-9.14, 38.71), (-9.13, 38.72)]);
        assert_eq!(r.props.get("headway_s"), Some(&Value::from(600)));
        assert!(r.props.get("kind").is_none(), "kind is not a free property");
    }

    #[test]
    fn names_the_bad_route() {
        let cases = [
            (route("", POINT), "LineString"),
            (
                route("", r#"{"type":"LineString","coordinates":[[0,0]]}"#),
                "at least two",
            ),
            (
                route("", r#"{"type":"LineString","coordinates":[[0,0],[0,95]]}"#),
                "WGS84",
            ),
            (
                route(
                    "",
                    r#"{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}"#,
                ),
                "LineString",
            ),
            (
                feature(r#"{"kind":"route","tenant":"lisbon"}"#, LINE),
                "`id` is required",
            ),
            (
                feature(r#"{"kind":"route","id":"28"}"#, LINE),
                "`tenant` is required",
            ),
            (
                feature(r#"{"kind":"route","tenant":"Lisbon","id":"28"}"#, LINE),
                "tenant `Lisbon`",
            ),
            (
                feature(r#"{"kind":"route","tenant":"lisbon","id":"2 8"}"#, LINE),
                "id `2 8`",
            ),
        ];
        for (text, fragment) in cases {
            let err = parse_inventory(&text).unwrap_err().to_string();
            assert!(err.starts_with("feature 0:"), "{err}");
            assert!(err.contains(fragment), "{err} should mention {fragment}");
        }
    }

    #[test]
    fn a_route_and_a_device_may_share_an_id_but_two_routes_may_not() {
        let line = r#"{"type":"Feature","geometry":{"type":"LineString","coordinates":[[0,0],[1,1]]},"properties":{"id":"a","kind":"route","tenant":"x"}}"#;
        let point = r#"{"type":"Feature","geometry":{"type":"Point","coordinates":[0,0]},"properties":{"id":"a","kind":"light","tenant":"x"}}"#;
        let both = format!(r#"{{"type":"FeatureCollection","features":[{line},{point}]}}"#);
        let inventory = parse_inventory(&both).unwrap();
        assert_eq!((inventory.devices.len(), inventory.routes.len()), (1, 1));
        let twice = format!(r#"{{"type":"FeatureCollection","features":[{line},{line}]}}"#);
        let err = parse_inventory(&twice).unwrap_err();
        assert!(matches!(
            err,
            InventoryError::Duplicate {
                index: 1,
                what: "route",
                ..
            }
        ));
        assert_eq!(err.to_string(), "feature 1: route `x/a` is listed twice");
    }

    #[test]
    fn misspelled_and_misplaced_properties_are_named_with_the_closest_known_one() {
        let check = |props: &str, expected: &[&str]| {
            let inventory = parse_inventory(&feature(props, POINT)).unwrap();
            let said: Vec<String> = inventory.warnings.iter().map(|w| w.to_string()).collect();
            assert_eq!(said.len(), expected.len(), "{said:?}");
            for (s, e) in said.iter().zip(expected) {
                assert!(s.contains(e), "`{s}` should say `{e}`");
            }
        };
        check(
            r#"{"id":"L-1","kind":"light","tenant":"x","cabinet":"C","rated_w":60}"#,
            &[
                "unknown property `rated_w`: did you mean `rated_power_w`?",
                "without `rated_power_w`",
            ],
        );
        check(
            r#"{"id":"L-1","kind":"light","tenant":"x","ratedPowerW":60,"distict":"a"}"#,
            &[
                "did you mean `district`?",
                "did you mean `rated_power_w`?",
                "without `rated_power_w`",
            ],
        );
        check(
            r#"{"id":"L-1","kind":"light","tenant":"x","rated_power_w":60,"street":"Rua Augusta","pole_height":8}"#,
            &["unknown property `pole_height` (kept"],
        );
        check(
            r#"{"id":"M-1","kind":"meter","tenant":"x","medium":"gas","rated_power_w":5}"#,
            &["`rated_power_w` is not read for a meter", "medium `gas`"],
        );
        check(
            r#"{"id":"C-1","kind":"cabinet","tenant":"x","name":"Cabinet 1"}"#,
            &[],
        );
        let route = parse_inventory(&route(r#","headway_s":-5,"colour":"red""#, LINE)).unwrap();
        let said: Vec<String> = route.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(said[0].contains("`colour`"), "{said:?}");
        assert!(said[1].contains("headway_s"), "{said:?}");
    }

    /// The published schema names exactly the properties the hub reads or describes.
    #[test]
    fn the_published_schema_names_the_known_properties() {
        let schema: Value =
            serde_json::from_str(include_str!("../../docs/inventory.schema.json")).unwrap();
        let names = |def: &str| -> Vec<String> {
            let props = &schema["$defs"][def]["properties"]["properties"]["properties"];
            props.as_object().unwrap().keys().cloned().collect()
        };
        let mut device = names("device");
        device.sort();
        let mut expected: Vec<String> = ["id", "kind", "tenant", "district"]
            .into_iter()
            .chain(DESCRIPTIVE)
            .chain(
                Kind::ALL
                    .iter()
                    .flat_map(|k| properties_of(*k).iter().copied()),
            )
            .map(String::from)
            .collect();
        expected.sort();
        assert_eq!(device, expected);
        let mut route = names("route");
        route.sort();
        assert_eq!(route, ["headway_s", "id", "kind", "name", "tenant"]);
        for name in device.iter().chain(&route) {
            assert!(KNOWN.contains(&name.as_str()), "{name} is not suggested");
        }
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

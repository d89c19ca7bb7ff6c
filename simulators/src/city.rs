//! The city generator: districts, streets, cabinets feeding lamps along the streets,
//! meters in the blocks between them, bus routes with stops and the vehicles on them.
//!
//! Everything follows from a [`CitySpec`] and its seed (ChaCha8, stable across platforms
//! and releases), so the same spec always gives the same city, byte for byte. The layout
//! is a grid: streets every [`BLOCK_M`] metres, lamps every [`LAMP_SPACING_M`] along
//! them, districts as rectangles of blocks.

use std::fmt::Write as _;

use model::{Device, Kind, RouteLine};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

/// Distance between parallel streets.
pub const BLOCK_M: f64 = 120.0;
/// Distance between lamps along a street.
pub const LAMP_SPACING_M: f64 = 30.0;
/// Lamps per cabinet, inclusive.
pub const CABINET_LAMPS: (usize, usize) = (20, 80);
/// Distance between bus stops along a route.
const STOP_SPACING_M: f64 = 400.0;
/// A bus's cruising speed, for the timetable headway.
pub const BUS_SPEED_MPS: f64 = 8.0;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct CitySpec {
    pub seed: u64,
    pub tenant: String,
    pub lamps: usize,
    pub meters: usize,
    pub vehicles: usize,
    /// Centre of the city, WGS84.
    pub center: (f64, f64),
}

impl Default for CitySpec {
    fn default() -> Self {
        CitySpec {
            seed: 1,
            tenant: "simcity".into(),
            lamps: 2_000,
            meters: 1_000,
            vehicles: 20,
            center: (-9.1393, 38.7223),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct District {
    pub id: String,
    /// Closed ring of (lon, lat).
    pub outline: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Street {
    pub id: String,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cabinet {
    pub id: String,
    pub district: String,
    pub at: (f64, f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Lamp {
    pub id: String,
    pub cabinet: String,
    pub district: String,
    pub street: String,
    pub rated_power_w: f64,
    pub at: (f64, f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Meter {
    pub id: String,
    pub district: String,
    pub medium: &'static str,
    pub at: (f64, f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub id: String,
    /// The route's line, (lon, lat).
    pub line: Vec<(f64, f64)>,
    /// Stops as distances along the line, metres.
    pub stops_m: Vec<f64>,
    pub length_m: f64,
    pub headway_s: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Vehicle {
    pub id: String,
    pub route: String,
    /// Where the vehicle starts, metres along its route.
    pub start_m: f64,
    pub at: (f64, f64),
}

/// A generated city.
#[derive(Debug, Clone, PartialEq)]
pub struct City {
    pub spec: CitySpec,
    pub districts: Vec<District>,
    pub streets: Vec<Street>,
    pub cabinets: Vec<Cabinet>,
    pub lamps: Vec<Lamp>,
    pub meters: Vec<Meter>,
    pub routes: Vec<Route>,
    pub vehicles: Vec<Vehicle>,
}

/// Local metres east/north of the centre -> WGS84.
struct Projection {
    lon0: f64,
    lat0: f64,
    m_per_deg_lon: f64,
}

const M_PER_DEG_LAT: f64 = 111_320.0;

impl Projection {
    fn new((lon0, lat0): (f64, f64)) -> Projection {
        Projection {
            lon0,
            lat0,
            m_per_deg_lon: M_PER_DEG_LAT * lat0.to_radians().cos(),
        }
    }

    fn at(&self, x: f64, y: f64) -> (f64, f64) {
        (
            round7(self.lon0 + x / self.m_per_deg_lon),
            round7(self.lat0 + y / M_PER_DEG_LAT),
        )
    }
}

/// 7 decimals: about 1 cm, and a stable text form.
fn round7(v: f64) -> f64 {
    (v * 1e7).round() / 1e7
}

impl City {
    pub fn generate(spec: &CitySpec) -> City {
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        // A square grid with enough street length for the lamps: n streets each way.
        let lamps_per_street = (BLOCK_M / LAMP_SPACING_M) as usize;
        let n = (((spec.lamps.max(1) as f64) / (2.0 * lamps_per_street as f64))
            .sqrt()
            .ceil() as usize
            + 1)
        .max(2);
        let blocks = n - 1;
        let size = blocks as f64 * BLOCK_M;
        let half = size / 2.0;
        let proj = Projection::new(spec.center);
        // Districts: a d x d grid of rectangles over the blocks.
        let d = ((blocks as f64 / 4.0).ceil() as usize).clamp(1, 6);
        let district_of = |x: f64, y: f64| -> String {
            let col = (((x + half) / size * d as f64) as usize).min(d - 1);
            let row = (((y + half) / size * d as f64) as usize).min(d - 1);
            format!("D{:02}", row * d + col + 1)
        };
        let mut districts = Vec::with_capacity(d * d);
        for row in 0..d {
            for col in 0..d {
                let (x0, y0) = (
                    -half + size * col as f64 / d as f64,
                    -half + size * row as f64 / d as f64,
                );
                let (x1, y1) = (x0 + size / d as f64, y0 + size / d as f64);
                districts.push(District {
                    id: format!("D{:02}", row * d + col + 1),
                    outline: vec![
                        proj.at(x0, y0),
                        proj.at(x1, y0),
                        proj.at(x1, y1),
                        proj.at(x0, y1),
                        proj.at(x0, y0),
                    ],
                });
            }
        }
        // Streets: n east-west, then n north-south.
        let mut street_lines: Vec<((f64, f64), (f64, f64))> = Vec::with_capacity(2 * n);
        for i in 0..n {
            let c = -half + i as f64 * BLOCK_M;
            street_lines.push(((-half, c), (half, c)));
        }
        for i in 0..n {
            let c = -half + i as f64 * BLOCK_M;
            street_lines.push(((c, -half), (c, half)));
        }
        let streets: Vec<Street> = street_lines
            .iter()
            .enumerate()
            .map(|(i, (a, b))| Street {
                id: format!("S{:04}", i + 1),
                points: vec![proj.at(a.0, a.1), proj.at(b.0, b.1)],
            })
            .collect();
        // Lamps along the streets in order, grouped into cabinets of 20-80.
        let mut lamps = Vec::with_capacity(spec.lamps);
        let mut cabinets = Vec::new();
        let mut left_in_cabinet = 0usize;
        'streets: for (s, (a, b)) in street_lines.iter().enumerate() {
            let len = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
            let count = (len / LAMP_SPACING_M) as usize;
            for k in 0..count {
                if lamps.len() == spec.lamps {
                    break 'streets;
                }
                let t = (k as f64 + 0.5) * LAMP_SPACING_M / len;
                let (x, y) = (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
                let district = district_of(x, y);
                if left_in_cabinet == 0 {
                    let remaining = spec.lamps - lamps.len();
                    left_in_cabinet = rng.gen_range(CABINET_LAMPS.0..=CABINET_LAMPS.1);
                    // Never leave a tail too small for a cabinet of its own.
                    if remaining < left_in_cabinet + CABINET_LAMPS.0 && remaining <= CABINET_LAMPS.1
                    {
                        left_in_cabinet = remaining;
                    }
                    cabinets.push(Cabinet {
                        id: format!("C{:05}", cabinets.len() + 1),
                        district: district.clone(),
                        at: proj.at(x + 3.0, y + 3.0),
                    });
                }
                left_in_cabinet -= 1;
                let rated_power_w = [35.0, 50.0, 70.0, 100.0, 150.0][rng.gen_range(0..5)];
                lamps.push(Lamp {
                    id: format!("L{:06}", lamps.len() + 1),
                    cabinet: cabinets.last().map(|c| c.id.clone()).unwrap_or_default(),
                    district,
                    street: streets[s].id.clone(),
                    rated_power_w,
                    at: proj.at(x + rng.gen_range(-1.0..1.0), y + rng.gen_range(-1.0..1.0)),
                });
            }
        }
        // Meters inside the blocks.
        let meters = (0..spec.meters)
            .map(|i| {
                let (bx, by) = (rng.gen_range(0..blocks), rng.gen_range(0..blocks));
                let x = -half + (bx as f64 + rng.gen_range(0.15..0.85)) * BLOCK_M;
                let y = -half + (by as f64 + rng.gen_range(0.15..0.85)) * BLOCK_M;
                let medium = match rng.gen_range(0..20) {
                    0..=9 => "water",
                    10..=16 => "electricity",
                    _ => "heat",
                };
                Meter {
                    id: format!("M{:06}", i + 1),
                    district: district_of(x, y),
                    medium,
                    at: proj.at(x, y),
                }
            })
            .collect();
        // Routes: an L across the grid (along a street east, then one north), about ten
        // vehicles each, evenly spaced so the headway is the timetable's.
        let route_count = spec
            .vehicles
            .div_ceil(10)
            .max(usize::from(spec.vehicles > 0));
        let mut routes = Vec::with_capacity(route_count);
        for r in 0..route_count {
            let row = rng.gen_range(0..n) as f64;
            let col = rng.gen_range(0..n) as f64;
            let y = -half + row * BLOCK_M;
            let x = -half + col * BLOCK_M;
            let (start, corner, end) = if r % 2 == 0 {
                ((-half, y), (x, y), (x, half))
            } else {
                ((half, y), (x, y), (x, -half))
            };
            let local = [start, corner, end];
            let length_m = seg_len(start, corner) + seg_len(corner, end);
            let stops = (length_m / STOP_SPACING_M).floor() as usize + 1;
            routes.push(Route {
                id: format!("R{}", r + 1),
                line: local.iter().map(|p| proj.at(p.0, p.1)).collect(),
                stops_m: (0..stops)
                    .map(|s| (s as f64 * STOP_SPACING_M).min(length_m))
                    .collect(),
                length_m,
                headway_s: 0.0,
            });
        }
        let mut vehicles = Vec::with_capacity(spec.vehicles);
        for i in 0..spec.vehicles {
            let r = i % route_count.max(1);
            let on_route =
                spec.vehicles / route_count + usize::from(r < spec.vehicles % route_count);
            let nth = i / route_count;
            let route = &routes[r];
            // Round trips: a vehicle covers twice the length per cycle.
            let start_m = 2.0 * route.length_m * nth as f64 / on_route as f64;
            vehicles.push(Vehicle {
                id: format!("V{:04}", i + 1),
                route: route.id.clone(),
                start_m,
                at: position_on(route, start_m),
            });
        }
        for route in &mut routes {
            let on_route = vehicles
                .iter()
                .filter(|v| v.route == route.id)
                .count()
                .max(1);
            route.headway_s = (2.0 * route.length_m / BUS_SPEED_MPS / on_route as f64).round();
        }
        City {
            spec: spec.clone(),
            districts,
            streets,
            cabinets,
            lamps,
            meters,
            routes,
            vehicles,
        }
    }

    /// Every device of the city, as the inventory lists them.
    pub fn devices(&self) -> Vec<Device> {
        let tenant = &self.spec.tenant;
        let device = |id: &str, kind, at: (f64, f64)| Device {
            tenant: tenant.clone(),
            id: id.to_owned(),
            kind,
            district: None,
            cabinet: None,
            rated_power_w: None,
            medium: None,
            route: None,
            lon: at.0,
            lat: at.1,
            props: Map::new(),
        };
        let mut out = Vec::with_capacity(
            self.cabinets.len() + self.lamps.len() + self.meters.len() + self.vehicles.len(),
        );
        for c in &self.cabinets {
            out.push(Device {
                district: Some(c.district.clone()),
                ..device(&c.id, Kind::Cabinet, c.at)
            });
        }
        for l in &self.lamps {
            let mut d = Device {
                district: Some(l.district.clone()),
                cabinet: Some(l.cabinet.clone()),
                rated_power_w: Some(l.rated_power_w),
                ..device(&l.id, Kind::Light, l.at)
            };
            d.props
                .insert("street".into(), Value::String(l.street.clone()));
            out.push(d);
        }
        for m in &self.meters {
            out.push(Device {
                district: Some(m.district.clone()),
                medium: Some(m.medium.to_owned()),
                ..device(&m.id, Kind::Meter, m.at)
            });
        }
        for v in &self.vehicles {
            out.push(Device {
                route: Some(v.route.clone()),
                ..device(&v.id, Kind::Vehicle, v.at)
            });
        }
        out
    }

    /// Every bus route of the city, as the inventory lists them.
    pub fn route_lines(&self) -> Vec<RouteLine> {
        self.routes
            .iter()
            .map(|r| {
                let mut props = Map::new();
                props.insert("headway_s".into(), json!(r.headway_s));
                RouteLine {
                    tenant: self.spec.tenant.clone(),
                    id: r.id.clone(),
                    line: r.line.clone(),
                    props,
                }
            })
            .collect()
    }

    /// The inventory: a FeatureCollection with a Point per device and a LineString per
    /// bus route (`cityhub devices import`).
    pub fn inventory_geojson(&self) -> String {
        let mut out = String::from("{\"type\":\"FeatureCollection\",\"features\":[\n");
        for (i, d) in self.devices().iter().enumerate() {
            let mut props = Map::new();
            props.insert("id".into(), json!(d.id));
            props.insert("kind".into(), json!(d.kind.as_str()));
            props.insert("tenant".into(), json!(d.tenant));
            for (key, value) in [
                ("district", &d.district),
                ("cabinet", &d.cabinet),
                ("medium", &d.medium),
                ("route", &d.route),
            ] {
                if let Some(v) = value {
                    props.insert(key.into(), json!(v));
                }
            }
            if let Some(w) = d.rated_power_w {
                props.insert("rated_power_w".into(), json!(w));
            }
            props.extend(d.props.clone());
            if i > 0 {
                out.push_str(",\n");
            }
            let _ = write!(
                out,
                r#"{{"type":"Feature","geometry":{{"type":"Point","coordinates":[{},{}]}},"properties":{}}}"#,
                d.lon,
                d.lat,
                Value::Object(props)
            );
        }
        for r in self.route_lines() {
            let mut props = Map::new();
            props.insert("kind".into(), json!("route"));
            props.insert("id".into(), json!(r.id));
            props.insert("tenant".into(), json!(r.tenant));
            props.extend(r.props);
            let line: Vec<[f64; 2]> = r.line.iter().map(|p| [p.0, p.1]).collect();
            if !out.ends_with("[\n") {
                out.push_str(",\n");
            }
            let _ = write!(
                out,
                "{}",
                json!({"type":"Feature","geometry":{"type":"LineString","coordinates":line},"properties":props})
            );
        }
        out.push_str("\n]}\n");
        out
    }

    /// The base map: district outlines, streets and bus routes (for the dashboard).
    pub fn map_geojson(&self) -> String {
        let ring = |pts: &[(f64, f64)]| pts.iter().map(|p| json!([p.0, p.1])).collect::<Vec<_>>();
        let mut features = Vec::new();
        for d in &self.districts {
            features.push(json!({"type":"Feature","geometry":{"type":"Polygon","coordinates":[ring(&d.outline)]},
                "properties":{"layer":"district","id":d.id}}));
        }
        for s in &self.streets {
            features.push(json!({"type":"Feature","geometry":{"type":"LineString","coordinates":ring(&s.points)},
                "properties":{"layer":"street","id":s.id}}));
        }
        for r in &self.routes {
            features.push(json!({"type":"Feature","geometry":{"type":"LineString","coordinates":ring(&r.line)},
                "properties":{"layer":"route","id":r.id,"headway_s":r.headway_s,"stops_m":r.stops_m}}));
        }
        let mut text = json!({"type":"FeatureCollection","features":features}).to_string();
        text.push('\n');
        text
    }
}

fn seg_len(a: (f64, f64), b: (f64, f64)) -> f64 {
    ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt()
}

/// Where a vehicle `m` metres into its round trip is (out along the line, then back).
pub fn position_on(route: &Route, m: f64) -> (f64, f64) {
    let cycle = 2.0 * route.length_m;
    let mut d = m.rem_euclid(cycle.max(1e-9));
    if d > route.length_m {
        d = cycle - d;
    }
    // Interpolate in degrees along the polyline; segments are short enough for that.
    let mut left = d / route.length_m.max(1e-9);
    let lens: Vec<f64> = route.line.windows(2).map(|w| seg_len(w[0], w[1])).collect();
    let total: f64 = lens.iter().sum();
    for (w, len) in route.line.windows(2).zip(&lens) {
        // A repeated point is a segment of no length: nothing to travel on it.
        if *len == 0.0 {
            continue;
        }
        let share = len / total.max(1e-12);
        if left <= share {
            let t = left / share;
            return (
                round7(w[0].0 + (w[1].0 - w[0].0) * t),
                round7(w[0].1 + (w[1].1 - w[0].1) * t),
            );
        }
        left -= share;
    }
    *route.line.last().unwrap_or(&(0.0, 0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(seed: u64) -> CitySpec {
        CitySpec {
            seed,
            lamps: 3_000,
            meters: 500,
            vehicles: 25,
            ..CitySpec::default()
        }
    }

    #[test]
    fn a_repeated_point_does_not_hold_a_vehicle_in_place() {
        let line = vec![(-9.0, 38.0), (-9.0, 38.0), (-9.0, 38.01)];
        let length_m = seg_len(line[1], line[2]);
        let route = Route {
            id: "R1".into(),
            line,
            stops_m: vec![],
            length_m,
            headway_s: 600.0,
        };
        assert_eq!(position_on(&route, 0.0), (-9.0, 38.0));
        let (_, lat) = position_on(&route, length_m / 2.0);
        assert!((lat - 38.005).abs() < 1e-6, "half way: {lat}");
        assert_eq!(position_on(&route, length_m), (-9.0, 38.01));
    }

    #[test]
    fn the_same_seed_gives_the_same_city_byte_for_byte() {
        let a = City::generate(&spec(7));
        let b = City::generate(&spec(7));
        assert_eq!(a.inventory_geojson(), b.inventory_geojson());
        assert_eq!(a.map_geojson(), b.map_geojson());
        assert_ne!(
            a.inventory_geojson(),
            City::generate(&spec(8)).inventory_geojson()
        );
    }

    #[test]
    fn sizes_follow_the_spec_and_cabinets_feed_20_to_80_lamps() {
        for lamps in [1, 19, 20, 81, 3_000, 10_007] {
            let city = City::generate(&CitySpec { lamps, ..spec(3) });
            assert_eq!(city.lamps.len(), lamps);
            let mut per_cabinet = std::collections::HashMap::new();
            for l in &city.lamps {
                *per_cabinet.entry(l.cabinet.as_str()).or_insert(0usize) += 1;
            }
            assert_eq!(per_cabinet.len(), city.cabinets.len());
            for (cabinet, n) in per_cabinet {
                let ok =
                    (CABINET_LAMPS.0..=CABINET_LAMPS.1).contains(&n) || lamps < CABINET_LAMPS.0;
                assert!(ok, "{lamps} lamps: {cabinet} feeds {n}");
            }
        }
        let city = City::generate(&spec(3));
        assert_eq!(
            (city.meters.len(), city.vehicles.len(), city.routes.len()),
            (500, 25, 3)
        );
        assert!(city
            .routes
            .iter()
            .all(|r| r.headway_s > 0.0 && r.stops_m.len() >= 2));
    }

    #[test]
    fn the_inventory_is_one_the_hub_accepts() {
        let city = City::generate(&spec(5));
        let inventory =
            model::inventory::parse_inventory(&city.inventory_geojson()).expect("valid inventory");
        assert_eq!(inventory.routes, city.route_lines());
        assert!(!inventory.routes.is_empty());
        let devices = inventory.devices;
        assert_eq!(devices, city.devices());
        let lamp = devices.iter().find(|d| d.kind == Kind::Light).unwrap();
        assert!(lamp.cabinet.is_some() && lamp.rated_power_w.is_some() && lamp.district.is_some());
        // Lamps sit within the city, about where it was asked to be.
        for d in &devices {
            assert!(
                (d.lon - city.spec.center.0).abs() < 0.1
                    && (d.lat - city.spec.center.1).abs() < 0.1
            );
        }
    }

    #[test]
    fn vehicles_run_along_their_route_and_back() {
        let city = City::generate(&spec(9));
        let route = &city.routes[0];
        assert_eq!(position_on(route, 0.0), route.line[0]);
        assert_eq!(
            position_on(route, route.length_m),
            *route.line.last().unwrap()
        );
        assert_eq!(position_on(route, 2.0 * route.length_m), route.line[0]);
    }
}

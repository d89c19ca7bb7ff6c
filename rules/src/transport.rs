//! Transport rules: a vehicle off its route, two of a route bunched together, a vehicle
//! stopped too long.

use model::{RecordType, Row, Timestamp};

use crate::engine::{Asset, Check, Decision, Engine, OutageKind, State};

/// A vehicle's latest position.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Position {
    ts: Timestamp,
    lon: f64,
    lat: f64,
    bearing: Option<f64>,
}

const METRES_PER_DEGREE: f64 = 111_320.0;

/// Distance in metres from a point to a polyline (lon, lat), on a local flat projection
/// (good to a fraction of a percent over a city).
pub fn distance_to_line(lon: f64, lat: f64, line: &[(f64, f64)]) -> f64 {
    let k = lat.to_radians().cos();
    let xy = |p: (f64, f64)| {
        (
            (p.0 - lon) * k * METRES_PER_DEGREE,
            (p.1 - lat) * METRES_PER_DEGREE,
        )
    };
    let mut best = f64::INFINITY;
    for w in line.windows(2) {
        let (a, b) = (xy(w[0]), xy(w[1]));
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len2 = dx * dx + dy * dy;
        let t = if len2 > 0.0 {
            (-(a.0 * dx + a.1 * dy) / len2).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let (x, y) = (a.0 + t * dx, a.1 + t * dy);
        best = best.min((x * x + y * y).sqrt());
    }
    if line.len() == 1 {
        let (x, y) = xy(line[0]);
        best = (x * x + y * y).sqrt();
    }
    best
}

fn distance(a: &Position, b: &Position) -> f64 {
    distance_to_line(a.lon, a.lat, &[(b.lon, b.lat)])
}

impl Engine {
    pub(crate) fn vehicle(&self, state: &mut State, a: &Asset, row: &Row, out: &mut Vec<Decision>) {
        let r = RecordType::Vehicle;
        let ts = row.ts;
        if let Some(speed) = row.get(r, "speed_mps").as_f64() {
            let c = self.config.stopped_too_long;
            let check = Check {
                kind: OutageKind::StoppedTooLong,
                faulty: speed < c.max_speed_mps,
                ts,
                on_delay_s: c.on_delay_s,
                off_delay_s: c.off_delay_s,
                reason: || format!("stopped for more than {} min", c.on_delay_s / 60),
            };
            self.update(state, a, check, out);
        }
        let (Some(lon), Some(lat)) = (row.get(r, "lon").as_f64(), row.get(r, "lat").as_f64())
        else {
            return;
        };
        let Some(route) = a.route else {
            return;
        };
        let here = Position {
            ts,
            lon,
            lat,
            bearing: row.get(r, "bearing_deg").as_f64(),
        };
        if let Some(line) = self.routes.get(&route) {
            let c = self.config.off_route;
            let d = distance_to_line(lon, lat, line);
            let check = Check {
                kind: OutageKind::OffRoute,
                faulty: d > c.max_distance_m,
                ts,
                on_delay_s: c.on_delay_s,
                off_delay_s: c.off_delay_s,
                reason: || format!("{d:.0} m from its route"),
            };
            self.update(state, a, check, out);
        }
        self.bunching(state, a, route, here, out);
    }

    /// Two vehicles of one route heading the same way within `max_gap_m` of each other.
    /// One outage per pair, on the vehicle with the lower id.
    fn bunching(
        &self,
        state: &mut State,
        a: &Asset,
        route: i32,
        here: Position,
        out: &mut Vec<Decision>,
    ) {
        let c = self.config.bunching;
        let max_age = c.max_age_s * 1_000_000;
        let positions = state.positions.entry(route).or_default();
        let keep = positions.get(&a.id).is_none_or(|p| p.ts <= here.ts);
        if keep {
            positions.insert(a.id, here);
        }
        let mut verdicts = Vec::new();
        for (&other, p) in positions.iter() {
            if other == a.id || (p.ts.micros() - here.ts.micros()).abs() > max_age {
                continue;
            }
            let same_way = match (here.bearing, p.bearing) {
                (Some(x), Some(y)) => {
                    let diff = (x - y).rem_euclid(360.0);
                    diff.min(360.0 - diff) < 90.0
                }
                _ => true,
            };
            let gap = distance(&here, p);
            let pair = (a.id.min(other), a.id.max(other));
            let close = same_way && gap <= c.max_gap_m;
            if close || state.bunched.contains(&pair) {
                verdicts.push((pair, close, gap));
            }
        }
        verdicts.sort_by_key(|v| v.0);
        for (pair, close, gap) in verdicts {
            if close {
                state.bunched.insert(pair);
            } else {
                state.bunched.remove(&pair);
            }
            let Some(first) = self.assets.get(&pair.0) else {
                continue;
            };
            let partner = if pair.0 == a.id { pair.1 } else { a.id };
            let name = self
                .assets
                .get(&partner)
                .map_or("?", |p| p.name.as_str())
                .to_owned();
            let check = Check {
                kind: OutageKind::Bunching,
                faulty: close,
                ts: here.ts,
                on_delay_s: c.on_delay_s,
                off_delay_s: c.off_delay_s,
                reason: || format!("{gap:.0} m behind or ahead of {name} on the same route"),
            };
            self.update(state, first, check, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_to_a_line_are_in_metres() {
        // A line along the equator from 0 to 0.01 degrees (about 1113 m).
        let line = [(0.0, 0.0), (0.01, 0.0)];
        let d = distance_to_line(0.005, 0.001, &line);
        assert!((d - 111.3).abs() < 0.5, "{d}");
        let beyond = distance_to_line(0.011, 0.0, &line);
        assert!((beyond - 111.3).abs() < 0.5, "{beyond}");
        assert_eq!(distance_to_line(0.003, 0.0, &line), 0.0);
        assert!(distance_to_line(0.0, 0.0, &[]).is_infinite());
    }
}

//! Transport rules: a vehicle off its route, two of a route bunched together, a vehicle
//! stopped too long.

use model::fields::vehicle;
use model::Row;

use crate::engine::{Asset, Check, Decision, Engine, OutageKind};
pub use crate::state::distance_to_line;
use crate::state::{distance, Closeness, Gaps, Position, State, Track};

impl Engine {
    pub(crate) fn vehicle(&self, state: &mut State, a: &Asset, row: &Row, out: &mut Vec<Decision>) {
        let ts = row.ts;
        if let Some(speed) = row.cell(vehicle::SPEED_MPS).as_f64() {
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
        let (Some(lon), Some(lat)) = (
            row.cell(vehicle::LON).as_f64(),
            row.cell(vehicle::LAT).as_f64(),
        ) else {
            return;
        };
        let Some(route) = a.route else {
            return;
        };
        let here = Position { ts, lon, lat };
        let speed = row.cell(vehicle::SPEED_MPS).as_f64().unwrap_or(0.0);
        if let Some(line) = self.routes.get(&route).map(|r| &r.line) {
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
        self.bunching(state, a, route, here, speed, out);
    }

    /// Two vehicles of one route closer together than a share of the timetable's headway
    /// (and never more than `max_gap_m`) for the on-delay: one outage per pair, on the
    /// vehicle whose inventory id comes first, its reason naming the other. Positions are
    /// compared at the same instant: the other vehicle's last position against where this
    /// one was then, between its last two readings.
    ///
    /// Each pair has its own on-delay: close at every judgement, without a break in the
    /// evidence longer than `max_age_s`, for `on_delay_s`. Vehicles passing each other, or
    /// meeting at a terminus, are close only for moments: they never confirm a pair, so
    /// they neither raise an outage nor keep one open. Every position of either vehicle
    /// judges their pair, close or not, so a pair that drives apart ends at once and the
    /// outage clears `off_delay_s` later.
    fn bunching(
        &self,
        state: &mut State,
        a: &Asset,
        route: i32,
        here: Position,
        speed: f64,
        out: &mut Vec<Decision>,
    ) {
        let c = self.config.bunching;
        let max_age = c.max_age_s * 1_000_000;
        let headway = self.routes.get(&route).and_then(|r| r.headway_s);
        let limit = headway.map_or(c.max_gap_m, |h| {
            c.max_gap_m.min(c.headway_share * h * speed.max(1.0))
        });
        let tracks = state.tracks.entry(route).or_default();
        let track = match tracks.get(&a.id) {
            Some(t) if t.last.ts > here.ts => return, // late: its track has moved on
            Some(t) if here.ts.micros() - t.last.ts.micros() <= max_age => Track {
                last: here,
                before: Some(t.last),
                speed,
            },
            _ => Track {
                last: here,
                before: None,
                speed,
            },
        };
        tracks.insert(a.id, track);
        // Pairs judged by this position: (holder, other, gap at the other's last position,
        // gap now less what setting the other ahead can get wrong; none when the other's
        // last position is too old to compare with, which ends the pair). The gap now sets
        // the other ahead on its own speed and heading, so a pair that has clearly come
        // apart is found apart at this report, not the next.
        let mut judged: Vec<(i32, i32, Option<Gaps>)> = Vec::new();
        for (&other, t) in tracks.iter() {
            if other == a.id {
                continue;
            }
            let (holder, partner) = self.pair(a.id, other);
            if let Some(mine) = track.at(t.last.ts) {
                let then = distance(&mine, &t.last);
                let now = t
                    .ahead(here.ts, max_age)
                    .map(|(theirs, travel)| distance(&here, &theirs) - 2.0 * travel);
                judged.push((holder, partner, Some((then, now))));
            } else if here.ts.micros() - t.last.ts.micros() > max_age {
                judged.push((holder, partner, None));
            }
        }
        judged.sort_by_key(|j| (j.0, j.1));
        let on_delay = c.on_delay_s * 1_000_000;
        state
            .parted
            .retain(|_, (_, at)| here.ts.micros() - at.micros() <= max_age);
        let mut holders: Vec<i32> = Vec::new();
        for &(holder, partner, gap) in &judged {
            let key = (holder, partner);
            let was = state.bunched.contains_key(&key);
            // Hysteresis: a close pair stays close until clearly apart, so a follower
            // right at the limit does not come and go with every reading's speed.
            // Close: at the instant both were known, within the limit; still close: within
            // the limit and its hysteresis then and now.
            let close = gap.and_then(|(then, now)| {
                if was {
                    let reach = limit * (1.0 + c.hysteresis);
                    (then <= reach && now.is_none_or(|n| n <= reach)).then_some(then)
                } else {
                    (then <= limit).then_some(then)
                }
            });
            match close {
                Some(gap) => {
                    // A confirmed pair found apart for a moment (a position interpolated
                    // across a turn) and close again within `max_age_s` carries on
                    // confirmed, rather than start its on-delay over while its outage clears.
                    let since = match state.parted.remove(&key) {
                        Some((since, at)) if here.ts.micros() - at.micros() <= max_age => since,
                        _ => here.ts,
                    };
                    let pair = state.bunched.entry(key).or_insert(Closeness {
                        gap,
                        since,
                        last: here.ts,
                    });
                    if here.ts.micros() - pair.last.micros() > max_age {
                        // A break in the evidence (a backlog, a silent bus): start over.
                        pair.since = here.ts;
                    }
                    pair.gap = gap;
                    pair.last = pair.last.max(here.ts);
                }
                None => {
                    if let Some(k) = state.bunched.remove(&key) {
                        if k.last.micros() - k.since.micros() >= on_delay {
                            state.parted.insert(key, (k.since, here.ts));
                        }
                    }
                }
            }
            if was || state.bunched.contains_key(&key) {
                holders.push(holder);
            }
        }
        holders.dedup();
        for holder in holders {
            let Some(asset) = self.assets.get(&holder) else {
                continue;
            };
            // The holder's closest confirmed pair: close for the on-delay.
            let confirmed = state
                .bunched
                .iter()
                .filter(|(p, k)| p.0 == holder && k.last.micros() - k.since.micros() >= on_delay)
                .min_by(|x, y| x.1.gap.total_cmp(&y.1.gap).then(x.0.cmp(y.0)))
                .map(|(p, k)| (p.1, k.gap));
            if confirmed.is_none() && !state.is_active((holder, OutageKind::Bunching)) {
                continue;
            }
            let reason = || match confirmed {
                Some((partner, gap)) => {
                    let name = self.assets.get(&partner).map_or("?", |p| p.name.as_str());
                    format!("{gap:.0} m from {name} of the same route")
                }
                None => "close to another vehicle of the same route".into(),
            };
            let check = Check {
                kind: OutageKind::Bunching,
                faulty: confirmed.is_some(),
                ts: here.ts,
                on_delay_s: 0,
                off_delay_s: c.off_delay_s,
                reason,
            };
            self.update(state, asset, check, out);
        }
    }

    /// A pair of vehicles as (the one whose outage it is, the other): the one whose
    /// inventory id sorts first.
    fn pair(&self, x: i32, y: i32) -> (i32, i32) {
        let name = |id: i32| self.assets.get(&id).map(|a| a.name.as_str());
        if (name(x), x) <= (name(y), y) {
            (x, y)
        } else {
            (y, x)
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

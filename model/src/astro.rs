//! The astronomical clock: civil dawn and dusk at a place, for lamps that burn from dusk
//! to dawn. Pure computation (the `sunrise` crate's solar equations); no clock is read.
//!
//! Days are solar days at the place's longitude, so a city far from Greenwich gets its own
//! night rather than the UTC calendar's. Where the sun does not cross civil twilight that
//! day (polar day or night), the season decides: dark all day in polar night.

use chrono::{DateTime, Datelike, Utc};
use sunrise::{Coordinates, DawnType, SolarDay, SolarEvent};

use crate::Timestamp;

/// Civil dawn and dusk of the solar day containing `ts` at (`lon`, `lat`), if they occur.
pub fn civil_twilight(lon: f64, lat: f64, ts: Timestamp) -> (Option<Timestamp>, Option<Timestamp>) {
    let Some(coord) = Coordinates::new(lat, lon) else {
        return (None, None);
    };
    let local = ts.to_datetime() + chrono::Duration::seconds((lon / 15.0 * 3600.0) as i64);
    let day = SolarDay::new(coord, local.date_naive());
    let at = |e| day.event_time(e).map(Timestamp::from_datetime);
    (
        at(SolarEvent::Dawn(DawnType::Civil)),
        at(SolarEvent::Dusk(DawnType::Civil)),
    )
}

/// Whether it is dark (between civil dusk and civil dawn) at (`lon`, `lat`) at `ts`.
pub fn is_dark(lon: f64, lat: f64, ts: Timestamp) -> bool {
    match civil_twilight(lon, lat, ts) {
        (Some(dawn), Some(dusk)) => ts < dawn || ts >= dusk,
        _ => polar_night(lat, ts.to_datetime()),
    }
}

/// Without a twilight crossing: polar night when the sun is on the other side of the
/// equator from the place (winter there).
fn polar_night(lat: f64, t: DateTime<Utc>) -> bool {
    let day_of_year = t.ordinal() as f64;
    let declination = -23.44 * (2.0 * std::f64::consts::PI / 365.0 * (day_of_year + 10.0)).cos();
    lat * declination < 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        Timestamp::from_rfc3339(s).unwrap()
    }

    #[test]
    fn lisbon_in_november_is_dark_at_night_only() {
        let (lon, lat) = (-9.14, 38.72);
        assert!(is_dark(lon, lat, at("2026-11-22T03:00:00Z")));
        assert!(!is_dark(lon, lat, at("2026-11-22T12:00:00Z")));
        assert!(is_dark(lon, lat, at("2026-11-22T19:00:00Z")));
        let (dawn, dusk) = civil_twilight(lon, lat, at("2026-11-22T12:00:00Z"));
        // Civil dawn about 07:00 UTC, dusk about 17:45 UTC in late November.
        let (dawn, dusk) = (dawn.unwrap().to_datetime(), dusk.unwrap().to_datetime());
        assert!((6..=7).contains(&chrono::Timelike::hour(&dawn)), "{dawn}");
        assert!((17..=18).contains(&chrono::Timelike::hour(&dusk)), "{dusk}");
    }

    #[test]
    fn far_west_cities_get_their_own_night() {
        // Honolulu, 21:00 local (07:00 UTC next day) is dark; 12:00 local (22:00 UTC) is not.
        let (lon, lat) = (-157.86, 21.31);
        assert!(is_dark(lon, lat, at("2026-06-22T07:00:00Z")));
        assert!(!is_dark(lon, lat, at("2026-06-21T22:00:00Z")));
    }

    #[test]
    fn polar_day_and_night() {
        let tromso = (18.96, 69.65);
        assert!(
            !is_dark(tromso.0, tromso.1, at("2026-06-21T00:00:00Z")),
            "midnight sun"
        );
        // Longyearbyen: the sun stays below civil twilight all day in December.
        let longyearbyen = (15.65, 78.22);
        assert!(
            is_dark(longyearbyen.0, longyearbyen.1, at("2026-12-21T11:00:00Z")),
            "polar night at noon"
        );
        let mcmurdo = (166.67, -77.85);
        assert!(is_dark(mcmurdo.0, mcmurdo.1, at("2026-06-21T00:00:00Z")));
    }
}

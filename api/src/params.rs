//! Reading and bounding what callers send in query strings: page sizes and cursors, time
//! ranges, bounding boxes, states. Each check fails with a 400 that names the parameter,
//! what was sent and what is accepted.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Datelike, Duration, SecondsFormat, Utc};

use crate::error::ApiError;

/// Items per page when `limit` is not given.
pub const DEFAULT_LIMIT: i64 = 100;
/// The most items a page may hold.
pub const MAX_LIMIT: i64 = 1000;
/// The longest time range a request may cover.
pub const MAX_RANGE_DAYS: i64 = 400;
/// The longest free text (comments, reasons, notes) accepted, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;

/// The page size asked for, within 1..=[`MAX_LIMIT`].
pub fn limit(asked: Option<i64>) -> Result<i64, ApiError> {
    match asked {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}, not {n}"
        ))),
    }
}

/// What a cursor points after. Each list has its own kind, so a cursor of one list is
/// refused by another instead of silently skipping rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorKind {
    Outages,
    /// Outages most severe first: the rank of the severity, then time and id.
    OutagesBySeverity(i16),
    WorkOrders,
    Devices,
    /// Command batches (issue time and id).
    CommandBatches,
    /// A batch's per-device commands (device id).
    BatchDevices,
    /// Lighting schedules (id).
    Schedules,
    /// A webhook's messages, newest first (id).
    WebhookMessages,
}

impl CursorKind {
    fn tag(self) -> &'static str {
        match self {
            CursorKind::Outages => "o",
            CursorKind::OutagesBySeverity(0) => "o0",
            CursorKind::OutagesBySeverity(1) => "o1",
            CursorKind::OutagesBySeverity(_) => "o2",
            CursorKind::WorkOrders => "w",
            CursorKind::Devices => "d",
            CursorKind::CommandBatches => "c",
            CursorKind::BatchDevices => "cd",
            CursorKind::Schedules => "s",
            CursorKind::WebhookMessages => "m",
        }
    }
}

/// The opaque cursor after a row with time `at` (microseconds) and `id`.
pub fn encode_cursor(kind: CursorKind, at: Option<DateTime<Utc>>, id: i64) -> String {
    let micros = at.map_or(0, |t| t.timestamp_micros());
    URL_SAFE_NO_PAD.encode(format!("{}:{micros}:{id}", kind.tag()))
}

/// Reads a cursor this API gave out for `kind`: the (time, id) it points after.
pub fn decode_cursor(kind: CursorKind, cursor: &str) -> Result<(DateTime<Utc>, i64), ApiError> {
    let refused = || {
        ApiError::bad_request(
            "cursor is not one this list gave out; start again without it and follow next_cursor",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| refused())?;
    let text = String::from_utf8(bytes).map_err(|_| refused())?;
    let mut parts = text.split(':');
    let (Some(tag), Some(micros), Some(id), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(refused());
    };
    if tag != kind.tag() {
        return Err(refused());
    }
    let micros: i64 = micros.parse().map_err(|_| refused())?;
    let id: i64 = id.parse().map_err(|_| refused())?;
    // Every cursor given out points at a time stored in the database; one outside the
    // years 1 to 9999 was made up (and PostgreSQL could not compare it anyway).
    let at = DateTime::from_timestamp_micros(micros)
        .filter(|t| (1..=9999).contains(&t.year()))
        .ok_or_else(refused)?;
    Ok((at, id))
}

/// Reads a cursor of [`CursorKind::OutagesBySeverity`]: the (rank, time, id) it points after.
pub fn decode_ranked_cursor(cursor: &str) -> Result<(i16, DateTime<Utc>, i64), ApiError> {
    let mut refused = None;
    for rank in 0..3 {
        match decode_cursor(CursorKind::OutagesBySeverity(rank), cursor) {
            Ok((at, id)) => return Ok((rank, at, id)),
            Err(e) => refused = Some(e),
        }
    }
    Err(refused.unwrap_or_else(|| ApiError::bad_request("cursor is not one this list gave out")))
}

/// An RFC 3339 time given as `name`.
pub fn time(name: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(value) = value else {
        return Ok(None);
    };
    DateTime::parse_from_rfc3339(value)
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|_| {
            ApiError::bad_request(format!(
                "{name} must be an RFC 3339 time such as 2026-03-01T00:00:00Z, not `{value}`"
            ))
        })
}

/// Checks that a range runs forward and spans at most [`MAX_RANGE_DAYS`].
pub fn range(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<(), ApiError> {
    let show = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    if to <= from {
        return Err(ApiError::bad_request(format!(
            "the time range runs backwards: to ({}) must be after from ({})",
            show(to),
            show(from)
        )));
    }
    if to - from > Duration::days(MAX_RANGE_DAYS) {
        return Err(ApiError::bad_request(format!(
            "the time range is too long: at most {MAX_RANGE_DAYS} days, asked for {} days and {:.3} s",
            (to - from).num_days(),
            (to - from - Duration::days((to - from).num_days())).num_milliseconds() as f64 / 1000.0
        )));
    }
    Ok(())
}

/// The start and end of an open-ended time range.
pub type OpenRange = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// A `from`/`to` pair where both are optional; checked when both are given.
pub fn optional_range(from: Option<&str>, to: Option<&str>) -> Result<OpenRange, ApiError> {
    let (from, to) = (time("from", from)?, time("to", to)?);
    if let (Some(f), Some(t)) = (from, to) {
        range(f, t)?;
    }
    Ok((from, to))
}

/// A `from`/`to` pair that defaults to the `default` span ending now.
pub fn report_range(
    from: Option<&str>,
    to: Option<&str>,
    now: DateTime<Utc>,
    default: Duration,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let to = time("to", to)?.unwrap_or(now);
    let from = time("from", from)?.unwrap_or(to - default);
    range(from, to)?;
    Ok((from, to))
}

/// `minlon,minlat,maxlon,maxlat` in degrees (WGS 84).
pub fn bbox(value: Option<&str>) -> Result<Option<[f64; 4]>, ApiError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let refused = |why: &str| {
        ApiError::bad_request(format!(
            "bbox must be minlon,minlat,maxlon,maxlat in degrees ({why}), not `{value}`"
        ))
    };
    let numbers: Vec<f64> = value
        .split(',')
        .map(|n| n.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| refused("four numbers"))?;
    let [min_lon, min_lat, max_lon, max_lat] = numbers[..] else {
        return Err(refused("four numbers"));
    };
    if [min_lon, min_lat, max_lon, max_lat]
        .iter()
        .any(|n| !n.is_finite())
    {
        return Err(refused("four numbers"));
    }
    if !(-180.0..=180.0).contains(&min_lon) || !(-180.0..=180.0).contains(&max_lon) {
        return Err(refused("longitudes between -180 and 180"));
    }
    if !(-90.0..=90.0).contains(&min_lat) || !(-90.0..=90.0).contains(&max_lat) {
        return Err(refused("latitudes between -90 and 90"));
    }
    if min_lon > max_lon || min_lat > max_lat {
        return Err(refused("the minimums first"));
    }
    Ok(Some([min_lon, min_lat, max_lon, max_lat]))
}

/// A value that must be one of `allowed`, given as `name`.
pub fn one_of<'a>(
    name: &str,
    value: Option<&'a str>,
    allowed: &[&str],
) -> Result<Option<&'a str>, ApiError> {
    match value {
        Some(v) if !allowed.contains(&v) => Err(ApiError::bad_request(format!(
            "{name} `{v}` is not one of {}",
            allowed.join(", ")
        ))),
        other => Ok(other),
    }
}

/// A name of the domain's vocabulary given as `name` (a state, a status, a severity):
/// `None` when absent, 400 naming every accepted name when it is not one of them.
pub fn named<T: model::Vocabulary>(name: &str, value: Option<&str>) -> Result<Option<T>, ApiError> {
    value
        .map(|v| {
            T::parse(v).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{name} `{v}` is not one of {}",
                    T::names().join(", ")
                ))
            })
        })
        .transpose()
}

/// Free text given as `name`: not blank, at most [`MAX_TEXT_CHARS`].
pub fn text<'a>(name: &str, value: &'a str) -> Result<&'a str, ApiError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ApiError::bad_request(format!("{name} must not be empty")));
    }
    let chars = trimmed.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(ApiError::bad_request(format!(
            "{name} is too long: at most {MAX_TEXT_CHARS} characters, got {chars}"
        )));
    }
    Ok(trimmed)
}

/// A short name (an id, a kind, a team) given as `name`: at most 64 characters, no
/// control characters.
pub fn short<'a>(name: &str, value: Option<&'a str>) -> Result<Option<&'a str>, ApiError> {
    match value {
        Some(v) if v.is_empty() || v.chars().count() > 64 || v.chars().any(char::is_control) => {
            Err(ApiError::bad_request(format!(
                "{name} must be 1 to 64 printable characters"
            )))
        }
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn message<T: std::fmt::Debug>(r: Result<T, ApiError>) -> String {
        r.unwrap_err().message().to_owned()
    }

    #[test]
    fn limits() {
        assert_eq!(limit(None).unwrap(), 100);
        assert_eq!(limit(Some(1000)).unwrap(), 1000);
        assert_eq!(
            message(limit(Some(5000))),
            "limit must be between 1 and 1000, not 5000"
        );
        assert!(limit(Some(0)).is_err());
    }

    #[test]
    fn cursors_round_trip_and_refuse_strangers() {
        let t = at("2026-03-01T03:00:00.123456Z");
        let c = encode_cursor(CursorKind::Outages, Some(t), 42);
        assert_eq!(decode_cursor(CursorKind::Outages, &c).unwrap(), (t, 42));
        assert!(message(decode_cursor(CursorKind::WorkOrders, &c)).contains("cursor"));
        for bad in [
            "",
            "!!",
            "bzox",
            &URL_SAFE_NO_PAD.encode("o:1:2:3"),
            &URL_SAFE_NO_PAD.encode("o:-8000000000000000000:1"),
            &URL_SAFE_NO_PAD.encode("o:8000000000000000000:1"),
            &URL_SAFE_NO_PAD.encode("o:-62135596800000001:1"),
        ] {
            assert!(decode_cursor(CursorKind::Outages, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn time_ranges() {
        assert!(message(time("from", Some("yesterday"))).contains("from must be an RFC 3339"));
        assert!(message(optional_range(
            Some("2026-03-02T00:00:00Z"),
            Some("2026-03-01T00:00:00Z")
        ))
        .contains("runs backwards"));
        assert!(message(optional_range(
            Some("2020-01-01T00:00:00Z"),
            Some("2026-01-01T00:00:00Z")
        ))
        .contains("at most 400 days"));
        // A millisecond over says so.
        assert!(message(optional_range(
            Some("2025-01-01T00:00:00Z"),
            Some("2026-02-05T00:00:00.001Z")
        ))
        .ends_with("at most 400 days, asked for 400 days and 0.001 s"));
        let now = at("2026-03-02T00:00:00Z");
        assert_eq!(
            report_range(None, None, now, Duration::days(1)).unwrap(),
            (at("2026-03-01T00:00:00Z"), now)
        );
    }

    #[test]
    fn bounding_boxes() {
        assert_eq!(
            bbox(Some("-9.2,38.7,-9.1,38.8")).unwrap(),
            Some([-9.2, 38.7, -9.1, 38.8])
        );
        assert_eq!(bbox(None).unwrap(), None);
        for (bad, why) in [
            ("1,2,3", "four numbers"),
            ("a,b,c,d", "four numbers"),
            ("1,2,3,4,5", "four numbers"),
            ("NaN,1,2,3", "four numbers"),
            ("-200,0,0,1", "longitudes"),
            ("0,-91,1,1", "latitudes"),
            ("2,0,1,1", "minimums first"),
        ] {
            assert!(message(bbox(Some(bad))).contains(why), "{bad}");
        }
    }

    #[test]
    fn states_and_texts() {
        assert_eq!(
            message(one_of("state", Some("flying"), &["open", "closed"])),
            "state `flying` is not one of open, closed"
        );
        assert_eq!(
            one_of("state", Some("open"), &["open"]).unwrap(),
            Some("open")
        );
        assert!(message(text("text", "  ")).contains("must not be empty"));
        assert!(message(text("text", &"x".repeat(2001))).contains("too long"));
        assert!(short("kind", Some(&"k".repeat(65))).is_err());
    }
}

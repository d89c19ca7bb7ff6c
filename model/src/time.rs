//! Timestamps: microseconds since the Unix epoch, UTC. The contract accepts RFC 3339 with an
//! offset, or integer Unix milliseconds.

use std::fmt;

use chrono::{DateTime, Utc};

/// Microseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn from_unix_ms(ms: i64) -> Option<Timestamp> {
        ms.checked_mul(1000).map(Timestamp)
    }

    pub fn from_rfc3339(s: &str) -> Option<Timestamp> {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| Timestamp(t.timestamp_micros()))
    }

    pub fn from_datetime(t: DateTime<Utc>) -> Timestamp {
        Timestamp(t.timestamp_micros())
    }

    pub fn now() -> Timestamp {
        Timestamp::from_datetime(Utc::now())
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.0).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    pub fn add_secs(self, secs: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(secs.saturating_mul(1_000_000)))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            self.to_datetime()
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        )
    }
}

/// Which timestamps ingestion accepts, relative to the time a message is received.
#[derive(Debug, Clone, Copy)]
pub struct TimeWindow {
    /// Readings further than this in the future are refused (clock drift guard).
    pub max_future_secs: i64,
    /// Readings older than this are refused: they would be dropped by retention anyway.
    pub retention_days: i64,
}

impl Default for TimeWindow {
    fn default() -> Self {
        TimeWindow {
            max_future_secs: 300,
            retention_days: 365,
        }
    }
}

/// Where "now" comes from: the wall clock in production, a simulated clock in tests and
/// scenarios (one clock for ingestion, the rules, commands and the API alike).
pub type Clock = std::sync::Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The wall clock.
pub fn wall_clock() -> Clock {
    std::sync::Arc::new(Timestamp::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_agree() {
        let a = Timestamp::from_rfc3339("2026-11-22T10:00:00.123+01:00").unwrap();
        let b = Timestamp::from_unix_ms(1_795_338_000_123).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "2026-11-22T09:00:00.123Z");
    }

    #[test]
    fn rejects_rfc3339_without_offset() {
        assert_eq!(Timestamp::from_rfc3339("2026-11-22T10:00:00"), None);
        assert_eq!(Timestamp::from_rfc3339("yesterday"), None);
    }
}

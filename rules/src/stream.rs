//! The stream's time, which the engine judges against (its horizon is this less the
//! reordering window), not the wall's.
//!
//! A device is silent when nothing of it has arrived for a while. "A while" must be measured
//! against how far the stream of readings has got, not against the wall clock: while the
//! hub catches up on a backlog (after a restart, a broker outage), or while a reading is
//! still between the broker and the database, the wall clock runs ahead of what the hub
//! could have seen, and judging by it would call half the city silent.
//!
//! So while readings flow, "now" is the stream's watermark: the newest reading time of the
//! last few committed batches (the lowest of them, since two writers commit out of order),
//! never ahead of the hub's clock and never going back. When nothing has arrived for
//! [`STALL`] (a quiet hour, a city-wide outage: the stream itself stopped), "now" runs on
//! with the hub's clock from the newest reading of those batches (by then all have
//! committed), so silence is still found and nothing waits on one old message.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use model::{Committed, Timestamp};

/// No batch for this long (real time): the stream has stalled.
pub const STALL: Duration = Duration::from_millis(500);
/// Batches whose newest readings make the watermark.
const RECENT: usize = 4;

#[derive(Debug)]
pub struct StreamClock {
    recent: VecDeque<Timestamp>,
    watermark: Option<Timestamp>,
    /// The hub's clock minus the watermark at the last batch.
    lag_us: i64,
    last_batch: Option<Instant>,
}

impl StreamClock {
    pub fn new() -> StreamClock {
        StreamClock {
            recent: VecDeque::with_capacity(RECENT + 1),
            watermark: None,
            lag_us: 0,
            last_batch: None,
        }
    }

    /// A committed batch, seen at `clock` (the hub's clock).
    pub fn batch(&mut self, batch: &Committed, clock: Timestamp) {
        let Some(newest) = batch.rows.iter().map(|o| o.row.ts).max() else {
            return;
        };
        self.recent.push_back(newest.min(clock));
        if self.recent.len() > RECENT {
            self.recent.pop_front();
        }
        let low = self.recent.iter().min().copied().unwrap_or(newest);
        let high = self.recent.iter().max().copied().unwrap_or(newest);
        let w = self.watermark.map_or(low, |w| w.max(low));
        self.watermark = Some(w);
        // Should the stream stall, every batch will have committed by then: it runs on
        // from the newest reading seen, not from the watermark, which one old message (a
        // retained status, a backlog) among the recent batches holds back.
        self.lag_us = (clock.micros() - w.max(high).micros()).max(0);
        self.last_batch = Some(batch.at);
    }

    /// "Now" for silence, given the hub's clock and the real instant.
    pub fn now(&self, clock: Timestamp, real: Instant) -> Timestamp {
        match (self.watermark, self.last_batch) {
            (Some(w), Some(last)) if real.duration_since(last) < STALL => w,
            (Some(w), Some(_)) => Timestamp(clock.micros() - self.lag_us).max(w),
            // Nothing received since the start: the hub's clock.
            _ => clock,
        }
    }
}

impl Default for StreamClock {
    fn default() -> Self {
        StreamClock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{Observation, RecordType, Row};

    fn batch(at: Instant, times: &[i64]) -> Committed {
        Committed {
            at,
            rows: times
                .iter()
                .map(|s| Observation {
                    device_id: 1,
                    record: RecordType::Light,
                    row: Row {
                        ts: Timestamp(s * 1_000_000),
                        cells: Vec::new(),
                        extra: None,
                    },
                })
                .collect(),
        }
    }

    #[test]
    fn the_stream_sets_the_time_until_it_stalls() {
        let t0 = Instant::now();
        let mut c = StreamClock::new();
        let clock = |s: i64| Timestamp(s * 1_000_000);
        assert_eq!(
            c.now(clock(1000), t0),
            clock(1000),
            "nothing yet: the clock"
        );
        // Readings up to 900 s committed at 1000 s: 100 s of lag.
        c.batch(&batch(t0, &[850, 900]), clock(1000));
        assert_eq!(c.now(clock(1001), t0), clock(900));
        // A later batch that committed first, then an older one: the lowest of the recent.
        c.batch(&batch(t0, &[950]), clock(1050));
        c.batch(&batch(t0, &[920]), clock(1051));
        assert_eq!(c.now(clock(1052), t0), clock(900));
        for s in [960, 970] {
            c.batch(&batch(t0, &[s]), clock(s + 100));
        }
        assert_eq!(c.now(clock(1071), t0), clock(920));
        // A backlog from yesterday does not send it back.
        for _ in 0..4 {
            c.batch(&batch(t0, &[10]), clock(1080));
        }
        assert_eq!(c.now(clock(1081), t0), clock(920));
        // Stalled: the clock runs on, minus the lag at the last batch (1080 - 920).
        let later = t0 + STALL + Duration::from_millis(1);
        assert_eq!(c.now(clock(1500), later), clock(1500 - 160));
        // A reading from the future counts as the clock's time.
        for _ in 0..4 {
            c.batch(&batch(t0, &[5000]), clock(1600));
        }
        assert_eq!(c.now(clock(1601), t0), clock(1600));
    }

    #[test]
    fn one_old_message_does_not_hold_a_quiet_stream_back() {
        let t0 = Instant::now();
        let mut c = StreamClock::new();
        let clock = |s: i64| Timestamp(s * 1_000_000);
        // At start the broker hands over a retained status of hours ago, then a reading.
        c.batch(&batch(t0, &[10]), clock(10_000));
        c.batch(&batch(t0, &[9_999]), clock(10_000));
        assert_eq!(
            c.now(clock(10_000), t0),
            clock(10),
            "the lowest of the recent"
        );
        // Quiet afterwards: the stream runs on from the reading, not from hours ago.
        let later = t0 + STALL + Duration::from_millis(1);
        assert_eq!(c.now(clock(10_030), later), clock(10_029));
    }
}

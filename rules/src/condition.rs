//! One alarm condition of one asset: raised only after the fault has held for an on-delay,
//! cleared only after the asset has been normal for an off-delay (hysteresis), so a value
//! hovering at a threshold does not chatter.
//!
//! Raising needs evidence: a faulty observation at least the on-delay after the first one.
//! Clearing needs only the absence of it: normal at `since`, it clears at `until` (`since`
//! plus the off-delay) unless a faulty observation comes first. The engine keeps `until` as
//! a deadline and calls [`Condition::expire`] then, so an asset that stops sending what
//! made it faulty (a bus that drove away from another) is cleared on time without waiting
//! for another reading.

use model::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Condition {
    #[default]
    Normal,
    /// Faulty since, not yet for the on-delay.
    Pending(Timestamp),
    Active,
    /// Normal again since `since`; clears at `until` unless faulty before.
    Clearing {
        since: Timestamp,
        until: Timestamp,
    },
}

/// What an observation changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Raised,
    Cleared,
}

impl Condition {
    /// Feeds one observation (`faulty` or not at `ts`); observations may come out of order
    /// within a batch, so a time before the pending start is taken as the start.
    pub fn observe(
        &mut self,
        faulty: bool,
        ts: Timestamp,
        on_delay_s: i64,
        off_delay_s: i64,
    ) -> Option<Transition> {
        let held = |since: Timestamp, delay: i64| ts.micros() - since.micros() >= delay * 1_000_000;
        match (*self, faulty) {
            (Condition::Normal, true) if on_delay_s <= 0 => {
                *self = Condition::Active;
                Some(Transition::Raised)
            }
            (Condition::Normal, true) => {
                *self = Condition::Pending(ts);
                None
            }
            (Condition::Pending(since), true) if held(since, on_delay_s) => {
                *self = Condition::Active;
                Some(Transition::Raised)
            }
            (Condition::Pending(since), true) if ts < since => {
                *self = Condition::Pending(ts);
                None
            }
            (Condition::Pending(_), false) => {
                *self = Condition::Normal;
                None
            }
            (Condition::Active, false) if off_delay_s <= 0 => {
                *self = Condition::Normal;
                Some(Transition::Cleared)
            }
            (Condition::Active, false) => {
                *self = Condition::Clearing {
                    since: ts,
                    until: ts.add_secs(off_delay_s),
                };
                None
            }
            (Condition::Clearing { until, .. }, false) if ts >= until => {
                *self = Condition::Normal;
                Some(Transition::Cleared)
            }
            (Condition::Clearing { .. }, true) => {
                *self = Condition::Active;
                None
            }
            _ => None,
        }
    }

    /// The passing of time: a clearing condition whose off-delay has run out by `at`
    /// without a fault is cleared.
    pub fn expire(&mut self, at: Timestamp) -> Option<Transition> {
        match *self {
            Condition::Clearing { until, .. } if at >= until => {
                *self = Condition::Normal;
                Some(Transition::Cleared)
            }
            _ => None,
        }
    }

    /// When a clearing condition clears if nothing faulty comes first.
    pub fn clears_at(self) -> Option<Timestamp> {
        match self {
            Condition::Clearing { until, .. } => Some(until),
            _ => None,
        }
    }

    pub fn is_active(self) -> bool {
        matches!(self, Condition::Active | Condition::Clearing { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(s: i64) -> Timestamp {
        Timestamp(s * 1_000_000)
    }

    #[test]
    fn raises_after_the_on_delay_and_clears_after_the_off_delay() {
        let mut c = Condition::default();
        assert_eq!(c.observe(true, at(0), 60, 120), None);
        assert_eq!(c.observe(true, at(30), 60, 120), None);
        assert_eq!(c.observe(true, at(60), 60, 120), Some(Transition::Raised));
        assert_eq!(c.observe(false, at(100), 60, 120), None);
        assert_eq!(
            c.observe(true, at(110), 60, 120),
            None,
            "a blip does not clear"
        );
        assert_eq!(c.observe(false, at(200), 60, 120), None);
        assert_eq!(
            c.observe(false, at(320), 60, 120),
            Some(Transition::Cleared)
        );
    }

    #[test]
    fn an_off_delay_runs_out_without_another_reading() {
        let mut c = Condition::default();
        assert_eq!(c.observe(true, at(0), 0, 60), Some(Transition::Raised));
        assert_eq!(c.observe(false, at(10), 0, 60), None);
        assert_eq!(c.clears_at(), Some(at(70)));
        assert_eq!(c.expire(at(69)), None);
        assert_eq!(c.expire(at(70)), Some(Transition::Cleared));
        assert_eq!(c, Condition::Normal);
        assert_eq!(c.expire(at(200)), None, "cleared once");
    }

    #[test]
    fn a_short_fault_never_raises() {
        let mut c = Condition::default();
        for (faulty, s) in [(true, 0), (false, 30), (true, 40), (false, 90)] {
            assert_eq!(c.observe(faulty, at(s), 60, 0), None);
        }
        assert_eq!(c, Condition::Normal);
    }

    proptest! {
        /// Against a simple model: raised exactly when a fault has lasted the on-delay since
        /// the last normal observation; transitions alternate, starting with Raised.
        #[test]
        fn transitions_alternate_and_need_their_delay(steps in proptest::collection::vec((any::<bool>(), 1i64..50), 1..60)) {
            let mut c = Condition::default();
            let mut t = 0;
            let mut last = None;
            let mut fault_since: Option<i64> = None;
            for (faulty, dt) in steps {
                t += dt;
                fault_since = if faulty { fault_since.or(Some(t)) } else { None };
                if let Some(tr) = c.observe(faulty, at(t), 60, 30) {
                    prop_assert_ne!(Some(tr), last);
                    if tr == Transition::Raised {
                        prop_assert!(t - fault_since.unwrap() >= 60);
                    }
                    last = Some(tr);
                }
            }
        }
    }
}

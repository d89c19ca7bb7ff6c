//! How long to wait before trying again: doubling from a first wait up to a ceiling, back
//! to the first after a success. Every reconnect and retry loop of the hub uses it.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// 200 ms, doubling up to 10 s: what the hub waits for a database or a broker.
    pub fn standard() -> Backoff {
        Backoff::new(Duration::from_millis(200), Duration::from_secs(10))
    }

    /// An attempt failed: the wait before the next one (the one after waits twice as
    /// long, up to the ceiling).
    pub fn failed(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    /// The wait the next failure will get, without counting one.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// An attempt succeeded: the next failure waits the first wait again.
    pub fn succeeded(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_ceiling_and_start_over_after_a_success() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(500));
        let waits: Vec<_> = (0..5).map(|_| b.failed()).collect();
        assert_eq!(waits, [ms(100), ms(200), ms(400), ms(500), ms(500)]);
        b.succeeded();
        assert_eq!(b.peek(), ms(100));
        assert_eq!(b.failed(), ms(100));
    }
}

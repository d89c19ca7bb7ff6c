//! Throttling, in memory: sign-ins ([`LoginLimiter`]) and request rates
//! ([`RateLimiter`]).
//!
//! Sign-in throttling counts failed sign-ins within [`WINDOW`] three ways, and refuses
//! further attempts while any count is at its bound, until the oldest failure that
//! counts is a [`WINDOW`] old:
//!
//! - [`PER_NAME_AND_ADDRESS`] for one user name from one client address: someone
//!   guessing one person's password;
//! - [`PER_ADDRESS`] from one address, whatever the names: someone trying every name;
//! - [`PER_NAME`] for one user name, whatever the addresses: a crowd guessing one person's
//!   password.
//!
//! A person is not locked out by someone failing on purpose from one address (that locks
//! the pair, and then the address), nor by a crowd failing from many: a browser that has
//! signed in as that name before holds a device cookie for it
//! ([`crate::auth::SessionSecret::device_token`]), and its attempts for that name count
//! on their own ([`PER_NAME_AND_ADDRESS`] per device), outside the address's and the
//! name's counts. Only browsers that never signed in as that name share the name's count.
//! A success clears the name's counts.
//!
//! Kept in memory: it protects this process and resets when it restarts, and several hub
//! instances each count on their own. That bounds guessing to a few passwords per minute
//! per name and address, which Argon2 and a 12-character minimum make hopeless; a limit
//! shared between instances would need the database on every failed attempt.
//!
//! Pure state: the caller says what time it is.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed sign-ins allowed for one name from one address within [`WINDOW`].
pub const PER_NAME_AND_ADDRESS: usize = 5;
/// Failed sign-ins allowed from one address within [`WINDOW`], whatever the names.
pub const PER_ADDRESS: usize = 20;
/// Failed sign-ins allowed for one name within [`WINDOW`], whatever the addresses.
pub const PER_NAME: usize = 50;
/// How far back failures count.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Beyond this many names and addresses tracked, stale ones are swept before adding more:
/// memory stays bounded when someone sprays names.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    NameAndAddress(String, Option<IpAddr>),
    Address(IpAddr),
    Name(String),
    /// A name from a browser that signed in as it before (its device cookie's id).
    NameAndDevice(String, String),
}

impl Key {
    fn bound(&self) -> usize {
        match self {
            Key::NameAndAddress(..) | Key::NameAndDevice(..) => PER_NAME_AND_ADDRESS,
            Key::Address(_) => PER_ADDRESS,
            Key::Name(_) => PER_NAME,
        }
    }
}

/// Failed sign-ins by user name and client address.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<Key, VecDeque<Instant>>>,
}

impl LoginLimiter {
    /// Admits a sign-in attempt, or `Err(wait)` when the name, the address or the two
    /// together have failed too often lately. An admitted attempt counts as a failure until
    /// [`LoginLimiter::succeeded`] says otherwise, so that attempts sent all at once
    /// cannot slip past the count while their passwords are being checked.
    ///
    /// `device` is the id of a device cookie the caller holds for this name, if any.
    pub fn attempt(
        &self,
        username: &str,
        address: Option<IpAddr>,
        device: Option<&str>,
        now: Instant,
    ) -> Result<(), Duration> {
        let mut failures = self.lock();
        let wait = keys(username, address, device)
            .into_iter()
            .filter_map(|k| Some((k.bound(), failures.get(&k)?)))
            .filter_map(|(bound, times)| wait_for(times, bound, now))
            .max();
        if let Some(w) = wait {
            return Err(w);
        }
        if failures.len() > SWEEP_ABOVE {
            failures.retain(|_, times| {
                prune(times, now);
                !times.is_empty()
            });
        }
        for key in keys(username, address, device) {
            let bound = key.bound();
            let times = failures.entry(key).or_default();
            prune(times, now);
            times.push_back(now);
            // Only the newest few matter; older ones cannot change the answer.
            while times.len() > bound {
                times.pop_front();
            }
        }
        Ok(())
    }

    /// The attempt admitted at `at` succeeded: the name's failures are forgotten (from
    /// this address and from all), and the attempt no longer counts against the address
    /// (its other failures still do).
    pub fn succeeded(
        &self,
        username: &str,
        address: Option<IpAddr>,
        device: Option<&str>,
        at: Instant,
    ) {
        let mut failures = self.lock();
        let name = username.to_lowercase();
        failures.remove(&Key::NameAndAddress(name.clone(), address));
        if let Some(device) = device {
            failures.remove(&Key::NameAndDevice(name.clone(), device.to_owned()));
        }
        failures.remove(&Key::Name(name));
        if let Some(times) = address.and_then(|a| failures.get_mut(&Key::Address(a))) {
            if let Some(i) = times.iter().rposition(|t| *t == at) {
                times.remove(i);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, VecDeque<Instant>>> {
        // A panic while holding the lock leaves plain counters; they are still usable.
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// At most `limit` requests per key in any `window`, with bursts up to `limit`: a token
/// bucket per key holding `limit`, refilled at `limit` per `window`. A request counts
/// against every key it names (an API key and an address, say) and passes only when
/// each has room. Memory stays bounded: past [`SWEEP_ABOVE`] keys, full buckets (which
/// hold no state) are dropped.
#[derive(Debug)]
pub struct RateLimiter<K> {
    limit: f64,
    window: Duration,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: std::hash::Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(limit: u32, window: Duration) -> RateLimiter<K> {
        RateLimiter {
            limit: f64::from(limit.max(1)),
            window: window.max(Duration::from_millis(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refilled(&self, (tokens, at): (f64, Instant), now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(at).as_secs_f64();
        (tokens + elapsed / self.window.as_secs_f64() * self.limit).min(self.limit)
    }

    /// Whether every one of `keys` has room at `now`, taking nothing; `Err(wait)` as
    /// [`RateLimiter::take`].
    pub fn check(&self, keys: &[K], now: Instant) -> Result<(), Duration> {
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let short = keys
            .iter()
            .map(|k| {
                buckets
                    .get(k)
                    .map_or(self.limit, |b| self.refilled(*b, now))
            })
            .fold(f64::INFINITY, f64::min);
        self.wait(short)
    }

    fn wait(&self, level: f64) -> Result<(), Duration> {
        if level >= 1.0 {
            return Ok(());
        }
        let per_token = self.window.as_secs_f64() / self.limit;
        Err(Duration::from_secs_f64((1.0 - level) * per_token))
    }

    /// Takes one request for every one of `keys` at `now`, or none and `Err(wait)`: how
    /// long until each has room again.
    pub fn take(&self, keys: &[K], now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > SWEEP_ABOVE {
            let full = self.limit;
            buckets.retain(|_, b| self.refilled(*b, now) < full);
        }
        let levels: Vec<f64> = keys
            .iter()
            .map(|k| {
                buckets
                    .get(k)
                    .map_or(self.limit, |b| self.refilled(*b, now))
            })
            .collect();
        self.wait(levels.iter().copied().fold(f64::INFINITY, f64::min))?;
        for (k, level) in keys.iter().zip(levels) {
            buckets.insert(k.clone(), (level - 1.0, now));
        }
        Ok(())
    }
}

fn keys(username: &str, address: Option<IpAddr>, device: Option<&str>) -> Vec<Key> {
    // Names are compared without case, so "Olga" and "olga" share one count.
    let name = username.to_lowercase();
    match device {
        Some(device) => vec![Key::NameAndDevice(name, device.to_owned())],
        None => [
            Some(Key::NameAndAddress(name.clone(), address)),
            address.map(Key::Address),
            Some(Key::Name(name)),
        ]
        .into_iter()
        .flatten()
        .collect(),
    }
}

fn prune(times: &mut VecDeque<Instant>, now: Instant) {
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
    {
        times.pop_front();
    }
}

/// How long until fewer than `bound` failures are within the window, if that is not the
/// case now.
fn wait_for(times: &VecDeque<Instant>, bound: usize, now: Instant) -> Option<Duration> {
    let recent: Vec<&Instant> = times
        .iter()
        .filter(|t| now.saturating_duration_since(**t) < WINDOW)
        .collect();
    if recent.len() < bound {
        return None;
    }
    let oldest_that_counts = recent[recent.len() - bound];
    Some(WINDOW - now.saturating_duration_since(*oldest_that_counts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn five_failures_for_a_name_from_one_address_lock_that_pair_only() {
        let l = LoginLimiter::default();
        let t0 = Instant::now();
        for i in 0..PER_NAME_AND_ADDRESS as u64 {
            let at = t0 + Duration::from_secs(i);
            assert_eq!(l.attempt("olga", ip("10.0.0.1"), None, at), Ok(()));
        }
        let now = t0 + Duration::from_secs(10);
        assert_eq!(
            l.attempt("Olga", ip("10.0.0.1"), None, now),
            Err(Duration::from_secs(50)),
            "whatever the case"
        );
        assert_eq!(
            l.attempt("olga", ip("10.9.9.9"), None, now),
            Ok(()),
            "one address cannot lock a person out"
        );
        assert_eq!(l.attempt("piotr", ip("10.0.0.1"), None, now), Ok(()));
        assert_eq!(
            l.attempt("olga", ip("10.0.0.1"), None, t0 + Duration::from_secs(60)),
            Ok(()),
            "the first failure has aged out"
        );
    }

    #[test]
    fn a_crowd_failing_for_one_name_locks_it_from_everywhere() {
        let l = LoginLimiter::default();
        let t0 = Instant::now();
        for i in 0..PER_NAME {
            let from = ip(&format!("10.0.{}.{}", i / 200, i % 200));
            assert_eq!(l.attempt("olga", from, None, t0), Ok(()));
        }
        assert!(l.attempt("olga", ip("10.9.9.9"), None, t0).is_err());
        assert_eq!(l.attempt("piotr", ip("10.9.9.9"), None, t0), Ok(()));
    }

    #[test]
    fn a_browser_that_signed_in_before_is_not_locked_out_by_a_crowd() {
        let l = LoginLimiter::default();
        let t0 = Instant::now();
        for i in 0..PER_NAME {
            let from = ip(&format!("10.0.{}.{}", i / 200, i % 200));
            assert_eq!(l.attempt("olga", from, None, t0), Ok(()));
        }
        assert!(l.attempt("olga", ip("192.0.2.1"), None, t0).is_err());
        let mine = Some("her-laptop");
        assert_eq!(
            l.attempt("olga", ip("192.0.2.1"), mine, t0),
            Ok(()),
            "her own browser still gets in"
        );
        for _ in 1..PER_NAME_AND_ADDRESS {
            assert_eq!(l.attempt("olga", ip("192.0.2.1"), mine, t0), Ok(()));
        }
        assert!(
            l.attempt("olga", ip("192.0.2.1"), mine, t0).is_err(),
            "and is itself bounded"
        );
        assert_eq!(
            l.attempt("olga", ip("192.0.2.1"), Some("other"), t0),
            Ok(())
        );
    }

    #[test]
    fn failures_from_an_address_lock_it_for_any_name() {
        let l = LoginLimiter::default();
        let t0 = Instant::now();
        for i in 0..PER_ADDRESS {
            assert!(l
                .attempt(&format!("user{i}"), ip("192.0.2.7"), None, t0)
                .is_ok());
        }
        assert!(l
            .attempt("someone-else", ip("192.0.2.7"), None, t0)
            .is_err());
        assert_eq!(l.attempt("someone-else", ip("192.0.2.8"), None, t0), Ok(()));
    }

    #[test]
    fn success_clears_the_name_and_its_own_attempt_only() {
        let l = LoginLimiter::default();
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        for i in 0..PER_ADDRESS - 1 {
            assert!(l
                .attempt(&format!("u{i}"), ip("192.0.2.7"), None, t0)
                .is_ok());
        }
        for _ in 0..PER_NAME_AND_ADDRESS - 1 {
            assert!(l.attempt("olga", ip("192.0.2.9"), None, t0).is_ok());
        }
        assert!(l.attempt("olga", ip("192.0.2.7"), None, t1).is_ok());
        l.succeeded("olga", ip("192.0.2.7"), None, t1);
        assert_eq!(
            l.attempt("olga", ip("192.0.2.9"), None, t1),
            Ok(()),
            "the name's own count cleared"
        );
        assert!(
            l.attempt("olga", ip("192.0.2.9"), None, t1).is_err(),
            "that address's failures for the name still count"
        );
        assert_eq!(
            l.attempt("piotr", ip("192.0.2.7"), None, t1),
            Ok(()),
            "the address keeps its other failures, not the success"
        );
        assert!(l.attempt("ivan", ip("192.0.2.7"), None, t1).is_err());
    }

    #[test]
    fn a_rate_counts_against_every_key_named_and_refills_over_its_window() {
        let r = RateLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(r.take(&["key1", "addr1"], t0), Ok(()));
        }
        assert_eq!(
            r.take(&["key1", "addr2"], t0),
            Err(Duration::from_secs(20)),
            "the key is spent, from any address"
        );
        assert_eq!(r.take(&["key2", "addr1"], t0), Err(Duration::from_secs(20)));
        assert_eq!(
            r.take(&["key2", "addr2"], t0),
            Ok(()),
            "nothing taken by refusals"
        );
        assert_eq!(
            r.take(&["key1", "addr3"], t0 + Duration::from_secs(20)),
            Ok(())
        );
        assert!(r
            .take(&["key1", "addr3"], t0 + Duration::from_secs(21))
            .is_err());
    }

    #[test]
    fn memory_stays_bounded_when_names_are_sprayed() {
        let l = LoginLimiter::default();
        let t0 = Instant::now();
        for i in 0..SWEEP_ABOVE + 10 {
            let _ = l.attempt(&format!("u{i}"), None, None, t0);
        }
        let later = t0 + WINDOW;
        let _ = l.attempt("last", None, None, later);
        assert_eq!(
            l.lock().len(),
            2,
            "stale names swept: the last name's own counts are left"
        );
    }
}

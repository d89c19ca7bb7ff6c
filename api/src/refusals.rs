//! Failed sign-ins and refused requests (403) in the audit log, counted rather than
//! written one by one: someone guessing passwords or probing what a role may do must
//! show in the audit log, but must not be able to grow it by a row per attempt.
//!
//! [`Refusals`] tallies attempts in memory by (what, user, address); [`Refusals::flush`]
//! turns each tally into one audit entry (`session.login_failed` or `request.refused`,
//! actor `cityhub`) with the count, the first and last time, and a few of the routes.
//! The hub flushes every minute ([`FLUSH_EVERY`]), so the log grows by at most
//! [`MAX_TALLIES`] + 1 entries a minute, whatever the traffic: tallies past that many
//! are added up into one entry for "others".

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

/// How often tallies become audit entries.
pub const FLUSH_EVERY: Duration = Duration::from_secs(60);

/// Distinct (what, user, address) tallied per flush at most; the rest go to "others".
pub const MAX_TALLIES: usize = 200;

/// Routes remembered per tally.
const MAX_ROUTES: usize = 5;

/// What was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refused {
    /// A sign-in with a wrong user name or password, or throttled.
    SignIn,
    /// A request answered 403.
    Request,
}

impl Refused {
    fn action(self) -> &'static str {
        match self {
            Refused::SignIn => "session.login_failed",
            Refused::Request => "request.refused",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    what: Refused,
    user: Option<String>,
    address: Option<IpAddr>,
}

#[derive(Debug, Clone)]
struct Tally {
    count: u64,
    /// Of those, sign-ins refused by throttling without a password check.
    throttled: u64,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    routes: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct Pending {
    tallies: HashMap<Key, Tally>,
    /// Attempts past [`MAX_TALLIES`], per kind: (count, first, last).
    others: HashMap<Refused, (u64, DateTime<Utc>, DateTime<Utc>)>,
}

/// One audit entry to write: action, target, detail.
pub type Entry = (&'static str, String, serde_json::Value);

/// The tallies since the last flush.
#[derive(Debug, Default)]
pub struct Refusals {
    pending: Mutex<Pending>,
}

impl Refusals {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // Counters only; a panic elsewhere leaves them usable.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one attempt. `user` is the name signed in with, or the caller refused;
    /// `route` is `METHOD /template`.
    pub fn note(
        &self,
        what: Refused,
        user: Option<&str>,
        address: Option<IpAddr>,
        route: &str,
        throttled: bool,
        at: DateTime<Utc>,
    ) {
        let mut pending = self.lock();
        let key = Key {
            what,
            // Bounded: a sign-in's user name is at most 64 characters, a caller's too.
            user: user.map(|u| u.chars().take(64).collect()),
            address,
        };
        if !pending.tallies.contains_key(&key) && pending.tallies.len() >= MAX_TALLIES {
            let other = pending.others.entry(what).or_insert((0, at, at));
            other.0 += 1;
            other.2 = at;
            return;
        }
        let tally = pending.tallies.entry(key).or_insert_with(|| Tally {
            count: 0,
            throttled: 0,
            first: at,
            last: at,
            routes: BTreeSet::new(),
        });
        tally.count += 1;
        tally.throttled += u64::from(throttled);
        tally.last = at;
        if tally.routes.len() < MAX_ROUTES {
            tally.routes.insert(route.to_owned());
        }
    }

    /// Takes the tallies as audit entries (action, target, detail), in a stable order.
    pub fn take(&self) -> Vec<Entry> {
        let Pending { tallies, others } = std::mem::take(&mut *self.lock());
        let show = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
        let mut tallies: Vec<(Key, Tally)> = tallies.into_iter().collect();
        tallies.sort_by(|a, b| a.0.cmp(&b.0));
        let mut entries: Vec<Entry> = tallies
            .into_iter()
            .map(|(key, t)| {
                let target = match (&key.user, key.address) {
                    (Some(u), _) => format!("user/{u}"),
                    (None, Some(a)) => format!("address/{a}"),
                    (None, None) => "unknown".to_owned(),
                };
                let mut detail = json!({
                    "count": t.count,
                    "user": key.user,
                    "address": key.address.map(|a| a.to_string()),
                    "first": show(t.first),
                    "last": show(t.last),
                    "routes": t.routes,
                });
                if key.what == Refused::SignIn {
                    detail["throttled"] = json!(t.throttled);
                }
                (key.what.action(), target, detail)
            })
            .collect();
        let mut others: Vec<_> = others.into_iter().collect();
        others.sort_by_key(|(what, _)| *what);
        for (what, (count, first, last)) in others {
            entries.push((
                what.action(),
                "others".to_owned(),
                json!({
                    "count": count,
                    "first": show(first),
                    "last": show(last),
                    "note": format!("attempts past the {MAX_TALLIES} users and addresses counted one by one in this minute"),
                }),
            ));
        }
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn attempts_become_one_entry_per_user_and_address() {
        let r = Refusals::default();
        let ip = Some("192.0.2.7".parse().unwrap());
        for i in 0..7 {
            r.note(
                Refused::SignIn,
                Some("olga"),
                ip,
                "POST /api/v1/login",
                i >= 5,
                at(&format!("2026-03-01T10:00:0{i}Z")),
            );
        }
        r.note(
            Refused::Request,
            Some("viewer"),
            ip,
            "POST /api/v1/outages/{id}/ack",
            false,
            at("2026-03-01T10:00:30Z"),
        );
        let entries = r.take();
        assert_eq!(entries.len(), 2);
        let (action, target, detail) = &entries[0];
        assert_eq!(
            (*action, target.as_str()),
            ("session.login_failed", "user/olga")
        );
        assert_eq!(detail["count"], 7);
        assert_eq!(detail["throttled"], 2);
        assert_eq!(detail["address"], "192.0.2.7");
        assert_eq!(detail["first"], "2026-03-01T10:00:00Z");
        assert_eq!(detail["last"], "2026-03-01T10:00:06Z");
        assert_eq!(entries[1].0, "request.refused");
        assert!(r.take().is_empty(), "taken once");
    }

    #[test]
    fn past_the_bound_attempts_are_added_up_as_others() {
        let r = Refusals::default();
        let t = at("2026-03-01T10:00:00Z");
        for i in 0..(MAX_TALLIES + 50) {
            r.note(
                Refused::SignIn,
                Some(&format!("u{i}")),
                None,
                "POST /api/v1/login",
                false,
                t,
            );
        }
        let entries = r.take();
        assert_eq!(entries.len(), MAX_TALLIES + 1);
        let (_, target, detail) = entries.last().unwrap();
        assert_eq!((target.as_str(), &detail["count"]), ("others", &json!(50)));
    }
}

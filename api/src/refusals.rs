//! Failed sign-ins and refused requests (403) in the audit log, counted rather than
//! written one by one: someone guessing passwords or probing what a role may do must
//! show in the audit log, but must not be able to grow it by a row per attempt.
//!
//! [`Refusals`] tallies attempts in memory by (what, user, address); [`Refusals::take`]
//! turns each tally into one audit entry (`session.login_failed` or `request.refused`,
//! actor `cityhub`) with the count, the first and last time, and a few of the routes.
//! The hub flushes every minute ([`FLUSH_EVERY`]). A sign-in with a name that is no
//! user's is tallied by address, with a few of the names tried.
//!
//! Bounded whatever the traffic: past [`MAX_TALLIES`] tallies, a user's attempts from a
//! new address are added to the user's tally for all addresses (as many as there are
//! users, which no client can add to), and anything else is added up into one entry for
//! "others". So someone spraying made-up names or addresses cannot hide attempts on a
//! real user's account among the "others". And over an hour at most [`HOURLY_ENTRIES`]
//! entries are written, users' first; past that, each flush writes one entry, `summary`,
//! with the counts and the most tried users by name: the log grows by at most
//! [`HOURLY_ENTRIES`] + 60 entries an hour however long an attack lasts.

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

/// Entries written per hour at most, before flushes are summed up in one entry each.
pub const HOURLY_ENTRIES: usize = 300;

/// Users named in a summary at most (the most tried).
const SUMMARY_USERS: usize = 20;

/// Routes, and names that are no user's, remembered per tally.
const MAX_ROUTES: usize = 5;

/// Who an attempt was for.
#[derive(Debug, Clone, Copy)]
pub enum Who<'a> {
    /// A user of the hub: the name signed in with, or the caller refused.
    User(&'a str),
    /// A sign-in with a name that is no user's.
    NoSuchUser(&'a str),
    /// Not known (a request refused before its caller was).
    Unknown,
}

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
    /// Names tried that are no user's.
    names: BTreeSet<String>,
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
    /// The hour being counted (Unix hour) and the entries written in it.
    written: Mutex<(i64, usize)>,
}

impl Refusals {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // Counters only; a panic elsewhere leaves them usable.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one attempt; `route` is `METHOD /template`.
    pub fn note(
        &self,
        what: Refused,
        who: Who<'_>,
        address: Option<IpAddr>,
        route: &str,
        throttled: bool,
        at: DateTime<Utc>,
    ) {
        // Bounded: a sign-in's user name is at most 64 characters, a caller's too.
        let bounded = |u: &str| u.chars().take(64).collect::<String>();
        let user = match who {
            Who::User(u) => Some(bounded(u)),
            Who::NoSuchUser(_) | Who::Unknown => None,
        };
        let mut pending = self.lock();
        let mut key = Key {
            what,
            user,
            address,
        };
        if !pending.tallies.contains_key(&key) && pending.tallies.len() >= MAX_TALLIES {
            if key.user.is_none() {
                let other = pending.others.entry(what).or_insert((0, at, at));
                other.0 += 1;
                other.2 = at;
                return;
            }
            // A user stays named: their attempts from every address in one tally.
            key.address = None;
        }
        let tally = pending.tallies.entry(key).or_insert_with(|| Tally {
            count: 0,
            throttled: 0,
            first: at,
            last: at,
            routes: BTreeSet::new(),
            names: BTreeSet::new(),
        });
        tally.count += 1;
        tally.throttled += u64::from(throttled);
        tally.last = at;
        if tally.routes.len() < MAX_ROUTES {
            tally.routes.insert(route.to_owned());
        }
        if let Who::NoSuchUser(name) = who {
            if tally.names.len() < MAX_ROUTES {
                tally.names.insert(bounded(name));
            }
        }
    }

    /// Takes the tallies as audit entries (action, target, detail), in a stable order,
    /// within the hour's budget.
    pub fn take(&self) -> Vec<Entry> {
        self.take_at(Utc::now())
    }

    /// [`Refusals::take`] at `now`: entries past [`HOURLY_ENTRIES`] this hour become one
    /// `summary` entry.
    pub fn take_at(&self, now: DateTime<Utc>) -> Vec<Entry> {
        let mut entries = self.entries();
        // Users' entries first: they are what the budget keeps.
        entries.sort_by_key(|(_, target, _)| !target.starts_with("user/"));
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let hour = now.timestamp().div_euclid(3600);
        if written.0 != hour {
            *written = (hour, 0);
        }
        let room = HOURLY_ENTRIES.saturating_sub(written.1);
        if entries.len() > room {
            let over = entries.split_off(room.saturating_sub(1).min(entries.len()));
            entries.push(summary(over));
        }
        written.1 += entries.len();
        entries
    }

    fn entries(&self) -> Vec<Entry> {
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
                if !t.names.is_empty() {
                    detail["names_tried"] = json!(t.names);
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
                    "note": format!("attempts on no user's account past the {MAX_TALLIES} users and addresses counted one by one in this minute"),
                }),
            ));
        }
        entries
    }
}

/// One entry for entries past the hour's budget: attempts by kind, and the most tried
/// users by name.
fn summary(over: Vec<Entry>) -> Entry {
    let mut attempts: std::collections::BTreeMap<&str, u64> = Default::default();
    let mut users: HashMap<String, u64> = HashMap::new();
    for (action, _, detail) in &over {
        let count = detail["count"].as_u64().unwrap_or(0);
        *attempts.entry(action).or_default() += count;
        if let Some(user) = detail["user"].as_str() {
            *users.entry(user.to_owned()).or_default() += count;
        }
    }
    let mut users: Vec<(String, u64)> = users.into_iter().collect();
    users.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let named = users.len().min(SUMMARY_USERS);
    let rest: u64 = users[named..].iter().map(|(_, n)| n).sum();
    users.truncate(named);
    (
        "audit.refusals_summarized",
        "summary".to_owned(),
        json!({
            "entries": over.len(),
            "attempts": attempts,
            "users": users.into_iter().map(|(u, n)| json!({"user": u, "count": n})).collect::<Vec<_>>(),
            "other_users_attempts": rest,
            "note": format!("past the {HOURLY_ENTRIES} refusal entries written this hour, a minute's refusals are summed up here"),
        }),
    )
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
                Who::User("olga"),
                ip,
                "POST /api/v1/login",
                i >= 5,
                at(&format!("2026-03-01T10:00:0{i}Z")),
            );
        }
        r.note(
            Refused::Request,
            Who::User("viewer"),
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
    fn an_hour_writes_at_most_its_budget_then_one_summary_a_minute() {
        let r = Refusals::default();
        let hour = at("2026-03-01T10:00:00Z");
        let mut written = 0;
        for minute in 0..60 {
            let t = hour + chrono::Duration::minutes(minute);
            for i in 0..MAX_TALLIES {
                let ip: IpAddr = format!("10.0.{}.{}", i / 200, i % 200).parse().unwrap();
                r.note(
                    Refused::SignIn,
                    Who::NoSuchUser("x"),
                    Some(ip),
                    "POST /api/v1/login",
                    false,
                    t,
                );
            }
            r.note(
                Refused::SignIn,
                Who::User("olga"),
                None,
                "POST /api/v1/login",
                false,
                t,
            );
            let entries = r.take_at(t);
            written += entries.len();
            if minute >= 2 {
                assert_eq!(entries.len(), 1, "minute {minute}: one summary");
                let (action, target, detail) = &entries[0];
                assert_eq!(
                    (*action, target.as_str()),
                    ("audit.refusals_summarized", "summary")
                );
                assert_eq!(detail["users"][0]["user"], "olga", "users stay named");
                assert_eq!(
                    detail["attempts"]["session.login_failed"],
                    MAX_TALLIES as u64 + 1
                );
            }
        }
        assert_eq!(written, HOURLY_ENTRIES + 58);
        // The next hour starts a new budget; olga comes first.
        let next = at("2026-03-01T11:00:00Z");
        r.note(
            Refused::SignIn,
            Who::NoSuchUser("x"),
            None,
            "POST /api/v1/login",
            false,
            next,
        );
        r.note(
            Refused::SignIn,
            Who::User("olga"),
            None,
            "POST /api/v1/login",
            false,
            next,
        );
        let entries = r.take_at(next);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].1, "user/olga");
    }

    #[test]
    fn past_the_bound_users_stay_named_and_the_rest_are_added_up_as_others() {
        let r = Refusals::default();
        let t = at("2026-03-01T10:00:00Z");
        for i in 0..(MAX_TALLIES + 50) {
            let sprayed: IpAddr = format!("10.0.{}.{}", i / 200, i % 200).parse().unwrap();
            r.note(
                Refused::SignIn,
                Who::NoSuchUser(&format!("u{i}")),
                Some(sprayed),
                "POST /api/v1/login",
                false,
                t,
            );
        }
        for last in 1..=3 {
            let from: IpAddr = format!("192.0.2.{last}").parse().unwrap();
            r.note(
                Refused::SignIn,
                Who::User("olga"),
                Some(from),
                "POST /api/v1/login",
                false,
                t,
            );
        }
        let entries = r.take();
        assert_eq!(entries.len(), MAX_TALLIES + 2);
        let olga = entries
            .iter()
            .find(|(_, target, _)| target == "user/olga")
            .expect("olga named");
        assert_eq!(olga.2["count"], 3);
        assert_eq!(olga.2["address"], serde_json::Value::Null, "every address");
        assert_eq!(entries[0].1, "user/olga", "users first");
        assert_eq!(entries[1].2["names_tried"], json!(["u0"]));
        let (_, target, detail) = entries.last().unwrap();
        assert_eq!((target.as_str(), &detail["count"]), ("others", &json!(50)));
    }
}

//! Silence: a device not heard from for `intervals` of its reporting interval (plus the
//! grace), or offline by its own word (its last will) for longer than the grace.
//!
//! Silence is about hearing, so a message judged late (its time already behind the
//! engine's horizon) is heard at the stream's time when it arrived: the horizon plus the
//! reordering window, which is the stream's watermark. A backlog that arrives hours late
//! does not pretend the device was heard from during those hours; the outage it raised
//! resolves when the backlog arrives, and the backlog's readings are judged by the other
//! rules at their own times.

use model::fields::status;
use model::{Kind, Row, Timestamp};

use crate::engine::{silence_kind, Asset, Check, Decision, Engine};
use crate::state::{Due, State};

impl Engine {
    /// How long a device of `kind` may stay silent, microseconds.
    fn silence_limit(&self, kind: Kind) -> i64 {
        let s = self.config.silence;
        let interval = s.interval_s(kind);
        (interval as f64 * s.intervals * 1e6) as i64 + s.grace_s * 1_000_000
    }

    /// When a message of time `ts` is heard: its own time, or, judged late, the stream's
    /// time when it arrived.
    fn heard_at(&self, state: &State, ts: Timestamp) -> Timestamp {
        let now = state.now();
        if ts < now {
            Timestamp(now.micros() + self.config.stream.reorder_ms * 1000)
        } else {
            ts
        }
    }

    /// A device's own word on its connection (its last will says offline). Offline is
    /// raised after the grace, so that a cabinet's status arriving in the same moment
    /// explains its lamps' instead of raising eighty alarms.
    pub(crate) fn status(&self, state: &mut State, a: &Asset, row: &Row, out: &mut Vec<Decision>) {
        if row.cell(status::STATE).as_str() == Some("offline") {
            let since = self.heard_at(state, row.ts);
            state.offline.insert(a.id, since);
            self.schedule_offline(state, a.id, since);
            return;
        }
        // "Online" comes from the device itself: it is heard from.
        self.heard_from(state, a, row.ts, out);
    }

    /// A message from the device at `ts`: it is not silent.
    pub(crate) fn heard_from(
        &self,
        state: &mut State,
        a: &Asset,
        ts: Timestamp,
        out: &mut Vec<Decision>,
    ) {
        state.offline.remove(&a.id);
        let heard = self.heard_at(state, ts);
        self.seen(state, a.id, heard);
        let check = Check {
            kind: silence_kind(a.kind),
            faulty: false,
            ts: heard,
            on_delay_s: 0,
            off_delay_s: 0,
            reason: String::new,
        };
        self.update(state, a, check, out);
    }

    /// Notes that `id` was heard from at `at` and moves its silence deadline.
    pub(crate) fn seen(&self, state: &mut State, id: i32, at: Timestamp) {
        let Some(a) = self.assets.get(&id) else {
            return;
        };
        let limit = self.silence_limit(a.kind);
        let due = |seen: Timestamp| {
            Due::silence(
                Timestamp(seen.micros().saturating_add(limit)),
                id,
                silence_kind(a.kind),
                a.kind == Kind::Cabinet,
            )
        };
        match state.last_seen.get(&id).copied() {
            Some(before) if before >= at => return,
            Some(before) => {
                state.deadlines.remove(&due(before));
            }
            None => {}
        }
        state.last_seen.insert(id, at);
        state.deadlines.insert(due(at));
    }

    /// The silence deadline of `id` from its last-heard time (after a reload).
    pub(crate) fn schedule_silence(&self, state: &mut State, id: i32) {
        let (Some(a), Some(seen)) = (self.assets.get(&id), state.last_seen.get(&id)) else {
            return;
        };
        let at = Timestamp(seen.micros().saturating_add(self.silence_limit(a.kind)));
        let due = Due::silence(at, id, silence_kind(a.kind), a.kind == Kind::Cabinet);
        state.deadlines.insert(due);
    }

    /// The deadline of a device offline by its own word since `since`.
    pub(crate) fn schedule_offline(&self, state: &mut State, id: i32, since: Timestamp) {
        let Some(a) = self.assets.get(&id) else {
            return;
        };
        let at = since.add_secs(self.config.silence.grace_s);
        let due = Due::silence(at, id, silence_kind(a.kind), a.kind == Kind::Cabinet);
        state.deadlines.insert(due);
    }

    /// A silence deadline: raises the device's silence if, at `now`, it has not been heard
    /// from for its window or has been offline by its own word for the grace.
    pub(crate) fn silent(
        &self,
        state: &mut State,
        id: i32,
        now: Timestamp,
        out: &mut Vec<Decision>,
    ) {
        let Some(a) = self.assets.get(&id) else {
            return;
        };
        let kind = silence_kind(a.kind);
        if state.is_active((id, kind)) {
            return;
        }
        let grace = self.config.silence.grace_s * 1_000_000;
        let limit = self.silence_limit(a.kind);
        let reason = if let Some(since) = state
            .offline
            .get(&id)
            .filter(|since| now.micros() - since.micros() >= grace)
        {
            format!("offline by its own word since {since}")
        } else if let Some(seen) = state
            .last_seen
            .get(&id)
            .filter(|seen| now.micros() - seen.micros() >= limit)
        {
            format!("silent since {seen}")
        } else {
            return;
        };
        let check = Check {
            kind,
            faulty: true,
            ts: now,
            on_delay_s: 0,
            off_delay_s: 0,
            reason: || reason,
        };
        self.update(state, a, check, out);
    }
}

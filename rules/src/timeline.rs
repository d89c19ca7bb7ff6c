//! The stream's own time: inputs judged in the order of their timestamps, and the instants
//! at which time alone decides something.
//!
//! Readings do not reach the hub in the order they were taken. Two writers commit out of
//! order; a lamp acknowledges a command and reports its new state a millisecond later, and
//! the two land in different batches; a backlog arrives as one array, in any order; the
//! broker delivers a message again after a restart. The outages must not depend on any of
//! that, so the engine does not judge an input when it arrives: [`Engine::receive`] queues
//! it, and [`Engine::advance`] judges the queue in timestamp order up to a horizon the
//! driver sets (the stream's watermark less a reordering window, `[stream] reorder_ms`).
//!
//! What time alone decides is a deadline, judged in the same order at its own instant: a
//! device found silent (heard from at `t`, silent at `t` plus its window), an off-delay run
//! out, a chattering alarm gone quiet, a maintenance window's end. So neither the batches
//! nor how often the driver calls [`Engine::advance`] change what is decided or when: an
//! outage opens and resolves at instants of the stream.
//!
//! An input whose time the horizon has already passed is late. A row that is newer than
//! everything judged of its device (a device's backlog, a device whose clock is behind) is
//! judged at once; one that is not (a redelivery, or older than what the device already
//! said) is dropped, since judging it now would contradict what was decided. Both are
//! counted. An acknowledged instruction is never dropped: late, it applies from then on.

use std::cmp::Reverse;

use model::Timestamp;

use crate::engine::{Decision, Engine};
pub use crate::state::{rank, Input};
use crate::state::{Due, DueKind, Queued, State};

impl Engine {
    /// Takes one input: queued until the horizon passes its time, or, if it already has,
    /// judged now or dropped (see the module's text).
    pub fn receive(&self, state: &mut State, input: Input, out: &mut Vec<Decision>) {
        let key = input.key();
        if state.horizon.is_some_and(|h| key.0 <= h) {
            if matches!(input, Input::Row(_)) {
                state.late += 1;
            }
            self.judge(state, input, out);
            return;
        }
        state.arrivals += 1;
        state.queue.push(Reverse(Queued {
            key,
            arrival: state.arrivals,
            input: Box::new(input),
        }));
    }

    /// Judges every queued input and every deadline up to `horizon`, in time order.
    ///
    /// The queue holds at most `[stream] max_queued` inputs: past that (a backlog that was
    /// published faster than the window can hold in memory) the oldest are judged at
    /// once, as if the horizon had reached them, and counted as forced.
    pub fn advance(&self, state: &mut State, horizon: Timestamp, out: &mut Vec<Decision>) {
        self.refresh_deadlines(state);
        let mut horizon = horizon;
        self.judge_until(state, horizon, out);
        while state.queue.len() > self.config.stream.max_queued {
            let Some(oldest) = state.queue.peek().map(|Reverse(q)| q.key.0) else {
                break;
            };
            let before = state.queue.len();
            self.judge_until(state, oldest, out);
            state.forced += (before - state.queue.len()) as u64;
            horizon = horizon.max(oldest);
        }
        let h = state.horizon.map_or(horizon, |h| h.max(horizon));
        state.horizon = Some(h);
        state.clock = Some(state.now().max(h));
    }

    /// Judges every queued input and every deadline up to `horizon`, in time order.
    fn judge_until(&self, state: &mut State, horizon: Timestamp, out: &mut Vec<Decision>) {
        loop {
            let input = state
                .queue
                .peek()
                .map(|Reverse(q)| q.key.0)
                .filter(|t| *t <= horizon);
            let due = state.deadlines.first().copied().filter(|d| d.0 <= horizon);
            match (input, due) {
                (Some(t), d) if d.is_none_or(|d| t <= d.0) => {
                    let Some(Reverse(q)) = state.queue.pop() else {
                        break;
                    };
                    state.clock = Some(state.now().max(t));
                    self.judge(state, *q.input, out);
                }
                (_, Some(d)) => {
                    state.deadlines.remove(&d);
                    state.clock = Some(state.now().max(d.0));
                    self.fire(state, d, out);
                }
                _ => break,
            }
        }
    }

    /// How many inputs wait for the horizon.
    pub fn queued(&self, state: &State) -> usize {
        state.queue.len()
    }

    fn judge(&self, state: &mut State, input: Input, out: &mut Vec<Decision>) {
        match input {
            Input::Instructed {
                asset, instruction, ..
            } => self.instruct(state, asset, instruction),
            Input::Row(o) => {
                let key = (o.row.ts, rank(o.record));
                if state.judged.get(&o.device_id).is_some_and(|j| *j >= key) {
                    state.dropped += 1;
                    return;
                }
                state.judged.insert(o.device_id, key);
                self.judge_row(state, o.device_id, o.record, &o.row, out);
            }
        }
    }

    fn fire(&self, state: &mut State, due: Due, out: &mut Vec<Decision>) {
        let Due(at, what, asset, kind) = due;
        match what {
            DueKind::CabinetSilence | DueKind::Silence => self.silent(state, asset, at, out),
            DueKind::Clear => self.expire(state, (asset, kind), at, out),
            DueKind::Release => self.release_held(state, (asset, kind), at, out),
            DueKind::Deferred => self.open_deferred(state, (asset, kind), at, out),
        }
    }
}

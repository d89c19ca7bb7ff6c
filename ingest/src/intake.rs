//! One MQTT message -> rows and dead letters in a [`ReadingBatch`].

use std::borrow::Cow;

use bytes::Bytes;

use model::{decode_payload, Limits, RecordType, Rejection, Row, Timestamp, Topic};
use store::ReadingBatch;

use crate::quota::DeadLetterQuota;
use crate::registry::Registry;

/// A received message kept until its batch commits.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub payload: Bytes,
    pub received_at: Timestamp,
    pub newest: Option<Timestamp>,
    /// Delivered with the retain flag: the broker's stored copy of the topic's retained
    /// message, sent because the hub subscribed (not a new publication).
    pub retained: bool,
    /// A retained delivery of what was recorded already: acknowledged, not recorded.
    pub repeat: bool,
    /// How many of its refusals its device's dead-letter quota let be stored, decided
    /// when it was first taken (`None`: not yet), so a rebuilt batch stores the same.
    pub dead_letters_allowed: Option<usize>,
}

/// What one message contributed to a batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Intake {
    pub rows: usize,
    /// Dead letters stored in the batch.
    pub dead_letters: usize,
    /// Refusals counted but not stored: the device's dead-letter quota was spent.
    pub unstored: usize,
    /// Newest reading time in the message, for publish-to-commit lag.
    pub newest: Option<Timestamp>,
    /// Its topic names a device of the inventory.
    pub registered: bool,
}

impl Intake {
    /// Refusals, stored or not.
    pub fn refused(&self) -> usize {
        self.dead_letters + self.unstored
    }
}

/// How a message's refusals are kept.
pub struct DeadLetterRules<'a> {
    /// Bytes of a refused payload kept (its size and SHA-256 are kept whole).
    pub keep_bytes: usize,
    /// How many of a message's refusals may be stored: given to this function the first
    /// time the message is taken, and remembered with it for any later rebuild of its
    /// batch (`None`: no quota, everything is stored).
    pub quota: Option<&'a mut DeadLetterQuota>,
}

/// Takes a received message into `batch` (nothing for a retained repeat), and notes its
/// digest on its topic when the broker could deliver it again as retained (see
/// [`digest_kept`]). Returns what it contributed, the digest when noted, and how many of
/// its refusals were allowed to be stored (for [`Received::dead_letters_allowed`]).
pub fn take_received(
    batch: &mut ReadingBatch,
    registry: &Registry,
    limits: &Limits,
    rules: DeadLetterRules<'_>,
    m: &Received,
) -> (Intake, Option<[u8; 32]>, Option<usize>) {
    if m.repeat {
        return (Intake::default(), None, m.dead_letters_allowed);
    }
    let mut allowed = m.dead_letters_allowed;
    let mut quota = rules.quota;
    let mut allow = |registered: bool, wanted: usize| {
        let granted = match (allowed, quota.as_deref_mut()) {
            (Some(k), _) => k.min(wanted),
            (None, Some(q)) => {
                let key = crate::quota::key_of(&m.topic, registered);
                q.grant(&key, wanted, std::time::Instant::now())
            }
            (None, None) => wanted,
        };
        allowed = Some(granted);
        granted
    };
    let intake = take_message(
        batch,
        registry,
        limits,
        &m.topic,
        &m.payload,
        m.received_at,
        rules.keep_bytes,
        &mut allow,
    );
    let digest = digest_kept(m, &intake).then(|| store::mqtt::payload_digest(&m.payload));
    if let Some(d) = digest {
        batch.note_topic_digest(&m.topic, d, m.received_at);
    }
    (intake, digest, allowed)
}

/// Whether a message's digest is kept on its topic: a retained delivery, a `status` (the
/// retained channel of the contract; its `ts` may be left out, so a repeat would be a
/// new row), or anything refused (a repeat would be a new dead letter). Readings with
/// their `ts` need none: their natural key already drops a repeat. Only on the topics of
/// devices of the inventory: made-up ones would add a row each (their repeats are bounded
/// by their tenant's dead-letter quota instead).
fn digest_kept(m: &Received, intake: &Intake) -> bool {
    intake.registered && (m.retained || m.topic.ends_with("/status") || intake.refused() > 0)
}

/// When each of one message's rows was heard, received at `now`: its own time, or, for a
/// row stamped ahead of its arrival (a device whose clock runs ahead), `now`. Several such
/// rows of one message are heard a microsecond apart just up to `now`, in the order of
/// their stamps, so that each is still judged (two rows of one instant are one).
fn heard_times(rows: Vec<Row>, now: Timestamp) -> Vec<(Row, Timestamp)> {
    let mut ahead: Vec<(Timestamp, usize)> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.ts > now)
        .map(|(i, r)| (r.ts, i))
        .collect();
    ahead.sort();
    let mut heard: Vec<Timestamp> = rows.iter().map(|r| r.ts.min(now)).collect();
    let last = ahead.len() as i64 - 1;
    for (k, (_, i)) in ahead.into_iter().enumerate() {
        heard[i] = Timestamp(now.micros() - (last - k as i64));
    }
    rows.into_iter().zip(heard).collect()
}

/// Decodes `payload` received on `topic` at `now` into `batch`. Never fails: what cannot
/// be accepted becomes a dead letter with its reason (at most `keep_bytes` of each
/// refused payload, with its size and digest), as many as `allow(registered, refusals)`
/// says; the others are counted only.
#[allow(clippy::too_many_arguments)]
pub fn take_message(
    batch: &mut ReadingBatch,
    registry: &Registry,
    limits: &Limits,
    topic: &str,
    payload: &[u8],
    now: Timestamp,
    keep_bytes: usize,
    allow: &mut dyn FnMut(bool, usize) -> usize,
) -> Intake {
    let mut intake = Intake::default();
    let mut refused: Vec<(Cow<'_, [u8]>, Rejection, Option<usize>)> = Vec::new();
    let parsed = Topic::parse(topic).and_then(|t| match RecordType::of(t.kind, t.channel) {
        Some(record) => Ok((t, record)),
        None => Err(Rejection::CommandEcho),
    });
    let resolved = parsed.and_then(|(t, record)| {
        registry
            .resolve(t.tenant, t.device, t.kind)
            .map(|id| (record, id))
    });
    match resolved {
        Err(reason) => refused.push((Cow::Borrowed(payload), reason, None)),
        // An empty message on `status` is how MQTT clears a topic's retained message (a
        // device replaced, a test undone): nothing to record, nothing refused.
        Ok((RecordType::Status, _)) if payload.is_empty() => intake.registered = true,
        Ok((record, device_id)) => {
            intake.registered = true;
            let decoded = decode_payload(record, payload, now, limits);
            for r in decoded.rejected {
                refused.push((Cow::Owned(r.raw), r.reason, r.index));
            }
            intake.rows = decoded.rows.len();
            intake.newest = decoded.rows.iter().map(|r| r.ts).max();
            for (row, heard) in heard_times(decoded.rows, now) {
                batch.push_heard(record, device_id, row, heard);
            }
        }
    }
    if refused.is_empty() {
        return intake;
    }
    let stored = allow(intake.registered, refused.len()).min(refused.len());
    for (i, (raw, reason, index)) in refused.iter().enumerate() {
        if i < stored {
            batch.push_dead_letter(now, topic, raw, reason, *index, keep_bytes);
        } else {
            batch.count_unstored_dead_letter(reason);
        }
    }
    intake.dead_letters = stored;
    intake.unstored = refused.len() - stored;
    intake
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::Kind;
    use store::RegisteredDevice;

    #[test]
    fn every_message_is_accounted_for() {
        let registry = Registry::default();
        registry.insert_all([RegisteredDevice {
            id: 1,
            tenant: "x".into(),
            ext_id: "L1".into(),
            kind: Kind::Light,
        }]);
        let now = Timestamp::from_unix_ms(1_795_338_000_000).unwrap();
        let limits = Limits::default();
        let mut batch = ReadingBatch::default();
        let cases: &[(&str, &[u8], usize, usize)] = &[
            (
                "city/x/light/L1/telemetry",
                br#"[{"ts":1795338000000},{"ts":"bad"}]"#,
                1,
                1,
            ),
            (
                "city/x/light/L2/telemetry",
                br#"{"ts":1795338000000}"#,
                0,
                1,
            ),
            ("city/x/light/L1/cmd", br#"{"ts":1795338000000}"#, 0, 1),
            ("city/x/light/L1/status", br#"{"state":"online"}"#, 1, 0),
            ("city/x/light/L1/status", b"", 0, 0),
            ("city/x/light/L1/telemetry", b"", 0, 1),
            ("nonsense", b"{}", 0, 1),
        ];
        for (topic, payload, rows, dead) in cases {
            let got = take_message(
                &mut batch,
                &registry,
                &limits,
                topic,
                payload,
                now,
                4096,
                &mut |_, n| n,
            );
            assert_eq!((got.rows, got.dead_letters), (*rows, *dead), "{topic}");
        }
        assert_eq!(batch.reading_rows(), 2);
        assert_eq!(batch.dead_letter_count(), 5);

        // Refusals beyond what is allowed are counted, not stored.
        let mut batch = ReadingBatch::default();
        let got = take_message(
            &mut batch,
            &registry,
            &limits,
            "city/x/light/L1/telemetry",
            br#"[{"ts":"a"},{"ts":"b"},{"ts":1795338000000},{"ts":"c"}]"#,
            now,
            4096,
            &mut |_, n| n - 2,
        );
        assert_eq!((got.rows, got.dead_letters, got.unstored), (1, 1, 2));
        assert_eq!(batch.dead_letter_count(), 1);
        assert_eq!(batch.unstored_dead_letters(), 2);
        assert_eq!(
            batch.dead_letter_codes().collect::<Vec<_>>(),
            [("wrong_type", 3)]
        );

        // Stamped ahead of its arrival: heard at it, several of one message a microsecond
        // apart in the order of their stamps; one from the past keeps its time.
        let mut ahead = ReadingBatch::keeping_rows();
        take_message(
            &mut ahead,
            &registry,
            &limits,
            "city/x/light/L1/telemetry",
            br#"[{"ts":1795338003000},{"ts":1795337999000},{"ts":1795338001000},{"ts":1795338002000}]"#,
            now,
            4096,
            &mut |_, n| n,
        );
        let heard: Vec<i64> = ahead
            .take_observations()
            .iter()
            .map(|o| o.row.ts.micros() - now.micros())
            .collect();
        assert_eq!(heard, [0, -1_000_000, -2, -1]);
    }
}

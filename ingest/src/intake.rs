//! One MQTT message -> rows and dead letters in a [`ReadingBatch`].

use model::{decode_payload, Limits, RecordType, Rejection, Timestamp, Topic};
use store::ReadingBatch;

use crate::registry::Registry;
use crate::writer::Received;

/// What one message contributed to a batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Intake {
    pub rows: usize,
    pub dead_letters: usize,
    /// Newest reading time in the message, for publish-to-commit lag.
    pub newest: Option<Timestamp>,
}

/// Takes a received message into `batch` (nothing for a retained repeat), and notes its
/// digest on its topic when the broker could deliver it again as retained (see
/// [`digest_kept`]). The digest is returned when noted.
pub fn take_received(
    batch: &mut ReadingBatch,
    registry: &Registry,
    limits: &Limits,
    m: &Received,
) -> (Intake, Option<[u8; 32]>) {
    if m.repeat {
        return (Intake::default(), None);
    }
    let intake = take_message(batch, registry, limits, &m.topic, &m.payload, m.received_at);
    let digest = digest_kept(m, &intake).then(|| store::mqtt::payload_digest(&m.payload));
    if let Some(d) = digest {
        batch.note_topic_digest(&m.topic, d, m.received_at);
    }
    (intake, digest)
}

/// Whether a message's digest is kept on its topic: a retained delivery, a `status` (the
/// retained channel of the contract; its `ts` may be left out, so a repeat would be a
/// new row), or anything dead-lettered (a repeat would be a new dead letter). Readings
/// with their `ts` need none: their natural key already drops a repeat.
fn digest_kept(m: &Received, intake: &Intake) -> bool {
    m.retained || m.topic.ends_with("/status") || intake.dead_letters > 0
}

/// Decodes `payload` received on `topic` at `now` into `batch`. Never fails: what cannot
/// be accepted becomes a dead letter with its reason.
pub fn take_message(
    batch: &mut ReadingBatch,
    registry: &Registry,
    limits: &Limits,
    topic: &str,
    payload: &[u8],
    now: Timestamp,
) -> Intake {
    let mut intake = Intake::default();
    let mut reject = |batch: &mut ReadingBatch, raw: &[u8], reason: &Rejection, index| {
        batch.push_dead_letter(now, topic, raw, reason, index);
        intake.dead_letters += 1;
    };
    let parsed = Topic::parse(topic).and_then(|t| match RecordType::of(t.kind, t.channel) {
        Some(record) => Ok((t, record)),
        None => Err(Rejection::CommandEcho),
    });
    let (t, record) = match parsed {
        Ok(p) => p,
        Err(reason) => {
            reject(batch, payload, &reason, None);
            return intake;
        }
    };
    let device_id = match registry.resolve(t.tenant, t.device, t.kind) {
        Ok(id) => id,
        Err(reason) => {
            reject(batch, payload, &reason, None);
            return intake;
        }
    };
    let decoded = decode_payload(record, payload, now, limits);
    for r in &decoded.rejected {
        reject(batch, &r.raw, &r.reason, r.index);
    }
    intake.rows = decoded.rows.len();
    intake.newest = decoded.rows.iter().map(|r| r.ts).max();
    for row in decoded.rows {
        batch.push(record, device_id, row);
    }
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
            ("nonsense", b"{}", 0, 1),
        ];
        for (topic, payload, rows, dead) in cases {
            let got = take_message(&mut batch, &registry, &limits, topic, payload, now);
            assert_eq!((got.rows, got.dead_letters), (*rows, *dead), "{topic}");
        }
        assert_eq!(batch.reading_rows(), 2);
        assert_eq!(batch.dead_letter_count(), 4);
    }
}

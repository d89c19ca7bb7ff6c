//! A batch of decoded input on its way to one transaction: reading rows per table,
//! dead letters, and the newest state per device.

use std::collections::{BTreeSet, HashMap};

use model::{Cell, Observation, RecordType, Rejection, Row, Timestamp};

use crate::copy::CopyBuffer;

/// Columns of `dead_letters` as written by COPY.
pub(crate) const DEAD_LETTER_COLUMNS: &str =
    "received_at, topic, payload, reason, code, element, size, sha256";

/// Everything one transaction writes.
#[derive(Debug)]
pub struct ReadingBatch {
    pub(crate) readings: Vec<CopyBuffer>,
    pub(crate) dead_letters: CopyBuffer,
    pub(crate) latest: LatestUpdates,
    /// UTC days (days since the Unix epoch) the readings fall on, for partition upkeep.
    pub(crate) days: BTreeSet<i64>,
    /// 15-minute buckets (Unix seconds / 900) holding lamp readings, for the rollups.
    pub(crate) light_quarters: BTreeSet<i64>,
    dead_letter_count: usize,
    /// Refusals counted and not stored (a device's dead-letter quota was spent), and
    /// bytes of stored ones left out beyond the kept prefix.
    unstored_dead_letters: usize,
    dead_letter_bytes_left_out: u64,
    dead_letter_codes: std::collections::BTreeMap<&'static str, u64>,
    payload_bytes: usize,
    /// Accepted rows kept for whoever consumes committed batches (the rules engine).
    kept: Option<Vec<Observation>>,
    kept_bytes: usize,
    /// Per topic, the last message whose retained copy could come back ([`crate::mqtt`]).
    pub(crate) topic_digests: crate::mqtt::TopicDigests,
}

/// The newest state per device id, as collected from committed rows.
pub type LatestUpdates = HashMap<i32, LatestState>;

/// The newest telemetry, status and activity of one device.
#[derive(Debug, Default, Clone)]
pub struct LatestState {
    pub telemetry: Option<(RecordType, Row)>,
    pub status: Option<(Timestamp, bool)>,
    pub last_seen: Option<Timestamp>,
}

impl LatestState {
    /// Keeps the newer of each part.
    pub fn merge(&mut self, other: LatestState) {
        if let Some(seen) = other.last_seen {
            if self.last_seen.is_none_or(|t| seen > t) {
                self.last_seen = Some(seen);
            }
        }
        if let Some((record, row)) = other.telemetry {
            if self.telemetry.as_ref().is_none_or(|(_, r)| row.ts >= r.ts) {
                self.telemetry = Some((record, row));
            }
        }
        if let Some((ts, online)) = other.status {
            if self.status.is_none_or(|(t, _)| ts >= t) {
                self.status = Some((ts, online));
            }
        }
    }
}

/// Merges `from` into `into`, newest wins per device and part.
pub fn merge_latest(into: &mut LatestUpdates, from: LatestUpdates) {
    for (id, state) in from {
        into.entry(id).or_default().merge(state);
    }
}

impl Default for ReadingBatch {
    fn default() -> Self {
        ReadingBatch {
            readings: RecordType::ALL
                .iter()
                .map(|r| CopyBuffer::new(r.fields().len() + 3))
                .collect(),
            dead_letters: CopyBuffer::new(8),
            latest: HashMap::new(),
            days: BTreeSet::new(),
            light_quarters: BTreeSet::new(),
            dead_letter_count: 0,
            unstored_dead_letters: 0,
            dead_letter_bytes_left_out: 0,
            dead_letter_codes: Default::default(),
            payload_bytes: 0,
            kept: None,
            kept_bytes: 0,
            topic_digests: HashMap::new(),
        }
    }
}

impl ReadingBatch {
    /// A batch that also keeps its accepted rows, for [`ReadingBatch::take_observations`].
    pub fn keeping_rows() -> ReadingBatch {
        ReadingBatch {
            kept: Some(Vec::new()),
            ..ReadingBatch::default()
        }
    }

    /// The accepted rows, if this batch keeps them.
    pub fn take_observations(&mut self) -> Vec<Observation> {
        self.kept.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Adds one accepted row of `device_id`; the newest row per device becomes its latest state.
    pub fn push(&mut self, record: RecordType, device_id: i32, row: Row) {
        let heard = row.ts;
        self.push_heard(record, device_id, row, heard);
    }

    /// [`ReadingBatch::push`] for a row its device was heard from at `heard` (at the
    /// latest when it arrived, whatever the device's clock stamped on it).
    pub fn push_heard(&mut self, record: RecordType, device_id: i32, row: Row, heard: Timestamp) {
        self.readings[record.index()].reading(device_id, record.fields(), &row);
        if let Some(kept) = &mut self.kept {
            self.kept_bytes += std::mem::size_of::<Observation>()
                + row.cells.capacity() * std::mem::size_of::<Cell>();
            // Judged when it was heard: a message cannot tell of a time that has not
            // come yet (a device whose clock runs ahead).
            kept.push(Observation {
                device_id,
                record,
                row: Row {
                    ts: heard,
                    ..row.clone()
                },
            });
        }
        self.days.insert(row.ts.micros().div_euclid(86_400_000_000));
        if record == RecordType::Light {
            self.light_quarters
                .insert(row.ts.micros().div_euclid(900_000_000));
        }
        let mut state = LatestState {
            last_seen: Some(heard),
            ..LatestState::default()
        };
        match record {
            RecordType::Light | RecordType::Cabinet | RecordType::Meter | RecordType::Vehicle => {
                state.telemetry = Some((record, row));
            }
            RecordType::Status => {
                // Ordered by when it was heard: a status stamped ahead of its arrival
                // must not outrank the last will that follows it.
                let online = row.cells.first().and_then(Cell::as_str) == Some("online");
                state.status = Some((heard, online));
            }
            RecordType::Event | RecordType::CmdAck => {}
        }
        self.latest.entry(device_id).or_default().merge(state);
    }

    /// Adds a refused payload or array element: its first `keep_bytes` bytes, with the
    /// size and SHA-256 of all of it.
    pub fn push_dead_letter(
        &mut self,
        received_at: Timestamp,
        topic: &str,
        raw: &[u8],
        reason: &Rejection,
        element: Option<usize>,
        keep_bytes: usize,
    ) {
        self.dead_letter_count += 1;
        *self.dead_letter_codes.entry(reason.code()).or_default() += 1;
        let kept = &raw[..raw.len().min(keep_bytes)];
        self.dead_letter_bytes_left_out += (raw.len() - kept.len()) as u64;
        let b = self.dead_letters.begin_row();
        b.timestamptz(received_at)
            .text(&topic.replace('\0', "\u{FFFD}"))
            .bytea(kept)
            .text(&reason.to_string().replace('\0', "\u{FFFD}"))
            .text(reason.code());
        match element {
            Some(i) => b.int4(i as i32),
            None => b.null(),
        };
        b.int4(i32::try_from(raw.len()).unwrap_or(i32::MAX))
            .bytea(&crate::mqtt::payload_digest(raw));
    }

    /// Counts a refusal that is not stored (its device's dead-letter quota is spent).
    pub fn count_unstored_dead_letter(&mut self, reason: &Rejection) {
        self.unstored_dead_letters += 1;
        *self.dead_letter_codes.entry(reason.code()).or_default() += 1;
    }

    /// Refusals counted and not stored.
    pub fn unstored_dead_letters(&self) -> usize {
        self.unstored_dead_letters
    }

    /// Bytes of refused payloads beyond the prefix kept.
    pub fn dead_letter_bytes_left_out(&self) -> u64 {
        self.dead_letter_bytes_left_out
    }

    /// Records, with the batch, that `digest` is the last message received on `topic` at
    /// `at` (one whose retained copy a broker could deliver again).
    pub fn note_topic_digest(&mut self, topic: &str, digest: [u8; 32], at: Timestamp) {
        let newer = self
            .topic_digests
            .get(topic)
            .is_none_or(|(_, seen)| *seen <= at);
        if newer {
            self.topic_digests.insert(topic.to_owned(), (digest, at));
        }
    }

    /// Accounts the bytes of a received payload (for memory bounds).
    pub fn add_payload_bytes(&mut self, n: usize) {
        self.payload_bytes += n;
    }

    pub fn payload_bytes(&self) -> usize {
        self.payload_bytes
    }

    pub fn reading_rows(&self) -> usize {
        self.readings.iter().map(CopyBuffer::rows).sum()
    }

    pub fn rows_of(&self, record: RecordType) -> usize {
        self.readings[record.index()].rows()
    }

    pub fn dead_letter_count(&self) -> usize {
        self.dead_letter_count
    }

    /// Refusals per rejection code, stored or not.
    pub fn dead_letter_codes(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.dead_letter_codes.iter().map(|(k, v)| (*k, *v))
    }

    /// Memory held for this batch besides its payloads: encoded rows and kept rows.
    pub fn encoded_bytes(&self) -> usize {
        self.readings.iter().map(CopyBuffer::bytes).sum::<usize>()
            + self.dead_letters.bytes()
            + self.kept_bytes
    }

    /// The newest state per device in this batch, taken out (once committed, it goes to
    /// the latest-state table on its own schedule).
    pub fn take_latest(&mut self) -> LatestUpdates {
        std::mem::take(&mut self.latest)
    }

    pub fn is_empty(&self) -> bool {
        self.reading_rows() == 0 && self.dead_letter_count == 0 && self.topic_digests.is_empty()
    }
}

/// The latest telemetry of a device as a JSON object of its non-null fields.
pub(crate) fn telemetry_json(record: RecordType, row: &Row) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (spec, cell) in record.fields().iter().zip(&row.cells) {
        let v = match cell {
            Cell::Null => continue,
            Cell::Bool(b) => serde_json::Value::Bool(*b),
            Cell::Num(n) => serde_json::Number::from_f64(*n)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Cell::Text(s) => serde_json::Value::String(s.clone()),
            Cell::Uuid(u) => serde_json::Value::String(u.to_string()),
        };
        map.insert(spec.name.to_owned(), v);
    }
    serde_json::Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row heard before its stamp (it arrived then, its device's clock runs ahead): stored
    /// with its own time, heard (last seen, its status, as handed to the rules) when it
    /// arrived; a row pushed plainly is heard at its own time.
    #[test]
    fn a_device_is_heard_when_its_message_arrived_not_when_its_clock_says() {
        let arrived = Timestamp(1_795_338_000_000_000);
        let row = |ts: Timestamp| Row {
            ts,
            cells: vec![Cell::Null; RecordType::Light.fields().len()],
            extra: None,
        };
        let mut batch = ReadingBatch::keeping_rows();
        batch.push_heard(RecordType::Light, 1, row(arrived.add_secs(240)), arrived);
        batch.push(RecordType::Light, 2, row(arrived.add_secs(-60)));
        let kept: Vec<Timestamp> = batch.take_observations().iter().map(|o| o.row.ts).collect();
        assert_eq!(kept, [arrived, arrived.add_secs(-60)]);
        batch.push_heard(
            RecordType::Status,
            3,
            Row {
                ts: arrived.add_secs(240),
                cells: vec![Cell::Text("online".into())],
                extra: None,
            },
            arrived,
        );
        let latest = batch.take_latest();
        assert_eq!(latest[&1].last_seen, Some(arrived));
        assert_eq!(
            latest[&3].status,
            Some((arrived, true)),
            "a status is heard on arrival"
        );
        assert_eq!(
            latest[&1].telemetry.as_ref().unwrap().1.ts,
            arrived.add_secs(240)
        );
        assert_eq!(latest[&2].last_seen, Some(arrived.add_secs(-60)));
    }
}

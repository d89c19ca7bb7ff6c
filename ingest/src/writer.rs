//! The writer: commits sealed batches, retrying while the database is away, then hands
//! the acknowledgements on. A batch the database refuses for good is written message by
//! message so that only the offending message becomes a dead letter.

use std::sync::Arc;
use std::time::{Duration, Instant};

use model::{Backoff, Limits, RecordType, Rejection};
use store::{Ingestion, ReadingBatch, StoreError, WriteOutcome};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::intake::{take_received, DeadLetterRules, Received};
use crate::metrics::{IngestMetrics, ReasonLabel, RecordLabel};
use crate::registry::Registry;

/// A batch ready to commit, with what to acknowledge afterwards.
pub struct SealedBatch {
    pub batch: ReadingBatch,
    pub messages: Vec<Received>,
    /// Packet ids to acknowledge (QoS 1 messages only), in arrival order.
    pub acks: Vec<u16>,
    /// The MQTT session the packet ids belong to.
    pub session: u64,
    /// Order of sealing, starting at 1; acknowledgements are released in this order.
    pub seq: u64,
    /// Payload and encoded bytes held until commit (the memory budget).
    pub held_bytes: usize,
    /// Holds retained deliveries the session could not judge: the writer looks their
    /// topics up before writing ([`Writer::drop_retained_repeats`]).
    pub unjudged_retained: bool,
}

/// Acknowledgements of one committed batch.
#[derive(Debug)]
pub struct BatchAcks {
    pub seq: u64,
    pub session: u64,
    pub pkids: Vec<u16>,
}

pub(crate) struct Writer {
    pub url: String,
    pub registry: Arc<Registry>,
    pub limits: Limits,
    pub dead_letter_bytes: usize,
    pub metrics: IngestMetrics,
    pub acks: mpsc::UnboundedSender<BatchAcks>,
    /// Accepted rows of each committed batch, in arrival order (redeliveries included:
    /// the consumer must be idempotent, as the rules engine is).
    pub committed: Option<mpsc::Sender<model::Committed>>,
    pub latest: mpsc::UnboundedSender<store::LatestUpdates>,
    pub clock: crate::Clock,
    pub released: Arc<tokio::sync::Notify>,
}

const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl Writer {
    /// Takes batches from the shared queue until it closes. Several writers may run, each
    /// on its own connection, so one batch's COPY overlaps another's commit.
    pub async fn run(
        self: Arc<Self>,
        batches: Arc<tokio::sync::Mutex<mpsc::Receiver<SealedBatch>>>,
        hard_stop: CancellationToken,
    ) {
        let mut db: Option<Ingestion> = None;
        loop {
            let next = batches.lock().await.recv().await;
            let Some(mut sealed) = next else { break };
            let Some((outcome, observations)) = self.commit(&mut db, &mut sealed, &hard_stop).await
            else {
                // Stopped before the batch could commit: nothing is acknowledged, so the
                // broker delivers these messages again to the next session.
                warn!(
                    message = "Stopping with an uncommitted batch; the broker will redeliver it.",
                    messages = sealed.messages.len()
                );
                return;
            };
            let committed_at = std::time::Instant::now();
            self.account(&sealed, &outcome);
            let _ = self.latest.send(sealed.batch.take_latest());
            // Sent even when empty: the acknowledger releases batches in sealing order.
            // It outlives the writers; a send error means shutdown.
            let _ = self.acks.send(BatchAcks {
                seq: sealed.seq,
                session: sealed.session,
                pkids: sealed.acks,
            });
            if let Some(tx) = &self.committed {
                let _ = tx
                    .send(model::Committed {
                        at: committed_at,
                        rows: observations,
                    })
                    .await;
            }
        }
        info!(message = "Writer drained.");
    }

    /// Commits a batch and returns what it wrote with its accepted rows; `None` only if
    /// stopped while the database was unavailable.
    async fn commit(
        &self,
        db: &mut Option<Ingestion>,
        sealed: &mut SealedBatch,
        stop: &CancellationToken,
    ) -> Option<(WriteOutcome, Vec<model::Observation>)> {
        let mut backoff = Backoff::new(Duration::from_millis(100), MAX_BACKOFF);
        loop {
            let started = Instant::now();
            let result = async {
                let conn = match db {
                    Some(conn) => conn,
                    None => db.insert(Ingestion::connect(&self.url).await?),
                };
                self.drop_retained_repeats(conn, sealed).await?;
                conn.write_batch(&sealed.batch).await
            }
            .await;
            match result {
                Ok(outcome) => {
                    self.metrics
                        .batch_seconds
                        .observe(started.elapsed().as_secs_f64());
                    return Some((outcome, sealed.batch.take_observations()));
                }
                Err(e) if e.is_retryable() => {
                    self.metrics.write_retries.inc();
                    warn!(message = "Database unavailable; retrying the batch.", error = %e, retry_in_ms = backoff.peek().as_millis() as u64);
                    *db = None;
                }
                Err(e) => {
                    error!(message = "Database refused a batch; writing its messages one by one.", error = %e);
                    *db = None;
                    match self.commit_one_by_one(sealed).await {
                        Ok(done) => return Some(done),
                        Err(e) => {
                            self.metrics.write_retries.inc();
                            warn!(message = "Writing messages one by one failed; retrying.", error = %e);
                        }
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tokio::time::sleep(backoff.failed()) => {}
            }
        }
    }

    /// Retained deliveries the session could not judge (their topic's last message is
    /// not one it saw) are looked up: one whose bytes are the last recorded on its topic is
    /// a repeat, acknowledged with its batch and not recorded again. The batch is then
    /// rebuilt without the repeats.
    async fn drop_retained_repeats(
        &self,
        db: &Ingestion,
        sealed: &mut SealedBatch,
    ) -> Result<(), StoreError> {
        if !sealed.unjudged_retained {
            return Ok(());
        }
        let topics: Vec<&str> = sealed
            .messages
            .iter()
            .filter(|m| m.retained && !m.repeat)
            .map(|m| m.topic.as_str())
            .collect();
        let known = db.topic_digests(&topics).await?;
        let mut repeats = 0;
        for m in sealed
            .messages
            .iter_mut()
            .filter(|m| m.retained && !m.repeat)
        {
            if known.get(&m.topic) == Some(&store::mqtt::payload_digest(&m.payload)) {
                m.repeat = true;
                repeats += 1;
            }
        }
        sealed.unjudged_retained = false;
        if repeats > 0 {
            self.metrics.retained_repeats.inc_by(repeats);
            let mut batch = if self.committed.is_some() {
                ReadingBatch::keeping_rows()
            } else {
                ReadingBatch::default()
            };
            for m in &sealed.messages {
                take_received(&mut batch, &self.registry, &self.limits, self.rules(), m);
            }
            // The memory budget accounts the first encoding; the new one is no larger.
            sealed.batch = batch;
        }
        Ok(())
    }

    /// How a rebuilt batch keeps refusals: as decided when the messages were first taken.
    fn rules(&self) -> DeadLetterRules<'static> {
        DeadLetterRules {
            keep_bytes: self.dead_letter_bytes,
            quota: None,
        }
    }

    async fn commit_one_by_one(
        &self,
        sealed: &SealedBatch,
    ) -> Result<(WriteOutcome, Vec<model::Observation>), StoreError> {
        let mut db = Ingestion::connect(&self.url).await?;
        let mut total = WriteOutcome::default();
        let mut observations = Vec::new();
        for m in &sealed.messages {
            let mut single = if self.committed.is_some() {
                ReadingBatch::keeping_rows()
            } else {
                ReadingBatch::default()
            };
            if m.repeat {
                continue;
            }
            take_received(&mut single, &self.registry, &self.limits, self.rules(), m);
            let outcome = match db.write_batch(&single).await {
                Ok(o) => {
                    let _ = self.latest.send(single.take_latest());
                    observations.extend(single.take_observations());
                    o
                }
                Err(e) if e.is_retryable() => return Err(e),
                Err(e) => {
                    let mut dead = ReadingBatch::default();
                    let reason = Rejection::StorageRefused(e.to_string());
                    dead.push_dead_letter(
                        m.received_at,
                        &m.topic,
                        &m.payload,
                        &reason,
                        None,
                        self.dead_letter_bytes,
                    );
                    db.write_batch(&dead).await?
                }
            };
            for (sum, n) in total.inserted.iter_mut().zip(outcome.inserted) {
                *sum += n;
            }
            total.duplicates += outcome.duplicates;
            total.dead_letters += outcome.dead_letters;
        }
        Ok((total, observations))
    }

    fn account(&self, sealed: &SealedBatch, outcome: &WriteOutcome) {
        let m = &self.metrics;
        m.batches.inc();
        m.duplicates.inc_by(outcome.duplicates);
        for record in RecordType::ALL {
            let n = outcome.inserted[record.index()];
            if n > 0 {
                m.rows
                    .get_or_create(&RecordLabel {
                        record: record.name(),
                    })
                    .inc_by(n);
            }
        }
        for (reason, n) in sealed.batch.dead_letter_codes() {
            m.dead_letters
                .get_or_create(&ReasonLabel { reason })
                .inc_by(n);
        }
        m.dead_letters_unstored
            .inc_by(sealed.batch.unstored_dead_letters() as u64);
        m.dead_letter_bytes_left_out
            .inc_by(sealed.batch.dead_letter_bytes_left_out());
        let now = (self.clock)();
        for msg in &sealed.messages {
            if let Some(ts) = msg.newest {
                m.lag_seconds
                    .observe((now.micros() - ts.micros()).max(0) as f64 / 1e6);
            }
        }
        m.buffered_bytes.dec_by(sealed.held_bytes as i64);
        self.released.notify_one();
    }
}

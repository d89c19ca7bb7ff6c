//! The MQTT session: receive, decode into the open batch, seal batches by size or age,
//! and keep the connection alive while the writer works. A broker that answers without
//! the persistent session the hub had is reported ([`Session::check_kept`]).

use model::Backoff;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode, Filter, Publish, RetainForwardRule, SubscribeReasonCode,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, Incoming};
use store::ReadingBatch;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::intake::Received;
use crate::intake::{take_received, DeadLetterRules};
use crate::writer::SealedBatch;
use crate::{IngestConfig, Shared};

/// The batch being filled.
struct OpenBatch {
    batch: ReadingBatch,
    messages: Vec<Received>,
    acks: Vec<u16>,
    rows: usize,
    deadline: Option<Instant>,
    unjudged_retained: bool,
}

impl OpenBatch {
    fn new(keep_rows: bool) -> OpenBatch {
        OpenBatch {
            batch: if keep_rows {
                ReadingBatch::keeping_rows()
            } else {
                ReadingBatch::default()
            },
            messages: Vec::new(),
            acks: Vec::new(),
            rows: 0,
            deadline: None,
            unjudged_retained: false,
        }
    }
}

/// Topics' digests noted in this run, at most this many (then forgotten, and judged by
/// the database instead).
const RECENT_DIGESTS: usize = 200_000;

/// The persistent session the hub expects the broker to hold.
pub(crate) struct KeptSession {
    /// Its name in the database ([`store::Ingestion::mqtt_session_known`]).
    pub key: String,
    /// Whether the broker should have it: the hub has had it before (in this process or
    /// an earlier one).
    pub expected: bool,
    /// Where to record it the first time.
    pub database_url: String,
}

pub(crate) struct Session {
    pub config: IngestConfig,
    pub shared: Shared,
    pub client: AsyncClient,
    pub eventloop: EventLoop,
    /// Incremented at every CONNACK: packet ids of one session mean nothing in the next.
    pub session: Arc<AtomicU64>,
    /// Sequence number of the last sealed batch; acknowledgements follow this order.
    pub next_seq: u64,
    /// Keep accepted rows in batches, for the consumer of committed batches.
    pub keep_rows: bool,
    pub kept: KeptSession,
    /// The digest of the last message noted per topic in this run (see
    /// [`crate::intake::take_received`]): a retained delivery is judged against it first,
    /// since a message still on its way to the database is not there to be looked up.
    pub recent: std::collections::HashMap<String, [u8; 32]>,
    /// How many dead letters each device may still have stored.
    pub quota: crate::quota::DeadLetterQuota,
}

/// The hub's subscription to one topic filter: QoS 1, and the broker's retained messages
/// only when the subscription is new to the session. A hub that comes back to the session
/// it had was there (or had its messages queued) when each retained message was
/// published, so a stored copy sent again would be old news: a device that left `online`
/// retained and then said `offline` without retaining it would otherwise be taken as
/// online at every start. The first start, and a start after the broker lost the session,
/// get the stored copies, judged by their digests (see [`crate::intake::take_received`]).
fn subscription(filter: &str) -> Filter {
    let mut f = Filter::new(filter, QoS::AtLeastOnce);
    f.retain_forward_rule = RetainForwardRule::OnNewSubscribe;
    f
}

impl Session {
    /// Runs until `shutdown`, then seals the open batch and returns; the caller drains.
    pub async fn run(&mut self, batches: &mpsc::Sender<SealedBatch>, shutdown: &CancellationToken) {
        let mut open = OpenBatch::new(self.keep_rows);
        let mut sealed: VecDeque<SealedBatch> = VecDeque::new();
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(15));
        let mut retry_at: Option<Instant> = None;
        let max_wait = Duration::from_millis(self.config.batch_max_wait_ms);
        loop {
            let buffered = self.shared.metrics.buffered_bytes.get() as usize;
            let can_read = buffered < self.config.max_buffered_bytes && retry_at.is_none();
            let far = Instant::now() + Duration::from_secs(3600);
            // Why this select! is shaped so: the event loop must be polled for acks and
            // pings to flow even while the writer is busy, so sending a sealed batch to the
            // writer is a branch, not an await in the receive path. Reading stops only when
            // the bytes held in memory reach the budget; the broker's in-flight window
            // normally stops it long before.
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                permit = batches.reserve(), if !sealed.is_empty() => {
                    let Ok(permit) = permit else { break };
                    if let Some(b) = sealed.pop_front() {
                        permit.send(b);
                    }
                }
                _ = tokio::time::sleep_until(open.deadline.unwrap_or(far)), if open.deadline.is_some() => {
                    self.seal(&mut open, &mut sealed);
                }
                _ = tokio::time::sleep_until(retry_at.unwrap_or(far)), if retry_at.is_some() => {
                    retry_at = None;
                }
                _ = self.shared.released.notified(), if !can_read && retry_at.is_none() => {}
                event = self.eventloop.poll(), if can_read => match event {
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        self.take(&mut open, p, max_wait);
                        if open.messages.len() >= self.config.batch_max_messages || open.rows >= self.config.batch_max_rows {
                            self.seal(&mut open, &mut sealed);
                        }
                    }
                    Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                        // Packet ids of the batch being filled belong to the old session.
                        self.seal(&mut open, &mut sealed);
                        let n = self.session.fetch_add(1, Ordering::SeqCst) + 1;
                        self.shared.metrics.connects.inc();
                        self.shared.metrics.mqtt_disconnected_since.set(0);
                        backoff.succeeded();
                        info!(message = "MQTT session established.", session = n, session_present = ack.session_present);
                        self.check_kept(ack.session_present, n);
                        // Subscribing goes through the same request queue as the acks; a
                        // task waits for room instead of failing when the queue is full.
                        let filters: Vec<_> = self.config.mqtt.topics.iter()
                            .map(|t| subscription(t))
                            .collect();
                        let client = self.client.clone();
                        tokio::spawn(async move {
                            if let Err(error) = client.subscribe_many(filters).await {
                                warn!(message = "Cannot subscribe; the session is closing.", %error);
                            }
                        });
                    }
                    Ok(Event::Incoming(Incoming::SubAck(ack))) => {
                        if ack.return_codes.iter().any(|c| !matches!(c, SubscribeReasonCode::Success(_))) {
                            warn!(message = "The broker refused a subscription; check the ACL of the hub's user.", topics = ?self.config.mqtt.topics);
                        } else {
                            self.shared.metrics.subscriptions.inc();
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        if matches!(error, ConnectionError::ConnectionRefused(
                            ConnectReturnCode::UnsupportedProtocolVersion | ConnectReturnCode::RefusedProtocolVersion
                        )) {
                            error!(message = "The broker does not speak MQTT 5, which ingestion needs (Mosquitto 2 does).");
                        }
                        self.shared.metrics.connection_errors.inc();
                        let since = &self.shared.metrics.mqtt_disconnected_since;
                        if since.get() == 0 {
                            since.set(model::Timestamp::now().micros() / 1_000_000);
                        }
                        let wait = backoff.failed();
                        warn!(message = "MQTT connection failed; reconnecting.", %error, retry_in_ms = wait.as_millis() as u64);
                        retry_at = Some(Instant::now() + wait);
                    }
                },
            }
        }
        self.seal(&mut open, &mut sealed);
        for b in sealed {
            if batches.send(b).await.is_err() {
                break;
            }
        }
    }

    /// After a CONNACK: a broker that no longer holds the session the hub had may have
    /// discarded messages queued for it (it was wiped, or lost with the broker's state),
    /// and nothing downstream can tell, so it is said loudly: an error, a counter, and the
    /// time of it, which `/health` reports. The first session is recorded so that the
    /// next start knows to expect it.
    fn check_kept(&mut self, present: bool, session: u64) {
        if !present && self.kept.expected {
            let now = model::Timestamp::now().micros() / 1_000_000;
            self.shared.metrics.sessions_lost.inc();
            self.shared.metrics.session_lost_at.set(now);
            let (url, key) = (self.kept.database_url.clone(), self.kept.key.clone());
            tokio::spawn(async move {
                let noted = match store::Ingestion::connect(&url).await {
                    Ok(db) => db.note_mqtt_session_lost(&key, now).await,
                    Err(e) => Err(e),
                };
                if let Err(error) = noted {
                    warn!(message = "Cannot record the loss of the hub's MQTT session; a restart will no longer report it.", %error);
                }
            });
            error!(
                message = "The broker did not keep the hub's MQTT session; readings published while the hub was away may have been lost.",
                client = %self.kept.key,
                session
            );
        }
        if !self.kept.expected {
            self.kept.expected = true;
            let (url, key) = (self.kept.database_url.clone(), self.kept.key.clone());
            tokio::spawn(async move {
                let noted = match store::Ingestion::connect(&url).await {
                    Ok(db) => db.note_mqtt_session(&key).await,
                    Err(e) => Err(e),
                };
                if let Err(error) = noted {
                    warn!(message = "Cannot record the hub's MQTT session; a later loss of it may go unnoticed.", %error);
                }
            });
        }
    }

    fn take(&mut self, open: &mut OpenBatch, p: Publish, max_wait: Duration) {
        let now = (self.shared.clock)();
        self.shared.metrics.messages.inc();
        self.shared
            .metrics
            .buffered_bytes
            .inc_by(p.payload.len() as i64);
        open.batch.add_payload_bytes(p.payload.len());
        let mut m = Received {
            // The broker checked that the topic is UTF-8, as MQTT requires.
            topic: String::from_utf8_lossy(&p.topic).into_owned(),
            payload: p.payload,
            received_at: now,
            newest: None,
            retained: p.retain,
            repeat: false,
            dead_letters_allowed: None,
        };
        if m.retained {
            match self.recent.get(&m.topic) {
                Some(d) if *d == store::mqtt::payload_digest(&m.payload) => {
                    m.repeat = true;
                    self.shared.metrics.retained_repeats.inc();
                }
                Some(_) => {}
                None => open.unjudged_retained = true,
            }
        }
        let rules = DeadLetterRules {
            keep_bytes: self.config.dead_letter_bytes,
            quota: Some(&mut self.quota),
        };
        let (intake, digest, allowed) = take_received(
            &mut open.batch,
            &self.shared.registry,
            &self.config.limits,
            rules,
            &m,
        );
        m.dead_letters_allowed = allowed;
        if let Some(d) = digest {
            if self.recent.len() >= RECENT_DIGESTS {
                self.recent.clear();
            }
            self.recent.insert(m.topic.clone(), d);
        }
        open.rows += intake.rows + intake.dead_letters;
        if p.qos != QoS::AtMostOnce {
            open.acks.push(p.pkid);
        }
        m.newest = intake.newest;
        open.messages.push(m);
        if open.deadline.is_none() {
            open.deadline = Some(Instant::now() + max_wait);
        }
    }

    fn seal(&mut self, open: &mut OpenBatch, sealed: &mut VecDeque<SealedBatch>) {
        if open.messages.is_empty() {
            open.deadline = None;
            return;
        }
        let full = std::mem::replace(open, OpenBatch::new(self.keep_rows));
        debug!(
            message = "Batch sealed.",
            messages = full.messages.len(),
            rows = full.rows
        );
        // The encoded rows are held until commit too; the payloads were counted on arrival.
        let encoded = full.batch.encoded_bytes();
        self.shared.metrics.buffered_bytes.inc_by(encoded as i64);
        self.next_seq += 1;
        sealed.push_back(SealedBatch {
            held_bytes: full.batch.payload_bytes() + encoded,
            batch: full.batch,
            messages: full.messages,
            acks: full.acks,
            session: self.session.load(Ordering::SeqCst),
            seq: self.next_seq,
            unjudged_retained: full.unjudged_retained,
        });
    }

    /// After shutdown: keep polling so the acknowledgements of the last commits reach the
    /// broker, until the acknowledger is done (or `limit` passes), then disconnect.
    /// Messages that arrive meanwhile are not acknowledged; the broker redelivers them.
    pub async fn drain(&mut self, acker_done: CancellationToken, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            tokio::select! {
                _ = acker_done.cancelled() => break,
                _ = tokio::time::sleep_until(deadline) => {
                    warn!(message = "Gave up waiting for acknowledgements to be sent; the broker will redeliver.");
                    break;
                }
                event = self.eventloop.poll() => if event.is_err() { break },
            }
        }
        // Flush what the acknowledger queued last, then say goodbye.
        let _ = self.client.try_disconnect();
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            match tokio::time::timeout_at(until, self.eventloop.poll()).await {
                Ok(Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))) | Ok(Err(_)) | Err(_) => {
                    break
                }
                Ok(Ok(_)) => {}
            }
        }
    }
}

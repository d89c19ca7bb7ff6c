//! Ingestion: MQTT in, PostgreSQL out, acknowledged only after commit.
//!
//! ```text
//! broker --publish--> session (decode, batch) --sealed batch--> writer (COPY, commit)
//!   ^                                                              |
//!   +------------------ PUBACK <-- acknowledger <--- packet ids ----+--> committed (rules)
//! ```
//!
//! - [`session`]: the MQTT 5 session (QoS 1, persistent, manual acks, retained copies only
//!   on new subscriptions), batching by size and age.
//! - [`intake`]: one message -> rows and dead letters in a batch, and the digest kept for
//!   a message the broker could send again as retained.
//! - [`writer`]: commit with retries; a refused batch is retried message by message; a
//!   retained delivery of what was recorded already is dropped from its batch.
//! - [`quota`]: how many dead letters each device may have stored.
//! - [`registry`]: topic -> device id, kept current from the database.
//! - `latest`: the latest-state table, updated from committed batches off the ack path.
//! - [`backfill`]: a history written as if received when sent (a demonstration's past),
//!   through the same decoding and writes, but not seen by the rules.
//! - [`metrics`]: counters and histograms for `/metrics`.
//!
//! Start at [`run`]. Back-pressure: the broker sends at most its in-flight window of
//! unacknowledged messages, and acknowledgements follow commits, so a slow database slows
//! the broker's delivery instead of growing memory; a byte budget guards the rest.

pub mod backfill;
pub mod intake;
mod latest;
pub mod metrics;
pub mod quota;
pub mod registry;
mod session;
pub mod writer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use model::Limits;
use rumqttc::v5::mqttbytes::v5::{ConnectProperties, Publish};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, MqttOptions};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use metrics::IngestMetrics;
pub use registry::Registry;

pub use model::Clock;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    /// Stable across restarts: the broker keeps the session (and queues) under this id.
    pub client_id: String,
    pub username: Option<String>,
    #[serde(skip_serializing)]
    pub password: Option<String>,
    pub keep_alive_secs: u64,
    /// Topic filters; the default takes every device-to-hub channel of every tenant.
    pub topics: Vec<String>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: "cityhub-ingest".into(),
            username: None,
            password: None,
            keep_alive_secs: 30,
            topics: default_topics("+"),
        }
    }
}

/// The device-to-hub topic filters of one tenant (or `+` for all).
pub fn default_topics(tenant: &str) -> Vec<String> {
    ["telemetry", "event", "status", "cmd/ack"]
        .iter()
        .map(|c| format!("city/{tenant}/+/+/{c}"))
        .collect()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    pub mqtt: MqttConfig,
    /// Seal a batch at this many messages...
    pub batch_max_messages: usize,
    /// ...or this many rows (readings plus dead letters)...
    pub batch_max_rows: usize,
    /// ...or when its first message is this old.
    pub batch_max_wait_ms: u64,
    /// Stop reading from the broker while this many bytes (payloads and their encoded
    /// rows) await commit. This bounds the hub's memory whatever the backlog.
    pub max_buffered_bytes: usize,
    /// Concurrent batch writers, each with its own database connection.
    pub writers: usize,
    /// The latest-state table is written at most this often.
    pub latest_interval_ms: u64,
    /// Bytes of a refused payload kept in its dead letter (with the size and SHA-256 of
    /// all of it).
    pub dead_letter_bytes: usize,
    /// Dead letters stored per device and hour at most (0: no limit); the others are
    /// counted in the metrics only.
    pub dead_letters_per_device_per_hour: u32,
    #[serde(skip)]
    pub limits: Limits,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            mqtt: MqttConfig::default(),
            batch_max_messages: 10_000,
            batch_max_rows: 20_000,
            batch_max_wait_ms: 50,
            max_buffered_bytes: 64 * 1024 * 1024,
            writers: 2,
            latest_interval_ms: 1000,
            dead_letter_bytes: 4096,
            dead_letters_per_device_per_hour: 120,
            limits: Limits::default(),
        }
    }
}

#[derive(Debug, Error)]
pub enum IngestError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// What the session and the writer share.
#[derive(Clone)]
pub(crate) struct Shared {
    pub registry: Arc<Registry>,
    pub metrics: IngestMetrics,
    pub clock: Clock,
    /// Signalled when a commit frees buffered bytes.
    pub released: Arc<Notify>,
}

/// Runs ingestion until `shutdown` is cancelled, then stops in order: stop reading, commit
/// what was read, acknowledge it, disconnect.
pub async fn run(
    config: IngestConfig,
    database_url: String,
    metrics: IngestMetrics,
    clock: Clock,
    committed: Option<mpsc::Sender<model::Committed>>,
    shutdown: CancellationToken,
) -> Result<(), IngestError> {
    let db = store::Ingestion::connect(&database_url).await?;
    let (registry, newest) = Registry::load(&db).await?;
    let mqtt_session = session_key(&config.mqtt);
    let expect_session = db.mqtt_session_known(&mqtt_session).await?;
    if let Some(at) = db.mqtt_session_lost_at(&mqtt_session).await? {
        // Reported as before the restart: a restart does not make the loss any smaller.
        metrics.session_lost_at.set(at);
    }
    metrics
        .mqtt_disconnected_since
        .set(model::Timestamp::now().micros() / 1_000_000);
    drop(db);
    let background = CancellationToken::new();
    tokio::spawn(registry.clone().keep_current(
        database_url.clone(),
        newest,
        Duration::from_secs(1),
        Duration::from_secs(60),
        background.clone(),
    ));

    let mut options = MqttOptions::new(&config.mqtt.client_id, &config.mqtt.host, config.mqtt.port);
    let mut properties = ConnectProperties::new();
    // The session outlives any disconnection: the broker queues for the hub until it is back.
    properties.session_expiry_interval = Some(u32::MAX);
    // A broker drops, unseen, what exceeds the size a client announces; the hub takes any
    // packet MQTT allows, so a payload over its own limit arrives and is dead-lettered
    // (the broker's `message_size_limit` bounds what devices can send at all).
    properties.max_packet_size = Some(MQTT_MAX_PACKET);
    // How many unacknowledged QoS 1 messages the broker may send ahead: MQTT 5 lets the
    // client say (a 3.1.1 broker applies its own `max_inflight_messages`, 20,000 in the
    // shipped configuration); more would only wait in memory behind the writer.
    properties.receive_maximum = Some(RECEIVE_MAXIMUM);
    options
        .set_clean_start(false)
        .set_connect_properties(properties)
        .set_manual_acks(true)
        .set_keep_alive(Duration::from_secs(config.mqtt.keep_alive_secs.max(5)));
    if let Some(user) = &config.mqtt.username {
        options.set_credentials(user, config.mqtt.password.clone().unwrap_or_default());
    }
    // Acks wait here while the session polls; a small channel keeps few stale acks around
    // when a connection drops (they are dropped by session number anyway).
    let (client, eventloop) = AsyncClient::new(options, 1024);

    let shared = Shared {
        registry: registry.clone(),
        metrics: metrics.clone(),
        clock: clock.clone(),
        released: Arc::new(Notify::new()),
    };
    let session_no = Arc::new(AtomicU64::new(0));
    let (batch_tx, batch_rx) = mpsc::channel(1);
    let batch_rx = Arc::new(tokio::sync::Mutex::new(batch_rx));
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let (latest_tx, latest_rx) = mpsc::unbounded_channel();
    let latest_task = tokio::spawn(latest::keep_latest(
        database_url.clone(),
        latest_rx,
        Duration::from_millis(config.latest_interval_ms),
    ));
    let writer_stop = CancellationToken::new();
    let keep_rows = committed.is_some();
    let writer_url = database_url.clone();
    let writer = Arc::new(writer::Writer {
        url: database_url,
        registry,
        limits: config.limits,
        dead_letter_bytes: config.dead_letter_bytes,
        metrics: metrics.clone(),
        acks: ack_tx,
        committed,
        latest: latest_tx,
        clock,
        released: shared.released.clone(),
    });
    let writer_tasks: Vec<_> = (0..config.writers.max(1))
        .map(|_| tokio::spawn(writer.clone().run(batch_rx.clone(), writer_stop.clone())))
        .collect();
    drop(writer);
    let acker_done = CancellationToken::new();
    tokio::spawn(acknowledge(
        client.clone(),
        session_no.clone(),
        ack_rx,
        acker_done.clone(),
    ));

    let mut session = session::Session {
        quota: quota::DeadLetterQuota::new(config.dead_letters_per_device_per_hour),
        config,
        shared,
        client,
        eventloop,
        session: session_no,
        next_seq: 0,
        keep_rows,
        kept: session::KeptSession {
            key: mqtt_session,
            expected: expect_session,
            database_url: writer_url,
        },
        recent: std::collections::HashMap::new(),
    };
    session.run(&batch_tx, &shutdown).await;
    info!(message = "Stopped reading; committing and acknowledging what was read.");
    drop(batch_tx);
    // The writer finishes its queue; if the database stays away, stop after a grace period
    // without acknowledging (the broker redelivers).
    let grace = tokio::time::sleep(Duration::from_secs(20));
    let writer_stop_on_grace = writer_stop.clone();
    tokio::spawn(async move {
        grace.await;
        writer_stop_on_grace.cancel();
    });
    session.drain(acker_done, Duration::from_secs(25)).await;
    for task in writer_tasks {
        let _ = task.await;
    }
    // The writers held the only senders: the updater writes what it has and ends.
    let _ = latest_task.await;
    background.cancel();
    info!(message = "Ingestion stopped.");
    Ok(())
}

/// QoS 1 messages in flight from the broker at most.
const RECEIVE_MAXIMUM: u16 = 20_000;

/// The largest packet MQTT can carry (its remaining length is at most 268,435,455 bytes).
const MQTT_MAX_PACKET: u32 = 268_435_460;

/// The name the hub's record of its broker session goes by
/// ([`store::mqtt::session_key`]).
fn session_key(mqtt: &MqttConfig) -> String {
    store::mqtt::session_key(mqtt.username.as_deref(), &mqtt.client_id)
}

/// Sends PUBACKs for committed batches in the order the batches were sealed (so in the
/// order the messages arrived, as MQTT asks), for the current session only.
async fn acknowledge(
    client: AsyncClient,
    session: Arc<AtomicU64>,
    mut acks: mpsc::UnboundedReceiver<writer::BatchAcks>,
    done: CancellationToken,
) {
    let mut waiting = std::collections::BTreeMap::new();
    let mut next = 1;
    'receive: while let Some(batch) = acks.recv().await {
        waiting.insert(batch.seq, batch);
        while let Some(batch) = waiting.remove(&next) {
            next += 1;
            if batch.session != session.load(Ordering::SeqCst) {
                // The connection these ids belong to is gone; the broker redelivers and
                // the store drops the duplicates.
                continue;
            }
            for pkid in batch.pkids {
                let mut p = Publish::new("", QoS::AtLeastOnce, Vec::new(), None);
                p.pkid = pkid;
                if client.ack(&p).await.is_err() {
                    break 'receive;
                }
            }
        }
    }
    done.cancel();
}

//! The dispatcher: pending commands out to the broker, at a bounded rate.
//!
//! Every `poll` it expires what passed its expiry, records which commands the broker took,
//! and, when its queue is empty, reads the next commands due (oldest first, devices not
//! known to be offline, not already in flight). It publishes them one slot of
//! `1 / rate_per_sec` apart. rumqttc reports each publish's packet id as it goes out
//! (`Outgoing::Publish`), in the order of the publish calls, and the broker's PUBACK names
//! the same id: a FIFO of command ids turns one into the other.
//!
//! On any connection error the client is dropped and a new one made (rumqttc would replay
//! its unacknowledged publishes on reconnect, under packet ids this loop could no longer
//! match); the commands that were in flight are still `pending` in the table and are read
//! again.

use model::Backoff;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, Outgoing, QoS};
use serde::{Deserialize, Serialize};
use store::{Dispatch, DueCommand, StoreError};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{Clock, CommandMetrics};

/// The dispatcher's settings (`[commands]` in cityhub.toml).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatcherConfig {
    /// Commands published per second at most (a broker and a radio network have limits;
    /// a district-wide command is spread out rather than sent as one burst).
    pub rate_per_sec: u32,
    /// How often the table is read for new commands, in milliseconds.
    pub poll_ms: u64,
    /// The broker account of the dispatcher's connection, distinct from ingestion's: the
    /// shipped broker configuration makes every connection's client id its user name, so
    /// two connections under one account would throw each other out.
    pub mqtt_username: Option<String>,
    #[serde(skip_serializing)]
    pub mqtt_password: Option<String>,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            rate_per_sec: 200,
            poll_ms: 200,
            mqtt_username: None,
            mqtt_password: None,
        }
    }
}

/// Where and as whom the dispatcher connects (the hub's broker settings).
#[derive(Debug, Clone)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    /// Distinct from ingestion's: two sessions under one id would throw each other out.
    /// (A broker that binds client ids to accounts uses the user name instead.)
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// How often the counters read from the table (answers, issued) are refreshed.
const COUNTERS_EVERY: Duration = Duration::from_secs(1);

/// What the MQTT event loop tells the dispatcher.
enum Note {
    Connected,
    Published(u16),
    Taken(u16),
    Lost(String),
}

/// One MQTT connection and what is in flight on it.
struct Link {
    client: AsyncClient,
    notes: mpsc::UnboundedReceiver<Note>,
    pump: tokio::task::JoinHandle<()>,
    connected: bool,
    /// Published, packet id not reported yet (in publish order).
    awaiting_pkid: VecDeque<String>,
    /// Packet id -> command id, awaiting the broker's PUBACK.
    by_pkid: HashMap<u16, String>,
}

impl Link {
    fn open(broker: &Broker) -> Link {
        let mut options = MqttOptions::new(&broker.client_id, &broker.host, broker.port);
        options
            .set_clean_session(true)
            .set_keep_alive(Duration::from_secs(15));
        if let Some(user) = &broker.username {
            options.set_credentials(user, broker.password.clone().unwrap_or_default());
        }
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        let (tx, notes) = mpsc::unbounded_channel();
        let pump = tokio::spawn(async move {
            loop {
                let note = match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => Note::Connected,
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Note::Published(pkid),
                    Ok(Event::Incoming(Incoming::PubAck(ack))) => Note::Taken(ack.pkid),
                    Ok(_) => continue,
                    Err(e) => {
                        let _ = tx.send(Note::Lost(e.to_string()));
                        return;
                    }
                };
                if tx.send(note).is_err() {
                    return;
                }
            }
        });
        Link {
            client,
            notes,
            pump,
            connected: false,
            awaiting_pkid: VecDeque::new(),
            by_pkid: HashMap::new(),
        }
    }

    fn in_flight(&self) -> impl Iterator<Item = &String> {
        self.awaiting_pkid.iter().chain(self.by_pkid.values())
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

/// Publishes pending commands until `shutdown`. Commands in flight at the end stay
/// `pending` unless the broker's acknowledgement came: the next run sends them again.
pub async fn run(
    config: DispatcherConfig,
    broker: Broker,
    database_url: String,
    metrics: CommandMetrics,
    clock: Clock,
    shutdown: CancellationToken,
) -> Result<(), StoreError> {
    let rate = config.rate_per_sec.max(1);
    let slot = Duration::from_secs_f64(1.0 / f64::from(rate));
    let batch = i64::from(rate).clamp(1, 1000);
    let Some(mut conn) = connect(&database_url, &shutdown).await else {
        return Ok(());
    };
    let mut link = Link::open(&broker);
    let mut backoff = Backoff::standard();
    let mut queue: VecDeque<DueCommand> = VecDeque::new();
    // Issue times of commands in flight, for the delivery latency.
    let mut issued: HashMap<String, DateTime<Utc>> = HashMap::new();
    // Commands the broker took, with when it took them.
    let mut taken: Vec<(String, DateTime<Utc>)> = Vec::new();
    let mut next_slot = Instant::now();
    let mut poll = tokio::time::interval(Duration::from_millis(config.poll_ms.max(10)));
    let mut counters = tokio::time::interval(COUNTERS_EVERY);
    let mut answers_since = None;
    // The counters count from now on: what the table held before is not this run's.
    let mut last_batch = conn.issued_since(0).await.map(|(_, b)| b).unwrap_or(0);
    if let Ok(a) = conn.answers_since(None).await {
        answers_since = a.until;
    }
    info!(message = "Command dispatcher started.", rate_per_sec = rate, client_id = %broker.client_id);
    loop {
        let can_publish = link.connected && !queue.is_empty();
        tokio::select! {
            _ = shutdown.cancelled() => break,
            note = link.notes.recv() => match note {
                Some(Note::Connected) => {
                    link.connected = true;
                    backoff.succeeded();
                    metrics.connects.inc();
                    info!(message = "Command dispatcher connected to the broker.");
                }
                Some(Note::Published(pkid)) => {
                    if let Some(id) = link.awaiting_pkid.pop_front() {
                        link.by_pkid.insert(pkid, id);
                    }
                }
                Some(Note::Taken(pkid)) => {
                    if let Some(id) = link.by_pkid.remove(&pkid) {
                        let now = clock().to_datetime();
                        if let Some(at) = issued.remove(&id) {
                            let waited = (now - at).num_milliseconds().max(0);
                            metrics.delivery_seconds.observe(waited as f64 / 1000.0);
                        }
                        taken.push((id, now));
                    }
                }
                Some(Note::Lost(error)) => {
                    warn!(message = "Command dispatcher lost the broker; reconnecting.", %error, in_flight = link.in_flight().count());
                    mark_taken(&mut conn, &mut taken, &metrics).await;
                    queue.clear();
                    issued.clear();
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff.failed()) => {}
                    }
                    link = Link::open(&broker);
                }
                None => {
                    link = Link::open(&broker);
                }
            },
            _ = tokio::time::sleep_until(next_slot), if can_publish => {
                let Some(command) = queue.pop_front() else { continue };
                let now = clock().to_datetime();
                if is_expired(&command, now) {
                    continue; // still pending; the next expiry pass marks it
                }
                let payload = command.payload(now);
                match link.client.publish(command.topic(), QoS::AtLeastOnce, false, payload).await {
                    Ok(()) => {
                        issued.insert(command.id.clone(), command.issued_at);
                        link.awaiting_pkid.push_back(command.id);
                    }
                    Err(error) => {
                        warn!(message = "Cannot hand a command to the MQTT client.", %error);
                        queue.clear();
                    }
                }
                next_slot = next_slot.max(Instant::now() - slot) + slot;
            }
            _ = poll.tick() => {
                if conn.is_closed() {
                    match connect(&database_url, &shutdown).await {
                        Some(c) => conn = c,
                        None => break,
                    }
                }
                mark_taken(&mut conn, &mut taken, &metrics).await;
                match conn.expire_commands(clock().to_datetime()).await {
                    Ok(n) => {
                        metrics.expired.inc_by(n);
                    }
                    Err(error) => warn!(message = "Cannot expire commands now.", %error),
                }
                if link.connected && queue.is_empty() {
                    let in_flight: Vec<String> = link.in_flight().cloned().collect();
                    match conn.due_commands(clock().to_datetime(), batch, &in_flight).await {
                        Ok(due) => queue.extend(due),
                        Err(error) => warn!(message = "Cannot read the commands due.", %error),
                    }
                }
            }
            _ = counters.tick() => {
                match conn.end_expired_overrides(clock().to_datetime()).await {
                    Ok(0) => {}
                    Ok(lamps) => info!(message = "Lighting overrides ended; schedules pushed again.", lamps),
                    Err(error) => warn!(message = "Cannot end expired lighting overrides now.", %error),
                }
                refresh_counters(&conn, &metrics, &mut answers_since, &mut last_batch).await;
            }
        }
    }
    mark_taken(&mut conn, &mut taken, &metrics).await;
    let _ = link.client.disconnect().await;
    info!(message = "Command dispatcher stopped.");
    Ok(())
}

fn is_expired(command: &DueCommand, now: DateTime<Utc>) -> bool {
    command
        .body
        .get("expires")
        .and_then(serde_json::Value::as_i64)
        .and_then(DateTime::from_timestamp_millis)
        .is_some_and(|e| e <= now)
}

/// Records the commands the broker took as `sent`.
async fn mark_taken(
    conn: &mut Dispatch,
    taken: &mut Vec<(String, DateTime<Utc>)>,
    metrics: &CommandMetrics,
) {
    if taken.is_empty() {
        return;
    }
    match conn.commands_sent(taken).await {
        Ok(n) => {
            metrics.sent.inc_by(n);
            taken.clear();
        }
        Err(error) => warn!(message = "Cannot mark commands sent now; will retry.", %error),
    }
}

/// The counters kept in the table: answers recorded by the rules driver, devices reached
/// by new batches, commands pending.
async fn refresh_counters(
    conn: &Dispatch,
    metrics: &CommandMetrics,
    answers_since: &mut Option<DateTime<Utc>>,
    last_batch: &mut i64,
) {
    match conn.answers_since(*answers_since).await {
        Ok(a) => {
            metrics.acked.inc_by(a.acked);
            metrics.rejected.inc_by(a.rejected);
            metrics.failed.inc_by(a.failed);
            *answers_since = a.until;
        }
        Err(error) => warn!(message = "Cannot count command answers now.", %error),
    }
    match conn.issued_since(*last_batch).await {
        Ok((n, newest)) => {
            metrics.issued.inc_by(n);
            *last_batch = newest;
        }
        Err(error) => warn!(message = "Cannot count issued commands now.", %error),
    }
    match conn.pending_commands().await {
        Ok(n) => {
            metrics.pending.set(n);
        }
        Err(error) => warn!(message = "Cannot count pending commands now.", %error),
    }
}

/// A database connection, retried until it comes or `shutdown`.
async fn connect(url: &str, shutdown: &CancellationToken) -> Option<Dispatch> {
    let mut backoff = Backoff::standard();
    loop {
        match Dispatch::connect(url).await {
            Ok(db) => return Some(db),
            Err(error) => {
                warn!(message = "Command dispatcher cannot reach the database; retrying.", %error)
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(backoff.failed()) => {}
        }
    }
}

//! Ingestion metrics, registered into the hub's Prometheus registry. Counted per batch,
//! labels bounded (record types, rejection codes).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecordLabel {
    pub record: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// Buckets in seconds, fine enough to read p50/p99 of publish-to-commit latency.
pub const LAG_BUCKETS: [f64; 22] = [
    0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0,
    1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
];

#[derive(Clone)]
pub struct IngestMetrics {
    pub messages: Counter,
    pub rows: Family<RecordLabel, Counter>,
    pub duplicates: Counter,
    pub dead_letters: Family<ReasonLabel, Counter>,
    /// Refusals not stored: their device's dead-letter quota was spent.
    pub dead_letters_unstored: Counter,
    /// Bytes of refused payloads beyond the prefix a dead letter keeps.
    pub dead_letter_bytes_left_out: Counter,
    /// Retained deliveries recognised as the message last recorded on their topic.
    pub retained_repeats: Counter,
    pub batches: Counter,
    pub batch_seconds: Histogram,
    pub lag_seconds: Histogram,
    pub write_retries: Counter,
    pub connects: Counter,
    /// Subscriptions the broker confirmed: until the first, nothing published reaches the
    /// hub's session (a fresh session has no subscription to queue for).
    pub subscriptions: Counter,
    pub connection_errors: Counter,
    /// Connections on which the broker did not have the session the hub expected.
    pub sessions_lost: Counter,
    /// When that last happened, in Unix seconds (0: never; kept in the database across
    /// restarts).
    pub session_lost_at: Gauge,
    /// Since when ingestion has had no connection to the broker, in Unix seconds (0:
    /// connected).
    pub mqtt_disconnected_since: Gauge,
    pub buffered_bytes: Gauge,
}

impl Default for IngestMetrics {
    fn default() -> Self {
        IngestMetrics {
            messages: Counter::default(),
            rows: Family::default(),
            duplicates: Counter::default(),
            dead_letters: Family::default(),
            dead_letters_unstored: Counter::default(),
            dead_letter_bytes_left_out: Counter::default(),
            retained_repeats: Counter::default(),
            batches: Counter::default(),
            batch_seconds: Histogram::new(LAG_BUCKETS),
            lag_seconds: Histogram::new(LAG_BUCKETS),
            write_retries: Counter::default(),
            connects: Counter::default(),
            subscriptions: Counter::default(),
            connection_errors: Counter::default(),
            sessions_lost: Counter::default(),
            session_lost_at: Gauge::default(),
            mqtt_disconnected_since: Gauge::default(),
            buffered_bytes: Gauge::default(),
        }
    }
}

impl IngestMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("cityhub_ingest");
        r.register("messages", "MQTT messages received", self.messages.clone());
        r.register(
            "rows",
            "Reading rows committed, by record type",
            self.rows.clone(),
        );
        r.register(
            "duplicates",
            "Redelivered readings that were already stored",
            self.duplicates.clone(),
        );
        r.register(
            "dead_letters",
            "Messages or array elements refused, by reason (stored as dead letters or, past a device's quota, counted only)",
            self.dead_letters.clone(),
        );
        r.register(
            "dead_letters_unstored",
            "Refusals counted but not stored: their device's dead-letter quota was spent",
            self.dead_letters_unstored.clone(),
        );
        r.register(
            "dead_letter_bytes_left_out",
            "Bytes of refused payloads beyond the prefix a dead letter keeps",
            self.dead_letter_bytes_left_out.clone(),
        );
        r.register(
            "retained_repeats",
            "Retained deliveries of the message already recorded on their topic, acknowledged and not recorded again",
            self.retained_repeats.clone(),
        );
        r.register("batches", "Batches committed", self.batches.clone());
        r.register(
            "batch_seconds",
            "Time to commit one batch",
            self.batch_seconds.clone(),
        );
        r.register(
            "lag_seconds",
            "Commit time minus the newest reading time of each message",
            self.lag_seconds.clone(),
        );
        r.register(
            "write_retries",
            "Batch writes retried after a database failure",
            self.write_retries.clone(),
        );
        r.register(
            "mqtt_connects",
            "MQTT sessions established",
            self.connects.clone(),
        );
        r.register(
            "mqtt_subscriptions",
            "MQTT subscriptions the broker confirmed",
            self.subscriptions.clone(),
        );
        r.register(
            "mqtt_connection_errors",
            "MQTT connection failures",
            self.connection_errors.clone(),
        );
        r.register(
            "mqtt_sessions_lost",
            "Connections on which the broker no longer held the hub's persistent session",
            self.sessions_lost.clone(),
        );
        r.register(
            "mqtt_session_lost_timestamp_seconds",
            "When the broker last turned out not to hold the hub's session (Unix seconds; 0: never)",
            self.session_lost_at.clone(),
        );
        r.register(
            "mqtt_disconnected_since_timestamp_seconds",
            "Since when ingestion has had no connection to the broker (Unix seconds; 0: connected)",
            self.mqtt_disconnected_since.clone(),
        );
        r.register(
            "buffered_bytes",
            "Payload bytes received and not yet committed",
            self.buffered_bytes.clone(),
        );
    }
}

//! Command delivery metrics (`cityhub_commands_*`), registered into the hub's registry.

use model::CommandStatus;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Buckets in seconds, from the command's issue to the broker taking it. Commands held
/// for an offline device land in the last buckets.
const BUCKETS: [f64; 14] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
];

#[derive(Clone, Debug)]
pub struct CommandMetrics {
    /// Per-device commands recorded (by people and schedule changes).
    pub issued: Counter,
    /// Commands the broker acknowledged (QoS 1 PUBACK).
    pub sent: Counter,
    /// Devices' answers: ok, rejected, failed.
    pub acked: Counter,
    pub rejected: Counter,
    pub failed: Counter,
    /// Commands that passed their expiry unanswered.
    pub expired: Counter,
    /// Commands waiting to be sent, including those held for offline devices.
    pub pending: Gauge,
    /// From a command's issue to the broker's acknowledgement.
    pub delivery_seconds: Histogram,
    /// MQTT sessions established by the dispatcher.
    pub connects: Counter,
}

impl Default for CommandMetrics {
    fn default() -> Self {
        CommandMetrics {
            issued: Counter::default(),
            sent: Counter::default(),
            acked: Counter::default(),
            rejected: Counter::default(),
            failed: Counter::default(),
            expired: Counter::default(),
            pending: Gauge::default(),
            delivery_seconds: Histogram::new(BUCKETS),
            connects: Counter::default(),
        }
    }
}

impl CommandMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("cityhub_commands");
        r.register(
            "issued",
            "Per-device commands recorded",
            self.issued.clone(),
        );
        r.register(
            CommandStatus::Sent.as_str(),
            "Commands the broker acknowledged",
            self.sent.clone(),
        );
        r.register(
            CommandStatus::Acked.as_str(),
            "Commands devices carried out",
            self.acked.clone(),
        );
        r.register(
            CommandStatus::Rejected.as_str(),
            "Commands devices refused",
            self.rejected.clone(),
        );
        r.register(
            CommandStatus::Failed.as_str(),
            "Commands devices failed to carry out",
            self.failed.clone(),
        );
        r.register(
            CommandStatus::Expired.as_str(),
            "Commands unanswered at their expiry",
            self.expired.clone(),
        );
        r.register(
            CommandStatus::Pending.as_str(),
            "Commands waiting to be sent (held for offline devices included)",
            self.pending.clone(),
        );
        r.register(
            "delivery_seconds",
            "From a command's issue to the broker's acknowledgement",
            self.delivery_seconds.clone(),
        );
        r.register(
            "mqtt_connects",
            "MQTT sessions established by the command dispatcher",
            self.connects.clone(),
        );
    }
}

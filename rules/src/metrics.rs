//! Rules metrics, registered into the hub's Prometheus registry (labels bounded: outage
//! kinds, decisions, outcomes).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabel {
    pub decision: &'static str,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// Buckets in seconds for commit-to-outage latency.
const BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0, 10.0, 30.0,
];

#[derive(Clone)]
pub struct RulesMetrics {
    /// Decisions persisted, by decision and outage kind.
    pub decisions: Family<DecisionLabel, Counter>,
    /// From the commit of the readings to the commit of the outage rows they caused.
    pub commit_to_outage_seconds: Histogram,
    /// Rules file changes: applied or refused.
    pub reloads: Family<OutcomeLabel, Counter>,
    /// Repairs checked against telemetry: verified or reopened.
    pub repairs: Family<OutcomeLabel, Counter>,
    /// Outages not opened because their asset was in a maintenance window.
    pub maintenance_suppressed: Counter,
    /// Rows judged after the stream had passed their time (in order for their device).
    pub rows_late: Counter,
    /// Rows not judged: redeliveries, or older than what their device had already said.
    pub rows_dropped: Counter,
    /// Rows judged before the stream passed them because the queue was full.
    pub rows_forced: Counter,
    /// Rows stored after the horizon on record, judged at start (committed, not judged,
    /// when the rules last stopped).
    pub rows_replayed: Counter,
    /// New database connections after the previous one closed (a restarted server).
    pub db_reconnects: Counter,
    /// Inputs waiting for the stream to pass their time.
    pub queued: Gauge,
    /// How far the judged horizon is behind the hub's clock, milliseconds.
    pub horizon_lag_ms: Gauge,
}

impl Default for RulesMetrics {
    fn default() -> Self {
        RulesMetrics {
            decisions: Family::default(),
            commit_to_outage_seconds: Histogram::new(BUCKETS),
            reloads: Family::default(),
            repairs: Family::default(),
            maintenance_suppressed: Counter::default(),
            rows_late: Counter::default(),
            rows_dropped: Counter::default(),
            rows_forced: Counter::default(),
            rows_replayed: Counter::default(),
            db_reconnects: Counter::default(),
            queued: Gauge::default(),
            horizon_lag_ms: Gauge::default(),
        }
    }
}

impl RulesMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("cityhub_rules");
        r.register(
            "decisions",
            "Outage decisions persisted, by decision and kind",
            self.decisions.clone(),
        );
        r.register(
            "commit_to_outage_seconds",
            "From the commit of readings to the commit of the outage rows they caused",
            self.commit_to_outage_seconds.clone(),
        );
        r.register(
            "reloads",
            "Rules file changes, applied or refused",
            self.reloads.clone(),
        );
        r.register(
            "repairs",
            "Repairs checked against telemetry, verified or reopened",
            self.repairs.clone(),
        );
        r.register(
            "maintenance_suppressed",
            "Outages not opened because their asset was in a maintenance window",
            self.maintenance_suppressed.clone(),
        );
        r.register(
            "rows_late",
            "Rows judged after the stream had passed their time, in order for their device",
            self.rows_late.clone(),
        );
        r.register(
            "rows_dropped",
            "Rows not judged: redeliveries, or older than what their device had already said",
            self.rows_dropped.clone(),
        );
        r.register(
            "rows_forced",
            "Rows judged before the stream passed them because the queue was full",
            self.rows_forced.clone(),
        );
        r.register(
            "rows_replayed",
            "Rows stored after the horizon on record, judged at start",
            self.rows_replayed.clone(),
        );
        r.register(
            "db_reconnects",
            "New database connections after the previous one closed",
            self.db_reconnects.clone(),
        );
        r.register(
            "queued",
            "Inputs waiting for the stream to pass their time",
            self.queued.clone(),
        );
        r.register(
            "horizon_lag_ms",
            "How far the judged horizon is behind the hub's clock, milliseconds",
            self.horizon_lag_ms.clone(),
        );
    }
}

//! Control: the hub's side of `cmd`. Commands are recorded by the API (and by schedule
//! changes) as `pending` rows of `commands`; the [`dispatcher`] publishes them to
//! `city/{tenant}/{kind}/{device}/cmd` (QoS 1, never retained) at a bounded rate, marks
//! them `sent` once the broker has taken them, holds them while their device is offline,
//! and marks `expired` what nobody answered in time. Devices' answers (`cmd/ack`) arrive
//! through ingestion like any reading; the rules driver records them on the command, right
//! after their commit.
//!
//! - [`dispatcher`]: the loop, its MQTT connection and its settings ([`DispatcherConfig`]).
//! - [`metrics`]: the `cityhub_commands_*` metrics.
//!
//! Everything the dispatcher knows is in the database: a restart, or a broker that goes
//! away, loses nothing; a command the broker took but whose acknowledgement was lost is
//! published again (devices recognise a command by its id).

pub mod dispatcher;
pub mod metrics;

pub use dispatcher::{run, DispatcherConfig};
pub use metrics::CommandMetrics;

pub use model::Clock;

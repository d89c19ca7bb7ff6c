//! Rules: outages from committed readings.
//!
//! - [`engine`]: the pure core and the alarm hygiene every rule goes through. No IO, no
//!   wall clock. Start reading there.
//! - [`timeline`]: the stream's own time. `Engine::receive` takes each input (a committed
//!   row, or what an acknowledged command told a lamp), `Engine::advance` judges them in
//!   timestamp order up to a horizon, with the deadlines time sets (silence, off-delays,
//!   chattering gone quiet, a maintenance window's end) at their own instants.
//! - The rules by domain: `lighting` (lamp failure, day burner, cycling, voltage, a
//!   cabinet's supply loss), `meters` (leaks, tamper, reverse flow), [`transport`] (off
//!   route, bunching, stopped too long), `silence` (offline and silent devices).
//! - [`schedule`]: what a lamp should do (commands, schedules, the astronomical clock).
//! - [`condition`]: one alarm condition with on-delay and hysteresis.
//! - [`config`]: rule parameters and severities (TOML), validated.
//! - `state`: what the engine remembers between inputs (data only); [`metrics`]: the
//!   decisions and outcomes counted for `/metrics`.
//! - [`driver`]: feeds the engine from ingestion's committed rows and a clock, records the
//!   answers to commands, and persists its decisions through `store` with the horizon
//!   they were judged up to (rebuilding state from open outages on start, and judging
//!   first the rows stored after that horizon); [`stream`] the watermark the horizon
//!   follows.
//!
//! Topology: a cabinet's supply loss is one outage on the cabinet; its lamps' failures are
//! suppressed while it lasts, and lamps still failing once the supply is back get their own.

pub mod condition;
pub mod config;
pub mod driver;
pub mod engine;
mod lighting;
mod meters;
pub mod metrics;
pub mod schedule;
mod silence;
mod state;
pub mod stream;
pub mod timeline;
pub mod transport;

pub use config::{RulesConfig, Severity};
pub use engine::{Asset, Decision, Engine, MaintenanceWindow, OutageKind, Route, State, Verdict};
pub use metrics::RulesMetrics;
pub use timeline::Input;

#[cfg(test)]
mod engine_tests;
#[cfg(test)]
mod order_tests;
#[cfg(test)]
mod regression_tests;

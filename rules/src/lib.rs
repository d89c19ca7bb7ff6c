//! Rules: outages from committed readings.
//!
//! - [`engine`]: the pure core. `Engine::observe(&mut State, asset, record, &row, &mut
//!   decisions)` for each committed row and `Engine::tick(&mut State, now, ..)` for the
//!   passing of time; no IO, no wall clock. Start reading there.
//! - [`condition`]: one alarm condition with on-delay and hysteresis.
//! - [`config`]: rule parameters (TOML), validated.
//! - [`driver`]: feeds the engine from ingestion's committed rows and a clock, and persists
//!   its decisions through `store` (rebuilding state from open outages on start).
//!
//! Topology: a cabinet's supply loss is one outage on the cabinet; its lamps' failures are
//! suppressed while it lasts, and lamps still failing once the supply is back get their own.
//!
//! Still to come here: lamp cycling, leaks, transport rules, work orders, reloading the
//! rules file without a restart.

pub mod condition;
pub mod config;
pub mod driver;
pub mod engine;
mod lighting;
mod meters;
pub mod metrics;
pub mod schedule;
pub mod stream;
pub mod transport;

pub use config::{RulesConfig, Severity};
pub use engine::{Asset, Decision, Engine, MaintenanceWindow, OutageKind, Route, State, Verdict};
pub use metrics::RulesMetrics;

#[cfg(test)]
mod engine_tests;

//! Storage: the schema, migrations and every SQL statement cityhub runs.
//!
//! - [`schema`]: tables (reading tables generated from the contract's field specs) and the
//!   migrations; [`schema::StoragePath`] says TimescaleDB or native partitioning.
//! - [`db`]: [`Db`], one connection: `migrate`, `connect`, `write_batch`, partition upkeep.
//! - [`batch`]: [`ReadingBatch`], what one transaction writes, encoded as it is collected.
//! - [`copy`]: the binary COPY encoder.
//! - [`partitions`]: daily partitions for servers without TimescaleDB.
//! - [`devices`]: the device registry (inventory import, lookups for ingestion).
//! - [`outages`]: outages and their audit events, as the rules engine decides them.
//!
//! Start reading at [`Db::write_batch`]: it is the write path every reading takes.

pub mod batch;
pub mod copy;
pub mod db;
pub mod devices;
mod error;
pub mod outages;
mod partitions;
pub mod schema;

pub use batch::{merge_latest, LatestState, LatestUpdates, ReadingBatch};
pub use db::{describe_target, Db, TimescaleMode, WriteOutcome};
pub use devices::{ImportOutcome, RegisteredDevice};
pub use error::StoreError;
pub use outages::{OutageChange, OutageRow, RuleAsset};
pub use schema::StoragePath;
pub use tokio_postgres::Config as PgConfig;

//! Storage: the schema, migrations and every SQL statement cityhub runs.
//!
//! - [`schema`]: tables (reading tables generated from the contract's field specs) and the
//!   migrations; [`schema::StoragePath`] says TimescaleDB or native partitioning.
//! - [`db`]: [`Db`], one connection: `migrate`, `connect`, what every holder may ask (path,
//!   closed, ping), and the write path every reading takes.
//! - [`handles`]: what each consumer may do with a connection: [`Ingestion`], [`Detection`],
//!   [`Dispatch`], the API's [`Reads`], [`Actions`] and [`Access`], and the command line's
//!   [`Admin`]. Each module below adds its statements to the handles that use them.
//! - [`batch`]: [`ReadingBatch`], what one transaction writes, encoded as it is collected.
//! - [`copy`]: the binary COPY encoder.
//! - [`dead_letters`]: what ingestion refused, bounded (a payload prefix with its size
//!   and digest; pruned past their retention).
//! - [`partitions`]: daily partitions for servers without TimescaleDB.
//! - `sql`: the domain's states, statuses and severities written into SQL text from
//!   `model`'s vocabulary.
//! - [`devices`]: the device registry (inventory import of devices and routes, lookups
//!   for ingestion).
//! - [`outages`]: outages and their audit events, as the rules engine decides them, in a
//!   few statements per set, and the work orders new outages start; [`progress`]: how
//!   far the rules judged, written with their decisions, and the stored rows after it.
//! - [`rule_assets`]: the devices and bus routes as the rules engine loads them.
//! - [`work_orders`]: the work order life cycle, team reports and deadline breaches.
//! - [`hygiene`]: acknowledging and shelving outages, and the alarm load report.
//! - [`maintenance`]: maintenance windows and the devices they cover.
//! - [`commands`]: commands sent to devices (migration 7), their delivery and which are
//!   in force; [`command_batches`]: what people ask of a group of devices, resolved,
//!   confirmed and audited in one transaction; [`schedules`]: lighting schedules and
//!   overrides, and the `set_schedule` pushes their changes cause; `profiles`: the
//!   profile each lamp follows now, read by both.
//! - [`rollups`]: lamp telemetry rolled up by 15 minutes, hour and day, and their refresh
//!   (a module per storage path: `rollups::timescale`, `rollups::native`).
//! - [`history`]: a device's readings in time buckets, the map's state of every device,
//!   lamp energy per district and day.
//! - [`service_requests`]: citizen reports (Open311) and the change notification triggers;
//!   [`changes`]: the listener of those notifications and the rows behind them, and the
//!   announcement of inventory changes ingestion's registry listens for.
//! - [`transit_feed`]: the newest vehicle positions, for GTFS-Realtime.
//! - [`public_works`]: what residents may know of a tenant's works (faults they notice,
//!   grouped by street, and planned works), naming nobody.
//! - [`mqtt`]: the hub's MQTT sessions, so that one the broker lost is noticed.
//! - [`leases`]: what must run once among several hub instances, each held by one at a
//!   time with an epoch that grows at every takeover; a [`leases::Fence`] makes a stale
//!   holder's writes fail in the database.
//! - [`auth`]: users, the tenants they may see, sessions and API tokens (digests only).
//! - [`audit`]: the hash-chained audit log of what people and programs changed.
//! - [`listings`]: tenant-scoped pages of outages, work orders and devices for the API.
//! - [`exports`]: readings of one kind over any time range, a chunk at a time, in one
//!   snapshot on a connection of their own.
//! - [`actions`]: what people do to outages and work orders through the API, limited to
//!   their tenants and audited in the same transaction.
//!
//! Start reading at [`Ingestion::write_batch`]: it is the write path every reading takes.

pub mod actions;
pub mod audit;
pub mod auth;
pub mod batch;
pub mod changes;
pub mod command_batches;
pub mod commands;
pub mod copy;
pub mod db;
pub mod dead_letters;
pub mod devices;
mod error;
pub mod exports;
pub mod handles;
pub mod history;
pub mod hygiene;
pub mod leases;
pub mod listings;
pub mod maintenance;
pub mod mqtt;
pub mod notifications;
pub mod outages;
mod partitions;
mod profiles;
pub mod progress;
pub mod public_works;
pub mod rollups;
pub mod rule_assets;
pub mod schedules;
pub mod schema;
pub mod service_requests;
mod sql;
pub mod transit_feed;
pub mod work_orders;

pub use actions::{Actor, OutageAction, Step, ASSIGNED_DEADLINE_HOURS};
pub use audit::{AuditAnchor, AuditCheck, AuditEntry, AuditRecord};
pub use auth::{NewUser, TenantRef, UserRow};
pub use batch::{merge_latest, LatestState, LatestUpdates, ReadingBatch};
pub use command_batches::{
    BatchCommandRow, BatchRow, CommandTarget, NewBatch, ReachedDevice, MAX_BATCH_DEVICES,
};
pub use commands::{Answer, AnswerCounts, CommandRow, DueCommand};
pub use db::{describe_target, Db, TimescaleMode, WriteOutcome};
pub use devices::{Dangling, ImportOutcome, InventoryImport, RegisteredDevice};
pub use error::StoreError;
pub use handles::{
    Access, Actions, Admin, Detection, Dispatch, Handle, Ingestion, Notifier, Reads,
};
pub use hygiene::{AlarmReport, BadActor, KindCount, FLOOD_PER_10_MIN};
pub use listings::{
    DeviceLatest, DeviceQuery, DeviceRow, OutageEvent, OutageOrder, OutageQuery, Page,
    WorkOrderQuery,
};
pub use maintenance::MaintenanceWindow;
pub use outages::{Handling, OutageChange, OutageRow, WorkOrderPlan};
pub use rule_assets::{RuleAsset, RuleRoute};
pub use schedules::{NewSchedule, Pushed, ScheduleRow, ScheduleScope};
pub use schema::StoragePath;
pub use tokio_postgres::Config as PgConfig;
pub use work_orders::{TeamReport, WorkOrderEvent, WorkOrderRow};

//! The domain and the device contract v1: topics, record types, payload decoding and
//! validation. No IO happens here.
//!
//! - [`topic`]: `city/{tenant}/{kind}/{device}/{channel}` parsing and formatting.
//! - [`record`]: the table-driven field schema of each record type ([`RecordType::fields`]),
//!   and the decoded [`Row`] of [`Cell`]s that `store` writes column by column; [`fields`]
//!   names each field in code (`row.cell(fields::light::POWER_W)`).
//! - [`decode`]: payload bytes -> rows and [`Rejected`] elements, each with a [`Rejection`].
//! - [`domain`]: the vocabulary as types: [`OutageKind`], [`Severity`], [`OutageState`],
//!   [`WorkOrderState`] (its life cycle in one function), [`CommandStatus`], [`Role`].
//! - [`time`]: [`Timestamp`] (UTC microseconds), the accepted [`TimeWindow`], and the
//!   [`Clock`] every part of the hub reads "now" from.
//! - [`backoff`]: the waits of every retry and reconnect loop.
//! - [`inventory`]: devices and bus routes as listed in the city's inventory.
//! - [`astro`]: civil dawn and dusk at a place (when lamps should burn).
//! - [`lighting`]: what a lamp should show under a lighting profile (`set_schedule`).
//!
//! The contract for device makers is `docs/device-contract.md`; the tests in this crate
//! are its executable form.

pub mod astro;
pub mod backoff;
pub mod decode;
pub mod domain;
pub mod fields;
pub mod inventory;
pub mod lighting;
pub mod record;
pub mod rejection;
pub mod time;
pub mod topic;

pub use backoff::Backoff;
pub use decode::{decode_payload, Decoded, Limits, Rejected};
pub use domain::{
    CommandStatus, DeviceFacts, DeviceState, OutageKind, OutageState, Role, Severity, Vocabulary,
    WorkOrderState, INSPECTION,
};
pub use inventory::{Device, Inventory, RouteLine};
pub use record::{Cell, Committed, FieldSpec, FieldType, Observation, RecordType, Row};
pub use rejection::Rejection;
pub use time::{wall_clock, Clock, TimeWindow, Timestamp};
pub use topic::{Channel, Kind, Topic, REPORT_GRACE_S};

#[cfg(test)]
mod contract_tests;

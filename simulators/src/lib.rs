//! Simulators: the generated city, load generation for benchmarks, and a private broker
//! for tests; device fleets and fault scenarios grow here.
//!
//! - [`city`]: the city generator (districts, streets, cabinets, lamps, meters, bus routes,
//!   vehicles), deterministic from a seed; writes the inventory and the base map.
//! - [`clock`]: simulated time, faster than real time, shareable with the hub.
//! - [`fleet`]: every device of a city reporting per the contract and obeying commands;
//!   a pure state machine ([`fleet::Fleet`]) and its MQTT runner ([`fleet::run`]).
//! - [`scenario`]: faults at known times (TOML in `scenarios/`) and their ground truth.
//! - [`verify`]: checks a published stream against a scenario's ground truth.
//! - [`score`]: detection quality, the outages a hub opened against the ground truth.
//! - [`load`]: publishes readings at full speed or a target rate, QoS 0 or 1.
//! - [`broker`]: a private Mosquitto with the shipped configuration on a free port.

pub mod broker;
pub mod city;
pub mod clock;
pub mod fleet;
pub mod load;
pub mod scenario;
pub mod score;
pub mod verify;

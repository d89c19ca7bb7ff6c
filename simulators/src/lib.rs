//! Simulators: load generation for benchmarks and a private broker for tests; the city
//! generator, device fleets and fault scenarios grow here.
//!
//! - [`load`]: publishes readings at full speed or a target rate, QoS 0 or 1.
//! - [`broker`]: a private Mosquitto with the shipped configuration on a free port.

pub mod broker;
pub mod load;

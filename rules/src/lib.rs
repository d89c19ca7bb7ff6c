//! Rules: outages and work orders from committed readings.
//!
//! The engine core will be a pure state machine (`state + reading + now -> decisions`, no
//! IO, no wall clock) and a driver that persists decisions through `store`. It is fed with
//! the batches ingestion commits (`ingest::Committed`), connected by the binary.

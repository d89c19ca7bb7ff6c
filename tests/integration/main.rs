//! Integration tests against a real PostgreSQL and a real Mosquitto (shipped configuration).

mod acl;
mod bad_input;
mod cli;
mod contract;
mod reliability;
mod rules;
mod simulated;
mod storage;

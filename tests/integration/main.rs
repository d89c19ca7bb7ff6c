//! Integration tests against a real PostgreSQL and a real Mosquitto (shipped configuration).

mod acl;
mod api;
mod bad_input;
mod chronology;
mod cli;
mod commands;
mod contract;
mod detection;
mod gtfs_rt;
mod hygiene;
mod inventory;
mod judged;
mod leases;
mod package;
mod public;
mod reliability;
mod replicas;
mod rule_inputs;
mod rules;
mod schedules;
mod simulated;
mod storage;
mod upgrade;
mod vendor;
mod webhooks;
mod work_orders;

//! A private broker with the shipped configuration and the accounts tests sign in with.
//!
//! The shipped configuration makes every connection's client id its user name, so each
//! connection needs an account of its own: the hub's two ([`HUB_USER`] for ingestion,
//! [`COMMANDS_USER`] for the command dispatcher), a pool of tester accounts that may
//! publish and read anything ([`tester`] hands out a fresh one per connection), and a pool
//! for simulated fleets (connection `n` of a fleet signed in as [`SIM_USER`] uses
//! `sim-{n}`).

use std::collections::HashMap;
use std::sync::Mutex;

use simulators::broker::{Broker, BrokerUser};

pub const HUB_USER: &str = "cityhub-ingest";
pub const HUB_PASSWORD: &str = "hub-test-password";
pub const COMMANDS_USER: &str = "cityhub-commands";
pub const COMMANDS_PASSWORD: &str = "commands-test-password";
pub const TESTER_PASSWORD: &str = "tester-password";
/// The base name of the simulated fleets' accounts (`sim-0`, `sim-1`, ...).
pub const SIM_USER: &str = "sim";
pub const SIM_PASSWORD: &str = "sim-password";

/// Tester accounts per broker; a test holding more connections at once would reuse one.
const TESTERS: usize = 64;
/// Fleet connections per broker.
const SIMS: usize = 64;

/// A private broker with the shipped configuration, the hub's accounts, and accounts that
/// may publish and read anything (they play many devices at once).
pub struct TestBroker {
    pub broker: Broker,
}

impl TestBroker {
    pub fn start() -> TestBroker {
        TestBroker::with_users(&[])
    }

    pub fn with_users(extra: &[BrokerUser]) -> TestBroker {
        let mut users = vec![
            BrokerUser::new(HUB_USER, HUB_PASSWORD),
            BrokerUser::new(COMMANDS_USER, COMMANDS_PASSWORD),
        ];
        let mut acl = String::new();
        for i in 0..TESTERS {
            users.push(BrokerUser::new(format!("tester-{i}"), TESTER_PASSWORD));
            acl.push_str(&format!("user tester-{i}\ntopic readwrite city/#\n"));
        }
        for i in 0..SIMS {
            users.push(BrokerUser::new(format!("{SIM_USER}-{i}"), SIM_PASSWORD));
            acl.push_str(&format!("user {SIM_USER}-{i}\ntopic readwrite city/#\n"));
        }
        users.extend_from_slice(extra);
        let broker = Broker::start(None, &users, &acl).expect("start a private mosquitto");
        TestBroker { broker }
    }

    pub fn port(&self) -> u16 {
        self.broker.port
    }
}

/// A tester account of the broker on `port` that no other connection of this test
/// process has been given yet (until [`TESTERS`] have been handed out).
pub fn tester(port: u16) -> String {
    static NEXT: Mutex<Option<HashMap<u16, usize>>> = Mutex::new(None);
    let mut next = NEXT.lock().unwrap_or_else(|p| p.into_inner());
    let n = next
        .get_or_insert_with(HashMap::new)
        .entry(port)
        .or_default();
    let name = format!("tester-{}", *n % TESTERS);
    *n += 1;
    name
}

/// The credentials of a simulated fleet: connection `n` signs in as `sim-{n}`.
pub fn fleet_credentials() -> Option<(String, String)> {
    Some((SIM_USER.into(), SIM_PASSWORD.into()))
}

/// Discards the hub's broker session, with its own account (the only one the shipped
/// broker lets do it); a hub connected at the time is thrown out.
pub async fn discard_hub_session(port: u16) {
    simulators::load::clear_session(
        "127.0.0.1",
        port,
        Some((HUB_USER.into(), HUB_PASSWORD.into())),
        HUB_USER,
    )
    .await
    .expect("the hub's account signs in");
}

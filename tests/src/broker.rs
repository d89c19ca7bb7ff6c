use simulators::broker::{Broker, BrokerUser};

pub const HUB_USER: &str = "cityhub";
pub const HUB_PASSWORD: &str = "hub-test-password";
pub const TESTER_USER: &str = "tester";
pub const TESTER_PASSWORD: &str = "tester-password";

/// A private broker with the shipped configuration, the hub's user, and a `tester` user
/// that may publish anything (it plays many devices at once).
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
            BrokerUser::new(TESTER_USER, TESTER_PASSWORD),
        ];
        users.extend_from_slice(extra);
        let broker = Broker::start(
            None,
            &users,
            &format!("user {TESTER_USER}\ntopic readwrite city/#\n"),
        )
        .expect("start a private mosquitto");
        TestBroker { broker }
    }

    pub fn port(&self) -> u16 {
        self.broker.port
    }
}

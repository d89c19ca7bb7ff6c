//! Test harness: real PostgreSQL and real Mosquitto, fresh per test.
//!
//! - [`TestDb`]: a new database on the shared server (`CITYHUB_TEST_DATABASE_URL`), migrated,
//!   dropped afterwards. Set `CITYHUB_TEST_TIMESCALEDB=require` and point the URL at a server
//!   with TimescaleDB to run the whole suite on that path.
//! - [`TestBroker`]: a private Mosquitto with the shipped configuration on a free port.
//! - [`InProcessHub`] runs ingestion in the test; [`HubProcess`] runs the `cityhub` binary
//!   (for `kill -9`).
//! - [`PrivatePostgres`]: a throwaway PostgreSQL cluster, for tests that restart the server.
//! - [`Publisher`] and [`Recorder`]: MQTT clients that publish (QoS 1, acknowledged) and record.
//! - [`api::TestApi`]: the HTTP API served in the test, and a small client for it.

pub mod api;
pub mod broker;
pub mod db;
pub mod hub;
pub mod postgres;
pub mod publish;
pub mod record;

pub use broker::TestBroker;
pub use db::{Store, TestDb};
pub use hub::{HubProcess, InProcessHub};
pub use postgres::PrivatePostgres;
pub use publish::Publisher;
pub use record::Recorder;

use std::time::{Duration, Instant};

/// The usual start of a test: a tenant, a fresh database holding `kinds` of its devices
/// (see [`db::devices`]), and a private broker.
pub struct Setup {
    pub tenant: String,
    pub db: TestDb,
    pub broker: TestBroker,
}

impl Setup {
    pub async fn start(kinds: &[(model::Kind, usize)]) -> Setup {
        let tenant = unique("t");
        let db = TestDb::new().await;
        db.import(&db::devices(&tenant, kinds)).await;
        Setup {
            tenant,
            db,
            broker: TestBroker::start(),
        }
    }
}

/// Waits until `probe` returns `Some`, checking every 50 ms, failing after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A name unique to this test run, safe as a tenant slug or database name.
pub fn unique(prefix: &str) -> String {
    use rand::Rng;
    let n: u32 = rand::thread_rng().gen();
    format!("{prefix}{}{n:08x}", std::process::id())
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

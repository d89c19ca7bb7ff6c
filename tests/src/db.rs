use std::collections::HashMap;

use chrono::{DateTime, Utc};
use model::{Device, Timestamp};
use store::{
    Access, Actions, Admin, Db, Detection, Dispatch, Handle, Ingestion, OutageChange, Reads,
    TimescaleMode, WorkOrderPlan,
};
use tokio_postgres::{Client, NoTls};

/// A fresh, migrated database, dropped when the value is dropped.
pub struct TestDb {
    pub url: String,
    pub name: String,
    admin_url: String,
    pub client: Client,
}

pub fn server_url() -> String {
    std::env::var("CITYHUB_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn timescale_mode() -> TimescaleMode {
    match std::env::var("CITYHUB_TEST_TIMESCALEDB").as_deref() {
        Ok("require") => TimescaleMode::Require,
        Ok("off") => TimescaleMode::Off,
        _ => TimescaleMode::Auto,
    }
}

/// The database as each consumer sees it: a connection per handle.
pub struct Store {
    pub ingestion: Ingestion,
    pub detection: Detection,
    pub dispatch: Dispatch,
    pub reads: Reads,
    pub actions: Actions,
    pub access: Access,
    pub admin: Admin,
}

impl Store {
    /// The storage path the database uses.
    pub fn path(&self) -> store::StoragePath {
        self.admin.path()
    }
}

/// `url` with its database name replaced.
pub fn with_dbname(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let authority_end = base[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .unwrap_or(base.len());
    format!("{}/{name}{query}", &base[..authority_end])
}

impl TestDb {
    pub async fn new() -> TestDb {
        TestDb::on_server(&server_url()).await
    }

    pub async fn on_server(admin_url: &str) -> TestDb {
        let name = crate::unique("cityhub_t_");
        let (admin, conn) = tokio_postgres::connect(admin_url, NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL at {admin_url}: {e}"));
        tokio::spawn(conn);
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        let url = with_dbname(admin_url, &name);
        Db::migrate(&url, timescale_mode(), Some(365))
            .await
            .expect("migrate");
        let (client, conn) = tokio_postgres::connect(&url, NoTls).await.expect("connect");
        tokio::spawn(conn);
        TestDb {
            url,
            name,
            admin_url: admin_url.to_owned(),
            client,
        }
    }

    pub async fn import(&self, devices: &[Device]) {
        self.admin()
            .await
            .import_devices(devices)
            .await
            .expect("import");
    }

    /// A connection per consumer to this database, for tests that play several.
    pub async fn store(&self) -> Store {
        Store {
            ingestion: self.handle().await,
            detection: self.handle().await,
            dispatch: self.handle().await,
            reads: self.handle().await,
            actions: self.handle().await,
            access: self.handle().await,
            admin: self.handle().await,
        }
    }

    /// A connection to this database as the handle `H`.
    pub async fn handle<H: Handle>(&self) -> H {
        H::from(Db::connect(&self.url).await.expect("connect"))
    }

    /// A connection as the command line has it.
    pub async fn admin(&self) -> Admin {
        self.handle().await
    }

    /// A connection as ingestion has it.
    pub async fn ingestion(&self) -> Ingestion {
        self.handle().await
    }

    /// A connection as the rules engine has it.
    pub async fn detection(&self) -> Detection {
        self.handle().await
    }

    /// A connection as the command dispatcher has it.
    pub async fn dispatch(&self) -> Dispatch {
        self.handle().await
    }

    /// A connection as the API's reads have it.
    pub async fn reads(&self) -> Reads {
        self.handle().await
    }

    /// A connection as the API's actions have it.
    pub async fn actions(&self) -> Actions {
        self.handle().await
    }

    /// A connection as the API's sign-in has it.
    pub async fn access(&self) -> Access {
        self.handle().await
    }

    /// The database ids of a tenant's devices, by inventory id.
    pub async fn device_ids(&self, tenant: &str) -> HashMap<String, i32> {
        self.client
            .query(
                "SELECT d.ext_id, d.id FROM devices d JOIN tenants t ON t.id = d.tenant_id WHERE t.slug = $1",
                &[&tenant],
            )
            .await
            .expect("device ids")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    /// An outage's events in order, as (transition, actor, detail).
    pub async fn outage_events(&self, outage_id: i64) -> Vec<(String, String, Option<String>)> {
        self.client
            .query(
                "SELECT transition, actor, detail FROM outage_events WHERE outage_id = $1 ORDER BY at, id",
                &[&outage_id],
            )
            .await
            .expect("outage events")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    }

    /// Waits (up to 10 s) until `sql` counts `n`, then checks it did not overshoot.
    pub async fn wait_count(&self, sql: &str, n: i64) {
        crate::eventually(std::time::Duration::from_secs(10), sql, || async {
            (self.count(sql).await >= n).then_some(())
        })
        .await;
        assert_eq!(self.count(sql).await, n, "{sql}");
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.client
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        execute_detached(
            &self.admin_url,
            &[&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )],
        );
    }
}

/// Runs `statements` one after the other on `url`, from anywhere, async context or not
/// (a `Drop`): on a short-lived thread with its own runtime. Clean-up: it stops at the
/// first that fails, and says nothing.
pub fn execute_detached(url: &str, statements: &[&str]) {
    let url = url.to_owned();
    let statements: Vec<String> = statements.iter().map(|s| s.to_string()).collect();
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async move {
            let (c, conn) = tokio_postgres::connect(&url, NoTls).await.ok()?;
            tokio::spawn(conn);
            for sql in &statements {
                c.batch_execute(sql).await.ok()?;
            }
            Some(())
        })
    })
    .join();
}

/// Devices of one tenant: `count` of each kind named `L0`.., `C0`.., `M0`.., `V0`...
pub fn devices(tenant: &str, kinds: &[(model::Kind, usize)]) -> Vec<Device> {
    let mut out = Vec::new();
    for &(kind, count) in kinds {
        let prefix = match kind {
            model::Kind::Light => "L",
            model::Kind::Cabinet => "C",
            model::Kind::Meter => "M",
            model::Kind::Vehicle => "V",
        };
        for i in 0..count {
            out.push(Device {
                tenant: tenant.into(),
                id: format!("{prefix}{i}"),
                kind,
                district: Some("centre".into()),
                cabinet: (kind == model::Kind::Light).then(|| "C0".into()),
                rated_power_w: (kind == model::Kind::Light).then_some(70.0),
                medium: (kind == model::Kind::Meter).then(|| "water".into()),
                route: (kind == model::Kind::Vehicle).then(|| "28".into()),
                lon: -9.14 + i as f64 * 1e-4,
                lat: 38.71,
                props: Default::default(),
            });
        }
    }
    out
}

/// A time given as RFC 3339 (test data reads better that way).
pub fn ts(rfc3339: &str) -> Timestamp {
    Timestamp::from_rfc3339(rfc3339).unwrap_or_else(|| panic!("`{rfc3339}` is not RFC 3339"))
}

/// [`ts`] as chrono's type.
pub fn utc(rfc3339: &str) -> DateTime<Utc> {
    ts(rfc3339).to_datetime()
}

/// The rules open an outage (severity `major`, no work order); reason "<kind> seen".
pub fn opened(device_id: i32, kind: &'static str, at: &str) -> OutageChange {
    OutageChange::Open {
        device_id,
        kind,
        at: ts(at),
        reason: format!("{kind} seen"),
        severity: "major",
        work_order: None,
    }
}

/// The rules open an outage and order its repair from `team` within `deadline_s`.
pub fn opened_with_order(
    device_id: i32,
    kind: &'static str,
    at: &str,
    team: &str,
    deadline_s: i64,
) -> OutageChange {
    let mut change = opened(device_id, kind, at);
    if let OutageChange::Open { work_order, .. } = &mut change {
        *work_order = Some(WorkOrderPlan {
            team: team.into(),
            deadline_s,
        });
    }
    change
}

/// The rules resolve an outage.
pub fn resolved(device_id: i32, kind: &'static str, at: &str) -> OutageChange {
    OutageChange::Resolve {
        device_id,
        kind,
        at: ts(at),
    }
}

/// The rules find an outage chattering.
pub fn chattering(device_id: i32, kind: &'static str, at: &str) -> OutageChange {
    OutageChange::Chattering {
        device_id,
        kind,
        at: ts(at),
    }
}

/// The work order state named `name` (a test's shorthand).
pub fn state(name: &str) -> model::WorkOrderState {
    model::WorkOrderState::parse(name).unwrap_or_else(|| panic!("no work order state `{name}`"))
}

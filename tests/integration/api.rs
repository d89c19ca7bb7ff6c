//! The HTTP API, served in the test process against a fresh database, and the commands
//! that manage its users. The fixture ([`City`]) is here; the tests by subject:
//!
//! - `matrix`: every endpoint x every role x own tenant / another tenant;
//! - `session`: signing in and out, the same answer to wrong names and passwords,
//!   throttling, API tokens;
//! - `requests`: pages and cursors, bad input, the OpenAPI document;
//! - `audit`: changes as events and audit entries, one chain under concurrent appends;
//! - `exports`: each format read back, filters, refusals, 200k readings, slow clients;
//! - `cli`: `cityhub users`, `cityhub audit verify`, a weak session secret refused;
//! - `connections`: timeouts of idle, half-sent and slow connections; the connection cap;
//! - `fuzz`: the OpenAPI document against a contract fuzzer (schemathesis);
//! - `history`: telemetry in time buckets against the raw readings, rollups re-rolled by
//!   late readings, the map's state, single devices, the energy report;
//! - `handling`: assigning outages, one outage or work order with its history, users
//!   administered, the API's metrics;
//! - `live_events`: the server-sent events stream (types, tenants, roles, slow clients,
//!   the listener's reconnection, storms);
//! - `open311`: citizens' reports (GeoReport v2).

mod audit;
mod cli;
mod connections;
mod exports;
mod fuzz;
mod handling;
mod history;
mod live_events;
mod matrix;
mod open311;
mod requests;
mod session;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use model::Kind;
use tests::api::{add_token, add_user, Auth, Reply, Req, TestApi};
use tests::db::{devices, opened, opened_with_order, ts};
use tests::Store;
use tests::{unique, TestDb};

/// Two municipalities (`a`, `b`) and a third (`c`) only the regional viewer also sees;
/// one user per role in `a`, each with an API token; the API serving them.
pub(crate) struct City {
    pub db: TestDb,
    pub store: Store,
    pub api: TestApi,
    pub a: String,
    pub b: String,
    pub c: String,
    /// Device ids by (tenant, inventory id).
    pub ids: HashMap<(String, String), i32>,
    /// An API token per role.
    pub tokens: HashMap<&'static str, Auth>,
}

/// Every role, in the order of the matrix's columns.
pub(crate) const ROLES: [&str; 6] = [
    "admin",
    "operator",
    "dispatcher",
    "crew",
    "viewer",
    "regional_viewer",
];

/// The team of the crew member.
pub(crate) const CREW_TEAM: &str = "lighting-crew";

impl City {
    pub async fn start() -> City {
        City::start_configured(|_| {}).await
    }

    /// Like [`City::start`], the API's configuration changed by `change` first.
    pub async fn start_configured(change: impl FnOnce(&mut api::ApiConfig)) -> City {
        let (a, b, c) = (unique("a"), unique("b"), unique("c"));
        let db = TestDb::new().await;
        for t in [&a, &b, &c] {
            db.import(&devices(t, &[(Kind::Light, 30), (Kind::Cabinet, 1)]))
                .await;
        }
        let mut ids = HashMap::new();
        for t in [&a, &b, &c] {
            for (ext, id) in db.device_ids(t).await {
                ids.insert((t.clone(), ext), id);
            }
        }
        let mut store = db.store().await;
        let mut tokens = HashMap::new();
        for role in ROLES {
            let tenants: Vec<&str> = match role {
                "regional_viewer" => vec![&a, &c],
                _ => vec![&a],
            };
            let team = (role == "crew").then_some(CREW_TEAM);
            add_user(&mut store.admin, role, role, &tenants, team).await;
            tokens.insert(
                role,
                Auth::Token(add_token(&mut store.admin, role, "tests").await),
            );
        }
        let api = TestApi::start_configured(&db.url, change).await;
        City {
            db,
            store,
            api,
            a,
            b,
            c,
            ids,
            tokens,
        }
    }

    pub fn device(&self, tenant: &str, ext: &str) -> i32 {
        self.ids[&(tenant.to_owned(), ext.to_owned())]
    }

    /// The district and cabinet the inventory gives `tenant`'s device `ext`.
    pub async fn place(&self, tenant: &str, ext: &str) -> (Option<String>, Option<String>) {
        let r = self
            .db
            .client
            .query_one(
                "SELECT district, cabinet FROM devices WHERE id = $1",
                &[&self.device(tenant, ext)],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    }

    /// Opens an outage of a kind never used before on `tenant`'s lamp L0; its id.
    pub async fn open_outage(&mut self, tenant: &str) -> i64 {
        let kind = fresh_kind();
        let device = self.device(tenant, "L0");
        self.store
            .detection
            .apply_outage_changes(&[opened(device, kind, "2026-03-01T00:00:00Z")])
            .await
            .unwrap();
        self.outage_id(kind).await
    }

    async fn outage_id(&self, kind: &str) -> i64 {
        self.db
            .client
            .query_one("SELECT id FROM outages WHERE kind = $1", &[&kind])
            .await
            .unwrap()
            .get(0)
    }

    /// Opens an outage with a work order for [`CREW_TEAM`] on `tenant`'s lamp L1 and
    /// assigns it; the order's id.
    pub async fn assigned_order(&mut self, tenant: &str) -> i64 {
        let kind = fresh_kind();
        let device = self.device(tenant, "L1");
        self.store
            .detection
            .apply_outage_changes(&[opened_with_order(
                device,
                kind,
                "2026-03-01T00:00:00Z",
                CREW_TEAM,
                3600,
            )])
            .await
            .unwrap();
        let id: i64 = self
            .db
            .client
            .query_one("SELECT id FROM work_orders WHERE kind = $1", &[&kind])
            .await
            .unwrap()
            .get(0);
        self.store
            .detection
            .transition_work_order(
                id,
                model::WorkOrderState::Assigned,
                "dispatch",
                None,
                ts("2026-03-01T00:10:00Z"),
                Some("ana"),
            )
            .await
            .unwrap();
        id
    }

    pub async fn get(&self, path: &str, role: &str) -> Reply {
        self.api.call(Req::get(path, &self.tokens[role])).await
    }

    pub async fn post(&self, path: &str, role: &str, body: &str) -> Reply {
        self.api
            .call(Req::post(path, &self.tokens[role], body))
            .await
    }
}

/// An outage kind no other fixture used: one open outage per (device, kind), so each
/// fixture gets its own.
pub(crate) fn fresh_kind() -> &'static str {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    // Leaked on purpose: the store takes outage kinds as the rules' static names.
    Box::leak(format!("fault_{n}").into_boxed_str())
}

//! The HTTP API (axum): `/health`, Prometheus `/metrics`, and the versioned `/api/v1`
//! surface with its OpenAPI document.
//!
//! - [`v1`]: the `/api/v1` routes, one module per resource (`session`, `users`,
//!   `devices`, `history`, `map`, `outages`, `work_orders`, `commands`, `schedules`,
//!   `reports`, `exports`, `events`), each handler annotated for the OpenAPI document and
//!   registered together with its annotation (utoipa-axum), so the document lists exactly
//!   the routes served. New resources add a module and a line in [`v1::routes`].
//! - [`standards`]: Open311 GeoReport v2 and GTFS-Realtime, outside `/api/v1`.
//! - [`live`]: the one hub-wide fan-out of changes that every `/api/v1/events` stream
//!   reads; [`slots`]: the shares of long-held connections (exports, event streams) per
//!   person, per tenant and in all.
//! - [`caller`]: who sends a request (API token or session cookie), their role and
//!   tenants; [`roles`]: what each role may do (a pure table).
//! - [`auth`]: password hashing, tokens, the session secret; [`limiter`]: sign-in
//!   throttling and request rates; [`refusals`]: failed sign-ins and 403s tallied into
//!   the audit log.
//! - [`params`]: page sizes, cursors, time ranges and other query values, bounded;
//!   [`extract`]: JSON, query and path extractors whose errors are [`ApiError`]s.
//! - [`error`]: [`ApiError`], the one error type of every handler.
//! - [`pool`]: the database connections the requests share (and, with a replica, those of
//!   the heavy reads: `AppState::read_pool`).
//! - [`dashboard`]: the built web app, for every path outside the API's.
//! - [`snapshots`]: big answers (the map's state) built once and shared for a second.
//! - [`metrics`]: requests counted and timed by route template.
//! - [`server`]: the accept loop, the cap on connections and the timeouts that keep a
//!   connection from being held without being used; [`edge`]: what every request passes
//!   before its handler (its body read whole, in time).
//!
//! Start reading at [`router`], then [`caller::Caller`].

pub mod auth;
pub mod caller;
pub mod dashboard;
pub mod edge;
pub mod error;
pub mod extract;
pub mod limiter;
pub mod live;
pub mod metrics;
pub mod params;
pub mod pool;
pub mod refusals;
pub mod roles;
pub mod server;
pub mod slots;
pub mod snapshots;
pub mod standards;
pub mod v1;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use model::Timestamp;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use auth::SessionSecret;
pub use dashboard::DashboardConfig;
pub use error::ApiError;
pub use server::HttpLimits;
pub use v1::exports::ExportLimits;

/// The largest request body accepted, in bytes; anything larger is refused with 413.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Database connections the API keeps at most.
const POOL_SIZE: usize = 8;

/// Password checks run at once at most, each on a thread of its own
/// ([`auth::PasswordCheckers`]). Each takes Argon2's 19 MiB and a core for a while; a
/// crowd of sign-ins (or someone sending one) waits its turn instead of exhausting memory.
const PASSWORD_CHECKS: usize = 4;

pub use model::Clock;

/// What the rest of the hub has to report to `/health`: a sentence per problem, none
/// when all is well. (The API does not know ingestion; the binary connects them.)
pub type HealthCheck = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

/// What the API needs from the hub's configuration.
#[derive(Clone)]
pub struct ApiConfig {
    pub database_url: String,
    /// A streaming replica for the heavy reads ([`AppState::read_pool`]): histories,
    /// reports, exports and the map's state.
    pub database_read_url: Option<String>,
    /// Keys session token digests; see [`SessionSecret`].
    pub session_secret: SessionSecret,
    /// Mark the session cookie `Secure` (served over HTTPS, directly or behind a proxy).
    pub secure_cookie: bool,
    /// Stamps people's actions (acknowledged at, done at) on the hub's clock, so they
    /// agree with the rules' times when the hub runs on simulated time. Sessions and
    /// sign-in throttling use the wall clock, whatever this says.
    pub clock: Clock,
    /// The dashboard's files and its map's layers.
    pub dashboard: DashboardConfig,
    /// Problems elsewhere in the hub that make `/health` say `degraded`.
    pub health: Option<HealthCheck>,
    /// Connections and their timeouts.
    pub http: HttpLimits,
    /// How many exports may run, in all, per person and per tenant, and for how long.
    pub exports: ExportLimits,
    /// Origins (`https://host[:port]`) besides the server's own whose pages may make
    /// changes with the session cookie (a reverse proxy that rewrites `Host`).
    pub allowed_origins: Vec<String>,
    /// How many Open311 reports may be posted per api_key and per address.
    pub open311: standards::open311::Open311Limits,
    /// How often failed sign-ins and refused requests are written to the audit log, as
    /// tallies ([`refusals::FLUSH_EVERY`] in production).
    pub refusals_every: std::time::Duration,
    /// When a device not heard from counts as stale on the map.
    pub staleness: Staleness,
}

/// How long a device may go unheard before the map calls it stale: one reporting interval
/// of its kind plus the grace, as the rules file sets them (`[silence]`); the rules raise
/// a silence outage later, after several intervals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Staleness {
    /// Per kind, in the order of [`model::Kind::ALL`], seconds.
    pub after_s: [i64; 4],
}

impl Staleness {
    /// One `interval_s(kind)` plus `grace_s`.
    pub fn new(interval_s: impl Fn(model::Kind) -> i64, grace_s: i64) -> Staleness {
        Staleness {
            after_s: model::Kind::ALL.map(|k| interval_s(k).saturating_add(grace_s)),
        }
    }

    /// Seconds a device of `kind` may go unheard.
    pub fn after_s(&self, kind: model::Kind) -> i64 {
        let i = model::Kind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(0);
        self.after_s[i]
    }
}

impl Default for Staleness {
    /// The contract's reporting intervals and grace.
    fn default() -> Staleness {
        Staleness::new(model::Kind::reporting_interval_s, model::REPORT_GRACE_S)
    }
}

struct Shared {
    metrics: Arc<Registry>,
    api_metrics: metrics::ApiMetrics,
    storage_path: &'static str,
    pool: pool::Pool,
    replica: Option<pool::Pool>,
    secret: SessionSecret,
    secure_cookie: bool,
    clock: Clock,
    limiter: limiter::LoginLimiter,
    password_checks: auth::PasswordCheckers,
    events: live::EventHub,
    /// Tenants (slugs) whose GTFS-Realtime feed needs no sign-in.
    public_feeds: std::sync::RwLock<Vec<String>>,
    dashboard: DashboardConfig,
    states: Arc<snapshots::Snapshots<snapshots::Encoded>>,
    health: Option<HealthCheck>,
    http: HttpLimits,
    connection_metrics: server::ConnectionMetrics,
    export_limits: ExportLimits,
    export_slots: Arc<slots::Slots>,
    stream_slots: Arc<slots::Slots>,
    allowed_origins: Vec<String>,
    staleness: Staleness,
    open311_rates: standards::open311::PostRates,
    public_pages: standards::public_works::PublicPages,
    webhooks_reach_private: std::sync::atomic::AtomicBool,
    email_enabled: std::sync::atomic::AtomicBool,
    refusals: refusals::Refusals,
    refusals_every: std::time::Duration,
}

/// Everything a handler can reach; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// The API's state; its own metrics join `registry`, which `/metrics` then serves.
    pub fn new(mut registry: Registry, storage_path: &'static str, config: ApiConfig) -> AppState {
        let api_metrics = metrics::ApiMetrics::default();
        api_metrics.register(&mut registry);
        let connection_metrics = server::ConnectionMetrics::default();
        connection_metrics.register(&mut registry);
        AppState(Arc::new(Shared {
            metrics: Arc::new(registry),
            api_metrics,
            storage_path,
            pool: pool::Pool::new(&config.database_url, POOL_SIZE),
            replica: config
                .database_read_url
                .as_deref()
                .map(|url| pool::Pool::new(url, POOL_SIZE)),
            secret: config.session_secret,
            secure_cookie: config.secure_cookie,
            clock: config.clock,
            limiter: limiter::LoginLimiter::default(),
            password_checks: auth::PasswordCheckers::start(PASSWORD_CHECKS)
                .expect("the password-check threads could not start"),
            events: live::EventHub::new(&config.database_url),
            public_feeds: std::sync::RwLock::new(Vec::new()),
            dashboard: config.dashboard,
            states: Arc::default(),
            health: config.health,
            connection_metrics,
            export_slots: slots::Slots::new("exports", config.exports.shares()),
            stream_slots: slots::Slots::new("live event streams", config.http.stream_shares()),
            export_limits: config.exports,
            http: config.http,
            allowed_origins: config.allowed_origins,
            staleness: config.staleness,
            open311_rates: standards::open311::PostRates::new(&config.open311),
            public_pages: Default::default(),
            webhooks_reach_private: Default::default(),
            email_enabled: Default::default(),
            refusals: refusals::Refusals::default(),
            refusals_every: config.refusals_every,
        }))
    }

    pub fn api_metrics(&self) -> &metrics::ApiMetrics {
        &self.0.api_metrics
    }

    pub fn pool(&self) -> &pool::Pool {
        &self.0.pool
    }

    /// The connections of the heavy reads (histories, reports, exports, the map's
    /// state): the replica's when one is configured, a moment behind the primary.
    pub fn read_pool(&self) -> &pool::Pool {
        self.0.replica.as_ref().unwrap_or(&self.0.pool)
    }

    pub fn secret(&self) -> &SessionSecret {
        &self.0.secret
    }

    pub fn secure_cookie(&self) -> bool {
        self.0.secure_cookie
    }

    pub fn limiter(&self) -> &limiter::LoginLimiter {
        &self.0.limiter
    }

    /// Makes the GTFS-Realtime feeds of `tenants` (slugs) readable without signing in
    /// (`http.public_feeds`).
    /// Whether webhooks may be subscribed to addresses outside the public internet
    /// (`webhooks.allow_private_addresses`).
    pub fn set_webhooks_reach_private(&self, allowed: bool) {
        self.0
            .webhooks_reach_private
            .store(allowed, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether mail can leave the hub (`email.smtp_host`): e-mail subscriptions, the
    /// residents' ones included, are taken only then.
    pub fn set_email_enabled(&self, enabled: bool) {
        self.0
            .email_enabled
            .store(enabled, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn email_enabled(&self) -> bool {
        self.0
            .email_enabled
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn webhooks_reach_private(&self) -> bool {
        self.0
            .webhooks_reach_private
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set_public_feeds(&self, tenants: Vec<String>) {
        *self
            .0
            .public_feeds
            .write()
            .unwrap_or_else(|p| p.into_inner()) = tenants;
    }

    /// Whether `tenant`'s GTFS-Realtime feed needs no sign-in.
    pub fn feed_is_public(&self, tenant: &str) -> bool {
        self.0
            .public_feeds
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|t| t == tenant)
    }

    /// The live events' fan-out ([`live`]); started by [`serve`].
    pub fn events(&self) -> &live::EventHub {
        &self.0.events
    }

    /// Whether `password` matches the PHC string `hash`, checked off the async threads,
    /// a few at a time.
    pub async fn check_password(&self, password: String, hash: String) -> Result<bool, ApiError> {
        self.0
            .password_checks
            .check(password, hash)
            .await
            .ok_or_else(|| {
                ApiError::internal("checking a password", &"the password threads are gone")
            })
    }

    /// The map's state of every device, per tenant set and kind ([`snapshots`]).
    pub fn states(&self) -> &Arc<snapshots::Snapshots<snapshots::Encoded>> {
        &self.0.states
    }

    pub fn dashboard(&self) -> &DashboardConfig {
        &self.0.dashboard
    }

    /// The exports running, and how many may.
    pub fn export_slots(&self) -> &Arc<slots::Slots> {
        &self.0.export_slots
    }

    pub fn export_limits(&self) -> &ExportLimits {
        &self.0.export_limits
    }

    /// Live event streams running, in all and per person.
    pub fn stream_slots(&self) -> &Arc<slots::Slots> {
        &self.0.stream_slots
    }

    /// Failed sign-ins and refused requests since they were last audited.
    pub fn refusals(&self) -> &refusals::Refusals {
        &self.0.refusals
    }

    /// Writes the tallies of refusals to the audit log (one entry per user and address).
    pub async fn audit_refusals(&self) -> Result<usize, ApiError> {
        let entries = self.0.refusals.take();
        if entries.is_empty() {
            return Ok(0);
        }
        let mut db = self.pool().actions().await?;
        for (action, target, detail) in &entries {
            db.audit("cityhub", action, target, detail.clone()).await?;
        }
        Ok(entries.len())
    }

    /// The rates of Open311 reports posted.
    /// The tenants whose works residents may read without signing in
    /// (`public.tenants`), and those pages' shared answers.
    pub fn public_pages(&self) -> &standards::public_works::PublicPages {
        &self.0.public_pages
    }

    pub fn open311_rates(&self) -> &standards::open311::PostRates {
        &self.0.open311_rates
    }

    /// Origins besides the server's own allowed to make changes with the session cookie.
    pub fn allowed_origins(&self) -> &[String] {
        &self.0.allowed_origins
    }

    /// How connections are bounded.
    pub fn http_limits(&self) -> &HttpLimits {
        &self.0.http
    }

    /// When a device not heard from counts as stale.
    pub fn staleness(&self) -> Staleness {
        self.0.staleness
    }

    /// Now, on the hub's clock.
    pub fn now(&self) -> Timestamp {
        (self.0.clock)()
    }
}

#[derive(Serialize)]
struct Health {
    /// `ok`, or `degraded` when something needs a person's attention (`problems`).
    status: &'static str,
    storage: &'static str,
    version: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    problems: Vec<String>,
}

/// How long `/health` waits for the database before saying it does not answer.
const HEALTH_DATABASE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

async fn health(State(state): State<AppState>) -> Json<Health> {
    let mut problems = state
        .0
        .health
        .as_ref()
        .map(|check| check())
        .unwrap_or_default();
    let mut pools = vec![("the database", state.pool())];
    if let Some(replica) = &state.0.replica {
        pools.push(("the read replica (database_read_url)", replica));
    }
    for (what, pool) in pools {
        let answer = tokio::time::timeout(HEALTH_DATABASE_WAIT, async {
            let db = pool.reads().await?;
            db.ping().await.map_err(ApiError::from)
        })
        .await;
        match answer {
            Ok(Ok(())) => {}
            Ok(Err(e)) => problems.push(format!("{what} cannot be reached ({})", e.message())),
            Err(_) => problems.push(format!(
                "{what} did not answer within {} s",
                HEALTH_DATABASE_WAIT.as_secs()
            )),
        }
    }
    Json(Health {
        status: if problems.is_empty() {
            "ok"
        } else {
            "degraded"
        },
        storage: state.0.storage_path,
        version: env!("CARGO_PKG_VERSION"),
        problems,
    })
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.0.metrics) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "metrics could not be encoded\n".to_owned(),
        ),
    }
}

/// Every route: `/health`, `/metrics` and `/api/v1/...` (bodies at most [`BODY_LIMIT`]);
/// any other path is the dashboard's ([`dashboard`]).
pub fn router(state: AppState) -> Router {
    let (api, _) = v1::routes().split_for_parts();
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .merge(api.layer(DefaultBodyLimit::max(BODY_LIMIT)))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            edge::admit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}

async fn no_route(State(state): State<AppState>, method: Method, uri: Uri) -> Response {
    if !dashboard::is_api_path(uri.path()) {
        return dashboard::serve(state.dashboard(), &method, &uri).await;
    }
    ApiError::not_found(format!(
        "there is no {method} {}; the routes are listed in /api/v1/openapi.json",
        uri.path()
    ))
    .into_response()
}

async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::method_not_allowed(format!(
        "{} does not answer {method}; the routes are listed in /api/v1/openapi.json",
        uri.path()
    ))
}

/// Serves on `listener` until `shutdown`, finishing requests in flight for a while.
/// Connections carry their peer address (for sign-in throttling) and are bounded as
/// [`server`] describes.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    let limits = state.http_limits().clone();
    info!(
        message = "HTTP API listening.",
        addr = ?addr,
        max_connections = limits.max_connections
    );
    state.events().start(shutdown.clone());
    let metrics = state.0.connection_metrics.clone();
    let tallies = tokio::spawn(audit_refusals(state.clone(), shutdown.clone()));
    let served = server::run(listener, router(state), limits, metrics, shutdown).await;
    let _ = tallies.await;
    served
}

/// Writes the refusals' tallies to the audit log every [`ApiConfig::refusals_every`], and
/// once more at shutdown.
async fn audit_refusals(state: AppState, shutdown: CancellationToken) {
    loop {
        let stop = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tokio::time::sleep(state.0.refusals_every) => false,
        };
        if let Err(e) = state.audit_refusals().await {
            tracing::warn!(
                message = "Cannot write failed sign-ins and refused requests to the audit log; they are dropped.",
                error = %e.message()
            );
        }
        if stop {
            return;
        }
    }
}

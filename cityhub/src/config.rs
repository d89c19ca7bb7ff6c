//! Configuration: defaults < `cityhub.toml` < `CITYHUB_*` environment < command-line flags.
//!
//! The environment and flags are read by clap (each flag names its variable); they are
//! `Option`s so that an unset flag leaves the file's value alone.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use ingest::IngestConfig;
use serde::{Deserialize, Serialize};
use store::TimescaleMode;

/// A connection string with its password replaced by `***`, in either form PostgreSQL
/// takes: `postgres://user:password@host/db?password=...` and `password=... host=...`.
fn hide_password(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    {
        let start = url.len() - rest.len();
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        if let Some(userinfo) = authority.rfind('@').map(|at| &authority[..at]) {
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(start + colon + 1..start + userinfo.len(), "***");
            }
        }
    }
    // `password=` as a query parameter or a key of the key-value form (maybe quoted).
    let mut hidden = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(at) = rest.find("password") {
        let after = rest[at + "password".len()..].trim_start();
        let keyed = at == 0 || matches!(rest.as_bytes()[at - 1], b'?' | b'&' | b' ' | b'\t');
        let Some(value) = after.strip_prefix('=').filter(|_| keyed) else {
            hidden.push_str(&rest[..at + "password".len()]);
            rest = &rest[at + "password".len()..];
            continue;
        };
        let value = value.trim_start();
        let end = if let Some(quoted) = value.strip_prefix('\'') {
            // Up to the closing quote; a backslash takes the next character as it is.
            let mut chars = quoted.char_indices();
            let mut close = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '\'' => {
                        close = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            close.map_or(value.len(), |i| i + 2)
        } else {
            value.find([' ', '\t', '&']).unwrap_or(value.len())
        };
        hidden.push_str(&rest[..at]);
        hidden.push_str("password=***");
        rest = &value[end..];
    }
    hidden.push_str(rest);
    hidden
}

fn without_password<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hide_password(url))
}

fn maybe_without_password<S: serde::Serializer>(
    url: &Option<String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => s.serialize_some(&hide_password(url)),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// PostgreSQL connection string. May hold a password: never logged as is, and
    /// shown by `cityhub config` with the password as `***`.
    #[serde(serialize_with = "without_password")]
    pub database_url: String,
    /// A streaming replica of that database for the API's heavy reads (histories,
    /// reports, exports, the map's state); all of them go to `database_url` when unset.
    #[serde(serialize_with = "maybe_without_password")]
    pub database_read_url: Option<String>,
    pub http: HttpConfig,
    pub storage: StorageConfig,
    pub ingest: IngestConfig,
    pub limits: LimitsConfig,
    /// Run on the simulators' clock (`wall_origin_ms,sim_origin_ms,speed`) instead of the
    /// wall clock; printed by `cityhub simulate run`.
    pub sim_clock: Option<String>,
    /// The rules file (TOML, docs/rules.md); built-in defaults when absent.
    pub rules_file: Option<PathBuf>,
    /// The dashboard's files, base map and tile server (docs/dashboard.md).
    pub dashboard: api::DashboardConfig,
    /// Command delivery: the dispatcher's rate and polling.
    pub commands: control::DispatcherConfig,
    /// How many readings exports may run at once, and for how long.
    pub exports: ExportsConfig,
    /// Citizens' reports (Open311): how fast they may be posted.
    pub open311: Open311Config,
    /// The audit log's anchor, logged for keeping elsewhere.
    pub audit: AuditConfig,
    /// Several hub instances on one database and broker (docs/scale-out.md).
    pub cluster: ClusterConfig,
    /// What residents may read without signing in (docs/api.md, "Public pages").
    pub public: PublicConfig,
    /// How webhooks are delivered (docs/api.md, "Webhooks").
    pub webhooks: notify::WebhookConfig,
    /// How e-mail leaves the hub (docs/api.md, "E-mail").
    pub email: notify::EmailConfig,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublicConfig {
    /// Tenants whose works (`/public/{tenant}/works.geojson`, `.ics`) anyone may read.
    pub tenants: Vec<String>,
    /// Published tenants whose items name their devices (inventory ids).
    pub device_ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// This instance's name in the leases it holds (the host name when empty).
    pub instance: String,
    /// Seconds a lease lasts without being renewed: how long the work of an instance
    /// that died waits before another takes it over. Renewed every fifth of it.
    pub lease_ttl_s: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            instance: String::new(),
            lease_ttl_s: 5,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Seconds between logs of the audit log's head (`SEQ:HASH`), when it has moved.
    pub anchor_log_s: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { anchor_log_s: 3600 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Open311Config {
    /// Reports posted per minute at most with one api_key.
    pub reports_per_minute_per_key: u32,
    /// Reports posted per minute at most from one client address.
    pub reports_per_minute_per_address: u32,
}

impl Default for Open311Config {
    fn default() -> Self {
        let l = api::standards::open311::Open311Limits::default();
        Open311Config {
            reports_per_minute_per_key: l.per_key,
            reports_per_minute_per_address: l.per_address,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportsConfig {
    /// Exports running at once at most (each holds a database connection of its own).
    pub max_running: usize,
    /// Per person (their tokens and sessions together).
    pub per_user: usize,
    /// Per tenant (an export covering several counts against each).
    pub per_tenant: usize,
    /// Seconds an export may run before it is cut short.
    pub max_duration_s: u64,
}

impl Default for ExportsConfig {
    fn default() -> Self {
        let l = api::ExportLimits::default();
        ExportsConfig {
            max_running: l.max_running,
            per_user: l.per_user,
            per_tenant: l.per_tenant,
            max_duration_s: l.max_duration.as_secs(),
        }
    }
}

impl ExportsConfig {
    pub fn limits(&self) -> api::ExportLimits {
        api::ExportLimits {
            max_running: self.max_running,
            per_user: self.per_user,
            per_tenant: self.per_tenant,
            max_duration: std::time::Duration::from_secs(self.max_duration_s),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub addr: SocketAddr,
    /// Keys the digests of session tokens kept in the database, so a copy of the database
    /// alone cannot forge a session. At least 32 random characters. When unset, a random
    /// one is made at start (sessions then end when the hub restarts). Never printed.
    #[serde(skip_serializing)]
    pub session_secret: Option<String>,
    /// Mark the session cookie `Secure`: set it when the API is reached over HTTPS.
    pub secure_cookie: bool,
    /// Tenants whose GTFS-Realtime feed anyone may read without signing in.
    pub public_feeds: Vec<String>,
    /// HTTP connections open at once at most (kept under the open-file limit).
    pub max_connections: usize,
    /// Seconds for a request's head to arrive whole, from the connection opening or its
    /// previous response (idle kept-alive connections close after it too).
    pub header_timeout_s: u64,
    /// Seconds for a request's body to arrive whole.
    pub body_timeout_s: u64,
    /// Seconds a client may take none of a response before it is cut off.
    pub send_timeout_s: u64,
    /// HTTP connections open at once from one client address at most (a reverse proxy is
    /// one address: raise it to `max_connections` behind one).
    pub max_connections_per_address: usize,
    /// Live event streams open at once at most (kept to half the connections).
    pub max_streams: usize,
    /// Live event streams open at once per person.
    pub streams_per_user: usize,
    /// Origins (`https://host[:port]`) besides the hub's own whose pages may make changes
    /// with the session cookie: the address people use when a reverse proxy rewrites `Host`.
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `auto` (use TimescaleDB when the extension can be created), `require`, or `off`.
    pub timescaledb: TimescaleMode,
    /// Days of readings kept; older readings are refused at ingestion and dropped.
    pub retention_days: i64,
    /// Seconds between refreshes of the lamp rollups (native partitioning; TimescaleDB
    /// refreshes its continuous aggregates by its own policies).
    pub rollup_refresh_s: u64,
    /// Days dead letters are kept; older ones are deleted every hour.
    pub dead_letter_retention_days: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_payload_bytes: usize,
    pub max_array_len: usize,
    pub max_future_secs: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: "postgres://postgres@127.0.0.1:5432/cityhub".into(),
            database_read_url: None,
            http: HttpConfig::default(),
            storage: StorageConfig::default(),
            ingest: IngestConfig::default(),
            limits: LimitsConfig::default(),
            sim_clock: None,
            rules_file: None,
            dashboard: api::DashboardConfig::default(),
            commands: control::DispatcherConfig::default(),
            exports: ExportsConfig::default(),
            open311: Open311Config::default(),
            audit: AuditConfig::default(),
            cluster: ClusterConfig::default(),
            public: PublicConfig::default(),
            webhooks: notify::WebhookConfig::default(),
            email: notify::EmailConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            session_secret: None,
            secure_cookie: false,
            public_feeds: Vec::new(),
            max_connections: 1024,
            header_timeout_s: 10,
            body_timeout_s: 30,
            send_timeout_s: 60,
            max_connections_per_address: 256,
            max_streams: 512,
            streams_per_user: 8,
            allowed_origins: Vec::new(),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            timescaledb: TimescaleMode::Auto,
            retention_days: 365,
            rollup_refresh_s: 15,
            dead_letter_retention_days: 30,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let l = model::Limits::default();
        LimitsConfig {
            max_payload_bytes: l.max_payload_bytes,
            max_array_len: l.max_array_len,
            max_future_secs: l.window.max_future_secs,
        }
    }
}

/// Settings that can come from the environment or flags, over the file.
#[derive(Debug, Clone, Default, Args)]
pub struct Overrides {
    /// Configuration file [default: ./cityhub.toml when it exists]
    #[arg(long, env = "CITYHUB_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// PostgreSQL connection string
    #[arg(
        long,
        env = "CITYHUB_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// A streaming replica's connection string, for the API's heavy reads
    #[arg(
        long,
        env = "CITYHUB_DATABASE_READ_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_read_url: Option<String>,
    /// Address the HTTP API listens on
    #[arg(long, env = "CITYHUB_HTTP_ADDR", global = true)]
    pub http_addr: Option<SocketAddr>,
    /// Secret keying session digests (at least 32 random characters; prefer the
    /// environment or the file to this flag, which other users can see in `ps`)
    #[arg(
        long,
        env = "CITYHUB_HTTP_SESSION_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub http_session_secret: Option<String>,
    /// Mark the session cookie Secure (the API is reached over HTTPS)
    #[arg(long, env = "CITYHUB_HTTP_SECURE_COOKIE", global = true)]
    pub http_secure_cookie: Option<bool>,
    /// Tenants whose GTFS-Realtime feed is public, comma separated
    #[arg(
        long,
        env = "CITYHUB_HTTP_PUBLIC_FEEDS",
        global = true,
        value_delimiter = ','
    )]
    pub http_public_feeds: Option<Vec<String>>,
    /// Tenants whose works residents may read without signing in (comma separated)
    #[arg(
        long,
        env = "CITYHUB_PUBLIC_TENANTS",
        global = true,
        value_delimiter = ','
    )]
    pub public_tenants: Option<Vec<String>>,
    /// Published tenants whose public items name their devices (comma separated)
    #[arg(
        long,
        env = "CITYHUB_PUBLIC_DEVICE_IDS",
        global = true,
        value_delimiter = ','
    )]
    pub public_device_ids: Option<Vec<String>>,
    /// HTTP connections open at once at most
    #[arg(long, env = "CITYHUB_HTTP_MAX_CONNECTIONS", global = true)]
    pub http_max_connections: Option<usize>,
    /// Seconds for a request's head to arrive (also the idle timeout of a connection)
    #[arg(long, env = "CITYHUB_HTTP_HEADER_TIMEOUT_S", global = true)]
    pub http_header_timeout_s: Option<u64>,
    /// Seconds for a request's body to arrive
    #[arg(long, env = "CITYHUB_HTTP_BODY_TIMEOUT_S", global = true)]
    pub http_body_timeout_s: Option<u64>,
    /// Seconds a client may take none of a response
    #[arg(long, env = "CITYHUB_HTTP_SEND_TIMEOUT_S", global = true)]
    pub http_send_timeout_s: Option<u64>,
    /// HTTP connections open at once from one client address at most
    #[arg(long, env = "CITYHUB_HTTP_MAX_CONNECTIONS_PER_ADDRESS", global = true)]
    pub http_max_connections_per_address: Option<usize>,
    /// Live event streams open at once at most
    #[arg(long, env = "CITYHUB_HTTP_MAX_STREAMS", global = true)]
    pub http_max_streams: Option<usize>,
    /// Live event streams open at once per person
    #[arg(long, env = "CITYHUB_HTTP_STREAMS_PER_USER", global = true)]
    pub http_streams_per_user: Option<usize>,
    /// Origins besides the hub's own whose pages may make changes with the session
    /// cookie, comma separated (https://host[:port])
    #[arg(
        long,
        env = "CITYHUB_HTTP_ALLOWED_ORIGINS",
        global = true,
        value_delimiter = ','
    )]
    pub http_allowed_origins: Option<Vec<String>>,
    /// MQTT broker host
    #[arg(long, env = "CITYHUB_MQTT_HOST", global = true)]
    pub mqtt_host: Option<String>,
    /// MQTT broker port
    #[arg(long, env = "CITYHUB_MQTT_PORT", global = true)]
    pub mqtt_port: Option<u16>,
    /// MQTT client id; keep it stable so the broker keeps the session across restarts
    #[arg(long, env = "CITYHUB_MQTT_CLIENT_ID", global = true)]
    pub mqtt_client_id: Option<String>,
    /// MQTT user name
    #[arg(long, env = "CITYHUB_MQTT_USERNAME", global = true)]
    pub mqtt_username: Option<String>,
    /// MQTT password
    #[arg(
        long,
        env = "CITYHUB_MQTT_PASSWORD",
        global = true,
        hide_env_values = true
    )]
    pub mqtt_password: Option<String>,
    /// MQTT topic filters to subscribe to, comma separated
    #[arg(
        long,
        env = "CITYHUB_MQTT_TOPICS",
        global = true,
        value_delimiter = ','
    )]
    pub mqtt_topics: Option<Vec<String>>,
    /// `auto`, `require` or `off`
    #[arg(long, env = "CITYHUB_TIMESCALEDB", global = true, value_parser = parse_mode)]
    pub timescaledb: Option<TimescaleMode>,
    /// Days of readings kept
    #[arg(long, env = "CITYHUB_RETENTION_DAYS", global = true)]
    pub retention_days: Option<i64>,
    /// Seconds between refreshes of the lamp rollups (native partitioning)
    #[arg(long, env = "CITYHUB_ROLLUP_REFRESH_S", global = true)]
    pub rollup_refresh_s: Option<u64>,
    /// Seconds between logs of the audit log's head (its anchor)
    #[arg(long, env = "CITYHUB_AUDIT_ANCHOR_LOG_S", global = true)]
    pub audit_anchor_log_s: Option<u64>,
    /// This instance's name among several hubs (the host name when unset)
    #[arg(long, env = "CITYHUB_INSTANCE", global = true)]
    pub instance: Option<String>,
    /// Seconds a lease lasts without renewal (how soon another instance takes over)
    #[arg(long, env = "CITYHUB_LEASE_TTL_S", global = true)]
    pub lease_ttl_s: Option<u64>,
    /// Let webhooks reach addresses outside the public internet (the hub's own network)
    #[arg(long, env = "CITYHUB_WEBHOOKS_ALLOW_PRIVATE_ADDRESSES", global = true)]
    pub webhooks_allow_private_addresses: Option<bool>,
    /// Seconds to wait after a webhook's first failure (doubling with each)
    #[arg(long, env = "CITYHUB_WEBHOOKS_RETRY_FIRST_S", global = true)]
    pub webhooks_retry_first_s: Option<f64>,
    /// The longest wait between two attempts at a webhook, seconds
    #[arg(long, env = "CITYHUB_WEBHOOKS_RETRY_MAX_S", global = true)]
    pub webhooks_retry_max_s: Option<f64>,
    /// The SMTP server mails leave through (none: no e-mail)
    #[arg(long, env = "CITYHUB_EMAIL_SMTP_HOST", global = true)]
    pub email_smtp_host: Option<String>,
    /// The SMTP server's port
    #[arg(long, env = "CITYHUB_EMAIL_SMTP_PORT", global = true)]
    pub email_smtp_port: Option<u16>,
    /// starttls, tls or none
    #[arg(long, env = "CITYHUB_EMAIL_TLS", global = true)]
    pub email_tls: Option<notify::email::Tls>,
    /// The SMTP account
    #[arg(long, env = "CITYHUB_EMAIL_USERNAME", global = true)]
    pub email_username: Option<String>,
    /// The SMTP account's password
    #[arg(
        long,
        env = "CITYHUB_EMAIL_PASSWORD",
        global = true,
        hide_env_values = true
    )]
    pub email_password: Option<String>,
    /// Who mails come from, e.g. "City works <works@city.example>"
    #[arg(long, env = "CITYHUB_EMAIL_FROM", global = true)]
    pub email_from: Option<String>,
    /// The hub's address as residents reach it, for the links in mails
    #[arg(long, env = "CITYHUB_EMAIL_PUBLIC_URL", global = true)]
    pub email_public_url: Option<String>,
    /// Days dead letters are kept
    #[arg(long, env = "CITYHUB_DEAD_LETTER_RETENTION_DAYS", global = true)]
    pub dead_letter_retention_days: Option<i64>,
    /// Dead letters stored per device and hour at most (0: no limit)
    #[arg(long, env = "CITYHUB_DEAD_LETTERS_PER_DEVICE_PER_HOUR", global = true)]
    pub dead_letters_per_device_per_hour: Option<u32>,
    /// Simulated clock to run on: wall_origin_ms,sim_origin_ms,speed
    #[arg(long, env = "CITYHUB_SIM_CLOCK", global = true)]
    pub sim_clock: Option<String>,
    /// Rules file (TOML)
    #[arg(long, env = "CITYHUB_RULES_FILE", global = true)]
    pub rules_file: Option<PathBuf>,
    /// The built dashboard served at / [default: dashboards/dist]
    #[arg(long, env = "CITYHUB_DASHBOARD_DIR", global = true)]
    pub dashboard_dir: Option<PathBuf>,
    /// GeoJSON base map of the dashboard (district outlines, streets)
    #[arg(long, env = "CITYHUB_DASHBOARD_BASE_MAP", global = true)]
    pub dashboard_base_map: Option<PathBuf>,
    /// Raster tile server of the dashboard's map: https://host/{z}/{x}/{y}.png
    #[arg(long, env = "CITYHUB_DASHBOARD_TILE_URL", global = true)]
    pub dashboard_tile_url: Option<String>,
    /// Commands published per second at most
    #[arg(long, env = "CITYHUB_COMMANDS_RATE_PER_SEC", global = true)]
    pub commands_rate_per_sec: Option<u32>,
    /// MQTT user name of the command dispatcher (an account of its own)
    #[arg(long, env = "CITYHUB_COMMANDS_MQTT_USERNAME", global = true)]
    pub commands_mqtt_username: Option<String>,
    /// MQTT password of the command dispatcher
    #[arg(
        long,
        env = "CITYHUB_COMMANDS_MQTT_PASSWORD",
        global = true,
        hide_env_values = true
    )]
    pub commands_mqtt_password: Option<String>,
}

fn parse_mode(s: &str) -> Result<TimescaleMode, String> {
    match s {
        "auto" => Ok(TimescaleMode::Auto),
        "require" => Ok(TimescaleMode::Require),
        "off" => Ok(TimescaleMode::Off),
        _ => Err(format!("`{s}` is not one of auto, require, off")),
    }
}

impl Config {
    /// Reads the file (if any), applies the overrides, and validates.
    pub fn load(o: &Overrides) -> anyhow::Result<Config> {
        let default_file = Path::new("cityhub.toml");
        let file = match &o.config {
            Some(p) => Some(p.as_path()),
            None if default_file.exists() => Some(default_file),
            None => None,
        };
        let mut c = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("cannot read the configuration file {}", path.display())
                })?;
                Config::from_toml(&text)
                    .with_context(|| format!("in the configuration file {}", path.display()))?
            }
            None => Config::default(),
        };
        c.apply(o);
        c.validate()?;
        Ok(c)
    }

    pub fn from_toml(text: &str) -> anyhow::Result<Config> {
        Ok(toml::from_str(text)?)
    }

    pub fn apply(&mut self, o: &Overrides) {
        let m = &mut self.ingest.mqtt;
        set(&mut self.database_url, &o.database_url);
        if o.database_read_url.is_some() {
            self.database_read_url.clone_from(&o.database_read_url);
        }
        set(&mut self.http.addr, &o.http_addr);
        if o.http_session_secret.is_some() {
            self.http.session_secret.clone_from(&o.http_session_secret);
        }
        set(&mut self.http.secure_cookie, &o.http_secure_cookie);
        set(&mut self.http.public_feeds, &o.http_public_feeds);
        set(&mut self.public.tenants, &o.public_tenants);
        set(&mut self.public.device_ids, &o.public_device_ids);
        set(&mut self.http.max_connections, &o.http_max_connections);
        set(&mut self.http.header_timeout_s, &o.http_header_timeout_s);
        set(&mut self.http.body_timeout_s, &o.http_body_timeout_s);
        set(&mut self.http.send_timeout_s, &o.http_send_timeout_s);
        set(
            &mut self.http.max_connections_per_address,
            &o.http_max_connections_per_address,
        );
        set(&mut self.http.max_streams, &o.http_max_streams);
        set(&mut self.http.streams_per_user, &o.http_streams_per_user);
        set(&mut self.http.allowed_origins, &o.http_allowed_origins);
        set(&mut m.host, &o.mqtt_host);
        set(&mut m.port, &o.mqtt_port);
        set(&mut m.client_id, &o.mqtt_client_id);
        if o.mqtt_username.is_some() {
            m.username.clone_from(&o.mqtt_username);
        }
        if o.mqtt_password.is_some() {
            m.password.clone_from(&o.mqtt_password);
        }
        set(&mut m.topics, &o.mqtt_topics);
        set(&mut self.storage.timescaledb, &o.timescaledb);
        set(&mut self.storage.retention_days, &o.retention_days);
        set(&mut self.storage.rollup_refresh_s, &o.rollup_refresh_s);
        set(&mut self.audit.anchor_log_s, &o.audit_anchor_log_s);
        set(&mut self.cluster.instance, &o.instance);
        set(&mut self.cluster.lease_ttl_s, &o.lease_ttl_s);
        let w = &mut self.webhooks;
        set(
            &mut w.allow_private_addresses,
            &o.webhooks_allow_private_addresses,
        );
        set(&mut w.retry_first_s, &o.webhooks_retry_first_s);
        set(&mut w.retry_max_s, &o.webhooks_retry_max_s);
        let e = &mut self.email;
        set(&mut e.smtp_host, &o.email_smtp_host);
        set(&mut e.smtp_port, &o.email_smtp_port);
        set(&mut e.tls, &o.email_tls);
        if o.email_username.is_some() {
            e.username.clone_from(&o.email_username);
        }
        if o.email_password.is_some() {
            e.password.clone_from(&o.email_password);
        }
        set(&mut e.from, &o.email_from);
        set(&mut e.public_url, &o.email_public_url);
        set(
            &mut self.storage.dead_letter_retention_days,
            &o.dead_letter_retention_days,
        );
        set(
            &mut self.ingest.dead_letters_per_device_per_hour,
            &o.dead_letters_per_device_per_hour,
        );
        set(&mut self.commands.rate_per_sec, &o.commands_rate_per_sec);
        if o.commands_mqtt_username.is_some() {
            self.commands
                .mqtt_username
                .clone_from(&o.commands_mqtt_username);
        }
        if o.commands_mqtt_password.is_some() {
            self.commands
                .mqtt_password
                .clone_from(&o.commands_mqtt_password);
        }
        if o.sim_clock.is_some() {
            self.sim_clock.clone_from(&o.sim_clock);
        }
        if o.rules_file.is_some() {
            self.rules_file.clone_from(&o.rules_file);
        }
        set(&mut self.dashboard.dir, &o.dashboard_dir);
        if o.dashboard_base_map.is_some() {
            self.dashboard.base_map.clone_from(&o.dashboard_base_map);
        }
        if o.dashboard_tile_url.is_some() {
            self.dashboard.tile_url.clone_from(&o.dashboard_tile_url);
        }
        self.ingest.limits = model::Limits {
            max_payload_bytes: self.limits.max_payload_bytes,
            max_array_len: self.limits.max_array_len,
            window: model::TimeWindow {
                max_future_secs: self.limits.max_future_secs,
                retention_days: self.storage.retention_days,
            },
        };
    }

    /// The clock the hub runs on: the wall clock, or the simulators' when configured.
    pub fn clock(&self) -> model::Clock {
        match self
            .sim_clock
            .as_deref()
            .map(simulators::clock::SimClock::parse)
        {
            Some(Ok(c)) => std::sync::Arc::new(move || c.now()),
            _ => model::wall_clock(),
        }
    }

    /// The rules, from `rules_file` or the defaults.
    pub fn rules(&self) -> anyhow::Result<rules::RulesConfig> {
        Ok(rules::RulesConfig::load(self.rules_file.as_deref())?)
    }

    /// The session secret: the configured one, or a random one for this run (`true`).
    pub fn session_secret(&self) -> anyhow::Result<(api::SessionSecret, bool)> {
        match &self.http.session_secret {
            Some(s) => api::SessionSecret::parse(s)
                .map(|secret| (secret, false))
                .map_err(|why| anyhow::anyhow!("http.session_secret {why}")),
            None => Ok((api::SessionSecret::generate(), true)),
        }
    }

    /// The HTTP server's bounds, with the connection cap kept under `open_files` (the
    /// process's open-file limit) so that ingestion and the database keep descriptors:
    /// the cap and whether it had to be lowered.
    pub fn http_limits(&self, open_files: u64) -> (api::HttpLimits, bool) {
        let h = &self.http;
        let room = open_files.saturating_sub(RESERVED_DESCRIPTORS).max(16) as usize;
        let cap = h.max_connections.min(room);
        let secs = std::time::Duration::from_secs;
        (
            api::HttpLimits {
                max_connections: cap,
                header_timeout: secs(h.header_timeout_s),
                body_timeout: secs(h.body_timeout_s),
                send_timeout: secs(h.send_timeout_s),
                max_per_address: h.max_connections_per_address.min(cap),
                max_streams: h.max_streams.min(cap / 2),
                streams_per_user: h.streams_per_user,
            },
            cap < h.max_connections,
        )
    }

    /// What only a running hub needs: the command dispatcher's own broker account when
    /// ingestion has one. The other commands (migrate, users, maintenance, report, ...)
    /// never connect to the broker and do not ask for it.
    pub fn check_serving(&self) -> anyhow::Result<()> {
        let (m, c) = (&self.ingest.mqtt, &self.commands);
        if c.mqtt_username.is_some() != c.mqtt_password.is_some() {
            bail!("commands.mqtt_username and commands.mqtt_password go together; set both or neither (CITYHUB_COMMANDS_MQTT_USERNAME, CITYHUB_COMMANDS_MQTT_PASSWORD; with the Debian package, the password in /etc/cityhub/cityhub.env)");
        }
        for (name, value) in [
            ("ingest.mqtt.username", &m.username),
            ("ingest.mqtt.password", &m.password),
            ("commands.mqtt_username", &c.mqtt_username),
            ("commands.mqtt_password", &c.mqtt_password),
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                bail!(
                    "{name} is empty: give the account's {} or leave it out",
                    if name.ends_with("password") {
                        "password"
                    } else {
                        "name"
                    }
                );
            }
            if !name.ends_with("password") && value.as_deref().is_some_and(|v| v.trim() != v) {
                bail!(
                    "{name} has spaces at its start or end; the broker would not know the account"
                );
            }
        }
        match (&m.username, &c.mqtt_username) {
            (Some(_), None) => bail!(
                "commands.mqtt_username is not set: the command dispatcher connects to the broker with an account of its own \
                 (the shipped broker configuration gives each connection its account's name as client id, so ingestion \
                 and the dispatcher cannot share one; see deploy/mosquitto/README.md)"
            ),
            (Some(ingest), Some(commands)) if ingest == commands => bail!(
                "commands.mqtt_username is ingest.mqtt.username (`{ingest}`): give the command dispatcher an account of its own \
                 (the shipped broker configuration gives each connection its account's name as client id, so two \
                 connections under one account throw each other out)"
            ),
            _ => {}
        }
        Ok(())
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if let Err(e) = self.database_url.parse::<store::PgConfig>() {
            bail!("database_url is not a PostgreSQL connection string ({e}); expected e.g. postgres://user@host:5432/cityhub");
        }
        if let Some(Err(e)) = self
            .database_read_url
            .as_ref()
            .map(|u| u.parse::<store::PgConfig>())
        {
            bail!("database_read_url is not a PostgreSQL connection string ({e}); expected e.g. postgres://user@replica:5432/cityhub");
        }
        self.session_secret()?;
        let h = &self.http;
        if !(16..=1_000_000).contains(&h.max_connections) {
            bail!(
                "http.max_connections must be between 16 and 1000000, not {}",
                h.max_connections
            );
        }
        for (name, value) in [
            (
                "http.max_connections_per_address",
                h.max_connections_per_address,
            ),
            ("http.max_streams", h.max_streams),
            ("http.streams_per_user", h.streams_per_user),
        ] {
            if value == 0 {
                bail!("{name} must be at least 1");
            }
        }
        for (name, value) in [
            ("http.header_timeout_s", h.header_timeout_s),
            ("http.body_timeout_s", h.body_timeout_s),
            ("http.send_timeout_s", h.send_timeout_s),
        ] {
            if !(1..=3600).contains(&value) {
                bail!("{name} must be between 1 and 3600 seconds, not {value}");
            }
        }
        for origin in &h.allowed_origins {
            let scheme_host = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            if !scheme_host.is_some_and(|rest| !rest.is_empty() && !rest.contains('/')) {
                bail!("http.allowed_origins: `{origin}` is not an origin; write it as https://host[:port], without a path");
            }
        }
        if h.send_timeout_s <= 15 {
            bail!(
                "http.send_timeout_s must be over 15 seconds: live events send a keep-alive every 15 s, and a client that reads them must not be cut off"
            );
        }
        if !(1..=86_400).contains(&self.audit.anchor_log_s) {
            bail!(
                "audit.anchor_log_s must be between 1 and 86400 seconds, not {}",
                self.audit.anchor_log_s
            );
        }
        if !(2..=60).contains(&self.cluster.lease_ttl_s) {
            bail!(
                "cluster.lease_ttl_s must be between 2 and 60 seconds, not {}",
                self.cluster.lease_ttl_s
            );
        }
        let instance = &self.cluster.instance;
        if instance.len() > 64 || instance.chars().any(|c| c.is_control() || c == '/') {
            bail!("cluster.instance is a name of at most 64 characters, without `/` or control characters");
        }
        let o = &self.open311;
        if o.reports_per_minute_per_key == 0 || o.reports_per_minute_per_address == 0 {
            bail!("open311.reports_per_minute_per_key and reports_per_minute_per_address must be at least 1");
        }
        self.webhooks.check().map_err(anyhow::Error::msg)?;
        self.email.check().map_err(anyhow::Error::msg)?;
        let e = &self.exports;
        if !(1..=64).contains(&e.max_running) {
            bail!(
                "exports.max_running must be between 1 and 64, not {} (each export holds a database connection)",
                e.max_running
            );
        }
        if e.per_user == 0 || e.per_tenant == 0 {
            bail!("exports.per_user and exports.per_tenant must be at least 1");
        }
        if !(60..=86_400).contains(&e.max_duration_s) {
            bail!(
                "exports.max_duration_s must be between 60 and 86400 seconds, not {}",
                e.max_duration_s
            );
        }
        let m = &self.ingest.mqtt;
        if m.host.trim().is_empty() {
            bail!("ingest.mqtt.host is empty; name the MQTT broker's host");
        }
        if m.port == 0 {
            bail!("ingest.mqtt.port must be between 1 and 65535");
        }
        if m.client_id.is_empty() || m.client_id.len() > 64 {
            bail!("ingest.mqtt.client_id must be 1 to 64 characters");
        }
        if m.topics.is_empty() {
            bail!("ingest.mqtt.topics is empty; the hub would receive nothing");
        }
        for t in &m.topics {
            if t.is_empty() || t.contains('#') && !t.ends_with('#') {
                bail!("ingest.mqtt.topics: `{t}` is not a valid MQTT topic filter");
            }
        }
        if m.username.is_some() != m.password.is_some() {
            bail!("ingest.mqtt.username and ingest.mqtt.password go together; set both or neither (CITYHUB_MQTT_USERNAME, CITYHUB_MQTT_PASSWORD; with the Debian package, the password in /etc/cityhub/cityhub.env and the configuration in /etc/cityhub/cityhub.toml: --config or CITYHUB_CONFIG)");
        }
        if !(1..=100_000).contains(&self.commands.rate_per_sec) {
            bail!(
                "commands.rate_per_sec must be between 1 and 100000, not {}",
                self.commands.rate_per_sec
            );
        }
        if !(10..=10_000).contains(&self.commands.poll_ms) {
            bail!(
                "commands.poll_ms must be between 10 and 10000, not {}",
                self.commands.poll_ms
            );
        }
        if !(1..=36_500).contains(&self.storage.retention_days) {
            bail!("storage.retention_days must be between 1 and 36500");
        }
        if !(1..=3600).contains(&self.storage.rollup_refresh_s) {
            bail!(
                "storage.rollup_refresh_s must be between 1 and 3600 seconds, not {}",
                self.storage.rollup_refresh_s
            );
        }
        if let Some(clock) = &self.sim_clock {
            if let Err(e) = simulators::clock::SimClock::parse(clock) {
                bail!("sim_clock: {e}");
            }
        }
        self.rules()?;
        if let Some(url) = &self.dashboard.tile_url {
            let templated = ["{z}", "{x}", "{y}"].iter().all(|p| url.contains(p));
            if !(url.starts_with("https://") || url.starts_with("http://")) || !templated {
                bail!("dashboard.tile_url must be an http(s) URL with {{z}}, {{x}} and {{y}}, e.g. https://tiles.example.org/{{z}}/{{x}}/{{y}}.png");
            }
        }
        if let Some(map) = &self.dashboard.base_map {
            if !map.is_file() {
                bail!(
                    "dashboard.base_map: {} is not a file; name a GeoJSON base map (cityhub simulate city writes map.geojson)",
                    map.display()
                );
            }
        }
        let l = &self.limits;
        if !(64..=16 * 1024 * 1024).contains(&l.max_payload_bytes) {
            bail!("limits.max_payload_bytes must be between 64 bytes and 16 MiB");
        }
        if l.max_array_len == 0 || l.max_future_secs < 0 {
            bail!(
                "limits.max_array_len must be at least 1 and limits.max_future_secs not negative"
            );
        }
        let i = &self.ingest;
        if i.batch_max_messages == 0 || i.batch_max_rows == 0 || i.batch_max_wait_ms == 0 {
            bail!("ingest.batch_max_messages, batch_max_rows and batch_max_wait_ms must be at least 1");
        }
        if i.max_buffered_bytes < l.max_payload_bytes {
            bail!("ingest.max_buffered_bytes must be at least limits.max_payload_bytes");
        }
        if i.dead_letter_bytes > 16 * 1024 * 1024 {
            bail!(
                "ingest.dead_letter_bytes must be at most 16 MiB, not {}",
                i.dead_letter_bytes
            );
        }
        if !(1..=36_500).contains(&self.storage.dead_letter_retention_days) {
            bail!(
                "storage.dead_letter_retention_days must be between 1 and 36500, not {}",
                self.storage.dead_letter_retention_days
            );
        }
        Ok(())
    }
}

/// Descriptors kept out of the HTTP connection cap's reach: the database connections
/// (ingestion's writers, the rules, the API's pool and exports, the change listener, the
/// refresher), the two MQTT connections, files being served, and a margin.
pub const RESERVED_DESCRIPTORS: u64 = 256;

fn set<T: Clone>(target: &mut T, value: &Option<T>) {
    if let Some(v) = value {
        *target = v.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order() {
        let mut c = Config::from_toml(
            r#"
            database_url = "postgres://file@db/cityhub"
            [ingest.mqtt]
            port = 1884
            client_id = "from-file"
            "#,
        )
        .unwrap();
        assert_eq!(c.ingest.mqtt.host, "127.0.0.1", "default kept");
        c.apply(&Overrides {
            mqtt_port: Some(1885),
            ..Default::default()
        });
        assert_eq!(c.ingest.mqtt.port, 1885, "flag over file");
        assert_eq!(c.ingest.mqtt.client_id, "from-file", "file over default");
        c.validate().unwrap();
    }

    #[test]
    fn bad_settings_are_explained() {
        let check = |toml: &str, fragment: &str| {
            let err = match Config::from_toml(toml) {
                Err(e) => format!("{e:#}"),
                Ok(mut c) => {
                    c.apply(&Overrides::default());
                    format!(
                        "{:#}",
                        c.validate().and_then(|_| c.check_serving()).unwrap_err()
                    )
                }
            };
            assert!(
                err.contains(fragment),
                "`{err}` should mention `{fragment}`"
            );
        };
        check(
            "database_url = 'not a url at all ='",
            "not a PostgreSQL connection string",
        );
        check("[storage]\nretention_days = 0", "retention_days");
        check("[http]\nmax_connections = 2", "http.max_connections");
        check(
            "[http]\nallowed_origins = ['hub.example/x']",
            "is not an origin",
        );
        check("[exports]\nmax_running = 0", "exports.max_running");
        check("[exports]\nper_user = 0", "exports.per_user");
        check("[http]\nsend_timeout_s = 10", "keep-alive every 15 s");
        check("[http]\nheader_timeout_s = 0", "http.header_timeout_s");
        check("[http]\nstreams_per_user = 0", "http.streams_per_user");
        check(
            "[storage]\ndead_letter_retention_days = 0",
            "storage.dead_letter_retention_days",
        );
        check("[storage]\ntimescaledb = 'maybe'", "unknown variant");
        check("[cluster]\nlease_ttl_s = 1", "cluster.lease_ttl_s");
        check("[cluster]\nlease_ttl_s = 61", "cluster.lease_ttl_s");
        check("[cluster]\ninstance = 'a/b'", "without `/`");
        check("[cluster]\ninstance = \"a\\tb\"", "cluster.instance");
        check(
            &format!("[cluster]\ninstance = '{}'", "i".repeat(65)),
            "at most 64",
        );
        check("database_read_url = 'not a url ='", "database_read_url");
        check("[ingest.mqtt]\nport = 0", "port");
        check("[ingest.mqtt]\nusername = 'hub'", "go together");
        check(
            "[ingest.mqtt]\nusername = 'hub'\npassword = 'p'",
            "commands.mqtt_username is not set",
        );
        check("[commands]\nmqtt_username = 'cmd'", "go together");
        check(
            "[ingest.mqtt]\nusername = 'hub'\npassword = 'p'\n[commands]\nmqtt_username = ''\nmqtt_password = ''",
            "commands.mqtt_username is empty",
        );
        check(
            "[ingest.mqtt]\nusername = 'hub'\npassword = ' '\n[commands]\nmqtt_username = 'cmd'\nmqtt_password = 'q'",
            "ingest.mqtt.password is empty",
        );
        check(
            "[ingest.mqtt]\nusername = 'hub'\npassword = 'p'\n[commands]\nmqtt_username = 'hub '\nmqtt_password = 'q'",
            "commands.mqtt_username has spaces",
        );
        // Only the hub itself dispatches commands: the other commands run without.
        for only_other_commands in [
            "[ingest.mqtt]\nusername = 'hub'\npassword = 'p'",
            "[commands]\nmqtt_username = 'cmd'",
            "[commands]\nmqtt_username = ''\nmqtt_password = ''",
        ] {
            let mut c = Config::from_toml(only_other_commands).unwrap();
            c.apply(&Overrides::default());
            c.validate().unwrap();
        }
        check(
            "[ingest.mqtt]\nusername = 'hub'\npassword = 'p'\n[commands]\nmqtt_username = 'hub'\nmqtt_password = 'p'",
            "an account of its own",
        );
        check(
            "[ingest.mqtt]\ntopics = ['city/#/x']",
            "not a valid MQTT topic filter",
        );
        check("[ingest]\nbatch_max_messages = 0", "at least 1");
        check("colour = 'blue'", "unknown field");
        check("sim_clock = '1,2'", "sim_clock");
        check(
            "[http]\nsession_secret = 'changeme'",
            "http.session_secret is too short",
        );
        check(
            &format!("[http]\nsession_secret = '{}'", "x".repeat(40)),
            "http.session_secret looks like a placeholder",
        );
    }

    #[test]
    fn the_connection_cap_stays_under_the_open_file_limit() {
        let c = Config::default();
        assert_eq!(c.http_limits(1 << 20).0.max_connections, 1024);
        assert!(!c.http_limits(1 << 20).1);
        let (limits, lowered) = c.http_limits(1024);
        assert_eq!((limits.max_connections, lowered), (768, true));
        assert_eq!(c.http_limits(100).0.max_connections, 16);
        assert_eq!(
            (limits.max_per_address, limits.max_streams),
            (256, 384),
            "streams keep to half the connections"
        );
    }

    #[test]
    fn connection_strings_are_shown_without_their_password() {
        for (url, shown) in [
            (
                "postgres://u:p%40ss@db:5432/x",
                "postgres://u:***@db:5432/x",
            ),
            (
                "postgresql://u:a:b@c@db/x?sslmode=require",
                "postgresql://u:***@db/x?sslmode=require",
            ),
            ("postgres://u@db/x", "postgres://u@db/x"),
            (
                "postgres://db/x?user=u&password=s3&sslmode=disable",
                "postgres://db/x?user=u&password=***&sslmode=disable",
            ),
            (
                "host=db user=u password=s3 dbname=x",
                "host=db user=u password=*** dbname=x",
            ),
            (
                "host=db password = 'a b' dbname=x",
                "host=db password=*** dbname=x",
            ),
            (
                r"host=db password='x\'Secret\\tail' dbname=x",
                "host=db password=*** dbname=x",
            ),
            (
                r"host=db password='unclosed\' dbname=x",
                "host=db password=***",
            ),
            ("host=db dbname=passwords", "host=db dbname=passwords"),
        ] {
            assert_eq!(hide_password(url), shown, "{url}");
        }
    }

    #[test]
    fn secrets_are_not_serialized() {
        let mut c = Config {
            database_url: "postgres://u:hunter2@db/x".into(),
            ..Config::default()
        };
        c.ingest.mqtt.password = Some("hunter3".into());
        c.commands.mqtt_password = Some("hunter5".into());
        c.http.session_secret = Some("hunter4-9f86d081884c7d659a2feaa0c55ad015".into());
        let shown = toml::to_string(&c).unwrap();
        assert!(
            shown.contains("database_url = \"postgres://u:***@db/x\""),
            "{shown}"
        );
        assert!(
            !["hunter2", "hunter3", "hunter4", "hunter5"]
                .iter()
                .any(|h| shown.contains(h)),
            "{shown}"
        );
    }
}

use chrono::{DateTime, Utc};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot connect to PostgreSQL at {target}: {}", pg_message(source))]
    Connect {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{context}: {}", pg_message(source))]
    Db {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("PostgreSQL {found} is too old: cityhub needs 15 or newer")]
    TooOld { found: String },
    #[error("TimescaleDB was required (storage.timescaledb = \"require\") but `CREATE EXTENSION timescaledb` failed: {0}")]
    TimescaleRequired(String),
    #[error("the database was set up for {stored} storage, but {wanted} was asked for; use a new database or change the setting")]
    PathMismatch {
        stored: &'static str,
        wanted: &'static str,
    },
    #[error("the database schema is at version {found}, newer than this cityhub ({known}); upgrade cityhub")]
    SchemaTooNew { found: i32, known: i32 },
    #[error("unknown tenant `{0}`")]
    UnknownTenant(String),
    #[error("the lease `{lease}` was taken over (held at epoch {epoch}; now {now}): this instance no longer writes under it")]
    Fenced {
        lease: String,
        epoch: i64,
        now: String,
    },
    #[error("no device with id {0}")]
    NoDevice(i32),
    #[error("no outage {0}")]
    NoOutage(i64),
    #[error("outage {id} is {state}, so it cannot be {action}")]
    OutageState {
        id: i64,
        state: model::OutageState,
        action: &'static str,
    },
    #[error("outage {0} is not shelved")]
    NotShelved(i64),
    #[error("an outage can only be shelved until a later time: {until} is not after {at}")]
    ShelveInPast {
        until: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    #[error("no work order {0}")]
    NoWorkOrder(i64),
    #[error("work order {id} is {from}; it cannot go to {to}")]
    BadTransition { id: i64, from: String, to: String },
    #[error("work order {0} cannot be assigned without naming who it is assigned to")]
    NoAssignee(i64),
    #[error("a report period must end after it starts: {to} is not after {from}")]
    BadPeriod {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
    #[error("unknown maintenance scope `{0}`: use device, cabinet, district or tenant")]
    UnknownScope(String),
    #[error("tenant `{tenant}` has no {scope} `{target}`")]
    UnknownTarget {
        tenant: String,
        scope: String,
        target: String,
    },
    #[error("a tenant-wide maintenance window must name its tenant `{tenant}` as the target, not `{target}`")]
    TenantTarget { tenant: String, target: String },
    #[error("a maintenance window must end after it starts: {ends_at} is not after {starts_at}")]
    BadWindow {
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
    },
    #[error("unknown command action `{0}`: use set_light, set_schedule or reboot")]
    UnknownAction(String),
    #[error("command {0} is already recorded; a command id is used once")]
    DuplicateCommand(String),
    #[error("a command must expire after it is issued: {expires_at} is not after {issued_at}")]
    ExpiresBeforeIssued {
        issued_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    },
    #[error("unknown acknowledgement status `{0}`: a device answers ok, rejected or failed")]
    UnknownAckStatus(String),
    #[error("unknown role `{0}`: use one of {roles}", roles = <model::Role as model::Vocabulary>::names().join(", "))]
    UnknownRole(String),
    #[error("the database holds the {what} `{name}`, which this hub does not know (a newer hub wrote it?)")]
    UnknownName { what: &'static str, name: String },
    #[error("`{0}` is not a usable user name: use 1 to 64 letters, digits and _ . @ -")]
    BadUsername(String),
    #[error("user `{0}` is crew and needs a team (the team whose work orders they move)")]
    CrewWithoutTeam(String),
    #[error("there is already a user `{0}`")]
    UserExists(String),
    #[error("there is no user `{0}`")]
    UnknownUser(String),
    #[error("user `{0}` also works for municipalities you do not administer; an administrator of all of them can change them")]
    UserBeyondTenants(String),
    #[error("`{0}` is not a usable token name: use 1 to 64 letters, digits and _ . -")]
    BadTokenName(String),
    #[error(
        "user `{username}` already has a live token named `{name}`; revoke it or pick another name"
    )]
    TokenExists { username: String, name: String },
    #[error("user `{username}` has no live token named `{name}`")]
    NoToken { username: String, name: String },
    #[error("no {scope} `{name}`")]
    NoCommandTarget { scope: String, name: String },
    #[error("{device} is a {kind}; {action} goes to lamps only")]
    NotALamp {
        device: String,
        kind: String,
        action: String,
    },
    #[error("the target reaches no device")]
    NoDevicesReached,
    #[error("the target reaches {reached} devices; one command may reach at most {max}: split it (by district or cabinet)")]
    BatchTooLarge { reached: usize, max: usize },
    #[error("{}", confirm_message(*reached, *confirm))]
    ConfirmMismatch { reached: i64, confirm: Option<i64> },
    #[error("no command batch {0}")]
    NoBatch(i64),
    #[error("no schedule {0}")]
    NoSchedule(i64),
    #[error("no webhook {0}")]
    NoWebhook(i64),
    #[error("webhook {0} was removed")]
    WebhookRemoved(i64),
    #[error("schedule {0} was already removed (or its override ended)")]
    ScheduleRemoved(i64),
    #[error("route {id} has a line that is not a list of [lon, lat] positions: {why}")]
    BadRouteLine { id: i32, why: String },
}

impl StoreError {
    pub(crate) fn db(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
        move |source| StoreError::Db { context, source }
    }

    /// Whether trying again later can succeed: the connection or the server went away,
    /// or the server is starting or shutting down. Anything else is a refusal of the data
    /// or a bug, and repeating it would block ingestion forever.
    pub fn is_retryable(&self) -> bool {
        let source = match self {
            StoreError::Connect { .. } => return true,
            StoreError::Db { source, .. } => source,
            _ => return false,
        };
        if source.is_closed() {
            return true;
        }
        match source.code() {
            None => true, // IO error, connection reset: no SQLSTATE
            Some(code) => {
                let c = code.code();
                // 08: connection exception, 57: operator intervention (admin shutdown,
                // cannot connect now), 53: insufficient resources, 40: serialization/deadlock.
                c.starts_with("08")
                    || c.starts_with("57")
                    || c.starts_with("53")
                    || c.starts_with("40")
            }
        }
    }

    /// The SQLSTATE of a database error, if any.
    pub fn sql_state(&self) -> Option<&str> {
        match self {
            StoreError::Db { source, .. } | StoreError::Connect { source, .. } => {
                source.code().map(|c| c.code())
            }
            _ => None,
        }
    }
}

/// Why a command reaching several devices was refused: it needs their number confirmed.
fn confirm_message(reached: i64, confirm: Option<i64>) -> String {
    match confirm {
        None => format!(
            "this command reaches {reached} devices; send it again with \"confirm\": {reached} to go ahead"
        ),
        Some(c) => format!(
            "this command reaches {reached} devices, not the {c} confirmed; check the target (preview it) and confirm {reached}"
        ),
    }
}

/// The server's own words where there are some (`db error` alone helps nobody).
fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut m = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                m.push_str(": ");
                m.push_str(detail);
            }
            m
        }
        None => {
            let mut m = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                m.push_str(": ");
                m.push_str(&s.to_string());
                source = s.source();
            }
            m
        }
    }
}

/// Reads column `idx` of `r`, a name of the domain's vocabulary ([`model::domain`]), as
/// its type: the store's edge, past which nobody handles the name as text.
pub(crate) fn named<T>(
    r: &tokio_postgres::Row,
    idx: usize,
    what: &'static str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, StoreError> {
    let name: &str = r.get(idx);
    parse(name).ok_or_else(|| StoreError::UnknownName {
        what,
        name: name.to_owned(),
    })
}

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

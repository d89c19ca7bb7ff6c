//! Why an input was refused. Every rejected message or array element is stored as a dead
//! letter with this reason; [`Rejection::code`] is the bounded label used in metrics.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum Rejection {
    #[error("bad topic: {0}")]
    BadTopic(String),
    #[error("payload is {size} bytes, over the limit of {limit} bytes")]
    Oversize { size: usize, limit: usize },
    #[error("payload is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("payload must be a JSON object or an array of objects, found {0}")]
    NotAnObject(&'static str),
    #[error("array has {count} objects, over the limit of {limit}")]
    TooManyObjects { count: usize, limit: usize },
    #[error("missing required field `ts`")]
    MissingTs,
    #[error("field `{field}`: {why}")]
    WrongType { field: &'static str, why: String },
    #[error("field `{field}`: {value} is out of range {range}")]
    OutOfRange {
        field: &'static str,
        value: f64,
        range: &'static str,
    },
    #[error("`ts` {ts} is more than {max_future_s} s in the future")]
    FutureTs { ts: String, max_future_s: i64 },
    #[error("`ts` {ts} is older than the retention of {retention_days} days")]
    ExpiredTs { ts: String, retention_days: i64 },
    #[error("unknown tenant `{0}`")]
    UnknownTenant(String),
    #[error("unknown device `{device}` in tenant `{tenant}`")]
    UnknownDevice { tenant: String, device: String },
    #[error("device `{device}` is registered as a {registered}, but the topic says {topic}")]
    KindMismatch {
        device: String,
        registered: &'static str,
        topic: &'static str,
    },
    #[error("devices do not publish on the `cmd` channel; it is hub -> device only")]
    CommandEcho,
    #[error("the database refused this message: {0}")]
    StorageRefused(String),
}

impl Rejection {
    /// A stable, bounded label for metrics and queries.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::BadTopic(_) => "bad_topic",
            Rejection::Oversize { .. } => "oversize",
            Rejection::InvalidJson(_) => "invalid_json",
            Rejection::NotAnObject(_) => "not_an_object",
            Rejection::TooManyObjects { .. } => "too_many_objects",
            Rejection::MissingTs => "missing_ts",
            Rejection::WrongType { .. } => "wrong_type",
            Rejection::OutOfRange { .. } => "out_of_range",
            Rejection::FutureTs { .. } => "future_ts",
            Rejection::ExpiredTs { .. } => "expired_ts",
            Rejection::UnknownTenant(_) => "unknown_tenant",
            Rejection::UnknownDevice { .. } => "unknown_device",
            Rejection::KindMismatch { .. } => "kind_mismatch",
            Rejection::CommandEcho => "command_echo",
            Rejection::StorageRefused(_) => "storage_refused",
        }
    }

    pub const CODES: [&'static str; 15] = [
        "bad_topic",
        "oversize",
        "invalid_json",
        "not_an_object",
        "too_many_objects",
        "missing_ts",
        "wrong_type",
        "out_of_range",
        "future_ts",
        "expired_ts",
        "unknown_tenant",
        "unknown_device",
        "kind_mismatch",
        "command_echo",
        "storage_refused",
    ];
}

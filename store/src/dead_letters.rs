//! What ingestion refused, kept for people to read and bounded on disk: each dead letter
//! keeps a prefix of its payload with the size and SHA-256 of all of it
//! ([`crate::ReadingBatch::push_dead_letter`]; migration 14), and dead letters older than
//! their retention are deleted ([`Db::prune_dead_letters`]).

use crate::handles::Admin;
use chrono::{DateTime, Utc};

use crate::StoreError;

/// Migration 14. Rows from before it keep NULL: their payload is whole.
pub const MIGRATION: &str = r#"
ALTER TABLE dead_letters
    -- The size of the refused payload; `payload` holds at most a prefix of it.
    ADD COLUMN size integer,
    -- SHA-256 of the whole refused payload.
    ADD COLUMN sha256 bytea;
"#;

/// Dead letters deleted per statement, so pruning a large backlog never holds a long lock
/// or a huge transaction.
const PRUNE_CHUNK: i64 = 10_000;

impl Admin {
    /// Deletes dead letters received before `before`; returns how many.
    pub async fn prune_dead_letters(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let n = self
                .client()
                .execute(
                    "DELETE FROM dead_letters WHERE id IN (
                         SELECT id FROM dead_letters WHERE received_at < $1 LIMIT $2)",
                    &[&before, &PRUNE_CHUNK],
                )
                .await
                .map_err(StoreError::db("deleting old dead letters"))?;
            total += n;
            if n < PRUNE_CHUNK as u64 {
                return Ok(total);
            }
        }
    }
}

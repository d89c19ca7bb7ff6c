//! What the hub remembers of MQTT beyond the readings:
//!
//! - which broker sessions it has had, so that a broker answering without one it expected
//!   is noticed (messages queued for the hub may have been discarded upstream). Kept in
//!   `settings` (`mqtt_session:<account>/<client id>` -> when first seen), one row per hub
//!   connection.
//! - the digest of the last message recorded per topic whose retained copy a broker could
//!   send again (`mqtt_topic_digests`, migration 13): a broker sends a topic's retained
//!   message to every new subscription, so at every start of the hub. A retained delivery
//!   whose bytes are those last recorded on its topic is the same message again and is
//!   acknowledged without being recorded a second time.

use crate::handles::{Admin, Ingestion};
use std::collections::HashMap;

use model::Timestamp;
use sha2::{Digest, Sha256};

use crate::{Db, StoreError};

/// Migration 13.
pub const MIGRATION: &str = r#"
-- Per topic, the SHA-256 of the last message recorded that the broker could deliver again
-- as retained: every `status`, every message that was dead-lettered, every retained
-- delivery. Written in the transaction that records the message.
CREATE TABLE mqtt_topic_digests (
    topic text PRIMARY KEY,
    sha256 bytea NOT NULL CHECK (length(sha256) = 32),
    received_at timestamptz NOT NULL
);
"#;

impl Admin {
    /// Forgets the digests of topics last recorded before `before` (the dead letters'
    /// retention): a retained message older than that is recorded once more if a broker
    /// still holds it. Returns how many were forgotten.
    pub async fn prune_topic_digests(
        &self,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError> {
        self.client()
            .execute(
                "DELETE FROM mqtt_topic_digests WHERE received_at < $1",
                &[&before],
            )
            .await
            .map_err(StoreError::db("forgetting old topic digests"))
    }
}

/// The SHA-256 of a payload, as kept per topic and with dead letters.
pub fn payload_digest(payload: &[u8]) -> [u8; 32] {
    Sha256::digest(payload).into()
}

/// The newest digest noted per topic in a batch, with when it was received.
pub type TopicDigests = HashMap<String, ([u8; 32], Timestamp)>;

/// Writes `digests` in the batch's transaction; an older receipt never replaces a newer
/// one (two writers may commit out of order).
pub(crate) async fn note_digests(
    tx: &tokio_postgres::Transaction<'_>,
    digests: &TopicDigests,
) -> Result<(), StoreError> {
    if digests.is_empty() {
        return Ok(());
    }
    let mut topics: Vec<&String> = digests.keys().collect();
    // A fixed order keeps concurrent writers from deadlocking on the same rows.
    topics.sort_unstable();
    let sha: Vec<&[u8]> = topics.iter().map(|t| &digests[*t].0[..]).collect();
    let at: Vec<_> = topics.iter().map(|t| digests[*t].1.to_datetime()).collect();
    tx.execute(
        "INSERT INTO mqtt_topic_digests AS d (topic, sha256, received_at)
         SELECT * FROM unnest($1::text[], $2::bytea[], $3::timestamptz[])
         ON CONFLICT (topic) DO UPDATE SET sha256 = excluded.sha256, received_at = excluded.received_at
         WHERE d.received_at <= excluded.received_at",
        &[&topics, &sha, &at],
    )
    .await
    .map_err(StoreError::db("recording the topics' last messages"))?;
    Ok(())
}

/// The name the hub's record of its broker session goes by: the broker `account` when it
/// has one (the shipped broker names a session after its account, whatever client id is
/// sent), else the client id. So a new client id on the same account still expects the
/// session the broker should hold; on a broker that names sessions by client id, changing
/// it is reported once as a lost session, which is what it is.
pub fn session_key(account: Option<&str>, client_id: &str) -> String {
    match account.filter(|a| !a.is_empty()) {
        Some(account) => format!("account:{account}"),
        None => format!("client:{client_id}"),
    }
}

fn setting(session: &str) -> String {
    format!("mqtt_session:{session}")
}

fn lost_setting(session: &str) -> String {
    format!("mqtt_session_lost:{session}")
}

impl Ingestion {
    /// Whether the hub has had a persistent session under `session` before (so a broker
    /// should still hold it).
    pub async fn mqtt_session_known(&self, session: &str) -> Result<bool, StoreError> {
        Ok(self
            .setting(&setting(session), "reading the hub's MQTT sessions")
            .await?
            .is_some())
    }

    /// When the broker was last found not to hold the session `session` (Unix seconds),
    /// if ever.
    pub async fn mqtt_session_lost_at(&self, session: &str) -> Result<Option<i64>, StoreError> {
        let value = self
            .setting(
                &lost_setting(session),
                "reading when the hub's MQTT session was lost",
            )
            .await?;
        Ok(value.and_then(|v| v.parse().ok()))
    }

    /// Records that the broker was found not to hold the session `session` at `at` (Unix
    /// seconds), so that a restarted hub still reports it.
    pub async fn note_mqtt_session_lost(&self, session: &str, at: i64) -> Result<(), StoreError> {
        self.client()
            .execute(
                "INSERT INTO settings (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                &[&lost_setting(session), &at.to_string()],
            )
            .await
            .map_err(StoreError::db(
                "recording the loss of the hub's MQTT session",
            ))?;
        Ok(())
    }

    /// Records that the broker holds a persistent session under `session`.
    pub async fn note_mqtt_session(&self, session: &str) -> Result<(), StoreError> {
        self.client()
            .execute(
                "INSERT INTO settings (key, value) VALUES ($1, now()::text)
                 ON CONFLICT (key) DO NOTHING",
                &[&setting(session)],
            )
            .await
            .map_err(StoreError::db("recording the hub's MQTT session"))?;
        Ok(())
    }
}

impl Db {
    /// The value of the setting `key`, if set.
    async fn setting(
        &self,
        key: &str,
        context: &'static str,
    ) -> Result<Option<String>, StoreError> {
        let row = self
            .client()
            .query_opt("SELECT value FROM settings WHERE key = $1", &[&key])
            .await
            .map_err(StoreError::db(context))?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Answers a trivial query: the database is there and has a connection to spare.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.client()
            .simple_query("SELECT 1")
            .await
            .map_err(StoreError::db("checking the database"))?;
        Ok(())
    }
}

impl Admin {
    /// Forgets the session `session` and its loss: the next connection is the first, and a
    /// session the broker does not hold then is no loss (the session was discarded on
    /// purpose, as the ingestion benchmark does between its workloads).
    pub async fn forget_mqtt_session(&self, session: &str) -> Result<(), StoreError> {
        self.client()
            .execute(
                "DELETE FROM settings WHERE key = $1 OR key = $2",
                &[&setting(session), &lost_setting(session)],
            )
            .await
            .map_err(StoreError::db("forgetting the hub's MQTT session"))?;
        Ok(())
    }
}

impl Ingestion {
    /// The digest of the last message recorded on each of `topics` that has one.
    pub async fn topic_digests(
        &self,
        topics: &[&str],
    ) -> Result<HashMap<String, [u8; 32]>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT topic, sha256 FROM mqtt_topic_digests WHERE topic = ANY($1)",
                &[&topics],
            )
            .await
            .map_err(StoreError::db("reading the topics' last messages"))?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let sha: Vec<u8> = r.get(1);
                Some((r.get(0), sha.try_into().ok()?))
            })
            .collect())
    }
}

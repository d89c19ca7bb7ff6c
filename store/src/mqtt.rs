//! What the hub remembers of MQTT beyond the readings:
//!
//! - which broker sessions it has had, so that a broker answering without one it expected
//!   is noticed (messages queued for the hub may have been discarded upstream). Kept in
//!   `settings` (`mqtt_session:account:<account>`, or `mqtt_session:client:<client id>`
//!   without an account -> when first seen), one row per hub connection.
//! - the digests of the last messages recorded per topic whose retained copy a broker
//!   could send again (`mqtt_topic_digests`, migrations 13 and 15): a broker sends a
//!   topic's retained message to every new subscription, so at every start of the hub. A
//!   retained delivery whose bytes are those of one of the last [`DIGESTS_PER_TOPIC`]
//!   messages recorded on its topic is a message recorded before, acknowledged without
//!   being recorded a second time. Several, not one: a device may publish `online`
//!   retained and later `offline` without retaining it, and the broker then still holds the
//!   older `online`; replayed as new, it would say a device that is gone is online.

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

impl Db {
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

/// Migration 15: the digests of a topic's earlier messages, newest first.
pub const EARLIER_DIGESTS: &str = r#"
ALTER TABLE mqtt_topic_digests
    ADD COLUMN earlier bytea[] NOT NULL DEFAULT '{}';
"#;

/// Digests kept per topic: the last message recorded and this many minus one before it.
pub const DIGESTS_PER_TOPIC: usize = 8;

/// The SHA-256 of a payload, as kept per topic and with dead letters.
pub fn payload_digest(payload: &[u8]) -> [u8; 32] {
    Sha256::digest(payload).into()
}

/// The newest digest noted per topic in a batch, with when it was received.
pub type TopicDigests = HashMap<String, ([u8; 32], Timestamp)>;

/// Writes `digests` in the batch's transaction: each becomes its topic's last, the one it
/// replaces joins the earlier ones (the newest [`DIGESTS_PER_TOPIC`] - 1 kept). An older
/// receipt never replaces a newer one (two writers may commit out of order).
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
         ON CONFLICT (topic) DO UPDATE SET
             sha256 = excluded.sha256,
             received_at = excluded.received_at,
             earlier = CASE WHEN d.sha256 = excluded.sha256 THEN d.earlier
                 ELSE (array_prepend(d.sha256, array_remove(d.earlier, excluded.sha256)))[1:$4]
             END
         WHERE d.received_at <= excluded.received_at",
        &[&topics, &sha, &at, &(DIGESTS_PER_TOPIC as i32 - 1)],
    )
    .await
    .map_err(StoreError::db("recording the topics' last messages"))?;
    Ok(())
}

fn setting(session: &str) -> String {
    format!("mqtt_session:{session}")
}

fn lost_setting(session: &str) -> String {
    format!("mqtt_session_lost:{session}")
}

impl Db {
    /// Whether the hub has had a persistent session under `session` before (so a broker
    /// should still hold it).
    pub async fn mqtt_session_known(&self, session: &str) -> Result<bool, StoreError> {
        Ok(self
            .setting(&setting(session), "reading the hub's MQTT sessions")
            .await?
            .is_some())
    }

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

    /// Answers a trivial query: the database is there and has a connection to spare.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.client()
            .simple_query("SELECT 1")
            .await
            .map_err(StoreError::db("checking the database"))?;
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
    /// The digests of the last messages recorded on each of `topics` that has any, the
    /// newest first.
    pub async fn topic_digests(
        &self,
        topics: &[&str],
    ) -> Result<HashMap<String, Vec<[u8; 32]>>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT topic, sha256, earlier FROM mqtt_topic_digests WHERE topic = ANY($1)",
                &[&topics],
            )
            .await
            .map_err(StoreError::db("reading the topics' last messages"))?;
        Ok(rows
            .iter()
            .map(|r| {
                let last: Vec<u8> = r.get(1);
                let earlier: Vec<Vec<u8>> = r.get(2);
                let digests = std::iter::once(last)
                    .chain(earlier)
                    .filter_map(|d| d.try_into().ok())
                    .collect();
                (r.get(0), digests)
            })
            .collect())
    }
}

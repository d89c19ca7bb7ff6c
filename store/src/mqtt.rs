//! What the hub remembers of its MQTT sessions: which broker sessions it has had, so that
//! a broker answering without one it expected is noticed (messages queued for the hub may
//! have been discarded upstream).
//!
//! Kept in `settings` (`mqtt_session:<account>/<client id>` -> when first seen), one row per
//! hub connection: no migration, nothing on the ingest path.

use crate::{Db, StoreError};

fn setting(session: &str) -> String {
    format!("mqtt_session:{session}")
}

impl Db {
    /// Whether the hub has had a persistent session under `session` before (so a broker
    /// should still hold it).
    pub async fn mqtt_session_known(&self, session: &str) -> Result<bool, StoreError> {
        let row = self
            .client()
            .query_opt(
                "SELECT 1 FROM settings WHERE key = $1",
                &[&setting(session)],
            )
            .await
            .map_err(StoreError::db("reading the hub's MQTT sessions"))?;
        Ok(row.is_some())
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

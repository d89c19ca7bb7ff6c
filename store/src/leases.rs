//! Leases: what must run once, whichever of several hub instances runs it.
//!
//! A lease is a row of `leases`: its name (`stream`, `commands`, `rollups`, ...), the
//! instance holding it, an epoch and an expiry, all on the database's clock. An instance
//! takes a lease that is free or expired, which raises its epoch; it keeps it by renewing
//! before the expiry; it gives it back when it stops. Nobody takes a lease that has not
//! expired, so an instance that is paused or cut off is replaced only once its lease has
//! run out, and then with a greater epoch.
//!
//! That alone does not stop a paused holder that wakes up from writing what it decided
//! before it noticed: a [`Fence`] does. A write made under a lease starts its transaction
//! by locking the lease row for key share and finding its own holder and epoch there
//! ([`Fence::check`]); otherwise the transaction is refused with
//! [`StoreError::Fenced`] and rolls back. The epoch is part of a key (`UNIQUE (name,
//! epoch)`), so a takeover, which changes it, waits for the fenced transactions in
//! flight, and every one after it is refused; a renewal changes no key, so it neither
//! waits for them nor holds them up, however long they take.

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use crate::{Db, StoreError};

/// Migration 17.
pub const MIGRATION: &str = r#"
CREATE TABLE leases (
    name text PRIMARY KEY CHECK (name ~ '^[a-z0-9_/-]{1,64}$'),
    holder text NOT NULL,
    epoch bigint NOT NULL CHECK (epoch > 0),
    expires_at timestamptz NOT NULL,
    taken_at timestamptz NOT NULL,
    renewed_at timestamptz NOT NULL,
    -- How its holder does the work, where another holder must do it the same way (the
    -- stream: its MQTT session).
    detail text,
    -- Makes the epoch a key: changing it (a takeover) conflicts with the fences' FOR KEY
    -- SHARE, changing anything else (a renewal) does not.
    UNIQUE (name, epoch)
);
"#;

/// A lease held: by whom, under which epoch, until when (the database's clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub holder: String,
    pub epoch: i64,
    pub expires_at: DateTime<Utc>,
}

impl Lease {
    /// The fence of writes made under this lease.
    pub fn fence(&self) -> Fence {
        Fence {
            name: self.name.clone(),
            holder: self.holder.clone(),
            epoch: self.epoch,
        }
    }
}

/// What writes made under a lease prove in their transaction: that the lease is still
/// `holder`'s, at `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub name: String,
    pub holder: String,
    pub epoch: i64,
}

impl Fence {
    /// Locks the lease row for key share and refuses when it is no longer this holder's
    /// at this epoch. Call first in the transaction it guards: a takeover then waits for
    /// that transaction, and none of this holder's commits after a takeover.
    pub async fn check<C: GenericClient>(&self, client: &C) -> Result<(), StoreError> {
        let row = client
            .query_opt(
                "SELECT holder, epoch FROM leases WHERE name = $1 FOR KEY SHARE",
                &[&self.name],
            )
            .await
            .map_err(StoreError::db("checking a lease"))?;
        match row.map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1))) {
            Some((holder, epoch)) if holder == self.holder && epoch == self.epoch => Ok(()),
            now => Err(StoreError::Fenced {
                lease: self.name.clone(),
                epoch: self.epoch,
                now: now
                    .map(|(h, e)| format!("{h} at epoch {e}"))
                    .unwrap_or_else(|| "nobody".into()),
            }),
        }
    }
}

/// What an attempt to take a lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// It is ours now.
    Held(Lease),
    /// Another instance holds it, until `expires_at`.
    Busy(Lease),
}

fn lease(r: &tokio_postgres::Row) -> Lease {
    Lease {
        name: r.get(0),
        holder: r.get(1),
        epoch: r.get(2),
        expires_at: r.get(3),
    }
}

impl Db {
    /// Takes lease `name` for `holder` for `ttl_ms`, if it is free or has expired: its
    /// epoch grows by one. A lease `holder` already has is renewed instead, at its epoch.
    pub async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<Taken, StoreError> {
        // Another's lease that has not expired is busy, read without a lock: the attempt
        // below locks the row as a takeover does, so it would wait for the holder's
        // fenced transactions, and hold up the ones after them, every time it is made.
        let now = self
            .client()
            .query_opt(
                "SELECT name, holder, epoch, expires_at, expires_at > now() FROM leases
                 WHERE name = $1",
                &[&name],
            )
            .await
            .map_err(StoreError::db("reading a lease"))?;
        if let Some(r) = now.filter(|r| r.get::<_, String>(1) != holder && r.get::<_, bool>(4)) {
            return Ok(Taken::Busy(lease(&r)));
        }
        let taken = self
            .client()
            .query_opt(
                "INSERT INTO leases AS l (name, holder, epoch, expires_at, taken_at, renewed_at)
                 VALUES ($1, $2, 1, now() + make_interval(secs => $3::float8 / 1000), now(), now())
                 ON CONFLICT (name) DO UPDATE
                 SET holder = $2,
                     epoch = CASE WHEN l.holder = $2 THEN l.epoch ELSE l.epoch + 1 END,
                     expires_at = excluded.expires_at,
                     taken_at = CASE WHEN l.holder = $2 THEN l.taken_at ELSE now() END,
                     renewed_at = now()
                 WHERE l.holder = $2 OR l.expires_at <= now()
                 RETURNING name, holder, epoch, expires_at",
                &[&name, &holder, &(ttl_ms as f64)],
            )
            .await
            .map_err(StoreError::db("taking a lease"))?;
        if let Some(r) = taken {
            return Ok(Taken::Held(lease(&r)));
        }
        let r = self
            .client()
            .query_one(
                "SELECT name, holder, epoch, expires_at FROM leases WHERE name = $1",
                &[&name],
            )
            .await
            .map_err(StoreError::db("reading a lease"))?;
        Ok(Taken::Busy(lease(&r)))
    }

    /// Renews `held` for `ttl_ms` from now: `None` when it is no longer held's (another
    /// instance took it after it expired).
    pub async fn renew_lease(
        &self,
        held: &Lease,
        ttl_ms: i64,
    ) -> Result<Option<Lease>, StoreError> {
        let row = self
            .client()
            .query_opt(
                "UPDATE leases
                 SET expires_at = now() + make_interval(secs => $4::float8 / 1000), renewed_at = now()
                 WHERE name = $1 AND holder = $2 AND epoch = $3
                 RETURNING name, holder, epoch, expires_at",
                &[&held.name, &held.holder, &held.epoch, &(ttl_ms as f64)],
            )
            .await
            .map_err(StoreError::db("renewing a lease"))?;
        Ok(row.as_ref().map(lease))
    }

    /// Gives `held` back: it expires now, so that another instance may take it at once.
    pub async fn release_lease(&self, held: &Lease) -> Result<(), StoreError> {
        self.client()
            .execute(
                "UPDATE leases SET expires_at = now()
                 WHERE name = $1 AND holder = $2 AND epoch = $3",
                &[&held.name, &held.holder, &held.epoch],
            )
            .await
            .map_err(StoreError::db("releasing a lease"))?;
        Ok(())
    }

    /// What the lease's holders record of how they do its work ([`Db::set_lease_detail`]);
    /// read by a new holder before it records its own, it is the previous holder's.
    pub async fn lease_detail(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .client()
            .query_opt("SELECT detail FROM leases WHERE name = $1", &[&name])
            .await
            .map_err(StoreError::db("reading a lease"))?;
        Ok(row.and_then(|r| r.get(0)))
    }

    /// Records how `held`'s holder does its work (while it still holds it).
    pub async fn set_lease_detail(&self, held: &Lease, detail: &str) -> Result<(), StoreError> {
        self.client()
            .execute(
                "UPDATE leases SET detail = $4 WHERE name = $1 AND holder = $2 AND epoch = $3",
                &[&held.name, &held.holder, &held.epoch, &detail],
            )
            .await
            .map_err(StoreError::db("recording a lease's detail"))?;
        Ok(())
    }

    /// Every lease, by name: who holds it and until when.
    pub async fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT name, holder, epoch, expires_at FROM leases ORDER BY name",
                &[],
            )
            .await
            .map_err(StoreError::db("reading the leases"))?;
        Ok(rows.iter().map(lease).collect())
    }
}

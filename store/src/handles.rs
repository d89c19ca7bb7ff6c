//! What each part of the hub may do with the database: a handle per consumer.
//!
//! A [`Db`] is one connection and offers only what every holder needs (its storage path,
//! whether it is closed, a ping). The statements live on the handles, one per consumer,
//! each a connection that offers that consumer's statements and no others:
//!
//! | handle | held by | its statements |
//! |---|---|---|
//! | [`Ingestion`] | `ingest` | committing readings, the latest state, the device registry's changes, the MQTT session's records |
//! | [`Detection`] | `rules` | the rule assets, outages as decided and how far they judged, the rows stored after that, answers to commands, work orders closed by recovery, maintenance windows |
//! | [`Dispatch`] | `control` | commands due, sent, expired and answered; overrides that ended |
//! | [`Reads`] | `api` | tenant-scoped pages, history, the map's state, reports, exports, feeds |
//! | [`Actions`] | `api` | what people do: outages, work orders, commands, schedules, citizen reports |
//! | [`Access`] | `api` | sign-in, sessions, tokens and the users an admin manages |
//! | [`Notifier`] | `notify` | webhook messages due, delivered and failed |
//! | [`Admin`] | the `cityhub` command line | users, tokens, inventory, audit verification, upkeep, reports across tenants |
//!
//! A handle is made by connecting ([`Reads::connect`]) or from a connection
//! (`Reads::from(db)`), and gives its connection back ([`Reads::into_db`]) so that a pool
//! can hand it out again as another handle. Each dereferences to its [`Db`].

use std::ops::{Deref, DerefMut};

use crate::{Db, StoreError};

/// What every handle is: a connection under another name, which a pool can keep as a
/// [`Db`] and hand out again as any handle.
pub trait Handle: From<Db> + DerefMut<Target = Db> {
    /// The connection.
    fn into_db(self) -> Db;
}

macro_rules! handle {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name(Db);

        impl $name {
            /// Connects to a database that [`Db::migrate`] has set up.
            pub async fn connect(url: &str) -> Result<$name, StoreError> {
                Db::connect(url).await.map($name)
            }

            /// The connection, for a handle of another kind.
            pub fn into_db(self) -> Db {
                self.0
            }
        }

        impl Handle for $name {
            fn into_db(self) -> Db {
                self.0
            }
        }

        impl From<Db> for $name {
            fn from(db: Db) -> $name {
                $name(db)
            }
        }

        impl Deref for $name {
            type Target = Db;
            fn deref(&self) -> &Db {
                &self.0
            }
        }

        impl DerefMut for $name {
            fn deref_mut(&mut self) -> &mut Db {
                &mut self.0
            }
        }
    };
}

handle!(
    /// Ingestion's connection: readings committed, the latest state, the registry's
    /// changes and the records of the hub's MQTT session.
    Ingestion
);
handle!(
    /// The rules engine's connection: what it loads, decides and closes.
    Detection
);
handle!(
    /// The command dispatcher's connection.
    Dispatch
);
handle!(
    /// The API's reads, each limited to the caller's tenants.
    Reads
);
handle!(
    /// What people do through the API, limited to their tenants and audited in the same
    /// transaction.
    Actions
);
handle!(
    /// Signing in: credentials, sessions, API tokens, and the users an admin manages.
    Access
);
handle!(
    /// The deliverer of notifications: messages due, and how each attempt went.
    Notifier
);
handle!(
    /// The command line and upkeep: users and tokens, inventory, audit verification,
    /// partitions and retention, reports across tenants.
    Admin
);

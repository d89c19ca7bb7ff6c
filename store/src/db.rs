//! A connection to the database and the statements run on it.

use crate::handles::{Admin, Ingestion};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures_util::SinkExt;
use model::{RecordType, Timestamp};
use tokio_postgres::types::ToSql;
use tokio_postgres::{error::SqlState, Client, Config, NoTls, Row, Statement};
use tracing::{debug, info, warn};

use crate::batch::{telemetry_json, LatestUpdates, ReadingBatch, DEAD_LETTER_COLUMNS};
use crate::copy::CopyBuffer;
use crate::partitions;
use crate::schema::{self, StoragePath};
use crate::StoreError;

/// Whether to use TimescaleDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TimescaleMode {
    /// Use it when `CREATE EXTENSION timescaledb` succeeds, native partitioning otherwise.
    #[default]
    Auto,
    /// Fail when the extension is not available.
    Require,
    /// Never use it.
    Off,
}

/// What one committed batch wrote.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WriteOutcome {
    /// New rows per record type, indexed by `RecordType::index`.
    pub inserted: [u64; 7],
    /// Rows that were already stored (redeliveries); not written again.
    pub duplicates: u64,
    pub dead_letters: u64,
}

/// A database session. Cheap to create; hold one per task that writes.
pub struct Db {
    client: Client,
    path: StoragePath,
    known_days: BTreeSet<i64>,
    /// Statements prepared on this connection, by their SQL ([`Db::query_cached`]).
    statements: Mutex<HashMap<String, Statement>>,
    /// The newest `complete_before` of the lamp rollups this connection has read, in Unix
    /// microseconds (`i64::MIN`: none yet, `i64::MAX`: infinity). It only grows.
    rolled_up_before: AtomicI64,
    /// The lease this session's guarded writes are made under ([`Db::set_fence`]).
    fence: Option<crate::leases::Fence>,
}

/// Statements a connection keeps prepared, at most; past it the cache starts afresh.
const MAX_STATEMENTS: usize = 64;

/// A safe description of where a connection string points (never the password).
pub fn describe_target(url: &str) -> String {
    match url.parse::<Config>() {
        Ok(c) => {
            let host = c
                .get_hosts()
                .first()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(s) => s.clone(),
                    tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                })
                .unwrap_or_else(|| "localhost".into());
            let port = c.get_ports().first().copied().unwrap_or(5432);
            let db = c.get_dbname().unwrap_or("(default)");
            format!("{host}:{port}/{db}")
        }
        Err(_) => "(unparsable connection string)".into(),
    }
}

async fn open(url: &str) -> Result<Client, StoreError> {
    let target = describe_target(url);
    let config: Config = url.parse().map_err(|source| StoreError::Connect {
        target: target.clone(),
        source,
    })?;
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|source| StoreError::Connect { target, source })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            debug!(message = "Database connection ended.", %error);
        }
    });
    Ok(client)
}

impl Db {
    /// Connects to a database that `migrate` has set up.
    pub async fn connect(url: &str) -> Result<Db, StoreError> {
        let client = open(url).await?;
        let row = client
            .query_opt("SELECT value FROM settings WHERE key = 'storage_path'", &[])
            .await
            .map_err(StoreError::db(
                "reading the storage path (has `cityhub migrate` run?)",
            ))?;
        let path = match row.as_ref().map(|r| r.get::<_, String>(0)).as_deref() {
            Some("timescaledb") => StoragePath::TimescaleDb,
            _ => StoragePath::Partitioned,
        };
        let mut db = Db {
            client,
            path,
            known_days: BTreeSet::new(),
            statements: Mutex::default(),
            rolled_up_before: AtomicI64::new(i64::MIN),
            fence: None,
        };
        if path == StoragePath::Partitioned {
            db.known_days = partitions::existing_days(&db.client).await?;
        }
        Ok(db)
    }

    /// Creates or upgrades the schema, then connects. With `retention_days` (the hub's
    /// own start) it also keeps the readings for that many days: TimescaleDB's policy, or
    /// the coming week's partitions made and the days past it dropped. Without it nothing
    /// is dropped: a command run with another configuration never deletes readings.
    pub async fn migrate(
        url: &str,
        mode: TimescaleMode,
        retention_days: Option<i64>,
    ) -> Result<Db, StoreError> {
        let mut client = open(url).await?;
        let version: i32 = client
            .query_one("SHOW server_version_num", &[])
            .await
            .map_err(StoreError::db("reading the server version"))?
            .get::<_, String>(0)
            .parse()
            .unwrap_or(0);
        if version < 150_000 {
            return Err(StoreError::TooOld {
                found: version.to_string(),
            });
        }
        let tx = client
            .transaction()
            .await
            .map_err(StoreError::db("starting the migration"))?;
        tx.execute("SELECT pg_advisory_xact_lock(727274)", &[])
            .await
            .map_err(StoreError::db("taking the migration lock"))?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version integer PRIMARY KEY,
                 name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(StoreError::db("creating schema_migrations"))?;
        let applied: i32 = tx
            .query_one(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                &[],
            )
            .await
            .map_err(StoreError::db("reading the schema version"))?
            .get(0);
        let path = if applied == 0 {
            choose_path(&tx, mode).await?
        } else {
            let stored: String = tx
                .query_one("SELECT value FROM settings WHERE key = 'storage_path'", &[])
                .await
                .map_err(StoreError::db("reading the storage path"))?
                .get(0);
            let path = if stored == "timescaledb" {
                StoragePath::TimescaleDb
            } else {
                StoragePath::Partitioned
            };
            match (mode, path) {
                (TimescaleMode::Require, StoragePath::Partitioned)
                | (TimescaleMode::Off, StoragePath::TimescaleDb) => {
                    return Err(StoreError::PathMismatch {
                        stored: path.as_str(),
                        wanted: if mode == TimescaleMode::Off {
                            "partitioned"
                        } else {
                            "timescaledb"
                        },
                    })
                }
                _ => path,
            }
        };
        let all = schema::migrations(path);
        let known = all.last().map(|m| m.0).unwrap_or(0);
        if applied > known {
            return Err(StoreError::SchemaTooNew {
                found: applied,
                known,
            });
        }
        for (version, name, sql) in all.into_iter().filter(|m| m.0 > applied) {
            info!(
                message = "Applying migration.",
                version,
                name,
                path = path.as_str()
            );
            tx.batch_execute(&sql)
                .await
                .map_err(StoreError::db("applying a migration"))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[&version, &name],
            )
            .await
            .map_err(StoreError::db("recording a migration"))?;
            if version == 1 {
                tx.execute(
                    "INSERT INTO settings (key, value) VALUES ('storage_path', $1)",
                    &[&path.as_str()],
                )
                .await
                .map_err(StoreError::db("recording the storage path"))?;
            }
        }
        tx.commit()
            .await
            .map_err(StoreError::db("committing the migration"))?;
        let mut db = Db {
            client,
            path,
            known_days: BTreeSet::new(),
            statements: Mutex::default(),
            rolled_up_before: AtomicI64::new(i64::MIN),
            fence: None,
        };
        if path == StoragePath::Partitioned {
            db.known_days = partitions::existing_days(&db.client).await?;
        }
        let Some(retention_days) = retention_days else {
            return Ok(db);
        };
        let mut admin = Admin::from(db);
        admin.apply_retention(retention_days).await?;
        if path == StoragePath::Partitioned {
            admin
                .maintain_partitions(Timestamp::now(), retention_days)
                .await?;
        }
        Ok(admin.into_db())
    }

    pub fn path(&self) -> StoragePath {
        self.path
    }

    /// Whether the connection is gone (the server restarted, the network broke): nothing
    /// on it can succeed again, and the holder should connect anew.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Makes this session's guarded writes (the rules' decisions: outages, work orders,
    /// command answers) prove in their transaction that `fence`'s lease is still held
    /// ([`crate::leases`]); `None` for no lease (a single hub).
    pub fn set_fence(&mut self, fence: Option<crate::leases::Fence>) {
        self.fence = fence;
    }

    /// The fence of this session's guarded writes, if any.
    pub fn fence(&self) -> Option<&crate::leases::Fence> {
        self.fence.as_ref()
    }

    /// A transaction for a guarded write: it first checks this session's fence, if any.
    pub(crate) async fn fenced_transaction(
        &mut self,
        what: &'static str,
    ) -> Result<tokio_postgres::Transaction<'_>, StoreError> {
        let fence = self.fence.clone();
        let tx = self
            .client
            .transaction()
            .await
            .map_err(StoreError::db(what))?;
        if let Some(f) = fence {
            f.check(&tx).await?;
        }
        Ok(tx)
    }

    /// Runs `sql` as a statement prepared once per connection: the API's frequent reads
    /// then skip, after the first call, the round trip and the parse that preparing costs.
    /// A statement that fails is prepared afresh next time (the schema may have changed).
    pub(crate) async fn query_cached(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let cached = self.lock_statements().get(sql).cloned();
        let statement = match cached {
            Some(s) => s,
            None => {
                let s = self.client.prepare(sql).await?;
                let mut statements = self.lock_statements();
                if statements.len() >= MAX_STATEMENTS {
                    statements.clear();
                }
                statements.insert(sql.to_owned(), s.clone());
                s
            }
        };
        let rows = self.client.query(&statement, params).await;
        if rows.is_err() {
            self.lock_statements().remove(sql);
        }
        rows
    }

    /// [`Db::query_cached`] for at most one row.
    pub(crate) async fn query_opt_cached(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        Ok(self.query_cached(sql, params).await?.into_iter().next())
    }

    fn lock_statements(&self) -> std::sync::MutexGuard<'_, HashMap<String, Statement>> {
        self.statements.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The newest `complete_before` of the lamp rollups read on this connection: a bound
    /// the rollups' boundary never falls behind.
    pub(crate) fn rolled_up_before(&self) -> Option<DateTime<Utc>> {
        match self.rolled_up_before.load(Ordering::Relaxed) {
            i64::MIN => None,
            i64::MAX => Some(DateTime::<Utc>::MAX_UTC),
            micros => DateTime::from_timestamp_micros(micros),
        }
    }

    /// Notes a `complete_before` read, in Unix seconds (infinite when it is).
    pub(crate) fn saw_rolled_up_before(&self, seconds: f64) {
        let micros = if seconds.is_nan() || seconds == f64::NEG_INFINITY {
            return;
        } else if seconds == f64::INFINITY {
            i64::MAX
        } else {
            // Rounded down: a bound, never past what was read.
            ((seconds * 1e6).floor() as i64).clamp(i64::MIN + 1, i64::MAX - 1)
        };
        self.rolled_up_before.fetch_max(micros, Ordering::Relaxed);
    }

    async fn ensure_days(&mut self, days: &BTreeSet<i64>) -> Result<(), StoreError> {
        let missing: Vec<i64> = days.difference(&self.known_days).copied().collect();
        for day in missing {
            partitions::create_day(&self.client, day).await?;
            self.known_days.insert(day);
        }
        Ok(())
    }

    async fn write_once(
        &mut self,
        batch: &ReadingBatch,
        dedupe: bool,
    ) -> Result<WriteOutcome, StoreError> {
        let tx = self
            .client
            .transaction()
            .await
            .map_err(StoreError::db("starting a batch"))?;
        let mut outcome = WriteOutcome::default();
        for record in RecordType::ALL {
            let buf = &batch.readings[record.index()];
            if buf.is_empty() {
                continue;
            }
            let table = schema::table(record);
            let columns = schema::copy_columns(record);
            let inserted = if dedupe {
                let stage = format!("stage_{table}");
                tx.batch_execute(&format!(
                    "CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table}) ON COMMIT DELETE ROWS"
                ))
                .await
                .map_err(StoreError::db("creating a staging table"))?;
                copy_in(&tx, &stage, &columns, buf).await?;
                tx.execute(
                    &format!(
                        "INSERT INTO {table} ({columns}) SELECT {columns} FROM {stage} ON CONFLICT DO NOTHING"
                    ),
                    &[],
                )
                .await
                .map_err(StoreError::db("inserting new readings"))?
            } else {
                copy_in(&tx, table, &columns, buf).await?
            };
            outcome.inserted[record.index()] = inserted;
            outcome.duplicates += buf.rows() as u64 - inserted;
        }
        if outcome.inserted[RecordType::Light.index()] > 0 {
            crate::rollups::mark(&tx, &batch.light_quarters).await?;
        }
        if !batch.dead_letters.is_empty() {
            outcome.dead_letters = copy_in(
                &tx,
                "dead_letters",
                DEAD_LETTER_COLUMNS,
                &batch.dead_letters,
            )
            .await?;
        }
        crate::mqtt::note_digests(&tx, &batch.topic_digests).await?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a batch"))?;
        Ok(outcome)
    }
}

impl Admin {
    /// Keeps data for `days`: a retention policy on TimescaleDB; on native partitioning
    /// the days are stored and [`Db::maintain_partitions`] drops what falls out.
    pub async fn apply_retention(&self, days: i64) -> Result<(), StoreError> {
        self.client
            .execute(
                "INSERT INTO settings (key, value) VALUES ('retention_days', $1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&days.to_string()],
            )
            .await
            .map_err(StoreError::db("recording the retention"))?;
        if self.path == StoragePath::TimescaleDb {
            for record in RecordType::ALL {
                let t = schema::table(record);
                let sql = format!(
                    "SELECT remove_retention_policy('{t}', if_exists => true);
                     SELECT add_retention_policy('{t}', INTERVAL '{days} days');"
                );
                self.client
                    .batch_execute(&sql)
                    .await
                    .map_err(StoreError::db("setting the retention policy"))?;
            }
        }
        Ok(())
    }

    /// Native partitioning only: creates the partitions of the coming week and drops
    /// those entirely older than the retention. A no-op on TimescaleDB.
    pub async fn maintain_partitions(
        &mut self,
        now: Timestamp,
        retention_days: i64,
    ) -> Result<(), StoreError> {
        if self.path != StoragePath::Partitioned {
            return Ok(());
        }
        let today = now.micros().div_euclid(86_400_000_000);
        let ahead: BTreeSet<i64> = (today - 1..=today + 7).collect();
        self.ensure_days(&ahead).await?;
        let dropped = partitions::drop_before(&self.client, today - retention_days).await?;
        for day in dropped {
            self.known_days.remove(&day);
        }
        Ok(())
    }
}

impl Ingestion {
    /// Writes a batch in one transaction: readings by binary COPY, dead letters, and the
    /// latest state of each device touched. A redelivered reading is not written twice.
    pub async fn write_batch(&mut self, batch: &ReadingBatch) -> Result<WriteOutcome, StoreError> {
        if self.path == StoragePath::Partitioned {
            self.ensure_days(&batch.days).await?;
        }
        let started = Instant::now();
        match self.write_once(batch, false).await {
            Err(e) if e.sql_state() == Some(SqlState::UNIQUE_VIOLATION.code()) => {
                debug!(
                    message = "Batch holds stored readings; writing new rows only.",
                    rows = batch.reading_rows()
                );
                let outcome = self.write_once(batch, true).await?;
                debug!(
                    message = "Deduplicated batch written.",
                    elapsed_ms = started.elapsed().as_millis() as u64
                );
                Ok(outcome)
            }
            other => other,
        }
    }

    /// Binary COPY of the batch's readings and nothing else, in one transaction: the
    /// database's raw limit, which `cityhub bench ingest` compares the full path against.
    pub async fn copy_only(&mut self, batch: &ReadingBatch) -> Result<u64, StoreError> {
        if self.path == StoragePath::Partitioned {
            self.ensure_days(&batch.days).await?;
        }
        let tx = self
            .client
            .transaction()
            .await
            .map_err(StoreError::db("starting a batch"))?;
        let mut rows = 0;
        for record in RecordType::ALL {
            let buf = &batch.readings[record.index()];
            if !buf.is_empty() {
                rows += copy_in(
                    &tx,
                    schema::table(record),
                    &schema::copy_columns(record),
                    buf,
                )
                .await?;
            }
        }
        tx.commit()
            .await
            .map_err(StoreError::db("committing a batch"))?;
        Ok(rows)
    }
}

async fn choose_path(
    tx: &tokio_postgres::Transaction<'_>,
    mode: TimescaleMode,
) -> Result<StoragePath, StoreError> {
    if mode == TimescaleMode::Off {
        return Ok(StoragePath::Partitioned);
    }
    let probe = tx
        .query_one(
            // pg_settings leaves out what the role may not read (shared_preload_libraries
            // needs pg_read_all_settings), where current_setting() fails.
            "SELECT exists(SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'),
                    exists(SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),
                    (SELECT setting ILIKE '%timescaledb%' FROM pg_settings
                     WHERE name = 'shared_preload_libraries')",
            &[],
        )
        .await
        .map_err(StoreError::db("probing for TimescaleDB"))?;
    let (installed, available, preloaded): (bool, bool, Option<bool>) =
        (probe.get(0), probe.get(1), probe.get(2));
    if installed {
        return Ok(StoragePath::TimescaleDb);
    }
    // TimescaleDB ends the session (FATAL) when it is created without being preloaded, so
    // both conditions are checked before trying.
    let why = if !available {
        "the timescaledb extension is not installed on the server".to_owned()
    } else if preloaded.is_none() {
        "this role cannot read shared_preload_libraries to see whether timescaledb is loaded \
         (grant it pg_read_all_settings, or create the extension as a superuser)"
            .to_owned()
    } else if preloaded == Some(false) {
        "timescaledb is installed but not in shared_preload_libraries".to_owned()
    } else {
        // A savepoint: a failed CREATE EXTENSION must not abort the migration.
        tx.batch_execute("SAVEPOINT try_timescale")
            .await
            .map_err(StoreError::db("creating a savepoint"))?;
        match tx
            .batch_execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            .await
        {
            Ok(()) => return Ok(StoragePath::TimescaleDb),
            Err(e) => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT try_timescale")
                    .await
                    .map_err(StoreError::db("rolling back to a savepoint"))?;
                e.as_db_error()
                    .map(|d| d.message().to_owned())
                    .unwrap_or_else(|| e.to_string())
            }
        }
    };
    if mode == TimescaleMode::Require {
        return Err(StoreError::TimescaleRequired(why));
    }
    warn!(message = "TimescaleDB is not available; using native time partitioning.", reason = %why);
    Ok(StoragePath::Partitioned)
}

async fn copy_in(
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
    columns: &str,
    buf: &CopyBuffer,
) -> Result<u64, StoreError> {
    let sink = tx
        .copy_in(&format!(
            "COPY {table} ({columns}) FROM STDIN (FORMAT binary)"
        ))
        .await
        .map_err(StoreError::db("starting COPY"))?;
    futures_util::pin_mut!(sink);
    sink.send(buf.finish())
        .await
        .map_err(StoreError::db("sending COPY data"))?;
    sink.finish()
        .await
        .map_err(StoreError::db("finishing COPY"))
}

impl Ingestion {
    /// Writes the newest state of each device, in one statement. A value older than what
    /// is stored never replaces it, so updates may arrive in any order.
    pub async fn upsert_latest(&self, latest: &LatestUpdates) -> Result<(), StoreError> {
        upsert_latest(&self.client, latest).await
    }
}

async fn upsert_latest(tx: &Client, latest: &LatestUpdates) -> Result<(), StoreError> {
    if latest.is_empty() {
        return Ok(());
    }
    let mut ids: Vec<i32> = latest.keys().copied().collect();
    // A fixed order keeps concurrent writers from deadlocking on the same rows.
    ids.sort_unstable();
    let n = ids.len();
    let (mut tel_ts, mut tel, mut st_ts, mut online, mut seen) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for id in &ids {
        let l = &latest[id];
        tel_ts.push(l.telemetry.as_ref().map(|(_, r)| r.ts.to_datetime()));
        tel.push(l.telemetry.as_ref().map(|(rec, r)| telemetry_json(*rec, r)));
        st_ts.push(l.status.map(|(t, _)| t.to_datetime()));
        online.push(l.status.map(|(_, o)| o));
        seen.push(l.last_seen.map(Timestamp::to_datetime).unwrap_or_default());
    }
    tx.execute(
        "INSERT INTO device_latest AS d (device_id, telemetry_ts, telemetry, status_ts, online, last_seen)
         SELECT * FROM unnest($1::int4[], $2::timestamptz[], $3::jsonb[], $4::timestamptz[], $5::bool[], $6::timestamptz[])
         ON CONFLICT (device_id) DO UPDATE SET
           telemetry = CASE WHEN excluded.telemetry_ts >= d.telemetry_ts OR d.telemetry_ts IS NULL
                            THEN coalesce(excluded.telemetry, d.telemetry) ELSE d.telemetry END,
           telemetry_ts = greatest(d.telemetry_ts, excluded.telemetry_ts),
           online = CASE WHEN excluded.status_ts >= d.status_ts OR d.status_ts IS NULL
                         THEN coalesce(excluded.online, d.online) ELSE d.online END,
           status_ts = greatest(d.status_ts, excluded.status_ts),
           last_seen = greatest(d.last_seen, excluded.last_seen),
           updated_at = now()",
        &[&ids, &tel_ts, &tel, &st_ts, &online, &seen],
    )
    .await
    .map_err(StoreError::db("updating the latest state"))?;
    Ok(())
}

impl Db {
    pub(crate) fn client_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

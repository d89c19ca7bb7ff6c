//! Storage paths: partitions for backlog days, retention, migrations, the device registry.

use std::time::Duration;

use model::{decode_payload, Kind, Limits, RecordType, Timestamp};
use store::{Db, ReadingBatch, StoragePath};
use tests::db::{devices, timescale_mode};
use tests::hub::ingest_config;
use tests::{now_ms, unique, InProcessHub, Publisher, Setup, TestDb};

fn batch_of(device_id: i32, ts_ms: &[i64]) -> ReadingBatch {
    let mut batch = ReadingBatch::default();
    for &ts in ts_ms {
        let payload = format!(r#"{{"ts":{ts},"dim":5}}"#);
        let now = Timestamp::from_unix_ms(ts).unwrap();
        let d = decode_payload(
            RecordType::Light,
            payload.as_bytes(),
            now,
            &Limits::default(),
        );
        for row in d.rows {
            batch.push(RecordType::Light, device_id, row);
        }
    }
    batch
}

#[tokio::test]
async fn a_backlog_from_weeks_ago_is_stored_and_retention_drops_old_days() {
    let t = unique("t");
    let db = TestDb::new().await;
    db.import(&devices(&t, &[(Kind::Light, 1)])).await;
    let id: i32 = db
        .client
        .query_one("SELECT id FROM devices", &[])
        .await
        .unwrap()
        .get(0);
    let day = 86_400_000;
    let now = now_ms();
    let mut store = db.store().await;
    let outcome = store
        .ingestion
        .write_batch(&batch_of(id, &[now - 20 * day, now - 3 * day, now]))
        .await
        .unwrap();
    assert_eq!(outcome.inserted[RecordType::Light.index()], 3);
    assert_eq!(db.count("SELECT count(*) FROM light_readings").await, 3);

    match store.path() {
        StoragePath::Partitioned => {
            // Keep 10 days: the 20-day-old reading's partition goes, the rest stays.
            store
                .admin
                .maintain_partitions(Timestamp::from_unix_ms(now).unwrap(), 10)
                .await
                .unwrap();
            assert_eq!(db.count("SELECT count(*) FROM light_readings").await, 2);
            // Partitions exist ahead for the coming week.
            let ahead = db
                .count("SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'light_readings'")
                .await;
            assert!(ahead >= 8, "{ahead} partitions");
            // Every partition, the backlog day's made on demand included, finds a time
            // range by its own time index.
            let unindexed = db
                .count(
                    "SELECT count(*) FROM pg_inherits i
                     JOIN pg_class p ON p.oid = i.inhparent JOIN pg_class c ON c.oid = i.inhrelid
                     WHERE p.relname = 'light_readings' AND NOT EXISTS (
                         SELECT 1 FROM pg_indexes x
                         WHERE x.tablename = c.relname AND x.indexdef LIKE '%USING brin (ts)%')",
                )
                .await;
            assert_eq!(unindexed, 0, "partitions without a time index");
        }
        StoragePath::TimescaleDb => {
            let jobs = db
                .count("SELECT count(*) FROM timescaledb_information.jobs WHERE proc_name IN ('policy_retention', 'policy_compression') AND hypertable_name = 'light_readings'")
                .await;
            assert_eq!(jobs, 2, "retention and compression policies");
        }
    }
}

#[tokio::test]
async fn migrate_is_idempotent_and_keeps_its_storage_path() {
    let db = TestDb::new().await;
    let first = Db::connect(&db.url).await.unwrap().path();
    let again = Db::migrate(&db.url, timescale_mode(), Some(365))
        .await
        .unwrap();
    assert_eq!(again.path(), first);
    assert_eq!(
        db.count("SELECT count(*) FROM schema_migrations").await,
        store::schema::migrations(first).len() as i64
    );
    if first == StoragePath::Partitioned {
        let err = Db::migrate(&db.url, store::TimescaleMode::Require, Some(365))
            .await
            .err()
            .expect("refused");
        assert!(
            err.to_string().contains("set up for partitioned storage"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn a_device_imported_while_the_hub_runs_is_accepted() {
    let Setup {
        tenant: t,
        db,
        broker,
    } = Setup::start(&[(Kind::Light, 1)]).await;
    let hub = InProcessHub::start(ingest_config(broker.port(), &unique("hub-")), &db.url).await;
    let mut p = Publisher::connect(broker.port()).await;
    let mut later = devices(&t, &[(Kind::Light, 1)]);
    later[0].id = "NEW1".into();
    db.import(&later).await;
    let topic = format!("city/{t}/light/NEW1/telemetry");
    let start = now_ms();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for i in 0.. {
        p.send(&topic, format!(r#"{{"ts":{}}}"#, start + i)).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        if db.count("SELECT count(*) FROM light_readings").await > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new device was never accepted"
        );
    }
    // Anything refused before the registry caught up is a dead letter with the reason.
    let other = db
        .count("SELECT count(*) FROM dead_letters WHERE code <> 'unknown_device'")
        .await;
    assert_eq!(other, 0);
    hub.stop().await;
}

/// The names each vocabulary column accepts (its CHECK constraint), sorted.
async fn accepted_names(db: &TestDb, table: &str, column: &str) -> Vec<String> {
    let defs: Vec<String> = db
        .client
        .query(
            "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c
             JOIN pg_class t ON t.oid = c.conrelid
             WHERE t.relname = $1 AND c.contype = 'c'",
            &[&table],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let def = defs
        .iter()
        .find(|d| d.contains(&format!("({column} = ANY")))
        .unwrap_or_else(|| panic!("no check of {table}.{column} among {defs:?}"));
    let mut names: Vec<String> = def
        .split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

fn sorted<T: model::Vocabulary>() -> Vec<String> {
    let mut names: Vec<String> = T::names().into_iter().map(str::to_owned).collect();
    names.sort();
    names
}

/// The store reads every state, severity, status and role back with the model's parser:
/// the database must accept exactly the model's names, no more and no fewer.
#[tokio::test]
async fn the_database_accepts_exactly_the_vocabulary_of_the_model() {
    use model::{CommandStatus, OutageState, Role, Severity, WorkOrderState};
    let db = TestDb::new().await;
    let cases = [
        ("outages", "state", sorted::<OutageState>()),
        ("outages", "severity", sorted::<Severity>()),
        ("work_orders", "state", sorted::<WorkOrderState>()),
        ("commands", "status", sorted::<CommandStatus>()),
        ("users", "role", sorted::<Role>()),
    ];
    for (table, column, model) in cases {
        assert_eq!(
            accepted_names(&db, table, column).await,
            model,
            "{table}.{column}"
        );
    }
}

/// A role that owns its database and nothing more (not a superuser, no
/// pg_read_all_settings), as a city's database administrator gives the hub, migrates it
/// with the storage path chosen on its own.
#[tokio::test]
async fn a_role_that_only_owns_its_database_migrates_it() {
    if timescale_mode() == store::TimescaleMode::Require {
        // Creating the extension takes a superuser; covered where TimescaleDB is set up.
        return;
    }
    let server = tests::db::server_url();
    let (admin, conn) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
        .await
        .expect("the test PostgreSQL");
    tokio::spawn(conn);
    let name = unique("cityhub_role_");
    let superuser: bool = admin
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // As a superuser the test makes such a role; otherwise the tests' own role is one.
    let role = superuser.then(|| unique("hub_role_"));
    let url = match &role {
        Some(role) => {
            for sql in [
                format!("CREATE ROLE {role} LOGIN PASSWORD 'a role password'"),
                format!("CREATE DATABASE {name} OWNER {role}"),
            ] {
                admin.batch_execute(&sql).await.unwrap();
            }
            let rest = server
                .split_once("://")
                .and_then(|(_, r)| r.split_once('@'))
                .map(|(_, host)| host)
                .expect("a postgres://user@host/db URL");
            tests::db::with_dbname(
                &format!("postgres://{role}:a%20role%20password@{rest}"),
                &name,
            )
        }
        None => {
            admin
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap();
            tests::db::with_dbname(&server, &name)
        }
    };
    let out = std::process::Command::new(tests::hub::cityhub_binary())
        .arg("migrate")
        .env("CITYHUB_CONFIG", "/dev/null")
        .env("CITYHUB_DATABASE_URL", &url)
        .env("CITYHUB_TIMESCALEDB", "auto")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
    if let Some(role) = role {
        let _ = admin
            .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
            .await;
    }
    assert!(out.status.success(), "{said}");
}

//! Native range partitioning by UTC day, for servers without TimescaleDB.
//!
//! Partition `light_readings_d20261122` holds `[2026-11-22, 2026-11-23)` UTC. Partitions are
//! created ahead by [`crate::Db::maintain_partitions`] and on demand for a batch that
//! carries an older day (a device's backlog); whole days past retention are dropped.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate};
use model::RecordType;
use tokio_postgres::{error::SqlState, Client};
use tracing::info;

use crate::schema::table;
use crate::StoreError;

fn date_of(day: i64) -> NaiveDate {
    DateTime::from_timestamp(day * 86_400, 0)
        .map(|t| t.date_naive())
        .unwrap_or_default()
}

fn day_of(suffix: &str) -> Option<i64> {
    let date = NaiveDate::parse_from_str(suffix, "%Y%m%d").ok()?;
    Some(
        date.and_hms_opt(0, 0, 0)?
            .and_utc()
            .timestamp()
            .div_euclid(86_400),
    )
}

/// Days for which every reading table has a partition.
pub(crate) async fn existing_days(client: &Client) -> Result<BTreeSet<i64>, StoreError> {
    let rows = client
        .query(
            "SELECT c.relname, p.relname FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             JOIN pg_class p ON p.oid = i.inhparent
             WHERE p.relname = ANY($1)",
            &[&RecordType::ALL
                .iter()
                .map(|r| table(*r))
                .collect::<Vec<_>>()],
        )
        .await
        .map_err(StoreError::db("listing partitions"))?;
    let mut per_day: std::collections::BTreeMap<i64, usize> = Default::default();
    for row in rows {
        let child: String = row.get(0);
        if let Some(day) = child.rsplit_once("_d").and_then(|(_, s)| day_of(s)) {
            *per_day.entry(day).or_default() += 1;
        }
    }
    Ok(per_day
        .into_iter()
        .filter(|(_, n)| *n == RecordType::ALL.len())
        .map(|(d, _)| d)
        .collect())
}

/// Creates the partitions of one day for every reading table. Safe to race: another
/// writer creating the same partition at the same time is not an error.
pub(crate) async fn create_day(client: &Client, day: i64) -> Result<(), StoreError> {
    let from = date_of(day);
    let to = date_of(day + 1);
    let suffix = from.format("%Y%m%d");
    for record in RecordType::ALL {
        let parent = table(record);
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {parent}_d{suffix} PARTITION OF {parent}
             FOR VALUES FROM ('{from}T00:00:00Z') TO ('{to}T00:00:00Z')"
        );
        match client.batch_execute(&sql).await {
            Ok(()) => {}
            Err(e)
                if e.code() == Some(&SqlState::DUPLICATE_TABLE)
                    || e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {}
            Err(source) => {
                return Err(StoreError::Db {
                    context: "creating a partition",
                    source,
                })
            }
        }
    }
    Ok(())
}

/// Drops the partitions of days before `first_kept_day`; returns the days dropped.
pub(crate) async fn drop_before(
    client: &Client,
    first_kept_day: i64,
) -> Result<Vec<i64>, StoreError> {
    let days = existing_days(client).await?;
    let old: Vec<i64> = days.range(..first_kept_day).copied().collect();
    for &day in &old {
        let suffix = date_of(day).format("%Y%m%d");
        for record in RecordType::ALL {
            client
                .batch_execute(&format!("DROP TABLE IF EXISTS {}_d{suffix}", table(record)))
                .await
                .map_err(StoreError::db("dropping an expired partition"))?;
        }
        info!(message = "Dropped expired partitions.", day = %date_of(day));
    }
    Ok(old)
}

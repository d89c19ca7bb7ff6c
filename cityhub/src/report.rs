//! `cityhub report`: the alarm load (floods, bad actors), the repair crews' record and the
//! lamps' energy, read from the database, as text tables for the control room and its
//! managers.

use chrono::{Duration, Utc};
use clap::Subcommand;

use crate::config::Config;

#[derive(Subcommand)]
pub enum ReportCommand {
    /// Outages per kind, alarm floods (over 10 per 10 minutes) and the assets raising most
    Alarms {
        /// The last this many hours
        #[arg(long, default_value_t = 24)]
        hours: i64,
        /// How many bad actors to list
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
    /// Work orders per team: on time, late, overdue, reopened; then every SLA breach
    Teams {
        /// Work orders opened in the last this many days
        #[arg(long, default_value_t = 30)]
        days: i64,
    },
    /// Lamp energy and burning hours per district and day, from the daily rollups
    Energy {
        /// The last this many whole UTC days, today included
        #[arg(long, default_value_t = 30)]
        days: i64,
        /// One district only
        #[arg(long)]
        district: Option<String>,
        /// Roll up pending readings first, instead of waiting for the hub's refresher (or,
        /// on TimescaleDB, the continuous aggregates' policies)
        #[arg(long)]
        refresh: bool,
    },
}

pub async fn run(command: ReportCommand, config: Config) -> anyhow::Result<()> {
    let mut db = store::Admin::connect(&config.database_url).await?;
    let now = Utc::now();
    match command {
        ReportCommand::Alarms { hours, top } => {
            anyhow::ensure!(hours > 0, "--hours must be at least 1");
            let from = now - Duration::hours(hours);
            let r = db.alarm_report(from, now, top).await?;
            say!("Alarms from {from} to {now}\n");
            say!("| kind | outages | occurrences | chattering | shelved |");
            say!("|---|---|---|---|---|");
            for k in &r.per_kind {
                say!(
                    "| {} | {} | {} | {} | {} |",
                    k.kind,
                    k.opened,
                    k.occurrences,
                    k.chattering,
                    k.shelved
                );
            }
            say!("\nPeak: {} outages opened in 10 minutes.", r.peak_per_10min);
            if r.flood_windows.is_empty() {
                say!(
                    "No alarm floods (over {} in 10 minutes).",
                    store::FLOOD_PER_10_MIN
                );
            }
            for (start, n) in &r.flood_windows {
                say!("Flood: {n} outages opened in the 10 minutes from {start}.");
            }
            say!("\n| tenant | bad actor | kind | outages | occurrences |");
            say!("|---|---|---|---|---|");
            for b in &r.bad_actors {
                say!(
                    "| {} | {} | {} | {} | {} |",
                    b.tenant,
                    b.ext_id,
                    b.kind,
                    b.outages,
                    b.occurrences
                );
            }
        }
        ReportCommand::Energy {
            days,
            district,
            refresh,
        } => {
            anyhow::ensure!(
                (1..=400).contains(&days),
                "--days must be between 1 and 400"
            );
            if refresh {
                let done = db.refresh_rollups(now).await?;
                say!("Rolled up {} buckets of 15 minutes.\n", done.buckets);
            }
            // The report itself is what the API's energy report reads, for every tenant.
            let db = store::Reads::from(db.into_db());
            let day = store::history::Bucket::Day;
            let to = day.floor(now) + Duration::days(1);
            let from = to - Duration::days(days);
            let tenants: Vec<i32> = db.tenant_slugs().await?.into_keys().collect();
            let lines = db
                .energy_report(&tenants, district.as_deref(), from, to)
                .await?;
            say!("Lamp energy per district and day, {from} to {to}\n");
            say!("| tenant | district | day | kWh | burning hours | lamps reporting | kWh at rated power |");
            say!("|---|---|---|---|---|---|---|");
            for l in &lines {
                say!(
                    "| {} | {} | {} | {:.1} | {:.1} | {} | {} |",
                    l.tenant,
                    l.district.as_deref().unwrap_or("-"),
                    l.day.format("%Y-%m-%d"),
                    l.energy_kwh,
                    l.burning_hours,
                    l.lamps_reporting,
                    l.rated_kwh.map_or("-".to_owned(), |r| format!("{r:.1}"))
                );
            }
            if let Some(until) = db.rollups_complete_before().await? {
                if until < to {
                    say!("\nReadings after {until} are not rolled up yet.");
                }
            }
        }
        ReportCommand::Teams { days } => {
            anyhow::ensure!(days > 0, "--days must be at least 1");
            let from = now - Duration::days(days);
            let teams = db.team_report(from, now, now).await?;
            say!("Work orders opened from {from} to {now}\n");
            say!("| team | orders | done on time | done late | open overdue | open in time | reopened |");
            say!("|---|---|---|---|---|---|---|");
            for t in &teams {
                say!(
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    t.team,
                    t.total,
                    t.done_on_time,
                    t.done_late,
                    t.open_overdue,
                    t.open_in_time,
                    t.reopened
                );
            }
            let breaches = db.sla_breaches(now).await?;
            say!("\n{} work orders past their deadline:", breaches.len());
            for w in &breaches {
                say!(
                    "- #{} {} {} ({}, {}): due {}, {}",
                    w.id,
                    w.kind,
                    w.ext_id,
                    w.team,
                    w.severity,
                    w.due_at,
                    match w.done_at {
                        Some(done) => format!("done {done}"),
                        None => format!("still {}", w.state),
                    }
                );
            }
        }
    }
    Ok(())
}

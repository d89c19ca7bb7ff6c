//! `cityhub maintenance`: planned work during which outages of the assets concerned are not
//! opened (they open when the window ends if the fault is still there). The rules pick new
//! windows up within 2 seconds.

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Subcommand;

use crate::config::Config;

#[derive(Subcommand)]
pub enum MaintenanceCommand {
    /// Plan a window: a device, a cabinet (with its lamps), a district or a whole tenant
    Add {
        #[arg(long)]
        tenant: String,
        /// device, cabinet, district or tenant
        #[arg(long)]
        scope: String,
        /// The device or cabinet id, the district's name, or the tenant's slug
        #[arg(long)]
        target: String,
        /// Start, RFC 3339 (e.g. 2026-11-23T22:00:00+01:00)
        #[arg(long)]
        from: String,
        /// End, RFC 3339
        #[arg(long)]
        until: String,
        /// Why (kept with the window and in the audit log)
        #[arg(long)]
        reason: String,
        /// Who plans it
        #[arg(long, default_value = "cli")]
        by: String,
    },
    /// Windows not over yet, with how many devices each covers
    List,
}

fn time(flag: &str, value: &str) -> anyhow::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .with_context(|| format!("--{flag} `{value}` is not RFC 3339 with an offset"))
}

pub async fn run(command: MaintenanceCommand, config: Config) -> anyhow::Result<()> {
    let mut db = crate::migrate(&config).await?;
    match command {
        MaintenanceCommand::Add {
            tenant,
            scope,
            target,
            from,
            until,
            reason,
            by,
        } => {
            let (from, until) = (time("from", &from)?, time("until", &until)?);
            anyhow::ensure!(!reason.trim().is_empty(), "--reason must say why");
            let id = db
                .add_maintenance_window(&tenant, &scope, &target, from, until, &reason, &by)
                .await?;
            say!(
                "Maintenance window {id} planned: {scope} {target} of {tenant}, {from} to {until}."
            );
        }
        MaintenanceCommand::List => {
            let windows = store::Detection::from(db.into_db())
                .maintenance_windows(Utc::now())
                .await?;
            if windows.is_empty() {
                say!("No maintenance window is planned.");
            }
            for w in windows {
                say!(
                    "{}: {} to {}, {} devices: {}",
                    w.id,
                    w.starts_at,
                    w.ends_at,
                    w.device_ids.len(),
                    w.reason
                );
            }
        }
    }
    Ok(())
}

//! `cityhub users` (people and programs that use the API) and `cityhub audit`.
//!
//! Passwords are read from standard input, never from arguments (which other users of
//! the machine can see in `ps`); on a terminal the typing is not echoed. API tokens are
//! printed once and only their digest is kept. Every change is in the audit log, by
//! `cli (<operating-system user>)`.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{bail, Context};
use clap::Subcommand;
use store::NewUser;

use crate::config::Config;

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Add a user; the password is read from standard input (at least 12 characters)
    Add {
        username: String,
        /// admin, operator, dispatcher, crew, viewer or regional_viewer
        #[arg(long)]
        role: String,
        /// A tenant (slug) the user may see; repeat for several
        #[arg(long = "tenant")]
        tenants: Vec<String>,
        /// For crew: the team whose work orders they move
        #[arg(long)]
        team: Option<String>,
    },
    /// Create an API token for a user and print it (once: only its digest is kept)
    Token {
        username: String,
        /// What the token is for, e.g. `gis-export`; recorded as the actor of its changes
        #[arg(long)]
        name: String,
    },
    /// List the users: name, role, team, whether disabled, tenants
    List {
        /// Only those who work for this tenant (slug)
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a user's API token by name
    RevokeToken {
        username: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Recompute the audit log's hash chain; exit 1 naming the first entry that does not fit
    Verify {
        /// An anchor printed by `audit anchor` earlier (SEQ:HASH): the chain must still
        /// reach that entry with that hash (repeat for several)
        #[arg(long, value_parser = parse_anchor)]
        anchor: Vec<store::AuditAnchor>,
    },
    /// Print the newest entries, oldest first: id, time, actor, action, target, detail
    Show {
        /// How many entries
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=100_000))]
        limit: i64,
        /// Only entries whose target starts with this, e.g. `outage/42` or `user/`
        #[arg(long)]
        target: Option<String>,
        /// Only entries by this actor, e.g. `olga` (with those through her API tokens) or
        /// `cli (root)`
        #[arg(long)]
        actor: Option<String>,
    },
    /// Print the newest entry as SEQ:HASH, to keep somewhere the database's owner cannot
    /// change (a ticket, a log shipper, paper); `audit verify --anchor` checks it later
    Anchor,
}

fn parse_anchor(text: &str) -> Result<store::AuditAnchor, String> {
    store::AuditAnchor::parse(text)
}

pub async fn run(command: UsersCommand, config: Config) -> anyhow::Result<()> {
    let mut db = crate::migrate(&config).await?;
    let actor = cli_actor();
    match command {
        UsersCommand::Add {
            username,
            role,
            tenants,
            team,
        } => {
            if tenants.is_empty() {
                bail!("name at least one --tenant: a user sees only the tenants they are given");
            }
            if team.is_some() && model::Role::parse(&role) != Some(model::Role::Crew) {
                bail!("--team is for crew members (the team whose work orders they move)");
            }
            store::auth::check_user(&username, &role, team.as_deref())?;
            let password = read_password(&username)?;
            let hash = tokio::task::spawn_blocking(move || api::auth::hash_password(&password))
                .await
                .context("hashing the password")?
                .map_err(anyhow::Error::msg)?;
            let user = db
                .add_user(
                    &NewUser {
                        username: &username,
                        password_hash: &hash,
                        role: &role,
                        team: team.as_deref(),
                        tenants: &tenants,
                    },
                    &actor,
                )
                .await?;
            let slugs: Vec<&str> = user.tenants.iter().map(|t| t.slug.as_str()).collect();
            say!(
                "Added {} ({}) for {}.",
                user.username,
                user.role,
                slugs.join(", ")
            );
        }
        UsersCommand::Token { username, name } => {
            let token = api::auth::new_api_token();
            db.add_api_token(
                &username,
                &name,
                &api::auth::api_token_digest(&token),
                &actor,
            )
            .await?;
            eprintln!(
                "API token `{name}` of {username}; send it as `Authorization: Bearer <token>`. It is shown only now:"
            );
            say!("{token}");
        }
        UsersCommand::List { tenant } => {
            let reads = store::Reads::from(db.into_db());
            let slugs = reads.tenant_slugs().await?;
            let ids: Vec<i32> = match &tenant {
                None => slugs.keys().copied().collect(),
                Some(t) => match slugs.iter().find(|(_, s)| *s == t) {
                    Some((id, _)) => vec![*id],
                    None => bail!("no tenant `{t}`; `cityhub config` shows the database in use"),
                },
            };
            let users = store::Access::from(reads.into_db()).users_in(&ids).await?;
            say!("username\trole\tteam\tstate\ttenants");
            for u in &users {
                let tenants: Vec<&str> = u.tenants.iter().map(|t| t.slug.as_str()).collect();
                say!(
                    "{}\t{}\t{}\t{}\t{}",
                    u.username,
                    u.role,
                    u.team.as_deref().unwrap_or("-"),
                    if u.disabled { "disabled" } else { "active" },
                    tenants.join(",")
                );
            }
            eprintln!("{} users", users.len());
        }
        UsersCommand::RevokeToken { username, name } => {
            db.revoke_api_token(&username, &name, &actor).await?;
            say!("Revoked the token `{name}` of {username}.");
        }
    }
    Ok(())
}

pub async fn audit(command: AuditCommand, config: Config) -> anyhow::Result<()> {
    let db = store::Admin::connect(&config.database_url).await?;
    let anchors = match command {
        AuditCommand::Show {
            limit,
            target,
            actor,
        } => {
            let entries = db
                .audit_tail(limit, target.as_deref(), actor.as_deref())
                .await?;
            say!("id\tat\tactor\taction\ttarget\tdetail");
            for e in &entries {
                say!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    e.id,
                    e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    e.entry.actor,
                    e.entry.action,
                    e.entry.target,
                    e.entry.detail
                );
            }
            eprintln!("{} entries", entries.len());
            return Ok(());
        }
        AuditCommand::Anchor => {
            match db.audit_head().await? {
                Some(head) => say!("{head}"),
                None => bail!("the audit log is empty: there is nothing to anchor yet"),
            }
            return Ok(());
        }
        AuditCommand::Verify { anchor } => anchor,
    };
    let check = db.verify_audit(&anchors).await?;
    match check.first_bad {
        None => {
            say!("audit log intact: {} entries", check.entries);
            if !anchors.is_empty() {
                say!("it reaches every anchor given ({})", anchors.len());
            }
            if let Some(hash) = check.last_hash {
                say!("last hash: {hash} (keep `cityhub audit anchor` elsewhere to detect the newest entries being removed)");
            }
            Ok(())
        }
        Some((id, why)) => bail!(
            "audit log broken at entry {id}: {why} ({} entries read)",
            check.entries
        ),
    }
}

/// Who the command line acts as in the audit log.
fn cli_actor() -> String {
    match std::env::var("USER") {
        Ok(user) if !user.is_empty() => format!("cli ({user})"),
        _ => "cli".into(),
    }
}

/// One line from standard input, without echo on a terminal; refused when short.
fn read_password(username: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let on_terminal = stdin.is_terminal();
    if on_terminal {
        eprint!("Password for {username}: ");
        let _ = std::io::stderr().flush();
        set_echo(false);
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if on_terminal {
        set_echo(true);
        eprintln!();
    }
    read.context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    let chars = password.chars().count();
    if chars < api::auth::MIN_PASSWORD_CHARS {
        bail!(
            "the password (read from standard input) has {chars} characters; use at least {}",
            api::auth::MIN_PASSWORD_CHARS
        );
    }
    if password.len() > api::auth::MAX_PASSWORD_BYTES {
        bail!(
            "the password is longer than {} bytes",
            api::auth::MAX_PASSWORD_BYTES
        );
    }
    Ok(password)
}

/// Turns the terminal's echo off or on (with `stty`, so no terminal library is needed).
fn set_echo(on: bool) {
    let _ = std::process::Command::new("stty")
        .arg(if on { "echo" } else { "-echo" })
        .stdin(std::process::Stdio::inherit())
        .status();
}

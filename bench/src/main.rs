//! `cityhub-bench`: the benchmarks, apart from the product. `cityhub bench ...` runs it
//! (it lies next to the `cityhub` binary); each benchmark starts its own broker, database
//! and `cityhub serve` and prints its figures, the last line `RESULT ...`.
//!
//! - `ingest`, `simulate`, `rules` (in [`benches`]): ingestion against the broker's and
//!   COPY's raw limits; the cost of driving a city's devices; the rules engine alone.
//! - `detection` (`benches::detection`): the shipped scenarios through the whole stack,
//!   scored against their ground truth (`detection::windows`: how long each rule may take).
//! - `api` (`benches::api`): the API at city scale while ingestion runs, and an export.
//! - `replay` (tests only): a scenario straight into the rules engine.
//!
//! SQL: the benchmarks read and write through `store`, except their own administration
//! (creating and dropping their databases, `VACUUM ANALYZE`, counting rows), which uses
//! the database connection directly.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use store::TimescaleMode;
use tracing_subscriber::EnvFilter;

mod benches;
#[cfg(test)]
mod replay;

/// What the benchmarks need of the hub's configuration (the same environment variables).
#[derive(Parser)]
#[command(
    name = "cityhub-bench",
    about = "Benchmarks of cityhub (also `cityhub bench`)"
)]
struct Cli {
    /// PostgreSQL connection string of a role that may create databases
    #[arg(long, env = "CITYHUB_DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// `auto`, `require` or `off`
    #[arg(long, env = "CITYHUB_TIMESCALEDB", global = true, value_parser = parse_mode, default_value = "auto")]
    timescaledb: TimescaleMode,
    /// The rules file the hub under test runs with (TOML, docs/rules.md)
    #[arg(long, env = "CITYHUB_RULES_FILE", global = true)]
    rules_file: Option<PathBuf>,
    #[command(subcommand)]
    command: benches::BenchCommand,
}

fn parse_mode(s: &str) -> Result<TimescaleMode, String> {
    match s {
        "auto" => Ok(TimescaleMode::Auto),
        "require" => Ok(TimescaleMode::Require),
        "off" => Ok(TimescaleMode::Off),
        _ => Err(format!("`{s}` is not one of auto, require, off")),
    }
}

/// The settings a benchmark runs with.
#[derive(Clone)]
pub struct Config {
    pub database_url: String,
    pub storage: Storage,
    pub rules_file: Option<PathBuf>,
}

#[derive(Clone)]
pub struct Storage {
    pub timescaledb: TimescaleMode,
}

impl Config {
    /// The rules: the file's, or the built-in defaults.
    pub fn rules(&self) -> anyhow::Result<rules::RulesConfig> {
        Ok(rules::RulesConfig::load(self.rules_file.as_deref())?)
    }
}

/// The `cityhub` binary the benchmarks start: next to this one.
pub fn cityhub_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let bin = exe.with_file_name("cityhub");
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: the benchmarks start the hub from next to cityhub-bench (cargo build --release -p cityhub -p bench)",
        bin.display()
    );
    Ok(bin)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("CITYHUB_LOG")
                .unwrap_or_else(|_| EnvFilter::new("info,tokio_postgres=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let Some(database_url) = cli.database_url else {
        eprintln!(
            "error: the benchmarks need a database: set CITYHUB_DATABASE_URL or --database-url"
        );
        return ExitCode::FAILURE;
    };
    let config = Config {
        database_url,
        storage: Storage {
            timescaledb: cli.timescaledb,
        },
        rules_file: cli.rules_file,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(benches::run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

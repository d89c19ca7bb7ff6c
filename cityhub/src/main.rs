//! `cityhub`: the binary that wires the crates together.
//!
//! `serve` runs ingestion and the API (the work that must run once under leases, `leased`,
//! so that several instances can share a database); `migrate` sets up the database;
//! `devices import` loads the inventory; `users` manages who may use the API and `audit`
//! shows and checks the audit log; `bench` runs the benchmarks (the `cityhub-bench` binary of the `bench`
//! crate, next to this one).

/// `println!` for the commands' output, as an error instead of a panic when it cannot be
/// written (the reader of a pipe has gone): the enclosing function returns it.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)?;
    }};
}

mod config;
mod leased;
mod maintenance;
mod report;
mod rollup_refresh;
mod serve;
mod simulate;
mod users;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use config::{Config, Overrides};
use tracing_subscriber::EnvFilter;

/// mimalloc for every allocation: the hub allocates per message (payloads, decoded rows,
/// the rules' queue), and the system allocator's locking cost it a seventh of its CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "cityhub",
    version,
    about = "Telemetry and control hub for a city's control center"
)]
struct Cli {
    #[command(flatten)]
    overrides: Overrides,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub: ingestion and the HTTP API, until SIGTERM or Ctrl-C
    Serve,
    /// Create or upgrade the database schema
    Migrate,
    /// Manage the device inventory
    Devices {
        #[command(subcommand)]
        command: DevicesCommand,
    },
    /// The simulated city
    Simulate {
        #[command(subcommand)]
        command: SimulateCommand,
    },
    /// Measure throughput, latency and detection on this machine (runs cityhub-bench;
    /// `cityhub bench --help` lists the benchmarks)
    #[command(disable_help_flag = true)]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// Maintenance windows: outages of the assets concerned wait until they end
    Maintenance {
        #[command(subcommand)]
        command: maintenance::MaintenanceCommand,
    },
    /// Reports from the database: alarm load, repair crews
    Report {
        #[command(subcommand)]
        command: report::ReportCommand,
    },
    /// Users of the API and their tokens
    Users {
        #[command(subcommand)]
        command: users::UsersCommand,
    },
    /// The audit log of changes made by people and programs
    Audit {
        #[command(subcommand)]
        command: users::AuditCommand,
    },
    /// Print the effective configuration (passwords shown as ***, the session secret left out)
    Config,
}

#[derive(Subcommand)]
enum SimulateCommand {
    /// Generate a city: DIR/inventory.geojson (for `devices import`) and DIR/map.geojson
    City(CityArgs),
    /// Run a city's devices against the broker until Ctrl-C (or --duration-secs)
    Run(Box<simulate::RunArgs>),
}

#[derive(clap::Args)]
struct CityArgs {
    #[command(flatten)]
    size: simulate::CitySize,
    /// Output directory
    #[arg(long, default_value = "city")]
    out: PathBuf,
}

#[derive(Subcommand)]
enum DevicesCommand {
    /// Load devices from an inventory GeoJSON FeatureCollection (inserts or updates; the
    /// format is docs/inventory.md). Warns of unknown properties (with the closest known
    /// one), lamps without a rated power and cabinets or routes that do not exist.
    Import {
        file: PathBuf,
        /// Refuse the whole file (write nothing, exit 2) if there is any warning
        #[arg(long)]
        strict: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("CITYHUB_LOG")
                .unwrap_or_else(|_| EnvFilter::new("info,tokio_postgres=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // What reads the output went away (`cityhub audit verify | head -1`): stop
        // quietly, as other Unix tools do.
        Err(e) if closed_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Whether `e` is a write to a pipe whose reader has gone.
fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(&cli.overrides)?;
    match cli.command {
        Command::Serve => serve::serve(config).await,
        Command::Migrate => {
            let db = migrate(&config).await?;
            say!(
                "Database {} is ready ({} storage).",
                store::describe_target(&config.database_url),
                db.path().as_str()
            );
            Ok(())
        }
        Command::Devices {
            command: DevicesCommand::Import { file, strict },
        } => import_inventory(&config, &file, strict).await,
        Command::Simulate {
            command: SimulateCommand::City(args),
        } => simulate::write_city(&args.size, &args.out),
        Command::Simulate {
            command: SimulateCommand::Run(args),
        } => simulate::run(*args, config).await,
        Command::Bench { args } => bench(&config, &args),
        Command::Report { command } => report::run(command, config).await,
        Command::Maintenance { command } => maintenance::run(command, config).await,
        Command::Users { command } => users::run(command, config).await,
        Command::Audit { command } => users::audit(command, config).await,
        Command::Config => {
            if let Err(e) = config.check_serving() {
                eprintln!("warning: `cityhub serve` would refuse this configuration: {e:#}");
            }
            std::io::Write::write_all(
                &mut std::io::stdout(),
                toml::to_string(&config)?.as_bytes(),
            )?;
            Ok(())
        }
    }
}

/// The database migrated, for a command: readings are kept as they are (only `serve`
/// applies the retention, [`migrate_serving`]).
pub(crate) async fn migrate(config: &Config) -> anyhow::Result<store::Admin> {
    migrate_keeping(config, None).await
}

/// The database migrated for the hub, which keeps readings for `retention_days`.
pub(crate) async fn migrate_serving(config: &Config) -> anyhow::Result<store::Admin> {
    migrate_keeping(config, Some(config.storage.retention_days)).await
}

async fn migrate_keeping(
    config: &Config,
    retention_days: Option<i64>,
) -> anyhow::Result<store::Admin> {
    store::Db::migrate(
        &config.database_url,
        config.storage.timescaledb,
        retention_days,
    )
    .await
    .with_context(|| {
        format!(
            "cannot prepare the database {}",
            store::describe_target(&config.database_url)
        )
    })
    .map(store::Admin::from)
}

/// `cityhub devices import`: every warning on stderr, a line of what was written on
/// stdout; with `--strict`, any warning refuses the file.
async fn import_inventory(
    config: &Config,
    file: &std::path::Path,
    strict: bool,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let inventory = model::inventory::parse_inventory(&text)
        .with_context(|| format!("{} is not a usable inventory", file.display()))?;
    let mut db = migrate(config).await?;
    let import = db.import_inventory(&inventory, strict).await?;
    for w in &inventory.warnings {
        eprintln!("warning: {w}");
    }
    for d in &import.dangling {
        eprintln!("warning: {d}");
    }
    let warnings = inventory.warnings.len() + import.dangling.len();
    if import.refused {
        eprintln!(
            "error: {} refused (--strict): {warnings} warning(s) above; nothing was written.",
            file.display()
        );
        std::process::exit(2);
    }
    say!(
        "Imported {} devices and {} routes from {} ({} new tenants, {warnings} warnings).",
        import.outcome.devices_written,
        import.routes_written,
        file.display(),
        import.outcome.tenants_created
    );
    Ok(())
}

/// `cityhub bench ARGS`: `cityhub-bench ARGS`, found next to this binary, with the
/// effective database, storage and rules settings.
fn bench(config: &Config, args: &[String]) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let bench = exe.with_file_name("cityhub-bench");
    anyhow::ensure!(
        bench.exists(),
        "{} is missing: the benchmarks are a program of their own (cargo build --release -p bench)",
        bench.display()
    );
    let mode = match config.storage.timescaledb {
        store::TimescaleMode::Auto => "auto",
        store::TimescaleMode::Require => "require",
        store::TimescaleMode::Off => "off",
    };
    let mut child = std::process::Command::new(&bench);
    child
        .args(args)
        .env("CITYHUB_DATABASE_URL", &config.database_url)
        .env("CITYHUB_TIMESCALEDB", mode);
    if let Some(file) = &config.rules_file {
        child.env("CITYHUB_RULES_FILE", file);
    }
    let status = child
        .status()
        .with_context(|| format!("cannot run {}", bench.display()))?;
    std::process::exit(status.code().unwrap_or(1));
}

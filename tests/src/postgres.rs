//! A throwaway PostgreSQL cluster (initdb in a temporary directory, a free port), for tests
//! that stop and restart the server without disturbing the shared one.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct PrivatePostgres {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
}

fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().expect(
        "PostgreSQL server binaries under /usr/lib/postgresql/*/bin (Debian's postgresql package)",
    )
}

impl PrivatePostgres {
    /// A directory and a port for a cluster not created yet.
    fn unstarted() -> PrivatePostgres {
        let bin = bin_dir();
        let dir = std::env::temp_dir().join(crate::unique("cityhub-pg-"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        // initdb refuses to run as root; the server then runs as `postgres`.
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.starts_with(b"0"))
            .unwrap_or(false);
        if as_postgres {
            Command::new("chown")
                .arg("-R")
                .arg("postgres")
                .arg(&dir)
                .status()
                .expect("chown");
        }
        let port = simulators::broker::free_port().expect("free port");
        PrivatePostgres {
            port,
            dir,
            bin,
            as_postgres,
        }
    }

    pub fn start() -> PrivatePostgres {
        let pg = PrivatePostgres::unstarted();
        pg.run(
            "initdb",
            &[
                "-A",
                "trust",
                "-U",
                "postgres",
                "-D",
                &pg.data().display().to_string(),
            ],
        );
        pg.ctl(&["start", "-w"]);
        pg
    }

    /// A streaming replica of `primary`: a base backup of it, started as a standby that
    /// follows its WAL (in hot standby: it answers reads). Its walreceiver is named
    /// `walreceiver`, which `synchronous_standby_names = '*'` on the primary matches.
    pub fn standby_of(primary: &PrivatePostgres) -> PrivatePostgres {
        let pg = PrivatePostgres::unstarted();
        pg.run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                "postgres",
                "-D",
                &pg.data().display().to_string(),
                "-R",
                "-X",
                "stream",
                // A checkpoint now rather than spread over minutes.
                "-c",
                "fast",
            ],
        );
        pg.ctl(&["start", "-w"]);
        pg
    }

    /// Makes a standby the primary (`pg_ctl promote`), waiting until it takes writes.
    pub fn promote(&self) {
        self.ctl(&["promote", "-w"]);
    }

    /// Immediate shutdown: the server stops at once, as when its machine fails.
    pub fn crash(&self) {
        self.ctl(&["stop", "-m", "immediate", "-w"]);
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.arg("-u").arg("postgres").arg("--").arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .command(tool)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn ctl(&self, args: &[&str]) {
        let mut options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=on",
            self.port,
            self.dir.display()
        );
        // When the suite runs on the TimescaleDB path, so does this cluster.
        if crate::db::timescale_mode() == store::TimescaleMode::Require {
            options.push_str(
                " -c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off",
            );
        }
        let data = self.data().display().to_string();
        let log = self.dir.join("server.log").display().to_string();
        let mut all = vec!["-D", &data, "-l", &log, "-o", &options];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all);
    }

    /// Fast shutdown: connections are cut, as when an operator restarts the server.
    pub fn stop(&self) {
        self.ctl(&["stop", "-m", "fast", "-w"]);
    }

    pub fn start_again(&self) {
        self.ctl(&["start", "-w"]);
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args([
                "-D",
                &self.data().display().to_string(),
                "stop",
                "-m",
                "immediate",
                "-w",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

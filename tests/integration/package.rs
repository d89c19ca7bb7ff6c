//! The Debian package `scripts/package.sh` builds, installed by dpkg into a scratch root
//! (as for a system image being built: `--root` with the maintainer scripts run outside a
//! chroot): it holds the binary, the dashboard, the units and the configuration; the hub
//! installed starts on that configuration and serves that dashboard; a second version
//! upgrades it and keeps what the administrator changed in /etc; removing it keeps the
//! configuration, purging it removes it.

use std::path::{Path, PathBuf};
use std::process::Command;

use tests::broker::TestBroker;
use tests::hub::{cityhub_binary, http_get, HubProcess};
use tests::{unique, TestDb};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A dashboard of one page saying `marker`.
fn dashboard(dir: &Path, marker: &str) -> PathBuf {
    let d = dir.join(format!("dashboard-{marker}"));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("index.html"), format!("<title>{marker}</title>")).unwrap();
    d
}

/// The package of `version`, with the binary the tests run and `dashboard`.
fn package(version: &str, dashboard: &Path, out: &Path) -> PathBuf {
    let run = Command::new("bash")
        .arg(repository().join("scripts/package.sh"))
        .arg("--binary")
        .arg(cityhub_binary())
        .arg("--dashboard")
        .arg(dashboard)
        .args(["--version", version, "--compression", "none", "--out"])
        .arg(out)
        .output()
        .expect("bash");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    PathBuf::from(String::from_utf8(run.stdout).unwrap().trim())
}

/// dpkg on the scratch root; what it said when it fails.
fn dpkg(root: &Path, args: &[&str]) -> Result<String, String> {
    let run = Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        // Outside a chroot, whoever runs the tests; the root holds no libc package, and
        // an upgrade keeps the administrator's configuration without asking.
        .args([
            "--force-script-chrootless",
            "--force-not-root",
            "--force-depends",
            "--force-confold",
        ])
        .args(args)
        .output()
        .expect("dpkg (Debian's package manager)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    if run.status.success() {
        Ok(said)
    } else {
        Err(said)
    }
}

/// What the binary the tests run says it is (`cityhub --version`: `cityhub 0.1.0`).
fn program_version() -> String {
    let out = Command::new(cityhub_binary())
        .arg("--version")
        .output()
        .unwrap();
    let said = String::from_utf8(out.stdout).unwrap();
    said.split_whitespace()
        .nth(1)
        .expect("a version")
        .to_owned()
}

fn installed_version(root: &Path) -> Option<String> {
    let run = Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            root.join("var/lib/dpkg").display()
        ))
        .args(["-W", "-f=${Status} ${Version}", "cityhub"])
        .output()
        .expect("dpkg-query");
    let out = String::from_utf8_lossy(&run.stdout).into_owned();
    out.strip_prefix("install ok installed ").map(str::to_owned)
}

#[tokio::test]
async fn the_package_installs_starts_upgrades_keeping_the_configuration_and_is_removed() {
    let dir = std::env::temp_dir().join(unique("deb-"));
    let root = dir.join("root");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/log"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    let program = program_version();
    let (v1, v2) = (format!("{program}-1"), format!("{program}-2"));
    let first = package(&v1, &dashboard(&dir, "first"), &dir.join("out"));
    assert!(first.ends_with(format!(
        "cityhub_{v1}_{}.deb",
        String::from_utf8(
            Command::new("dpkg")
                .arg("--print-architecture")
                .output()
                .unwrap()
                .stdout
        )
        .unwrap()
        .trim()
    )));

    dpkg(&root, &["-i", first.to_str().unwrap()]).unwrap();
    assert_eq!(installed_version(&root), Some(v1.clone()));
    for file in [
        "usr/bin/cityhub",
        "usr/share/cityhub/dashboard/index.html",
        "lib/systemd/system/cityhub.service",
        "lib/systemd/system/cityhub@.service",
        "etc/cityhub/cityhub.toml",
        "usr/share/doc/cityhub/examples/mosquitto/mosquitto.conf",
        "usr/share/doc/cityhub/examples/mosquitto/acl",
        "usr/share/doc/cityhub/examples/rules.toml",
        "usr/share/doc/cityhub/copyright",
        "usr/share/doc/cityhub/docs/operations.md",
    ] {
        assert!(root.join(file).is_file(), "{file} installed");
    }
    // Every file has its checksum, so that a file changed after the install shows.
    let sums = std::fs::read_to_string(root.join("var/lib/dpkg/info/cityhub.md5sums"))
        .expect("the package carries its files' checksums");
    assert!(sums.contains("  usr/bin/cityhub\n"), "{sums}");
    assert!(
        !sums.contains("etc/cityhub"),
        "conffiles are checked apart: {sums}"
    );
    let config = root.join("etc/cityhub/cityhub.toml");
    // An administrator may put a password in it: not readable by every user.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "{mode:o}");
    let conffiles = std::fs::read_to_string(root.join("var/lib/dpkg/info/cityhub.conffiles"))
        .expect("the package names its conffiles");
    assert_eq!(conffiles.trim(), "/etc/cityhub/cityhub.toml");
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/cityhub.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/cityhub serve")
            && unit.contains("CITYHUB_CONFIG=/etc/cityhub/cityhub.toml"),
        "{unit}"
    );

    // The installed hub, on the installed configuration (its secrets and addresses from
    // the environment, as the units' cityhub.env gives them), serves the installed
    // dashboard.
    let db = TestDb::new().await;
    let broker = TestBroker::start();
    let installed = root.join("usr/bin/cityhub");
    let dashboard_dir = root.join("usr/share/cityhub/dashboard");
    let settings = [
        ("CITYHUB_CONFIG", config.to_str().unwrap()),
        ("CITYHUB_DASHBOARD_DIR", dashboard_dir.to_str().unwrap()),
    ];
    let mut hub = HubProcess::spawn_from(
        &installed,
        &db.url,
        broker.port(),
        &unique("hub-"),
        &settings,
    );
    hub.wait_connected().await;
    let page = http_get(hub.http_port, "/").unwrap();
    assert!(page.contains("<title>first</title>"), "{page}");
    let health = http_get(hub.http_port, "/health").unwrap();
    assert!(health.contains(r#""status":"ok""#), "{health}");
    assert!(hub.terminate(), "the installed hub stops cleanly");

    // The city's administrator changes the configuration; the next version keeps it.
    let mut changed = std::fs::read_to_string(&config).unwrap();
    changed.push_str("\n[storage]\nretention_days = 730\n");
    let changed = changed.replace("[storage]\nretention_days = 365\n", "");
    std::fs::write(&config, &changed).unwrap();
    let second = package(&v2, &dashboard(&dir, "second"), &dir.join("out"));
    dpkg(&root, &["-i", second.to_str().unwrap()]).unwrap();
    assert_eq!(installed_version(&root), Some(v2.clone()));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), changed);
    let page = std::fs::read_to_string(dashboard_dir.join("index.html")).unwrap();
    assert_eq!(page, "<title>second</title>", "the new version's files");
    let shown = Command::new(&installed)
        .arg("--config")
        .arg(&config)
        .arg("config")
        .env("CITYHUB_MQTT_PASSWORD", "ingest-pw")
        .env("CITYHUB_COMMANDS_MQTT_PASSWORD", "commands-pw")
        .output()
        .unwrap();
    let shown_text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown_text.contains("retention_days = 730"), "{shown_text}");

    // A file that is not a package is refused, and what is installed is left alone.
    let bogus = dir.join("bogus.deb");
    std::fs::write(&bogus, b"not a package").unwrap();
    let refused = dpkg(&root, &["-i", bogus.to_str().unwrap()]).unwrap_err();
    assert!(refused.contains("error processing archive"), "{refused}");
    assert_eq!(installed_version(&root), Some(v2.clone()));
    assert!(installed.is_file());

    // Removed: the program goes, the configuration and the secrets stay; purged: they go
    // too, so that a later install does not find them.
    let secrets = root.join("etc/cityhub/cityhub.env");
    std::fs::write(&secrets, "CITYHUB_MQTT_PASSWORD=ingest-pw\n").unwrap();
    std::fs::write(
        root.join("etc/cityhub/a.env"),
        "CITYHUB_HTTP_ADDR=0.0.0.0:8081\n",
    )
    .unwrap();
    dpkg(&root, &["-r", "cityhub"]).unwrap();
    assert!(!installed.exists());
    assert!(
        config.exists() && secrets.exists(),
        "removal keeps the configuration"
    );
    dpkg(&root, &["-P", "cityhub"]).unwrap();
    assert!(
        !root.join("etc/cityhub").exists(),
        "purge removes /etc/cityhub"
    );
    assert_eq!(installed_version(&root), None);

    let _ = std::fs::remove_dir_all(&dir);
}

/// The script says what is wrong with what it was given, and builds nothing.
#[test]
fn the_package_script_refuses_what_it_cannot_package() {
    let dir = std::env::temp_dir().join(unique("deb-bad-"));
    std::fs::create_dir_all(&dir).unwrap();
    let script = repository().join("scripts/package.sh");
    let run = |args: &[&str]| {
        let out = Command::new("bash")
            .arg(&script)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let binary = cityhub_binary();
    let binary = binary.to_str().unwrap();
    let empty = dir.to_str().unwrap();
    let out = dir.join("out");
    let out = out.to_str().unwrap();
    let (ok, err) = run(&["--binary", binary, "--dashboard", empty, "--out", out]);
    assert!(!ok && err.contains("has no index.html"), "{err}");
    let (ok, err) = run(&["--binary", "/nonexistent/cityhub", "--dashboard", empty]);
    assert!(!ok && err.contains("is not an executable"), "{err}");
    let (ok, err) = run(&[
        "--binary",
        binary,
        "--dashboard",
        empty,
        "--version",
        "9.9.9",
    ]);
    assert!(!ok && err.contains("its package is"), "{err}");
    let (ok, err) = run(&["--sign"]);
    assert!(!ok && err.contains("unknown argument `--sign`"), "{err}");
    assert!(!dir.join("out").exists(), "nothing written");
    let _ = std::fs::remove_dir_all(&dir);
}

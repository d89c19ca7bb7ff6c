//! A device maker's integration, written from cityhub's public documents alone
//! (`tests/vendor`, not the project's simulators): its own fleet, each device with its own
//! broker account and last will, an operator on the API, and its own ground truth. The hub
//! runs as a city would run it, on a simulated December night at 600x; the kit scores the
//! outages itself and fails on any miss, false alarm, chronology violation, late
//! resolution or alarm caused by an operator's command.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use simulators::broker::BrokerUser;
use tests::broker::TestBroker;
use tests::hub::{cityhub_binary, HubProcess};
use tests::{unique, TestDb};

const DEVICE_PASSWORD: &str = "vendor-device-password";
/// The kit's night starts at 14:00 in Lisbon, 2026-12-10.
const SIM_ORIGIN: &str = "2026-12-10T14:00:00Z";
const SPEED: u32 = 600;

fn python() -> String {
    std::env::var("CITYHUB_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "CITYHUB_TEST_PYTHON is not set: run the tests with ./scripts/test.sh, which \
             prepares the Python environment (or `source scripts/services.sh; source scripts/python.sh`)"
        )
    })
}

fn kit() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vendor/night.py")
}

/// `cityhub ARGS` with `stdin`: (success, stdout, stderr).
fn cityhub(args: &[&str], db: &str, stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(cityhub_binary())
        .args(args)
        .env("CITYHUB_CONFIG", "/dev/null")
        .env("CITYHUB_LOG", "warn")
        .env("CITYHUB_DATABASE_URL", db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cityhub");
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vendors_fleet_written_from_the_docs_gets_exactly_its_outages() {
    let tenant = unique("vendor");
    let dir = std::env::temp_dir().join(unique("vendor-"));
    std::fs::create_dir_all(&dir).unwrap();
    let inventory = dir.join("inventory.geojson");
    let out = Command::new(python())
        .arg(kit())
        .args(["inventory", "--tenant", &tenant, "--out"])
        .arg(&inventory)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The city's IT: the inventory loads without a warning, every device gets its account.
    let db = TestDb::new().await;
    let path = inventory.to_str().unwrap();
    let (ok, said, err) = cityhub(&["devices", "import", "--strict", path], &db.url, "");
    assert!(ok, "the vendor's inventory: {err}");
    assert!(said.contains("0 warnings"), "{said}");
    let parsed =
        model::inventory::parse_inventory(&std::fs::read_to_string(&inventory).unwrap()).unwrap();
    let accounts: Vec<BrokerUser> = parsed
        .devices
        .iter()
        .map(|d| {
            let name = format!("{}/{}/{}", d.tenant, d.kind.as_str(), d.id);
            BrokerUser::new(&name, DEVICE_PASSWORD)
        })
        .collect();
    let broker = TestBroker::with_users(&accounts);
    let password = "an operator's long password\n";
    let (ok, _, err) = cityhub(
        &[
            "users", "add", "olga", "--role", "operator", "--tenant", &tenant,
        ],
        &db.url,
        password,
    );
    assert!(ok, "{err}");
    let (ok, token, err) = cityhub(&["users", "token", "olga", "--name", "vendor"], &db.url, "");
    assert!(ok, "{err}");

    // The hub on the night's clock, the devices' first instant a few seconds away.
    let sim_origin_ms = model::Timestamp::from_rfc3339(SIM_ORIGIN).unwrap().micros() / 1000;
    let wall_origin_ms = tests::now_ms() + 8_000;
    let clock = format!("{wall_origin_ms},{sim_origin_ms},{SPEED}");
    let mut hub = HubProcess::spawn_with(
        &db.url,
        broker.port(),
        "unused",
        &[("CITYHUB_SIM_CLOCK", &clock)],
    );
    hub.wait_connected().await;

    let report = dir.join("report.json");
    let run = tokio::process::Command::new(python())
        .arg(kit())
        .args(["run", "--tenant", &tenant, "--mqtt-host", "127.0.0.1"])
        .args(["--mqtt-port", &broker.port().to_string()])
        .args(["--device-password", DEVICE_PASSWORD])
        .args(["--api", &format!("http://127.0.0.1:{}", hub.http_port)])
        .args(["--token", token.trim()])
        .args(["--sim-clock", &clock, "--report"])
        .arg(&report)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(420), run)
        .await
        .expect("the vendor's night to end within 7 minutes")
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    println!("{said}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "the vendor's checks failed (exit {:?}); its findings are above",
        out.status.code()
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    println!("{report:#}");
    assert!(hub.is_running(), "the hub survived the night");
    let _ = std::fs::remove_dir_all(dir);
}

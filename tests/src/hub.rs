use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ingest::{IngestConfig, IngestMetrics};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::broker::{COMMANDS_PASSWORD, COMMANDS_USER, HUB_PASSWORD, HUB_USER};

/// Ingestion running inside the test process.
pub struct InProcessHub {
    pub metrics: IngestMetrics,
    stop: CancellationToken,
    task: Option<JoinHandle<Result<(), ingest::IngestError>>>,
}

/// Ingest settings for a test: the private broker (so every tenant's topics), the hub's user.
pub fn ingest_config(port: u16, client_id: &str) -> IngestConfig {
    let mut c = IngestConfig::default();
    c.mqtt.port = port;
    c.mqtt.client_id = client_id.into();
    c.mqtt.username = Some(HUB_USER.into());
    c.mqtt.password = Some(HUB_PASSWORD.into());
    c.mqtt.topics = ingest::default_topics("+");
    c.batch_max_wait_ms = 20;
    c
}

impl InProcessHub {
    pub async fn start(config: IngestConfig, database_url: &str) -> InProcessHub {
        let metrics = IngestMetrics::default();
        let stop = CancellationToken::new();
        let task = tokio::spawn(ingest::run(
            config,
            database_url.to_owned(),
            metrics.clone(),
            model::wall_clock(),
            None,
            stop.clone(),
        ));
        // Wait for the MQTT session so messages published next are not lost to a
        // subscription that does not exist yet.
        let m = metrics.clone();
        crate::eventually(Duration::from_secs(10), "the hub's MQTT session", || {
            let m = m.clone();
            async move { (m.connects.get() > 0).then_some(()) }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await; // SUBACK follows CONNACK
        InProcessHub {
            metrics,
            stop,
            task: Some(task),
        }
    }

    /// Ordered shutdown: what was read is committed and acknowledged.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            t.await.expect("ingest task").expect("ingest result");
        }
    }
}

impl Drop for InProcessHub {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The `cityhub` binary next to the test executable (built by the test command).
pub fn cityhub_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/integration-xxxx -> target/<profile>/cityhub
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("cityhub");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p cityhub)",
        bin.display()
    );
    bin
}

/// `cityhub serve` as a child process.
pub struct HubProcess {
    child: Child,
    /// The `cityhub` binary it runs.
    binary: PathBuf,
    pub http_port: u16,
    env: Vec<(String, String)>,
    /// The process's open-file limit (soft and hard), when the test sets one.
    open_files: Option<u64>,
}

impl HubProcess {
    pub fn spawn(database_url: &str, mqtt_port: u16, client_id: &str) -> HubProcess {
        HubProcess::spawn_with(database_url, mqtt_port, client_id, &[])
    }

    /// Like [`HubProcess::spawn`], with more settings (`CITYHUB_*` variables).
    pub fn spawn_with(
        database_url: &str,
        mqtt_port: u16,
        client_id: &str,
        settings: &[(&str, &str)],
    ) -> HubProcess {
        HubProcess::spawn_from(
            &cityhub_binary(),
            database_url,
            mqtt_port,
            client_id,
            settings,
        )
    }

    /// Like [`HubProcess::spawn_with`], running `binary` (one installed from a package).
    pub fn spawn_from(
        binary: &std::path::Path,
        database_url: &str,
        mqtt_port: u16,
        client_id: &str,
        settings: &[(&str, &str)],
    ) -> HubProcess {
        let http_port = simulators::broker::free_port().expect("free port");
        let mut env = vec![
            ("CITYHUB_CONFIG".into(), "/dev/null".into()),
            ("CITYHUB_DATABASE_URL".into(), database_url.into()),
            ("CITYHUB_MQTT_PORT".into(), mqtt_port.to_string()),
            ("CITYHUB_MQTT_USERNAME".into(), HUB_USER.into()),
            ("CITYHUB_MQTT_PASSWORD".into(), HUB_PASSWORD.into()),
            (
                "CITYHUB_COMMANDS_MQTT_USERNAME".into(),
                COMMANDS_USER.into(),
            ),
            (
                "CITYHUB_COMMANDS_MQTT_PASSWORD".into(),
                COMMANDS_PASSWORD.into(),
            ),
            ("CITYHUB_MQTT_CLIENT_ID".into(), client_id.into()),
            ("CITYHUB_HTTP_ADDR".into(), format!("127.0.0.1:{http_port}")),
            ("CITYHUB_LOG".into(), "warn".into()),
        ];
        env.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut p = HubProcess {
            child: Command::new("true").spawn().expect("spawn"),
            binary: binary.to_owned(),
            http_port,
            env,
            open_files: None,
        };
        p.restart();
        p
    }

    /// Like [`HubProcess::spawn_with`], in a process allowed `open_files` descriptors
    /// (soft and hard limit: the hub cannot raise it).
    pub fn spawn_limited(
        database_url: &str,
        mqtt_port: u16,
        client_id: &str,
        settings: &[(&str, &str)],
        open_files: u64,
    ) -> HubProcess {
        let mut p = HubProcess::spawn_with(database_url, mqtt_port, client_id, settings);
        p.kill_9();
        p.open_files = Some(open_files);
        p.restart();
        p
    }

    /// Starts the process (again), with the same settings.
    pub fn restart(&mut self) {
        let _ = self.child.wait();
        let mut command = match self.open_files {
            None => Command::new(&self.binary),
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(&self.binary);
                c
            }
        };
        self.child = command
            .arg("serve")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .spawn()
            .expect("start cityhub serve");
    }

    /// SIGKILL: no chance to flush, commit or acknowledge anything.
    pub fn kill_9(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }

    /// SIGTERM and wait for the ordered shutdown; returns whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().map(|s| s.success()).unwrap_or(false)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A value from `/metrics` (summed over labels), if the hub answers.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let body = http_get(self.http_port, "/metrics").ok()?;
        let mut total = None;
        for line in body.lines().filter(|l| !l.starts_with('#')) {
            let Some((key, value)) = line.rsplit_once(' ') else {
                continue;
            };
            if key == name || key.starts_with(&format!("{name}{{")) {
                *total.get_or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
            }
        }
        total
    }

    /// Waits until the hub has established `n` MQTT sessions since it started.
    pub async fn wait_connected(&mut self) {
        crate::eventually(Duration::from_secs(20), "the hub's MQTT session", || {
            let up = self
                .metric("cityhub_ingest_mqtt_connects_total")
                .unwrap_or(0.0)
                >= 1.0;
            async move { up.then_some(()) }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await; // SUBACK follows CONNACK
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.0 GET against the hub on localhost.
pub fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

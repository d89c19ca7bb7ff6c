//! Load generation: lamps publishing telemetry as fast as the broker takes it, or at a
//! target rate, each message a single reading or an array (a backlog / segment controller).
//!
//! Every reading's `ts` is its publish time (the newest reading of an array carries it),
//! so the hub's lag histogram measures publish-to-commit latency.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub host: String,
    pub port: u16,
    pub credentials: Option<(String, String)>,
    pub tenant: String,
    /// Lamp ids to publish as, spread over the connections.
    pub devices: Vec<String>,
    pub readings_per_message: usize,
    pub qos: QoS,
    pub duration: Duration,
    /// Messages per second over all connections; `None` for as fast as possible.
    pub rate: Option<f64>,
    pub connections: usize,
    pub client_prefix: String,
}

#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Messages the broker accepted (PUBACK for QoS 1, written for QoS 0).
    pub messages: u64,
    pub readings: u64,
    pub elapsed: Duration,
}

impl LoadReport {
    pub fn msgs_per_s(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("the load generator could not connect to the broker: {0}")]
    Connect(String),
}

/// Publishes per `config` until its duration passes or `stop`; waits for the broker's
/// acknowledgements of what was sent.
pub async fn publish(config: LoadConfig, stop: CancellationToken) -> Result<LoadReport, LoadError> {
    let connections = config.connections.max(1);
    let started = Instant::now();
    let acked = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..connections {
        let devices: Vec<String> = config
            .devices
            .iter()
            .skip(c)
            .step_by(connections)
            .cloned()
            .collect();
        if devices.is_empty() {
            continue;
        }
        tasks.push(tokio::spawn(one_connection(
            config.clone(),
            c,
            devices,
            config.rate.map(|r| r / connections as f64),
            acked.clone(),
            stop.clone(),
        )));
    }
    let mut sent = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(n)) => sent += n,
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(LoadError::Connect(e.to_string())),
        }
    }
    let messages = if config.qos == QoS::AtMostOnce {
        sent
    } else {
        acked.load(Ordering::Relaxed)
    };
    Ok(LoadReport {
        messages,
        readings: messages * config.readings_per_message as u64,
        elapsed: started
            .elapsed()
            .min(config.duration.max(Duration::from_millis(1))),
    })
}

async fn one_connection(
    config: LoadConfig,
    index: usize,
    devices: Vec<String>,
    rate: Option<f64>,
    acked: Arc<AtomicU64>,
    stop: CancellationToken,
) -> Result<u64, LoadError> {
    let mut options = MqttOptions::new(
        format!("{}-{index}", config.client_prefix),
        &config.host,
        config.port,
    );
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_inflight(1000)
        .set_max_packet_size(1 << 20, 1 << 20);
    if let Some((u, p)) = &config.credentials {
        options.set_credentials(u, p);
    }
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    // Wait for the CONNACK so that a refused connection is an error, not a silent zero.
    loop {
        match tokio::time::timeout(Duration::from_secs(10), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Incoming::ConnAck(_)))) => break,
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => return Err(LoadError::Connect(e.to_string())),
            Err(_) => return Err(LoadError::Connect("no CONNACK within 10 s".into())),
        }
    }
    let mine = Arc::new(AtomicU64::new(0));
    let acks = mine.clone();
    let poll_stop = CancellationToken::new();
    let poll_stop2 = poll_stop.clone();
    let poller = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = poll_stop2.cancelled() => return eventloop,
                ev = eventloop.poll() => match ev {
                    Ok(Event::Incoming(Incoming::PubAck(_))) => { acks.fetch_add(1, Ordering::Relaxed); }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
    });

    let topics: Vec<String> = devices
        .iter()
        .map(|d| format!("city/{}/light/{d}/telemetry", config.tenant))
        .collect();
    let mut last_ts = vec![0i64; devices.len()];
    let n = config.readings_per_message.max(1) as i64;
    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut next = 0usize;
    let mut payload = String::with_capacity(160 * n as usize);
    while started.elapsed() < config.duration && !stop.is_cancelled() {
        if let Some(rate) = rate {
            let due = (started.elapsed().as_secs_f64() * rate) as u64;
            if sent >= due {
                tokio::time::sleep(Duration::from_millis(2)).await;
                continue;
            }
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        let newest = now_ms.max(last_ts[next] + n);
        last_ts[next] = newest;
        light_payload(&mut payload, newest, n);
        if client
            .publish(
                topics[next].as_str(),
                config.qos,
                false,
                payload.as_bytes().to_vec(),
            )
            .await
            .is_err()
        {
            break;
        }
        sent += 1;
        next = (next + 1) % devices.len();
    }
    // Let the broker acknowledge what is in flight.
    if config.qos != QoS::AtMostOnce {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && mine.load(Ordering::Relaxed) < sent {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    } else {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = client.disconnect().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    poll_stop.cancel();
    let _ = poller.await;
    acked.fetch_add(mine.load(Ordering::Relaxed), Ordering::Relaxed);
    Ok(sent)
}

/// A lamp telemetry payload: one object, or an array of `n` readings whose newest has
/// `newest_ms` and the others one millisecond apart before it.
pub fn light_payload(payload: &mut String, newest_ms: i64, n: i64) {
    payload.clear();
    if n > 1 {
        payload.push('[');
    }
    for k in 0..n {
        if k > 0 {
            payload.push(',');
        }
        let ts = newest_ms - (n - 1 - k);
        let dim = 40 + ts.rem_euclid(60);
        let _ = write!(
            payload,
            r#"{{"ts":{ts},"on":true,"dim":{dim},"power_w":{dim}.5,"voltage_v":230.{},"current_a":0.24,"pf":0.96,"energy_wh":{}}}"#,
            ts.rem_euclid(10),
            (ts / 1000).rem_euclid(100_000)
        );
    }
    if n > 1 {
        payload.push(']');
    }
}

/// Who counts, and what.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub host: String,
    pub port: u16,
    pub credentials: Option<(String, String)>,
    pub client_id: String,
    pub filter: String,
}

/// Counts messages on `filter` at QoS 1 (acknowledged on receipt), for measuring what the
/// broker alone can deliver.
pub async fn count_messages(
    sub: Subscriber,
    counter: Arc<AtomicU64>,
    ready: tokio::sync::oneshot::Sender<()>,
    stop: CancellationToken,
) -> Result<(), LoadError> {
    let Subscriber {
        host,
        port,
        credentials,
        client_id,
        filter,
    } = sub;
    let mut options = MqttOptions::new(client_id, host, port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(1 << 20, 1 << 20);
    if let Some((u, p)) = credentials {
        options.set_credentials(u, p);
    }
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    client
        .subscribe(filter, QoS::AtLeastOnce)
        .await
        .map_err(|e| LoadError::Connect(e.to_string()))?;
    let mut ready = Some(ready);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            ev = eventloop.poll() => match ev {
                Ok(Event::Incoming(Incoming::Publish(_))) => { counter.fetch_add(1, Ordering::Relaxed); }
                Ok(Event::Incoming(Incoming::SubAck(_))) => { if let Some(r) = ready.take() { let _ = r.send(()); } }
                Ok(_) => {}
                Err(e) => return Err(LoadError::Connect(e.to_string())),
            }
        }
    }
}

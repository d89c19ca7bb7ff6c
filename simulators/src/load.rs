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
    /// A base account: connection `n` signs in as `{user}-{n}`
    /// ([`crate::broker::connection_account`]), with this password.
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
    /// Stop after this many messages over all connections (the duration still applies).
    pub max_messages: Option<u64>,
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
        let mut mine = config.clone();
        mine.max_messages = config.max_messages.map(|m| m / connections as u64);
        tasks.push(tokio::spawn(one_connection(
            mine,
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

/// Unacknowledged messages one connection may have outstanding.
const WINDOW: u64 = 5_000;

/// One publisher connection. Packets are encoded with rumqttc's MQTT codec and written
/// many per system call, so the generator costs little next to the broker it measures
/// (a client that flushes per message saturates a core long before Mosquitto does).
async fn one_connection(
    config: LoadConfig,
    index: usize,
    devices: Vec<String>,
    rate: Option<f64>,
    acked: Arc<AtomicU64>,
    stop: CancellationToken,
) -> Result<u64, LoadError> {
    use bytes::BytesMut;
    use rumqttc::mqttbytes::v4::{self, Connect, Packet};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let connect_err = |e: &dyn std::fmt::Display| LoadError::Connect(e.to_string());
    let mut stream = tokio::net::TcpStream::connect((config.host.as_str(), config.port))
        .await
        .map_err(|e| connect_err(&e))?;
    stream.set_nodelay(true).map_err(|e| connect_err(&e))?;
    // With credentials, connection `index` signs in as an account of its own.
    let mut connect = match &config.credentials {
        Some((u, p)) => {
            let account = crate::broker::connection_account(u, index);
            let mut c = Connect::new(account.clone());
            c.set_login(account, p);
            c
        }
        None => Connect::new(format!("{}-{index}", config.client_prefix)),
    };
    connect.keep_alive = 60;
    let mut out = BytesMut::with_capacity(256 * 1024);
    connect.write(&mut out).map_err(|e| connect_err(&e))?;
    stream.write_all(&out).await.map_err(|e| connect_err(&e))?;
    out.clear();
    let (mut rd, mut wr) = stream.into_split();
    let mut inbuf = BytesMut::with_capacity(64 * 1024);
    // CONNACK first, so a refused connection is an error and not a silent zero.
    let connack = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match v4::read(&mut inbuf, 1 << 20) {
                Ok(p) => return Ok(p),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {
                    if rd.read_buf(&mut inbuf).await.map_err(|e| connect_err(&e))? == 0 {
                        return Err(LoadError::Connect(
                            "the broker closed the connection".into(),
                        ));
                    }
                }
                Err(e) => return Err(connect_err(&e)),
            }
        }
    })
    .await
    .map_err(|_| LoadError::Connect("no CONNACK within 10 s".into()))??;
    match connack {
        Packet::ConnAck(a) if a.code == rumqttc::ConnectReturnCode::Success => {}
        other => {
            return Err(LoadError::Connect(format!(
                "the broker refused the connection: {other:?}"
            )))
        }
    }

    let mine = Arc::new(AtomicU64::new(0));
    let counted = mine.clone();
    let reader = tokio::spawn(async move {
        loop {
            loop {
                match v4::read(&mut inbuf, 1 << 20) {
                    Ok(Packet::PubAck(_)) => {
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            match rd.read_buf(&mut inbuf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
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
    let mut pkid: u16 = 0;
    let mut payload = String::with_capacity(160 * n as usize);
    'publish: while started.elapsed() < config.duration && !stop.is_cancelled() {
        let due = match rate {
            Some(r) => (started.elapsed().as_secs_f64() * r) as u64,
            None => u64::MAX,
        };
        let cap = config.max_messages.unwrap_or(u64::MAX);
        if sent >= cap {
            break;
        }
        let room = WINDOW.saturating_sub(sent - mine.load(Ordering::Relaxed));
        let burst = room.min(due.saturating_sub(sent)).min(256).min(cap - sent);
        if burst == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        for _ in 0..burst {
            let newest = now_ms.max(last_ts[next] + n);
            last_ts[next] = newest;
            light_payload(&mut payload, newest, n);
            pkid = if pkid == u16::MAX { 1 } else { pkid + 1 };
            let mut p =
                rumqttc::Publish::new(topics[next].as_str(), config.qos, payload.as_bytes());
            p.pkid = if config.qos == QoS::AtMostOnce {
                0
            } else {
                pkid
            };
            if p.write(&mut out).is_err() {
                break 'publish;
            }
            sent += 1;
            next = (next + 1) % devices.len();
        }
        if wr.write_all(&out).await.is_err() {
            break;
        }
        out.clear();
    }
    // Let the broker acknowledge what is in flight.
    if config.qos != QoS::AtMostOnce {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && mine.load(Ordering::Relaxed) < sent {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let _ = rumqttc::Disconnect.write(&mut out);
    let _ = wr.write_all(&out).await;
    let _ = wr.shutdown().await;
    reader.abort();
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
        // The readings of one millisecond in 250 are a voltage swing: the rules have
        // outages to open and resolve.
        let volts = if ts.rem_euclid(250) == 0 { 262 } else { 230 };
        let _ = write!(
            payload,
            r#"{{"ts":{ts},"on":true,"dim":{dim},"power_w":{dim}.5,"voltage_v":{volts}.{},"current_a":0.24,"pf":0.96,"energy_wh":{}}}"#,
            ts.rem_euclid(10),
            (ts / 1000).rem_euclid(100_000)
        );
    }
    if n > 1 {
        payload.push(']');
    }
}

/// Ends a persistent session: connecting with a clean session discards what the broker
/// keeps (subscriptions and queued messages) for `client_id`.
pub async fn clear_session(
    host: &str,
    port: u16,
    credentials: Option<(String, String)>,
    client_id: &str,
) -> Result<(), LoadError> {
    let mut options = MqttOptions::new(client_id, host, port);
    options.set_clean_session(true);
    if let Some((u, p)) = credentials {
        options.set_credentials(u, p);
    }
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Incoming::ConnAck(_)))) => break,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(LoadError::Connect(e.to_string())),
            Err(_) => return Err(LoadError::Connect("no CONNACK within 10 s".into())),
        }
    }
    let _ = client.disconnect().await;
    while let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_secs(2), eventloop.poll()).await {
        if matches!(ev, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
            break;
        }
    }
    Ok(())
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

/// Counts messages on `filter` at QoS 1, acknowledging each as it is read, with as little
/// work per message as a client can do: packets are parsed with rumqttc's codec and the
/// PUBACKs of one read go out in one write. What it measures is the broker's pipe.
pub async fn count_messages(
    sub: Subscriber,
    counter: Arc<AtomicU64>,
    ready: tokio::sync::oneshot::Sender<()>,
    stop: CancellationToken,
) -> Result<(), LoadError> {
    use bytes::BytesMut;
    use rumqttc::mqttbytes::v4::{self, Connect, Packet, PubAck, Subscribe};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let err = |e: &dyn std::fmt::Display| LoadError::Connect(e.to_string());
    let mut stream = tokio::net::TcpStream::connect((sub.host.as_str(), sub.port))
        .await
        .map_err(|e| err(&e))?;
    stream.set_nodelay(true).map_err(|e| err(&e))?;
    let mut connect = Connect::new(sub.client_id.clone());
    connect.keep_alive = 60;
    if let Some((u, p)) = &sub.credentials {
        connect.set_login(u, p);
    }
    let mut out = BytesMut::with_capacity(64 * 1024);
    connect.write(&mut out).map_err(|e| err(&e))?;
    let mut subscribe = Subscribe::new(sub.filter.as_str(), QoS::AtLeastOnce);
    subscribe.pkid = 1;
    subscribe.write(&mut out).map_err(|e| err(&e))?;
    stream.write_all(&out).await.map_err(|e| err(&e))?;
    out.clear();
    let mut inbuf = BytesMut::with_capacity(1 << 20);
    let mut ready = Some(ready);
    loop {
        loop {
            match v4::read(&mut inbuf, 1 << 20) {
                Ok(Packet::Publish(p)) => {
                    counter.fetch_add(1, Ordering::Relaxed);
                    if p.qos != QoS::AtMostOnce {
                        let _ = PubAck::new(p.pkid).write(&mut out);
                    }
                }
                Ok(Packet::SubAck(_)) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(Packet::ConnAck(a)) if a.code != rumqttc::ConnectReturnCode::Success => {
                    return Err(LoadError::Connect(format!(
                        "the broker refused the subscriber: {:?}",
                        a.code
                    )));
                }
                Ok(_) => {}
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => break,
                Err(e) => return Err(err(&e)),
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await.map_err(|e| err(&e))?;
            out.clear();
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            n = stream.read_buf(&mut inbuf) => match n {
                Ok(0) => return Err(LoadError::Connect("the broker closed the connection".into())),
                Ok(_) => {}
                Err(e) => return Err(err(&e)),
            }
        }
    }
}

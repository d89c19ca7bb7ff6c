//! Runs a [`Fleet`] against a broker: devices share connections (`devices_per_connection`;
//! a device alone on its connection keeps a last will on its `status`), each lamp's
//! connection subscribes to exactly its lamps' `cmd` topics, and a lost connection is
//! retried with jittered backoff, as field controllers do.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, LastWill, MqttOptions, QoS, SubscribeFilter};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::{Fleet, Message};
use crate::clock::SimClock;

#[derive(Debug, Clone)]
pub struct FleetRun {
    pub host: String,
    pub port: u16,
    /// A base account: connection `n` signs in as `{user}-{n}`
    /// ([`crate::broker::connection_account`]), with this password.
    pub credentials: Option<(String, String)>,
    pub devices_per_connection: usize,
    /// Share of devices (0 to 1) on a connection of their own, with a last will.
    pub own_connection_share: f64,
    pub clock: SimClock,
    /// Client ids are `{client_prefix}-{n}` (without credentials; with them, the
    /// connection's account name).
    pub client_prefix: String,
}

/// Live figures for progress reports.
#[derive(Debug, Default)]
pub struct FleetStats {
    /// Messages the broker has acknowledged.
    pub published: AtomicU64,
    pub connected: AtomicUsize,
    pub commands: AtomicU64,
    /// Scenario faults whose start has passed.
    pub faults_started: AtomicUsize,
}

/// Which devices share which connection: the share chosen for their own connection (from
/// the seed) alone, the others `devices_per_connection` at a time in fleet order.
pub fn connection_groups(fleet: &Fleet, cfg: &FleetRun) -> Vec<Vec<usize>> {
    let per = cfg.devices_per_connection.max(1);
    let mut groups = Vec::new();
    let mut shared = Vec::new();
    for d in 0..fleet.len() {
        if super::noise(fleet.spec.seed, d as u64, 7) < cfg.own_connection_share {
            groups.push(vec![d]);
        } else {
            shared.push(d);
        }
    }
    groups.extend(shared.chunks(per).map(<[usize]>::to_vec));
    groups
}

/// Publishes until `stop`.
pub async fn run(mut fleet: Fleet, cfg: FleetRun, stats: Arc<FleetStats>, stop: CancellationToken) {
    let n = fleet.len();
    let groups = connection_groups(&fleet, &cfg);
    let mut connection_of = vec![0; n];
    for (c, group) in groups.iter().enumerate() {
        for &d in group {
            connection_of[d] = c;
        }
    }
    let (cmd_tx, mut cmd_rx) = mpsc::channel::<(String, Vec<u8>)>(1024);
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    for (c, group) in groups.iter().enumerate() {
        let lamp_cmds: Vec<String> = group
            .iter()
            .filter(|&&d| fleet.topics[d].contains("/light/"))
            .map(|&d| fleet.topics[d].trim_end_matches("telemetry").to_owned() + "cmd")
            .collect();
        let will = (group.len() == 1).then(|| fleet.status_topic(group[0]));
        let (tx, rx) = mpsc::channel::<Message>(10_000);
        senders.push(tx);
        let (client_id, credentials) = match &cfg.credentials {
            Some((user, password)) => {
                let account = crate::broker::connection_account(user, c);
                (account.clone(), Some((account, password.clone())))
            }
            None => (format!("{}-{c}", cfg.client_prefix), None),
        };
        tasks.push(tokio::spawn(connection(
            FleetRun {
                credentials,
                ..cfg.clone()
            },
            client_id,
            lamp_cmds,
            will,
            rx,
            cmd_tx.clone(),
            stats.clone(),
            stop.clone(),
        )));
    }
    drop(cmd_tx);
    let mut out = Vec::new();
    let now = cfg.clock.now();
    for d in 0..n {
        out.push(fleet.online(d, now));
    }
    loop {
        for m in out.drain(..) {
            let c = connection_of[m.device];
            if senders[c].send(m).await.is_err() {
                return;
            }
        }
        let now = cfg.clock.now();
        fleet.due(now, &mut out);
        stats
            .faults_started
            .store(fleet.faults_started(now), Ordering::Relaxed);
        if !out.is_empty() {
            continue;
        }
        let wait = fleet
            .next_due()
            .map(|t| {
                cfg.clock.real(Duration::from_micros(
                    (t.micros() - now.micros()).max(0) as u64
                ))
            })
            .unwrap_or(Duration::from_millis(200))
            .clamp(Duration::from_millis(1), Duration::from_millis(200));
        tokio::select! {
            _ = stop.cancelled() => break,
            cmd = cmd_rx.recv() => if let Some((topic, payload)) = cmd {
                stats.commands.fetch_add(1, Ordering::Relaxed);
                fleet.command(&topic, &payload, cfg.clock.now(), &mut out);
            },
            _ = tokio::time::sleep(wait) => {}
        }
    }
    drop(senders);
    for t in tasks {
        let _ = t.await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    cfg: FleetRun,
    client_id: String,
    lamp_cmds: Vec<String>,
    will: Option<String>,
    mut rx: mpsc::Receiver<Message>,
    cmd_tx: mpsc::Sender<(String, Vec<u8>)>,
    stats: Arc<FleetStats>,
    stop: CancellationToken,
) {
    let mut options = MqttOptions::new(&client_id, &cfg.host, cfg.port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_inflight(1000)
        .set_clean_session(true)
        .set_max_packet_size(1 << 20, 1 << 20);
    if let Some((u, p)) = &cfg.credentials {
        options.set_credentials(u, p);
    }
    if let Some(topic) = &will {
        options.set_last_will(LastWill::new(
            topic,
            r#"{"state":"offline"}"#,
            QoS::AtLeastOnce,
            true,
        ));
    }
    let (client, mut eventloop) = AsyncClient::new(options, 10_000);
    let poll_stop = CancellationToken::new();
    // Messages the broker has acknowledged on this connection, and whether it ever came up.
    let acked = Arc::new(AtomicU64::new(0));
    let ever_up = Arc::new(AtomicBool::new(false));
    let polling = {
        let client = client.clone();
        let stats = stats.clone();
        let acked = acked.clone();
        let ever_up = ever_up.clone();
        let poll_stop = poll_stop.clone();
        tokio::spawn(async move {
            let mut backoff = model::Backoff::standard();
            let mut up = false;
            let jitter = (client_id.bytes().map(u64::from).sum::<u64>() % 100) as f64 / 100.0 + 0.5;
            loop {
                let event = tokio::select! {
                    _ = poll_stop.cancelled() => break,
                    e = eventloop.poll() => e,
                };
                match event {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        up = true;
                        ever_up.store(true, Ordering::Relaxed);
                        backoff.succeeded();
                        stats.connected.fetch_add(1, Ordering::Relaxed);
                        for chunk in lamp_cmds.chunks(100) {
                            let filters: Vec<_> = chunk
                                .iter()
                                .map(|t| SubscribeFilter::new(t.clone(), QoS::AtLeastOnce))
                                .collect();
                            let c = client.clone();
                            tokio::spawn(async move { c.subscribe_many(filters).await });
                        }
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        let _ = cmd_tx.send((p.topic, p.payload.to_vec())).await;
                    }
                    Ok(Event::Incoming(Incoming::PubAck(_))) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                        stats.published.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(error) => {
                        if up {
                            up = false;
                            stats.connected.fetch_sub(1, Ordering::Relaxed);
                        }
                        debug!(message = "Simulated devices lost their connection; retrying.", %error);
                        tokio::select! {
                            _ = poll_stop.cancelled() => break,
                            _ = tokio::time::sleep(backoff.failed().mul_f64(jitter)) => {}
                        }
                    }
                }
            }
            if up {
                stats.connected.fetch_sub(1, Ordering::Relaxed);
            }
        })
    };
    let mut sent = 0u64;
    loop {
        let m = tokio::select! {
            _ = stop.cancelled() => break,
            m = rx.recv() => match m { Some(m) => m, None => break },
        };
        if client
            .publish(m.topic, QoS::AtLeastOnce, m.retain, m.payload)
            .await
            .is_err()
        {
            break;
        }
        sent += 1;
    }
    // What was handed to the client goes out before the goodbye: wait for the broker's
    // acknowledgements (a device does not drop its queue when asked to stop), unless no
    // broker was ever reached.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while ever_up.load(Ordering::Relaxed)
        && acked.load(Ordering::Relaxed) < sent
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = client.disconnect().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    poll_stop.cancel();
    let _ = polling.await;
}

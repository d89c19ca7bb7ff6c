//! `cityhub serve`: ingestion, the API and storage upkeep, with an ordered shutdown.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::leased::Leasing;
use store::leases::Lease;

pub async fn serve(config: Config) -> anyhow::Result<()> {
    config.check_serving()?;
    let open_files = raise_open_file_limit();
    let (http_limits, lowered) = config.http_limits(open_files);
    if lowered {
        warn!(
            message = "http.max_connections lowered to keep descriptors for ingestion and the database; raise the open-file limit (ulimit -n, LimitNOFILE) to allow more.",
            configured = config.http.max_connections,
            max_connections = http_limits.max_connections,
            open_file_limit = open_files
        );
    }
    let db = crate::migrate_serving(&config).await?;
    let storage = db.path();
    drop(db);
    info!(
        message = "Starting cityhub.",
        database = %store::describe_target(&config.database_url),
        storage = storage.as_str(),
        mqtt = %format!("{}:{}", config.ingest.mqtt.host, config.ingest.mqtt.port),
        http = %config.http.addr,
    );

    let mut registry = Registry::default();
    let ingest_metrics = ingest::IngestMetrics::default();
    ingest_metrics.register(&mut registry);
    let rules_metrics = rules::RulesMetrics::default();
    rules_metrics.register(&mut registry);
    let command_metrics = control::CommandMetrics::default();
    command_metrics.register(&mut registry);

    let listener = tokio::net::TcpListener::bind(config.http.addr)
        .await
        .with_context(|| format!("cannot listen on {} (http.addr)", config.http.addr))?;

    // Everything that can refuse to start is checked before anything starts.
    let rules_config = config.rules()?;
    // The map calls a device stale after one of the reporting intervals the rules use.
    let staleness = api::Staleness::new(
        |k| rules_config.silence.interval_s(k),
        rules_config.silence.grace_s,
    );
    let (session_secret, generated) = config.session_secret()?;
    if generated {
        warn!(message = "No http.session_secret is set; using a random one for this run, so sessions end when the hub restarts, and a session signed by another instance is not good here.");
    }
    let leasing = Leasing::new(
        &config.database_url,
        &config.cluster.instance,
        Duration::from_secs(config.cluster.lease_ttl_s),
    );
    info!(message = "Instance.", holder = %leasing.holder, lease_ttl_s = config.cluster.lease_ttl_s);
    leasing.metrics.register(&mut registry);
    // The MQTT session of the instance that held the stream before this one, when it
    // was not this one's (readings the broker queued for it are read by nobody).
    let stray_session: Arc<Mutex<Option<String>>> = Arc::default();
    let health = {
        let (ingestion, leasing, stray) = (
            session_health(&ingest_metrics),
            leasing.clone(),
            stray_session.clone(),
        );
        let mine = ingest_session(&config);
        let check: api::HealthCheck = Arc::new(move || {
            let mut problems = ingestion();
            problems.extend(leasing.problems());
            if let Some(before) = stray.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                problems.push(format!(
                    "the instance that ingested before this one did so as MQTT session `{before}`, this one as `{mine}`: readings the broker queued for `{before}` are read by nobody; give every instance the same ingest account and client id (docs/scale-out.md)"
                ));
            }
            problems
        });
        check
    };
    let api_state = api::AppState::new(
        registry,
        storage.as_str(),
        api::ApiConfig {
            database_url: config.database_url.clone(),
            database_read_url: config.database_read_url.clone(),
            session_secret,
            secure_cookie: config.http.secure_cookie,
            clock: config.clock(),
            dashboard: config.dashboard.clone(),
            health: Some(health),
            http: http_limits,
            exports: config.exports.limits(),
            allowed_origins: config.http.allowed_origins.clone(),
            open311: api::standards::open311::Open311Limits {
                per_key: config.open311.reports_per_minute_per_key,
                per_address: config.open311.reports_per_minute_per_address,
                window: Duration::from_secs(60),
            },
            refusals_every: api::refusals::FLUSH_EVERY,
            staleness,
        },
    );
    api_state.set_public_feeds(config.http.public_feeds.clone());
    api_state
        .public_pages()
        .set_tenants(config.public.tenants.clone());
    api_state
        .public_pages()
        .set_device_ids(config.public.device_ids.clone());
    api_state.set_webhooks_reach_private(config.webhooks.allow_private_addresses);
    api_state.set_email_enabled(config.email.enabled());

    // The API answers on every instance; the rest runs on one at a time, each piece under
    // a lease of its own (docs/scale-out.md).
    let stop_stream = CancellationToken::new();
    let stop_commands = CancellationToken::new();
    let stop_upkeep = CancellationToken::new();
    let stop_api = CancellationToken::new();
    let parts = StreamParts {
        config: config.clone(),
        rules: rules_config,
        ingest_metrics,
        rules_metrics,
        events: api_state.events().clone(),
        stray_session,
    };
    let mut stream_task = {
        let (leasing, stop) = (leasing.clone(), stop_stream.clone());
        tokio::spawn(async move {
            leasing
                .run("stream", stop, |lease, stop| {
                    stream(parts.clone(), lease, stop)
                })
                .await
        })
    };
    let api_task = tokio::spawn(api::serve(listener, api_state, stop_api.clone()));
    let commands_task = {
        let (leasing, stop, config) = (leasing.clone(), stop_commands.clone(), config.clone());
        tokio::spawn(async move {
            leasing
                .run("commands", stop, |_, stop| {
                    commands(config.clone(), command_metrics.clone(), stop)
                })
                .await
        })
    };
    let upkeep_tasks = [
        {
            let (leasing, stop, config) = (leasing.clone(), stop_upkeep.clone(), config.clone());
            tokio::spawn(async move {
                leasing
                    .run("upkeep", stop, |_, stop| {
                        let config = config.clone();
                        async move {
                            upkeep(config, stop).await;
                            Ok(())
                        }
                    })
                    .await
            })
        },
        {
            let (leasing, stop, config) = (leasing.clone(), stop_upkeep.clone(), config.clone());
            tokio::spawn(async move {
                leasing
                    .run("audit-anchor", stop, |_, stop| {
                        let (url, every) = (
                            config.database_url.clone(),
                            Duration::from_secs(config.audit.anchor_log_s),
                        );
                        async move {
                            log_audit_anchor(url, every, stop).await;
                            Ok(())
                        }
                    })
                    .await
            })
        },
        {
            let (leasing, stop, config) = (leasing.clone(), stop_upkeep.clone(), config.clone());
            tokio::spawn(async move {
                leasing
                    .run("webhooks", stop, |_, stop| {
                        let (webhooks, email, url) = (
                            config.webhooks.clone(),
                            config.email.clone(),
                            config.database_url.clone(),
                        );
                        async move {
                            notify::run(webhooks, email, url, stop)
                                .await
                                .map_err(anyhow::Error::from)
                        }
                    })
                    .await
            })
        },
        {
            let (leasing, stop, config) = (leasing.clone(), stop_upkeep.clone(), config.clone());
            tokio::spawn(async move {
                leasing
                    .run("rollups", stop, |_, stop| {
                        let (url, clock, every) = (
                            config.database_url.clone(),
                            config.clock(),
                            Duration::from_secs(config.storage.rollup_refresh_s),
                        );
                        async move {
                            crate::rollup_refresh::run(url, clock, every, stop).await;
                            Ok(())
                        }
                    })
                    .await
            })
        },
    ];

    let ended_early = tokio::select! {
        _ = shutdown_signal() => {
            info!(message = "Shutdown requested; stopping ingestion first.");
            None
        }
        r = &mut stream_task => Some(r),
    };
    // Order: stop reading MQTT, commit and acknowledge what was read, let the rules
    // finish it, then stop delivering commands, then the rest.
    stop_stream.cancel();
    let stream_result = match ended_early {
        Some(r) => r,
        None => stream_task.await,
    };
    // Commands the broker took are recorded as sent; the others stay pending.
    stop_commands.cancel();
    match commands_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => error!(message = "The command dispatcher failed.", error = %format!("{e:#}")),
        Err(e) => error!(message = "The command dispatcher task failed.", error = %e),
    }
    stop_upkeep.cancel();
    stop_api.cancel();
    let _ = api_task.await;
    for task in upkeep_tasks {
        if let Ok(Err(e)) = task.await {
            error!(message = "Upkeep failed.", error = %format!("{e:#}"));
        }
    }
    match stream_result {
        Ok(Ok(())) => {
            info!(message = "cityhub stopped.");
            Ok(())
        }
        Ok(Err(e)) => Err(e),
        Err(e) => Err(anyhow::anyhow!("ingestion task failed: {e}")),
    }
}

/// What the stream (ingestion, live device events, the rules) is started from, each time
/// this instance takes its lease.
#[derive(Clone)]
struct StreamParts {
    config: Config,
    rules: rules::RulesConfig,
    ingest_metrics: ingest::IngestMetrics,
    rules_metrics: rules::RulesMetrics,
    events: api::live::EventHub,
    stray_session: Arc<Mutex<Option<String>>>,
}

/// The MQTT session ingestion uses: its account and client id.
fn ingest_session(config: &Config) -> String {
    let mqtt = &config.ingest.mqtt;
    store::mqtt::session_key(mqtt.username.as_deref(), &mqtt.client_id)
}

/// Records this instance's MQTT session on the stream's lease, and notes the previous
/// holder's when it was another: the broker keeps what was queued for that one.
async fn check_stream_session(p: &StreamParts, lease: &Lease) {
    let mine = ingest_session(&p.config);
    let db = match store::Db::connect(&p.config.database_url).await {
        Ok(db) => db,
        Err(error) => {
            warn!(message = "Cannot compare this instance's MQTT session with the previous holder's.", %error);
            return;
        }
    };
    match db.lease_detail(&lease.name).await {
        Ok(Some(before)) if before != mine => {
            error!(
                message = "The instance that ingested before this one used another MQTT session: readings the broker queued for it are read by nobody. Give every instance the same ingest account and client id.",
                previous_session = %before,
                this_session = %mine
            );
            *p.stray_session.lock().unwrap_or_else(|p| p.into_inner()) = Some(before);
        }
        Ok(_) => {}
        Err(error) => warn!(message = "Cannot read the stream's previous MQTT session.", %error),
    }
    if let Err(error) = db.set_lease_detail(lease, &mine).await {
        warn!(message = "Cannot record this instance's MQTT session on the stream's lease.", %error);
    }
}

/// Ingestion and the rules, under lease `lease`, until `stop` (then ingestion stops
/// first, and the rules finish what it committed) or ingestion fails.
async fn stream(p: StreamParts, lease: Lease, stop: CancellationToken) -> anyhow::Result<()> {
    check_stream_session(&p, &lease).await;
    let config = &p.config;
    // Committed rows go from ingestion to the rules engine; neither knows the other.
    // A few batches in flight: if the rules fall behind, ingestion waits (memory stays bounded).
    let (rows_tx, rows_rx) = tokio::sync::mpsc::channel(2);
    // On their way, live events copy device states out of them (only while someone
    // listens; never making ingestion wait): ingestion -> tap -> rules.
    let (tapped_tx, tapped_rx) = tokio::sync::mpsc::channel(1);
    let stop_rules = CancellationToken::new();
    let rules_task = tokio::spawn(rules::driver::run(
        config.database_url.clone(),
        rules::driver::RulesSource {
            path: config.rules_file.clone(),
            config: p.rules.clone(),
        },
        rows_rx,
        config.clock(),
        p.rules_metrics.clone(),
        Some(lease.fence()),
        stop_rules.clone(),
    ));
    let stop_ingest = CancellationToken::new();
    let mut ingest_task = tokio::spawn(ingest::run(
        config.ingest.clone(),
        config.database_url.clone(),
        p.ingest_metrics.clone(),
        config.clock(),
        Some(tapped_tx),
        stop_ingest.clone(),
    ));
    tokio::spawn(api::live::devices::tap(
        tapped_rx,
        rows_tx,
        p.events.clone(),
    ));
    let ended_early = tokio::select! {
        _ = stop.cancelled() => None,
        r = &mut ingest_task => Some(r),
    };
    stop_ingest.cancel();
    let ingest_result = match ended_early {
        Some(r) => r,
        None => ingest_task.await,
    };
    // Ingestion has handed over its last committed rows; the rules finish them.
    match tokio::time::timeout(Duration::from_secs(20), rules_task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => error!(message = "The rules engine failed.", error = %e),
        Ok(Err(e)) => error!(message = "The rules engine task failed.", error = %e),
        Err(_) => {
            warn!(message = "The rules engine did not finish in time.");
            stop_rules.cancel();
        }
    }
    match ingest_result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e).context("ingestion failed"),
        Err(e) => Err(anyhow::anyhow!("ingestion task failed: {e}")),
    }
}

/// The command dispatcher, on an MQTT connection of its own, under an account (and so a
/// client id) of its own, until `stop`.
async fn commands(
    config: Config,
    metrics: control::CommandMetrics,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mqtt = &config.ingest.mqtt;
    control::run(
        config.commands.clone(),
        control::dispatcher::Broker {
            host: mqtt.host.clone(),
            port: mqtt.port,
            client_id: config
                .commands
                .mqtt_username
                .clone()
                .unwrap_or_else(|| format!("{}-commands", mqtt.client_id)),
            username: config.commands.mqtt_username.clone(),
            password: config.commands.mqtt_password.clone(),
        },
        config.database_url.clone(),
        metrics,
        config.clock(),
        stop,
    )
    .await
    .map_err(anyhow::Error::from)
}

/// Raises the soft limit on open files to the hard limit (many systems start processes
/// at 1024 with a hard limit far above); returns the limit in force.
fn raise_open_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            info!(message = "Open-file limit.", open_file_limit = limit);
            limit
        }
        Err(error) => {
            let (soft, _) = rlimit::Resource::NOFILE.get().unwrap_or((1024, 1024));
            warn!(message = "Cannot raise the open-file limit.", %error, open_file_limit = soft);
            soft
        }
    }
}

/// How long `/health` says `degraded` after the broker lost the hub's session.
const SESSION_LOSS_REPORTED_FOR_S: i64 = 24 * 3600;

/// How long ingestion may be without a broker connection before `/health` says so (a
/// reconnect takes a moment; a broker restart a few seconds).
const DISCONNECTED_REPORTED_AFTER_S: i64 = 15;

/// `/health`'s view of ingestion: degraded while it has had no broker connection for a
/// while, and for a day after the broker turned out not to hold the hub's MQTT session
/// (readings queued for the hub may have been discarded; remembered across restarts).
fn session_health(metrics: &ingest::IngestMetrics) -> api::HealthCheck {
    let lost_at = metrics.session_lost_at.clone();
    let disconnected = metrics.mqtt_disconnected_since.clone();
    let show = |at: i64| {
        chrono::DateTime::from_timestamp(at, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    };
    std::sync::Arc::new(move || {
        let now = model::Timestamp::now().micros() / 1_000_000;
        let mut problems = Vec::new();
        let since = disconnected.get();
        if since > 0 && now - since >= DISCONNECTED_REPORTED_AFTER_S {
            problems.push(format!(
                "ingestion has had no connection to the MQTT broker since {}: readings wait at the broker, or are lost if it is down",
                show(since)
            ));
        }
        let at = lost_at.get();
        if at > 0 && now - at < SESSION_LOSS_REPORTED_FOR_S {
            problems.push(format!(
                "the MQTT broker did not keep the hub's session (noticed at {}): readings published while the hub was away may have been lost upstream",
                show(at)
            ));
        }
        problems
    })
}

/// Logs the audit log's head (`SEQ:HASH`) at start and whenever it has moved, every
/// `every`: a log shipper then keeps anchors outside the database, which `cityhub audit
/// verify --anchor` checks the chain against.
async fn log_audit_anchor(url: String, every: Duration, stop: CancellationToken) {
    let mut logged: Option<store::AuditAnchor> = None;
    loop {
        let head = match store::Admin::connect(&url).await {
            Ok(db) => db.audit_head().await,
            Err(e) => Err(e),
        };
        match head {
            Ok(Some(head)) if logged.as_ref() != Some(&head) => {
                info!(
                    message = "Audit log head; keep it elsewhere to check the log against (cityhub audit verify --anchor).",
                    anchor = %head
                );
                logged = Some(head);
            }
            Ok(_) => {}
            Err(e) => warn!(message = "Cannot read the audit log's head; will retry.", error = %e),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Hourly: partitions ahead and retention (native partitioning only), and dead letters
/// past theirs.
async fn upkeep(config: Config, stop: CancellationToken) {
    loop {
        match store::Admin::connect(&config.database_url).await {
            Ok(mut db) => {
                if let Err(e) = db
                    .maintain_partitions((config.clock())(), config.storage.retention_days)
                    .await
                {
                    warn!(message = "Partition upkeep failed; will retry.", error = %e);
                }
                let days = config.storage.dead_letter_retention_days;
                let before = chrono::Utc::now() - chrono::Duration::days(days);
                match db.prune_dead_letters(before).await {
                    Ok(0) => {}
                    Ok(deleted) => {
                        info!(
                            message = "Old dead letters deleted.",
                            deleted,
                            retention_days = days
                        )
                    }
                    Err(e) => {
                        warn!(message = "Deleting old dead letters failed; will retry.", error = %e)
                    }
                }
                if let Err(e) = db.prune_topic_digests(before).await {
                    warn!(message = "Forgetting old topic digests failed; will retry.", error = %e);
                }
            }
            Err(e) => warn!(message = "Partition upkeep cannot connect; will retry.", error = %e),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(e) => {
                error!(message = "Cannot listen for SIGTERM.", error = %e);
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

//! `cityhub bench api`: the API at city scale while ingestion runs, and a large export.
//!
//! Set-up, on a fresh database: an inventory of `--lamps` lamps over ten districts;
//! `--days` of 15-minute history for the first `--history-lamps` of them (rows built in
//! memory and written through the store's write path, binary COPY on two connections),
//! the rollups brought up to date, and a newest state for every lamp. Then the hub
//! (`cityhub serve`, a child process) serves the API while the load generator publishes at
//! a city's design load (`--ingest-rate`, 3,000 msgs/s; 0 for half the hub's maximum,
//! measured first), and the endpoints are called, taking gzip as browsers do (only the
//! state is served compressed):
//!
//! - `GET /api/v1/state` (every lamp);
//! - `GET /api/v1/devices/{id}/history?bucket=hour` of a random lamp with history, over
//!   the whole history;
//! - `GET /api/v1/reports/energy` of a random district over the whole history.
//!
//! First in an open loop, as operators' screens call: the three endpoints at once, each
//! at `--rate` calls a second (50) on a fixed schedule for `--duration-secs` after
//! `--warm-up-secs` (2) not counted, a call's latency counted from when it was due, so a
//! hub that falls behind shows it (no coordinated omission). Then in a closed loop: `--clients` concurrent clients call each
//! endpoint in turn as fast as it answers. The `RESULT` line gives the open loop's p99s.
//!
//! Last, one client exports `--export-rows` readings (Parquet, or CSV) while the hub's
//! resident memory is sampled every 100 ms. An endpoint that is not served (404 for the
//! route) is reported as missing, never given a figure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, DurationRound, SecondsFormat, Utc};
use clap::{Args, ValueEnum};
use model::{Cell, RecordType, Row, Timestamp};
use rand::{Rng, SeedableRng};
use rumqttc::QoS;
use simulators::broker::{free_port, Broker};
use simulators::load::{self, LoadConfig};
use store::{Admin, Db, Ingestion, ReadingBatch};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::{
    bench_devices, create_database, drop_database, sql, wait_for, Hub, LOAD_PASSWORD, TENANT,
};
use crate::Config;

#[derive(Args, Clone)]
pub struct ApiBench {
    /// Lamps in the inventory
    #[arg(long, default_value_t = 100_000)]
    lamps: usize,
    /// Lamps with a 15-minute history
    #[arg(long, default_value_t = 10_000)]
    history_lamps: usize,
    /// Days of history
    #[arg(long, default_value_t = 30)]
    days: i64,
    /// Open loop: calls a second to each endpoint, all three at once (0: no open loop)
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Open loop: seconds of calls first at the same rate, not counted (the hub's first
    /// answers after its start build its caches)
    #[arg(long, default_value_t = 2)]
    warm_up_secs: u64,
    /// Closed loop: concurrent API clients per endpoint (0: no closed loop)
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Seconds of calls per endpoint
    #[arg(long, default_value_t = 20)]
    duration_secs: u64,
    /// Readings to export (from the start of the history)
    #[arg(long, default_value_t = 10_000_000)]
    export_rows: u64,
    #[arg(long, value_enum, default_value_t = ExportFormat::Parquet)]
    export_format: ExportFormat,
    /// Ingest rate during the measurements, messages/s; 0 for half the hub's maximum,
    /// measured first
    #[arg(long, default_value_t = 3000.0)]
    ingest_rate: f64,
    /// Publisher connections
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Keep the benchmark database afterwards
    #[arg(long)]
    keep_db: bool,
    /// Only the export: no rollups and no endpoint calls (a large export without the
    /// rollups' set-up time)
    #[arg(long)]
    export_only: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ExportFormat {
    Csv,
    Parquet,
}

/// Lamp readings written per transaction while filling the history.
const FILL_BATCH: usize = 200_000;
/// Quarters of a UTC day a history lamp burns: 18:00 to 07:00.
const BURNING: std::ops::Range<i64> = 28..72;
const ADMIN: &str = "bench-admin";

/// Latencies of one endpoint, or why there are none.
enum Measured {
    Figures {
        calls: usize,
        errors: usize,
        p50_ms: f64,
        p99_ms: f64,
        bytes: u64,
    },
    Missing(String),
}

impl Measured {
    fn p99(&self) -> String {
        match self {
            Measured::Figures { p99_ms, .. } => format!("{p99_ms:.0}"),
            Measured::Missing(_) => "missing".into(),
        }
    }
}

pub async fn run(args: ApiBench, config: Config) -> anyhow::Result<()> {
    if args.history_lamps > args.lamps {
        bail!("--history-lamps cannot exceed --lamps");
    }
    let broker = super::bench_broker()?;
    let name = format!("cityhub_bench_api_{}", std::process::id());
    let url = create_database(&config.database_url, &name).await?;
    let result = measure(&args, &config, &broker, &url).await;
    if !args.keep_db {
        drop_database(&config.database_url, &name).await;
    } else {
        eprintln!("kept the database {name}");
    }
    result
}

async fn measure(
    args: &ApiBench,
    config: &Config,
    broker: &Broker,
    url: &str,
) -> anyhow::Result<()> {
    let retention = args.days + 5;
    let mut db = Admin::from(Db::migrate(url, config.storage.timescaledb, Some(retention)).await?);
    db.import_devices(&bench_devices(args.lamps)).await?;
    let sql = sql(url).await?;
    let ids: Vec<i32> = sql
        .query(
            "SELECT id FROM devices ORDER BY ext_id LIMIT $1",
            &[&(args.history_lamps as i64)],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    eprintln!(
        "bench api: {} lamps, {} with {} days of 15-minute history, storage {}",
        args.lamps,
        args.history_lamps,
        args.days,
        db.path().as_str()
    );

    let now = Utc::now();
    let end = now.duration_trunc(chrono::Duration::minutes(15))?;
    let start = end - chrono::Duration::days(args.days);
    let t = Instant::now();
    let rows = fill_history(url, &ids, start, end).await?;
    let fill_s = t.elapsed().as_secs_f64();
    eprintln!(
        "history: {rows} readings written in {fill_s:.1} s ({:.0} readings/s)",
        rows as f64 / fill_s
    );
    let t = Instant::now();
    latest_for_all(url, &sql, now).await?;
    eprintln!(
        "latest state of {} lamps in {:.1} s",
        args.lamps,
        t.elapsed().as_secs_f64()
    );
    if !args.export_only {
        let t = Instant::now();
        let rolled = db.refresh_rollups(now).await?;
        eprintln!(
            "rollups: {} quarters in {} runs brought up to date in {:.1} s",
            rolled.buckets,
            rolled.runs,
            t.elapsed().as_secs_f64()
        );
    }
    let token = admin_token(&mut db).await?;
    sql.batch_execute("VACUUM ANALYZE").await?;

    let http_port = free_port()?;
    let env = [("CITYHUB_RETENTION_DAYS", retention.to_string())];
    let mut hub = Hub::spawn(url, broker.port, http_port, "bench-api-hub", &env)?;
    hub.wait_ready().await?;
    hub.wait_connected().await?;

    let rate = match args.ingest_rate {
        r if r > 0.0 => r,
        _ => {
            let before = hub.metrics()?.rows;
            let t0 = Instant::now();
            let report = load::publish(
                load_config(args, broker, None, Duration::from_secs(10), "max"),
                CancellationToken::new(),
            )
            .await?;
            let rows = wait_for(
                || hub.metrics().map(|m| m.rows).unwrap_or(0),
                Some(before + report.readings),
                Duration::from_secs(120),
            )
            .await;
            let max = (rows - before) as f64 / t0.elapsed().as_secs_f64();
            eprintln!("hub ingest, full speed: {max:.0} msgs/s");
            max / 2.0
        }
    };
    eprintln!("ingest during the measurements: {rate:.0} msgs/s");
    let stop_load = CancellationToken::new();
    let background = tokio::spawn(load::publish(
        load_config(
            args,
            broker,
            Some(rate),
            Duration::from_secs(24 * 3600),
            "half",
        ),
        stop_load.clone(),
    ));
    let from = rfc3339(start);
    let to = rfc3339(end);
    let duration = Duration::from_secs(args.duration_secs);
    let history_devices = args.history_lamps;
    let (f, t) = (from.clone(), to.clone());
    let (f2, t2) = (from.clone(), to.clone());
    let endpoints: [(String, PathFn); 3] = [
        (
            "GET /api/v1/state (every lamp)".into(),
            Arc::new(|_| "/api/v1/state".to_owned()),
        ),
        (
            format!(
                "GET /api/v1/devices/{{id}}/history?bucket=hour ({} days)",
                args.days
            ),
            Arc::new(move |rng| {
                format!(
                    "/api/v1/devices/B{:06}/history?from={f}&to={t}&bucket=hour",
                    rng.gen_range(0..history_devices)
                )
            }),
        ),
        (
            format!("GET /api/v1/reports/energy ({} days)", args.days),
            Arc::new(move |rng| {
                format!(
                    "/api/v1/reports/energy?district=d{}&from={f2}&to={t2}",
                    rng.gen_range(0..10)
                )
            }),
        ),
    ];
    // Neither loop with --export-only: the endpoints are not measured.
    let open = if args.export_only || args.rate <= 0.0 {
        let why = "not measured (--export-only or --rate 0)";
        endpoints
            .iter()
            .map(|_| Measured::Missing(why.into()))
            .collect()
    } else {
        let warm_up = Duration::from_secs(args.warm_up_secs);
        open_loop(
            http_port,
            &token,
            args.rate,
            (warm_up, duration),
            &endpoints,
        )
        .await
    };
    for ((label, _), m) in endpoints.iter().zip(&open) {
        show(
            &format!("open loop, {} calls/s each: {label}", args.rate),
            m,
        );
    }
    let clients = if args.export_only { 0 } else { args.clients };
    for (label, path) in &endpoints {
        let path = path.clone();
        let m = calls(http_port, &token, clients, duration, move |rng| path(rng)).await;
        show(&format!("closed loop, {clients} clients: {label}"), &m);
    }
    let [state, history, report] =
        <[Measured; 3]>::try_from(open).unwrap_or_else(|_| unreachable!("one figure per endpoint"));

    // The export: its first readings, as many as asked (ten lamps' worth per quarter).
    let per_hour = args.history_lamps as u64 * 4;
    let hours = args.export_rows.div_ceil(per_hour.max(1)) as i64;
    let export_to = (start + chrono::Duration::hours(hours)).min(end);
    let format = match args.export_format {
        ExportFormat::Csv => "csv",
        ExportFormat::Parquet => "parquet",
    };
    let path = format!(
        "/api/v1/exports/light?from={from}&to={}&format={format}",
        rfc3339(export_to)
    );
    let rss_before = rss_mb(hub.child.id(), "VmRSS:");
    let sampling = CancellationToken::new();
    let sampler = tokio::spawn(sample_rss(hub.child.id(), sampling.clone()));
    let t = Instant::now();
    let exported = export(http_port, &token, &path, args.export_format).await;
    let export_s = t.elapsed().as_secs_f64();
    sampling.cancel();
    let rss_peak = sampler.await.unwrap_or(f64::NAN);
    stop_load.cancel();
    let published = background.await.ok().and_then(Result::ok);
    hub.stop();

    let export_rate = match &exported {
        Ok((rows, bytes)) => {
            eprintln!(
                "export ({format}): {rows} readings, {:.1} MB in {export_s:.1} s: {:.0} readings/s; hub RSS {rss_before:.0} MB before, peak {rss_peak:.0} MB during",
                *bytes as f64 / 1e6,
                *rows as f64 / export_s
            );
            format!("{:.0}", *rows as f64 / export_s)
        }
        Err(e) => {
            eprintln!("export ({format}): failed: {e:#}");
            "failed".into()
        }
    };
    if let Some(p) = published {
        eprintln!(
            "ingest during the measurements: {} messages published, {:.0} msgs/s",
            p.messages,
            p.msgs_per_s()
        );
    }
    println!(
        "RESULT state_p99_ms={} history_p99_ms={} report_p99_ms={} export_rows_per_s={export_rate}",
        state.p99(),
        history.p99(),
        report.p99()
    );
    Ok(())
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn show(what: &str, m: &Measured) {
    match m {
        Measured::Figures {
            calls,
            errors,
            p50_ms,
            p99_ms,
            bytes,
        } => eprintln!(
            "{what}: {calls} calls ({errors} not 200), p50 {p50_ms:.1} ms, p99 {p99_ms:.1} ms, {:.0} kB per answer",
            *bytes as f64 / (*calls).max(1) as f64 / 1e3
        ),
        Measured::Missing(why) => eprintln!("{what}: missing ({why})"),
    }
}

fn load_config(
    args: &ApiBench,
    broker: &Broker,
    rate: Option<f64>,
    duration: Duration,
    tag: &str,
) -> LoadConfig {
    LoadConfig {
        host: "127.0.0.1".into(),
        port: broker.port,
        credentials: Some(("loadgen".into(), LOAD_PASSWORD.into())),
        tenant: TENANT.into(),
        devices: (0..args.lamps).map(|i| format!("B{i:06}")).collect(),
        readings_per_message: 1,
        qos: QoS::AtLeastOnce,
        duration,
        rate,
        connections: args.connections,
        client_prefix: format!("bench-api-load-{tag}"),
        max_messages: None,
    }
}

/// A history lamp's reading in quarter `q` (quarters since the Unix epoch): burning at
/// night, cumulative energy and burning hours that follow from the quarters burnt.
fn history_row(q: i64, lamp: usize) -> Row {
    let fields = RecordType::Light.fields().len();
    let index = |name| RecordType::Light.field_index(name).unwrap_or(0);
    let day = q.div_euclid(96);
    let of_day = q.rem_euclid(96);
    let on = !BURNING.contains(&of_day);
    let burnt = day * (96 - (BURNING.end - BURNING.start))
        + of_day.min(BURNING.start)
        + (of_day - BURNING.end).max(0);
    let power = if on { 95.0 + (lamp % 10) as f64 } else { 0.5 };
    let mut cells = vec![Cell::Null; fields];
    cells[index("on")] = Cell::Bool(on);
    cells[index("dim")] = Cell::Num(if on { 100.0 } else { 0.0 });
    cells[index("power_w")] = Cell::Num(power);
    cells[index("voltage_v")] = Cell::Num(229.0 + (q % 3) as f64);
    cells[index("energy_wh")] = Cell::Num(burnt as f64 * 25.0);
    cells[index("burn_hours")] = Cell::Num(burnt as f64 * 0.25);
    Row {
        ts: Timestamp(q * 900_000_000 + (lamp % 900) as i64 * 1_000_000),
        cells,
        extra: None,
    }
}

/// Writes the history of `ids` in `[start, end)`, a reading per lamp and quarter, on two
/// connections; the readings written.
async fn fill_history(
    url: &str,
    ids: &[i32],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> anyhow::Result<u64> {
    let (tx, rx) = tokio::sync::mpsc::channel::<ReadingBatch>(2);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut writers = Vec::new();
    for _ in 0..2 {
        let rx = rx.clone();
        let mut db = Ingestion::connect(url).await?;
        writers.push(tokio::spawn(async move {
            let mut rows = 0u64;
            loop {
                let batch = rx.lock().await.recv().await;
                let Some(batch) = batch else {
                    return anyhow::Ok(rows);
                };
                rows += db.write_batch(&batch).await?.inserted[RecordType::Light.index()];
            }
        }));
    }
    let (first, last) = (start.timestamp() / 900, end.timestamp() / 900);
    let mut batch = ReadingBatch::default();
    let mut last_report = Instant::now();
    for q in first..last {
        for (lamp, &id) in ids.iter().enumerate() {
            batch.push(RecordType::Light, id, history_row(q, lamp));
        }
        if batch.reading_rows() >= FILL_BATCH {
            // The latest state comes later, from the newest readings of every lamp.
            batch.take_latest();
            tx.send(std::mem::take(&mut batch)).await?;
        }
        if last_report.elapsed() > Duration::from_secs(15) {
            eprintln!(
                "  history: {:.0}% written",
                (q - first) as f64 * 100.0 / (last - first) as f64
            );
            last_report = Instant::now();
        }
    }
    batch.take_latest();
    tx.send(batch).await?;
    drop(tx);
    let mut rows = 0;
    for w in writers {
        rows += w.await??;
    }
    Ok(rows)
}

/// One reading a minute old for every lamp, and the latest state it makes.
async fn latest_for_all(
    url: &str,
    sql: &tokio_postgres::Client,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let mut db = Ingestion::connect(url).await?;
    let ids: Vec<i32> = sql
        .query("SELECT id FROM devices ORDER BY ext_id", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let q = (now.timestamp() - 60) / 900;
    let mut batch = ReadingBatch::default();
    for (lamp, id) in ids.into_iter().enumerate() {
        let mut row = history_row(q, lamp);
        row.ts = Timestamp::from_unix_ms(now.timestamp_millis() - 60_000).unwrap_or(row.ts);
        batch.push(RecordType::Light, id, row);
    }
    db.write_batch(&batch).await?;
    db.upsert_latest(&batch.take_latest()).await?;
    Ok(())
}

/// An admin of the benchmark's tenant and an API token of theirs.
async fn admin_token(db: &mut Admin) -> anyhow::Result<String> {
    let hash = ::api::auth::hash_password("bench-admin-password")
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))?;
    let tenants = [TENANT.to_owned()];
    db.add_user(
        &store::NewUser {
            username: ADMIN,
            password_hash: &hash,
            role: model::Role::Admin.as_str(),
            team: None,
            tenants: &tenants,
        },
        "bench",
    )
    .await?;
    let token = ::api::auth::new_api_token();
    db.add_api_token(
        ADMIN,
        "bench",
        &::api::auth::api_token_digest(&token),
        "bench",
    )
    .await?;
    Ok(token)
}

/// `clients` clients call the paths `path` makes, one after the other, for `duration`
/// (none: not measured).
/// A call slower than this is reported with when it was due.
const SLOW_MS: f64 = 100.0;

/// Makes an endpoint's path, a random lamp or district where it takes one.
type PathFn = Arc<dyn Fn(&mut rand::rngs::SmallRng) -> String + Send + Sync>;

/// Whether the route is served at all: a first call; why not, if it is not.
async fn unserved(port: u16, token: &str, path: &str) -> Option<Measured> {
    match get(port, token, path, &mut Vec::new()).await {
        Ok((404, body)) if body.contains("there is no GET") => Some(Measured::Missing(format!(
            "the route is not served: {body}"
        ))),
        Ok(_) => None,
        Err(e) => Some(Measured::Missing(format!("the first call failed: {e:#}"))),
    }
}

/// The figures of calls that took `times` (ms).
fn figures(mut times: Vec<f64>, errors: usize, bytes: u64) -> Measured {
    if times.is_empty() {
        return Measured::Missing("no call completed".into());
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1];
    Measured::Figures {
        calls: times.len(),
        errors,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        bytes,
    }
}

/// Every endpoint at once, each called `rate` times a second on a fixed schedule for
/// `duration`, whether or not its earlier calls have answered; a call's time counts from
/// when it was due.
async fn open_loop(
    port: u16,
    token: &str,
    rate: f64,
    (warm_up, duration): (Duration, Duration),
    endpoints: &[(String, PathFn)],
) -> Vec<Measured> {
    // The warm-up's calls go first, on the same schedule, and are not counted.
    let skip = (rate * warm_up.as_secs_f64()).round() as usize;
    let calls = skip + (rate * duration.as_secs_f64()).round().max(1.0) as usize;
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now() + Duration::from_millis(200);
    let mut runs = Vec::new();
    for (e, (_, path)) in endpoints.iter().enumerate() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        if let Some(missing) = unserved(port, token, &path(&mut rng)).await {
            runs.push(tokio::spawn(async move { missing }));
            continue;
        }
        let (path, token) = (path.clone(), token.to_owned());
        runs.push(tokio::spawn(async move {
            let mut rng = rand::rngs::SmallRng::seed_from_u64(e as u64);
            let mut pending = tokio::task::JoinSet::new();
            for k in 0..calls {
                let due = start + period.mul_f64(k as f64);
                tokio::time::sleep_until(due).await;
                let (p, token) = (path(&mut rng), token.clone());
                pending.spawn(async move {
                    let mut buf = Vec::new();
                    let ok = matches!(get(port, &token, &p, &mut buf).await, Ok((200, _)));
                    (k, due.elapsed().as_secs_f64() * 1000.0, ok, buf.len() as u64)
                });
            }
            let (mut times, mut errors, mut bytes) = (Vec::with_capacity(calls), 0, 0);
            // When the slow calls were due (s into the run): a stall shows as a cluster.
            let (mut slow, mut warming) = (Vec::new(), Vec::new());
            while let Some(done) = pending.join_next().await {
                if let Ok((k, ms, ok, b)) = done {
                    if k < skip {
                        warming.push(ms);
                        continue;
                    }
                    times.push(ms);
                    errors += usize::from(!ok);
                    bytes += b;
                    if ms > SLOW_MS {
                        slow.push((k - skip) as f64 * period.as_secs_f64());
                    }
                }
            }
            if let Measured::Figures { p99_ms, calls, .. } = figures(warming, 0, 0) {
                eprintln!("  warm-up, not counted: {calls} calls, p99 {p99_ms:.1} ms");
            }
            slow.sort_by(f64::total_cmp);
            if let (Some(first), Some(last)) = (slow.first(), slow.last()) {
                eprintln!(
                    "  {} calls over {SLOW_MS} ms, due between {first:.1} s and {last:.1} s into the run",
                    slow.len()
                );
            }
            figures(times, errors, bytes)
        }));
    }
    let mut out = Vec::new();
    for run in runs {
        out.push(
            run.await
                .unwrap_or_else(|e| Measured::Missing(format!("the caller failed: {e}"))),
        );
    }
    out
}

/// `clients` clients call the endpoint one call after the other for `duration`.
async fn calls(
    port: u16,
    token: &str,
    clients: usize,
    duration: Duration,
    path: impl Fn(&mut rand::rngs::SmallRng) -> String + Send + Sync + Clone + 'static,
) -> Measured {
    if clients == 0 {
        return Measured::Missing("not measured (--export-only or --clients 0)".into());
    }
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    if let Some(missing) = unserved(port, token, &path(&mut rng)).await {
        return missing;
    }
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (path, token) = (path.clone(), token.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::SmallRng::seed_from_u64(c as u64);
            let mut buf = Vec::new();
            let (mut times, mut errors, mut bytes) = (Vec::new(), 0usize, 0u64);
            while Instant::now() < deadline {
                let p = path(&mut rng);
                let t = Instant::now();
                match get(port, &token, &p, &mut buf).await {
                    Ok((200, _)) => {}
                    _ => errors += 1,
                }
                times.push(t.elapsed().as_secs_f64() * 1000.0);
                bytes += buf.len() as u64;
            }
            (times, errors, bytes)
        }));
    }
    let (mut times, mut errors, mut bytes) = (Vec::new(), 0, 0);
    for t in tasks {
        if let Ok((ts, e, b)) = t.await {
            times.extend(ts);
            errors += e;
            bytes += b;
        }
    }
    figures(times, errors, bytes)
}

/// One GET over its own connection (HTTP/1.0): the status and, for an error, its body.
/// The whole answer is read into `buf`.
async fn get(
    port: u16,
    token: &str,
    path: &str,
    buf: &mut Vec<u8>,
) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(
        format!(
            "GET {path} HTTP/1.0\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
             Accept-Encoding: gzip\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    buf.clear();
    s.read_to_end(buf).await?;
    let status = std::str::from_utf8(&buf[..buf.len().min(16)])
        .ok()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .context("not an HTTP answer")?;
    let body = if status == 200 {
        String::new()
    } else {
        let text = String::from_utf8_lossy(buf);
        text.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default()
    };
    Ok((status, body))
}

/// Downloads an export, keeping only what it needs to count the readings (CSV: line
/// ends; Parquet: the footer); (readings, bytes).
async fn export(
    port: u16,
    token: &str,
    path: &str,
    format: ExportFormat,
) -> anyhow::Result<(u64, u64)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(
        format!(
            "GET {path} HTTP/1.0\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
             Accept-Encoding: gzip\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    let mut buf = vec![0u8; 1 << 20];
    let mut head = Vec::new();
    // The head, up to the blank line.
    let body_start = loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            bail!("the hub closed the connection before answering");
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let status_line = String::from_utf8_lossy(&head[..head.len().min(64)]).to_string();
    if !status_line.starts_with("HTTP/1.0 200") && !status_line.starts_with("HTTP/1.1 200") {
        bail!("{}", String::from_utf8_lossy(&head));
    }
    let mut tail: Vec<u8> = head[body_start..].to_vec();
    let mut bytes = tail.len() as u64;
    let mut lines = tail.iter().filter(|b| **b == b'\n').count() as u64;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        match format {
            ExportFormat::Csv => lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64,
            ExportFormat::Parquet => {
                tail.extend_from_slice(&buf[..n]);
                // The footer is small; 64 MiB of tail is far more than it can be.
                if tail.len() > 128 << 20 {
                    tail.drain(..tail.len() - (64 << 20));
                }
            }
        }
    }
    let rows = match format {
        ExportFormat::Csv => lines.saturating_sub(1),
        ExportFormat::Parquet => parquet_rows(&tail)?,
    };
    Ok((rows, bytes))
}

/// The number of rows a Parquet file's footer records (the file must end complete).
fn parquet_rows(tail: &[u8]) -> anyhow::Result<u64> {
    let n = tail.len();
    if n < 12 || &tail[n - 4..] != b"PAR1" {
        bail!("the Parquet file is cut short: it does not end with its footer");
    }
    let len = u32::from_le_bytes(tail[n - 8..n - 4].try_into()?) as usize;
    if len + 8 > n {
        bail!("the Parquet footer is longer than the tail kept");
    }
    let meta =
        parquet::file::metadata::ParquetMetaDataReader::decode_metadata(&tail[n - 8 - len..n - 8])?;
    Ok(meta.file_metadata().num_rows() as u64)
}

/// A process's memory line from `/proc/<pid>/status`, in MB.
fn rss_mb(pid: u32, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// The highest resident memory of `pid` seen every 100 ms until `stop`, in MB.
async fn sample_rss(pid: u32, stop: CancellationToken) -> f64 {
    let mut peak = rss_mb(pid, "VmRSS:");
    loop {
        tokio::select! {
            _ = stop.cancelled() => return peak.max(rss_mb(pid, "VmRSS:")),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                peak = peak.max(rss_mb(pid, "VmRSS:"));
            }
        }
    }
}

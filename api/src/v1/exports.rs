//! `GET /exports/{kind}`: every reading of a kind over a time range, as CSV, Arrow IPC
//! or Parquet, streamed.
//!
//! Everything that can be refused is refused before the first byte, as a JSON error:
//! the role, the kind, the format, the range, the tenant, a device or district with no
//! such devices. Then the export is recorded in the audit log and the body streams: a
//! task reads a chunk ([`CHUNK_ROWS`] readings) from the database on a connection of its
//! own, encodes it ([`encode`]) and hands the bytes to the response through a channel of
//! [`CHANNEL_CHUNKS`]. A slow client fills the channel, the task waits, the database
//! connection stops reading and PostgreSQL waits: nothing piles up in the hub, whatever
//! the range. A failure after the first byte cannot become an error response any more;
//! the body is aborted instead (the client sees the transfer cut, never a short file
//! that looks whole) and the failure is logged.

pub mod encode;

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use model::RecordType;
use serde::Deserialize;
use serde_json::json;
use store::exports::{ExportQuery, ReadingExport, EXPORT_RECORDS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::caller::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};
use crate::params;
use crate::roles::Permission;
use crate::slots::{Shares, Slot};
use crate::AppState;
use encode::{Encoder, Format};

/// Readings per chunk: one database read, one Arrow record batch.
pub const CHUNK_ROWS: usize = 8192;

/// Encoded chunks waiting for the client, at most. With the chunk being encoded and the
/// one being read, this bounds an export's memory.
pub const CHANNEL_CHUNKS: usize = 2;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(export))
}

/// The limits on exports (`[exports]` in cityhub.toml): how many run at once, in all, per
/// person and per tenant ([`crate::slots`]), and for how long.
#[derive(Debug, Clone)]
pub struct ExportLimits {
    /// Exports running at once at most.
    pub max_running: usize,
    /// Per person.
    pub per_user: usize,
    /// Per tenant.
    pub per_tenant: usize,
    /// An export still running after this long is cut short (its transaction ends).
    pub max_duration: Duration,
}

impl Default for ExportLimits {
    fn default() -> Self {
        ExportLimits {
            max_running: 4,
            per_user: 2,
            per_tenant: 3,
            max_duration: Duration::from_secs(3600),
        }
    }
}

impl ExportLimits {
    pub fn shares(&self) -> Shares {
        Shares {
            total: self.max_running,
            per_user: self.per_user,
            per_tenant: self.per_tenant,
        }
    }
}

/// What to export.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// Readings at or after this time (RFC 3339). Required.
    pub from: Option<String>,
    /// Readings before this time (RFC 3339), at most 400 days after `from`. Required.
    pub to: Option<String>,
    /// csv (the default), arrow (Arrow IPC streaming format) or parquet.
    pub format: Option<String>,
    /// A tenant slug (one of the caller's); all of the caller's when absent.
    pub tenant: Option<String>,
    /// Only devices of this district.
    pub district: Option<String>,
    /// Only this device (its inventory id).
    pub device: Option<String>,
}

/// Every reading of a kind of device in a time range: a file to download.
///
/// Columns: `tenant`, `device` (inventory id), `ts` (UTC, microseconds), the kind's
/// fields as in the device contract, and `extra` (fields the contract does not name,
/// JSON). Rows come day by day, within a day in the order they were stored; the whole
/// file is one consistent snapshot of the database.
#[utoipa::path(
    get,
    path = "/exports/{kind}",
    operation_id = "export_readings",
    tag = "exports",
    params(
        ("kind" = String, Path, description = "light, cabinet, meter or vehicle"),
        ExportParams
    ),
    responses(
        (status = 200, description = "The readings, streamed; a transfer cut short means the export failed",
            content(
                (String = "text/csv"),
                (Vec<u8> = "application/vnd.apache.arrow.stream"),
                (Vec<u8> = "application/vnd.apache.parquet")
            )),
        (status = 400, description = "A parameter is missing or not valid", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The caller's role may not export readings", body = ErrorBody),
        (status = 404, description = "No such kind, tenant, device or district among the caller's", body = ErrorBody),
        (status = 429, description = "The caller has as many exports running as one person may; try again when one has finished", body = ErrorBody),
        (status = 503, description = "The server, or one of the tenants covered, has as many exports running as it may; try again later", body = ErrorBody)
    )
)]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(kind): ApiPath<String>,
    ApiQuery(p): ApiQuery<ExportParams>,
    reset: Option<axum::Extension<crate::server::Reset>>,
) -> Result<Response, ApiError> {
    let reset = reset.map(|axum::Extension(r)| r);
    caller.require(Permission::ExportReadings)?;
    let record = EXPORT_RECORDS
        .into_iter()
        .find(|r| r.name() == kind)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "there is no export of `{kind}`: the kinds are light, cabinet, meter and vehicle"
            ))
        })?;
    let format = match p.format.as_deref() {
        None => Format::Csv,
        Some(name) => Format::parse(name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "format `{name}` is not one of {}",
                Format::NAMES.join(", ")
            ))
        })?,
    };
    let required = |name: &str, value: Option<DateTime<Utc>>| {
        value.ok_or_else(|| {
            ApiError::bad_request(format!(
                "{name} is required: an export covers from (inclusive) to (exclusive), RFC 3339 times"
            ))
        })
    };
    let from = required("from", params::time("from", p.from.as_deref())?)?;
    let to = required("to", params::time("to", p.to.as_deref())?)?;
    params::range(from, to)?;
    let tenants = caller.scope(p.tenant.as_deref())?;
    let query = ExportQuery {
        record,
        tenants: &tenants,
        district: params::short("district", p.district.as_deref())?,
        device: params::short("device", p.device.as_deref())?,
        from,
        to,
    };

    let covered: Vec<(i32, &str)> = caller
        .tenants
        .iter()
        .filter(|t| tenants.contains(&t.id))
        .map(|t| (t.id, t.slug.as_str()))
        .collect();
    let slot = state.export_slots().take(&caller.username, &covered)?;
    let max_duration = state.export_limits().max_duration;
    let bounds = store::exports::ExportBounds {
        // The hub cuts a client that stops reading after the send timeout and ends the
        // export with it; the database's own bound is a margin beyond, for a hub that
        // could not.
        idle_in_transaction: state.http_limits().send_timeout + Duration::from_secs(30),
        statement: max_duration + Duration::from_secs(30),
    };
    let db = state.read_pool().dedicated().await?;
    let export = db.start_export(&query, CHUNK_ROWS, &bounds).await?;
    if export.devices().is_empty() {
        if let Some(device) = query.device {
            return Err(ApiError::not_found(format!("no {kind} `{device}`")));
        }
        if let Some(district) = query.district {
            return Err(ApiError::not_found(format!(
                "no {kind} devices in district `{district}`"
            )));
        }
    }
    let show = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let slugs: Vec<&str> = caller
        .tenants
        .iter()
        .filter(|t| tenants.contains(&t.id))
        .map(|t| t.slug.as_str())
        .collect();
    state
        .pool()
        .actions()
        .await?
        .audit(
            &caller.actor(),
            "readings.export",
            &format!("readings/{kind}"),
            json!({
                "kind": kind,
                "format": format.as_str(),
                "from": show(from),
                "to": show(to),
                "tenants": slugs,
                "district": query.district,
                "device": query.device,
            }),
        )
        .await?;

    let (encoder, opening) = Encoder::start(format, record)
        .map_err(|e| ApiError::internal("starting the export", &e))?;
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    // Cancelled when the caller's access ends: the body stops at once, whatever it holds.
    let revoked = CancellationToken::new();
    let what = Transfer {
        actor: caller.actor(),
        record,
        format,
    };
    tokio::spawn(stream_export(
        export,
        encoder,
        opening,
        tx,
        slot,
        what,
        Until {
            deadline: tokio::time::Instant::now() + max_duration,
            access_ended: caller.access_ended(state.clone()),
            revoked: revoked.clone(),
            reset,
        },
    ));
    let body = futures_util::stream::unfold(Some((rx, revoked)), |open| async move {
        let (mut rx, revoked) = open?;
        tokio::select! {
            biased;
            // Not a chunk more once access has ended, even one already encoded.
            _ = revoked.cancelled() => Some((
                Err(std::io::Error::other("the caller's access ended")),
                None,
            )),
            item = rx.recv() => item.map(|item| (item, Some((rx, revoked)))),
        }
    });
    let file = format!(
        "{kind}-readings_{}_{}.{}",
        from.format("%Y%m%dT%H%M%SZ"),
        to.format("%Y%m%dT%H%M%SZ"),
        format.extension()
    );
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// An export as the log names it.
struct Transfer {
    actor: String,
    record: RecordType,
    format: Format,
}

/// When an export ends at the latest: its deadline, or when its caller's access ends
/// (then `revoked` is cancelled, which ends the body at once, and the connection is
/// `reset`, which throws away what the kernel still queues for the client).
struct Until<F> {
    deadline: tokio::time::Instant,
    access_ended: F,
    revoked: CancellationToken,
    reset: Option<crate::server::Reset>,
}

/// Why a transfer ended early.
enum Cut {
    /// The client went away (closed the connection): nothing to report to it.
    ClientGone,
    /// The database or an encoder failed.
    Failed(String),
    /// The caller may no longer read it: signed out, token revoked, user disabled or
    /// their role or tenants changed.
    AccessEnded,
}

type Chunk = Result<Bytes, std::io::Error>;

/// Reads, encodes and sends until the export is complete, the client has gone, its time
/// is up or the caller's access has ended ([`Until`]), or something fails (then the
/// body is aborted with the error).
/// Whichever way it ends, its slot and its database connection (and so its transaction)
/// go with it.
async fn stream_export(
    mut export: ReadingExport,
    mut encoder: Encoder,
    opening: Bytes,
    tx: mpsc::Sender<Chunk>,
    slot: Slot,
    what: Transfer,
    until: Until<impl std::future::Future<Output = ()>>,
) {
    let Until {
        deadline,
        access_ended,
        revoked,
        reset,
    } = until;
    let _slot = slot;
    let started = std::time::Instant::now();
    let mut rows = 0u64;
    let transfer = async {
        send(&tx, opening).await?;
        while let Some(chunk) = export
            .next_chunk()
            .await
            .map_err(|e| Cut::Failed(e.to_string()))?
        {
            rows += chunk.len() as u64;
            let bytes = encoder
                .chunk(export.devices(), chunk)
                .map_err(|e| Cut::Failed(e.to_string()))?;
            send(&tx, bytes).await?;
        }
        let end = encoder.finish().map_err(|e| Cut::Failed(e.to_string()))?;
        send(&tx, end).await
    };
    let result = tokio::select! {
        r = tokio::time::timeout_at(deadline, transfer) => match r {
            Ok(result) => result,
            Err(_) => Err(Cut::Failed(format!(
                "the export ran longer than its {} s",
                (deadline - tokio::time::Instant::from_std(started)).as_secs()
            ))),
        },
        _ = access_ended => Err(Cut::AccessEnded),
    };
    drop(export);
    let (kind, format, actor) = (what.record.name(), what.format.as_str(), &what.actor);
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(()) => info!(message = "Export sent.", kind, format, actor, rows, seconds),
        Err(Cut::ClientGone) => info!(
            message = "Export abandoned by the client.",
            kind, format, actor, rows, seconds
        ),
        Err(Cut::AccessEnded) => {
            warn!(
                message = "Export cut short: the caller's access ended (signed out, token revoked, or user disabled or changed).",
                kind, format, actor, rows, seconds
            );
            // The reset first: the body's end would otherwise close the connection
            // gracefully, after the kernel had sent the client all it holds.
            if let Some(reset) = reset {
                reset.now();
            }
            revoked.cancel();
        }
        Err(Cut::Failed(cause)) => {
            error!(
                message = "Export failed after it started; the transfer is cut short.",
                kind,
                format,
                actor,
                rows,
                error = %cause
            );
            // The error ends the body without its proper end: the client sees the
            // transfer aborted, not a complete-looking file.
            let _ = tx.send(Err(std::io::Error::other(cause))).await;
        }
    }
}

async fn send(tx: &mpsc::Sender<Chunk>, bytes: Bytes) -> Result<(), Cut> {
    if bytes.is_empty() {
        return Ok(());
    }
    tx.send(Ok(bytes)).await.map_err(|_| Cut::ClientGone)
}

//! The deliverer: every subscription with messages queued gets its oldest one first, the
//! next only once that one is through, so a receiver sees a subscription's messages in the
//! order they were queued. A message is sent until a 2xx answer (at least once: the same
//! `webhook-id` again after a failure, a timeout or a hub that stopped mid-attempt, so a
//! receiver drops what it has seen by that id). After a failure the subscription waits
//! ([`WebhookConfig::backoff`]); once it has failed for `disable_after_s` without a
//! message through, or its receiver answers 410 Gone, it is disabled with the reason.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use store::notifications::{Attempt, Channel, DueWebhook, Outgoing, MAILTO};
use store::{Notifier, StoreError};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::address::{check_url, Resolver};
use crate::email::{EmailConfig, Mailer};
use crate::{signature, WebhookConfig};

/// How often the queue is looked at when nothing was due.
const IDLE: Duration = Duration::from_millis(500);
/// Messages one turn of a subscription sends before others get theirs.
const TURN: i64 = 100;
/// The most of a receiver's refusal kept with the attempt.
const ANSWER_KEPT: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot make the webhook client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("a delivery task failed: {0}")]
    Turn(String),
    #[error("{0}")]
    Email(String),
}

/// Delivers the queued messages until `stop`; a message being sent then is sent again by
/// whoever delivers next.
pub async fn run(
    config: WebhookConfig,
    email: EmailConfig,
    database_url: String,
    stop: CancellationToken,
) -> Result<(), DeliveryError> {
    let mailer = Arc::new(Mailer::new(&email).map_err(DeliveryError::Email)?);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs_f64(config.timeout_s))
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Resolver::shared(config.allow_private_addresses))
        .user_agent(concat!("cityhub-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let db = Notifier::connect(&database_url).await?;
    info!(message = "Delivering webhooks.");
    let busy: Arc<Mutex<HashSet<i64>>> = Arc::default();
    let mut turns = JoinSet::new();
    while !stop.is_cancelled() {
        // A turn that could not record what it did stops the deliverer: it starts again
        // after a pause (`cityhub serve` runs it under a lease) rather than sending the
        // same message again and again.
        while let Some(done) = turns.try_join_next() {
            if let Some(failed) = failure(done) {
                turns.shutdown().await;
                return Err(failed);
            }
        }
        let free = config.concurrency.saturating_sub(turns.len());
        let due = if free == 0 {
            Vec::new()
        } else {
            let taken = busy.lock().unwrap_or_else(|p| p.into_inner()).len();
            db.due_webhooks(Utc::now(), (free + taken) as i64).await?
        };
        let mut started = 0;
        for hook in due {
            if started == free
                || !busy
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(hook.id)
            {
                continue;
            }
            started += 1;
            let (out, config, url, busy, stop) = (
                Out {
                    client: client.clone(),
                    mailer: mailer.clone(),
                },
                config.clone(),
                database_url.clone(),
                busy.clone(),
                stop.clone(),
            );
            turns.spawn(async move {
                let id = hook.id;
                let r = turn(&out, &config, &url, hook, &stop).await;
                busy.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                r
            });
        }
        if started == 0 {
            let done = tokio::select! {
                _ = stop.cancelled() => None,
                _ = tokio::time::sleep(IDLE) => None,
                Some(done) = turns.join_next(), if !turns.is_empty() => failure(done),
            };
            if let Some(failed) = done {
                turns.shutdown().await;
                return Err(failed);
            }
        }
    }
    turns.shutdown().await;
    Ok(())
}

/// A time span as people say it: seconds, minutes or hours.
fn span(d: Duration) -> String {
    match d.as_secs() {
        s if s < 120 => format!("{s} s"),
        s if s < 2 * 3600 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}

/// What went wrong in a finished turn, if anything did.
fn failure(
    done: Result<Result<(), DeliveryError>, tokio::task::JoinError>,
) -> Option<DeliveryError> {
    match done {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(e) => Some(DeliveryError::Turn(e.to_string())),
    }
}

/// The ways out: HTTP for webhooks, SMTP for e-mail (none when it is off).
struct Out {
    client: reqwest::Client,
    mailer: Arc<Option<Mailer>>,
}

/// One subscription's turn: its oldest messages in order until one fails or [`TURN`] went.
async fn turn(
    out: &Out,
    config: &WebhookConfig,
    database_url: &str,
    hook: DueWebhook,
    stop: &CancellationToken,
) -> Result<(), DeliveryError> {
    let mut db = Notifier::connect(database_url).await?;
    let outgoing = db.outgoing(hook.id, TURN).await?;
    let mut failures = hook.failures;
    for message in outgoing {
        let attempt = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            a = send(out, config, &hook, &message) => a,
        };
        if attempt.error.is_none() {
            debug!(
                message = "Webhook delivered.",
                webhook = hook.id,
                id = message.id
            );
            db.delivered(message.id, &attempt).await?;
            failures = 0;
            continue;
        }
        failures += 1;
        let error = attempt.error.clone().unwrap_or_default();
        let since = hook
            .failing_since
            .filter(|_| failures > 1)
            .unwrap_or(attempt.at);
        let failing_for = (attempt.at - since).to_std().unwrap_or_default();
        let disable = if attempt.status == Some(410) {
            Some("the receiver answered 410 Gone: it wants no more messages".to_owned())
        } else {
            (failing_for.as_secs_f64() >= config.disable_after_s).then(|| {
                format!(
                    "no message delivered for {}, {failures} attempts in a row failed; the last: {error}",
                    span(failing_for)
                )
            })
        };
        let retry_at =
            attempt.at + chrono::Duration::from_std(config.backoff(failures)).unwrap_or_default();
        match &disable {
            Some(reason) => warn!(message = "Webhook disabled.", webhook = hook.id, reason),
            None => info!(
                message = "Webhook not delivered; trying again later.",
                webhook = hook.id,
                id = message.id,
                failures,
                error,
                retry_at = %retry_at
            ),
        }
        db.failed(message.id, &attempt, retry_at, disable.as_deref())
            .await?;
        break;
    }
    Ok(())
}

/// One attempt at `message`.
async fn send(out: &Out, config: &WebhookConfig, hook: &DueWebhook, message: &Outgoing) -> Attempt {
    let at = Utc::now();
    let started = Instant::now();
    let outcome = match hook.channel {
        Channel::Webhook => post(&out.client, config, hook, message).await,
        Channel::Email => mail(out.mailer.as_ref().as_ref(), hook, message)
            .await
            .map(|()| (250, String::new())),
    };
    let duration_ms = started.elapsed().as_millis().min(i32::MAX as u128) as i32;
    let (status, error) = match outcome {
        Ok((status, _)) if (200..300).contains(&status) => (Some(status), None),
        Ok((status, answer)) => (
            Some(status),
            Some(format!("the receiver answered {status}{answer}")),
        ),
        Err(e) => (None, Some(e)),
    };
    Attempt {
        at,
        status: status.filter(|_| hook.channel == Channel::Webhook),
        error,
        duration_ms,
    }
}

/// The status and the start of the answer's body (`: ...`, or nothing when empty), or what
/// kept the message from being answered.
async fn post(
    client: &reqwest::Client,
    config: &WebhookConfig,
    hook: &DueWebhook,
    message: &Outgoing,
) -> Result<(i32, String), String> {
    // Checked again at each attempt: the settings may have changed since it was added.
    let url = check_url(&hook.url, config.allow_private_addresses)?;
    let id = message_id(message.id);
    let timestamp = Utc::now().timestamp();
    let signature = signature::sign(&hook.secret, &id, timestamp, &message.body)
        .ok_or("the subscription's secret is not a Standard Webhooks secret")?;
    let response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(message.body.clone())
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let status = i32::from(response.status().as_u16());
    if response.status().is_success() {
        return Ok((status, String::new()));
    }
    let body = response.text().await.unwrap_or_default();
    let mut kept: String = body.trim().chars().take(ANSWER_KEPT).collect();
    if !kept.is_empty() {
        kept.insert_str(0, ": ");
    }
    Ok((status, kept))
}

/// Sends `message` as a mail; an e-mail's attempt has no HTTP status (250, the SMTP
/// server's "accepted", stands for one until the attempt is recorded).
async fn mail(
    mailer: Option<&Mailer>,
    hook: &DueWebhook,
    message: &Outgoing,
) -> Result<(), String> {
    let mailer = mailer.ok_or("e-mail is not set up on this hub (email.smtp_host)")?;
    let to = hook.url.strip_prefix(MAILTO).unwrap_or(&hook.url);
    let unsubscribe = hook
        .unsubscribe_token
        .as_deref()
        .map(|token| (hook.tenant.as_str(), token));
    mailer
        .send(
            to,
            message.id,
            &message.event_type,
            &message.body,
            unsubscribe,
        )
        .await
}

/// A message's `webhook-id`: the same at every attempt.
pub fn message_id(id: i64) -> String {
    format!("msg_{id}")
}

/// What went wrong, with its causes ("error sending request" alone says little).
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "no answer in time".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "the request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

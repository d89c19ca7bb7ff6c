//! Webhooks: a tenant's administrators subscribe the city's other systems to outage and
//! work order events (`store::notifications`), delivered by `notify` as Standard Webhooks
//! signed with the subscription's secret, which is shown once, when it is made; or crews'
//! and dispatchers' addresses (`mailto:`), which get them by e-mail.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use store::notifications::{MessageRow, NewWebhook, WebhookRow, EVENT_TYPES, MAILTO};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::caller::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::params;
use crate::roles::Permission;
use crate::v1::commands::one_tenant;
use crate::v1::ListPage;
use crate::AppState;

/// The most values one filter may list.
const MAX_VALUES: usize = 100;
/// The longest description.
const MAX_DESCRIPTION: usize = 200;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, add))
        .routes(routes!(get, remove))
        .routes(routes!(enable))
        .routes(routes!(messages))
}

/// A subscription to add. Each filter is a list of the values it lets through; a filter
/// left out lets everything through.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// The tenant (slug); may be left out by a caller who has one tenant only.
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    #[schema(nullable = false)]
    pub tenant: Option<String>,
    /// Where the messages are POSTed: http or https; addresses outside the public
    /// internet only where the hub allows them (`webhooks.allow_private_addresses`). Or
    /// `mailto:` and an e-mail address, to have them mailed (where the hub sends e-mail).
    pub url: String,
    /// What it is for, for the people who read the list (up to 200 characters).
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    #[schema(nullable = false)]
    pub description: Option<String>,
    /// Events, e.g. `outage.opened`, `work_order.done`.
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    #[schema(nullable = false)]
    pub event_types: Option<Vec<String>>,
    /// Outage kinds, e.g. `lamp_failure`, `leak`.
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    #[schema(nullable = false)]
    pub kinds: Option<Vec<String>>,
    /// `critical`, `major`, `minor`.
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    #[schema(nullable = false)]
    pub severities: Option<Vec<String>>,
    /// Districts, as the inventory names them.
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    #[schema(nullable = false)]
    pub districts: Option<Vec<String>>,
}

/// A subscription, and how its deliveries go.
#[derive(Debug, Serialize, ToSchema)]
pub struct Webhook {
    pub id: i64,
    pub tenant: String,
    pub url: String,
    pub description: String,
    /// The filters; null lets everything through.
    pub event_types: Option<Vec<String>>,
    pub kinds: Option<Vec<String>>,
    pub severities: Option<Vec<String>>,
    pub districts: Option<Vec<String>>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub removed_at: Option<DateTime<Utc>>,
    /// `active`, `retrying` (the last attempt failed; the next is at `next_attempt_at`),
    /// `disabled` (see `disabled_reason`; enable it again) or `removed`.
    pub status: String,
    /// Failed attempts in a row.
    pub failures: i32,
    pub failing_since: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
    /// Messages queued and not delivered yet.
    pub pending: i64,
    pub delivered: i64,
}

impl From<WebhookRow> for Webhook {
    fn from(w: WebhookRow) -> Webhook {
        let status = if w.removed_at.is_some() {
            "removed"
        } else if w.disabled_at.is_some() {
            "disabled"
        } else if w.failures > 0 {
            "retrying"
        } else {
            "active"
        };
        Webhook {
            id: w.id,
            tenant: w.tenant,
            url: w.url,
            description: w.description,
            event_types: w.event_types,
            kinds: w.kinds,
            severities: w.severities,
            districts: w.districts,
            created_by: w.created_by,
            created_at: w.created_at,
            removed_at: w.removed_at,
            status: status.to_owned(),
            failures: w.failures,
            failing_since: w.failing_since,
            next_attempt_at: w.next_attempt_at.filter(|_| status == "retrying"),
            disabled_at: w.disabled_at,
            disabled_reason: w.disabled_reason,
            pending: w.pending,
            delivered: w.delivered,
        }
    }
}

/// A new subscription, with the secret its messages are signed with. The secret is shown
/// this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewWebhookAnswer {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// `whsec_` and a base64 key: give it to the receiver's Standard Webhooks library.
    /// Null for an e-mail subscription.
    pub secret: Option<String>,
}

/// A message queued for a subscription, and its attempts (the newest ten, newest first).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookMessage {
    pub id: i64,
    /// The `webhook-id` header it is sent with, the same at every attempt.
    pub webhook_id: String,
    pub event_type: String,
    /// The body as sent: `{type, timestamp, data}`.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub queued_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub attempts: Vec<WebhookAttempt>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAttempt {
    pub at: DateTime<Utc>,
    /// The HTTP status answered; null when no answer came.
    pub status: Option<i32>,
    /// What went wrong; null when delivered.
    pub error: Option<String>,
    pub duration_ms: i32,
}

impl From<MessageRow> for WebhookMessage {
    fn from(m: MessageRow) -> WebhookMessage {
        WebhookMessage {
            id: m.id,
            webhook_id: notify::deliverer::message_id(m.id),
            event_type: m.event_type,
            payload: m.payload,
            queued_at: m.queued_at,
            delivered_at: m.delivered_at,
            attempts: m
                .attempts
                .into_iter()
                .map(|a| WebhookAttempt {
                    at: a.at,
                    status: a.status,
                    error: a.error,
                    duration_ms: a.duration_ms,
                })
                .collect(),
        }
    }
}

/// A filter's values, each one `allowed` says is known.
fn filter(
    name: &str,
    values: Option<Vec<String>>,
    allowed: impl Fn(&str) -> bool,
    known: &str,
) -> Result<Option<Vec<String>>, ApiError> {
    let Some(mut values) = values else {
        return Ok(None);
    };
    if values.is_empty() || values.len() > MAX_VALUES {
        return Err(ApiError::bad_request(format!(
            "{name} lists 1 to {MAX_VALUES} values; leave it out to let everything through"
        )));
    }
    for v in &values {
        params::short(name, Some(v))?;
        if !allowed(v) {
            return Err(ApiError::bad_request(format!(
                "{name}: `{v}` is not one of {known}"
            )));
        }
    }
    values.sort();
    values.dedup();
    Ok(Some(values))
}

/// Subscribes a URL to a tenant's outage and work order events.
#[utoipa::path(
    post,
    path = "/webhooks",
    operation_id = "add_webhook",
    tag = "webhooks",
    request_body = WebhookRequest,
    responses(
        (status = 201, description = "Subscribed; the secret is shown this once", body = NewWebhookAnswer),
        (status = 400, description = "The URL or a filter is not valid", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Only administrators manage webhooks", body = ErrorBody),
        (status = 404, description = "The tenant is not one of the caller's", body = ErrorBody)
    )
)]
pub async fn add(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(r): ApiJson<WebhookRequest>,
) -> Result<(StatusCode, Json<NewWebhookAnswer>), ApiError> {
    caller.require(Permission::ManageWebhooks)?;
    let tenant = one_tenant(&caller, r.tenant.as_deref())?;
    let (url, unsubscribe_token) = match r.url.strip_prefix(MAILTO) {
        Some(address) => {
            if !state.email_enabled() {
                return Err(ApiError::bad_request(
                    "e-mail is not set up on this hub (email.smtp_host): subscribe a webhook, or ask the hub's administrators",
                ));
            }
            let address = notify::email::check_address(address).map_err(ApiError::bad_request)?;
            (
                format!("{MAILTO}{address}"),
                Some(notify::email::new_token()),
            )
        }
        None => {
            let allow_private = state.webhooks_reach_private();
            let url =
                notify::address::check_url(&r.url, allow_private).map_err(ApiError::bad_request)?;
            notify::address::check_resolved(&url, allow_private)
                .await
                .map_err(ApiError::bad_request)?;
            (url.to_string(), None)
        }
    };
    let description = r.description.unwrap_or_default();
    if description.chars().count() > MAX_DESCRIPTION || description.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "description is up to {MAX_DESCRIPTION} characters, without control characters"
        )));
    }
    let event_types = filter(
        "event_types",
        r.event_types,
        |v| EVENT_TYPES.contains(&v),
        &EVENT_TYPES.join(", "),
    )?;
    let kinds = filter(
        "kinds",
        r.kinds,
        |v| model::OutageKind::parse(v).is_some(),
        &model::OutageKind::ALL.map(|k| k.as_str()).join(", "),
    )?;
    let severities = filter(
        "severities",
        r.severities,
        |v| model::Severity::parse(v).is_some(),
        &model::Severity::ALL.map(|k| k.as_str()).join(", "),
    )?;
    let known = state.pool().reads().await?.districts(tenant).await?;
    let districts = filter(
        "districts",
        r.districts,
        |v| known.iter().any(|d| d == v),
        &known.join(", "),
    )?;
    let email = unsubscribe_token.is_some();
    let secret = if email {
        String::new()
    } else {
        notify::signature::new_secret()
    };
    let by = caller.actor();
    let row = state
        .pool()
        .actions()
        .await?
        .add_webhook(&NewWebhook {
            tenant_id: tenant,
            url: &url,
            secret: &secret,
            unsubscribe_token: unsubscribe_token.as_deref(),
            description: &description,
            event_types,
            kinds,
            severities,
            districts,
            by: &by,
            // The wall clock, as the deliveries' times are, whatever clock the hub runs on.
            at: chrono::Utc::now(),
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(NewWebhookAnswer {
            webhook: row.into(),
            secret: (!email).then_some(secret),
        }),
    ))
}

/// The parameters of the webhook list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WebhookFilter {
    /// One of the caller's tenants; all of them when left out.
    pub tenant: Option<String>,
}

/// The caller's tenants' webhooks (not removed), oldest first, with how their deliveries go.
#[utoipa::path(
    get,
    path = "/webhooks",
    operation_id = "list_webhooks",
    tag = "webhooks",
    params(WebhookFilter),
    responses(
        (status = 200, description = "Every webhook (there is one page)", body = ListPage<Webhook>),
        (status = 400, description = "A parameter is not valid", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Only administrators manage webhooks", body = ErrorBody),
        (status = 404, description = "The tenant named is not one of the caller's", body = ErrorBody)
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(f): ApiQuery<WebhookFilter>,
) -> Result<Json<ListPage<Webhook>>, ApiError> {
    caller.require(Permission::ManageWebhooks)?;
    let tenants = caller.scope(f.tenant.as_deref())?;
    let rows = state.pool().reads().await?.webhooks(&tenants).await?;
    Ok(Json(ListPage {
        items: rows.into_iter().map(Webhook::from).collect(),
        next_cursor: None,
    }))
}

/// One webhook (removed ones too).
#[utoipa::path(
    get,
    path = "/webhooks/{id}",
    operation_id = "get_webhook",
    tag = "webhooks",
    params(("id" = i64, Path, description = "The webhook")),
    responses(
        (status = 200, description = "The webhook", body = Webhook),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Only administrators manage webhooks", body = ErrorBody),
        (status = 404, description = "No such webhook among the caller's tenants", body = ErrorBody)
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Webhook>, ApiError> {
    caller.require(Permission::ManageWebhooks)?;
    let tenants = caller.scope(None)?;
    let row = state.pool().reads().await?.webhook(&tenants, id).await?;
    Ok(Json(row.into()))
}

/// Removes a webhook: nothing more is queued or sent for it.
#[utoipa::path(
    delete,
    path = "/webhooks/{id}",
    operation_id = "remove_webhook",
    tag = "webhooks",
    params(("id" = i64, Path, description = "The webhook")),
    responses(
        (status = 200, description = "Removed", body = Webhook),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Only administrators manage webhooks", body = ErrorBody),
        (status = 404, description = "No such webhook among the caller's tenants", body = ErrorBody),
        (status = 409, description = "Already removed", body = ErrorBody)
    )
)]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Webhook>, ApiError> {
    caller.require(Permission::ManageWebhooks)?;
    let tenants = caller.scope(None)?;
    let by = caller.actor();
    let row = state
        .pool()
        .actions()
        .await?
        .remove_webhook(&tenants, id, &by, chrono::Utc::now())
        .await?;
    Ok(Json(row.into()))
}

/// Enables a disabled webhook, or one waiting after failures: its queued messages are
/// tried again at once, oldest first.
#[utoipa::path(
    post,
    path = "/webhooks/{id}/enable",
    operation_id = "enable_webhook",
    tag = "webhooks",
    params(("id" = i64, Path, description = "The webhook")),
    responses(
        (status = 200, description = "Enabled", body = Webhook),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Only administrators manage webhooks", body = ErrorBody),
        (status = 404, description = "No such webhook among the caller's tenants", body = ErrorBody),
        (status = 409, description = "The webhook was removed", body = ErrorBody)
    )
)]
pub async fn enable(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Webhook>, ApiError> {
    caller.require(Permission::ManageWebhooks)?;
    let tenants = caller.scope(None)?;
    let by = caller.actor();
    let row = state
        .pool()
        .actions()
        .await?
        .enable_webhook(&tenants, id, &by)
        .await?;
    Ok(Json(row.into()))
}

/// The parameters of a webhook's messages.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MessagePage {
    /// 1 to 1000; 100 when left out.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A webhook's messages, newest first, each with its attempts: what was sent, what the
/// receiver answered, what went wrong.
#[utoipa::path(
    get,
    path = "/webhooks/{id}/messages",
    operation_id = "list_webhook_messages",
    tag = "webhooks",
    params(("id" = i64, Path, description = "The webhook"), MessagePage),
    responses(
        (status = 200, description = "A page of messages", body = ListPage<WebhookMessage>),
        (status = 400, description = "A parameter is not valid", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Only administrators manage webhooks", body = ErrorBody),
        (status = 404, description = "No such webhook among the caller's tenants", body = ErrorBody)
    )
)]
pub async fn messages(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(p): ApiQuery<MessagePage>,
) -> Result<Json<ListPage<WebhookMessage>>, ApiError> {
    caller.require(Permission::ManageWebhooks)?;
    let tenants = caller.scope(None)?;
    let limit = params::limit(p.limit)?;
    let before = p
        .cursor
        .as_deref()
        .map(|c| params::decode_cursor(params::CursorKind::WebhookMessages, c))
        .transpose()?
        .map(|(_, id)| id);
    let mut rows = state
        .pool()
        .reads()
        .await?
        .webhook_messages(&tenants, id, before, limit + 1)
        .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last())
        .flatten()
        .map(|m| params::encode_cursor(params::CursorKind::WebhookMessages, None, m.id));
    Ok(Json(ListPage {
        items: rows.into_iter().map(WebhookMessage::from).collect(),
        next_cursor,
    }))
}

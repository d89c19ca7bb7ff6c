//! Residents' e-mail subscriptions to a published tenant's planned works, without
//! signing in, with double opt-in: `POST /public/{tenant}/subscriptions` queues a
//! confirmation mail and nothing else; its link (`.../subscriptions/confirm?token=`)
//! opens a page whose button confirms; every mail after that has a one-click unsubscribe
//! link (`.../subscriptions/unsubscribe?token=`, RFC 8058: a mail program POSTs to it).
//!
//! Links in mails are opened by scanners and previews before any person: a GET only shows
//! a page with a button, and only a POST changes anything. Every answer to a request for
//! a subscription is the same whether the address was subscribed before or not.

use std::net::IpAddr;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use store::notifications::{NewResident, ResidentRow, Subscribed};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery, ClientAddress};
use crate::AppState;

/// A resident's wish to be told of planned works.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionRequest {
    /// Where to send the mails.
    pub email: String,
    /// One of the city's districts; the whole city when left out.
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    #[schema(nullable = false)]
    pub district: Option<String>,
}

/// What the resident is told, whatever became of the request.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionAnswer {
    pub message: String,
}

/// What is said to every request, so that nobody learns whether an address is subscribed.
const ON_ITS_WAY: &str = "Thank you. If this address takes mail, a message is on its way \
    to it: open its link and confirm to start. Nothing else is sent until then.";

/// The tenant `slug` as these pages need it: existing and, except to stop mails (which
/// always works, also once a tenant is no longer published), published with e-mail set up.
async fn tenant(
    state: &AppState,
    address: Option<IpAddr>,
    slug: &str,
    step: Option<Step>,
) -> Result<i32, ApiError> {
    let pages = state.public_pages();
    pages.admit_address(address)?;
    let unknown = || ApiError::not_found("this tenant has no public page");
    let stopping = matches!(step, Some(Step::Unsubscribe));
    if !stopping && !pages.published(slug) {
        return Err(unknown());
    }
    if !stopping && !state.email_enabled() {
        return Err(ApiError::not_found(
            "this city does not send e-mail (email.smtp_host is not set)",
        ));
    }
    let reads = state.pool().reads().await?;
    Ok(reads.public_tenant(slug).await?.ok_or_else(unknown)?.id)
}

/// Asks for mails of the works planned in a district (or the whole city) of a published
/// tenant. A confirmation is mailed; nothing else is sent to the address until its link is
/// followed and confirmed. The answer is the same whether or not the address was
/// subscribed before.
#[utoipa::path(
    post,
    path = "/public/{tenant}/subscriptions",
    operation_id = "public_subscribe",
    tag = "public",
    security(()),
    params(("tenant" = String, Path, description = "A tenant slug the hub publishes")),
    request_body = SubscriptionRequest,
    responses(
        (status = 202, description = "A confirmation is on its way (or was, or is not needed)", body = SubscriptionAnswer),
        (status = 400, description = "Not an e-mail address, or not one of the city's districts", body = ErrorBody),
        (status = 404, description = "The tenant is not published, or the hub sends no e-mail", body = ErrorBody),
        (status = 429, description = "Too many requests from this address", body = ErrorBody)
    )
)]
pub async fn subscribe(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    ApiPath(slug): ApiPath<String>,
    ApiJson(r): ApiJson<SubscriptionRequest>,
) -> Result<(StatusCode, Json<SubscriptionAnswer>), ApiError> {
    let tenant_id = tenant(&state, address, &slug, None).await?;
    let email = notify::email::check_address(&r.email).map_err(ApiError::bad_request)?;
    if let Some(d) = &r.district {
        let districts = state.pool().reads().await?.districts(tenant_id).await?;
        if !districts.contains(d) {
            return Err(ApiError::bad_request(format!(
                "district: `{}` is not one of the city's: {}",
                d.chars().take(64).collect::<String>(),
                districts.join(", ")
            )));
        }
    }
    let (confirm, unsubscribe) = (notify::email::new_token(), notify::email::new_token());
    let outcome = state
        .pool()
        .actions()
        .await?
        .subscribe_resident(&NewResident {
            tenant_id,
            email: &email,
            district: r.district.as_deref(),
            confirm_token: &confirm,
            unsubscribe_token: &unsubscribe,
            at: Utc::now(),
        })
        .await?;
    if outcome == Subscribed::Throttled {
        tracing::info!(message = "A resident's address asked for confirmations too often; none sent.", tenant = %slug);
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(SubscriptionAnswer {
            message: ON_ITS_WAY.into(),
        }),
    ))
}

/// The token of a link.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Token {
    /// From the mail's link.
    pub token: String,
}

/// What a link does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Confirm,
    Unsubscribe,
}

impl Step {
    fn page(self, tenant: &str, token: &str) -> Response {
        let (title, text, button) = match self {
            Step::Confirm => (
                "Confirm your subscription",
                "Press the button to be told by e-mail of the works planned where you asked.",
                "Confirm",
            ),
            Step::Unsubscribe => (
                "Stop these mails",
                "Press the button and no more mails of this subscription are sent.",
                "Stop the mails",
            ),
        };
        let action = match self {
            Step::Confirm => "confirm",
            Step::Unsubscribe => "unsubscribe",
        };
        html(
            StatusCode::OK,
            title,
            &format!(
                "<p>{text}</p><form method=\"post\" action=\"/public/{}/subscriptions/{action}?token={}\">\
                 <button type=\"submit\">{button}</button></form>",
                escape(tenant),
                escape(token)
            ),
        )
    }

    async fn take(
        self,
        state: &AppState,
        tenant_id: i32,
        token: &str,
    ) -> Result<Option<ResidentRow>, ApiError> {
        if !notify::email::plausible_token(token) {
            return Ok(None);
        }
        let mut actions = state.pool().actions().await?;
        Ok(match self {
            Step::Confirm => {
                actions
                    .confirm_resident(tenant_id, token, Utc::now())
                    .await?
            }
            Step::Unsubscribe => actions.unsubscribe(tenant_id, token, Utc::now()).await?,
        })
    }

    fn done(self, tenant: &str, row: Option<ResidentRow>) -> Response {
        let place = |r: &ResidentRow| {
            r.district
                .as_deref()
                .map_or("the whole city".to_owned(), escape)
        };
        let status_page = format!(
            "<p><a href=\"/public/{0}/\">The city's works now and to come</a></p>",
            escape(tenant)
        );
        match (self, row) {
            (Step::Confirm, Some(r)) => html(
                StatusCode::OK,
                "Subscribed",
                &format!(
                    "<p>You will be told by e-mail of the works planned in {}. Every mail \
                     has a link to stop them.</p>{status_page}",
                    place(&r)
                ),
            ),
            (Step::Unsubscribe, Some(_)) => html(
                StatusCode::OK,
                "No more mails",
                &format!("<p>No more mails of this subscription will be sent.</p>{status_page}"),
            ),
            (_, None) => html(
                StatusCode::NOT_FOUND,
                "This link does nothing",
                &format!(
                    "<p>It was used already, or is not one of ours. To subscribe again, use \
                     the city's status page.</p>{status_page}"
                ),
            ),
        }
    }
}

async fn show(
    state: AppState,
    address: Option<IpAddr>,
    slug: Result<ApiPath<String>, ApiError>,
    token: Result<ApiQuery<Token>, ApiError>,
    step: Step,
) -> Response {
    let shown = async {
        let ApiPath(slug) = slug?;
        let ApiQuery(Token { token }) = token?;
        tenant(&state, address, &slug, Some(step)).await?;
        Ok::<_, ApiError>(step.page(&slug, &token))
    };
    shown.await.unwrap_or_else(refused)
}

async fn act(
    state: AppState,
    address: Option<IpAddr>,
    slug: Result<ApiPath<String>, ApiError>,
    token: Result<ApiQuery<Token>, ApiError>,
    step: Step,
) -> Response {
    let acted = async {
        let ApiPath(slug) = slug?;
        let ApiQuery(Token { token }) = token?;
        let tenant_id = tenant(&state, address, &slug, Some(step)).await?;
        let row = step.take(&state, tenant_id, &token).await?;
        Ok::<_, ApiError>(step.done(&slug, row))
    };
    acted.await.unwrap_or_else(refused)
}

/// A refusal of a link's page, as a page: people open these from their mail.
fn refused(e: ApiError) -> Response {
    let mut page = html(
        e.status(),
        "This link does nothing now",
        &format!("<p>{}.</p>", escape(e.message())),
    );
    if let Some(after) = e.retry_after() {
        page.headers_mut()
            .insert(header::RETRY_AFTER, crate::error::retry_after_value(after));
    }
    page
}

/// The confirmation link of a resident's mail: a page whose button confirms.
#[utoipa::path(
    get,
    path = "/public/{tenant}/subscriptions/confirm",
    operation_id = "public_confirm_page",
    tag = "public",
    security(()),
    params(("tenant" = String, Path, description = "A tenant slug the hub publishes"), Token),
    responses(
        (status = 200, description = "A page with the button", content_type = "text/html", body = String),
        (status = 400, description = "No token (a page says so)", content_type = "text/html", body = String),
        (status = 404, description = "The tenant is not published, or the hub sends no e-mail (a page says so)", content_type = "text/html", body = String),
        (status = 429, description = "Too many requests from this address (a page says so)", content_type = "text/html", body = String)
    )
)]
pub async fn confirm_page(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    slug: Result<ApiPath<String>, ApiError>,
    token: Result<ApiQuery<Token>, ApiError>,
) -> Response {
    show(state, address, slug, token, Step::Confirm).await
}

/// Confirms a resident's subscription: from then on the works planned where they asked
/// are mailed to them.
#[utoipa::path(
    post,
    path = "/public/{tenant}/subscriptions/confirm",
    operation_id = "public_confirm",
    tag = "public",
    security(()),
    params(("tenant" = String, Path, description = "A tenant slug the hub publishes"), Token),
    responses(
        (status = 200, description = "Confirmed", content_type = "text/html", body = String),
        (status = 400, description = "No token (a page says so)", content_type = "text/html", body = String),
        (status = 404, description = "A token used already or unknown (a page says so); or the tenant is not published, or the hub sends no e-mail", content_type = "text/html", body = String),
        (status = 429, description = "Too many requests from this address (a page says so)", content_type = "text/html", body = String)
    )
)]
pub async fn confirm(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    slug: Result<ApiPath<String>, ApiError>,
    token: Result<ApiQuery<Token>, ApiError>,
) -> Response {
    act(state, address, slug, token, Step::Confirm).await
}

/// The unsubscribe link of every mail: a page whose button stops the mails.
#[utoipa::path(
    get,
    path = "/public/{tenant}/subscriptions/unsubscribe",
    operation_id = "public_unsubscribe_page",
    tag = "public",
    security(()),
    params(("tenant" = String, Path, description = "A tenant slug the hub publishes"), Token),
    responses(
        (status = 200, description = "A page with the button", content_type = "text/html", body = String),
        (status = 400, description = "No token (a page says so)", content_type = "text/html", body = String),
        (status = 404, description = "The tenant is not published, or the hub sends no e-mail (a page says so)", content_type = "text/html", body = String),
        (status = 429, description = "Too many requests from this address (a page says so)", content_type = "text/html", body = String)
    )
)]
pub async fn unsubscribe_page(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    slug: Result<ApiPath<String>, ApiError>,
    token: Result<ApiQuery<Token>, ApiError>,
) -> Response {
    show(state, address, slug, token, Step::Unsubscribe).await
}

/// Stops a subscription's mails: the button of the page, or a mail program's one-click
/// unsubscribe (RFC 8058: `List-Unsubscribe=One-Click` as a form body).
#[utoipa::path(
    post,
    path = "/public/{tenant}/subscriptions/unsubscribe",
    operation_id = "public_unsubscribe",
    tag = "public",
    security(()),
    params(("tenant" = String, Path, description = "A tenant slug the hub publishes"), Token),
    responses(
        (status = 200, description = "No more mails (also when stopped before)", content_type = "text/html", body = String),
        (status = 400, description = "No token (a page says so)", content_type = "text/html", body = String),
        (status = 404, description = "An unknown token (a page says so); or no such tenant", content_type = "text/html", body = String),
        (status = 429, description = "Too many requests from this address (a page says so)", content_type = "text/html", body = String)
    )
)]
pub async fn unsubscribe(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    slug: Result<ApiPath<String>, ApiError>,
    token: Result<ApiQuery<Token>, ApiError>,
) -> Response {
    act(state, address, slug, token, Step::Unsubscribe).await
}

/// A small page of the hub's own, with nothing from elsewhere.
fn html(status: StatusCode, title: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title>\
         <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem}}\
         button{{font:inherit;padding:.6rem 1.2rem}}</style>\
         <h1>{title}</h1>{body}</html>\n"
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
            ),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        page,
    )
        .into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

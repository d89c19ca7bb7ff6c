//! Signing in and out, and who am I.
//!
//! A session lasts [`SESSION_HOURS`] (a control-room shift and a half) and lives in an
//! HttpOnly, SameSite=Strict cookie: scripts cannot read it and other sites cannot make
//! the browser send it, which is the API's defence against cross-site requests.

use std::time::Instant;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::info;
use utoipa::ToSchema;

use crate::auth::{decoy_hash, new_session_token, MAX_PASSWORD_BYTES};
use crate::caller::{cookie, Caller, Via, SESSION_COOKIE};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ClientAddress};
use crate::refusals::{Refused, Who};
use crate::roles::Role;
use crate::AppState;

/// How long a session lasts.
pub const SESSION_HOURS: i64 = 12;

/// The one answer to a wrong user name and a wrong password alike, so that it does not
/// tell which user names exist.
const WRONG_CREDENTIALS: &str = "wrong user name or password";

/// A sign-in.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// The caller: who they are, their role and the tenants they see.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub username: String,
    pub role: Role,
    /// For crew: the team whose work orders they move.
    pub team: Option<String>,
    /// Tenant slugs.
    pub tenants: Vec<String>,
    /// `session` or `token`.
    pub via: &'static str,
    /// The hub's clock (the simulated one when the hub runs on it), for a client that
    /// counts deadlines down as the hub does.
    pub now: DateTime<Utc>,
}

impl Me {
    fn of(c: &Caller, now: DateTime<Utc>) -> Me {
        Me {
            now,
            username: c.username.clone(),
            role: c.role,
            team: c.team.clone(),
            tenants: c.tenant_slugs(),
            via: match c.via {
                Via::Session { .. } => "session",
                Via::Token { .. } => "token",
            },
        }
    }
}

/// Signs in: sets the session cookie.
#[utoipa::path(
    post,
    path = "/login",
    operation_id = "login",
    tag = "session",
    security(()),
    request_body = Credentials,
    responses(
        (status = 200, description = "Signed in; the `cityhub_session` cookie is set", body = Me),
        (status = 400, description = "The body is not a sign-in", body = ErrorBody),
        (status = 401, description = "Wrong user name or password", body = ErrorBody),
        (status = 429, description = "Too many failed sign-ins for this name or address; see Retry-After", body = ErrorBody)
    )
)]
pub async fn login(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    ApiJson(credentials): ApiJson<Credentials>,
) -> Result<Response, ApiError> {
    let Credentials { username, password } = credentials;
    if username.is_empty() || username.len() > 64 || password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::bad_request(format!(
            "a user name has 1 to 64 characters and a password at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    let attempted = Instant::now();
    // The connection goes back to the pool before the slow part, the password check.
    let found = state
        .pool()
        .access()
        .await?
        .user_credentials(&username)
        .await?;
    let who = if found.is_some() {
        Who::User(&username)
    } else {
        Who::NoSuchUser(&username)
    };
    let refused = |throttled| {
        state.refusals().note(
            Refused::SignIn,
            who,
            address,
            "POST /api/v1/login",
            throttled,
            chrono::Utc::now(),
        )
    };
    let device_cookie_name = device_cookie_name(&username);
    let device = cookie(&headers, &device_cookie_name)
        .and_then(|token| state.secret().device_id(token, &username));
    if let Err(wait) = state
        .limiter()
        .attempt(&username, address, device, attempted)
    {
        refused(true);
        return Err(ApiError::too_many(
            format!(
                "too many failed sign-ins for this user name or from this address; try again in {} seconds",
                wait.as_secs().max(1)
            ),
            wait,
        ));
    }
    let (user, hash) = match found {
        Some((user, hash)) if !user.disabled => (Some(user), hash),
        _ => (None, decoy_hash().to_owned()),
    };
    let matches = state.check_password(password, hash).await?;
    let Some(user) = user.filter(|_| matches) else {
        info!(message = "Failed sign-in.", username = %username, address = ?address);
        refused(false);
        return Err(ApiError::unauthorized(WRONG_CREDENTIALS));
    };
    state
        .limiter()
        .succeeded(&username, address, device, attempted);

    let mut db = state.pool().access().await?;
    let token = new_session_token();
    let digest = state.secret().session_digest(&token);
    let expires = chrono::Utc::now() + chrono::Duration::hours(SESSION_HOURS);
    db.create_session(&digest, &user, expires, address.map(|a| a.to_string()))
        .await?;
    let caller = Caller::from_user(user, Via::Session { digest })?;
    let cookie = session_cookie(&token, SESSION_HOURS * 3600, state.secure_cookie());
    let mut response = Json(Me::of(&caller, state.now().to_datetime())).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    if device.is_none() {
        let token = state.secret().device_token(&caller.username);
        response.headers_mut().append(
            header::SET_COOKIE,
            device_cookie(&device_cookie_name, &token, state.secure_cookie()),
        );
    }
    Ok(response)
}

/// Signs out: ends the session and clears the cookie.
#[utoipa::path(
    post,
    path = "/logout",
    operation_id = "logout",
    tag = "session",
    responses(
        (status = 204, description = "Signed out; the cookie is cleared"),
        (status = 400, description = "Called with an API token, which has no session", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody)
    )
)]
pub async fn logout(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let Via::Session { digest } = &caller.via else {
        return Err(ApiError::bad_request(
            "an API token has no session to end; revoke it with `cityhub users revoke-token`",
        ));
    };
    let mut db = state.pool().access().await?;
    db.end_session(digest, &caller.username).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie("", 0, state.secure_cookie()),
    );
    Ok(response)
}

/// Who the caller is.
#[utoipa::path(
    get,
    path = "/me",
    operation_id = "me",
    tag = "session",
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = "Not signed in", body = ErrorBody)
    )
)]
pub async fn me(State(state): State<AppState>, caller: Caller) -> Json<Me> {
    Json(Me::of(&caller, state.now().to_datetime()))
}

/// The cookies that tell the sign-in throttle this browser has signed in as a name before
/// (their values from [`crate::auth::SessionSecret::device_token`]), one per name, so a
/// console several people sign in on keeps each one's; sent to sign-in only.
pub const DEVICE_COOKIE: &str = "cityhub_device";

/// The device cookie's name for `username`: [`DEVICE_COOKIE`], `_`, and 16 hex digits of
/// the SHA-256 of the name in lower case (the name itself stays out of the cookie jar).
pub fn device_cookie_name(username: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(username.to_lowercase().as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{DEVICE_COOKIE}_{hex}")
}

/// How long a device cookie lasts: a person signs in from their own browser at least this
/// often.
const DEVICE_COOKIE_DAYS: i64 = 365;

/// The `Set-Cookie` value for the device cookie `name`.
fn device_cookie(name: &str, token: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let max_age = DEVICE_COOKIE_DAYS * 86_400;
    let value = format!(
        "{name}={token}; Path=/api/v1/login; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    );
    // Tokens are URL-safe base64 and a dot: always a valid header.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Set-Cookie` value for a session token (an empty one with age 0 clears it).
fn session_cookie(token: &str, max_age_s: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let value = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}"
    );
    // Tokens are URL-safe base64, so the value is always a valid header.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_http_only_and_strict() {
        let c = session_cookie("abc", 60, false);
        assert_eq!(
            c.to_str().unwrap(),
            "cityhub_session=abc; Path=/; HttpOnly; SameSite=Strict; Max-Age=60"
        );
        assert!(session_cookie("abc", 60, true)
            .to_str()
            .unwrap()
            .ends_with("; Secure"));
    }
}

//! [`Caller`]: who sends a request, found from an API token (`Authorization: Bearer`) or
//! the session cookie, with their role and tenants. Every `/api/v1` handler but sign-in
//! and the OpenAPI document takes one, so an unauthenticated request never reaches a
//! handler's body.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use store::{TenantRef, UserRow};

use crate::auth::api_token_digest;
use crate::error::ApiError;
use crate::roles::{refusal, Permission, Role};
use crate::AppState;

/// The cookie that carries a browser session.
pub const SESSION_COOKIE: &str = "cityhub_session";

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A browser session; the digest of its token (to end it).
    Session { digest: Vec<u8> },
    /// An API token, by name, and its digest (to check it again).
    Token { name: String, digest: Vec<u8> },
}

/// The person or program behind a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub username: String,
    pub role: Role,
    /// For crew: their team.
    pub team: Option<String>,
    /// The tenants they may see, sorted by slug.
    pub tenants: Vec<TenantRef>,
    pub via: Via,
}

impl Caller {
    pub(crate) fn from_user(user: UserRow, via: Via) -> Result<Caller, ApiError> {
        Ok(Caller {
            username: user.username,
            role: user.role,
            team: user.team,
            tenants: user.tenants,
            via,
        })
    }

    /// The name recorded in events and the audit log: the user, and which token they
    /// used if they used one.
    pub fn actor(&self) -> String {
        match &self.via {
            Via::Session { .. } => self.username.clone(),
            Via::Token { name, .. } => format!("{} (token {name})", self.username),
        }
    }

    /// Refuses (403) what the caller's role may not do.
    pub fn require(&self, p: Permission) -> Result<(), ApiError> {
        match refusal(self.role, p) {
            Some(why) => Err(ApiError::forbidden(why).refusing(&self.username)),
            None => Ok(()),
        }
    }

    /// The tenants a request covers: all of the caller's, or the one it names. A tenant
    /// that is not theirs is answered like one that does not exist.
    pub fn scope(&self, tenant: Option<&str>) -> Result<Vec<i32>, ApiError> {
        match tenant {
            None => Ok(self.tenants.iter().map(|t| t.id).collect()),
            Some(slug) => self
                .tenants
                .iter()
                .find(|t| t.slug == slug)
                .map(|t| vec![t.id])
                .ok_or_else(|| ApiError::not_found(format!("no tenant `{slug}`"))),
        }
    }

    /// The tenants' slugs.
    pub fn tenant_slugs(&self) -> Vec<String> {
        self.tenants.iter().map(|t| t.slug.clone()).collect()
    }

    /// Whether the credential of this request still gives the access it gave: the
    /// session has not ended or expired, the token was not revoked, the user was not
    /// disabled, and their role, team and tenants are the same. A database that cannot
    /// answer leaves it as it was (a lost connection does not end every stream).
    async fn still_holds(&self, state: &AppState) -> bool {
        let Ok(db) = state.pool().access().await else {
            return true;
        };
        let now = match &self.via {
            Via::Session { digest } => db.session_user(digest, chrono::Utc::now()).await,
            Via::Token { digest, .. } => db.token_user(digest).await.map(|u| u.map(|(u, _)| u)),
        };
        match now {
            Ok(Some(user)) => {
                user.username == self.username
                    && user.role == self.role
                    && user.team == self.team
                    && user.tenants == self.tenants
            }
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// Resolves once the caller no longer has the access this request was given
    /// (checked every [`RECHECK`]): what runs for long on their behalf (a live event
    /// stream, an export) ends with it.
    pub async fn access_ended(self, state: AppState) {
        loop {
            tokio::time::sleep(RECHECK).await;
            if !self.still_holds(&state).await {
                return;
            }
        }
    }
}

/// How often a long answer checks that its caller still has access.
pub const RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    ApiError::unauthorized("the Authorization header must be `Bearer <API token>`")
                })?;
            let digest = api_token_digest(token);
            let db = state.pool().access().await?;
            return match db.token_user(&digest).await? {
                Some((user, name)) => Caller::from_user(user, Via::Token { name, digest }),
                None => Err(ApiError::unauthorized(
                    "this API token is not valid: it is unknown, was revoked, or its user is disabled",
                )),
            };
        }
        let Some(token) = session_cookie(&parts.headers) else {
            return Err(ApiError::unauthorized(
                "sign in first (POST /api/v1/login) or send an API token (Authorization: Bearer ...)",
            ));
        };
        let digest = state.secret().session_digest(token);
        let db = state.pool().access().await?;
        match db.session_user(&digest, chrono::Utc::now()).await? {
            Some(user) => Caller::from_user(user, Via::Session { digest }),
            None => Err(ApiError::unauthorized(
                "your session has ended (signed out, expired, or the hub restarted); sign in again",
            )),
        }
    }
}

/// The session token from the `Cookie` headers, if there is one.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, SESSION_COOKIE)
}

/// The value of the cookie `name` from the `Cookie` headers, if there is a non-empty one.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, value)| *n == name && !value.is_empty())
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        assert_eq!(session_cookie(&h), None);
        h.append(header::COOKIE, HeaderValue::from_static("theme=dark"));
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; cityhub_session=abc; b=2"),
        );
        assert_eq!(session_cookie(&h), Some("abc"));
        let mut empty = HeaderMap::new();
        empty.append(header::COOKIE, HeaderValue::from_static("cityhub_session="));
        assert_eq!(session_cookie(&empty), None);
    }
}

//! [`ApiError`]: every failure of the API as a status and `{"error": "<sentence>"}`.
//!
//! A 4xx says what the caller did wrong, in words they can act on. A 5xx logs the cause
//! and tells the caller only that it failed: internals are not theirs to see.

use std::time::Duration;

use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use store::StoreError;
use tracing::error;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, as a sentence.
    pub error: String,
}

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<Duration>,
    bearer_challenge: bool,
    /// For a 403: whom it refused, for the audit log's tally ([`crate::refusals`]).
    refused: Option<String>,
}

/// Carried by a 403 response: the user it refused.
#[derive(Debug, Clone)]
pub struct RefusedUser(pub String);

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
            bearer_challenge: false,
            refused: None,
        }
    }

    /// Names the user a refusal was for.
    pub fn refusing(mut self, user: &str) -> ApiError {
        self.refused = Some(user.to_owned());
        self
    }

    /// An error with any status (the named constructors below cover most).
    pub fn with_status(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError::new(status, message)
    }

    /// 400: the request is wrong; the message says how.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401: who is asking is not known (or no longer).
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError {
            bearer_challenge: true,
            ..ApiError::new(StatusCode::UNAUTHORIZED, message)
        }
    }

    /// 403: known, but their role may not do this.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }

    /// 404: no such thing, or not one of the caller's tenants (the same answer, so that
    /// another tenant's assets are not revealed).
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 405: the path exists, not with this method.
    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, message)
    }

    /// 409: refused in the state the thing is in; the message names that state.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    /// 429: too many attempts; try again after `retry_after`.
    pub fn too_many(message: impl Into<String>, retry_after: Duration) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, message)
        }
    }

    /// 503: a passing condition (the database away or busy); the caller may retry.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// 500: logs `cause` and hides it.
    pub fn internal(what: &str, cause: &dyn std::fmt::Display) -> ApiError {
        error!(message = "Request failed.", what, error = %cause);
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{what} failed on the server; the cause has been logged"),
        )
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// For a 429: when to try again.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// A query string that could not be read (a number that is not one, an unknown key).
    pub fn from_query(rejection: QueryRejection) -> ApiError {
        let text = rejection.body_text();
        let detail = text
            .strip_prefix("Failed to deserialize query string: ")
            .unwrap_or(&text);
        ApiError::bad_request(format!("the query string is not valid: {detail}"))
    }

    /// A body sent without saying it is JSON.
    pub fn not_json() -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the body as JSON, with Content-Type: application/json",
        )
    }

    /// A body that could not be read (too large, cut off).
    pub fn unread_body(rejection: BytesRejection) -> ApiError {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the body is larger than the {} KiB a request may carry",
                    crate::BODY_LIMIT / 1024
                ),
            )
        } else {
            ApiError::bad_request(format!(
                "the body could not be read: {}",
                rejection.body_text()
            ))
        }
    }

    /// A body that is not the JSON asked for. `valid_json`: the body is JSON, so an error
    /// the parser counts as one of syntax is one of type (a `null`, a number or a list
    /// where a string or an object naming one of several choices goes).
    pub fn from_json(rejection: JsonRejection, valid_json: bool) -> ApiError {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::not_json(),
            JsonRejection::JsonSyntaxError(e) if valid_json => {
                let text = e.body_text();
                let text = text
                    .strip_prefix("Failed to parse the request body as JSON: ")
                    .unwrap_or(&text);
                let (path, _) = text.split_once(": expected value").unwrap_or(("", text));
                let path = if path.is_empty() || path == "." {
                    String::new()
                } else {
                    format!("{path}: ")
                };
                ApiError::bad_request(format!(
                    "the body does not have the expected fields: {path}expected a string or an object (one of the choices the API documents)"
                ))
            }
            JsonRejection::JsonSyntaxError(e) => {
                ApiError::bad_request(format!("the body is not valid JSON: {}", e.body_text()))
            }
            JsonRejection::JsonDataError(e) => ApiError::bad_request(format!(
                "the body does not have the expected fields: {}",
                in_words(&e.body_text())
            )),
            JsonRejection::BytesRejection(e) => ApiError::unread_body(e),
            other => {
                ApiError::bad_request(format!("the body could not be read: {}", other.body_text()))
            }
        }
    }
}

/// A JSON data error in words a client's author reads: without the library's preamble,
/// and with Rust's type names (`expected i64`) said as JSON speaks of them.
fn in_words(text: &str) -> String {
    let text = text
        .strip_prefix("Failed to deserialize the JSON body into the target type: ")
        .unwrap_or(text);
    let mut out = text.to_owned();
    for (rust, words) in [
        ("expected i64", "expected a whole number"),
        ("expected i32", "expected a whole number"),
        ("expected i16", "expected a whole number"),
        ("expected u64", "expected a whole number, 0 or more"),
        ("expected u32", "expected a whole number, 0 or more"),
        ("expected u16", "expected a whole number, 0 or more"),
        ("expected u8", "expected a whole number, 0 or more"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("floating point `", "the number `"),
    ] {
        out = out.replace(rust, words);
    }
    out
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        use StoreError::*;
        match &e {
            NoOutage(_) | NoWorkOrder(_) | UnknownTenant(_) | UnknownUser(_) => {
                ApiError::not_found(e.to_string())
            }
            UserBeyondTenants(_) => ApiError::forbidden(e.to_string()),
            OutageState { .. } | NotShelved(_) | BadTransition { .. } => {
                ApiError::conflict(e.to_string())
            }
            NoCommandTarget { .. } | NoBatch(_) | NoSchedule(_) | NoWebhook(_) => {
                ApiError::not_found(e.to_string())
            }
            ConfirmMismatch { .. } | ScheduleRemoved(_) | WebhookRemoved(_) => {
                ApiError::conflict(e.to_string())
            }
            NotALamp { .. } | NoDevicesReached | BatchTooLarge { .. } => {
                ApiError::bad_request(e.to_string())
            }
            NoAssignee(_) | ShelveInPast { .. } | BadPeriod { .. } => {
                ApiError::bad_request(e.to_string())
            }
            _ if e.is_retryable() => {
                error!(message = "The database is unavailable.", error = %e);
                ApiError::unavailable("the database is unavailable; try again shortly")
            }
            _ => ApiError::internal("the request", &e),
        }
    }
}

/// A `Retry-After` value: whole seconds, rounded up ("0" would invite an immediate retry).
pub fn retry_after_value(after: Duration) -> HeaderValue {
    let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
    HeaderValue::from(secs.max(1))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response();
        let headers = response.headers_mut();
        if let Some(after) = self.retry_after {
            headers.insert(header::RETRY_AFTER, retry_after_value(after));
        }
        if self.bearer_challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"cityhub\""),
            );
        }
        if let Some(user) = self.refused {
            response.extensions_mut().insert(RefusedUser(user));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_data_error_is_said_in_words() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Light {
            dim: Option<i64>,
        }
        let error = serde_json::from_str::<Light>(r#"{"dim": 50.5}"#).unwrap_err();
        let text =
            format!("Failed to deserialize the JSON body into the target type: dim: {error}");
        assert_eq!(
            in_words(&text),
            "dim: invalid type: the number `50.5`, expected a whole number at line 1 column 12"
        );
    }
}

//! What every request passes before its handler sees it (one middleware, [`admit`]):
//!
//! - its body is read whole, at most [`crate::BODY_LIMIT`] bytes (413 past it), within
//!   the body timeout (408 past it), so a client that sends its body a byte at a time
//!   holds neither a handler nor a connection for long.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use crate::error::ApiError;
use crate::AppState;

/// The middleware: reads the body (see the module's documentation), then hands the
/// request on.
pub async fn admit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let body = match read_body(body, state.http_limits().body_timeout).await {
        Ok(bytes) => bytes,
        Err(refusal) => return refusal.into_response(),
    };
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// The whole body within `timeout`, at most [`crate::BODY_LIMIT`] bytes.
async fn read_body(body: Body, timeout: Duration) -> Result<bytes::Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, crate::BODY_LIMIT);
    match tokio::time::timeout(timeout, limited.collect()).await {
        Err(_) => Err(ApiError::with_status(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request's body did not arrive within {} s",
                timeout.as_secs()
            ),
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::with_status(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is larger than the {} KiB a request may carry",
                crate::BODY_LIMIT / 1024
            ),
        )),
        Ok(Err(e)) => Err(ApiError::bad_request(format!(
            "the body could not be read: {e}"
        ))),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

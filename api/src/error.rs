//! The API's error type and how each error answers: `{"error": "…"}` with a
//! status saying whose fault it is. 4xx messages tell the caller what to fix;
//! 5xx messages stay generic and the cause goes to the log.

use axum::http::header::RETRY_AFTER;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cheops_replicator::ReplicatorError;
use serde::Serialize;
use thiserror::Error;

/// Everything a request can fail with.
#[derive(Debug, Error)]
pub enum ApiError {
    /// The request is malformed or breaks a rule; the message says which.
    #[error("{0}")]
    BadRequest(String),
    /// The resource does not exist (and the request gave no way around it).
    #[error("resource {0:?} does not exist")]
    ResourceNotFound(String),
    /// No route matches the path.
    #[error("no such endpoint: {0}")]
    NoRoute(String),
    /// The route exists but not for this method.
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    /// The body is larger than the configured limit.
    #[error("the request body is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// The node refused or failed to do its part.
    #[error(transparent)]
    Node(#[from] ReplicatorError),
}

/// The `Retry-After` of a 503 for a resource too busy to write: writers
/// racing on one resource settle within a second.
const RETRY_AFTER_SECONDS: &str = "1";

/// The body of every error answer.
#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest(message.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::ResourceNotFound(_) | ApiError::NoRoute(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Node(ReplicatorError::InvalidRequest(_)) => StatusCode::BAD_REQUEST,
            ApiError::Node(ReplicatorError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Node(ReplicatorError::IdTaken(_)) => StatusCode::CONFLICT,
            ApiError::Node(ReplicatorError::Unavailable(_) | ReplicatorError::Contended { .. }) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Node(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Node(contended @ ReplicatorError::Contended { .. }) = &self {
            // Not a failure of the node: the caller may simply try again.
            let message = contended.to_string();
            tracing::info!(error = %message, status = status.as_u16(), "request deferred");
            let headers = [(RETRY_AFTER, RETRY_AFTER_SECONDS)];
            return (status, headers, Json(ErrorBody { error: &message })).into_response();
        }
        let message = if status.is_server_error() {
            tracing::error!(error = %error_chain(&self), status = status.as_u16(), "request failed");
            if status == StatusCode::SERVICE_UNAVAILABLE {
                "the database is unavailable, try again later".to_owned()
            } else {
                "internal error".to_owned()
            }
        } else {
            let message = self.to_string();
            tracing::info!(error = %message, status = status.as_u16(), "request refused");
            message
        };
        (status, Json(ErrorBody { error: &message })).into_response()
    }
}

/// An error with its causes, which reqwest (among others) keeps out of its
/// own message; a cause the message already ends with is not repeated.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Error)]
    #[error("could not connect")]
    struct Quiet(#[source] std::io::Error);

    #[derive(Debug, Error)]
    #[error("unreachable: {0}")]
    struct Verbose(#[source] std::io::Error);

    #[test]
    fn the_chain_names_every_cause_once() {
        let refused = || std::io::Error::other("connection refused");
        assert_eq!(
            error_chain(&Quiet(refused())),
            "could not connect: connection refused"
        );
        assert_eq!(
            error_chain(&Verbose(refused())),
            "unreachable: connection refused"
        );
    }
}

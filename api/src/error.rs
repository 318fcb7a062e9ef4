//! The error type of every listener of the node (the API, the dump,
//! Chephren) and how each error answers: `{"error": "…"}` with a status
//! saying whose fault it is. 4xx messages tell the caller what to fix;
//! 5xx messages stay generic and the cause goes to the log.

use axum::http::header::RETRY_AFTER;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cheops_model::{error_chain, ErrorBody};
use cheops_replicator::ReplicatorError;
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
    /// The resource does not live on this site (Chephren shows only those).
    #[error("no resource {0:?} on this site")]
    NotOnThisSite(String),
    /// No route matches the path.
    #[error("no such endpoint: {0}")]
    NoRoute(String),
    /// The route exists but not for this method.
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    /// What was asked for is no longer kept (a changes feed token too old).
    #[error("{0}")]
    Gone(String),
    /// The body is larger than the configured limit.
    #[error("the request body is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// The node refused or failed to do its part.
    #[error(transparent)]
    Node(#[from] ReplicatorError),
}

/// The `Retry-After` of a 503 for a resource too busy to write, or whose
/// merge is on its way: both settle within a second.
const RETRY_AFTER_SECONDS: &str = "1";

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest(message.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::ResourceNotFound(_) | ApiError::NotOnThisSite(_) | ApiError::NoRoute(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Node(ReplicatorError::InvalidRequest(_)) => StatusCode::BAD_REQUEST,
            ApiError::Node(
                ReplicatorError::TooLarge { .. } | ReplicatorError::RefusedTooLarge { .. },
            ) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Node(
                ReplicatorError::IdTaken(_)
                | ReplicatorError::ConfigChanged(_)
                | ReplicatorError::OverSize { .. },
            ) => StatusCode::CONFLICT,
            ApiError::Node(e) if e.is_deferred() => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Node(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Node(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Node(deferred) = &self {
            if deferred.is_deferred() {
                // Not a failure of the node: the caller may simply try again.
                let message = deferred.to_string();
                tracing::info!(error = %message, status = status.as_u16(), "request deferred");
                let headers = [(RETRY_AFTER, RETRY_AFTER_SECONDS)];
                return (status, headers, Json(ErrorBody::new(message))).into_response();
            }
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
        (status, Json(ErrorBody::new(message))).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chephren and the API answer a database that stopped answering the
    /// same way: the caller may try again later.
    #[test]
    fn a_stalled_database_is_unavailable_not_an_internal_error() {
        let stalled = ApiError::Node(ReplicatorError::Stalled {
            context: "GET _all_docs".into(),
            after: std::time::Duration::from_secs(4),
        });
        assert_eq!(stalled.status(), StatusCode::SERVICE_UNAVAILABLE);
        let broken = ApiError::Node(ReplicatorError::InvalidRequest("x".into()));
        assert_eq!(broken.status(), StatusCode::BAD_REQUEST);
        let elsewhere = ApiError::NotOnThisSite("r".into());
        assert_eq!(elsewhere.status(), StatusCode::NOT_FOUND);
        assert_eq!(elsewhere.to_string(), "no resource \"r\" on this site");
    }
}

//! Chephren's errors, answered as JSON `{"error": "..."}`: 4xx say what is
//! wrong, 5xx stay generic and their cause goes to the log.

use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cheops_replicator::ReplicatorError;
use thiserror::Error;
use tracing::{error, info};

#[derive(Debug, Error)]
pub enum ChephrenError {
    #[error("no resource {0:?} on this site")]
    UnknownResource(String),
    #[error("no such endpoint: {0}")]
    NoRoute(String),
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error(transparent)]
    Node(#[from] ReplicatorError),
}

impl IntoResponse for ChephrenError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            ChephrenError::UnknownResource(_) | ChephrenError::NoRoute(_) => {
                info!(error = %self, "chephren request refused");
                (StatusCode::NOT_FOUND, self.to_string())
            }
            ChephrenError::MethodNotAllowed { .. } => {
                info!(error = %self, "chephren request refused");
                (StatusCode::METHOD_NOT_ALLOWED, self.to_string())
            }
            ChephrenError::Node(e) if e.is_unavailable() => {
                error!(error = %e, "chephren: CouchDB unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the database is unavailable, try again later".to_owned(),
                )
            }
            ChephrenError::Node(e) => {
                error!(error = %e, "chephren request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_owned(),
                )
            }
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

pub(crate) async fn not_found(uri: Uri) -> ChephrenError {
    ChephrenError::NoRoute(uri.path().to_owned())
}

pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> ChephrenError {
    ChephrenError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

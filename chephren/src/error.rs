//! Chephren's errors, answered as JSON `{"error": "..."}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cheops_replicator::ReplicatorError;
use thiserror::Error;
use tracing::{error, info};

#[derive(Debug, Error)]
pub enum ChephrenError {
    #[error("no resource {0:?} on this site")]
    UnknownResource(String),
    #[error(transparent)]
    Node(#[from] ReplicatorError),
}

impl IntoResponse for ChephrenError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            ChephrenError::UnknownResource(_) => {
                info!(error = %self, "chephren request refused");
                (StatusCode::NOT_FOUND, self.to_string())
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

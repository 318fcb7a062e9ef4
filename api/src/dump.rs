//! The dump listener's `GET /`: every document of the local database, for
//! debugging and the original's tooling.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use cheops_replicator::NodeSeam;

use crate::ApiError;

pub(crate) async fn dump(
    State(node): State<Arc<dyn NodeSeam>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(node.dump().await?))
}

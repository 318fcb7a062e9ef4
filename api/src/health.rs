//! `GET /health`: the node's background work, 200 when it can accept and
//! replicate operations, 503 when not.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use cheops_replicator::Health;

use crate::AppState;

pub(crate) async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let health = state.node.check_health().await;
    let status = if health.is_healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health))
}

//! `GET /health`: the node's background work, 200 when it can accept and
//! replicate operations, 503 when not. Open, for load balancers and peers;
//! its error texts, recent deliveries and resources over size (which can
//! name hosts, paths and resources) only for a request that could read
//! `/metrics`.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::Json;
use cheops_replicator::Health;

use crate::auth::Access;
use crate::AppState;

pub(crate) async fn health(
    State(state): State<AppState>,
    request: Request,
) -> (StatusCode, Json<Health>) {
    let detailed = state
        .config
        .tokens
        .check_request(&request, Access::Read)
        .is_ok();
    let health = state.node.check_health().await;
    let health = if detailed {
        health
    } else {
        health.states_only()
    };
    let status = if health.is_healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health))
}

//! `GET /metrics`: the node's metrics in Prometheus's text format, for the
//! read or operator token.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use cheops_replicator::metrics;

use crate::AppState;

pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, metrics::CONTENT_TYPE)],
        state.node.metrics().await,
    )
}

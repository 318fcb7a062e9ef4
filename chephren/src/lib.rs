//! Chephren: the API behind the Cheops web UI, served on its own port. It
//! answers the original's endpoints with the original's shapes:
//!
//! - `GET /api/node` → `{name, state, resourcesCount, address}`
//! - `GET /api/resources` → `[{id, name, lastUpdate, commandsCount}]`
//! - `GET /api/resource/{id}` → `{id, name, lastUpdate, commands: [{command, date}]}`
//!
//! As in the original, a resource's "commands" are this site's executions
//! of its operations (its replies), oldest first.

mod error;
mod views;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use cheops_replicator::ReplicatorError;
use serde_json::Value;

pub use error::ChephrenError;
pub use views::{CommandView, NodeView, ResourceSummary, ResourceView};

/// A boxed future, so that [`Source`] can be used as `Arc<dyn Source>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where Chephren reads from: the daemon's node, or a fake in tests.
pub trait Source: Send + Sync + 'static {
    /// This node's site name.
    fn site(&self) -> &str;

    /// Every document of the local database (`_all_docs` with documents).
    fn documents(&self) -> BoxFuture<'_, Result<Value, ReplicatorError>>;
}

#[derive(Clone)]
struct AppState {
    source: Arc<dyn Source>,
    /// This Chephren's own URL, reported as the node's address.
    address: String,
}

/// The Chephren API; `address` is the URL it is reached at.
pub fn router(source: Arc<dyn Source>, address: String) -> Router {
    Router::new()
        .route("/api/node", get(node))
        .route("/api/resources", get(resources))
        .route("/api/resource/{id}", get(resource))
        .with_state(AppState { source, address })
}

async fn documents(state: &AppState) -> Result<Vec<Value>, ChephrenError> {
    let all = state.source.documents().await?;
    Ok(views::documents_of(&all))
}

async fn node(State(state): State<AppState>) -> Result<Json<NodeView>, ChephrenError> {
    let docs = documents(&state).await?;
    Ok(Json(views::node(
        state.source.site(),
        &state.address,
        &docs,
    )))
}

async fn resources(
    State(state): State<AppState>,
) -> Result<Json<Vec<ResourceSummary>>, ChephrenError> {
    let docs = documents(&state).await?;
    Ok(Json(views::resources(state.source.site(), &docs)))
}

async fn resource(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ResourceView>, ChephrenError> {
    let docs = documents(&state).await?;
    views::resource(state.source.site(), &docs, &id)
        .map(Json)
        .ok_or(ChephrenError::UnknownResource(id))
}

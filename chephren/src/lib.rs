//! Chephren: the web UI of a Cheops node and the API behind it, served on
//! its own port.
//!
//! The original's endpoints, with the original's shapes:
//!
//! - `GET /api/node` → `{name, state, resourcesCount, address}`
//! - `GET /api/resources` → `[{id, name, lastUpdate, commandsCount}]`
//! - `GET /api/resource/{id}` → `{id, name, lastUpdate, commands: [{command, date}]}`
//!
//! and what an operator watching a deployment needs, which the UI reads:
//!
//! - `GET /api/cluster`: every site, online or not and since when, with
//!   resource counts;
//! - `GET /api/blocks`: every resource, with whether it has converged;
//! - `GET /api/block/{id}`: a resource's block × its sites, each cell a
//!   reply status with its output, and its unresolved conflicts;
//! - `GET /api/history/{id}`: a page of a resource's history, oldest first,
//!   every operation ever accepted with every site's replies;
//! - `GET /api/feed`: the last events of the node's changes feed;
//! - `GET /api/events`: server-sent events as things change;
//! - `GET /`: the UI itself.
//!
//! It reads the node through [`cheops_replicator::NodeSeam`]: typed
//! resources and replies, never CouchDB's rows.

mod block;
mod cluster;
mod cors;
mod feed;
mod history;
mod original;
mod stream;
mod ui;

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use cheops_api::{method_not_allowed, not_found, ApiError, ResourceId};
use cheops_replicator::{NodeSeam, Reading};
use tokio::sync::watch;
use tracing::warn;

pub use block::{BlockSummary, BlockView, CellStatus, CellView, OperationView, ResolutionView};
pub use cluster::{ClusterView, SiteState, SiteView};
pub use cors::parse_origin;
pub use history::HistoryPage;
pub use original::{CommandView, NodeView, ResourceSummary, ResourceView};

/// How Chephren is reached.
#[derive(Debug, Clone)]
pub struct ChephrenConfig {
    /// This Chephren's own URL, reported as the node's address.
    pub address: String,
    /// Other web origins allowed to read it from a browser, as
    /// [`parse_origin`] returns them; `*` for any.
    pub cors_origins: Vec<String>,
}

#[derive(Clone)]
struct AppState {
    node: Arc<dyn NodeSeam>,
    address: String,
    /// Ends the event streams, which would otherwise hold the server open.
    shutdown: watch::Receiver<bool>,
}

/// The UI and its API. Event streams end when `shutdown` turns true.
/// `guard` wraps the API's routes (the daemon refuses them without the read
/// or operator token); the UI's files hold no data and stay open, so that a
/// browser can load the page that asks for the token. CORS is outermost:
/// a preflight is answered without a token, as browsers send none with it.
pub fn router(
    node: Arc<dyn NodeSeam>,
    config: ChephrenConfig,
    shutdown: watch::Receiver<bool>,
    guard: impl FnOnce(Router) -> Router,
) -> Router {
    let api = Router::new()
        .route("/api/node", get(this_node))
        .route("/api/resources", get(resources))
        .route("/api/resource/{id}", get(resource))
        .route("/api/cluster", get(cluster))
        .route("/api/blocks", get(blocks))
        .route("/api/block/{id}", get(block))
        .route("/api/history/{id}", get(history::history))
        .route("/api/feed", get(feed::feed))
        .route("/api/events", get(stream::events))
        .with_state(AppState {
            node,
            address: config.address,
            shutdown,
        });
    let router = guard(api)
        .merge(ui::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    match cors::layer(&config.cors_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

async fn this_node(State(state): State<AppState>) -> Result<Json<NodeView>, ApiError> {
    let docs = state.node.documents(&Reading::Resources).await?;
    Ok(Json(original::node(
        state.node.site(),
        &state.address,
        &docs,
    )))
}

async fn resources(State(state): State<AppState>) -> Result<Json<Vec<ResourceSummary>>, ApiError> {
    let docs = state.node.documents(&Reading::Runs).await?;
    Ok(Json(original::resources(state.node.site(), &docs)))
}

async fn resource(
    State(state): State<AppState>,
    ResourceId(id): ResourceId,
) -> Result<Json<ResourceView>, ApiError> {
    let docs = state.node.documents(&Reading::RanHere(id.clone())).await?;
    original::resource(state.node.site(), &docs, &id)
        .map(Json)
        .ok_or(ApiError::NotOnThisSite(id))
}

/// The `limit` query parameter: `default` when absent, else 1 to `max`.
pub(crate) fn limit(
    params: &std::collections::HashMap<String, String>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match params.get("limit") {
        None => Ok(default),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| ApiError::BadRequest(format!("limit must be 1 to {max}"))),
    }
}

/// Answers even when the database cannot be read: peers' liveness is most
/// wanted precisely when something is down.
async fn cluster(State(state): State<AppState>) -> Json<ClusterView> {
    let docs = match state.node.documents(&Reading::Blocks).await {
        Ok(docs) => Some(docs),
        Err(error) => {
            warn!(%error, "chephren: cluster view without the database");
            None
        }
    };
    Json(cluster::cluster(
        state.node.site(),
        &state.address,
        state.node.health(),
        state.node.peers(),
        docs.as_ref(),
    ))
}

async fn blocks(State(state): State<AppState>) -> Result<Json<Vec<BlockSummary>>, ApiError> {
    let docs = state.node.documents(&Reading::Blocks).await?;
    Ok(Json(block::summaries(state.node.site(), &docs)))
}

async fn block(
    State(state): State<AppState>,
    ResourceId(id): ResourceId,
) -> Result<Json<BlockView>, ApiError> {
    let docs = state.node.documents(&Reading::Block(id.clone())).await?;
    block::block(state.node.site(), &docs, &id)
        .map(Json)
        .ok_or(ApiError::NotOnThisSite(id))
}

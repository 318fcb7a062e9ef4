//! The Cheops HTTP API (`/exec`, `/show`, `/show_local`, `/health`,
//! `/openapi.yml` and the dump listener). It knows nodes only through the
//! [`Node`] trait, which the daemon implements for its replicator; `cheops
//! serve` serves the routers.

mod dump;
mod error;
mod exec;
mod fallback;
mod form;
mod health;
mod node;
mod openapi;
mod replies;
mod resource_id;
mod show;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

pub use error::{error_chain, ApiError};
pub use node::{BoxFuture, Node};
pub use show::SiteOutput;

/// Limits of the API, and how it reaches its peers.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// How long `/exec` waits for the sites' replies, in all, from the
    /// submit; the sites that have not replied by then get a `TIMEOUT` line.
    pub reply_timeout: Duration,
    /// How long `/show` waits for the sites' `/show_local`, in all.
    pub show_timeout: Duration,
    /// The largest request body accepted (files included), in bytes.
    pub body_limit: usize,
    /// The client `/show` asks the sites' `/show_local` with (pooled, and
    /// trusting the roots of the node's CA file).
    pub peer_client: reqwest::Client,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            reply_timeout: Duration::from_secs(30),
            show_timeout: Duration::from_secs(30),
            body_limit: 64 * 1024 * 1024,
            peer_client: reqwest::Client::new(),
        }
    }
}

/// What every handler of the API shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub node: Arc<dyn Node>,
    pub config: Arc<ApiConfig>,
    /// Reused for `/show` fan-out, so connections to peers are pooled.
    pub client: reqwest::Client,
}

/// The Cheops API, served on the API port (8079 by default).
pub fn router(node: Arc<dyn Node>, config: ApiConfig) -> Router {
    let body_limit = config.body_limit;
    let state = AppState {
        node,
        client: config.peer_client.clone(),
        config: Arc::new(config),
    };
    Router::new()
        .route("/exec/{id}", post(exec::exec))
        .route("/show/{id}", post(show::show))
        .route("/show_local/{id}", post(show::show_local))
        .route("/health", get(health::health))
        .route("/openapi.yml", get(openapi::openapi))
        .fallback(fallback::not_found)
        .method_not_allowed_fallback(fallback::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// The dump listener (port 7071 by default): `GET /` lists the local
/// database with every document.
pub fn dump_router(node: Arc<dyn Node>) -> Router {
    Router::new()
        .route("/", get(dump::dump))
        .fallback(fallback::not_found)
        .method_not_allowed_fallback(fallback::method_not_allowed)
        .with_state(node)
}

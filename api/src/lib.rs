//! The Cheops HTTP API (`/exec`, `/show`, `/show_local`, `/history`, `/changes`,
//! `/health`, `/metrics`, `/openapi.yml` and the dump listener), and what
//! every listener of the node shares: the bearer-token guard ([`auth`]),
//! the error answers ([`ApiError`]) and the fallbacks ([`not_found`],
//! [`method_not_allowed`]). It knows a node only through the [`NodeSeam`]
//! trait, which the replicator's node implements; `cheops serve` serves
//! the routers.

pub mod auth;
mod changes;
mod command_form;
mod dump;
mod error;
mod exec;
mod fallback;
mod form;
mod health;
mod history;
mod metrics;
mod openapi;
mod replies;
mod resource_id;
mod show;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use auth::{guarded, Access, Tokens};
use cheops_replicator::NodeSeam;
pub use error::ApiError;
pub use fallback::{method_not_allowed, not_found};
pub use resource_id::ResourceId;

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
    /// The largest answer read from a peer's `/show_local`, in bytes: a
    /// peer that sends more is reported KO, never read whole.
    pub peer_answer_limit: usize,
    /// The tokens requests must carry (none by default: open), and the one
    /// `/show` sends to the other sites.
    pub tokens: Arc<Tokens>,
}

/// The largest `/show_local` answer a site sends when its commands' output
/// is cut at `output_limit` bytes: JSON writes a byte as six at most.
pub fn peer_answer_limit(output_limit: usize) -> usize {
    output_limit.saturating_mul(6).saturating_add(64 * 1024)
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            reply_timeout: Duration::from_secs(30),
            show_timeout: Duration::from_secs(30),
            body_limit: 64 * 1024 * 1024,
            peer_client: reqwest::Client::new(),
            peer_answer_limit: peer_answer_limit(1024 * 1024),
            tokens: Arc::new(Tokens::open()),
        }
    }
}

/// What every handler of the API shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub node: Arc<dyn NodeSeam>,
    pub config: Arc<ApiConfig>,
    /// Reused for `/show` fan-out, so connections to peers are pooled.
    pub client: reqwest::Client,
}

/// The Cheops API, served on the API port (8079 by default). `/health`
/// and `/openapi.yml` stay open (load balancers and peers probe the first,
/// the second is public); `/metrics`, `/history` and `/changes` take the read or
/// operator token, `/show_local` the node or operator token, `/exec` and
/// `/show` the operator token.
pub fn router(node: Arc<dyn NodeSeam>, config: ApiConfig) -> Router {
    let body_limit = config.body_limit;
    let tokens = Arc::clone(&config.tokens);
    let state = AppState {
        node,
        client: config.peer_client.clone(),
        config: Arc::new(config),
    };
    let operator = Router::new()
        .route("/exec/{id}", post(exec::exec))
        .route("/show/{id}", post(show::show));
    let node_calls = Router::new().route("/show_local/{id}", post(show::show_local));
    let reads = Router::new()
        .route("/metrics", get(metrics::metrics))
        .route("/history/{id}", get(history::history))
        .route("/changes", get(changes::all))
        .route("/changes/{id}", get(changes::one));
    guarded(operator, Arc::clone(&tokens), Access::Operator)
        .merge(guarded(node_calls, Arc::clone(&tokens), Access::Node))
        .merge(guarded(reads, tokens, Access::Read))
        .route("/health", get(health::health))
        .route("/openapi.yml", get(openapi::openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// The dump listener (off unless a port is given): `GET /` lists the
/// local database with every document, for the read or operator token.
pub fn dump_router(node: Arc<dyn NodeSeam>, tokens: Arc<Tokens>) -> Router {
    guarded(
        Router::new().route("/", get(dump::dump)),
        tokens,
        Access::Read,
    )
    .fallback(not_found)
    .method_not_allowed_fallback(method_not_allowed)
    .with_state(node)
}

//! `GET /api/feed`: the last events of this node's changes feed, newest
//! first, for the page that shows them live (it reads them again when the
//! event stream says something changed). `resource` keeps one resource's;
//! `limit` says how many (30 by default, at most 500).

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::Json;
use cheops_api::ApiError;
use cheops_replicator::Event;

use crate::AppState;

const DEFAULT_LIMIT: usize = 30;
const MAX_LIMIT: usize = 500;

pub(crate) async fn feed(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Vec<Event>>, ApiError> {
    let limit = crate::limit(&params, DEFAULT_LIMIT, MAX_LIMIT)?;
    let resource = params.get("resource").map(String::as_str);
    Ok(Json(state.node.feed().latest(resource, limit)))
}

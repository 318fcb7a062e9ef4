//! `GET /api/history/{id}`: one page of a resource's history, oldest first,
//! for the resource page. Each entry is a line of the API's
//! `GET /history/{id}` (files by name and size only); the next page starts
//! after the last entry given (`afterTime` and `afterRequest`, its `Time`
//! and `RequestId`), so that a page costs the same however far it is.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::Json;
use cheops_model::{HistoryEntry, Timestamp};
use cheops_replicator::HistoryQuery;
use futures::StreamExt;
use serde::Serialize;

use cheops_api::{ApiError, ResourceId};

use crate::AppState;

/// Entries per page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 50;
/// The most entries a page may hold.
pub const MAX_LIMIT: usize = 200;

/// One page of a history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPage {
    pub id: String,
    /// Oldest first, as `GET /history/{id}` gives them.
    pub entries: Vec<HistoryEntry>,
    /// Whether entries follow the last one given.
    pub more: bool,
}

pub(crate) async fn history(
    State(state): State<AppState>,
    ResourceId(id): ResourceId,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<HistoryPage>, ApiError> {
    let limit = crate::limit(&params, DEFAULT_LIMIT, MAX_LIMIT)?;
    let after = match (params.get("afterTime"), params.get("afterRequest")) {
        (None, None) => None,
        (Some(time), Some(request)) => {
            let time: Timestamp = time
                .parse()
                .map_err(|e| ApiError::BadRequest(format!("afterTime: {e}")))?;
            Some((time, request.clone()))
        }
        _ => {
            return Err(ApiError::BadRequest(
                "afterTime and afterRequest go together".into(),
            ))
        }
    };
    let query = HistoryQuery {
        files: false,
        after,
    };
    let mut entries = state
        .node
        .history(&id, query)
        .await?
        .ok_or_else(|| ApiError::NotOnThisSite(id.clone()))?;
    let mut page = Vec::with_capacity(limit);
    while page.len() < limit {
        match entries.next().await {
            Some(entry) => page.push(entry?),
            None => break,
        }
    }
    let more = page.len() == limit && entries.next().await.transpose()?.is_some();
    Ok(Json(HistoryPage {
        id,
        entries: page,
        more,
    }))
}

//! `GET /history/{id}`: every operation ever accepted for a resource,
//! oldest first, one JSON line each with every site's replies, streamed as
//! the node reads them a page at a time.

use axum::body::Body;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, Uri};
use axum::response::Response;
use cheops_replicator::HistoryQuery;
use futures::StreamExt;

use crate::replies::json_line;
use crate::resource_id::ResourceId;
use crate::{ApiError, AppState};

pub(crate) async fn history(
    State(state): State<AppState>,
    ResourceId(id): ResourceId,
    uri: Uri,
) -> Result<Response, ApiError> {
    let query = HistoryQuery {
        files: files_flag(uri.query().unwrap_or_default())?,
        after: None,
    };
    let entries = state
        .node
        .history(&id, query)
        .await?
        .ok_or_else(|| ApiError::ResourceNotFound(id.clone()))?;
    // A failure once the answer has started cannot change its status: the
    // body is cut short (the client sees an incomplete answer) and the
    // cause goes to the log.
    let lines = entries.filter_map(move |entry| {
        let line = match entry {
            Ok(entry) => Some(Ok::<_, std::io::Error>(json_line(&entry, &entry.request_id))),
            Err(error) => {
                tracing::error!(resource = %id, error = %cheops_model::error_chain(&error), "history read failed mid-answer");
                Some(Err(std::io::Error::other("the history could not be read")))
            }
        };
        async move { line }
    });
    let mut response = Response::new(Body::from_stream(lines));
    // As /exec: JSON Lines under the type the API's other answers have.
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// The `files` query parameter: `true` includes the files' contents;
/// absent or `false` does not; anything else is refused.
fn files_flag(query: &str) -> Result<bool, ApiError> {
    let mut given = query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .filter(|(name, _)| *name == "files")
        .map(|(_, value)| value);
    let files = match (given.next(), given.next()) {
        (None, _) => false,
        (Some("true"), None) => true,
        (Some("false"), None) => false,
        (Some(_), None) => {
            return Err(ApiError::bad_request(
                "query parameter `files` must be true or false",
            ))
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "query parameter `files` is given more than once",
            ))
        }
    };
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_is_true_false_or_absent() {
        assert!(!files_flag("").unwrap());
        assert!(files_flag("files=true").unwrap());
        assert!(!files_flag("other=1&files=false").unwrap());
        for bad in [
            "files",
            "files=1",
            "files=TRUE",
            "files=yes",
            "files=true&files=true",
        ] {
            assert!(files_flag(bad).is_err(), "{bad}");
        }
    }
}

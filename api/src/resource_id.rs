//! The `{id}` of every route that names a resource (the API's and
//! Chephren's): a resource id that can travel in a URL and be a CouchDB
//! document id unchanged, so that no path reaches another of CouchDB's
//! (`_changes`, `_all_docs`) or a document that is not a resource.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::ApiError;

/// A resource id taken from the last segment of the path as sent, before
/// any percent-decoding: an id is accepted only if decoding would not change
/// it, so the id the caller typed is the id stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ResourceId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Every route with an id ends with `{id}`, and a percent-encoded id
        // cannot hold a raw '/', so the last segment is the id as sent.
        let raw = parts.uri.path().rsplit('/').next().unwrap_or_default();
        check(raw)?;
        Ok(ResourceId(raw.to_owned()))
    }
}

/// The model's rule for ids, answered as a 400.
pub(crate) fn check(id: &str) -> Result<(), ApiError> {
    cheops_model::check_resource_id(id).map_err(ApiError::BadRequest)
}

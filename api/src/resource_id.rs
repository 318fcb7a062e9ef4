//! The `{id}` of `/exec`, `/show` and `/show_local`: a resource id that can
//! travel in a URL and be a CouchDB document id unchanged.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::ApiError;

/// A resource id taken from the last segment of the path as sent, before
/// any percent-decoding: an id is accepted only if decoding would not change
/// it, so the id the caller typed is the id stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResourceId(pub String);

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

/// Accepts RFC 3986 unreserved characters only, which no URL escaping ever
/// touches; refuses what CouchDB reserves (`_design`, `_all_docs`, …) and the
/// dot segments that URL libraries rewrite.
pub(crate) fn check(id: &str) -> Result<(), ApiError> {
    if id.is_empty() {
        return Err(ApiError::bad_request("the resource id is empty"));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')))
    {
        return Err(ApiError::BadRequest(format!(
            "resource id {id:?} is not URL-safe ({c:?} is not allowed): \
             use only letters, digits, '-', '.', '_' and '~'"
        )));
    }
    if id.starts_with('_') {
        return Err(ApiError::BadRequest(format!(
            "resource id {id:?} must not start with '_': CouchDB reserves such ids"
        )));
    }
    if id == "." || id == ".." {
        return Err(ApiError::BadRequest(format!(
            "resource id {id:?} is not allowed"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreserved_ids_are_accepted() {
        for id in ["a", "my-deployment", "v1.2_x~y", "A9"] {
            check(id).unwrap();
        }
    }

    #[test]
    fn ids_that_escaping_would_change_or_couchdb_reserves_are_refused() {
        for id in [
            "",
            "a%2Fb",
            "a%41",
            "a b",
            "é",
            "a+b",
            "_design",
            "_all_docs",
            ".",
            "..",
        ] {
            let err = check(id).unwrap_err();
            assert!(matches!(err, ApiError::BadRequest(_)), "{id}: {err}");
        }
    }
}

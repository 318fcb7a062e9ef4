//! Answers for requests no route takes, in the error format of every
//! listener of the node (the API, the dump, Chephren): 404 for an unknown
//! path, 405 for a known path asked with another method.

use axum::http::{Method, Uri};

use crate::ApiError;

/// The fallback of every router: no route matches the path.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NoRoute(uri.path().to_owned())
}

/// The method-not-allowed fallback of every router.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

//! Answers for requests no route takes, in the API's error format.

use axum::http::{Method, Uri};

use crate::ApiError;

pub(crate) async fn not_found(uri: Uri) -> ApiError {
    ApiError::NoRoute(uri.path().to_owned())
}

pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

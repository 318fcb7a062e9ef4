//! `GET /openapi.yml`: the API's contract, `api/openapi.yml`, compiled into
//! the binary so that every node serves the description of the API it
//! actually runs, and tools (schemathesis, client generators) can read it
//! from the node itself.

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

/// The contract, as written in `api/openapi.yml`.
const OPENAPI_YAML: &str = include_str!("../openapi.yml");

pub(crate) async fn openapi() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/yaml")], OPENAPI_YAML)
}

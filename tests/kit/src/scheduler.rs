//! A fake CouchDB 3 scheduler in front of a PouchDB Server sidecar. It
//! answers `GET /_scheduler/jobs` and `GET /_scheduler/docs/_replicator/{id}`
//! with the jobs a test sets, and passes every other request on, streamed
//! both ways: a daemon on PouchDB then sees what CouchDB 3's scheduler
//! would tell it (a replication `crashing`, documents it could not write).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

/// The jobs a test sets, by `_replicator` document id.
type Jobs = Arc<Mutex<HashMap<String, Value>>>;

/// The front; dropped, it stops.
pub struct SchedulerFront {
    pub port: u16,
    jobs: Jobs,
    task: JoinHandle<()>,
}

impl Drop for SchedulerFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Front {
    target: SocketAddr,
    jobs: Jobs,
    http: reqwest::Client,
}

impl SchedulerFront {
    /// A front on a free local port, in front of the server at `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<SchedulerFront> {
        let listener = crate::process::listen_free().await?;
        let port = listener.local_addr()?.port();
        let jobs = Jobs::default();
        let front = Front {
            target,
            jobs: Arc::clone(&jobs),
            http: reqwest::Client::new(),
        };
        let app = axum::Router::new().fallback(handle).with_state(front);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(SchedulerFront { port, jobs, task })
    }

    /// From now on the scheduler answers `job` for the `_replicator`
    /// document `id`.
    pub fn set_job(&self, id: &str, job: Value) {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        jobs.insert(id.to_owned(), job);
    }

    /// From now on the scheduler knows no job for `id`.
    pub fn remove_job(&self, id: &str) {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        jobs.remove(id);
    }
}

async fn handle(State(front): State<Front>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    if path == "/_scheduler/jobs" {
        return Json(json!({"total_rows": 0, "offset": 0, "jobs": []})).into_response();
    }
    if let Some(id) = path.strip_prefix("/_scheduler/docs/_replicator/") {
        let jobs = front.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        return match jobs.get(id) {
            Some(job) => Json(job.clone()).into_response(),
            None => (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "not_found", "reason": "unknown"})),
            )
                .into_response(),
        };
    }
    match forward(&front, request).await {
        Ok(response) => response,
        Err(error) => (StatusCode::BAD_GATEWAY, error).into_response(),
    }
}

/// Passes `request` on to the server behind the front, and its answer back
/// as it comes (a `_changes` feed streams).
async fn forward(front: &Front, request: Request) -> Result<Response, String> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("http://{}{path}", front.target);
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| e.to_string())?;
    let answer = front
        .http
        .request(parts.method, url)
        .headers(without_hop_headers(parts.headers))
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Response::builder().status(answer.status());
    if let Some(headers) = response.headers_mut() {
        *headers = without_hop_headers(answer.headers().clone());
    }
    Ok(response
        .body(Body::from_stream(answer.bytes_stream()))
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response()))
}

/// `headers` without those of one connection, which each side sets anew
/// (the length too: a streamed answer is sent chunked).
fn without_hop_headers(mut headers: HeaderMap) -> HeaderMap {
    for name in [
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "host",
    ] {
        headers.remove(name);
    }
    headers
}

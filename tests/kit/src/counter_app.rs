//! A small application for HTTP operations: one integer counter per node,
//! `PUT /counter?value=N` sets it, `POST /counter?by=N` adds to it (any
//! other value answers 400), `GET /counter` reads it. Each node of a
//! cluster started with `http_app` gets its own, as its `--http-backend`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use tokio::task::JoinHandle;

/// The application; dropped, it stops.
pub struct CounterApp {
    pub port: u16,
    value: Arc<AtomicI64>,
    task: JoinHandle<()>,
}

impl Drop for CounterApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Params = Query<HashMap<String, String>>;

impl CounterApp {
    pub async fn start() -> std::io::Result<CounterApp> {
        let listener = crate::process::listen_free().await?;
        let port = listener.local_addr()?.port();
        let value = Arc::new(AtomicI64::new(0));
        let app = axum::Router::new()
            .route("/counter", get(read).put(set).post(add))
            .with_state(Arc::clone(&value));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(CounterApp { port, value, task })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn value(&self) -> i64 {
        self.value.load(Ordering::SeqCst)
    }
}

fn number(params: &Params, name: &str) -> Result<i64, (StatusCode, String)> {
    params
        .get(name)
        .and_then(|v| v.parse().ok())
        .ok_or((StatusCode::BAD_REQUEST, format!("{name} is not a number\n")))
}

async fn read(State(value): State<Arc<AtomicI64>>) -> String {
    format!("{}\n", value.load(Ordering::SeqCst))
}

async fn set(
    State(value): State<Arc<AtomicI64>>,
    params: Params,
) -> Result<String, (StatusCode, String)> {
    let n = number(&params, "value")?;
    value.store(n, Ordering::SeqCst);
    Ok(format!("{n}\n"))
}

async fn add(
    State(value): State<Arc<AtomicI64>>,
    params: Params,
) -> Result<String, (StatusCode, String)> {
    let n = number(&params, "by")?;
    Ok(format!("{}\n", value.fetch_add(n, Ordering::SeqCst) + n))
}

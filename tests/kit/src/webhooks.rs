//! A webhook receiver for tests: it records every delivery, checks its
//! signature as a receiver following the Standard Webhooks specification
//! would (its own code, not the daemon's), and can refuse a delivery's
//! first attempt, or every delivery while it is down, so that tests see
//! retries.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use tokio::task::JoinHandle;

/// A secret as the hooks file writes it (31 bytes).
pub const SECRET: &str = "whsec_Y2hlb3BzLXRlc3Qtd2ViaG9vay1zZWNyZXQtMzJiIQ==";

/// One POST the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// `webhook-id`.
    pub id: String,
    /// The payload's `type`.
    pub kind: String,
    pub body: Value,
    /// The signature checks out, and the timestamp is a number.
    pub valid: bool,
    /// What the receiver answered.
    pub status: u16,
}

#[derive(Default)]
struct Log {
    received: Vec<Received>,
    /// Event types whose first attempt is refused with a 500.
    refuse_first: BTreeSet<String>,
    /// Ids already refused once.
    refused: BTreeSet<String>,
    /// Every delivery is refused with a 503.
    down: bool,
}

/// The receiver; dropped, it stops.
pub struct Receiver {
    pub port: u16,
    log: Arc<Mutex<Log>>,
    task: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// A receiver on a free local port, refusing the first attempt of
    /// each delivery of the types `refuse_first`.
    pub async fn start(refuse_first: &[&str]) -> std::io::Result<Receiver> {
        let listener = crate::process::listen_free().await?;
        let port = listener.local_addr()?.port();
        let log = Arc::new(Mutex::new(Log {
            refuse_first: refuse_first.iter().map(|t| (*t).to_owned()).collect(),
            ..Log::default()
        }));
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(Arc::clone(&log));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Receiver { port, log, task })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// From now on every delivery is refused (`true`), or answered as
    /// before (`false`).
    pub fn set_down(&self, down: bool) {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).down = down;
    }

    /// Every POST received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .received
            .clone()
    }
}

async fn receive(
    State(log): State<Arc<Mutex<Log>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let valid = timestamp.parse::<i64>().is_ok() && verify(&id, &timestamp, &body, &signature);
    let body: Value = serde_json::from_slice(&body).unwrap_or_default();
    let kind = body["type"].as_str().unwrap_or_default().to_owned();
    let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
    let refuse = !log.down && log.refuse_first.contains(&kind) && !log.refused.contains(&id);
    if refuse {
        log.refused.insert(id.clone());
    }
    let status = if log.down {
        StatusCode::SERVICE_UNAVAILABLE
    } else if refuse {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    };
    log.received.push(Received {
        id,
        kind,
        body,
        valid,
        status: status.as_u16(),
    });
    status
}

/// Checks `signature` (space-separated `v1,<base64>` entries) against the
/// HMAC-SHA256 of `{id}.{timestamp}.{body}` under [`SECRET`].
fn verify(id: &str, timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Some(key) = SECRET
        .strip_prefix("whsec_")
        .and_then(|k| STANDARD.decode(k).ok())
    else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    signature.split(' ').any(|entry| {
        entry
            .strip_prefix("v1,")
            .and_then(|s| STANDARD.decode(s).ok())
            .is_some_and(|tag| ring::hmac::verify(&key, &signed, &tag).is_ok())
    })
}

//! `GET /api/events`: what changes on this node, as server-sent events, so
//! that a browser never polls. Each event is named after its kind
//! (`resource`, `reply`, `peer`) and carries the node's event as JSON. A
//! client that falls too far behind gets `resync`: events were lost and it
//! must reread what it shows. The stream ends when the node shuts down, so
//! that open browsers never hold up a graceful shutdown.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use cheops_replicator::NodeEvent;
use futures::Stream;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tracing::warn;

use crate::AppState;

pub(crate) async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = state.node.subscribe();
    let stream = futures::stream::unfold(
        (receiver, state.shutdown),
        |(mut receiver, mut shutdown)| async move {
            let received = tokio::select! {
                received = receiver.recv() => received,
                () = stopped(&mut shutdown) => return None,
            };
            let event = match received {
                Ok(event) => to_sse(&event),
                Err(RecvError::Lagged(missed)) => resync(missed),
                Err(RecvError::Closed) => return None,
            };
            Some((Ok(event), (receiver, shutdown)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Resolves once shutdown is signalled; never if it no longer can be.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn to_sse(event: &NodeEvent) -> Event {
    match serde_json::to_value(event) {
        Ok(value) => {
            let name = value["event"].as_str().unwrap_or("message").to_owned();
            Event::default().event(name).data(value.to_string())
        }
        Err(error) => {
            // Cannot happen with the node's plain data; the client rereads.
            warn!(%error, "cannot serialize a node event");
            resync(0)
        }
    }
}

fn resync(missed: u64) -> Event {
    let data: Value = json!({ "event": "resync", "missed": missed });
    Event::default().event("resync").data(data.to_string())
}

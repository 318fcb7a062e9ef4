//! The body of an `/exec` answer: one reply per site, as a JSON line each,
//! sent as soon as the site's reply arrives; at the deadline, a `TIMEOUT`
//! line for every site still silent.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderValue;
use axum::response::Response;
use cheops_model::ReplyDocument;
use cheops_replicator::Submitted;
use tokio::time::Instant;

/// The answer streaming the replies to `submitted` until every site has
/// replied or `deadline` has passed.
///
/// The stream owns `submitted`: when the caller goes away the body is
/// dropped, and with it the registration for the replies.
pub(crate) fn stream(submitted: Submitted, deadline: Instant) -> Response {
    let mut waiting: Vec<String> = Vec::new();
    for site in &submitted.locations {
        if !waiting.contains(site) {
            waiting.push(site.clone());
        }
    }
    let state = Replies {
        submitted,
        waiting,
        deadline,
        timed_out: false,
    };
    let lines = futures::stream::unfold(state, |mut state| async move {
        let reply = state.next().await?;
        Some((Ok::<_, Infallible>(line(&reply)), state))
    });
    let mut response = Response::new(Body::from_stream(lines));
    // Exactly what the original sends, although the body is JSON lines.
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

struct Replies {
    submitted: Submitted,
    /// The sites that have not replied yet, in the order of the locations.
    waiting: Vec<String>,
    deadline: Instant,
    timed_out: bool,
}

impl Replies {
    /// The next line to send, `None` once every site is accounted for.
    async fn next(&mut self) -> Option<ReplyDocument> {
        while !self.waiting.is_empty() && !self.timed_out {
            match tokio::time::timeout_at(self.deadline, self.submitted.replies.recv()).await {
                Ok(Some(reply)) => {
                    // Only the first reply of each location counts.
                    if reply.request_id != self.submitted.request_id {
                        continue;
                    }
                    if let Some(i) = self.waiting.iter().position(|s| *s == reply.site) {
                        self.waiting.remove(i);
                        return Some(reply);
                    }
                }
                // The node is shutting down: no reply can come any more.
                Ok(None) | Err(_) => self.timed_out = true,
            }
        }
        if self.waiting.is_empty() {
            return None;
        }
        let site = self.waiting.remove(0);
        Some(self.submitted.timeout_reply(&site))
    }
}

fn line(reply: &ReplyDocument) -> Bytes {
    json_line(reply, &reply.request_id)
}

/// `value` as one JSON line; `request` names it in the log should it not
/// serialize (unreachable in practice: answers are strings, numbers and
/// times).
pub(crate) fn json_line<T: serde::Serialize>(value: &T, request: &str) -> Bytes {
    match serde_json::to_vec(value) {
        Ok(mut json) => {
            json.push(b'\n');
            Bytes::from(json)
        }
        Err(e) => {
            tracing::error!(error = %e, %request, "could not serialize an answer line");
            Bytes::new()
        }
    }
}

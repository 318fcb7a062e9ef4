//! `GET /changes` and `GET /changes/{id}`: the node's changes feed, every
//! resource's or one's, as JSON Lines. Each event carries its `seq`, the
//! token to resume after it (`since=SEQ`); every answer ends with, and a
//! continuous feed beats with, a `bookmark` line giving the token to go on
//! from when no event matched. `feed=normal` answers what is there,
//! `longpoll` waits for at least one event (up to `timeout`),
//! `continuous` streams events as they come. A token older than what the
//! node keeps is answered 410: read again without `since`.

use std::time::Duration;

use axum::body::Body;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, Uri};
use axum::response::Response;
use cheops_replicator::{Feed, FeedPage};
use serde_json::json;
use tokio::sync::watch;

use crate::resource_id::ResourceId;
use crate::{ApiError, AppState};

/// Events per answer, unless `limit` says fewer.
const MAX_LIMIT: usize = 10_000;
/// How long a long poll waits by default, and at most.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// How often a continuous feed sends a bookmark when nothing happens.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    Longpoll,
    Continuous,
}

/// What the query asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Query {
    since: Option<u64>,
    mode: Mode,
    limit: usize,
    /// Long poll: how long to wait; continuous: when to end (never if
    /// not given).
    timeout: Option<Duration>,
    heartbeat: Duration,
}

pub(crate) async fn all(State(state): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    answer(
        state.node.feed(),
        None,
        parse(uri.query().unwrap_or_default())?,
    )
}

pub(crate) async fn one(
    State(state): State<AppState>,
    ResourceId(id): ResourceId,
    uri: Uri,
) -> Result<Response, ApiError> {
    answer(
        state.node.feed(),
        Some(id),
        parse(uri.query().unwrap_or_default())?,
    )
}

fn answer(feed: Feed, resource: Option<String>, query: Query) -> Result<Response, ApiError> {
    // Refused before the answer starts: a token too old is a 410.
    read(&feed, query.since, resource.as_deref(), query.limit)?;
    let watch = feed.watch();
    let stream = futures::stream::unfold(
        Follow {
            feed,
            resource,
            query: query.clone(),
            since: query.since,
            watch,
            deadline: query.timeout.map(|t| tokio::time::Instant::now() + t),
            done: false,
        },
        Follow::next,
    );
    let mut response = Response::new(Body::from_stream(stream));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// A page of the feed, or the 410 for a token no longer kept.
fn read(
    feed: &Feed,
    since: Option<u64>,
    resource: Option<&str>,
    limit: usize,
) -> Result<FeedPage, ApiError> {
    feed.read(since, resource, limit)?.ok_or_else(|| {
        ApiError::Gone(format!(
            "token {} is not one this node keeps events after (too old, or from a feed it no longer has); read again without since",
            since.unwrap_or_default()
        ))
    })
}

/// Where one answer is in the feed.
struct Follow {
    feed: Feed,
    resource: Option<String>,
    query: Query,
    since: Option<u64>,
    watch: watch::Receiver<u64>,
    deadline: Option<tokio::time::Instant>,
    done: bool,
}

impl Follow {
    /// The next chunk of the answer: events and a bookmark, or a bookmark
    /// alone when waiting ends; `None` once the answer is complete.
    async fn next(mut self) -> Option<(Result<Bytes, std::io::Error>, Self)> {
        if self.done {
            return None;
        }
        loop {
            // Marked seen before reading: an event added meanwhile wakes
            // the wait below.
            self.watch.borrow_and_update();
            let page = match read(
                &self.feed,
                self.since,
                self.resource.as_deref(),
                self.query.limit,
            ) {
                Ok(page) => page,
                Err(ApiError::Gone(_)) => {
                    // Fell behind what the node keeps while streaming.
                    self.done = true;
                    let line = json!({"type": "gone", "seq": self.since});
                    return Some((Ok(Bytes::from(line_bytes(&line))), self));
                }
                Err(error) => {
                    // Not gone: the answer breaks off, and the client reads
                    // again from its last bookmark.
                    self.done = true;
                    tracing::error!(error = %error, "the changes feed cannot be read; the answer breaks off");
                    return Some((Err(std::io::Error::other(error.to_string())), self));
                }
            };
            self.since = Some(page.last_seq);
            let waiting = page.events.is_empty()
                && match self.query.mode {
                    Mode::Normal => false,
                    Mode::Longpoll | Mode::Continuous => true,
                };
            if !waiting {
                // A continuous feed ends at its timeout even while events
                // keep coming.
                let expired = self
                    .deadline
                    .is_some_and(|deadline| tokio::time::Instant::now() >= deadline);
                if self.query.mode != Mode::Continuous || expired {
                    self.done = true;
                }
                return Some((Ok(chunk(&page)), self));
            }
            let heartbeat = tokio::time::sleep(match self.query.mode {
                Mode::Continuous => self.query.heartbeat,
                _ => MAX_TIMEOUT,
            });
            let deadline = self.deadline;
            let ended = async move {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = self.watch.changed() => {
                    if changed.is_err() {
                        self.done = true;
                        return Some((Ok(chunk(&page)), self));
                    }
                }
                () = heartbeat => {
                    return Some((Ok(chunk(&page)), self));
                }
                () = ended => {
                    self.done = true;
                    return Some((Ok(chunk(&page)), self));
                }
            }
        }
    }
}

/// The page's events, one line each, then its bookmark.
fn chunk(page: &FeedPage) -> Bytes {
    let mut bytes = Vec::new();
    for event in &page.events {
        bytes.extend_from_slice(&line_bytes(event));
    }
    bytes.extend_from_slice(&line_bytes(
        &json!({"type": "bookmark", "seq": page.last_seq}),
    ));
    Bytes::from(bytes)
}

fn line_bytes(value: &impl serde::Serialize) -> Vec<u8> {
    let mut line = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    line.push(b'\n');
    line
}

/// Reads the query: `since`, `feed`, `limit`, `timeout` and `heartbeat`
/// (milliseconds), each at most once; anything else is refused.
fn parse(query: &str) -> Result<Query, ApiError> {
    let mut parsed = Query {
        since: None,
        mode: Mode::Normal,
        limit: MAX_LIMIT,
        timeout: None,
        heartbeat: DEFAULT_HEARTBEAT,
    };
    let mut given = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if given.contains(&name) {
            return Err(ApiError::bad_request(format!(
                "query parameter `{name}` is given more than once"
            )));
        }
        given.push(name);
        let number = |what: &str| {
            value.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "query parameter `{name}` must be {what}, not {value:?}"
                ))
            })
        };
        let within = |what: &str, max: u64| -> Result<u64, ApiError> {
            let n = number(what)?;
            if n == 0 || n > max {
                return Err(ApiError::bad_request(format!(
                    "query parameter `{name}` must be from 1 to {max}, not {n}"
                )));
            }
            Ok(n)
        };
        let max_ms = u64::try_from(MAX_TIMEOUT.as_millis()).unwrap_or(u64::MAX);
        let millis = |what: &str| within(what, max_ms).map(Duration::from_millis);
        match name {
            "since" => parsed.since = Some(number("a token (a seq of this feed)")?),
            "feed" => {
                parsed.mode = match value {
                    "normal" => Mode::Normal,
                    "longpoll" => Mode::Longpoll,
                    "continuous" => Mode::Continuous,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                    "query parameter `feed` must be normal, longpoll or continuous, not {value:?}"
                )))
                    }
                }
            }
            "limit" => {
                let limit = within("a number of events", MAX_LIMIT as u64)?;
                parsed.limit = usize::try_from(limit).unwrap_or(MAX_LIMIT);
            }
            "timeout" => parsed.timeout = Some(millis("milliseconds")?),
            "heartbeat" => parsed.heartbeat = millis("milliseconds")?,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{name}` (since, feed, limit, timeout, heartbeat)"
                )))
            }
        }
    }
    if parsed.mode == Mode::Longpoll && parsed.timeout.is_none() {
        parsed.timeout = Some(DEFAULT_TIMEOUT);
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_read_strictly() {
        let query = parse("since=12&feed=longpoll&limit=5").unwrap();
        assert_eq!(query.since, Some(12));
        assert_eq!(query.mode, Mode::Longpoll);
        assert_eq!(query.limit, 5);
        assert_eq!(query.timeout, Some(DEFAULT_TIMEOUT));
        let query = parse("feed=continuous&heartbeat=500").unwrap();
        assert_eq!(
            (query.timeout, query.heartbeat),
            (None, Duration::from_millis(500))
        );
        assert_eq!(parse("").unwrap().mode, Mode::Normal);
        assert_eq!(parse("timeout=600000").unwrap().timeout, Some(MAX_TIMEOUT));
        assert_eq!(parse("limit=10000").unwrap().limit, MAX_LIMIT);
        for bad in [
            "timeout=600001",
            "heartbeat=600001",
            "limit=10001",
            "since=-1",
            "since=abc",
            "since=1&since=2",
            "feed=stream",
            "limit=0",
            "timeout=0",
            "heartbeat=x",
            "style=all_docs",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}

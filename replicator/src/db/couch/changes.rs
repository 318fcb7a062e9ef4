//! Reading a continuous `_changes` feed line by line, with a watchdog: a
//! feed that sends nothing, not even a heartbeat, for its whole silence
//! limit is taken for dead, so that the follower reconnects and health says
//! so instead of waiting forever on a frozen server.

use std::time::Duration;

use reqwest::Response;
use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;

use reqwest::{Method, RequestBuilder};

use super::MIN_HEARTBEAT;
use crate::metrics::{RequestError, RequestKind};
use crate::ReplicatorError;

impl super::CouchClient {
    /// The ids of the documents changed after `since` (that pass `filter`,
    /// a design document's filter and its parameters, when given), at most
    /// `limit` of them, with the sequence to read the next ones from; none
    /// when the feed is read to its end.
    pub async fn changed_ids(
        &self,
        since: &Value,
        limit: usize,
        filter: &[(&str, &str)],
    ) -> Result<(Vec<String>, Value), ReplicatorError> {
        #[derive(Deserialize)]
        struct Page {
            results: Vec<Row>,
            last_seq: Value,
        }
        #[derive(Deserialize)]
        struct Row {
            id: String,
        }
        let since = match since {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let builder = self
            .request(Method::GET, self.url(&["_changes"]))
            .query(&[
                ("since", since.as_str()),
                ("limit", limit.to_string().as_str()),
            ])
            .query(filter);
        let (_, value) = self
            .send(RequestKind::Changes, builder, "GET _changes", &[])
            .await?;
        let page: Page = Self::decode(value, "GET _changes")?;
        Ok((
            page.results.into_iter().map(|r| r.id).collect(),
            page.last_seq,
        ))
    }

    /// Opens the continuous changes feed after `since` (opaque; `None` for the
    /// beginning), with documents and their conflicts. CouchDB sends a
    /// heartbeat every third of the timeout; a feed silent for a whole
    /// timeout fails (see [`ChangesFeed::next`]), as does one whose headers
    /// do not come within it.
    pub async fn changes(&self, since: Option<&Value>) -> Result<ChangesFeed, ReplicatorError> {
        let since = match since {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => "0".to_owned(),
        };
        let heartbeat = (self.timeout / 3)
            .max(MIN_HEARTBEAT)
            .as_millis()
            .to_string();
        let builder = self.request(Method::GET, self.url(&["_changes"])).query(&[
            ("feed", "continuous"),
            ("include_docs", "true"),
            ("conflicts", "true"),
            ("heartbeat", heartbeat.as_str()),
            ("since", since.as_str()),
        ]);
        let started = Instant::now();
        let opened = self.open_changes(builder).await;
        let error = opened.as_ref().err().map(RequestError::of);
        self.metrics
            .request(RequestKind::Changes, &Method::GET, started.elapsed(), error);
        opened
    }

    async fn open_changes(&self, builder: RequestBuilder) -> Result<ChangesFeed, ReplicatorError> {
        let response = tokio::time::timeout(self.timeout, builder.send())
            .await
            .map_err(|_| ReplicatorError::Stalled {
                context: "GET _changes".into(),
                after: self.timeout,
            })?
            .map_err(ReplicatorError::Unavailable)?;
        if !response.status().is_success() {
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            return Err(ReplicatorError::Couch {
                status,
                context: "GET _changes".into(),
                body,
            });
        }
        Ok(ChangesFeed::new(response, self.timeout))
    }
}

/// One change: a document's new state and the feed position after it.
#[derive(Debug, Clone, Deserialize)]
pub struct Change {
    /// Opaque: a number for PouchDB Server, a string for CouchDB.
    pub seq: Value,
    pub id: String,
    #[serde(default)]
    pub deleted: bool,
    /// The winning revision, with `_conflicts` when there are some.
    #[serde(default)]
    pub doc: Option<Value>,
}

/// An open continuous feed.
pub struct ChangesFeed {
    response: Response,
    buffer: Vec<u8>,
    /// The longest the server may stay silent.
    silence: Duration,
    /// When the server last sent something.
    heard: Instant,
}

impl ChangesFeed {
    pub(super) fn new(response: Response, silence: Duration) -> Self {
        ChangesFeed {
            response,
            buffer: Vec::new(),
            silence,
            heard: Instant::now(),
        }
    }

    /// The next change; `Ok(None)` when the server ended the feed, an error
    /// when it sent nothing for the silence limit.
    ///
    /// Cancellation: safe; a partly read line stays buffered, and the
    /// silence is counted from the last bytes received, not from the call.
    pub async fn next(&mut self) -> Result<Option<Change>, ReplicatorError> {
        loop {
            while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                if let Some(change) = parse_line(&line)? {
                    return Ok(Some(change));
                }
            }
            let deadline = self.heard + self.silence;
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .map_err(|_| ReplicatorError::Stalled {
                    context: "the _changes feed".into(),
                    after: self.silence,
                })?
                .map_err(ReplicatorError::Unavailable)?;
            self.heard = Instant::now();
            match chunk {
                Some(chunk) => self.buffer.extend_from_slice(&chunk),
                None => return Ok(None),
            }
        }
    }
}

/// A change, or `None` for heartbeats (empty lines) and the closing
/// `{"last_seq": …}` line.
fn parse_line(line: &[u8]) -> Result<Option<Change>, ReplicatorError> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(line).map_err(|source| ReplicatorError::Decode {
        context: "a _changes line".into(),
        source,
    })?;
    if value.get("id").is_none() {
        return Ok(None);
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|source| ReplicatorError::Decode {
            context: "a _changes line".into(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::couch::CouchClient;
    use crate::ClientOptions;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Far longer than the silence limit: reaching it means a hang.
    const HANG: Duration = Duration::from_secs(20);

    /// A server answering one `_changes` request with a chunked stream of
    /// `lines`, each after `every`, then staying silent with the connection
    /// open (as a frozen CouchDB does).
    async fn feed_server(lines: Vec<&'static str>, every: Duration) -> CouchClient {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request).await.unwrap();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await
                .unwrap();
            for line in lines {
                tokio::time::sleep(every).await;
                let chunk = format!("{:x}\r\n{line}\r\n", line.len());
                stream.write_all(chunk.as_bytes()).await.unwrap();
            }
            std::future::pending::<()>().await;
        });
        let options = ClientOptions {
            couch_timeout: Duration::from_millis(500),
            ..ClientOptions::default()
        };
        CouchClient::with_options(&format!("http://127.0.0.1:{port}/db"), &options).unwrap()
    }

    #[tokio::test]
    async fn a_feed_that_falls_silent_fails_after_the_timeout() {
        let couch = feed_server(vec!["\n"], Duration::ZERO).await;
        let mut feed = couch.changes(None).await.unwrap();
        let next = tokio::time::timeout(HANG, feed.next())
            .await
            .expect("a silent feed was waited on forever");
        assert!(
            matches!(next, Err(ReplicatorError::Stalled { .. })),
            "{next:?}"
        );
    }

    #[tokio::test]
    async fn heartbeats_keep_a_quiet_feed_alive() {
        // Ten heartbeats a fifth of the timeout apart: twice the timeout in
        // all, with no change, then one.
        let mut lines = vec!["\n"; 10];
        lines.push("{\"seq\":1,\"id\":\"r\"}\n");
        let couch = feed_server(lines, Duration::from_millis(100)).await;
        let mut feed = couch.changes(None).await.unwrap();
        let change = tokio::time::timeout(HANG, feed.next())
            .await
            .expect("hung")
            .unwrap()
            .unwrap();
        assert_eq!(change.id, "r");
    }

    #[test]
    fn heartbeats_and_last_seq_are_not_changes() {
        assert!(parse_line(b"\n").unwrap().is_none());
        assert!(parse_line(b"{\"last_seq\":12}\n").unwrap().is_none());
        let change = parse_line(br#"{"seq":"3-g1AAAA","id":"r","changes":[],"doc":{"_id":"r"}}"#)
            .unwrap()
            .unwrap();
        assert_eq!(change.seq, Value::String("3-g1AAAA".into()));
        assert_eq!(change.id, "r");
        let change = parse_line(br#"{"seq":7,"id":"r","deleted":true}"#)
            .unwrap()
            .unwrap();
        assert_eq!(change.seq, Value::from(7));
        assert!(change.deleted && change.doc.is_none());
    }
}

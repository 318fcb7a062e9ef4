//! Reading a continuous `_changes` feed line by line, with a watchdog: a
//! feed that sends nothing, not even a heartbeat, for its whole silence
//! limit is taken for dead, so that the follower reconnects and health says
//! so instead of waiting forever on a frozen server.

use std::time::Duration;

use reqwest::Response;
use serde::Deserialize;
use serde_json::value::RawValue;
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
#[derive(Debug, Clone)]
pub struct Change {
    /// Opaque: a number for PouchDB Server, a string for CouchDB.
    pub seq: Value,
    pub id: String,
    pub deleted: bool,
    /// The winning revision, with `_conflicts` when there are some, as
    /// its JSON text: readers decode only what they need of it (a history
    /// document's payload is never decoded).
    pub doc: Option<Box<RawValue>>,
}

/// An open continuous feed.
pub struct ChangesFeed {
    response: Response,
    buffer: LineBuffer,
    /// The longest the server may stay silent.
    silence: Duration,
    /// When the server last sent something.
    heard: Instant,
}

impl ChangesFeed {
    pub(super) fn new(response: Response, silence: Duration) -> Self {
        ChangesFeed {
            response,
            buffer: LineBuffer::default(),
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
            while let Some(line) = self.buffer.next_line() {
                if let Some(change) = parse_line(line)? {
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
                Some(chunk) => self.buffer.push(&chunk),
                None => return Ok(None),
            }
        }
    }
}

/// Bytes received and not yet taken as lines. Each byte is looked at once
/// for a newline, however many chunks a long line (a document of several
/// megabytes) comes in, and the bytes taken are dropped once per chunk.
#[derive(Debug, Default)]
struct LineBuffer {
    bytes: Vec<u8>,
    /// Where the next line starts.
    start: usize,
    /// Up to where no newline follows `start`.
    scanned: usize,
}

impl LineBuffer {
    fn push(&mut self, chunk: &[u8]) {
        if self.start > 0 {
            self.bytes.drain(..self.start);
            self.scanned -= self.start;
            self.start = 0;
        }
        self.bytes.extend_from_slice(chunk);
    }

    /// The next whole line, its newline included, if one is buffered.
    fn next_line(&mut self) -> Option<&[u8]> {
        match self.bytes[self.scanned..].iter().position(|&b| b == b'\n') {
            Some(offset) => {
                let (start, end) = (self.start, self.scanned + offset + 1);
                (self.start, self.scanned) = (end, end);
                Some(&self.bytes[start..end])
            }
            None => {
                self.scanned = self.bytes.len();
                None
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
    /// A change, or the `last_seq` line that ends a feed (no `id`).
    #[derive(Deserialize)]
    struct Line {
        #[serde(default)]
        seq: Value,
        id: Option<String>,
        #[serde(default)]
        deleted: bool,
        #[serde(default)]
        doc: Option<Box<RawValue>>,
    }
    let line: Line = serde_json::from_slice(line).map_err(|source| ReplicatorError::Decode {
        context: "a _changes line".into(),
        source,
    })?;
    Ok(line.id.map(|id| Change {
        seq: line.seq,
        id,
        deleted: line.deleted,
        doc: line.doc,
    }))
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

    proptest::proptest! {
        #[test]
        fn lines_come_whole_however_the_bytes_are_cut(
            lines in proptest::collection::vec("[a-z]{0,40}", 1..20),
            cuts in proptest::collection::vec(1usize..64, 1..200),
        ) {
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            let bytes = text.as_bytes();
            let mut buffer = LineBuffer::default();
            let mut got = Vec::new();
            let (mut at, mut cut) = (0, cuts.iter().cycle());
            while at < bytes.len() {
                let end = (at + cut.next().copied().unwrap_or(1)).min(bytes.len());
                buffer.push(&bytes[at..end]);
                at = end;
                while let Some(line) = buffer.next_line() {
                    got.push(String::from_utf8_lossy(line).trim_end().to_owned());
                }
            }
            proptest::prop_assert_eq!(got, lines);
        }
    }

    #[test]
    fn a_long_line_in_many_chunks_is_looked_at_once() {
        let mut buffer = LineBuffer::default();
        let line = vec![b'x'; 1 << 20];
        for chunk in line.chunks(1024) {
            buffer.push(chunk);
            assert!(buffer.next_line().is_none());
            // Nothing before the chunk's end is looked at again.
            assert_eq!(buffer.scanned, buffer.bytes.len());
        }
        buffer.push(b"\n");
        assert_eq!(buffer.next_line().map(<[u8]>::len), Some((1 << 20) + 1));
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

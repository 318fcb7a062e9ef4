//! The daemon's only way to CouchDB: a small typed client over the HTTP API,
//! restricted to endpoints that both Apache CouchDB 3 and PouchDB Server
//! serve. Credentials are taken out of the URL and sent as basic auth, so
//! that the URL can be logged. Every request is counted and timed here, by
//! kind, in the node's [`Metrics`].

mod changes;
mod replicator;
mod views;

use std::time::{Duration, Instant};

use reqwest::{Method, Request, RequestBuilder, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::metrics::{Metrics, RequestError, RequestKind};
use crate::{ClientOptions, ReplicatorError};

pub use changes::{Change, ChangesFeed};

/// The shortest heartbeat period asked of the changes feed.
const MIN_HEARTBEAT: Duration = Duration::from_millis(200);

/// A CouchDB database, and the server it lives on.
#[derive(Clone)]
pub struct CouchClient {
    http: reqwest::Client,
    /// The database URL without credentials.
    db: Url,
    credentials: Option<(String, String)>,
    /// The longest a request may take; the changes feed's watchdog.
    timeout: Duration,
    /// Where requests are counted.
    metrics: Metrics,
}

impl std::fmt::Debug for CouchClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CouchClient")
            .field("db", &self.db.as_str())
            .finish()
    }
}

/// The outcome of writing one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Stored with this new revision.
    Rev(String),
    /// The revision given was not the current one.
    Conflict,
}

/// One row of a view, its document left as JSON so that one document that
/// does not read spoils no other.
#[derive(Debug, Clone, Deserialize)]
pub struct ViewRow {
    pub key: Value,
    #[serde(default)]
    pub doc: Option<Value>,
}

/// A document as a read finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored<T> {
    Found(T),
    /// Never stored here (or purged).
    Missing,
    /// Every leaf of its revision tree is a deletion.
    Deleted,
}

/// One row of a `_bulk_docs` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct BulkResult {
    pub id: Option<String>,
    pub rev: Option<String>,
    pub error: Option<String>,
    pub reason: Option<String>,
}

impl BulkResult {
    /// The document was refused as over the server's size limit.
    pub fn is_too_large(&self) -> bool {
        matches!(
            self.error.as_deref(),
            Some("too_large" | "document_too_large")
        )
    }

    /// What writing the document (`new_edits` true) came to, said as a
    /// `PUT`'s answer would: its new revision, a conflict, or an error with
    /// the status a `PUT` would have had (413 over the size limit, 403
    /// refused by a validation function, 401).
    pub fn written(self) -> Result<Written, ReplicatorError> {
        let status = match self.error.as_deref() {
            None => return Ok(Written::Rev(self.rev.unwrap_or_default())),
            Some("conflict") => return Ok(Written::Conflict),
            _ if self.is_too_large() => 413,
            Some("forbidden") => 403,
            Some("unauthorized") => 401,
            Some(_) => 0,
        };
        Err(ReplicatorError::Couch {
            status,
            context: format!("POST _bulk_docs {}", self.id.unwrap_or_default()),
            body: serde_json::json!({"error": self.error, "reason": self.reason}).to_string(),
        })
    }
}

impl CouchClient {
    /// `db_url` names the database, credentials included:
    /// `http://admin:password@localhost:5984/cheops`.
    #[cfg(test)]
    pub fn new(db_url: &str) -> Result<Self, ReplicatorError> {
        Self::with_options(db_url, &ClientOptions::default())
    }

    /// As [`CouchClient::new`], trusting `options`' roots, each request
    /// failing after `options.couch_timeout`.
    pub fn with_options(db_url: &str, options: &ClientOptions) -> Result<Self, ReplicatorError> {
        // No client-wide timeout: it would cut the changes feed.
        let http = options
            .builder()
            .build()
            .map_err(ReplicatorError::Unavailable)?;
        Self::through(db_url, http, options.couch_timeout)
    }

    /// A client of the database at `db_url` (credentials included) sending
    /// its requests through `http`, and so over its connections: for the
    /// peers' databases, which the workers read every few seconds, a new
    /// client each time would open a new connection each time.
    pub fn through(
        db_url: &str,
        http: reqwest::Client,
        timeout: Duration,
    ) -> Result<Self, ReplicatorError> {
        let mut db = Url::parse(db_url)
            .map_err(|e| ReplicatorError::InvalidRequest(format!("invalid CouchDB URL: {e}")))?;
        if let Ok(mut path) = db.path_segments_mut() {
            path.pop_if_empty();
        }
        if db
            .path_segments()
            .and_then(|mut s| s.next_back())
            .is_none_or(str::is_empty)
        {
            return Err(ReplicatorError::InvalidRequest(
                "the CouchDB URL must name the database, as in http://host:5984/cheops".into(),
            ));
        }
        let credentials = (!db.username().is_empty()).then(|| {
            (
                percent_decode(db.username()),
                percent_decode(db.password().unwrap_or_default()),
            )
        });
        // Infallible on an http(s) URL, which has a host.
        let _ = db.set_username("");
        let _ = db.set_password(None);
        Ok(CouchClient {
            http,
            db,
            credentials,
            timeout,
            metrics: Metrics::default(),
        })
    }

    /// The same client, counting its requests in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The database URL, without credentials: safe to log.
    pub fn db_url(&self) -> &str {
        self.db.as_str()
    }

    /// A URL below the database: each segment is escaped on its own, so any
    /// document id is safe (`_design/x` is passed as two segments).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.db.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// A URL at the server's root (`/_replicator/...`).
    fn server_url(&self, segments: &[&str]) -> Url {
        let mut url = self.db.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().pop().extend(segments);
        }
        url
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let builder = self.http.request(method, url);
        match &self.credentials {
            Some((user, password)) => builder.basic_auth(user, Some(password)),
            None => builder,
        }
    }

    /// Sends a request of `kind` and reads its JSON answer, mapping statuses
    /// to errors; counts it. `accept` lists the non-2xx statuses that are
    /// answers, not errors.
    async fn send(
        &self,
        kind: RequestKind,
        builder: RequestBuilder,
        context: &str,
        accept: &[StatusCode],
    ) -> Result<(StatusCode, Value), ReplicatorError> {
        self.send_as(kind, builder, context, accept).await
    }

    /// [`CouchClient::send`], reading the answer as a `T` straight from its
    /// bytes: what `T` does not name is skipped, never held (an empty
    /// answer reads as `null`).
    async fn send_as<T: DeserializeOwned>(
        &self,
        kind: RequestKind,
        builder: RequestBuilder,
        context: &str,
        accept: &[StatusCode],
    ) -> Result<(StatusCode, T), ReplicatorError> {
        let request = builder
            .timeout(self.timeout)
            .build()
            .map_err(ReplicatorError::Unavailable)?;
        let method = request.method().clone();
        // A read is sent once more when the connection closed under it:
        // the server dropped a kept-alive connection as the request went.
        let mut again = (method == Method::GET)
            .then(|| request.try_clone())
            .flatten();
        let mut request = request;
        loop {
            let started = Instant::now();
            let answer = self.exchange(request, context, accept).await;
            let error = answer.as_ref().err().map(RequestError::of);
            self.metrics
                .request(kind, &method, started.elapsed(), error);
            match (answer, again.take()) {
                (Err(ReplicatorError::Unavailable(e)), Some(next)) if closed_under(&e) => {
                    request = next;
                }
                (answer, _) => return answer,
            }
        }
    }

    async fn exchange<T: DeserializeOwned>(
        &self,
        request: Request,
        context: &str,
        accept: &[StatusCode],
    ) -> Result<(StatusCode, T), ReplicatorError> {
        let response = self
            .http
            .execute(request)
            .await
            .map_err(ReplicatorError::Unavailable)?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(ReplicatorError::Unavailable)?;
        if !status.is_success() && !accept.contains(&status) {
            return Err(ReplicatorError::Couch {
                status: status.as_u16(),
                context: context.to_owned(),
                body: String::from_utf8_lossy(&body).chars().take(500).collect(),
            });
        }
        let body: &[u8] = if body.is_empty() { b"null" } else { &body };
        let value = serde_json::from_slice(body).map_err(|source| ReplicatorError::Decode {
            context: context.to_owned(),
            source,
        })?;
        Ok((status, value))
    }

    fn decode<T: DeserializeOwned>(value: Value, context: &str) -> Result<T, ReplicatorError> {
        serde_json::from_value(value).map_err(|source| ReplicatorError::Decode {
            context: context.to_owned(),
            source,
        })
    }

    /// The server's welcome object: answers whether CouchDB is up.
    pub async fn ping(&self) -> Result<(), ReplicatorError> {
        let url = self.server_url(&[]);
        self.send(
            RequestKind::Server,
            self.request(Method::GET, url),
            "GET /",
            &[],
        )
        .await?;
        Ok(())
    }

    /// The database's current sequence (`update_seq`), opaque as the
    /// changes feed's.
    pub async fn update_seq(&self) -> Result<Value, ReplicatorError> {
        let builder = self.request(Method::GET, self.url(&[]));
        let (_, mut info) = self
            .send(RequestKind::Database, builder, "GET database", &[])
            .await?;
        Ok(info
            .get_mut("update_seq")
            .map(Value::take)
            .unwrap_or_default())
    }

    /// Creates the database unless it exists.
    pub async fn ensure_db(&self) -> Result<(), ReplicatorError> {
        let accept = [StatusCode::PRECONDITION_FAILED];
        self.send(
            RequestKind::Database,
            self.request(Method::PUT, self.url(&[])),
            "PUT database",
            &accept,
        )
        .await?;
        Ok(())
    }

    /// Sets the database's `_security` object.
    pub async fn put_security(&self, security: &Value) -> Result<(), ReplicatorError> {
        let builder = self
            .request(Method::PUT, self.url(&["_security"]))
            .json(security);
        self.send(RequestKind::Security, builder, "PUT _security", &[])
            .await?;
        Ok(())
    }

    /// Reads a document; `None` when it does not exist (or was deleted).
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Option<T>, ReplicatorError> {
        Ok(match self.get_stored(path, query).await? {
            Stored::Found(doc) => Some(doc),
            Stored::Missing | Stored::Deleted => None,
        })
    }

    /// Reads a document, telling a document never stored from one whose
    /// every leaf is a deletion (CouchDB's and PouchDB's 404 says which).
    pub async fn get_stored<T: DeserializeOwned>(
        &self,
        path: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Stored<T>, ReplicatorError> {
        let builder = self.request(Method::GET, self.url(path)).query(query);
        let context = format!("GET {}", path.join("/"));
        let kind = RequestKind::of_path(path);
        match self
            .send(kind, builder, &context, &[StatusCode::NOT_FOUND])
            .await?
        {
            (StatusCode::NOT_FOUND, body) if body["reason"] == "deleted" => Ok(Stored::Deleted),
            (StatusCode::NOT_FOUND, _) => Ok(Stored::Missing),
            (_, value) => Self::decode(value, &context).map(Stored::Found),
        }
    }

    /// Writes a document at `path`; its `_rev` (if any) must be current.
    pub async fn put<T: Serialize>(
        &self,
        path: &[&str],
        doc: &T,
    ) -> Result<Written, ReplicatorError> {
        let builder = self.request(Method::PUT, self.url(path)).json(doc);
        let context = format!("PUT {}", path.join("/"));
        let kind = RequestKind::of_path(path);
        match self
            .send(kind, builder, &context, &[StatusCode::CONFLICT])
            .await?
        {
            (StatusCode::CONFLICT, _) => Ok(Written::Conflict),
            (_, value) => Ok(Written::Rev(rev_of(&value))),
        }
    }

    /// Writes one document (`_id` in it; its `_rev`, if any, must be
    /// current) as `put` does, through `_bulk_docs`: PouchDB Server spends
    /// less on that than on a `PUT`, and CouchDB the same. The document's
    /// refusal gets the status a `PUT` would have had (see
    /// [`BulkResult::written`]; 413 also when said of the request).
    pub async fn save<T: Serialize>(&self, doc: &T) -> Result<Written, ReplicatorError> {
        let row = self.bulk_docs(std::slice::from_ref(doc), true).await?.pop();
        let Some(row) = row else {
            return Err(ReplicatorError::Couch {
                status: 0,
                context: "POST _bulk_docs".into(),
                body: "no row for the document written".into(),
            });
        };
        row.written()
    }

    /// Writes several documents in one request. With `new_edits` false, the
    /// revisions given are stored as they are (as replication does).
    pub async fn bulk_docs<T: Serialize>(
        &self,
        docs: &[T],
        new_edits: bool,
    ) -> Result<Vec<BulkResult>, ReplicatorError> {
        #[derive(Serialize)]
        struct Bulk<'a, T> {
            docs: &'a [T],
            new_edits: bool,
        }
        let builder = self
            .request(Method::POST, self.url(&["_bulk_docs"]))
            .json(&Bulk { docs, new_edits });
        let (_, value) = self
            .send(RequestKind::BulkDocs, builder, "POST _bulk_docs", &[])
            .await?;
        Self::decode(value, "POST _bulk_docs")
    }

    /// The documents whose ids are `ids`, each `None` when it does not
    /// exist (or was deleted), in the order of `ids`: one request for all.
    /// Only what `T` names is kept of them.
    pub async fn get_many<T: DeserializeOwned>(
        &self,
        ids: &[String],
    ) -> Result<Vec<Option<T>>, ReplicatorError> {
        let builder = self
            .request(Method::POST, self.url(&["_all_docs"]))
            .query(&[("include_docs", "true")])
            .json(&serde_json::json!({ "keys": ids }));
        let (_, rows) = self
            .send_as::<DocRows<T>>(RequestKind::AllDocs, builder, "POST _all_docs", &[])
            .await?;
        Ok(rows.rows.into_iter().map(|r| r.doc).collect())
    }

    /// Every document of the database, as CouchDB lists them.
    pub async fn all_docs(&self) -> Result<Value, ReplicatorError> {
        let builder = self
            .request(Method::GET, self.url(&["_all_docs"]))
            .query(&[("include_docs", "true"), ("conflicts", "true")]);
        Ok(self
            .send(RequestKind::AllDocs, builder, "GET _all_docs", &[])
            .await?
            .1)
    }
}

/// Rows of a view or of `_all_docs` read with `include_docs`: `doc` is
/// absent (or null) for a missing or deleted document.
#[derive(Deserialize)]
struct DocRows<T> {
    rows: Vec<DocRow<T>>,
}

#[derive(Deserialize)]
struct DocRow<T> {
    doc: Option<T>,
}

/// A view row with the id of the document that emitted it.
#[derive(Debug, Deserialize)]
pub struct ViewEntry<K, V> {
    pub id: String,
    pub key: K,
    pub value: V,
}

fn rev_of(value: &Value) -> String {
    value
        .get("rev")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Decodes `%XX` escapes of a URL's user or password.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the request failed because the connection closed before an
/// answer came, not because the server is unreachable or slow.
fn closed_under(error: &reqwest::Error) -> bool {
    error.is_request() && !error.is_connect() && !error.is_timeout()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_the_url() {
        let client = CouchClient::new("http://admin:p%40ss@localhost:5984/cheops").unwrap();
        assert_eq!(client.db_url(), "http://localhost:5984/cheops");
        assert_eq!(
            client.credentials,
            Some(("admin".to_owned(), "p@ss".to_owned()))
        );
        assert!(!format!("{client:?}").contains("p@ss"));
    }

    #[test]
    fn document_ids_are_escaped_segment_by_segment() {
        let client = CouchClient::new("http://localhost:5984/cheops/").unwrap();
        assert_eq!(
            client.url(&["_design", "cheops"]).as_str(),
            "http://localhost:5984/cheops/_design/cheops"
        );
        assert_eq!(
            client.url(&["a/b c"]).as_str(),
            "http://localhost:5984/cheops/a%2Fb%20c"
        );
        assert_eq!(
            client.server_url(&["_replicator", "x"]).as_str(),
            "http://localhost:5984/_replicator/x"
        );
    }

    #[test]
    fn a_url_without_database_is_refused() {
        assert!(CouchClient::new("http://localhost:5984/").is_err());
        assert!(CouchClient::new("not a url").is_err());
    }

    /// A server answering every request with `status` and `body`.
    async fn answering(status: &'static str, body: &'static str) -> CouchClient {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            }
        });
        CouchClient::new(&format!("http://127.0.0.1:{port}/db")).unwrap()
    }

    #[tokio::test]
    async fn saving_one_document_answers_as_a_put_would() {
        let saved = |status, body| async move {
            let doc = serde_json::json!({"_id": "r", "_rev": "1-a"});
            answering(status, body).await.save(&doc).await
        };
        let written = saved("201 Created", r#"[{"ok":true,"id":"r","rev":"2-b"}]"#).await;
        assert!(
            matches!(written, Ok(Written::Rev(ref rev)) if rev == "2-b"),
            "{written:?}"
        );
        let conflict = saved(
            "201 Created",
            r#"[{"id":"r","error":"conflict","reason":"Document update conflict."}]"#,
        )
        .await;
        assert!(matches!(conflict, Ok(Written::Conflict)), "{conflict:?}");
        for refused in [
            saved(
                "201 Created",
                r#"[{"id":"r","error":"too_large","reason":"the document"}]"#,
            )
            .await,
            saved(
                "413 Request Entity Too Large",
                r#"{"error":"document_too_large","reason":"r"}"#,
            )
            .await,
        ] {
            assert!(
                matches!(refused, Err(ReplicatorError::Couch { status: 413, .. })),
                "{refused:?}"
            );
        }
        let forbidden = saved(
            "201 Created",
            r#"[{"id":"r","error":"forbidden","reason":"no"}]"#,
        )
        .await;
        assert!(
            matches!(forbidden, Err(ReplicatorError::Couch { status: 403, ref body, .. }) if body.contains("no")),
            "{forbidden:?}"
        );
    }
}

//! What `Node::submit` refuses, against a fake CouchDB that records every
//! request: each refusal is a clear error and writes nothing. And what the
//! HTTP layers read through the node's seam.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cheops_backends::ShellBackend;
use cheops_model::{Command, Operation, Timestamp};
use cheops_replicator::{
    ClientOptions, DatabaseAccess, Node, NodeConfig, NodeSeam, Reading, ReplicatorError, SiteUrls,
    Sites, Submission, DEFAULT_MAX_REPLY_BYTES,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The requests a fake CouchDB received, as `METHOD path`.
type Requests = Arc<Mutex<Vec<String>>>;

/// What the fake answers the `n`th request of a kind (from 0).
type Answers = Arc<dyn Fn(usize) -> (u16, &'static str) + Send + Sync>;

/// A CouchDB that answers `GET` of a document with `get`, and a write
/// (`PUT`, or `POST` of `_bulk_docs` as CouchDB answers it) as a `PUT`
/// would get `put` (status, body; [`CLOSED`] closes the connection
/// unanswered); returns its database URL.
async fn fake_couch(get: (u16, &'static str), put: (u16, &'static str)) -> (String, Requests) {
    fake_couch_with(Arc::new(move |_| get), Arc::new(move |_| put)).await
}

/// [`fake_couch`], answering each `GET` as `gets` says and each write
/// (`PUT` or `_bulk_docs`) as `puts` says.
async fn fake_couch_with(gets: Answers, puts: Answers) -> (String, Requests) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://admin:pw@{}/cheops", listener.local_addr().unwrap());
    let requests: Requests = Arc::default();
    let log = Arc::clone(&requests);
    let got = Arc::new(AtomicUsize::new(0));
    let wrote = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (log, gets, got) = (Arc::clone(&log), Arc::clone(&gets), Arc::clone(&got));
            let (puts, wrote) = (Arc::clone(&puts), Arc::clone(&wrote));
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if socket.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                let mut body = vec![0; length];
                socket.read_exact(&mut body).await.unwrap();
                let line = head.lines().next().unwrap_or_default();
                let request: Vec<&str> = line.split(' ').take(2).collect();
                // A write is logged with its body.
                let logged = match request[0] {
                    "PUT" | "POST"
                        if request[0] == "PUT" || request[1].ends_with("/_bulk_docs") =>
                    {
                        format!("{} {}", request.join(" "), String::from_utf8_lossy(&body))
                    }
                    _ => request.join(" "),
                };
                log.lock().unwrap().push(logged);
                let write = || puts(wrote.fetch_add(1, Ordering::Relaxed));
                let (status, answer) = match request[0] {
                    "PUT" => write(),
                    "POST" if request[1].ends_with("/_bulk_docs") => bulk_answer(write()),
                    _ => gets(got.fetch_add(1, Ordering::Relaxed)),
                };
                if status == CLOSED.0 {
                    return;
                }
                let response = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    (url, requests)
}

/// What `_bulk_docs` answers when a `PUT` would get `put`: a success or a
/// conflict in the document's row, anything else for the whole request.
fn bulk_answer(put: (u16, &'static str)) -> (u16, &'static str) {
    match put.0 {
        201 => (201, r#"[{"ok":true,"id":"r","rev":"1-a"}]"#),
        409 => (
            201,
            r#"[{"id":"r","error":"conflict","reason":"Document update conflict."}]"#,
        ),
        _ => put,
    }
}

/// The body of a logged write.
fn write_body(write: &str) -> serde_json::Value {
    let body = write.splitn(3, ' ').nth(2).unwrap_or_default();
    serde_json::from_str(body).expect("a JSON body")
}

/// The documents a logged `_bulk_docs` wrote.
fn written_docs(write: &str) -> Vec<serde_json::Value> {
    write_body(write)["docs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A fresh directory for a node's journal.
fn data_dir() -> std::path::PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("cheops-submit-{}-{n}", std::process::id()))
}

fn node(couch_url: &str, max_document_size: usize) -> Node {
    let mut sites = Sites::default();
    sites.insert(
        "site2",
        SiteUrls {
            couch: "http://127.0.0.1:1/cheops".into(),
            api: "http://127.0.0.1:1".into(),
        },
    );
    let config = NodeConfig {
        site: "site1".into(),
        couch_url: couch_url.into(),
        sites,
        concurrency: 1,
        replication_check: Duration::from_secs(60),
        peer_check: Duration::from_secs(60),
        access: DatabaseAccess::AdminsOnly,
        data_dir: data_dir(),
        max_reply_bytes: DEFAULT_MAX_REPLY_BYTES,
        drain: Duration::from_secs(1),
        max_document_size,
        client: ClientOptions::default(),
        hooks: Vec::new(),
        hook_standby: Duration::from_secs(30),
    };
    Node::new(config, Arc::new(ShellBackend::new())).unwrap()
}

fn submission(sites: &[&str], file: usize) -> Submission {
    Submission {
        resource_id: "r".into(),
        sites: sites.iter().map(|s| s.to_string()).collect(),
        operation: Operation {
            op_type: "set".into(),
            request_id: "0123456789abcdef0123456789abcdef".into(),
            command: Command {
                command: "true".into(),
                files: BTreeMap::from([("f".to_owned(), vec![b'x'; file])]),
                ..Command::default()
            },
            time: Timestamp::now(),
            ..Operation::default()
        },
        config: None,
    }
}

const NOT_FOUND: (u16, &str) = (404, r#"{"error":"not_found","reason":"missing"}"#);
const DELETED: (u16, &str) = (404, r#"{"error":"not_found","reason":"deleted"}"#);
const CREATED: (u16, &str) = (201, r#"{"ok":true,"id":"r","rev":"1-a"}"#);
const CONFLICT: (u16, &str) = (409, r#"{"error":"conflict"}"#);
/// Not an answer: the fake closes the connection without one.
const CLOSED: (u16, &str) = (0, "");

/// The writes received: `PUT`s and `_bulk_docs`.
fn puts(requests: &Requests) -> usize {
    puts_in(&requests.lock().unwrap())
}

/// The writes among `requests`.
fn puts_in(requests: &[String]) -> usize {
    requests.iter().filter(|r| is_write(r)).count()
}

/// Whether a logged request writes documents.
fn is_write(request: &str) -> bool {
    request.starts_with("PUT") || request.starts_with("POST /cheops/_bulk_docs")
}

#[tokio::test]
async fn a_write_that_keeps_conflicting_gives_up_as_contended() {
    let (url, requests) = fake_couch(NOT_FOUND, (409, r#"{"error":"conflict"}"#)).await;
    let error = node(&url, 8_000_000)
        .submit(submission(&["site1", "site2"], 10))
        .await
        .map(|_| ())
        .expect_err("refused");
    assert!(
        matches!(error, ReplicatorError::Contended { attempts: 50, .. }),
        "{error:?}"
    );
    let requests = requests.lock().unwrap();
    let writes: Vec<&String> = requests
        .iter()
        .filter(|r| r.starts_with("PUT") || r.starts_with("POST"))
        .collect();
    assert_eq!(writes.len(), 50, "{writes:?}");
    // A refused exec leaves nothing behind: it wrote its resource alone.
    assert!(
        writes.iter().all(|w| {
            let docs = written_docs(w);
            w.starts_with("POST /cheops/_bulk_docs ") && docs.len() == 1 && docs[0]["_id"] == "r"
        }),
        "{writes:?}"
    );
}

/// A read whose connection the server closes before answering (as a
/// server does with a kept-alive connection it drops) is sent again.
#[tokio::test]
async fn a_read_whose_connection_closed_unanswered_is_sent_again() {
    let gets: Answers = Arc::new(|n| if n == 0 { CLOSED } else { NOT_FOUND });
    let (url, requests) = fake_couch_with(gets, Arc::new(|_| CREATED)).await;
    node(&url, 8_000_000)
        .submit(submission(&["site1", "site2"], 10))
        .await
        .map(|_| ())
        .expect("stored");
    let requests = requests.lock().unwrap();
    let reads = requests
        .iter()
        .filter(|r| r.starts_with("GET /cheops/r"))
        .count();
    assert_eq!(reads, 2, "{requests:?}");
    assert_eq!(puts_in(&requests), 1, "{requests:?}");
}

/// A retry that CouchDB refuses as too large (its own limit below the
/// node's) after a lost race is refused with CouchDB's words.
#[tokio::test]
async fn a_retry_refused_as_too_large_names_couchdb() {
    const TOO_LARGE: (u16, &str) = (413, r#"{"error":"document_too_large","reason":"r"}"#);
    let answers: Answers = Arc::new(|n| match n {
        0 => CONFLICT,
        1 => TOO_LARGE,
        _ => CREATED,
    });
    let (url, requests) = fake_couch_with(Arc::new(|_| NOT_FOUND), answers).await;
    let error = node(&url, 8_000_000)
        .submit(submission(&["site1", "site2"], 10))
        .await
        .map(|_| ())
        .expect_err("refused");
    assert!(
        matches!(&error, ReplicatorError::RefusedTooLarge { reason, .. } if reason == "document_too_large: r"),
        "{error:?}"
    );
    assert_eq!(puts(&requests), 2);
}

/// An operation that a resetting operation drops from the block before
/// any reply carrying it is known here gets a history document, written
/// before the block that drops it, with a revision every site would write
/// alike.
#[tokio::test]
async fn a_resetting_exec_writes_the_history_of_what_it_drops_first() {
    const STORED: &str = r#"{"_id":"r","_rev":"1-a","Type":"RESOURCE","Locations":["site1"],
        "Operations":[{"Type":"set","RequestId":"old","Command":{"Command":"echo old","Files":null},
                       "Time":"2026-01-01T00:00:00Z","Site":"site1"}],
        "Config":{"ResolutionMatrix":[{"Before":"set","After":"set","Result":"take-one"}]}}"#;
    // The requests view finds nothing about `old`: no reply carries it.
    let gets: Answers = Arc::new(|n| match n {
        1 => (200, r#"{"total_rows":0,"offset":0,"rows":[]}"#),
        _ => (200, STORED),
    });
    let (url, requests) = fake_couch_with(gets, Arc::new(|_| CREATED)).await;
    node(&url, 8_000_000)
        .submit(submission(&["site1"], 10))
        .await
        .map(|_| ())
        .expect("stored");
    let requests = requests.lock().unwrap();
    let writes: Vec<&String> = requests.iter().filter(|r| is_write(r)).collect();
    assert_eq!(writes.len(), 2, "{requests:?}");
    let dropped = write_body(writes[0]);
    assert_eq!(dropped["new_edits"], false, "{dropped}");
    let history = &dropped["docs"][0];
    assert_eq!(history["_id"], "history:r:old");
    assert_eq!(history["Operation"]["Command"]["Command"], "echo old");
    assert_eq!(history["Site"], "site1");
    assert!(history["_rev"]
        .as_str()
        .unwrap_or_default()
        .starts_with("1-"));
    assert!(history.get("Origin").is_none(), "the same from every site");
    let resource = &written_docs(writes[1])[0];
    assert_eq!(resource["_id"], "r", "{writes:?}");
    assert_eq!(resource["Operations"].as_array().map(Vec::len), Some(1));
    assert_eq!(resource["Operations"][0]["Site"], "site1");
    assert_ne!(resource["Operations"][0]["RequestId"], "old");
}

/// An exec whose write went unanswered, after one that lost a race, may
/// have stored its operation: it is refused as unavailable.
#[tokio::test]
async fn an_unanswered_write_is_unavailable() {
    let answers: Answers = Arc::new(|n| if n == 0 { CONFLICT } else { CLOSED });
    let (url, requests) = fake_couch_with(Arc::new(|_| NOT_FOUND), answers).await;
    let error = node(&url, 8_000_000)
        .submit(submission(&["site1", "site2"], 10))
        .await
        .map(|_| ())
        .expect_err("refused");
    assert!(error.is_unavailable(), "{error:?}");
    assert_eq!(puts(&requests), 2);
}

/// A resource whose every leaf is a deletion (replication brought the
/// deletions of a merge before the merged revision) is not started again
/// from nothing: the exec waits for the merge and writes on it.
#[tokio::test]
async fn an_exec_on_a_resource_read_as_deleted_waits_for_its_merge() {
    const MERGED: &str = r#"{"_id":"r","_rev":"7-m","Type":"RESOURCE","Locations":["site1","site2"],
        "Operations":[{"Type":"add","RequestId":"ffffffffffffffffffffffffffffffff",
                       "Command":{"Command":"true","Files":null},"Time":"2026-01-01T00:00:00Z"}],
        "Config":{"ResolutionMatrix":null}}"#;
    let gets: Answers = Arc::new(|n| if n < 3 { DELETED } else { (200, MERGED) });
    let (url, requests) = fake_couch_with(gets, Arc::new(|_| CREATED)).await;
    node(&url, 8_000_000)
        .submit(submission(&["site1", "site2"], 10))
        .await
        .map(|_| ())
        .expect("stored on the merge");
    assert_eq!(puts(&requests), 1, "one write");
    let requests = requests.lock().unwrap();
    let first_write = requests.iter().position(|r| is_write(r));
    let fourth_read = requests
        .iter()
        .enumerate()
        .filter(|(_, r)| r.starts_with("GET /cheops/r"))
        .nth(3)
        .map(|(i, _)| i);
    assert!(
        first_write > fourth_read,
        "written on the merge: {requests:?}"
    );
}

/// When the merge does not come (a partition cut it off), the exec is
/// deferred with a clear error, and nothing is written.
#[tokio::test]
async fn an_exec_on_a_resource_that_stays_deleted_is_deferred_and_writes_nothing() {
    let (url, requests) = fake_couch(DELETED, CREATED).await;
    let error = node(&url, 8_000_000)
        .submit(submission(&["site1", "site2"], 10))
        .await
        .map(|_| ())
        .expect_err("deferred");
    assert!(
        matches!(error, ReplicatorError::Settling { .. }),
        "{error:?}"
    );
    assert!(error.is_deferred());
    assert!(error.to_string().contains("try again"), "{error}");
    assert_eq!(puts(&requests), 0);
}

#[tokio::test]
async fn a_document_over_the_limit_is_never_written() {
    let (url, requests) = fake_couch(NOT_FOUND, CREATED).await;
    let error = node(&url, 1000)
        .submit(submission(&["site1"], 1000))
        .await
        .map(|_| ())
        .expect_err("refused");
    assert!(
        matches!(error, ReplicatorError::TooLarge { limit: 1000, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("1000 bytes"), "{error}");
    assert_eq!(puts(&requests), 0);
}

/// How a node under CouchDB's 8 MB default refuses a small operation when
/// CouchDB answers its write with `write`.
async fn refused_by_couchdb(write: (u16, &'static str)) -> ReplicatorError {
    let (url, _) = fake_couch(NOT_FOUND, write).await;
    node(&url, 8_000_000)
        .submit(submission(&["site1"], 10))
        .await
        .map(|_| ())
        .expect_err("refused")
}

#[tokio::test]
async fn couchdbs_own_413_is_a_document_too_large() {
    let error = refused_by_couchdb((413, r#"{"error":"document_too_large","reason":"r"}"#)).await;
    assert!(
        matches!(&error, ReplicatorError::RefusedTooLarge { reason, .. } if reason == "document_too_large: r"),
        "{error:?}"
    );
    let said = error.to_string();
    assert!(
        said.starts_with("CouchDB refused") && said.contains("document_too_large: r"),
        "the refusal names CouchDB and its words: {said}"
    );
}

#[tokio::test]
async fn an_id_taken_by_a_reply_is_refused_and_the_reply_kept() {
    let reply = r#"{"_id":"r","_rev":"1-b","Type":"REPLY","Site":"site1","Status":"OK"}"#;
    let (url, requests) = fake_couch((200, reply), CREATED).await;
    let error = node(&url, 8_000_000)
        .submit(submission(&["site1"], 10))
        .await
        .map(|_| ())
        .expect_err("refused");
    assert!(matches!(error, ReplicatorError::IdTaken(_)), "{error:?}");
    assert_eq!(puts(&requests), 0);
}

/// A resource stored with a matrix; an exec with another is refused and
/// writes nothing; the same rules, written in another order, are no change.
#[tokio::test]
async fn a_config_other_than_the_stored_one_is_refused_and_nothing_written() {
    const STORED: &str = r#"{"_id":"r","_rev":"1-a","Type":"RESOURCE","Locations":["site1"],
        "Operations":[],"Config":{"ResolutionMatrix":[
        {"Before":"set","After":"set","Result":"take-one"},
        {"Before":"add","After":"set","Result":"take-both-reverse-order"}]}}"#;
    let config = |json: &str| Some(serde_json::from_str(json).expect("a config"));
    let other = config(
        r#"{"ResolutionMatrix":[{"Before":"set","After":"set","Result":"take-both-keep-order"}]}"#,
    );
    let (url, requests) = fake_couch((200, STORED), CREATED).await;
    let node = node(&url, 8_000_000);
    let error = node
        .submit(Submission {
            config: other,
            ..submission(&["site1"], 10)
        })
        .await
        .map(|_| ())
        .expect_err("refused");
    assert!(
        matches!(&error, ReplicatorError::ConfigChanged(id) if id == "r"),
        "{error:?}"
    );
    assert_eq!(puts(&requests), 0);
    let same = config(
        r#"{"ResolutionMatrix":[{"Before":"add","After":"set","Result":"take-both-reverse-order"},
        {"Before":"set","After":"set","Result":"take-one"}]}"#,
    );
    node.submit(Submission {
        config: same,
        ..submission(&["site1"], 10)
    })
    .await
    .map(|_| ())
    .expect("the same rules");
    assert_eq!(puts(&requests), 1);
}

#[tokio::test]
async fn a_site_that_is_not_a_known_peer_is_refused_before_any_request() {
    let (url, requests) = fake_couch(NOT_FOUND, CREATED).await;
    let node = node(&url, 8_000_000);
    for site in ["site3", "127.0.0.1:5984", "h/x#"] {
        let error = node
            .submit(submission(&["site1", site], 10))
            .await
            .map(|_| ())
            .expect_err("refused");
        assert!(
            matches!(&error, ReplicatorError::InvalidRequest(m) if m.contains(site)),
            "{error:?}"
        );
    }
    assert!(requests.lock().unwrap().is_empty());
}

/// Chephren gets the database as typed resources and replies from the node
/// itself, reading only what a page shows, and the API the peers' URLs: no
/// adapter, no CouchDB row above the replicator.
#[tokio::test]
async fn the_node_serves_the_http_layers_through_its_seam() {
    const RESOURCE: &str = r#"{"_id": "r", "_rev": "3-a", "Type": "RESOURCE", "Locations": ["site1"],
        "Operations": [{"Type": "add", "RequestId": "q", "Command": {"Command": "true", "Files": null},
                        "Time": "2026-01-01T00:00:00Z"}],
        "Config": {"ResolutionMatrix": null}, "_conflicts": ["2-b"]}"#;
    const ROWS: &str = r#"{"total_rows": 2, "offset": 0, "rows": [
        {"id": "x", "key": ["r", "q"], "value": {"Site": "site1", "ReadsHistory": true, "Status": "OK",
                                                 "ExecutionTime": "2026-01-01T00:00:01Z"}},
        {"id": "history:r:q", "key": ["r", "q"], "value": {"History": true}}]}"#;
    const REPLIES: &str = r#"{"total_rows": 9, "offset": 0, "rows": [
        {"id": "x", "key": "x", "doc": {"_id": "x", "Type": "REPLY", "Site": "site1", "ResourceId": "r",
                            "RequestId": "q", "Status": "OK", "Output": "hi"}}]}"#;
    let gets: Answers = Arc::new(|n| match n {
        0 => (200, RESOURCE),
        1 => (200, ROWS),
        _ => (200, REPLIES),
    });
    let (url, requests) = fake_couch_with(gets, Arc::new(|_| CREATED)).await;
    let node = Arc::new(node(&url, 8_000_000));
    let seam: Arc<dyn NodeSeam> = node;
    let docs = seam.documents(&Reading::Block("r".into())).await.unwrap();
    let ids: Vec<&str> = docs.resources.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["r"]);
    assert_eq!(docs.resources[0].conflicts, ["2-b"]);
    assert_eq!(docs.replies_of("r")[0].output, "hi");
    assert_eq!(
        requests.lock().unwrap().as_slice(),
        [
            "GET /cheops/r?conflicts=true",
            "POST /cheops/_design/cheops/_view/by-resource-request",
            "POST /cheops/_all_docs?include_docs=true",
        ],
        "the resource, the rows of its block's requests, then its replies alone (no history document)"
    );

    assert_eq!(seam.site(), "site1");
    assert_eq!(seam.api_url("site2").as_deref(), Ok("http://127.0.0.1:1"));
    assert!(seam.api_url("site9").is_err(), "an unknown site is refused");
}

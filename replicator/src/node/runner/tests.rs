//! The runner against a fake CouchDB: how many requests resources share.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cheops_backends::{Backend, CommandResult, Next, Outcome, Progress};
use cheops_model::{Command, Operation, ResourceDocument, Timestamp};
use serde_json::json;
use tokio::sync::watch;

use super::Runner;
use crate::node::context::Context;
use crate::node::feed::Feed;

/// Runs each command at once, successfully, counting them.
#[derive(Default)]
struct Succeeds {
    ran: std::sync::atomic::AtomicUsize,
}

impl Backend for Succeeds {
    fn run_with<'a>(
        &'a self,
        batch: &'a [Command],
        progress: &'a dyn Progress,
    ) -> cheops_backends::BatchFuture<'a> {
        Box::pin(async move {
            let mut results = Vec::new();
            for index in 0..batch.len() {
                let result = CommandResult {
                    outcome: Outcome::Ok,
                    output: String::new(),
                };
                self.ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let next = progress.finished(index, &result).await;
                results.push(result);
                if next == Next::Stop {
                    break;
                }
            }
            results
        })
    }
}

/// Requests a fake CouchDB received, by kind, and the replies stored.
#[derive(Default)]
struct Seen {
    views: usize,
    keys: usize,
    bulks: usize,
    replies: Vec<String>,
}

/// A CouchDB that knows the replies view (no reply stored before) and
/// `_bulk_docs`, counting what it is asked; it answers a `_bulk_docs`
/// only while `writes` is open.
async fn fake_couch(seen: Arc<Mutex<Seen>>, writes: watch::Receiver<bool>) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cheops", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            let mut writes = writes.clone();
            tokio::spawn(async move {
                let mut socket = BufReader::new(socket);
                loop {
                    let mut request_line = String::new();
                    if socket.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        socket.read_line(&mut line).await.unwrap();
                        match line.trim_end().split_once(':') {
                            Some((name, value)) if name.eq_ignore_ascii_case("content-length") => {
                                length = value.trim().parse().unwrap();
                            }
                            None => break,
                            _ => {}
                        }
                    }
                    let mut body = vec![0; length];
                    socket.read_exact(&mut body).await.unwrap();
                    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    if !request_line.contains("/_view/") {
                        writes.wait_for(|open| *open).await.unwrap();
                    }
                    let answer = {
                        let mut seen = seen.lock().unwrap();
                        if request_line.contains("/_view/") {
                            seen.views += 1;
                            seen.keys += body["keys"].as_array().unwrap().len();
                            json!({"rows": []})
                        } else {
                            seen.bulks += 1;
                            let docs = body["docs"].as_array().unwrap();
                            let rows: Vec<_> = docs
                                .iter()
                                .map(|doc| json!({"id": doc["_id"], "ok": true, "rev": "1-a"}))
                                .collect();
                            seen.replies.extend(
                                docs.iter()
                                    .map(|doc| doc["ResourceId"].as_str().unwrap().to_owned()),
                            );
                            json!(rows)
                        }
                    }
                    .to_string();
                    let response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                            answer.len()
                        );
                    socket
                        .get_mut()
                        .write_all(response.as_bytes())
                        .await
                        .unwrap();
                }
            });
        }
    });
    url
}

/// A runner of site1 on the fake CouchDB at `url`, its journal in `dir`.
fn runner(
    url: &str,
    dir: &std::path::Path,
    backend: Arc<dyn Backend>,
    concurrency: usize,
) -> Runner {
    // Longer than any wait of these tests: a request held by the fake
    // never fails.
    let couch = crate::db::couch::CouchClient::with_options(
        url,
        &crate::ClientOptions {
            couch_timeout: Duration::from_secs(600),
            ..crate::ClientOptions::default()
        },
    )
    .unwrap();
    let journal = crate::node::journal::Journal::open(dir, "site1").unwrap();
    let metrics = crate::metrics::Metrics::default();
    let ctx = Context::new("site1".into(), couch, metrics, journal, Feed::in_memory());
    Runner::new(ctx, backend, 1 << 20, 8_000_000, concurrency)
}

/// Resource `res{n}` of site1, with one operation to run.
fn resource(n: usize) -> ResourceDocument {
    let operation = Operation {
        request_id: format!("req{n}"),
        time: Timestamp::now(),
        ..Operation::default()
    };
    ResourceDocument {
        id: format!("res{n}"),
        locations: vec!["site1".into()],
        operations: vec![operation],
        ..ResourceDocument::default()
    }
}

/// Waits, a minute at most, until `done`.
async fn until(what: &str, done: impl Fn() -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    waited
        .await
        .unwrap_or_else(|_| panic!("{what}: not within a minute"));
}

#[tokio::test]
async fn resources_caught_up_together_share_their_requests() {
    const RESOURCES: usize = 200;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (_open, writes) = watch::channel(true);
    let url = fake_couch(Arc::clone(&seen), writes).await;
    let dir = std::env::temp_dir().join(format!("cheops-runner-batch-{}", std::process::id()));
    let runner = runner(&url, &dir, Arc::new(Succeeds::default()), 8);
    for n in 0..RESOURCES {
        runner.schedule(resource(n)).await;
    }
    until("every resource handled", || runner.is_idle()).await;
    let _ = std::fs::remove_dir_all(&dir);
    let seen = seen.lock().unwrap();
    let mut replied = seen.replies.clone();
    replied.sort();
    replied.dedup();
    assert_eq!(replied.len(), RESOURCES, "one reply per resource");
    assert_eq!(seen.replies.len(), RESOURCES, "each written once");
    assert_eq!(seen.keys, RESOURCES, "each resource's replies read once");
    assert!(
        seen.views <= RESOURCES / 20,
        "{} view requests for {RESOURCES} resources",
        seen.views
    );
    assert!(
        seen.bulks <= RESOURCES / 2,
        "{} _bulk_docs for {RESOURCES} resources",
        seen.bulks
    );
}

#[tokio::test]
async fn a_resource_runs_while_the_replies_of_another_are_written() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (open, writes) = watch::channel(false);
    let url = fake_couch(Arc::clone(&seen), writes).await;
    let dir = std::env::temp_dir().join(format!("cheops-runner-turn-{}", std::process::id()));
    let backend = Arc::new(Succeeds::default());
    let runner = runner(&url, &dir, backend.clone(), 1);
    runner.schedule(resource(0)).await;
    runner.schedule(resource(1)).await;
    // One turn, and CouchDB holds the first reply's write: the second
    // resource runs all the same.
    until("both resources ran", || {
        backend.ran.load(std::sync::atomic::Ordering::SeqCst) == 2
    })
    .await;
    open.send_replace(true);
    until("every reply written", || runner.is_idle()).await;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(seen.lock().unwrap().replies.len(), 2);
}

/// Holds every command until `open` says so, counting those started.
struct Held {
    started: std::sync::atomic::AtomicUsize,
    open: watch::Receiver<bool>,
}

impl Backend for Held {
    fn run_with<'a>(
        &'a self,
        batch: &'a [Command],
        _progress: &'a dyn Progress,
    ) -> cheops_backends::BatchFuture<'a> {
        Box::pin(async move {
            self.started
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut open = self.open.clone();
            let _ = open.wait_for(|open| *open).await;
            batch
                .iter()
                .map(|_| CommandResult {
                    outcome: Outcome::Ok,
                    output: String::new(),
                })
                .collect()
        })
    }
}

#[tokio::test]
async fn a_command_run_alone_takes_a_turn_of_the_passes() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (_writes_open, writes) = watch::channel(true);
    let url = fake_couch(Arc::clone(&seen), writes).await;
    let dir = std::env::temp_dir().join(format!("cheops-runner-alone-{}", std::process::id()));
    let (release, open) = watch::channel(false);
    let backend = Arc::new(Held {
        started: Default::default(),
        open,
    });
    let runner = Arc::new(runner(
        &url,
        &dir,
        Arc::clone(&backend) as Arc<dyn Backend>,
        1,
    ));
    let alone = tokio::spawn({
        let runner = Arc::clone(&runner);
        async move { runner.run_alone(Command::shell("show")).await }
    });
    until("the show started", || {
        backend.started.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    // The one turn is the show's: a resource scheduled now waits for it.
    assert_eq!(runner.load().1, 1);
    runner.schedule(resource(0)).await;
    assert_eq!(backend.started.load(std::sync::atomic::Ordering::SeqCst), 1);
    release.send_replace(true);
    assert_eq!(alone.await.expect("ran").outcome, Outcome::Ok);
    until("the resource ran", || runner.is_idle()).await;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(backend.started.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_stopping_runner_drops_what_it_is_handed_and_is_never_idle_again() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (_open, writes) = watch::channel(true);
    let url = fake_couch(Arc::clone(&seen), writes).await;
    let dir = std::env::temp_dir().join(format!("cheops-runner-stop-{}", std::process::id()));
    let backend = Arc::new(Succeeds::default());
    let runner = runner(&url, &dir, backend.clone(), 2);
    runner.schedule(resource(0)).await;
    until("the first resource handled", || runner.is_idle()).await;
    runner.inner.stopping.send_replace(true);
    runner.schedule(resource(1)).await;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(backend.ran.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(
        !runner.is_idle(),
        "a checkpoint would pass the dropped change"
    );
}

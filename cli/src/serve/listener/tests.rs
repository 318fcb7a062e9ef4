//! The listeners against real sockets: HTTPS trust, slow clients, the cap.

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::{get, post};
use cheops_testkit::tls::TestCa;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

/// An answer larger than what the sockets' buffers hold.
const BIG: usize = 64 << 20;

/// Far longer than any limit a test sets: reaching it means a hang.
const HANG: Duration = Duration::from_secs(20);

fn limits() -> Limits {
    Limits {
        header_timeout: Duration::from_secs(60),
        body_timeout: Duration::from_secs(60),
        max_connections: 1024,
    }
}

/// Serves a tiny router (`GET /` → "hello", `POST /echo` → the body) until
/// the returned sender is dropped.
async fn start(tls: Option<Tls>, limits: Limits) -> (SocketAddr, watch::Sender<bool>) {
    let router = Router::new()
        .route("/", get(|| async { "hello" }))
        .route("/echo", post(|body: String| async move { body }))
        .route("/big", get(|| async { vec![b'x'; BIG] }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(serve(listener, router, tls, limits, stopped));
    (addr, stop)
}

/// Everything the server sends until it closes the connection.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    tokio::time::timeout(HANG, stream.read_to_end(&mut received))
        .await
        .expect("the server kept the connection open")
        .ok();
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test]
async fn https_answers_a_client_trusting_the_ca_and_no_other() {
    let ca = TestCa::new();
    let dir = std::env::temp_dir().join(format!("cheops-listener-tls-{}", std::process::id()));
    let files = ca.write(&dir);
    let tls = Tls::from_pem_files(&files.cert, &files.key).unwrap();
    let (addr, _stop) = start(Some(tls), limits()).await;
    let url = format!("https://127.0.0.1:{}/", addr.port());

    let trusting = reqwest::Client::builder()
        .add_root_certificate(ca.reqwest_root())
        .build()
        .unwrap();
    let response = trusting.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "hello");

    let error = reqwest::get(&url)
        .await
        .expect_err("a client not trusting the CA is refused");
    assert!(error.is_connect(), "{error:?}");
    let plain = reqwest::get(format!("http://127.0.0.1:{}/", addr.port())).await;
    assert!(plain.is_err(), "plain HTTP is not served: {plain:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn unreadable_certificate_files_are_refused_by_name() {
    let dir = std::env::temp_dir().join(format!("cheops-listener-bad-{}", std::process::id()));
    let files = TestCa::new().write(&dir);
    std::fs::write(&files.key, "not a key").unwrap();
    let error = Tls::from_pem_files(&files.cert, &files.key).unwrap_err();
    assert!(error.starts_with("--tls-key "), "{error}");
    let error = Tls::from_pem_files(&files.key, &files.cert).unwrap_err();
    assert!(error.starts_with("--tls-cert "), "{error}");
    let _ = std::fs::remove_dir_all(dir);
}

/// What a server whose header timeout is 300 ms sends to a client that
/// sends `bytes` and then nothing, until it closes the connection.
async fn sent_then_silent(bytes: &[u8]) -> String {
    let (addr, _stop) = start(
        None,
        Limits {
            header_timeout: Duration::from_millis(300),
            ..limits()
        },
    )
    .await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(bytes).await.unwrap();
    read_until_closed(&mut client).await
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let answer = sent_then_silent(b"GET / HTTP/1.1\r\nHost: x\r\n").await;
    assert!(!answer.contains("hello"), "{answer}");
}

/// A kept-alive connection that sends no next request is closed too, so
/// that idle clients do not hold the connections the cap allows.
#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed() {
    let answer = sent_then_silent(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    // The answer came, then the connection closed without a next request.
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("hello"), "{answer}");
}

#[tokio::test]
async fn a_tls_client_that_never_finishes_its_handshake_is_disconnected() {
    let dir = std::env::temp_dir().join(format!("cheops-listener-hs-{}", std::process::id()));
    let files = TestCa::new().write(&dir);
    let tls = Tls::from_pem_files(&files.cert, &files.key).unwrap();
    let (addr, _stop) = start(
        Some(tls),
        Limits {
            header_timeout: Duration::from_millis(300),
            ..limits()
        },
    )
    .await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert_eq!(read_until_closed(&mut silent).await, "");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_body_that_stops_coming_ends_the_request() {
    let (addr, _stop) = start(
        None,
        Limits {
            body_timeout: Duration::from_millis(300),
            ..limits()
        },
    )
    .await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b")
        .await
        .unwrap();
    let answer = read_until_closed(&mut slow).await;
    assert!(
        answer.starts_with("HTTP/1.1 4") || answer.starts_with("HTTP/1.1 5"),
        "{answer}"
    );
    assert!(!answer.contains("only ten b"), "{answer}");
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let (addr, _stop) = start(
        None,
        Limits {
            max_connections: 2,
            ..limits()
        },
    )
    .await;
    // Two clients hold every slot, headers unfinished.
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut holder = TcpStream::connect(addr).await.unwrap();
        holder.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        holders.push(holder);
    }
    let mut third = TcpStream::connect(addr).await.unwrap();
    third
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // Proving that nothing comes takes waiting: a second is plenty for a
    // served request on an idle loopback.
    let mut first_byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_secs(1), third.read(&mut first_byte)).await;
    assert!(early.is_err(), "served beyond the cap: {early:?}");

    drop(holders.pop());
    let answer = read_until_closed(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("hello"), "{answer}");
}

#[tokio::test]
async fn a_client_that_stops_reading_its_answer_frees_its_slot() {
    let (addr, _stop) = start(
        None,
        Limits {
            body_timeout: Duration::from_millis(300),
            max_connections: 1,
            ..limits()
        },
    )
    .await;
    let mut stuck = TcpStream::connect(addr).await.unwrap();
    stuck
        .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The only slot is the stuck client's until its answer stalls.
    let mut next = TcpStream::connect(addr).await.unwrap();
    next.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut next).await;
    assert!(answer.ends_with("hello"), "{answer}");
    drop(stuck);
}

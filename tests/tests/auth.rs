//! Authentication of a node's listeners, on real daemons: who may call
//! what with which token, that a node without a token keeps to loopback,
//! and that no token ever reaches a log.

use std::process::Stdio;
use std::time::Duration;

use cheops_testkit::{authorized_client, cheops_binary, eventually, free_port, Cluster, Exec};
use reqwest::multipart::Form;
use reqwest::StatusCode;

/// A token no node of the cluster knows.
const WRONG: &str = "wrong-token-0123456789abcdef";

/// The status of a POST of `form` to `url`, with `token` if any.
async fn post(url: &str, form: Form, token: Option<&str>) -> StatusCode {
    let http = match token {
        Some(token) => authorized_client(token),
        None => reqwest::Client::new(),
    };
    http.post(url)
        .multipart(form)
        .send()
        .await
        .expect("the API answers")
        .status()
}

async fn get(url: &str, token: Option<&str>) -> StatusCode {
    let http = match token {
        Some(token) => authorized_client(token),
        None => reqwest::Client::new(),
    };
    http.get(url).send().await.expect("it answers").status()
}

fn exec_form() -> Form {
    Form::new()
        .text("sites", "site1&site2")
        .text("type", "set")
        .text("command", "echo ran >> \"$NODE_DIR/ran\"")
}

fn show_form() -> Form {
    Form::new().text("command", "echo __ID__")
}

#[tokio::test(flavor = "multi_thread")]
async fn each_token_opens_its_endpoints_and_none_reaches_a_log() {
    let cluster = Cluster::start(2).await;
    let (status, _) = cluster
        .exec(0, Exec::new("r", "site1&site2", &["true"], "set"))
        .await;
    assert_eq!(status, 200);
    let node = cluster.node(0);
    let api = node.api_url();
    let (exec, show, show_local) = (
        format!("{api}/exec/r"),
        format!("{api}/show/r"),
        format!("{api}/show_local/r"),
    );
    let chephren = format!("{}/api/blocks", node.chephren_url());
    let dump = format!("http://127.0.0.1:{}/", node.dump_port);

    for token in [None, Some(WRONG)] {
        assert_eq!(post(&exec, exec_form(), token).await, 401, "{token:?}");
        assert_eq!(post(&show, show_form(), token).await, 401, "{token:?}");
        assert_eq!(post(&show_local, show_form(), token).await, 401);
        assert_eq!(get(&chephren, token).await, 401, "{token:?}");
        assert_eq!(get(&dump, token).await, 401, "{token:?}");
    }
    let read = Some(cluster.read_token());
    assert_eq!(post(&exec, exec_form(), read).await, 403);
    assert_eq!(post(&show, show_form(), read).await, 403);
    assert_eq!(post(&show_local, show_form(), read).await, 403);
    assert_eq!(get(&chephren, read).await, 200);
    assert_eq!(get(&dump, read).await, 200);
    let between_nodes = Some(cluster.node_token());
    assert_eq!(post(&exec, exec_form(), between_nodes).await, 403);
    assert_eq!(post(&show_local, show_form(), between_nodes).await, 200);
    assert_eq!(get(&chephren, between_nodes).await, 403);
    let operator = Some(cluster.token());
    assert_eq!(get(&chephren, operator).await, 200);
    assert_eq!(get(&dump, operator).await, 200);
    assert_eq!(get(&format!("{api}/health"), None).await, 200);
    assert_eq!(get(&format!("{api}/openapi.yml"), None).await, 200);
    // Nothing refused ran: no command wrote the file.
    for i in 0..2 {
        assert!(!cluster.node(i).app_dir().join("ran").exists());
    }

    // /show reaches site2's /show_local with the node token.
    let (status, answers) = cluster.show(0, "r", "echo __ID__", None).await;
    assert_eq!(status, 200);
    for site in ["site1", "site2"] {
        assert_eq!(answers[site]["Status"], "OK", "{answers}");
    }

    // No token, right or wrong, is in any daemon's log.
    for i in 0..2 {
        for log in cluster.daemon_logs(i) {
            let text = std::fs::read_to_string(&log).expect("a daemon log");
            if i == 0 {
                // The refusals were logged, without what was presented.
                assert!(text.contains("request refused"), "{}", log.display());
            }
            for token in [
                cluster.token(),
                cluster.read_token(),
                cluster.node_token(),
                WRONG,
            ] {
                assert!(!text.contains(token), "a token is in {}", log.display());
            }
        }
    }
}

/// The local address the socket listening on `port` is bound to, from
/// `/proc/net/tcp` (IPv4, state LISTEN): what the kernel says, not what the
/// daemon claims.
fn listening_address(port: u16) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (address, port_hex) = fields.get(1)?.split_once(':')?;
        (u16::from_str_radix(port_hex, 16).ok()? == port && fields.get(3) == Some(&"0A"))
            .then(|| address.to_owned())
    })
}

fn serve(args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(cheops_binary());
    command
        .args(["serve", "--site", "site1"])
        .args(["--couchdb-url", "http://admin:password@127.0.0.1:1/cheops"])
        .arg("--data-dir")
        .arg(std::env::temp_dir().join(format!("cheops-auth-data-{}", std::process::id())))
        .args(args)
        .env_remove("CHEOPS_LISTEN")
        .env_remove("CHEOPS_TOKEN")
        .env_remove("CHEOPS_TOKEN_FILE")
        .env_remove("CHEOPS_INSECURE")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

#[tokio::test]
async fn without_a_token_the_daemon_listens_on_loopback_only_and_says_so() {
    let (api, chephren) = (free_port(), free_port());
    let log = std::env::temp_dir().join(format!("cheops-loopback-{}.log", std::process::id()));
    let file = std::fs::File::create(&log).expect("a log file");
    let mut daemon = serve(&[
        "--api-port",
        &api.to_string(),
        "--chephren-port",
        &chephren.to_string(),
    ])
    .stdout(file.try_clone().expect("a log file"))
    .stderr(file)
    .spawn()
    .expect("cannot start cheops serve");
    for port in [api, chephren] {
        let address = eventually("the daemon to listen", Duration::from_secs(30), || async {
            listening_address(port)
        })
        .await;
        // 127.0.0.1, as /proc/net/tcp writes it (little-endian hex).
        assert_eq!(address, "0100007F", "port {port}");
    }
    let text = std::fs::read_to_string(&log).expect("the daemon's log");
    assert!(
        text.contains("no token configured: listening on loopback only"),
        "{text}"
    );
    daemon.kill().await.expect("cannot stop the daemon");
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_dir_all(
        std::env::temp_dir().join(format!("cheops-auth-data-{}", std::process::id())),
    );
}

#[tokio::test]
async fn listening_elsewhere_without_a_token_or_insecure_exits_64() {
    let api = free_port();
    let run = serve(&["--listen", "0.0.0.0", "--api-port", &api.to_string()]).output();
    // A daemon that starts instead would run until killed (on drop).
    let output = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("cheops serve did not exit: it started listening on 0.0.0.0")
        .expect("cannot run cheops serve");
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--listen 0.0.0.0") && stderr.contains("--insecure"),
        "{stderr}"
    );
    assert_eq!(listening_address(api), None);
}

//! The `cheops` client against live nodes: files and directories uploaded
//! from `{path}`, replies printed as they come, `show`, the bare form of
//! the original README, the exit status of every outcome, and `wait` and
//! `watch` after an exec's timeout.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use cheops_model::{ReplyDocument, Status};
use cheops_testkit::{absent_peer, cheops_binary, Cluster, ClusterOptions};
use serde_json::{json, Value};

/// What one run of the client did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `cheops args…` in `dir`, with none of the client's environment
/// variables but those in `env` (the node's token included: every node of
/// the harness requires one), standard streams piped.
async fn cheops(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = tokio::process::Command::new(cheops_binary());
    command
        .args(args)
        .current_dir(dir)
        .env_remove("CHEOPS_NODE")
        .env_remove("CHEOPS_PEERS_FILE")
        .env_remove("CHEOPS_API_TEMPLATE")
        .env_remove("CHEOPS_TOKEN")
        .env_remove("CHEOPS_TOKEN_FILE")
        .envs(env.iter().copied());
    let output = command.output().await.expect("cannot run cheops");
    Run {
        code: output.status.code().expect("cheops was killed"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A fresh working directory holding `files` (relative name → content),
/// removed on drop unless the test failed.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new(files: &[(&str, &str)]) -> WorkDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cheops-cli-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("cannot create a work directory");
        for (name, content) in files {
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("cannot create a directory");
            }
            std::fs::write(path, content).expect("cannot write a file");
        }
        WorkDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Splits a reply line `[i/N] STATUS REQUESTID SITE<TAB>OUTPUT` into its
/// head (`[i/N] STATUS`), request id, site and output.
fn reply_line(line: &str) -> (String, String, String, String) {
    let (head, output) = line
        .split_once('\t')
        .unwrap_or_else(|| panic!("no tab in {line:?}"));
    let words: Vec<&str> = head.split(' ').collect();
    assert_eq!(words.len(), 4, "{line:?}");
    (
        format!("{} {}", words[0], words[1]),
        words[2].to_owned(),
        words[3].to_owned(),
        output.to_owned(),
    )
}

/// The only operation of a stored resource.
fn only_operation(doc: &Value) -> &Value {
    let operations = doc["Operations"].as_array().expect("operations");
    assert_eq!(operations.len(), 1, "{doc}");
    &operations[0]
}

fn file_names(operation: &Value) -> Vec<String> {
    let files = operation["Command"]["Files"].as_object().expect("files");
    files.keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_uploads_a_file_and_prints_one_line_per_reply() {
    let cluster = Cluster::start(1).await;
    let work = WorkDir::new(&[("conf/hello.txt", "hello")]);
    // The node found through the peer map, as `cheops serve` takes it.
    let peer = format!(
        "site1=http://unused.invalid/cheops,{}",
        cluster.node(0).api_url()
    );
    let run = cheops(
        work.path(),
        &[
            "exec",
            "--id",
            "greeting",
            "--sites",
            "site1",
            "--type",
            "set",
            "--command",
            "cat {conf/hello.txt}; echo !",
            "--peer",
            &peer,
        ],
        &[("CHEOPS_TOKEN", cluster.token())],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stderr, "", "nothing on stderr outside a terminal");
    let (head, request_id, site, output) = reply_line(run.stdout.trim_end_matches('\n'));
    assert_eq!(
        (head.as_str(), site.as_str(), output.as_str()),
        ("[1/1] OK", "site1", "hello!")
    );

    let doc = cluster.doc(0, "greeting").await.expect("stored");
    let operation = only_operation(&doc);
    assert_eq!(operation["RequestId"], request_id.as_str());
    assert_eq!(operation["Command"]["Command"], "cat {hello.txt}; echo !");
    assert_eq!(
        operation["Command"]["Files"],
        json!({"hello.txt": "aGVsbG8="})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn files_sharing_a_name_are_numbered() {
    let cluster = Cluster::start(1).await;
    let token_file = cluster.token_file().display().to_string();
    let work = WorkDir::new(&[("a/x.txt", "A\n"), ("b/x.txt", "B\n")]);
    let run = cheops(
        work.path(),
        &[
            "exec",
            "--id",
            "pair",
            "--sites",
            "site1",
            "--type",
            "set",
            "--command",
            "cat {a/x.txt} {b/x.txt}",
            "--node",
            &cluster.node(0).api_url(),
            "--token-file",
            &token_file,
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let (head, _, _, output) = reply_line(run.stdout.trim_end_matches('\n'));
    assert_eq!(head, "[1/1] OK");
    assert_eq!(output, "A\nB");

    let doc = cluster.doc(0, "pair").await.expect("stored");
    let operation = only_operation(&doc);
    assert_eq!(operation["Command"]["Command"], "cat {x.txt} {x.txt.1}");
    assert_eq!(file_names(operation), ["x.txt", "x.txt.1"]);
    assert_eq!(operation["Command"]["Files"]["x.txt"], "QQo=");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_directory_is_recreated_under_its_name() {
    let cluster = Cluster::start(1).await;
    let work = WorkDir::new(&[("mydir/top.txt", "top"), ("mydir/sub/f", "deep\n")]);
    let api = cluster.node(0).api_url();
    let run = cheops(
        work.path(),
        &[
            "exec",
            "--id",
            "tree",
            "--sites",
            "site1",
            "--type",
            "set",
            "--command",
            "ls {mydir}; cat {mydir}/sub/f",
        ],
        // The node given through the environment.
        &[("CHEOPS_NODE", &api), ("CHEOPS_TOKEN", cluster.token())],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let (head, _, _, output) = reply_line(run.stdout.trim_end_matches('\n'));
    assert_eq!(head, "[1/1] OK");
    assert_eq!(output, "sub\ntop.txt\ndeep");

    let doc = cluster.doc(0, "tree").await.expect("stored");
    let operation = only_operation(&doc);
    assert_eq!(
        operation["Command"]["Command"],
        "ls {mydir}; cat {mydir}/sub/f"
    );
    assert_eq!(file_names(operation), ["mydir/sub/f", "mydir/top.txt"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readmes_bare_form_is_exec() {
    let cluster = Cluster::start(1).await;
    let peers = json!({"site1": {"couchdb": "http://unused.invalid/cheops", "api": cluster.node(0).api_url()}});
    let work = WorkDir::new(&[
        (
            "config.json",
            r#"{"ResolutionMatrix": [{"Before": "create", "After": "create", "Result": "take-one"}]}"#,
        ),
        ("peers.json", &peers.to_string()),
    ]);
    let run = cheops(
        work.path(),
        &[
            "--id",
            "deployment-id",
            "--sites",
            "site1",
            "--command",
            "echo hi",
            "--config",
            "config.json",
            "--type",
            "create",
            "--json",
        ],
        &[
            ("CHEOPS_PEERS_FILE", "peers.json"),
            ("CHEOPS_TOKEN", cluster.token()),
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{run:?}");
    let reply: ReplyDocument = serde_json::from_str(lines[0]).expect("a raw reply line");
    assert_eq!(reply.status, Status::Ok);
    assert_eq!(reply.site, "site1");
    assert_eq!(reply.output, "hi\n");

    let doc = cluster.doc(0, "deployment-id").await.expect("stored");
    assert_eq!(doc["Config"]["ResolutionMatrix"][0]["Result"], "take-one");
    assert_eq!(only_operation(&doc)["Type"], "create");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_exit_status_is_1_for_a_ko_and_2_for_a_late_site() {
    let cluster = Cluster::start_with(ClusterOptions {
        nodes: 1,
        reply_timeout: 5,
        daemon_args: absent_peer("site2"),
        ..ClusterOptions::default()
    })
    .await;
    let work = WorkDir::new(&[]);
    let api = cluster.node(0).api_url();
    let token = cluster.token();
    let exec = |id: &'static str, sites: &'static str, command: &'static str| {
        let api = api.clone();
        let dir = work.path().to_path_buf();
        async move {
            cheops(
                &dir,
                &[
                    "exec",
                    "--id",
                    id,
                    "--sites",
                    sites,
                    "--type",
                    "set",
                    "--command",
                    command,
                    "--node",
                    &api,
                ],
                &[("CHEOPS_TOKEN", token)],
            )
            .await
        }
    };

    let run = exec("failing", "site1", "echo oops; false").await;
    assert_eq!(run.code, 1, "{run:?}");
    let (head, _, site, output) = reply_line(run.stdout.trim_end_matches('\n'));
    assert_eq!((head.as_str(), site.as_str()), ("[1/1] KO", "site1"));
    assert!(output.starts_with("oops"), "{run:?}");

    // site2 is a peer with no node: it never replies.
    let run = exec("late", "site1&site2", "true").await;
    assert_eq!(run.code, 2, "{run:?}");
    let lines: Vec<_> = run.stdout.lines().map(reply_line).collect();
    assert_eq!(lines.len(), 2, "{run:?}");
    assert_eq!(
        (lines[0].0.as_str(), lines[0].2.as_str()),
        ("[1/2] OK", "site1")
    );
    assert_eq!(
        (lines[1].0.as_str(), lines[1].2.as_str()),
        ("[2/2] TIMEOUT", "site2")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn show_prints_every_sites_status_and_output() {
    let cluster = Cluster::start(2).await;
    let token_file = cluster.token_file().display().to_string();
    let work = WorkDir::new(&[]);
    let peers: Vec<String> = (0..2)
        .map(|i| {
            let node = cluster.node(i);
            format!(
                "--peer={}={},{}",
                node.site,
                node.couch_url(),
                node.api_url()
            )
        })
        .collect();
    let with_peers = |args: &[&'static str]| -> Vec<String> {
        args.iter()
            .map(|a| a.to_string())
            .chain(peers.iter().cloned())
            .collect()
    };
    let run_with = |args: Vec<String>| {
        let dir = work.path().to_path_buf();
        let token_file = token_file.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cheops(&dir, &args, &[("CHEOPS_TOKEN_FILE", &token_file)]).await
        }
    };

    let run = run_with(with_peers(&[
        "exec",
        "--id",
        "shown",
        "--sites",
        "site1&site2",
        "--type",
        "set",
        "--command",
        "true",
    ]))
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<_> = run.stdout.lines().map(reply_line).collect();
    let mut heads: Vec<&str> = lines.iter().map(|l| l.0.as_str()).collect();
    heads.sort();
    assert_eq!(heads, ["[1/2] OK", "[2/2] OK"], "{run:?}");

    // Every daemon of the harness has its own NODE_DIR, in a directory named
    // after its site.
    // Without --sites, the resource's locations are asked, through site2.
    let run = run_with(with_peers(&[
        "show",
        "--id",
        "shown",
        "--from",
        "site2",
        "--command",
        "echo __ID__ at $(basename $(dirname $NODE_DIR))",
    ]))
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "site1  OK\n  shown at site1\nsite2  OK\n  shown at site2\n"
    );

    let run = run_with(with_peers(&[
        "show",
        "--id",
        "shown",
        "--sites",
        "site1",
        "--json",
        "--command",
        "false",
    ]))
    .await;
    assert_eq!(run.code, 1, "{run:?}");
    let answer: Value = serde_json::from_str(&run.stdout).expect("the raw object");
    assert_eq!(answer, json!({"site1": {"Status": "KO", "Output": ""}}));

    let run = run_with(with_peers(&[
        "show",
        "--id",
        "unknown",
        "--from",
        "site1",
        "--command",
        "true",
    ]))
    .await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("404"), "{run:?}");
    assert!(run.stderr.contains("\"unknown\" does not exist"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_exit_with_their_status_and_say_why() {
    let cluster = Cluster::start(1).await;
    let api = cluster.node(0).api_url();
    let work = WorkDir::new(&[(
        "bad.json",
        r#"{"ResolutionMatrix": [{"Before": "a", "After": "b", "Result": "take-two"}]}"#,
    )]);
    let nobody = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        format!(
            "http://127.0.0.1:{}",
            listener.local_addr().expect("an address").port()
        )
    };
    let exec_as = |token: &str, extra: &[&str], command: &str, sites: &str, node: &str| {
        let mut args: Vec<String> = [
            "exec",
            "--id",
            "err",
            "--sites",
            sites,
            "--type",
            "set",
            "--command",
            command,
            "--node",
            node,
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|a| a.to_string()));
        let dir = work.path().to_path_buf();
        let token = token.to_owned();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let env: Vec<(&str, &str)> = if token.is_empty() {
                Vec::new()
            } else {
                vec![("CHEOPS_TOKEN", &token)]
            };
            cheops(&dir, &args, &env).await
        }
    };
    let exec = |extra: &[&str], command: &str, sites: &str, node: &str| {
        exec_as(cluster.token(), extra, command, sites, node)
    };

    let run = exec(&[], "cat {nope.txt}", "site1", &api).await;
    assert_eq!(run.code, 64, "{run:?}");
    assert!(
        run.stderr.starts_with("cheops: file not found: nope.txt"),
        "{run:?}"
    );

    let run = exec(&["--config", "bad.json"], "true", "site1", &api).await;
    assert_eq!(run.code, 64, "{run:?}");
    assert!(
        run.stderr.contains("not a valid resource config"),
        "{run:?}"
    );
    assert!(run.stderr.contains("take-two"), "{run:?}");

    // A site name that is no host name never leaves the client.
    for sites in ["site1&127.0.0.1:45999/x#", "site1&admin@h", "site1&a b"] {
        let run = exec(&[], "true", sites, &api).await;
        assert_eq!(run.code, 64, "{run:?}");
        assert!(run.stderr.contains("--sites: site name"), "{run:?}");
        let bad = sites.trim_start_matches("site1&");
        let run = cheops(
            work.path(),
            &[
                "show",
                "--id",
                "err",
                "--command",
                "true",
                "--sites",
                sites,
                "--node",
                &api,
            ],
            &[],
        )
        .await;
        assert_eq!(run.code, 64, "{run:?}");
        assert!(run.stderr.contains(bad), "{run:?}");
    }

    let run = exec(&[], "true", "site1", &nobody).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stderr
            .starts_with(&format!("cheops: cannot reach {nobody}/exec/err: ")),
        "{run:?}"
    );

    // Without a token the node refuses, and the client says what to give.
    let run = exec_as("", &[], "true", "site1", &api).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("401 Unauthorized"), "{run:?}");
    assert!(
        run.stderr.contains("--token-file or CHEOPS_TOKEN"),
        "{run:?}"
    );
    // A token too short to be one: refused before anything is sent.
    let run = exec_as("short", &[], "true", "site1", &api).await;
    assert_eq!(run.code, 64, "{run:?}");
    assert!(
        run.stderr.contains("CHEOPS_TOKEN: the token is shorter"),
        "{run:?}"
    );

    // The node refuses: it is not one of the sites.
    let run = exec(&[], "true", "site2", &api).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("400 Bad Request"), "{run:?}");
    assert!(
        run.stderr
            .contains("this node (site1) is not one of the sites: site2"),
        "{run:?}"
    );

    let run = cheops(
        work.path(),
        &[
            "exec",
            "--id",
            "err",
            "--sites",
            "site1",
            "--command",
            "true",
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 64, "{run:?}");
    assert!(run.stderr.contains("--type"), "{run:?}");

    assert_eq!(run.stdout, "");
    assert!(cluster.doc(0, "err").await.is_none(), "nothing was stored");
}

/// `exec` during a partition: site2 is `TIMEOUT`, yet the line names the
/// request; once healed, `wait` returns 0 with site2's reply. A request no
/// site ran times out with 2, and `watch` prints the events it follows.
#[tokio::test(flavor = "multi_thread")]
async fn wait_follows_an_operation_past_the_execs_timeout() {
    let cluster = Cluster::start_with(ClusterOptions {
        nodes: 2,
        reply_timeout: 2,
        ..ClusterOptions::default()
    })
    .await;
    let work = WorkDir::new(&[]);
    let api = cluster.node(0).api_url();
    let env = [
        ("CHEOPS_NODE", api.as_str()),
        ("CHEOPS_TOKEN", cluster.token()),
    ];
    cluster.partition();
    let exec = cheops(
        work.path(),
        &[
            "exec",
            "--id",
            "waited",
            "--sites",
            "site1&site2",
            "--type",
            "set",
            "--command",
            "echo ran",
        ],
        &env,
    )
    .await;
    assert_eq!(exec.code, 2, "{exec:?}");
    let lines: Vec<_> = exec.stdout.lines().map(reply_line).collect();
    assert_eq!(lines.len(), 2, "{exec:?}");
    let request = lines[0].1.clone();
    assert!(lines.iter().all(|l| l.1 == request), "{exec:?}");
    assert!(lines
        .iter()
        .any(|l| l.0.ends_with("TIMEOUT") && l.2 == "site2"));

    cluster.heal();
    let wait = [
        "wait",
        "--id",
        "waited",
        "--request",
        &request,
        "--timeout",
        "60",
    ];
    let waited = cheops(work.path(), &wait, &env).await;
    assert_eq!(waited.code, 0, "{waited:?}");
    let lines: Vec<_> = waited.stdout.lines().map(reply_line).collect();
    let sites: Vec<&str> = lines.iter().map(|l| l.2.as_str()).collect();
    assert!(
        sites.contains(&"site1") && sites.contains(&"site2"),
        "{waited:?}"
    );
    assert!(
        lines.iter().all(|l| l.1 == request && l.3 == "ran"),
        "{waited:?}"
    );

    // A KO on some site: 1.
    let failed = cheops(
        work.path(),
        &[
            "exec",
            "--id",
            "waited",
            "--sites",
            "site1&site2",
            "--type",
            "set",
            "--command",
            "false",
        ],
        &env,
    )
    .await;
    let request = reply_line(failed.stdout.lines().next().expect("a reply")).1;
    let wait = [
        "wait",
        "--id",
        "waited",
        "--request",
        &request,
        "--timeout",
        "60",
    ];
    let waited = cheops(work.path(), &wait, &env).await;
    assert_eq!(waited.code, 1, "{waited:?}");

    let unknown = "0123456789abcdef0123456789abcdef";
    let never = [
        "wait",
        "--id",
        "waited",
        "--request",
        unknown,
        "--timeout",
        "1",
    ];
    let timed_out = cheops(work.path(), &never, &env).await;
    assert_eq!(timed_out.code, 2, "{timed_out:?}");
    assert!(timed_out.stderr.contains("timed out"), "{timed_out:?}");

    // `watch` runs until interrupted: a short-lived one, killed once it
    // printed the operation's completion.
    let mut watch = tokio::process::Command::new(cheops_binary())
        .args(["watch", "--id", "waited", "--json"])
        .env_remove("CHEOPS_PEERS_FILE")
        .env_remove("CHEOPS_API_TEMPLATE")
        .env_remove("CHEOPS_TOKEN_FILE")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("cannot run cheops watch");
    let stdout = watch.stdout.take().expect("its output");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut seen = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.expect("a line") {
            let event: Value = serde_json::from_str(&line).expect("JSON");
            seen.push(event["type"].as_str().unwrap_or_default().to_owned());
            if event["type"] == "operation-complete" {
                break;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), read)
        .await
        .expect("watch printed the completion");
    assert_eq!(
        seen,
        ["operation", "reply", "reply", "operation-complete"],
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_and_http_send_operations_of_their_kind() {
    let cluster = Cluster::start_with(ClusterOptions {
        nodes: 2,
        redis: true,
        ..ClusterOptions::default()
    })
    .await;
    let work = WorkDir::new(&[]);
    let api = cluster.node(0).api_url();
    let env = [
        ("CHEOPS_NODE", api.as_str()),
        ("CHEOPS_TOKEN", cluster.token()),
    ];
    let common = ["--sites", "site1&site2", "--type", "inc"];
    let mut args = vec!["redis", "--id", "count"];
    args.extend(common);
    args.extend(["INCRBY", "n", "5"]);
    let run = cheops(work.path(), &args, &env).await;
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<_> = run.stdout.lines().map(reply_line).collect();
    assert_eq!(lines.len(), 2, "{run:?}");
    assert!(
        lines
            .iter()
            .all(|l| l.0.ends_with("OK") && l.3 == "(integer) 5"),
        "{run:?}"
    );

    // show runs a Redis command on every site; history lists the operation.
    let show = ["show", "--id", "count", "--kind", "redis", "GET", "n"];
    let run = cheops(work.path(), &show, &env).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout.matches("  \"5\"").count(), 2, "{run:?}");
    let run = cheops(
        work.path(),
        &["history", "--id", "count", "--from", "site2"],
        &env,
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("INCRBY n 5"), "{run:?}");

    // From a directory holding the local cluster's files, nothing else is
    // needed: the client says it uses them, and history finds a site that
    // holds the resource (site2 alone, site1 being asked first).
    let peers = serde_json::json!({
        "site1": {"api": cluster.node(0).api_url()},
        "site2": {"api": cluster.node(1).api_url()},
    });
    let local = WorkDir::new(&[
        (".cheops-local/peers.json", &peers.to_string()),
        (".cheops-local/token", cluster.token()),
    ]);
    let only2 = [
        "exec",
        "--id",
        "only2",
        "--sites",
        "site2",
        "--type",
        "set",
        "--command",
        "echo two",
    ];
    let run = cheops(local.path(), &only2, &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stderr.matches("using the local cluster").count(),
        1,
        "{run:?}"
    );
    let run = cheops(local.path(), &["history", "--id", "only2"], &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("echo two") && run.stdout.contains("site2=OK"),
        "{run:?}"
    );
    let run = cheops(local.path(), &["history", "--id", "nowhere"], &[]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stderr.contains("no site asked holds nowhere"),
        "{run:?}"
    );

    // No site here serves HTTP: the node refuses, and nothing is stored.
    let mut args = vec!["http", "--id", "web"];
    args.extend(common);
    args.extend(["POST", "/api/items", "sku=A-42", "qty:=2"]);
    let run = cheops(work.path(), &args, &env).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("does not serve http"), "{run:?}");
    assert_eq!(cluster.doc(0, "web").await, None);

    // A bad item never leaves the client.
    let mut args = vec!["http", "--id", "web"];
    args.extend(common);
    args.extend(["POST", "/api/items", "plain"]);
    let run = cheops(work.path(), &args, &env).await;
    assert_eq!(run.code, 64, "{run:?}");
}

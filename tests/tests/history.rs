//! A resource's history read back through the API and the CLI against real
//! sidecars: history documents and replies carrying their operation (here
//! written by hand, straight into CouchDB, alone or both), with replies of
//! every site, and a block written as a Go node writes it (operations with
//! neither); then operations sent through `/exec` that leave the block.
//! The history lists every operation once, oldest first by the instant of
//! its `Time` (whatever offset and fraction its text has), each with every
//! site's replies, and only for the read or operator token.

use std::time::Duration;

use cheops_model::{
    HistoryDocument, HistoryEntry, Operation, ReplyDocument, ResourceDocument, Status, Timestamp,
};
use cheops_testkit::{authorized_client, cheops_binary, eventually, Cluster, Exec};
use serde_json::{json, Value};

const RESOURCE: &str = "ledger";
/// History documents of operations no longer in the block: more than two
/// pages of the view, so that pages and the merge with the block are tried.
const OLD: usize = 70;
const REPLIES: Duration = Duration::from_secs(60);

/// `2024-01-01T08:00:00Z` plus `minutes` and `quarter` quarter-seconds,
/// written in UTC or at one of two offsets: text that does not sort as time.
fn time(minutes: usize, quarters: usize, offset: usize) -> String {
    let fraction = match quarters % 4 {
        0 => "",
        1 => ".25",
        2 => ".5",
        _ => ".75",
    };
    let utc = 8 * 60 + minutes;
    let (local, zone) = match offset % 3 {
        0 => (utc, "Z".to_owned()),
        1 => (utc + 120, "+02:00".to_owned()),
        _ => (utc - 330, "-05:30".to_owned()),
    };
    format!(
        "2024-01-01T{:02}:{:02}:00{fraction}{zone}",
        local / 60,
        local % 60
    )
}

fn operation(request: &str, time: &str, command: &str) -> Operation {
    let mut operation = Operation {
        op_type: "add".into(),
        request_id: request.into(),
        time: time.parse().unwrap(),
        site: "site1".into(),
        ..Operation::default()
    };
    operation.command.command = command.into();
    operation
}

/// What site `site` replied to an old operation: KO on site2 for every
/// fifth, OK otherwise.
fn old_status(n: usize, site: &str) -> Status {
    if n % 5 == 0 && site == "site2" {
        Status::Ko
    } else {
        Status::Ok
    }
}

/// The resource, written into node 0's database: `OLD` old operations
/// (each with a history document, a reply carrying it, or both) with their
/// replies from every site, two more at one instant written two
/// ways, and a block of three operations of which only the first has a
/// history document. Its matrix lets a `set` replace what came before it:
/// the old operations left the block through resets, which no site ran
/// since. Returns the request ids in the order expected.
async fn write_ledger(cluster: &Cluster, http: &reqwest::Client) -> Vec<String> {
    let sites: Vec<String> = (0..cluster.len())
        .map(|i| cluster.node(i).site.clone())
        .collect();
    let mut history = Vec::new();
    for n in 0..OLD {
        history.push(operation(
            &format!("h{n:02}"),
            &time(n, n, n),
            &format!("echo {n}"),
        ));
    }
    // One instant, two texts: ordered by request id.
    history.push(operation("tie-b", "2024-01-01T08:20:00.1Z", "echo b"));
    history.push(operation("tie-a", "2024-01-01T10:20:00.1+02:00", "echo a"));

    let mut first = operation("b1", &time(10, 3, 1), "echo first");
    first
        .command
        .files
        .insert("first.txt".into(), b"in history".to_vec());
    // Accepted by a Go node: in the block alone.
    let mut second = operation("b2", &time(40, 2, 2), "cat {data.txt}");
    second
        .command
        .files
        .insert("data.txt".into(), b"hello".to_vec());
    let third = operation("b3", &time(90, 0, 0), "echo third");
    let block = vec![first.clone(), second, third];
    history.push(first);

    // An old operation's history is its history document (n % 3 = 0),
    // site1's reply carrying the operation (n % 3 = 1), or both (2).
    let documented = |n: usize| n >= OLD || n % 3 != 1;
    let carried = |n: usize| n < OLD && n % 3 != 0;
    let mut docs: Vec<Value> = history
        .iter()
        .enumerate()
        .filter(|(n, _)| documented(*n))
        .map(|(_, op)| serde_json::to_value(HistoryDocument::new(RESOURCE, &sites, op)).unwrap())
        .collect();
    for (n, op) in history
        .iter()
        .enumerate()
        .filter(|(_, op)| op.request_id != "b1")
    {
        for site in &sites {
            let reply = ReplyDocument {
                id: Some(format!("reply-{}-{site}", op.request_id)),
                locations: sites.clone(),
                site: site.clone(),
                request_id: op.request_id.clone(),
                resource_id: RESOURCE.into(),
                status: old_status(n, site),
                input: op.command.command.clone(),
                output: format!("{} on {site}\n", op.request_id),
                execution_time: op.time,
                operation: (carried(n) && site == "site1").then(|| op.clone()),
                ..ReplyDocument::default()
            };
            docs.push(serde_json::to_value(reply).unwrap());
        }
    }
    let resource = ResourceDocument {
        id: RESOURCE.into(),
        locations: sites.clone(),
        operations: block.clone(),
        config: serde_json::from_value(json!({"ResolutionMatrix": [
            {"Before": "set", "After": "set", "Result": "take-one"}
        ]}))
        .unwrap(),
        ..ResourceDocument::default()
    };
    docs.push(serde_json::to_value(resource).unwrap());
    let url = format!("{}/_bulk_docs", cluster.node(0).couch_url());
    let written: Value = http
        .post(url)
        .json(&json!({ "docs": docs }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for row in written.as_array().unwrap() {
        assert!(row.get("error").is_none(), "not written: {row}");
    }

    let mut all: Vec<(Timestamp, String)> = history
        .iter()
        .chain(&block)
        .map(|op| (op.time, op.request_id.clone()))
        .collect();
    all.sort();
    all.dedup();
    let texts: Vec<String> = history.iter().map(|op| op.time.to_string()).collect();
    let mut sorted_texts = texts.clone();
    sorted_texts.sort();
    assert_ne!(texts, sorted_texts, "the times' text must not sort as time");
    all.into_iter().map(|(_, id)| id).collect()
}

/// `GET /history/{id}` on node `i` with `token`: status and body.
async fn get(cluster: &Cluster, i: usize, path: &str, token: Option<&str>) -> (u16, String) {
    let client = match token {
        Some(token) => authorized_client(token),
        None => reqwest::Client::new(),
    };
    let response = client
        .get(format!("{}/{path}", cluster.node(i).api_url()))
        .send()
        .await
        .expect("the API did not answer");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

fn parse_lines(body: &str) -> Vec<HistoryEntry> {
    assert!(body.ends_with('\n'), "not JSON lines: {body:?}");
    body.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// The history once every site has replied to the block's operations.
async fn history_replied(cluster: &Cluster, i: usize) -> Vec<HistoryEntry> {
    let sites = cluster.len();
    eventually("every site's reply to the block", REPLIES, || async {
        let (status, body) = get(
            cluster,
            i,
            &format!("history/{RESOURCE}"),
            Some(cluster.read_token()),
        )
        .await;
        if status != 200 {
            return None;
        }
        let entries = parse_lines(&body);
        let replied = entries
            .iter()
            .filter(|e| e.in_block)
            .all(|e| e.replies.len() >= sites);
        (replied && entries.len() == OLD + 5).then_some(entries)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_history_lists_every_operation_once_oldest_first_with_every_reply() {
    let cluster = Cluster::start(3).await;
    let http = reqwest::Client::new();
    let expected = write_ledger(&cluster, &http).await;

    let entries = history_replied(&cluster, 0).await;
    let ids: Vec<&str> = entries.iter().map(|e| e.request_id.as_str()).collect();
    assert_eq!(ids, expected, "oldest first, each operation once");
    let position = |id: &str| ids.iter().position(|i| *i == id).unwrap();
    assert!(
        position("tie-a") + 1 == position("tie-b"),
        "a tie goes by request id"
    );
    assert!(position("h10") < position("b1") && position("b1") < position("h11"));
    assert!(position("h40") < position("b2") && position("b2") < position("h41"));
    assert_eq!(ids.last(), Some(&"b3"));

    for entry in &entries {
        let in_block = ["b1", "b2", "b3"].contains(&entry.request_id.as_str());
        assert_eq!(entry.in_block, in_block, "{}", entry.request_id);
        let mut sites: Vec<&str> = entry.replies.iter().map(|r| r.site.as_str()).collect();
        sites.dedup();
        sites.sort();
        assert_eq!(
            sites,
            ["site1", "site2", "site3"],
            "{}: every site's reply",
            entry.request_id
        );
        if let Some(n) = entry.request_id.strip_prefix('h') {
            let n: usize = n.parse().unwrap();
            for reply in &entry.replies {
                assert_eq!(
                    reply.status,
                    old_status(n, &reply.site),
                    "{}",
                    entry.request_id
                );
                assert_eq!(reply.output, format!("h{n:02} on {}\n", reply.site));
            }
            assert_eq!(entry.command, format!("echo {n}"));
        }
    }
    let second = &entries[position("b2")];
    assert_eq!(second.command, "cat {data.txt}");
    assert_eq!(second.files.len(), 1);
    assert_eq!(
        (second.files[0].name.as_str(), second.files[0].size),
        ("data.txt", 5)
    );
    assert_eq!(second.files[0].content, None, "contents only when asked");
    assert!(second
        .replies
        .iter()
        .all(|r| r.output == "hello" && r.status == Status::Ok));
    let first = &entries[position("b1")];
    assert_eq!(first.files[0].name, "first.txt");

    // Files' contents when asked; the operator token reads too.
    let (status, body) = get(
        &cluster,
        0,
        &format!("history/{RESOURCE}?files=true"),
        Some(cluster.token()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let with_files = parse_lines(&body);
    let second = with_files.iter().find(|e| e.request_id == "b2").unwrap();
    assert_eq!(second.files[0].content.as_deref(), Some("aGVsbG8="));

    // The history replicates with the resource: another site lists the same.
    eventually("site2's history to match", REPLIES, || async {
        let (status, body) = get(
            &cluster,
            1,
            &format!("history/{RESOURCE}"),
            Some(cluster.read_token()),
        )
        .await;
        let there: Vec<String> = if status == 200 {
            parse_lines(&body)
                .into_iter()
                .map(|e| e.request_id)
                .collect()
        } else {
            Vec::new()
        };
        (there == expected).then_some(())
    })
    .await;

    // Refusals, each a JSON error.
    let path = format!("history/{RESOURCE}");
    let (status, _) = get(&cluster, 0, &path, None).await;
    assert_eq!(status, 401, "no token");
    let (status, _) = get(&cluster, 0, &path, Some(cluster.node_token())).await;
    assert_eq!(status, 403, "the node token reads no history");
    let (status, body) = get(
        &cluster,
        0,
        "history/nothing-here",
        Some(cluster.read_token()),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("nothing-here"), "{body}");
    let (status, body) = get(&cluster, 0, "history/_bad", Some(cluster.read_token())).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = get(
        &cluster,
        0,
        &format!("{path}?files=maybe"),
        Some(cluster.read_token()),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].is_string());
}

/// Runs `cheops args…` with only `env` of the client's environment.
async fn cheops(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = tokio::process::Command::new(cheops_binary())
        .args(args)
        .env_remove("CHEOPS_NODE")
        .env_remove("CHEOPS_TOKEN")
        .env_remove("CHEOPS_TOKEN_FILE")
        .envs(env.iter().copied())
        .output()
        .await
        .expect("cannot run cheops");
    (
        output.status.code().expect("cheops was killed"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn cheops_history_prints_a_line_per_operation_or_json_lines() {
    let cluster = Cluster::start(3).await;
    let http = reqwest::Client::new();
    let expected = write_ledger(&cluster, &http).await;
    let entries = history_replied(&cluster, 0).await;
    let node = cluster.node(0).api_url();
    let read = [("CHEOPS_TOKEN", cluster.read_token())];

    let (code, stdout, stderr) =
        cheops(&["history", "--id", RESOURCE, "--node", &node], &read).await;
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{stdout}");
    for (line, id) in lines.iter().zip(&expected) {
        let fields: Vec<&str> = line.split("  ").collect();
        assert_eq!(fields[1], id, "{line}");
        assert!(fields[2] == "add", "{line}");
    }
    let old = lines.iter().find(|l| l.contains("  h05  ")).unwrap();
    assert_eq!(
        *old,
        format!(
            "{}  h05  add  echo 5  site1=OK site2=KO site3=OK",
            time(5, 5, 5).parse::<Timestamp>().unwrap()
        )
    );
    let second = lines.iter().find(|l| l.contains("  b2  ")).unwrap();
    assert!(
        second.ends_with("  site1=OK site2=OK site3=OK  (in block)"),
        "{second}"
    );

    let (code, stdout, stderr) = cheops(
        &[
            "history", "--id", RESOURCE, "--node", &node, "--json", "--files",
        ],
        &read,
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let json: Vec<HistoryEntry> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let ids: Vec<&str> = json.iter().map(|e| e.request_id.as_str()).collect();
    assert_eq!(ids, expected);
    assert_eq!(json.len(), entries.len());
    let second = json.iter().find(|e| e.request_id == "b2").unwrap();
    assert_eq!(second.files[0].content.as_deref(), Some("aGVsbG8="));

    let (code, _, stderr) = cheops(&["history", "--id", RESOURCE, "--node", &node], &[]).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("401") && stderr.contains("read or operator token"),
        "{stderr}"
    );
    let (code, _, stderr) =
        cheops(&["history", "--id", "nothing-here", "--node", &node], &read).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("404"), "{stderr}");
    let (code, _, stderr) = cheops(&["history", "--id", RESOURCE], &read).await;
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("--node or --from"), "{stderr}");
}

/// A `set` replaces the block.
const RESETS: &str = r#"{"ResolutionMatrix":[{"Before":"set","After":"set","Result":"take-one"}]}"#;

/// Sends `command` (of `op_type`, with [`RESETS`]) for resource `id` on
/// `sites` through node `i`, and returns once it is stored, without
/// waiting for its replies.
async fn submit(cluster: &Cluster, i: usize, id: &str, sites: &str, command: &str, op_type: &str) {
    let form = reqwest::multipart::Form::new()
        .text("sites", sites.to_owned())
        .text("command", command.to_owned())
        .text("type", op_type.to_owned())
        .text("config", RESETS);
    let response = authorized_client(cluster.token())
        .post(format!("{}/exec/{id}", cluster.node(i).api_url()))
        .multipart(form)
        .send()
        .await
        .expect("the API answers");
    assert_eq!(response.status(), 200, "{command}");
}

/// The commands of `e2e`'s block on node `i`.
async fn block(cluster: &Cluster, i: usize) -> Vec<String> {
    let doc = cluster.doc(i, "e2e").await;
    let doc: Option<ResourceDocument> = doc.and_then(|d| serde_json::from_value(d).ok());
    doc.map(|d| {
        d.operations
            .iter()
            .map(|op| op.command.command.clone())
            .collect()
    })
    .unwrap_or_default()
}

/// Operations sent through `/exec` stay in every site's history once they
/// leave the block: by the reply that carries each (A, which site1 ran),
/// or, for one that left before the site that accepted it ran it, by the
/// history document the site dropping it wrote. C is that one: site1
/// accepts it while its only runner is busy, stops, and starts again once
/// site2's `set` has replaced C; it never runs C.
#[tokio::test(flavor = "multi_thread")]
async fn operations_sent_through_exec_stay_in_the_history_once_dropped() {
    let mut cluster = Cluster::start_with(cheops_testkit::ClusterOptions {
        nodes: 2,
        daemon_args: vec!["--concurrency".into(), "1".into()],
        ..cheops_testkit::ClusterOptions::default()
    })
    .await;
    let (status, replies) = cluster
        .exec(
            0,
            Exec {
                config: Some(RESETS),
                ..Exec::new("e2e", "site1&site2", &["echo A"], "set")
            },
        )
        .await;
    assert_eq!(status, 200, "{replies:?}");

    // Site1's only runner waits on a file, on a resource of its own.
    let app = cluster.node(0).app_dir();
    let busy = "touch \"$NODE_DIR/started\"; while [ ! -f \"$NODE_DIR/go\" ]; do sleep 0.05; done";
    submit(&cluster, 0, "busy", "site1", busy, "add").await;
    eventually("site1's runner to be busy", REPLIES, || async {
        app.join("started").exists().then_some(())
    })
    .await;
    submit(&cluster, 0, "e2e", "site1&site2", "echo C", "set").await;
    cluster.stop_daemon(0);
    eventually("C on site2", REPLIES, || async {
        (block(&cluster, 1).await == ["echo C"]).then_some(())
    })
    .await;
    submit(&cluster, 1, "e2e", "site1&site2", "echo D", "set").await;
    eventually("D on site1", REPLIES, || async {
        (block(&cluster, 0).await == ["echo D"]).then_some(())
    })
    .await;
    std::fs::write(app.join("go"), "").expect("the go file");
    cluster.start_daemon(0).await;

    for i in 0..2 {
        let entries = eventually("the whole history", REPLIES, || async {
            let (status, body) = get(&cluster, i, "history/e2e", Some(cluster.read_token())).await;
            let entries = if status == 200 {
                parse_lines(&body)
            } else {
                Vec::new()
            };
            let commands: Vec<&str> = entries.iter().map(|e| e.command.as_str()).collect();
            let replied = entries.last().is_some_and(|d| d.replies.len() == 2);
            (commands == ["echo A", "echo C", "echo D"] && replied).then_some(entries)
        })
        .await;
        let c = &entries[1];
        assert!(!c.in_block, "{c:?}");
        assert!(
            c.replies.iter().all(|r| r.site != "site1"),
            "site1 never ran C: {c:?}"
        );
        let history = cluster
            .doc(i, &format!("history:e2e:{}", c.request_id))
            .await;
        let history = history.expect("C's history document");
        assert_eq!(history["Site"], "site1", "{history}");
        assert!(history.get("Origin").is_none(), "{history}");
    }
}

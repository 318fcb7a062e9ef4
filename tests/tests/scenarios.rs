//! The original's scenario suite (tests/g5k on Grid5000), on local clusters:
//! one resource updated from several sites, with and without a partition
//! between the sites, with and without a failing operation. Each scenario
//! waits for convergence, then checks that every site holds the same
//! document (operations and revision), no conflicts, the same replies with
//! one from every site to every operation, and the same application state,
//! which is what replaying the final block computes.

use std::collections::BTreeMap;
use std::path::Path;

use cheops_model::Timestamp;
use cheops_testkit::{Cluster, ClusterOptions, Exec};
use serde_json::Value;

const SITES: &str = "site1&site2&site3";
const ALL: [usize; 3] = [0, 1, 2];

/// The original scenarios' matrix: a later set wins over what came before
/// it; an add builds on the set before it; two adds are not in the matrix,
/// so any order.
const MATRIX: &str = r#"{"ResolutionMatrix": [
    {"Before": "set", "After": "set", "Result": "take-one"},
    {"Before": "set", "After": "add", "Result": "take-both-keep-order"},
    {"Before": "add", "After": "set", "Result": "take-both-reverse-order"}
]}"#;

/// Execs time out fast: during a partition the other sites cannot answer.
async fn cluster(nodes: usize, redis: bool) -> Cluster {
    Cluster::start_with(ClusterOptions {
        nodes,
        reply_timeout: 3,
        redis,
        ..ClusterOptions::default()
    })
    .await
}

/// Sends one operation through node `i`; the operation must be accepted.
/// The type `init` is a `set` that also gives the resource its matrix.
async fn exec(cluster: &Cluster, i: usize, id: &str, command: &str, op_type: &str) {
    let commands = [command];
    let request = Exec {
        config: (op_type == "init").then_some(MATRIX),
        op_type: Some(if op_type == "init" { "set" } else { op_type }),
        ..Exec::new(id, SITES, &commands, op_type)
    };
    let (status, answer) = cluster.exec(i, request).await;
    assert_eq!(status, 200, "{command} through site{}: {answer:?}", i + 1);
}

/// Waits for `id` to converge on `on` and returns its document, after
/// checking that every site holds the same replies. Each pruned operation
/// of its block is whole again, as its history document holds it: what the
/// sites ran (CONSISTENCY.md, "Pruning").
async fn converged(cluster: &Cluster, id: &str, on: &[usize]) -> Value {
    let doc = cluster.converged(id, on).await;
    let snapshots = cluster.snapshots(on).await.expect("a database went away");
    let doc = snapshots[0].whole(id, doc);
    let replies: Vec<Vec<&Value>> = snapshots
        .iter()
        .map(|s| s.replies(id).into_values().collect())
        .collect();
    for (snapshot, held) in snapshots.iter().zip(&replies) {
        assert_eq!(held, &replies[0], "{} holds other replies", snapshot.site);
    }
    doc
}

/// (site, status) of each site's latest reply to operation `index` of
/// `doc`'s block, as node `i` holds them (a site that ran its block again
/// replied again).
async fn statuses(cluster: &Cluster, i: usize, doc: &Value, index: usize) -> Vec<(String, String)> {
    let request = &doc["Operations"][index]["RequestId"];
    let snapshots = cluster.snapshots(&[i]).await.expect("a database went away");
    let id = doc["_id"].as_str().unwrap_or_default();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut latest: BTreeMap<String, (Timestamp, String)> = BTreeMap::new();
    for reply in snapshots[0].replies(id).into_values() {
        if reply["RequestId"] != *request {
            continue;
        }
        let time: Timestamp = text(&reply["ExecutionTime"]).parse().expect("a time");
        let entry = latest
            .entry(text(&reply["Site"]))
            .or_insert((time, String::new()));
        if time >= entry.0 {
            *entry = (time, text(&reply["Status"]));
        }
    }
    latest
        .into_iter()
        .map(|(site, (_, status))| (site, status))
        .collect()
}

/// The operations of a converged block: (type, command), in order.
fn block(doc: &Value) -> Vec<(String, String)> {
    doc["Operations"]
        .as_array()
        .expect("a resource has operations")
        .iter()
        .map(|op| {
            (
                op["Type"].as_str().unwrap_or_default().to_owned(),
                op["Command"]["Command"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The same value on every node, returned.
fn same_everywhere(values: Vec<String>, what: &str) -> String {
    for (i, value) in values.iter().enumerate() {
        assert_eq!(value, &values[0], "{what} on site{} differs", i + 1);
    }
    values[0].clone()
}

mod filesystem {
    use super::*;

    fn file_command(word: &str, append: bool) -> String {
        let redirect = if append { ">>" } else { ">" };
        format!("echo {word} {redirect} \"$NODE_DIR/f\"")
    }

    /// What the file holds after the block, replayed: `>` sets, `>>` adds;
    /// an operation whose path is not `$NODE_DIR/f` fails and changes nothing.
    fn replay(block: &[(String, String)]) -> String {
        let mut content = String::new();
        for (_, command) in block {
            let word = command.split_whitespace().nth(1).unwrap_or_default();
            if !command.ends_with("\"$NODE_DIR/f\"") {
                continue;
            }
            if !command.contains(">>") {
                content.clear();
            }
            content.push_str(word);
            content.push('\n');
        }
        content
    }

    fn files(cluster: &Cluster) -> String {
        let contents = ALL
            .iter()
            .map(|&i| read(&cluster.node(i).app_dir().join("f")))
            .collect();
        same_everywhere(contents, "the file")
    }

    /// The original's test_parallel: set, then add, set and add from three sites.
    async fn scenario(partition: bool, failing_third: bool) -> (Cluster, Value) {
        let cluster = cluster(3, false).await;
        exec(&cluster, 0, "f", &file_command("init", false), "init").await;
        converged(&cluster, "f", &ALL).await;

        if partition {
            cluster.partition();
        }
        let third = if failing_third {
            // Writes below a path that is a file: fails on every site.
            "echo right >> \"$NODE_DIR/f/sub-file\"".to_owned()
        } else {
            file_command("right", true)
        };
        // Without a partition the operations are sequential: each is sent
        // once every site holds the one before (an /exec answer may come
        // back earlier, when a loaded machine misses its 3 s timeout).
        exec(&cluster, 0, "f", &file_command("left", true), "add").await;
        if !partition {
            converged(&cluster, "f", &ALL).await;
        }
        exec(&cluster, 1, "f", &file_command("middle", false), "set").await;
        if !partition {
            converged(&cluster, "f", &ALL).await;
        }
        exec(&cluster, 2, "f", &third, "add").await;
        cluster.heal();

        let doc = converged(&cluster, "f", &ALL).await;
        assert_eq!(files(&cluster), replay(&block(&doc)), "{:?}", block(&doc));
        (cluster, doc)
    }

    #[tokio::test]
    async fn without_partition() {
        let (_cluster, doc) = scenario(false, false).await;
        // Each exec followed the previous one everywhere: no concurrency. The set restarted
        // the block (add then set is take-both-reverse-order).
        let commands: Vec<String> = block(&doc).into_iter().map(|(_, c)| c).collect();
        assert_eq!(
            commands,
            [file_command("middle", false), file_command("right", true)]
        );
    }

    #[tokio::test]
    async fn during_a_partition() {
        let (_cluster, doc) = scenario(true, false).await;
        // Which set survives depends on the revision CouchDB elects; both
        // adds build on a set and survive either way.
        let commands: Vec<String> = block(&doc).into_iter().map(|(_, c)| c).collect();
        for add in [file_command("left", true), file_command("right", true)] {
            assert!(commands.contains(&add), "{commands:?}");
        }
    }

    #[tokio::test]
    async fn during_a_partition_with_a_failure() {
        let (cluster, doc) = scenario(true, true).await;
        let failing = block(&doc)
            .iter()
            .position(|(_, command)| command.contains("sub-file"))
            .expect("the failing operation is in the block");
        let ko = |site: &str| (site.to_owned(), "KO".to_owned());
        for i in ALL {
            assert_eq!(
                statuses(&cluster, i, &doc, failing).await,
                [ko("site1"), ko("site2"), ko("site3")]
            );
        }
    }
}

mod redis {
    use super::*;

    fn redis(args: &str) -> String {
        format!("redis-cli -p \"$REDIS_PORT\" {args}")
    }

    /// The value after the block, replayed: `set K V`, `incrby K D`; any
    /// other command fails on a string and changes nothing.
    fn replay(block: &[(String, String)]) -> i64 {
        let mut value = 0;
        for (_, command) in block {
            let words: Vec<&str> = command.split_whitespace().collect();
            let number = words.last().and_then(|w| w.parse::<i64>().ok());
            match (words.get(3).copied(), number) {
                (Some("set"), Some(n)) => value = n,
                (Some("incrby"), Some(n)) => value += n,
                _ => {}
            }
        }
        value
    }

    pub(super) fn get(cluster: &Cluster, i: usize) -> String {
        let port = cluster.node(i).redis_port.expect("redis runs");
        let output = std::process::Command::new("redis-cli")
            .args(["-p", &port.to_string(), "get", "r"])
            .output()
            .expect("cannot run redis-cli");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// The original's test_redis: set 23; during a partition, set 29 on
    /// site1, increments on site2 and site3 (the last one may fail).
    async fn scenario(third: &str) -> (Cluster, Value) {
        let cluster = cluster(3, true).await;
        exec(&cluster, 0, "r", &redis("set r 23"), "init").await;
        converged(&cluster, "r", &ALL).await;
        assert_eq!(get(&cluster, 2), "23");

        cluster.partition();
        exec(&cluster, 0, "r", &redis("set r 29"), "set").await;
        exec(&cluster, 1, "r", &redis("incrby r 13"), "add").await;
        exec(&cluster, 2, "r", &redis(third), "add").await;
        cluster.heal();

        let doc = converged(&cluster, "r", &ALL).await;
        let values = ALL.iter().map(|&i| get(&cluster, i)).collect();
        let value = same_everywhere(values, "GET r");
        assert_eq!(value, replay(&block(&doc)).to_string(), "{:?}", block(&doc));
        (cluster, doc)
    }

    #[tokio::test]
    async fn during_a_partition() {
        scenario("incrby r -12").await;
    }

    #[tokio::test]
    async fn during_a_partition_with_a_failure() {
        // Whether sadd ran before or after set 29 (the merge decides), its
        // reply says the same on every site.
        let (cluster, doc) = scenario("sadd r error").await;
        let sadd = block(&doc)
            .iter()
            .position(|(_, command)| command.contains("sadd"))
            .expect("increments are all kept");
        for i in ALL {
            let statuses = statuses(&cluster, i, &doc, sadd).await;
            let sites: Vec<&str> = statuses.iter().map(|(site, _)| site.as_str()).collect();
            assert_eq!(sites, ["site1", "site2", "site3"]);
            assert!(
                statuses.iter().all(|(_, s)| *s == statuses[0].1),
                "{statuses:?}"
            );
        }
    }
}

/// The Redis scenario again, through each site's Redis backend: the
/// operations are Redis commands, no shell and no `redis-cli` on the nodes.
mod redis_backend {
    use super::*;

    /// Sends the Redis command `args` through node `i`.
    async fn send(cluster: &Cluster, i: usize, args: &[&str], op_type: &str) {
        let (name, rest) = args.split_first().expect("a command");
        let mut fields = vec![("kind", "redis")];
        fields.extend(rest.iter().map(|arg| ("arg", *arg)));
        let commands = [*name];
        let request = Exec {
            config: (op_type == "init").then_some(MATRIX),
            op_type: Some(if op_type == "init" { "set" } else { op_type }),
            fields: &fields,
            ..Exec::new("r", SITES, &commands, op_type)
        };
        let (status, answer) = cluster.exec(i, request).await;
        assert_eq!(status, 200, "{args:?} through site{}: {answer:?}", i + 1);
    }

    /// The value after the block, replayed from its Redis commands.
    fn replay(doc: &Value) -> i64 {
        let mut value = 0;
        for op in doc["Operations"].as_array().expect("operations") {
            let args: Vec<&str> = op["Command"]["Redis"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let number = args.get(2).and_then(|n| n.parse::<i64>().ok());
            match (args.first().copied(), number) {
                (Some("SET"), Some(n)) => value = n,
                (Some("INCRBY"), Some(n)) => value += n,
                _ => {}
            }
        }
        value
    }

    #[tokio::test]
    async fn during_a_partition() {
        let cluster = cluster(3, true).await;
        send(&cluster, 0, &["SET", "r", "23"], "init").await;
        converged(&cluster, "r", &ALL).await;
        assert_eq!(super::redis::get(&cluster, 2), "23");

        cluster.partition();
        send(&cluster, 0, &["SET", "r", "29"], "set").await;
        send(&cluster, 1, &["INCRBY", "r", "13"], "add").await;
        send(&cluster, 2, &["INCRBY", "r", "-12"], "add").await;
        cluster.heal();

        let doc = converged(&cluster, "r", &ALL).await;
        let values = ALL
            .iter()
            .map(|&i| super::redis::get(&cluster, i))
            .collect();
        let value = same_everywhere(values, "GET r");
        assert_eq!(value, replay(&doc).to_string(), "{doc}");
        // A show reads each site's Redis the same way.
        let fields = [("kind", "redis"), ("command", "GET"), ("arg", "__ID__")];
        let (status, shown) = cluster.show_with(2, "r", &fields).await;
        assert_eq!(status, 200, "{shown}");
        for site in ["site1", "site2", "site3"] {
            assert_eq!(shown[site]["Status"], "OK", "{shown}");
            assert_eq!(shown[site]["Output"], format!("\"{value}\"\n"), "{shown}");
        }

        // The next operation prunes those every site ran: their commands
        // live on in history documents, and every site still agrees.
        send(&cluster, 1, &["INCRBY", "r", "1"], "add").await;
        let doc = converged(&cluster, "r", &ALL).await;
        let stored = cluster.doc(1, "r").await.expect("the resource");
        let pruned = stored["Operations"]
            .as_array()
            .map(|ops| ops.iter().filter(|op| op["Pruned"] == true).count())
            .unwrap_or_default();
        assert!(pruned > 0, "nothing pruned: {stored}");
        let values = ALL
            .iter()
            .map(|&i| super::redis::get(&cluster, i))
            .collect();
        let value = same_everywhere(values, "GET r");
        assert_eq!(value, replay(&doc).to_string(), "{doc}");
        for i in ALL {
            for (site, status) in statuses(&cluster, i, &doc, 1).await {
                assert_eq!(status, "OK", "{site}");
            }
        }
    }
}

/// The counter again, as HTTP operations against a small application on
/// each site (its `--http-backend`): set and add during a partition.
mod http_backend {
    use super::*;

    async fn send(cluster: &Cluster, i: usize, request: &str, op_type: &str) {
        let commands = [request];
        let fields = [("kind", "http")];
        let request = Exec {
            config: (op_type == "init").then_some(MATRIX),
            op_type: Some(if op_type == "init" { "set" } else { op_type }),
            fields: &fields,
            ..Exec::new("c", SITES, &commands, op_type)
        };
        let (status, answer) = cluster.exec(i, request).await;
        assert_eq!(status, 200, "through site{}: {answer:?}", i + 1);
    }

    /// The value after the block, replayed from its requests.
    fn replay(doc: &Value) -> i64 {
        let mut value = 0;
        for op in doc["Operations"].as_array().expect("operations") {
            let http = &op["Command"]["Http"];
            let path = http["Path"].as_str().unwrap_or_default();
            let number = path.rsplit('=').next().and_then(|n| n.parse::<i64>().ok());
            match (http["Method"].as_str(), number) {
                (Some("PUT"), Some(n)) => value = n,
                (Some("POST"), Some(n)) => value += n,
                _ => {}
            }
        }
        value
    }

    #[tokio::test]
    async fn during_a_partition() {
        let cluster = Cluster::start_with(ClusterOptions {
            nodes: 3,
            reply_timeout: 3,
            http_app: true,
            ..ClusterOptions::default()
        })
        .await;
        let value = |i: usize| cluster.app(i).expect("an application").value();
        send(&cluster, 0, "PUT /counter?value=23", "init").await;
        converged(&cluster, "c", &ALL).await;
        assert_eq!(value(2), 23);

        cluster.partition();
        send(&cluster, 0, "PUT /counter?value=29", "set").await;
        send(&cluster, 1, "POST /counter?by=13", "add").await;
        send(&cluster, 2, "POST /counter?by=-12", "add").await;
        cluster.heal();

        let doc = converged(&cluster, "c", &ALL).await;
        let values: Vec<String> = ALL.iter().map(|&i| value(i).to_string()).collect();
        let value = same_everywhere(values, "the counter");
        assert_eq!(value, replay(&doc).to_string(), "{doc}");

        // A show reads each site's application the same way.
        let fields = [("kind", "http"), ("command", "GET /counter")];
        let (status, shown) = cluster.show_with(1, "c", &fields).await;
        assert_eq!(status, 200, "{shown}");
        for site in ["site1", "site2", "site3"] {
            assert_eq!(shown[site]["Status"], "OK", "{shown}");
            let output = shown[site]["Output"].as_str().unwrap_or_default();
            assert!(output.starts_with("HTTP/1.1 200"), "{shown}");
            assert!(output.trim_end().ends_with(&value), "{shown}");
        }
    }
}

/// The original's test_different_sites: two resources on overlapping sets of
/// sites; every site holds exactly the resources it belongs to.
#[tokio::test]
async fn different_sites() {
    let cluster = cluster(4, false).await;
    let first = "mkdir -p \"$NODE_DIR/foo\"; echo left > \"$NODE_DIR/foo/left\"";
    let second = "mkdir -p \"$NODE_DIR/foo\"; echo right > \"$NODE_DIR/foo/right\"";
    let (status, _) = cluster
        .exec(0, Exec::new("left", SITES, &[first], "mkdir"))
        .await;
    assert_eq!(status, 200);
    let (status, _) = cluster
        .exec(
            1,
            Exec::new("right", "site2&site3&site4", &[second], "mkdir"),
        )
        .await;
    assert_eq!(status, 200);
    converged(&cluster, "left", &[0, 1, 2]).await;
    converged(&cluster, "right", &[1, 2, 3]).await;

    let snapshots = cluster.snapshots(&[0, 1, 2, 3]).await.expect("readable");
    let expected: [&[&str]; 4] = [
        &["left"],
        &["left", "right"],
        &["left", "right"],
        &["right"],
    ];
    for (i, snapshot) in snapshots.iter().enumerate() {
        let resources: Vec<&str> = snapshot.resources().collect();
        assert_eq!(resources, expected[i], "resources of {}", snapshot.site);
        for absent in ["left", "right"]
            .iter()
            .filter(|r| !expected[i].contains(r))
        {
            assert!(
                snapshot.replies(absent).is_empty(),
                "{} holds replies of {absent}",
                snapshot.site
            );
        }
        let mut files: Vec<String> = std::fs::read_dir(cluster.node(i).app_dir().join("foo"))
            .expect("foo exists")
            .map(|e| {
                e.expect("readable")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        files.sort();
        assert_eq!(files, expected[i], "files of {}", snapshot.site);
    }
}

/// The original's simple_app: a counter that is set or added to, updated
/// concurrently from every site during a partition. Every site ends with the
/// value the merged block computes.
#[tokio::test]
async fn counter_during_a_partition() {
    let cluster = cluster(3, false).await;
    let counter = "\"$NODE_DIR/counter\"";
    exec(&cluster, 0, "c", &format!("echo 100 > {counter}"), "init").await;
    converged(&cluster, "c", &ALL).await;

    cluster.partition();
    let updates = (0..12).map(|n: i64| {
        let site = (n % 3) as usize;
        let (command, op_type) = if n % 4 == 3 {
            (format!("echo {} > {counter}", 1000 * n), "set")
        } else {
            (
                format!("echo $(( $(cat {counter}) + {} )) > {counter}", n + 1),
                "add",
            )
        };
        let cluster = &cluster;
        async move { exec(cluster, site, "c", &command, op_type).await }
    });
    futures::future::join_all(updates).await;
    cluster.heal();

    let doc = converged(&cluster, "c", &ALL).await;
    let mut expected = 0i64;
    for (op_type, command) in block(&doc) {
        let number = |prefix: &str| -> i64 {
            let rest = &command[command.find(prefix).expect("a number") + prefix.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().expect("a number")
        };
        match op_type.as_str() {
            "add" => expected += number(") + "),
            _ => expected = number("echo "),
        }
    }
    let values = ALL
        .iter()
        .map(|&i| read(&cluster.node(i).app_dir().join("counter")))
        .collect();
    assert_eq!(
        same_everywhere(values, "the counter").trim(),
        expected.to_string(),
        "{:?}",
        block(&doc)
    );
}

/// Every site creates the same resource with an `add` during a
/// partition (no matrix: every pair commutes). The merge puts one site's
/// operation first; the others run it after their own, which must not make
/// them run their own again. Each site ends with each line once, and one
/// reply of its own per operation.
#[tokio::test]
async fn concurrent_creations_run_each_operation_once() {
    let cluster = cluster(3, false).await;
    cluster.partition();
    let creations = ALL.map(|i| {
        let command = format!("echo from-site{} >> \"$NODE_DIR/bag\"", i + 1);
        let cluster = &cluster;
        async move {
            let commands = [command.as_str()];
            let (status, answer) = cluster
                .exec(i, Exec::new("bag", SITES, &commands, "add"))
                .await;
            assert_eq!(status, 200, "through site{}: {answer:?}", i + 1);
        }
    });
    futures::future::join_all(creations).await;
    cluster.heal();

    let doc = converged(&cluster, "bag", &ALL).await;
    assert_eq!(block(&doc).len(), 3, "{:?}", block(&doc));
    let snapshots = cluster.snapshots(&ALL).await.expect("a database went away");
    for (i, snapshot) in snapshots.iter().enumerate() {
        let mut lines: Vec<String> = read(&cluster.node(i).app_dir().join("bag"))
            .lines()
            .map(str::to_owned)
            .collect();
        lines.sort();
        assert_eq!(
            lines,
            ["from-site1", "from-site2", "from-site3"],
            "the bag of {}",
            snapshot.site
        );
        let mut own: Vec<&str> = snapshot
            .replies("bag")
            .into_values()
            .filter(|reply| reply["Site"] == snapshot.site.as_str())
            .filter_map(|reply| reply["RequestId"].as_str())
            .collect();
        own.sort_unstable();
        let before = own.len();
        own.dedup();
        assert_eq!(
            before,
            own.len(),
            "{} replied twice to an operation",
            snapshot.site
        );
    }
}

//! A node short of file descriptors (its limit set low with `prlimit`):
//! connections held open to it cannot take the descriptors its commands
//! need, so operations that arrive meanwhile run, each once, and none is
//! answered as run when it could not start.

use std::os::unix::fs::PermissionsExt;

use cheops_model::Status;
use cheops_testkit::{cheops_binary, Cluster, ClusterOptions, Exec};
use tokio::net::TcpStream;

/// The daemon's open files limit, soft and hard: it cannot raise it.
const LIMIT: usize = 160;
/// Connections held open to its Chephren listener: with its baseline,
/// more than the limit; fewer than the listener's cap and its listen
/// backlog (128) together, so that each connects at once.
const HELD: usize = 150;
const OPERATIONS: usize = 10;

#[tokio::test(flavor = "multi_thread")]
async fn held_connections_leave_descriptors_for_commands_and_each_operation_runs_once() {
    let dir = std::env::temp_dir().join(format!("cheops-descriptors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let wrapper = dir.join("cheops-limited");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec prlimit --nofile={LIMIT}:{LIMIT} -- {} \"$@\"\n",
            cheops_binary().display()
        ),
    )
    .expect("a script");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("executable");
    let cluster = Cluster::start_with(ClusterOptions {
        nodes: 1,
        binary: Some(wrapper),
        ..ClusterOptions::default()
    })
    .await;

    let chephren = format!("127.0.0.1:{}", cluster.node(0).chephren_port);
    let mut held = Vec::with_capacity(HELD);
    for _ in 0..HELD {
        // Past the listener's cap they wait in the listen backlog, which
        // holds no descriptor of the daemon's.
        if let Ok(stream) = TcpStream::connect(&chephren).await {
            held.push(stream);
        }
    }
    for n in 0..OPERATIONS {
        let command = format!("echo {n} >> \"$NODE_DIR/log\"; echo ran {n}");
        let (status, replies) = cluster
            .exec(0, Exec::new("r", "site1", &[command.as_str()], "add"))
            .await;
        assert_eq!(status, 200, "operation {n}: {replies:?}");
        let replies = replies.expect("reply lines");
        assert_eq!(replies.len(), 1, "{replies:?}");
        assert_eq!(
            replies[0].status,
            Status::Ok,
            "operation {n}: {:?}",
            replies[0]
        );
    }
    drop(held);

    let log = std::fs::read_to_string(cluster.node(0).app_dir().join("log")).unwrap_or_default();
    let ran: Vec<usize> = log.lines().map(|l| l.parse().expect("a number")).collect();
    assert_eq!(
        ran,
        (0..OPERATIONS).collect::<Vec<_>>(),
        "each once, in order"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

//! Reads that do not grow with the database: Chephren's pages leave the
//! history documents (every payload ever sent) in the sidecar.

use cheops_testkit::{Cluster, ClusterOptions, Exec};

const OPERATIONS: usize = 6;
const FILE: usize = 200_000;

#[tokio::test(flavor = "multi_thread")]
async fn chephren_reads_no_history_document() {
    let cluster = Cluster::start_with(ClusterOptions {
        nodes: 1,
        count_traffic: true,
        ..ClusterOptions::default()
    })
    .await;
    let file = vec![b'x'; FILE];
    for n in 0..OPERATIONS {
        let name = format!("f{n}");
        let files: [(&str, &[u8]); 1] = [(&name, &file)];
        let exec = Exec {
            files: &files,
            ..Exec::new("r", "site1", &["true"], "add")
        };
        let (status, body) = cluster.exec(0, exec).await;
        assert_eq!(status, 200, "{body:?}");
    }
    // Each exec pruned the payloads before it: they live in history
    // documents alone, all but the last operation's.
    let history_bytes = (OPERATIONS * FILE * 4 / 3) as u64;
    let client = reqwest::Client::new();
    for page in ["resources", "blocks", "cluster", "resource/r", "block/r"] {
        let before = cluster.sidecar_bytes(0).expect("counted").1;
        let response = client
            .get(format!("{}/api/{page}", cluster.node(0).chephren_url()))
            .bearer_auth(cluster.read_token())
            .send()
            .await
            .expect("Chephren answers");
        assert_eq!(response.status(), 200, "{page}");
        let read = cluster.sidecar_bytes(0).expect("counted").1 - before;
        assert!(
            read < history_bytes / 2,
            "/api/{page} read {read} bytes from the sidecar; the history documents hold {history_bytes}"
        );
    }
}

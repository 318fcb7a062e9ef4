//! Reads that do not grow with the database: each Chephren page reads what
//! it shows, never the history documents (every payload ever sent) nor the
//! outputs of replies it does not show.

use cheops_testkit::{Cluster, ClusterOptions, Exec};
use serde_json::Value;

const OPERATIONS: usize = 6;
const FILE: usize = 200_000;
const OUTPUT: usize = 300_000;

#[tokio::test(flavor = "multi_thread")]
async fn each_chephren_page_reads_what_it_shows() {
    let cluster = Cluster::start_with(ClusterOptions {
        nodes: 1,
        count_traffic: true,
        ..ClusterOptions::default()
    })
    .await;
    let file = vec![b'x'; FILE];
    let noisy = format!("head -c {OUTPUT} /dev/zero | tr '\\0' x");
    for n in 0..OPERATIONS {
        let name = format!("f{n}");
        let files: [(&str, &[u8]); 1] = [(&name, &file)];
        let exec = Exec {
            files: &files,
            ..Exec::new("r", "site1", &["true"], "add")
        };
        let (status, body) = cluster.exec(0, exec).await;
        assert_eq!(status, 200, "{body:?}");
        let (status, body) = cluster
            .exec(0, Exec::new("noisy", "site1", &[&noisy], "add"))
            .await;
        assert_eq!(status, 200, "{body:?}");
    }
    // Each exec pruned the payloads before it: they live in history
    // documents alone, all but the last operation's. The outputs of
    // `noisy` live in its replies alone.
    let history_bytes = OPERATIONS * FILE * 4 / 3;
    let output_bytes = OPERATIONS * OUTPUT;
    let bound = (history_bytes.min(output_bytes) / 2) as u64;
    let client = reqwest::Client::new();
    let mut pages = std::collections::BTreeMap::new();
    for page in [
        "node",
        "resources",
        "blocks",
        "cluster",
        "resource/r",
        "block/r",
        "block/noisy",
    ] {
        let before = cluster.sidecar_bytes(0).expect("counted").1;
        let response = client
            .get(format!("{}/api/{page}", cluster.node(0).chephren_url()))
            .bearer_auth(cluster.read_token())
            .send()
            .await
            .expect("Chephren answers");
        assert_eq!(response.status(), 200, "{page}");
        let read = cluster.sidecar_bytes(0).expect("counted").1 - before;
        if page != "block/noisy" {
            assert!(
                read < bound,
                "/api/{page} read {read} bytes from the sidecar; the history documents hold \
                 {history_bytes}, the outputs of another resource {output_bytes}"
            );
        }
        pages.insert(page, response.json::<Value>().await.expect("JSON"));
    }
    // What they read is what they show.
    assert_eq!(pages["node"]["resourcesCount"], 2);
    for summary in pages["resources"].as_array().expect("a list") {
        assert_eq!(summary["commandsCount"], OPERATIONS, "{summary}");
        let last = summary["lastUpdate"].as_str().unwrap_or_default();
        assert!(last.starts_with("20"), "a time of this century: {summary}");
    }
    for summary in pages["blocks"].as_array().expect("a list") {
        assert_eq!(summary["ok"], OPERATIONS, "{summary}");
        assert_eq!(summary["converged"], true, "{summary}");
    }
    let commands = pages["resource/r"]["commands"].as_array().expect("a list");
    assert_eq!(commands.len(), OPERATIONS);
    assert!(
        commands.iter().all(|c| c["command"] == "true"),
        "{commands:?}"
    );
    let cells = &pages["block/noisy"]["operations"][0]["replies"][0];
    assert_eq!(cells["status"], "OK");
    assert_eq!(
        cells["output"].as_str().map(str::len),
        Some(OUTPUT),
        "a block's page shows its outputs whole"
    );
    assert_eq!(pages["cluster"]["unconverged"], 0);
}

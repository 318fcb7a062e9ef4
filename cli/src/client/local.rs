//! The local cluster of the current directory: `deploy/local/cluster up`
//! leaves `.cheops-local/peers.json` (where each site's API is) and
//! `.cheops-local/token` (the operator token). When nothing else names the
//! nodes or the token, the client uses them, and says so once.

use std::path::Path;

use super::args::{NodeArgs, DEFAULT_API_TEMPLATE};

/// Where `deploy/local/cluster up` leaves the cluster's files by default.
pub(crate) const DIR: &str = ".cheops-local";

/// Fills in `args` from the local cluster of the current directory.
pub(crate) fn fill(args: &mut NodeArgs) {
    if let Some(note) = fill_from(args, Path::new(DIR)) {
        eprintln!("cheops: {note}");
    }
}

/// Fills in from the cluster files in `dir` what `args` leaves unnamed:
/// the nodes (no `--node`, `--peer`, `--peers-file` or `--api-template`)
/// and the token (no `--token-file` or `CHEOPS_TOKEN`). Returns what to
/// tell the user, when something was taken.
fn fill_from(args: &mut NodeArgs, dir: &Path) -> Option<String> {
    let nodes_named = args.node.as_deref().is_some_and(|n| !n.trim().is_empty())
        || !args.peers.is_empty()
        || args.peers_file.is_some()
        || args.api_template != DEFAULT_API_TEMPLATE;
    let token_named = args.token_file.is_some() || args.token.is_some();
    let peers = dir.join("peers.json");
    let token = dir.join("token");
    let mut taken = Vec::new();
    if !nodes_named && peers.is_file() {
        args.peers_file = Some(peers);
        taken.push("its sites");
    }
    if !token_named && token.is_file() {
        args.token_file = Some(token);
        taken.push("its operator token");
    }
    (!taken.is_empty()).then(|| {
        format!(
            "using the local cluster in {} ({})",
            dir.display(),
            taken.join(" and ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> NodeArgs {
        NodeArgs {
            node: None,
            peers: Vec::new(),
            peers_file: None,
            api_template: DEFAULT_API_TEMPLATE.into(),
            ca_file: None,
            token_file: None,
            token: None,
        }
    }

    #[test]
    fn the_local_cluster_fills_in_only_what_nothing_else_names() {
        let dir = std::env::temp_dir().join(format!("cheops-local-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut bare = args();
        assert_eq!(fill_from(&mut bare, &dir), None, "no cluster files");
        std::fs::write(dir.join("peers.json"), "{}").unwrap();
        std::fs::write(dir.join("token"), "operator-token-0123456789").unwrap();

        let mut bare = args();
        let note = fill_from(&mut bare, &dir).expect("taken");
        assert!(note.contains("its sites and its operator token"), "{note}");
        assert_eq!(bare.peers_file, Some(dir.join("peers.json")));
        assert_eq!(bare.token_file, Some(dir.join("token")));

        let mut named = NodeArgs {
            node: Some("http://10.0.0.1:8079".into()),
            token: Some("another-token-0123456789".into()),
            ..args()
        };
        assert_eq!(fill_from(&mut named, &dir), None);
        assert_eq!((named.peers_file, named.token_file), (None, None));

        let mut templated = NodeArgs {
            api_template: "https://{site}.example:8079".into(),
            ..args()
        };
        let note = fill_from(&mut templated, &dir).expect("the token taken");
        assert!(!note.contains("sites"), "{note}");
        assert_eq!(templated.peers_file, None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! Which node's API a request goes to, and the checks on what goes into its
//! URL: the node's address and the resource id.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::args::NodeArgs;
use super::Failure;

/// One entry of a peers file; `cheops serve` requires `couchdb` too, the
/// client needs only `api`.
#[derive(Deserialize)]
struct PeerEntry {
    api: String,
}

/// The API base URL (no trailing '/') of the node to ask: `--node` when
/// given, else `site`'s, from `--peer`, then `--peers-file`, then the
/// template.
pub(crate) fn resolve(args: &NodeArgs, site: Option<&str>) -> Result<String, Failure> {
    if let Some(node) = args
        .node
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        return checked(node, "--node");
    }
    let site = site
        .ok_or_else(|| Failure::Usage("say which node to ask: --node, --from or --sites".into()))?;
    // Read as `cheops serve` reads them: every flag checked, the last of a
    // site's wins, and before the peers file.
    let mut peers = BTreeMap::new();
    for peer in &args.peers {
        let (name, urls) = peer
            .split_once('=')
            .ok_or_else(|| Failure::Usage("--peer: expected NAME=[COUCHDB_URL,]API_URL".into()))?;
        // Never echo the URLs: the CouchDB one may hold credentials.
        let api = urls.split_once(',').map_or(urls, |(_, api)| api);
        peers.insert(name.trim(), api.trim());
    }
    if let Some(api) = peers.get(site) {
        return checked(api, &format!("--peer {site}'s API URL"));
    }
    if let Some(path) = &args.peers_file {
        if let Some(entry) = read_peers_file(path)?.get(site) {
            let shown = path.display();
            return checked(entry.api.trim(), &format!("{site}'s API URL in {shown}"));
        }
    }
    checked(&args.api_template.replace("{site}", site), "--api-template")
}

/// The sites `--peer` and `--peers-file` name, in order of name.
pub(crate) fn known_sites(args: &NodeArgs) -> Result<Vec<String>, Failure> {
    let mut sites: Vec<String> = args
        .peers
        .iter()
        .filter_map(|peer| peer.split_once('='))
        .map(|(name, _)| name.trim().to_owned())
        .collect();
    if let Some(path) = &args.peers_file {
        sites.extend(read_peers_file(path)?.into_keys());
    }
    sites.sort();
    sites.dedup();
    Ok(sites)
}

/// The entries of a peers file, by site.
fn read_peers_file(path: &std::path::Path) -> Result<BTreeMap<String, PeerEntry>, Failure> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Usage(format!("cannot read --peers-file {shown}: {e}")))?;
    serde_json::from_str(&text).map_err(|e| Failure::Usage(format!("--peers-file {shown}: {e}")))
}

/// The API base URL of the one node a read asks: `--node`, or the site
/// `--from` names.
pub(crate) fn one_node(args: &NodeArgs, from: Option<&str>) -> Result<String, Failure> {
    let from = from.map(str::trim).filter(|f| !f.is_empty());
    if let Some(from) = from {
        cheops_model::check_site_name(from)
            .map_err(|problem| Failure::Usage(format!("--from: {problem}")))?;
    } else if args.node.as_deref().is_none_or(|n| n.trim().is_empty()) {
        return Err(Failure::Usage(
            "say which node to ask: --node or --from".into(),
        ));
    }
    resolve(args, from)
}

/// `url` without its trailing '/', once known to be an http(s) URL.
fn checked(url: &str, what: &str) -> Result<String, Failure> {
    let valid = reqwest::Url::parse(url)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
    if valid {
        Ok(url.trim_end_matches('/').to_owned())
    } else {
        Err(Failure::Usage(format!(
            "{what} is not an http:// or https:// URL"
        )))
    }
}

/// The node's rule for ids, checked here so that an id that cannot travel
/// in the URL unchanged is a usage error rather than a request to some
/// other path.
pub(crate) fn check_id(id: &str) -> Result<(), Failure> {
    cheops_model::check_resource_id(id)
        .map_err(|problem| Failure::Usage(format!("--id: {problem}")))
}

/// The sites of `--sites`, by the node's rule: each a site name (a site
/// name goes into URLs), at most [`cheops_model::MAX_SITES`].
pub(crate) fn sites(value: &str) -> Result<Vec<String>, Failure> {
    cheops_model::split_sites(value)
        .map_err(|problem| Failure::Usage(format!("--sites: {problem}")))
}

/// `url` with any user name and password taken out, for messages.
pub(crate) fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Err(_) => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_args(node: Option<&str>, peers: &[&str]) -> NodeArgs {
        NodeArgs {
            node: node.map(Into::into),
            peers: peers.iter().map(|p| p.to_string()).collect(),
            peers_file: None,
            api_template: "http://{site}:8079".into(),
            ca_file: None,
            token_file: None,
            token: None,
        }
    }

    #[test]
    fn node_wins_then_peers_then_the_template() {
        let args = node_args(Some("http://n:1/"), &["s1=http://c/cheops,http://a:2"]);
        assert_eq!(resolve(&args, Some("s1")).unwrap(), "http://n:1");
        let args = node_args(
            None,
            &["s1=http://u:p@c/cheops,http://a:2", "s2=http://b:3"],
        );
        assert_eq!(resolve(&args, Some("s1")).unwrap(), "http://a:2");
        assert_eq!(resolve(&args, Some("s2")).unwrap(), "http://b:3");
        assert_eq!(resolve(&args, Some("s3")).unwrap(), "http://s3:8079");
        let err = resolve(&node_args(None, &[]), None).unwrap_err();
        assert!(err.to_string().contains("--node"), "{err}");
    }

    #[test]
    fn a_peers_file_maps_sites_to_apis() {
        let path = std::env::temp_dir().join(format!("cheops-peers-{}.json", std::process::id()));
        std::fs::write(
            &path,
            r#"{"s1": {"couchdb": "http://c/cheops", "api": "http://a:2"}, "s2": {"api": "http://b:3/"}}"#,
        )
        .unwrap();
        let mut args = node_args(None, &[]);
        args.peers_file = Some(path.clone());
        assert_eq!(resolve(&args, Some("s1")).unwrap(), "http://a:2");
        assert_eq!(resolve(&args, Some("s2")).unwrap(), "http://b:3");
        assert_eq!(resolve(&args, Some("s3")).unwrap(), "http://s3:8079");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn bad_urls_are_usage_errors_that_do_not_echo_them() {
        let err = resolve(&node_args(Some("ftp://secret@x"), &[]), None).unwrap_err();
        assert!(matches!(err, Failure::Usage(_)));
        assert!(!err.to_string().contains("secret"), "{err}");
        let err = resolve(&node_args(None, &["s1=nonsense"]), Some("s1")).unwrap_err();
        assert!(matches!(err, Failure::Usage(_)));
    }

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(redacted("http://u:p@h:1/x"), "http://h:1/x");
    }
}

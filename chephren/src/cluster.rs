//! The cluster as this node sees it: itself, every peer it probes (online
//! when both the peer's CouchDB and its API answer), the sites its resources
//! name that have not been probed yet, and how many resources live on each.

use std::collections::BTreeMap;

use cheops_model::Timestamp;
use cheops_replicator::{
    Health, HookStatus, OversizeResource, PeerLiveness, ReplicationStatus, TaskStatus,
};
use serde::Serialize;

use crate::block;
use cheops_replicator::Documents;

/// A site's state seen from this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SiteState {
    Online,
    Offline,
    /// Named by a resource, not probed yet.
    Unknown,
}

/// `GET /api/cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterView {
    /// The site of the node answering.
    pub site: String,
    /// This Chephren's URL.
    pub address: String,
    /// This node first, then the other sites by name.
    pub sites: Vec<SiteView>,
    /// Resources living on this node.
    pub resources: usize,
    /// Those of them not converged yet (a pending reply or a conflict).
    pub unconverged: usize,
    /// This node's changes follower is connected to its CouchDB.
    pub follower_live: bool,
    /// The follower's last error, if any since it last connected.
    pub last_error: Option<String>,
    /// Whether this node could read its database for this answer; when it
    /// could not, the resource counts are zero.
    pub database: bool,
    /// This node's background tasks (follower, runner, replications, …),
    /// each with its state and last error.
    pub tasks: Vec<TaskStatus>,
    /// This node's hooks and their last deliveries.
    pub hooks: Vec<HookStatus>,
    /// Resources left unmerged here, their merge over the document size
    /// limit: they refuse operations.
    pub oversize: Vec<OversizeResource>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SiteView {
    pub site: String,
    /// The node answering (always online).
    pub local: bool,
    pub state: SiteState,
    /// Its CouchDB answered the last probe (`None` before any probe).
    pub couchdb: Option<bool>,
    /// Its Cheops API answered the last probe.
    pub api: Option<bool>,
    /// Since when it has been in its current state, as far as this node saw.
    pub since: Option<Timestamp>,
    /// When it was last probed.
    pub checked: Option<Timestamp>,
    /// Resources of this node's database that live on that site.
    pub resources: usize,
    /// The replication from this node to that site, as last checked
    /// (`None` for this node, and for a site no resource here names yet).
    pub replication: Option<ReplicationStatus>,
}

/// The cluster view; `docs` is `None` when the database could not be read.
pub fn cluster(
    site: &str,
    address: &str,
    health: Health,
    peers: Vec<PeerLiveness>,
    docs: Option<&Documents>,
) -> ClusterView {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut here = 0;
    let mut unconverged = 0;
    if let Some(docs) = docs {
        for resource in &docs.resources {
            for location in &resource.locations {
                *counts.entry(location).or_default() += 1;
            }
        }
        let summaries = block::summaries(site, docs);
        here = summaries.len();
        unconverged = summaries.iter().filter(|s| !s.converged).count();
    }
    let count = |name: &str| counts.get(name).copied().unwrap_or_default();
    let mut replications: BTreeMap<String, ReplicationStatus> = health
        .replications
        .into_iter()
        .map(|status| (status.peer.clone(), status))
        .collect();

    let mut sites = vec![SiteView {
        site: site.to_owned(),
        local: true,
        state: SiteState::Online,
        couchdb: Some(docs.is_some() && health.couchdb_reachable),
        api: Some(true),
        since: None,
        checked: Some(Timestamp::now()),
        resources: count(site),
        replication: None,
    }];
    let mut others: BTreeMap<String, SiteView> = peers
        .into_iter()
        .filter(|peer| peer.site != site)
        .map(|peer| {
            let view = SiteView {
                local: false,
                state: if peer.online {
                    SiteState::Online
                } else {
                    SiteState::Offline
                },
                couchdb: Some(peer.couchdb),
                api: Some(peer.api),
                since: Some(peer.since),
                checked: Some(peer.checked),
                resources: count(&peer.site),
                replication: replications.remove(&peer.site),
                site: peer.site.clone(),
            };
            (peer.site, view)
        })
        .collect();
    for name in counts.keys().filter(|name| **name != site) {
        others
            .entry((*name).to_owned())
            .or_insert_with(|| SiteView {
                site: (*name).to_owned(),
                local: false,
                state: SiteState::Unknown,
                couchdb: None,
                api: None,
                since: None,
                checked: None,
                resources: count(name),
                replication: replications.remove(*name),
            });
    }
    sites.extend(others.into_values());

    ClusterView {
        site: site.to_owned(),
        address: address.to_owned(),
        sites,
        resources: here,
        unconverged,
        follower_live: health.follower_live,
        last_error: health.last_error,
        database: docs.is_some(),
        tasks: health.tasks,
        hooks: health.hooks,
        oversize: health.oversize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cheops_replicator::Resend;
    use serde_json::json;

    fn peer(site: &str, online: bool) -> PeerLiveness {
        PeerLiveness {
            site: site.to_owned(),
            online,
            couchdb: true,
            api: online,
            since: "2024-01-01T00:00:01Z".parse().unwrap(),
            checked: "2024-01-01T00:00:09Z".parse().unwrap(),
        }
    }

    fn docs() -> Documents {
        Documents::from_all_docs(&json!({"rows": [
            {"doc": {"_id": "a", "Type": "RESOURCE", "Locations": ["s1", "s2"], "Operations": null, "Config": {"ResolutionMatrix": null}}},
            {"doc": {"_id": "b", "Type": "RESOURCE", "Locations": ["s1", "s2", "s9"], "Config": {"ResolutionMatrix": null},
                     "Operations": [{"Type": "t", "RequestId": "r", "Command": {"Command": "true"}, "Time": "2024-01-01T00:00:01Z"}]}}
        ]}))
    }

    fn healthy() -> Health {
        Health {
            couchdb_reachable: true,
            follower_live: true,
            last_error: None,
            replications: vec![ReplicationStatus {
                peer: "s2".into(),
                state: "crashing",
                write_failures: 2,
                resend: Resend::Running,
                checked: "2024-01-01T00:00:05Z".parse().unwrap(),
            }],
            ..Health::default()
        }
    }

    #[test]
    fn every_site_is_listed_with_its_state_and_resource_count() {
        let view = cluster(
            "s1",
            "http://s1:8080",
            healthy(),
            vec![peer("s3", false), peer("s2", true)],
            Some(&docs()),
        );
        let sites: Vec<(&str, SiteState, usize)> = view
            .sites
            .iter()
            .map(|s| (s.site.as_str(), s.state, s.resources))
            .collect();
        assert_eq!(
            sites,
            [
                ("s1", SiteState::Online, 2),
                ("s2", SiteState::Online, 2),
                ("s3", SiteState::Offline, 0),
                ("s9", SiteState::Unknown, 1),
            ]
        );
        let s3 = serde_json::to_value(&view.sites[2]).unwrap();
        assert_eq!(
            s3,
            json!({"site": "s3", "local": false, "state": "OFFLINE", "couchdb": true, "api": false,
                   "since": "2024-01-01T00:00:01Z", "checked": "2024-01-01T00:00:09Z", "resources": 0,
                   "replication": null})
        );
        // Each peer's card tells how the replication to it fares.
        let s2 = serde_json::to_value(&view.sites[1]).unwrap();
        assert_eq!(
            s2["replication"],
            json!({"peer": "s2", "state": "crashing", "write_failures": 2, "resend": "running",
                   "checked": "2024-01-01T00:00:05Z"})
        );
        assert_eq!(view.resources, 2);
        assert_eq!(view.unconverged, 1, "b waits for three replies");
        assert!(view.database);
    }

    #[test]
    fn peers_are_still_shown_when_the_database_cannot_be_read() {
        let view = cluster(
            "s1",
            "http://s1:8080",
            Health::default(),
            vec![peer("s2", true)],
            None,
        );
        assert!(!view.database);
        assert_eq!(view.sites.len(), 2);
        assert_eq!(view.sites[0].couchdb, Some(false));
        assert_eq!(view.sites[1].state, SiteState::Online);
        assert_eq!(view.resources, 0);
    }
}

//! What happens on a node, as a stream for live views: Chephren turns it
//! into server-sent events so that a browser never has to poll.

use cheops_model::{Status, Timestamp};
use serde::Serialize;
use tokio::sync::broadcast;

/// How many events a slow subscriber may fall behind before it is told it
/// lagged (and must reread what it shows).
const BACKLOG: usize = 1024;

/// One thing that changed on this node.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum NodeEvent {
    /// A resource document was written here or replicated here: a new
    /// operation, a merge.
    Resource { id: String },
    /// A reply was stored here, by this site or replicated from another.
    Reply {
        resource: String,
        request_id: String,
        site: String,
        status: Status,
    },
    /// A peer site went online or offline.
    Peer(PeerLiveness),
}

/// What the last probe of a peer found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerLiveness {
    pub site: String,
    /// Both its CouchDB and its API answered.
    pub online: bool,
    /// Its CouchDB answered.
    pub couchdb: bool,
    /// Its Cheops API answered (whatever its health).
    pub api: bool,
    /// When `online` took its current value (or the first probe).
    pub since: Timestamp,
    /// When the peer was last probed.
    pub checked: Timestamp,
}

/// The sending side, shared by the follower and the liveness prober.
#[derive(Clone)]
pub struct Events(broadcast::Sender<NodeEvent>);

impl Default for Events {
    fn default() -> Self {
        Events(broadcast::channel(BACKLOG).0)
    }
}

impl Events {
    /// Publishes `event`; nobody listening is not an error.
    pub fn send(&self, event: NodeEvent) {
        let _ = self.0.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.0.subscribe()
    }
}

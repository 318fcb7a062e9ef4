//! An operation submitted through a node, and the replies it gathers.

use cheops_model::{Operation, ReplyDocument, ResourceConfig};

use crate::node::hub::ReplyReceiver;

/// What `/exec` asks a node to store: one operation for a resource.
#[derive(Debug, Clone)]
pub struct Submission {
    pub resource_id: String,
    /// The sites the caller says the resource lives on; this node must be one
    /// of them, and they must equal an existing resource's locations.
    pub sites: Vec<String>,
    pub operation: Operation,
    /// Replaces the resource's config when given and not empty.
    pub config: Option<ResourceConfig>,
}

/// A stored operation: the caller waits on `replies` for one reply per
/// location. Dropping it stops the notifications (the work goes on).
#[derive(Debug)]
pub struct Submitted {
    pub resource_id: String,
    pub request_id: String,
    pub locations: Vec<String>,
    /// The command as written by the user, for TIMEOUT lines.
    pub input: String,
    pub replies: ReplyReceiver,
}

impl Submitted {
    /// The line streamed for a site that has not replied in time.
    pub fn timeout_reply(&self, site: &str) -> ReplyDocument {
        ReplyDocument {
            locations: self.locations.clone(),
            site: site.to_owned(),
            request_id: self.request_id.clone(),
            resource_id: self.resource_id.clone(),
            status: cheops_model::Status::Timeout,
            input: self.input.clone(),
            ..ReplyDocument::default()
        }
    }
}

//! Reading a resource as stored, waiting out the moments when every leaf
//! is a deletion.

use std::time::Duration;

use cheops_model::{DocumentKind, ResourceDocument};
use serde_json::Value;
use tracing::debug;

use crate::db::couch::Stored;
use crate::node::Node;
use crate::ReplicatorError;

/// How long a read waits for a resource whose every leaf is a deletion to
/// get a live one: replication usually brings the merge within a second.
const SETTLING_WAIT: Duration = Duration::from_secs(5);
/// The first and the longest pause between two reads of such a resource.
const SETTLING_POLL: Duration = Duration::from_millis(20);
const SETTLING_POLL_MAX: Duration = Duration::from_millis(500);

impl Node {
    /// The stored resource `resource_id`, `None` when it was never stored
    /// here. A resource whose every leaf is a deletion is not missing: the
    /// merge that goes with those deletions is on its way (resources are
    /// never deleted otherwise), so the read waits for it, up to
    /// [`SETTLING_WAIT`], rather than start the resource again from
    /// nothing. An error when the id is another kind of document's.
    pub(super) async fn read_live(
        &self,
        resource_id: &str,
    ) -> Result<Option<ResourceDocument>, ReplicatorError> {
        let started = tokio::time::Instant::now();
        let mut delay = SETTLING_POLL;
        loop {
            let doc = match self
                .ctx
                .couch
                .get_stored::<Value>(&[resource_id], &[])
                .await?
            {
                Stored::Found(doc) => doc,
                Stored::Missing => return Ok(None),
                Stored::Deleted => {
                    self.ctx.metrics.read_deleted();
                    if started.elapsed() >= SETTLING_WAIT {
                        return Err(ReplicatorError::Settling {
                            resource: resource_id.to_owned(),
                        });
                    }
                    debug!(resource = %resource_id, site = %self.ctx.site, "every leaf is a deletion; waiting for the merge");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(SETTLING_POLL_MAX);
                    continue;
                }
            };
            let kind: DocumentKind = decode_stored(resource_id, doc.clone())?;
            if !kind.is_resource() {
                return Err(ReplicatorError::IdTaken(resource_id.to_owned()));
            }
            return decode_stored(resource_id, doc).map(Some);
        }
    }

    /// The locations of a resource, `None` when it does not exist.
    pub async fn locations(
        &self,
        resource_id: &str,
    ) -> Result<Option<Vec<String>>, ReplicatorError> {
        Ok(self.read_live(resource_id).await?.map(|doc| doc.locations))
    }
}

/// A stored document read as `T`.
fn decode_stored<T: serde::de::DeserializeOwned>(
    resource_id: &str,
    doc: Value,
) -> Result<T, ReplicatorError> {
    serde_json::from_value(doc).map_err(|source| ReplicatorError::Decode {
        context: format!("GET {resource_id}"),
        source,
    })
}

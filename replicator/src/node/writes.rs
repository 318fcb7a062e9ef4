//! The node's writes of its replies and of the resources `/exec` stores,
//! shared: the replies of passes that end while one request is in flight,
//! or soon after (the requests are paced), go together in the next
//! `_bulk_docs`; a resource goes at once, and takes along whatever replies
//! wait. The sidecar's cost is mostly per request, not per document, and
//! each write starts a replication round to every peer, so under load this
//! spares both; a lone write after a quiet while is sent at once.

use std::sync::Arc;
use std::time::Duration;

use cheops_model::{ReplyDocument, ResourceDocument};

use crate::db::couch::Written;
use crate::node::batch::Batcher;
use crate::node::context::Context;
use crate::node::store::store_with;
use crate::ReplicatorError;

/// The most writes (a pass's replies, a resource) one request carries.
const MAX_WRITES: usize = 256;
/// Write requests in flight at once: what comes meanwhile goes in the next.
const IN_FLIGHT: usize = 1;
/// The longest replies wait for others after the last request.
const MOST_WAIT: Duration = Duration::from_millis(100);

/// A write waiting for its request.
pub enum Write {
    /// A pass's replies, journaled.
    Replies(Vec<ReplyDocument>),
    Resource(Box<ResourceDocument>),
}

/// What became of a [`Write`].
pub enum Wrote {
    /// Shared by every pass whose replies the request wrote.
    Replies(Result<(), Arc<ReplicatorError>>),
    /// The resource, given back, and its outcome.
    Resource(Box<ResourceDocument>, Result<Written, ReplicatorError>),
}

/// The writes waiting for the node's next request.
pub type Writes = Batcher<Write, Wrote>;

pub fn writes() -> Writes {
    Batcher::new(MAX_WRITES, IN_FLIGHT).paced(MOST_WAIT)
}

/// Writes `replies` (journaled) with the other writes waiting, at the
/// pace of the requests; fails when some reply of that request could not be
/// written (they stay in the journal).
pub async fn replies(ctx: &Context, replies: Vec<ReplyDocument>) -> Result<(), ReplicatorError> {
    if replies.is_empty() {
        return Ok(());
    }
    let wrote = ctx
        .writes
        .submit(Write::Replies(replies), |writes| send(ctx, writes))
        .await;
    match wrote {
        Some(Wrote::Replies(stored)) => stored.map_err(ReplicatorError::Shared),
        _ => Err(ReplicatorError::Interrupted("writing the replies")),
    }
}

/// Writes `doc` (with its current `_rev`, if any) in the next request, as
/// soon as none is in flight, with the replies waiting; gives it back with
/// the outcome [`crate::db::couch::CouchClient::save`] would have.
///
/// On a task of its own: the `/exec` calling it may be dropped (its client
/// left) while it sends the request the other writes wait for.
pub async fn resource(
    ctx: &Context,
    doc: ResourceDocument,
) -> Result<(ResourceDocument, Written), ReplicatorError> {
    let ctx = ctx.clone();
    let wrote = tokio::spawn(async move {
        let write = Write::Resource(Box::new(doc));
        ctx.writes
            .submit_now(write, |writes| send(&ctx, writes))
            .await
    })
    .await;
    match wrote {
        Ok(Some(Wrote::Resource(doc, written))) => written.map(|written| (*doc, written)),
        _ => Err(ReplicatorError::Interrupted("writing the resource")),
    }
}

/// Sends one request for `writes`.
async fn send(ctx: &Context, writes: Vec<Write>) -> Vec<Wrote> {
    let mut replies = Vec::new();
    let mut resources = Vec::new();
    let mut passes = Vec::with_capacity(writes.len());
    for write in writes {
        match write {
            Write::Replies(of_pass) => {
                passes.push(true);
                replies.extend(of_pass);
            }
            Write::Resource(doc) => {
                passes.push(false);
                resources.push(*doc);
            }
        }
    }
    let (stored, saved) = store_with(ctx, &replies, &resources).await;
    let stored = stored.map_err(Arc::new);
    let mut resources = resources.into_iter().zip(saved);
    passes
        .into_iter()
        .map_while(|pass| {
            if pass {
                Some(Wrote::Replies(stored.clone()))
            } else {
                let (doc, saved) = resources.next()?;
                Some(Wrote::Resource(Box::new(doc), saved))
            }
        })
        .collect()
}

//! Receipts: a small document per completion delivered to a hook, written
//! by the site that delivered it and replicated to the resource's sites,
//! so that the sites standing by learn it was delivered. Its id names the
//! resource, the request and the hook; a write that finds it there already
//! (another site delivered too) is as good as its own.

use serde_json::json;

use crate::db::couch::{CouchClient, Written};
use crate::db::origin::Stamped;
use crate::node::feed::Event;
use crate::ReplicatorError;

/// The `Type` of a receipt.
const RECEIPT: &str = "HOOK_RECEIPT";

/// The id of the receipt of `event` for `hook`. Resource ids hold no `:`,
/// so no receipt id is a resource's.
fn receipt_id(event: &Event, hook: &str) -> String {
    format!("receipt:{}:{}:{hook}", event.resource, event.request)
}

/// Whether some site has delivered `event` to `hook`, as far as this
/// database knows.
pub async fn delivered(
    couch: &CouchClient,
    event: &Event,
    hook: &str,
) -> Result<bool, ReplicatorError> {
    let id = receipt_id(event, hook);
    Ok(couch.get::<serde_json::Value>(&[&id], &[]).await?.is_some())
}

/// Records that `site` delivered `event` to `hook`, in the database whose
/// identity is `origin` (`db/origin.rs`: written once, by one site, so
/// replication need not send it back there).
pub async fn record(
    couch: &CouchClient,
    event: &Event,
    hook: &str,
    site: &str,
    origin: Option<&str>,
) -> Result<(), ReplicatorError> {
    let id = receipt_id(event, hook);
    let doc = json!({
        "Type": RECEIPT,
        "ResourceId": event.resource,
        "RequestId": event.request,
        "Hook": hook,
        "Site": site,
        // Replicated wherever the resource is.
        "Locations": event.locations,
    });
    match couch.put(&[&id], &Stamped::new(&doc, origin)).await? {
        Written::Rev(_) | Written::Conflict => Ok(()),
    }
}

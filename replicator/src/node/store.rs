//! Writing the journal's replies to CouchDB: right after a batch, and by
//! the flusher (`workers/flusher.rs`) for whatever that left behind (CouchDB away, a reply
//! refused), until the journal is empty.
//!
//! Writing is idempotent: a reply's `_id` is fixed by the journal, so a
//! reply CouchDB already holds comes back as a conflict, which counts as
//! stored. A reply refused as too large (413, or `too_large` for its row)
//! is cut to [`FALLBACK_MAX_REPLY_BYTES`] and written again: it is stored
//! cut rather than its operation run again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use cheops_model::{ReplyDocument, ResourceDocument};
use serde::Serialize;
use tracing::info;

use crate::db::couch::{BulkResult, CouchClient, Written};
use crate::db::origin::Stamped;
use crate::node::context::Context;
use crate::node::oversize::{fit, FALLBACK_MAX_REPLY_BYTES};
use crate::ReplicatorError;

/// Writes `replies` (journaled, `_id` set) to CouchDB and drops from the
/// journal those it holds. Fails when some could not be written; they stay
/// in the journal.
///
/// Cancellation: replies written but not yet dropped from the journal are
/// written again later, as conflicts.
pub async fn store_replies(
    ctx: &Context,
    replies: &[ReplyDocument],
) -> Result<(), ReplicatorError> {
    store_with(ctx, replies, &[]).await.0
}

/// [`store_replies`], with `resources` (each with its current `_rev`, if
/// any) in the same `_bulk_docs`; also what became of each resource, in
/// order, said as [`CouchClient::save`] would. A request refused as too
/// large is split: each resource alone, the replies as [`store_replies`]
/// writes them.
pub async fn store_with(
    ctx: &Context,
    replies: &[ReplyDocument],
    resources: &[ResourceDocument],
) -> (
    Result<(), ReplicatorError>,
    Vec<Result<Written, ReplicatorError>>,
) {
    if replies.is_empty() && resources.is_empty() {
        return (Ok(()), Vec::new());
    }
    let mut stored = Stored::default();
    let (written, saved) = if resources.is_empty() {
        let written = write(&ctx.couch, replies, ctx.origin(), &mut stored).await;
        (written, Vec::new())
    } else {
        write_with(&ctx.couch, replies, resources, ctx.origin(), &mut stored).await
    };
    ctx.metrics.replies_written(stored.new);
    let journaled = ctx.journal.stored(stored.ids).await;
    (journaled.and(written), saved)
}

/// A document of a `_bulk_docs` that writes resources beside replies.
#[derive(Serialize)]
#[serde(untagged)]
enum Mixed<'a> {
    Resource(&'a ResourceDocument),
    Reply(Stamped<'a, ReplyDocument>),
}

/// Writes `resources`, then `replies` stamped with `origin`, in one
/// request.
///
/// One update per document: PouchDB Server answers the second of two
/// updates of one revision in a request with a conflict, yet stores it as
/// a conflicting leaf. A resource already in the request is not sent: it
/// lost the race, and is answered so.
async fn write_with(
    couch: &CouchClient,
    replies: &[ReplyDocument],
    resources: &[ResourceDocument],
    origin: Option<&str>,
    stored: &mut Stored,
) -> (
    Result<(), ReplicatorError>,
    Vec<Result<Written, ReplicatorError>>,
) {
    let mut ids = HashSet::new();
    let sent: Vec<bool> = resources.iter().map(|r| ids.insert(&r.id)).collect();
    let docs: Vec<Mixed> = resources
        .iter()
        .zip(&sent)
        .filter(|(_, sent)| **sent)
        .map(|(r, _)| Mixed::Resource(r))
        .chain(
            replies
                .iter()
                .map(|r| Mixed::Reply(Stamped::new(r, origin))),
        )
        .collect();
    match couch.bulk_docs(&docs, true).await {
        Ok(rows) => {
            let mut rows = by_id(rows);
            let saved = resources
                .iter()
                .zip(&sent)
                .map(|(doc, sent)| match sent {
                    true => rows
                        .remove(&doc.id)
                        .map_or_else(|| Err(missing_row(&doc.id)), BulkResult::written),
                    false => Ok(Written::Conflict),
                })
                .collect();
            let written = absorb(couch, replies, rows, origin, stored).await;
            (written, saved)
        }
        Err(error) if is_too_large(&error) => {
            // Which one is too large: each resource on its own.
            let mut saved = Vec::with_capacity(resources.len());
            for (doc, sent) in resources.iter().zip(&sent) {
                saved.push(match sent {
                    true => couch.save(doc).await,
                    false => Ok(Written::Conflict),
                });
            }
            (write(couch, replies, origin, stored).await, saved)
        }
        Err(error) => {
            let error = Arc::new(error);
            let saved = resources
                .iter()
                .map(|_| Err(ReplicatorError::Shared(Arc::clone(&error))))
                .collect();
            let written = if replies.is_empty() {
                Ok(())
            } else {
                Err(ReplicatorError::Shared(error))
            };
            (written, saved)
        }
    }
}

/// The rows of a `_bulk_docs` answer by document id: PouchDB Server does
/// not give them in the order of the request.
fn by_id(rows: Vec<BulkResult>) -> HashMap<String, BulkResult> {
    rows.into_iter()
        .filter_map(|row| Some((row.id.clone()?, row)))
        .collect()
}

fn missing_row(id: &str) -> ReplicatorError {
    ReplicatorError::Couch {
        status: 0,
        context: format!("POST _bulk_docs {id}"),
        body: "no row for the document".into(),
    }
}

/// What CouchDB holds after a write.
#[derive(Default)]
struct Stored {
    /// The `_id` of each reply it holds.
    ids: Vec<String>,
    /// How many of them this write created.
    new: usize,
}

/// Writes `replies`, stamped with `origin`, noting in `stored` those
/// CouchDB holds.
async fn write(
    couch: &CouchClient,
    replies: &[ReplyDocument],
    origin: Option<&str>,
    stored: &mut Stored,
) -> Result<(), ReplicatorError> {
    if replies.is_empty() {
        return Ok(());
    }
    let stamped: Vec<_> = replies.iter().map(|r| Stamped::new(r, origin)).collect();
    let rows = match couch.bulk_docs(&stamped, true).await {
        Ok(rows) => rows,
        Err(error) if is_too_large(&error) => {
            if let [reply] = replies {
                return write_cut(couch, reply, origin, stored).await;
            }
            // Which one is too large: each on its own.
            let mut failed = None;
            for reply in replies {
                if let Err(error) =
                    Box::pin(write(couch, std::slice::from_ref(reply), origin, stored)).await
                {
                    failed = Some(error);
                }
            }
            return failed.map_or(Ok(()), Err);
        }
        Err(error) => return Err(error),
    };
    absorb(couch, replies, by_id(rows), origin, stored).await
}

/// Notes in `stored` the replies CouchDB holds after a write answered
/// `rows`, writing cut those refused as too large.
async fn absorb(
    couch: &CouchClient,
    replies: &[ReplyDocument],
    mut rows: HashMap<String, BulkResult>,
    origin: Option<&str>,
    stored: &mut Stored,
) -> Result<(), ReplicatorError> {
    let mut failed = None;
    for reply in replies {
        let id = reply.id.clone().unwrap_or_default();
        let Some(row) = rows.remove(&id) else {
            failed = Some(missing_row(&id));
            continue;
        };
        stored.new += usize::from(row.error.is_none());
        match row.error.as_deref() {
            None | Some("conflict") => stored.ids.push(id),
            _ if row.is_too_large() => {
                if let Err(error) = write_cut(couch, reply, origin, stored).await {
                    failed = Some(error);
                }
            }
            Some(other) => {
                failed = Some(ReplicatorError::Couch {
                    status: 0,
                    context: format!("storing the reply {id}"),
                    body: format!("{other}: {}", row.reason.unwrap_or_default()),
                });
            }
        }
    }
    failed.map_or(Ok(()), Err)
}

/// Writes `reply` with its output cut to the fallback size.
async fn write_cut(
    couch: &CouchClient,
    reply: &ReplyDocument,
    origin: Option<&str>,
    stored: &mut Stored,
) -> Result<(), ReplicatorError> {
    let cut = fit(reply.clone(), FALLBACK_MAX_REPLY_BYTES);
    if cut == *reply {
        return Err(ReplicatorError::Couch {
            status: 413,
            context: format!(
                "storing the reply {}",
                reply.id.as_deref().unwrap_or_default()
            ),
            body: "refused as too large even when cut".into(),
        });
    }
    info!(resource = %reply.resource_id, request = %reply.request_id, site = %reply.site, "reply refused as too large; storing it cut");
    let rows = couch.bulk_docs(&[Stamped::new(&cut, origin)], true).await?;
    match rows.first().and_then(|row| row.error.as_deref()) {
        None => {
            stored.new += 1;
            stored.ids.push(cut.id.unwrap_or_default());
            Ok(())
        }
        Some("conflict") => {
            stored.ids.push(cut.id.unwrap_or_default());
            Ok(())
        }
        Some(other) => Err(ReplicatorError::Couch {
            status: 0,
            context: format!("storing the cut reply {}", cut.id.unwrap_or_default()),
            body: other.to_owned(),
        }),
    }
}

fn is_too_large(error: &ReplicatorError) -> bool {
    matches!(error, ReplicatorError::Couch { status: 413, .. })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use cheops_model::Timestamp;
    use serde_json::{json, Value};

    use super::*;
    use crate::node::journal::{reply_id, Journal};
    use crate::testing::{FakeHttp, Scratch};

    /// A CouchDB that knows `_bulk_docs` only, and refuses any request
    /// larger than `limit` bytes with 413, as CouchDB 3 does past
    /// `max_document_size`.
    struct FakeCouch {
        url: String,
        docs: Arc<Mutex<BTreeMap<String, Value>>>,
        /// The ids of the documents written, as sent.
        sent: Arc<Mutex<Vec<String>>>,
        http: FakeHttp,
    }

    impl FakeCouch {
        async fn start(limit: usize) -> FakeCouch {
            let docs: Arc<Mutex<BTreeMap<String, Value>>> = Arc::default();
            let sent: Arc<Mutex<Vec<String>>> = Arc::default();
            let (d, i) = (Arc::clone(&docs), Arc::clone(&sent));
            let http = FakeHttp::start(move |request| {
                if request.body.len() > limit {
                    let refusal = json!({"error": "document_too_large", "reason": ""});
                    ("413 Payload Too Large".to_owned(), refusal.to_string())
                } else {
                    (
                        "201 Created".to_owned(),
                        bulk(&d, &i, &request.body).to_string(),
                    )
                }
            })
            .await;
            FakeCouch {
                url: format!("{}/cheops", http.url),
                docs,
                sent,
                http,
            }
        }

        fn doc(&self, id: &str) -> Option<Value> {
            self.docs.lock().unwrap().get(id).cloned()
        }

        /// How many requests it received.
        fn requests(&self) -> usize {
            self.http.received().len()
        }
    }

    fn bulk(
        docs: &Mutex<BTreeMap<String, Value>>,
        sent: &Mutex<Vec<String>>,
        body: &[u8],
    ) -> Value {
        let request: Value = serde_json::from_slice(body).unwrap();
        let mut docs = docs.lock().unwrap();
        let mut sent = sent.lock().unwrap();
        let rows: Vec<Value> = request["docs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|doc| {
                let id = doc["_id"].as_str().unwrap().to_owned();
                sent.push(id.clone());
                if docs.contains_key(&id) {
                    json!({"id": id, "error": "conflict", "reason": "Document update conflict."})
                } else {
                    docs.insert(id.clone(), doc.clone());
                    json!({"id": id, "ok": true, "rev": format!("1-{id}")})
                }
            })
            .collect();
        // In another order than the request's, as PouchDB Server may.
        Value::from(rows.into_iter().rev().collect::<Vec<_>>())
    }

    fn scratch(name: &str) -> Scratch {
        Scratch::new(&format!("store-{name}"))
    }

    fn reply(request: &str, output: String) -> ReplyDocument {
        let time = Timestamp::now();
        ReplyDocument {
            id: Some(reply_id("site1", request, time)),
            site: "site1".into(),
            request_id: request.into(),
            resource_id: "res".into(),
            output,
            execution_time: time,
            ..ReplyDocument::default()
        }
    }

    fn context(couch: &CouchClient, journal: &Journal) -> Context {
        let metrics = crate::metrics::Metrics::default();
        Context::new(
            "site1".into(),
            couch.clone(),
            metrics,
            journal.clone(),
            crate::node::feed::Feed::in_memory(),
        )
    }

    async fn journaled(journal: &Journal, replies: &[ReplyDocument]) {
        for reply in replies {
            journal.record(reply).await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_reply_refused_as_too_large_is_stored_cut_and_leaves_the_journal() {
        let couch_db = FakeCouch::start(100_000).await;
        let couch = CouchClient::new(&couch_db.url).unwrap();
        let dir = scratch("large");
        let journal = Journal::open(&dir.0, "site1").unwrap();
        let replies = [
            reply("small", "ok\n".into()),
            reply("big", "x".repeat(200_000)),
        ];
        journaled(&journal, &replies).await;

        store_replies(&context(&couch, &journal), &replies)
            .await
            .unwrap();

        assert!(
            journal.pending().is_empty(),
            "nothing left to store, nothing to run again"
        );
        let small = couch_db.doc(replies[0].id.as_deref().unwrap()).unwrap();
        assert_eq!(small["Output"], "ok\n");
        let big = couch_db.doc(replies[1].id.as_deref().unwrap()).unwrap();
        assert_eq!(big["OutputTruncated"], 200_000);
        let output = big["Output"].as_str().unwrap();
        assert!(output.len() < FALLBACK_MAX_REPLY_BYTES, "{}", output.len());
        assert!(output.ends_with("of 200000 bytes kept]\n"));
    }

    #[tokio::test]
    async fn writing_replies_again_stores_each_once() {
        let couch_db = FakeCouch::start(usize::MAX).await;
        let couch = CouchClient::new(&couch_db.url).unwrap();
        let dir = scratch("again");
        let journal = Journal::open(&dir.0, "site1").unwrap();
        let replies = [reply("a", "a\n".into()), reply("b", "b\n".into())];
        journaled(&journal, &replies).await;
        let ctx = context(&couch, &journal);
        store_replies(&ctx, &replies[..1]).await.unwrap();
        assert_eq!(journal.ran("res").len(), 1, "b is still to store");

        // As after a crash between the write and the journal's note.
        store_replies(&ctx, &replies).await.unwrap();
        assert!(journal.pending().is_empty());
        assert_eq!(couch_db.docs.lock().unwrap().len(), 2);
        assert_eq!(couch_db.requests(), 2);
        // The one found already there is not counted as written.
        let metrics = ctx.metrics.render(crate::metrics::Snapshot::default());
        assert!(
            metrics.contains("\ncheops_replies_written_total 2\n"),
            "{metrics}"
        );
    }

    fn resource(id: &str, sites: usize) -> ResourceDocument {
        ResourceDocument {
            id: id.into(),
            locations: (0..sites).map(|i| format!("site-{i:06}")).collect(),
            ..ResourceDocument::default()
        }
    }

    #[tokio::test]
    async fn resources_go_with_the_replies_and_one_too_large_is_refused_alone() {
        let couch_db = FakeCouch::start(100_000).await;
        let couch = CouchClient::new(&couch_db.url).unwrap();
        let dir = scratch("with");
        let journal = Journal::open(&dir.0, "site1").unwrap();
        let ctx = context(&couch, &journal);
        let replies = [reply("a", "a\n".into()), reply("b", "b\n".into())];
        journaled(&journal, &replies).await;
        couch_db
            .docs
            .lock()
            .unwrap()
            .insert("taken".into(), json!({"_id": "taken"}));

        // A second update of one document in a request lost the race: it
        // is not sent (PouchDB Server would store it as a conflict).
        let resources = [resource("new", 3), resource("taken", 3), resource("new", 2)];
        let (stored, saved) = store_with(&ctx, &replies[..1], &resources).await;
        stored.unwrap();
        let saved: Vec<Written> = saved.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            saved,
            [
                Written::Rev("1-new".into()),
                Written::Conflict,
                Written::Conflict
            ]
        );
        assert_eq!(couch_db.requests(), 1, "one request");
        let reply_a = replies[0].id.clone().unwrap();
        assert_eq!(*couch_db.sent.lock().unwrap(), ["new", "taken", &reply_a]);
        assert_eq!(couch_db.doc("new").unwrap()["Locations"][2], "site-000002");
        assert_eq!(journal.ran("res").len(), 1, "b is still to store");

        // Over the limit, the request is split: the resource alone is
        // refused as a `PUT` would be, the reply is stored.
        let (stored, saved) = store_with(&ctx, &replies[1..], &[resource("big", 10_000)]).await;
        stored.unwrap();
        assert!(
            matches!(
                &saved[..],
                [Err(ReplicatorError::Couch { status: 413, .. })]
            ),
            "{saved:?}"
        );
        assert!(couch_db.doc("big").is_none());
        assert!(journal.pending().is_empty());
        assert_eq!(couch_db.requests(), 4, "together, then each");
    }

    #[tokio::test]
    async fn replies_stay_in_the_journal_while_couchdb_is_away() {
        let couch_db = FakeCouch::start(usize::MAX).await;
        // Port 9 (discard) has no HTTP server.
        let couch = CouchClient::new("http://127.0.0.1:9/cheops").unwrap();
        let dir = scratch("away");
        let journal = Journal::open(&dir.0, "site1").unwrap();
        let replies = [reply("a", "a\n".into())];
        journaled(&journal, &replies).await;
        assert!(store_replies(&context(&couch, &journal), &replies)
            .await
            .is_err());
        assert_eq!(journal.pending(), replies);

        let couch = CouchClient::new(&couch_db.url).unwrap();
        store_replies(&context(&couch, &journal), &journal.pending())
            .await
            .unwrap();
        assert!(journal.pending().is_empty());
    }
}

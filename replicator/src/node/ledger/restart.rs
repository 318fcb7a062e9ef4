//! The ledger's load after a start: this site's runs are read from the
//! replies view as its index stands (`stale=ok`), with the replies of this
//! site the index may lack, until the index has caught up. PouchDB Server
//! indexes a view only when it is queried: a restarted daemon would
//! otherwise wait for the index to take in everything stored while it was
//! away before its first run.
//!
//! What the index may lack, U being its sequence at the start, is held in
//! `own`: this site's replies stored after U (found by their `Site` among
//! the documents the changes feed lists after U, whatever their ids), those
//! the journal holds at the start, and those journaled or delivered by the
//! feed since. Reads are fresh again once the index was brought up to date
//! while the runner was idle, once the ledger is cleared, or once `own`
//! grows past [`MAX_OWN`].

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use cheops_model::{ReplyDocument, Timestamp};
use serde::Deserialize;
use tokio::sync::OnceCell;
use tracing::{debug, info, warn};

use crate::consistency::Run;
use crate::db::couch::CouchClient;
use crate::db::queries;
use crate::node::journal::Journal;
use crate::ReplicatorError;

/// Replies held in `own` at most: past it, reads are fresh.
const MAX_OWN: usize = 200_000;
/// Changes listed per request when looking for this site's replies.
const CHANGES_PAGE: usize = 10_000;
/// Replies read per request among those found: each is read whole by the
/// sidecar, but only its run is kept.
const DOCS_PAGE: usize = 100;

#[derive(Default)]
pub struct Restart {
    /// Set up on the first read.
    started: OnceCell<()>,
    /// `None` once reads are fresh.
    own: Mutex<Option<Own>>,
}

/// This site's replies the index may lack, by resource.
#[derive(Default)]
struct Own {
    by_resource: HashMap<String, Vec<Run>>,
    held: usize,
}

impl Own {
    fn add(&mut self, resource: &str, ran: Run) {
        let runs = self.by_resource.entry(resource.to_owned()).or_default();
        if !runs.contains(&ran) {
            runs.push(ran);
            self.held += 1;
        }
    }
}

impl Restart {
    fn own(&self) -> MutexGuard<'_, Option<Own>> {
        self.own.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// On the first call, finds what the index lacks and starts stale
    /// reads; reads stay fresh when that fails. Every call waits for the
    /// first to end.
    pub async fn start(&self, couch: &CouchClient, site: &str, journal: &Journal) {
        self.started
            .get_or_init(|| async {
                // Before the search: a reply the flusher stores meanwhile
                // leaves the journal only once stored, so the search, which
                // reads the feed to its end after this, finds it.
                let journaled = journal.pending();
                debug!(site, "finding this site's replies beyond the replies view's index");
                match beyond_index(couch, site).await {
                    Ok(found) => {
                        let mut own = Own::default();
                        for (resource, run) in found {
                            own.add(&resource, run);
                        }
                        for reply in &journaled {
                            own.add(&reply.resource_id, Run::of(reply));
                        }
                        info!(site, beyond_index = own.held, "reading the replies view as it stands until caught up");
                        *self.own() = Some(own);
                    }
                    Err(error) => {
                        warn!(site, %error, "cannot read the replies view as it stands; reading it up to date");
                    }
                }
            })
            .await;
    }

    /// Whether reads may use the index as it stands.
    pub fn is_stale(&self) -> bool {
        self.own().is_some()
    }

    /// A reply of this site, journaled or stored: kept while reads are
    /// stale.
    pub fn add(&self, reply: &ReplyDocument) {
        let mut own = self.own();
        if let Some(held) = own.as_mut() {
            held.add(&reply.resource_id, Run::of(reply));
            if held.held > MAX_OWN {
                info!(site = %reply.site, "too many replies beyond the index; reading it up to date");
                *own = None;
            }
        }
    }

    /// Adds to `ran` the replies to `resource` the index may lack; false
    /// when reads became fresh meanwhile, and `ran`, read stale, must be
    /// read again.
    pub fn complete(&self, resource: &str, ran: &mut Vec<Run>) -> bool {
        let own = self.own();
        let Some(own) = own.as_ref() else {
            return false;
        };
        for run in own.by_resource.get(resource).into_iter().flatten() {
            if !ran.contains(run) {
                ran.push(run.clone());
            }
        }
        true
    }

    /// Reads are fresh from now on.
    pub fn end(&self) {
        self.own().take();
    }

    /// While the runner is idle: brings the index up to date, then makes
    /// reads fresh (the runner starts one indexing at a time). Reads stay as they
    /// are meanwhile, so that none waits for the index; a failure leaves
    /// them so until the next idle moment. Indexing while idle also spares
    /// the next fresh read the documents that arrived meanwhile, whoever
    /// wrote them.
    pub async fn index(&self, couch: &CouchClient) {
        // Not before the first read has taken the index as it stands:
        // PouchDB Server queues a view's queries behind its indexing, so
        // that read would wait for all of it, which is what a restarted
        // daemon must not do.
        if self.started.get().is_none() {
            return;
        }
        match queries::index_replies(couch).await {
            Ok(()) => {
                if self.own().take().is_some() {
                    debug!("replies view indexed; reading it up to date");
                }
            }
            Err(error) => debug!(%error, "cannot index the replies view yet"),
        }
    }
}

/// What the search keeps of a reply: its run, never its output.
#[derive(Deserialize)]
struct ReplyRun {
    #[serde(rename = "ResourceId")]
    resource: String,
    #[serde(rename = "Site")]
    site: String,
    #[serde(rename = "RequestId")]
    request: String,
    #[serde(rename = "ExecutionTime")]
    time: Timestamp,
    #[serde(rename = "Rebuild", default)]
    rebuild: bool,
}

/// The runs, by resource, of the replies of `site` stored after the
/// sequence the replies view's index has reached: the documents changed
/// since that the `replies-of` filter passes, whatever their ids. Replies
/// are decoded as runs straight from the sidecar's answer: their outputs
/// are skipped, never held.
async fn beyond_index(
    couch: &CouchClient,
    site: &str,
) -> Result<Vec<(String, Run)>, ReplicatorError> {
    let mut since = queries::replies_indexed_seq(couch).await?;
    let mut ids = Vec::new();
    loop {
        let (changed, last) = queries::replies_changed(couch, site, &since, CHANGES_PAGE).await?;
        let done = changed.len() < CHANGES_PAGE;
        ids.extend(changed);
        if ids.len() > MAX_OWN {
            return Err(ReplicatorError::Interrupted(
                "finding this site's replies beyond the index: too many",
            ));
        }
        since = last;
        if done {
            break;
        }
    }
    let mut found = Vec::new();
    for page in ids.chunks(DOCS_PAGE) {
        let replies: Vec<Option<ReplyRun>> = couch.get_many(page).await?;
        found.extend(
            replies
                .into_iter()
                .flatten()
                .filter(|reply| reply.site == site)
                .map(|reply| {
                    let run = Run {
                        request: reply.request,
                        time: reply.time,
                        rebuild: reply.rebuild,
                    };
                    (reply.resource, run)
                }),
        );
    }
    Ok(found)
}

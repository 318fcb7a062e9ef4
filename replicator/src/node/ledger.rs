//! The ledger: what this node knows of who replied to what, for the
//! resources handled lately. For each it holds this site's runs (request,
//! time, rebuild) and, for each request, which sites replied and whether the
//! operation is here whole (a reply that carries it, or its history
//! document). The runner asks it what this site ran; `/exec` asks it which
//! operations every location ran (pruning) and which it holds whole (what
//! a reset drops); a pass waiting for a pruned operation's payload waits on
//! it.
//!
//! One rule says when a fact is *complete* (holds all the database holds):
//! it was read from the database while the follower's feed was delivering,
//! or it concerns a request id just drawn, of which nothing is stored yet.
//! Everything stored later reaches the ledger through the feed
//! ([`Ledger::saw_reply`], [`Ledger::saw_history`]) and, for this site's
//! runs, from the runner the moment they are journaled ([`Ledger::ran`]).
//! Whatever the feed cannot tie to a resource clears it
//! ([`Ledger::forget_all`]). One budget of facts bounds its memory: the
//! resources used least lately go first.

mod restart;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use cheops_model::ReplyDocument;
use tokio::sync::{watch, Notify};

use crate::consistency::{Run, Seen, SeenReply};
use crate::db::couch::CouchClient;
use crate::db::queries;
use crate::node::by_use::ByUse;
use crate::node::journal::Journal;
use crate::ReplicatorError;

use restart::Restart;

/// Facts held at most: this site's runs and requests, all resources
/// together.
const MAX_FACTS: usize = 100_000;

/// What is known of one request: what was seen, and whether that is all
/// the database holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    pub seen: Seen,
    pub complete: bool,
}

/// Who replied to what, as far as this node knows.
pub struct Ledger {
    site: String,
    couch: CouchClient,
    journal: Journal,
    entries: Mutex<Entries>,
    /// Counts the history documents, and the replies carrying their
    /// operation, the feed delivered.
    histories: watch::Sender<u64>,
    /// This site's replies the replies view's index may lack after a start.
    restart: Restart,
    /// Woken when the replies view is worth indexing.
    index_wanted: Notify,
}

#[derive(Default)]
struct Entries {
    by_resource: ByUse<Resource>,
    /// Facts held in all resources.
    held: usize,
}

#[derive(Default)]
struct Resource {
    own: Own,
    requests: HashMap<String, Known>,
}

impl Resource {
    /// The facts it holds, itself included.
    fn facts(&self) -> usize {
        1 + self.requests.len()
            + match &self.own {
                Own::Known(runs) => runs.len(),
                _ => 0,
            }
    }
}

/// This site's runs of a resource.
#[derive(Default)]
enum Own {
    #[default]
    Unknown,
    /// Being read; `stale` once a reply of this site was seen meanwhile,
    /// which the read may or may not hold.
    Loading {
        stale: bool,
    },
    Known(Vec<Run>),
}

impl Ledger {
    pub fn new(site: String, couch: CouchClient, journal: Journal) -> Self {
        Ledger {
            site,
            couch,
            journal,
            entries: Mutex::default(),
            histories: watch::Sender::new(0),
            restart: Restart::default(),
            index_wanted: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // Every critical section leaves the maps consistent before any call
        // that could panic.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// This site's runs of `resource`, if known. If not, the caller reads
    /// them with [`Ledger::read_runs`] and hands them to [`Ledger::fill`].
    pub fn runs(&self, resource: &str) -> Option<Vec<Run>> {
        let mut entries = self.lock();
        match &mut entries.entry(resource).own {
            Own::Known(runs) => return Some(runs.clone()),
            // A read starting now sees every reply seen so far.
            own => *own = Own::Loading { stale: false },
        }
        entries.evict();
        None
    }

    /// Keeps what a read found, unless a reply of this site arrived during
    /// the read or the resource was forgotten meanwhile.
    pub fn fill(&self, resource: &str, runs: &[Run]) {
        let mut entries = self.lock();
        let Some(entry) = entries.by_resource.get_mut(resource) else {
            return;
        };
        match entry.own {
            Own::Loading { stale: false } => {
                entry.own = Own::Known(runs.to_vec());
                entries.held += runs.len();
                entries.evict();
            }
            Own::Loading { stale: true } => entry.own = Own::Unknown,
            Own::Unknown | Own::Known(_) => {}
        }
    }

    /// A reply this site just journaled: known before the feed echoes it.
    pub fn ran(&self, reply: &ReplyDocument) {
        self.restart.add(reply);
        let mut entries = self.lock();
        match entries
            .by_resource
            .get_mut(&reply.resource_id)
            .map(|e| &mut e.own)
        {
            Some(Own::Known(runs)) => {
                runs.push(Run::of(reply));
                entries.held += 1;
                entries.evict();
            }
            Some(Own::Loading { stale }) => *stale = true,
            _ => {}
        }
    }

    /// This site's replies to `resource` could be neither journaled nor
    /// stored: its runs are read again.
    pub fn forget_runs(&self, resource: &str) {
        let mut entries = self.lock();
        if let Some(entry) = entries.by_resource.get_mut(resource) {
            let before = entry.facts();
            entry.own = Own::Unknown;
            let after = entry.facts();
            entries.held -= before - after;
        }
    }

    /// The feed brought a reply (one carrying its operation stands for the
    /// operation's history document too).
    pub fn saw_reply(&self, reply: &ReplyDocument) {
        let own = reply.site == self.site;
        if own {
            self.restart.add(reply);
        }
        let carrier = reply.operation.is_some();
        let mut entries = self.lock();
        entries.request(&reply.resource_id, &reply.request_id, |known| {
            add_reply(&mut known.seen, &reply.site, reply.reads_history);
            known.seen.history |= carrier;
        });
        if carrier {
            self.histories.send_modify(|seen| *seen += 1);
        }
        let Some(entry) = entries.by_resource.get_mut(&reply.resource_id) else {
            return;
        };
        match &mut entry.own {
            Own::Known(runs) if own => {
                let run = Run::of(reply);
                if !runs
                    .iter()
                    .any(|r| r.request == run.request && r.time == run.time)
                {
                    // Not made by this runner since the read: read again.
                    let forgotten = runs.len();
                    entry.own = Own::Unknown;
                    entries.held -= forgotten;
                }
            }
            Own::Loading { stale } if own => *stale = true,
            _ => {}
        }
    }

    /// The feed brought the history document of `request`.
    pub fn saw_history(&self, resource: &str, request: &str) {
        self.lock()
            .request(resource, request, |known| known.seen.history = true);
        self.histories.send_modify(|seen| *seen += 1);
    }

    /// Moves whenever a history document, or a reply carrying its
    /// operation, arrives.
    pub fn histories(&self) -> watch::Receiver<u64> {
        self.histories.subscribe()
    }

    /// A request this node is about to store, under a fresh request id:
    /// nothing is stored about it yet.
    pub fn submitting(&self, resource: &str, request: &str) {
        self.lock()
            .request(resource, request, |known| known.complete = true);
    }

    /// The requests view answered `seen` for `request`, queried while the
    /// feed was delivering.
    pub fn learnt(&self, resource: &str, request: &str, seen: &Seen) {
        self.lock().request(resource, request, |known| {
            for reply in &seen.replies {
                add_reply(&mut known.seen, &reply.site, reply.reads_history);
            }
            known.seen.history |= seen.history;
            known.complete = true;
        });
    }

    /// What is known of `request`, if anything was seen of it. An
    /// incomplete answer can still prove the request prunable, never the
    /// opposite: sightings are only ever added to.
    pub fn known(&self, resource: &str, request: &str) -> Option<Known> {
        let mut entries = self.lock();
        let entry = entries.by_resource.get_mut(resource)?;
        entry.requests.get(request).cloned()
    }

    /// `requests` of `resource` were pruned: never looked up again.
    pub fn pruned<'a>(&self, resource: &str, requests: impl IntoIterator<Item = &'a str>) {
        let mut entries = self.lock();
        let Some(entry) = entries.by_resource.get_mut(resource) else {
            return;
        };
        let before = entry.requests.len();
        for request in requests {
            entry.requests.remove(request);
        }
        let removed = before - entry.requests.len();
        entries.held -= removed;
    }

    /// The database changed in a way the feed does not tie to a resource
    /// (a deletion, a feed started over): nothing known is trusted.
    pub fn forget_all(&self) {
        self.restart.end();
        *self.lock() = Entries::default();
    }

    /// This site's runs of each of `resources`, read from the database:
    /// those the journal holds, then those the replies view lists (as its
    /// index stands, after a start, with what the index lacks).
    pub async fn read_runs(&self, resources: &[String]) -> Result<Vec<Vec<Run>>, ReplicatorError> {
        self.restart
            .start(&self.couch, &self.site, &self.journal)
            .await;
        // The journal first: a reply it drops meanwhile is in CouchDB
        // before it is dropped, so the view finds it.
        let journaled: Vec<Vec<Run>> = resources.iter().map(|r| self.journal.ran(r)).collect();
        loop {
            let stale = self.restart.is_stale();
            let rows = queries::runs_of(&self.couch, &self.site, resources, stale).await?;
            let mut by_resource: HashMap<&str, Vec<Run>> = HashMap::new();
            for (resource, run) in &rows {
                by_resource
                    .entry(resource.as_str())
                    .or_default()
                    .push(run.clone());
            }
            let mut read = Vec::with_capacity(resources.len());
            for (resource, journaled) in resources.iter().zip(&journaled) {
                let mut runs = by_resource
                    .get(resource.as_str())
                    .cloned()
                    .unwrap_or_default();
                merge_runs(&mut runs, journaled);
                if stale && !self.restart.complete(resource, &mut runs) {
                    break;
                }
                read.push(runs);
            }
            // Else reads became fresh during this one: read again.
            if read.len() == resources.len() {
                return Ok(read);
            }
        }
    }

    /// Whether this site's runs are read from the replies view as its
    /// index stands.
    pub fn reads_stale(&self) -> bool {
        self.restart.is_stale()
    }

    /// Documents arrived and the runner is idle, or reads are stale: the
    /// replies view is worth indexing (see [`Ledger::index`]).
    pub fn want_index(&self) {
        self.index_wanted.notify_one();
    }

    /// Returns once the replies view is worth indexing.
    pub async fn index_wanted(&self) {
        self.index_wanted.notified().await;
    }

    /// Brings the replies view's index up to date, then reads it fresh
    /// (see [`Restart::index`]); for when the runner is idle.
    pub async fn index(&self) {
        self.restart.index(&self.couch).await;
    }
}

impl Entries {
    /// Applies `change` to what is known of `request`, creating it if
    /// needed, and makes room.
    fn request(&mut self, resource: &str, request: &str, change: impl FnOnce(&mut Known)) {
        let mut added = false;
        let known = self.entry(resource).requests.entry(request.to_owned());
        change(known.or_insert_with(|| {
            added = true;
            Known::default()
        }));
        self.held += usize::from(added);
        self.evict();
    }

    /// The entry of `resource`, made the most recently used, created if
    /// missing.
    fn entry(&mut self, resource: &str) -> &mut Resource {
        if self.by_resource.get_mut(resource).is_none() {
            self.held += 1;
        }
        self.by_resource
            .use_or_insert_with(resource, Resource::default)
    }

    /// Drops the least recently used resources while over the budget.
    fn evict(&mut self) {
        while self.held > MAX_FACTS {
            let Some((_, evicted)) = self.by_resource.pop_oldest() else {
                return;
            };
            self.held -= evicted.facts();
        }
    }
}

fn add_reply(seen: &mut Seen, site: &str, reads_history: bool) {
    match seen.replies.iter_mut().find(|r| r.site == site) {
        // A site that rewrote its reply: the newest capability counts.
        Some(reply) => reply.reads_history = reads_history,
        None => seen.replies.push(SeenReply {
            site: site.to_owned(),
            reads_history,
        }),
    }
}

/// Adds to `runs` those of `more` it lacks.
fn merge_runs(runs: &mut Vec<Run>, more: &[Run]) {
    for run in more {
        if !runs.contains(run) {
            runs.push(run.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use cheops_model::Timestamp;

    use super::*;
    use crate::testing::Scratch;

    /// A ledger of site `a`, its journal in a directory removed when the
    /// test ends.
    struct Fixture {
        ledger: Ledger,
        _dir: Scratch,
    }

    impl std::ops::Deref for Fixture {
        type Target = Ledger;
        fn deref(&self) -> &Ledger {
            &self.ledger
        }
    }

    fn ledger(name: &str) -> Fixture {
        let dir = Scratch::new(&format!("ledger-{name}"));
        let couch = CouchClient::new("http://127.0.0.1:9/db").unwrap();
        let ledger = Ledger::new("a".into(), couch, Journal::open(&dir, "a").unwrap());
        Fixture { ledger, _dir: dir }
    }

    fn at(nanos: u32) -> Timestamp {
        format!("2026-01-01T00:00:00.{nanos:09}Z").parse().unwrap()
    }

    fn reply(site: &str, request: &str, nanos: u32) -> ReplyDocument {
        ReplyDocument {
            site: site.into(),
            request_id: request.into(),
            resource_id: "r".into(),
            execution_time: at(nanos),
            reads_history: true,
            ..ReplyDocument::default()
        }
    }

    fn runs(ledger: &Ledger) -> Option<Vec<String>> {
        let runs = ledger.runs("r")?.into_iter().map(|run| run.request);
        Some(runs.collect())
    }

    /// `request` of `r`: the sites that replied, sorted, whether its
    /// history is here, and whether that is complete.
    fn known(ledger: &Ledger, request: &str) -> Option<(Vec<String>, bool, bool)> {
        ledger.known("r", request).map(|k| {
            let mut sites: Vec<String> = k.seen.replies.into_iter().map(|r| r.site).collect();
            sites.sort();
            (sites, k.seen.history, k.complete)
        })
    }

    /// The facts counted are the facts held.
    fn check_held(ledger: &Ledger) {
        let mut entries = ledger.lock();
        let held = entries.held;
        let mut counted = 0;
        while let Some((_, resource)) = entries.by_resource.pop_oldest() {
            counted += resource.facts();
        }
        assert_eq!(held, counted);
    }

    #[test]
    fn a_read_is_kept_and_extended_by_what_the_site_journals() {
        let ledger = ledger("kept");
        assert_eq!(runs(&ledger), None, "unknown: read the view");
        ledger.fill("r", &[Run::of(&reply("a", "x", 1))]);
        ledger.ran(&reply("a", "y", 2));
        ledger.saw_reply(&reply("a", "y", 2));
        assert_eq!(runs(&ledger), Some(vec!["x".into(), "y".into()]));
        check_held(&ledger);
    }

    #[test]
    fn a_reply_of_this_site_the_ledger_lacks_makes_its_runs_unknown() {
        let ledger = ledger("lacks");
        ledger.runs("r");
        ledger.fill("r", &[Run::of(&reply("a", "x", 1))]);
        ledger.saw_reply(&reply("b", "x", 9));
        assert!(
            runs(&ledger).is_some(),
            "another site's reply changes nothing"
        );
        ledger.saw_reply(&reply("a", "x", 9));
        assert_eq!(runs(&ledger), None);
        check_held(&ledger);
    }

    #[test]
    fn a_reply_seen_during_a_read_discards_the_read() {
        let ledger = ledger("during");
        assert!(ledger.runs("r").is_none());
        ledger.saw_reply(&reply("a", "x", 1));
        ledger.fill("r", &[]);
        assert_eq!(runs(&ledger), None);
        ledger.fill("r", &[Run::of(&reply("a", "x", 1))]);
        assert_eq!(runs(&ledger), Some(vec!["x".into()]));
        assert!(ledger.runs("r").is_some());
        ledger.ran(&reply("a", "y", 2));
        ledger.forget_runs("r");
        assert!(ledger.runs("r").is_none());
        ledger.ran(&reply("a", "z", 3));
        ledger.fill("r", &[]);
        assert_eq!(runs(&ledger), None, "a run journaled during the read");
        check_held(&ledger);
    }

    #[test]
    fn what_was_forgotten_is_not_filled_back() {
        let ledger = ledger("forgotten");
        ledger.runs("r");
        ledger.submitting("r", "q");
        ledger.forget_all();
        ledger.fill("r", &[]);
        assert_eq!(runs(&ledger), None);
        assert_eq!(known(&ledger, "q"), None);
        check_held(&ledger);
    }

    #[test]
    fn a_submitted_request_is_complete_and_gathers_what_the_feed_brings() {
        let ledger = ledger("submitted");
        assert_eq!(known(&ledger, "q"), None);
        ledger.submitting("r", "q");
        assert_eq!(known(&ledger, "q"), Some((vec![], false, true)));
        let histories = ledger.histories();
        ledger.saw_history("r", "q");
        assert!(histories.has_changed().unwrap(), "waiting passes wake");
        ledger.saw_reply(&reply("b", "q", 1));
        ledger.saw_reply(&reply("a", "q", 2));
        ledger.saw_reply(&reply("a", "q", 3));
        let both = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(known(&ledger, "q"), Some((both, true, true)));
        check_held(&ledger);
    }

    #[test]
    fn a_reply_carrying_its_operation_stands_for_the_history_document() {
        let ledger = ledger("carrier");
        ledger.submitting("r", "q");
        let histories = ledger.histories();
        ledger.saw_reply(&reply("b", "q", 1));
        assert_eq!(known(&ledger, "q"), Some((vec!["b".into()], false, true)));
        assert!(!histories.has_changed().unwrap());
        let carrier = ReplyDocument {
            operation: Some(cheops_model::Operation {
                request_id: "q".into(),
                ..cheops_model::Operation::default()
            }),
            ..reply("a", "q", 2)
        };
        ledger.saw_reply(&carrier);
        let both = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(known(&ledger, "q"), Some((both, true, true)));
        assert!(histories.has_changed().unwrap(), "waiting passes wake");
        check_held(&ledger);
    }

    #[test]
    fn what_the_feed_alone_brings_is_incomplete_until_the_view_answers() {
        let ledger = ledger("feed");
        ledger.saw_reply(&reply("a", "q", 1));
        assert_eq!(known(&ledger, "q"), Some((vec!["a".into()], false, false)));
        let view = Seen {
            replies: vec![SeenReply {
                site: "b".into(),
                reads_history: true,
            }],
            history: true,
        };
        ledger.learnt("r", "q", &view);
        let both = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(known(&ledger, "q"), Some((both, true, true)));
        ledger.pruned("r", ["q"]);
        assert_eq!(known(&ledger, "q"), None);
        check_held(&ledger);
    }

    #[test]
    fn the_least_recently_used_resources_make_room() {
        let ledger = ledger("room");
        for i in 0..=MAX_FACTS {
            ledger.submitting(&format!("r{}", i % 1000), &format!("q{i}"));
        }
        ledger.runs("big");
        let big: Vec<Run> = (0..MAX_FACTS as u32)
            .map(|n| Run::of(&reply("a", "x", n)))
            .collect();
        ledger.fill("big", &big);
        assert!(ledger.lock().held <= MAX_FACTS);
        ledger.submitting("last", "q");
        assert!(ledger.known("last", "q").is_some(), "the newest stays");
        check_held(&ledger);
    }
}

//! What the changes feed showed lately of each request's replies and
//! history document: deciding what to prune at `/exec` then needs no query
//! of the requests view while the feed has seen it all, which is the
//! steady state (CONSISTENCY.md, "Pruning").
//!
//! Invariant: a request marked *complete* holds everything the database
//! holds about it. It becomes complete in two ways only:
//! - this node is about to store it, under a request id it has just drawn,
//!   so the database holds nothing about it yet;
//! - a query of the requests view answered for it: what the database held
//!   then is merged in.
//!
//! Either way the follower's feed was already delivering: everything stored
//! later reaches [`Sightings::reply`] or [`Sightings::history`], since a
//! resumed feed starts from the last change it handed over. Whatever the feed
//! cannot tie to a request (a deletion, a feed started over) empties the
//! whole map through [`Sightings::forget_all`]. An incomplete request's
//! sightings are only ever added to, so they can still prove a request
//! prunable, never the opposite. Memory is bounded: the resources seen least
//! recently go first, and a pruned request is forgotten.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::by_use::ByUse;
use crate::consistency::{Seen, SeenReply};

/// Requests held in all resources at most.
const MAX_REQUESTS: usize = 65_536;

/// What the feed showed of requests, by resource.
#[derive(Debug, Default)]
pub struct Sightings {
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    /// Each resource's requests.
    by_resource: ByUse<HashMap<String, Sighting>>,
    /// Requests held in all resources.
    held: usize,
}

/// One request's replies and history document, as far as seen.
#[derive(Debug, Default, Clone)]
struct Sighting {
    seen: Seen,
    complete: bool,
}

/// What is known of one request: what was seen, and whether that is all
/// the database holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    pub seen: Seen,
    pub complete: bool,
}

impl Sightings {
    fn lock(&self) -> MutexGuard<'_, Entries> {
        // Every critical section leaves the maps consistent before any call
        // that could panic.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A request this node is about to store, under a fresh request id:
    /// nothing is stored about it yet.
    pub fn submitting(&self, resource: &str, request: &str) {
        self.lock().update(resource, request, |s| s.complete = true);
    }

    /// The feed brought `site`'s reply to `request`.
    pub fn reply(&self, resource: &str, request: &str, site: &str, reads_history: bool) {
        self.lock().update(resource, request, |s| {
            add_reply(&mut s.seen, site, reads_history);
        });
    }

    /// The feed brought the history document of `request`.
    pub fn history(&self, resource: &str, request: &str) {
        self.lock()
            .update(resource, request, |s| s.seen.history = true);
    }

    /// The requests view answered `seen` for `request`, queried while the
    /// feed was delivering: the request is now complete.
    pub fn learnt(&self, resource: &str, request: &str, seen: &Seen) {
        self.lock().update(resource, request, |s| {
            for reply in &seen.replies {
                add_reply(&mut s.seen, &reply.site, reply.reads_history);
            }
            s.seen.history |= seen.history;
            s.complete = true;
        });
    }

    /// What is known of `request`, if anything was seen of it.
    pub fn known(&self, resource: &str, request: &str) -> Option<Known> {
        let mut entries = self.lock();
        let sighting = entries.by_resource.get_mut(resource)?.get(request)?;
        Some(Known {
            seen: sighting.seen.clone(),
            complete: sighting.complete,
        })
    }

    /// `requests` of `resource` were pruned: never looked up again.
    pub fn forget<'a>(&self, resource: &str, requests: impl IntoIterator<Item = &'a str>) {
        let mut entries = self.lock();
        let Some(known) = entries.by_resource.get_mut(resource) else {
            return;
        };
        let before = known.len();
        for request in requests {
            known.remove(request);
        }
        let (removed, empty) = (before - known.len(), known.is_empty());
        entries.held -= removed;
        if empty {
            entries.by_resource.remove(resource);
        }
    }

    /// The database changed in a way the feed does not tie to a request.
    pub fn forget_all(&self) {
        *self.lock() = Entries::default();
    }
}

impl Entries {
    /// Applies `change` to `request`'s sighting, creating it if needed, and
    /// makes room within [`MAX_REQUESTS`].
    fn update(&mut self, resource: &str, request: &str, change: impl FnOnce(&mut Sighting)) {
        let known = self.by_resource.use_or_insert_with(resource, HashMap::new);
        let sighting = known.entry(request.to_owned()).or_insert_with(|| {
            self.held += 1;
            Sighting::default()
        });
        change(sighting);
        while self.held > MAX_REQUESTS {
            let Some((_, evicted)) = self.by_resource.pop_oldest() else {
                break;
            };
            self.held -= evicted.len();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `request` of resource `r`: the sites that replied, sorted, whether
    /// its history is there, and whether that is complete.
    fn known(s: &Sightings, request: &str) -> Option<(Vec<String>, bool, bool)> {
        s.known("r", request).map(|k| {
            let mut sites: Vec<String> = k.seen.replies.into_iter().map(|r| r.site).collect();
            sites.sort();
            (sites, k.seen.history, k.complete)
        })
    }

    #[test]
    fn a_submitted_request_is_complete_and_gathers_what_the_feed_brings() {
        let s = Sightings::default();
        assert_eq!(known(&s, "q"), None);
        s.submitting("r", "q");
        assert_eq!(known(&s, "q"), Some((vec![], false, true)));
        s.history("r", "q");
        s.reply("r", "q", "b", true);
        s.reply("r", "q", "a", true);
        s.reply("r", "q", "a", true);
        assert_eq!(
            known(&s, "q"),
            Some((vec!["a".into(), "b".into()], true, true))
        );
    }

    #[test]
    fn what_the_feed_alone_brings_is_incomplete_until_the_view_answers() {
        let s = Sightings::default();
        s.reply("r", "q", "a", true);
        assert_eq!(known(&s, "q"), Some((vec!["a".into()], false, false)));
        let view = Seen {
            replies: vec![SeenReply {
                site: "b".into(),
                reads_history: true,
            }],
            history: true,
        };
        s.learnt("r", "q", &view);
        assert_eq!(
            known(&s, "q"),
            Some((vec!["a".into(), "b".into()], true, true))
        );
    }

    #[test]
    fn forgetting_pruned_requests_and_everything() {
        let s = Sightings::default();
        s.submitting("r", "q");
        s.submitting("r", "p");
        s.forget("r", ["q"]);
        assert_eq!(known(&s, "q"), None);
        assert!(known(&s, "p").is_some());
        s.forget("r", ["p"]);
        assert_eq!(s.lock().by_resource.len(), 0);
        s.submitting("r", "p");
        s.forget_all();
        assert_eq!(known(&s, "p"), None);
    }

    #[test]
    fn the_least_recently_seen_resources_make_room() {
        let s = Sightings::default();
        for i in 0..=MAX_REQUESTS {
            s.submitting(&format!("r{}", i % 1000), &format!("q{i}"));
        }
        let mut entries = s.lock();
        assert!(entries.held <= MAX_REQUESTS);
        // The resource just written stays.
        let last = format!("r{}", MAX_REQUESTS % 1000);
        assert!(entries.by_resource.get_mut(&last).is_some());
        let mut held = 0;
        while let Some((_, known)) = entries.by_resource.pop_oldest() {
            held += known.len();
        }
        assert_eq!(held, entries.held);
    }
}

//! What this site has run, per resource, as its replies record it (request
//! id and time of each), kept for the resources handled lately: a pass then
//! knows it without querying the replies view, whose cost grows with the
//! resource's history.
//!
//! Invariant: a known entry holds exactly this site's replies to the
//! resource that are stored, or about to be (in the journal, until CouchDB
//! takes them). The runner is their only writer and adds each reply once it
//! is journaled, before writing it (the feed may echo a reply before the
//! write returns), and forgets the entry when a reply could be neither
//! journaled nor written. Anything else — a reply of this site that the entry lacks
//! (another writer, a replication bringing back a lost one), a deletion —
//! makes the follower forget, and the next pass queries the view again.
//! Memory is bounded: the least recently used entries go first.

use std::sync::{Mutex, MutexGuard, PoisonError};

use cheops_model::{ReplyDocument, Timestamp};

use crate::by_use::ByUse;

/// Replies held in all entries at most.
const MAX_REPLIES: usize = 20_000;
/// Entries at most.
const MAX_RESOURCES: usize = 4_096;

/// A reply of this site: the request it ran, when, and whether it began a
/// rebuild.
pub type Ran = crate::consistency::Run;

/// What a reply of this site records of its run.
pub fn ran_of(reply: &ReplyDocument) -> Ran {
    Ran {
        request: reply.request_id.clone(),
        time: reply.execution_time,
        rebuild: reply.rebuild,
    }
}

/// The replies of this site, for the resources handled lately.
#[derive(Debug, Default)]
pub struct Replied {
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    by_resource: ByUse<State>,
    /// Replies held in known entries.
    held: usize,
}

#[derive(Debug)]
enum State {
    /// A pass is reading the view; `stale` once a reply of this site has
    /// been seen meanwhile, which the answer may or may not hold.
    Loading {
        stale: bool,
    },
    Known(Vec<Ran>),
}

impl Replied {
    fn lock(&self) -> MutexGuard<'_, Entries> {
        // Every critical section leaves the maps consistent before any call
        // that could panic.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// This site's replies to `resource`, if known. If not, the caller reads
    /// them from the database and hands them to [`Replied::fill`].
    pub fn get(&self, resource: &str) -> Option<Vec<Ran>> {
        let mut entries = self.lock();
        let loading = State::Loading { stale: false };
        match entries.by_resource.use_or_insert_with(resource, || loading) {
            State::Known(ran) => return Some(ran.clone()),
            // A read starting now sees every reply seen so far.
            state => *state = State::Loading { stale: false },
        }
        entries.evict();
        None
    }

    /// Keeps what a read of the database found, unless a reply arrived
    /// during the read or the entry was forgotten meanwhile.
    pub fn fill(&self, resource: &str, ran: &[Ran]) {
        let mut entries = self.lock();
        let Some(state) = entries.by_resource.get_mut(resource) else {
            return;
        };
        if !matches!(state, State::Loading { stale: false }) {
            entries.remove(resource);
            return;
        }
        *state = State::Known(ran.to_vec());
        entries.held += ran.len();
        entries.evict();
    }

    /// Adds replies this site is about to write.
    pub fn add(&self, resource: &str, ran: &[Ran]) {
        let mut entries = self.lock();
        if let Some(State::Known(known)) = entries.by_resource.get_mut(resource) {
            known.extend_from_slice(ran);
            entries.held += ran.len();
            entries.evict();
        }
    }

    /// Notes a reply of this site stored in the database: an entry that
    /// lacks it no longer describes the database.
    pub fn saw(&self, resource: &str, request: &str, time: Timestamp) {
        let mut entries = self.lock();
        match entries.by_resource.get_mut(resource) {
            Some(State::Known(known))
                if !known
                    .iter()
                    .any(|ran| ran.request == request && ran.time == time) =>
            {
                entries.remove(resource);
            }
            Some(State::Loading { stale }) => *stale = true,
            _ => {}
        }
    }

    /// Forgets what is known of `resource`.
    pub fn forget(&self, resource: &str) {
        self.lock().remove(resource);
    }

    /// Forgets everything: the database changed in a way that cannot be
    /// traced to a resource.
    pub fn forget_all(&self) {
        *self.lock() = Entries::default();
    }
}

impl Entries {
    fn remove(&mut self, resource: &str) {
        if let Some(State::Known(known)) = self.by_resource.remove(resource) {
            self.held -= known.len();
        }
    }

    /// Drops the least recently used entries while over a bound.
    fn evict(&mut self) {
        while self.held > MAX_REPLIES || self.by_resource.len() > MAX_RESOURCES {
            let Some((_, state)) = self.by_resource.pop_oldest() else {
                return;
            };
            if let State::Known(known) = state {
                self.held -= known.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(nanos: u32) -> Timestamp {
        format!("2026-01-01T00:00:00.{nanos:09}Z").parse().unwrap()
    }

    fn ran(request: &str, nanos: u32) -> Ran {
        Ran {
            request: request.to_owned(),
            time: at(nanos),
            rebuild: false,
        }
    }

    fn known(replied: &Replied, resource: &str) -> Option<Vec<String>> {
        replied
            .get(resource)
            .map(|ran| ran.into_iter().map(|ran| ran.request).collect())
    }

    #[test]
    fn a_read_is_kept_and_extended_by_what_the_site_writes() {
        let replied = Replied::default();
        assert_eq!(known(&replied, "r"), None, "unknown: read the view");
        replied.fill("r", &[ran("a", 1)]);
        replied.add("r", &[ran("b", 2)]);
        replied.saw("r", "b", at(2));
        assert_eq!(known(&replied, "r"), Some(vec!["a".into(), "b".into()]));
    }

    #[test]
    fn a_reply_the_entry_lacks_makes_it_unknown() {
        let replied = Replied::default();
        replied.get("r");
        replied.fill("r", &[ran("a", 1)]);
        replied.saw("r", "a", at(9));
        assert_eq!(known(&replied, "r"), None);
    }

    #[test]
    fn a_reply_seen_during_the_read_discards_the_read() {
        let replied = Replied::default();
        assert!(replied.get("r").is_none());
        replied.saw("r", "a", at(1));
        replied.fill("r", &[]);
        assert_eq!(known(&replied, "r"), None);
        replied.fill("r", &[ran("a", 1)]);
        assert_eq!(known(&replied, "r"), Some(vec!["a".into()]));
    }

    #[test]
    fn forgotten_entries_are_not_filled_back() {
        let replied = Replied::default();
        replied.get("r");
        replied.forget_all();
        replied.fill("r", &[ran("a", 1)]);
        assert_eq!(known(&replied, "r"), None);
        replied.fill("r", &[ran("a", 1)]);
        replied.forget("r");
        assert_eq!(known(&replied, "r"), None);
    }

    #[test]
    fn the_least_recently_used_entries_go_first() {
        let replied = Replied::default();
        for n in 0..=MAX_RESOURCES {
            let resource = n.to_string();
            replied.get(&resource);
            replied.fill(&resource, &[ran("a", 1)]);
        }
        assert_eq!(replied.lock().by_resource.len(), MAX_RESOURCES);
        assert_eq!(known(&replied, "0"), None, "the oldest went");
        assert!(known(&replied, &MAX_RESOURCES.to_string()).is_some());

        let big: Vec<Ran> = (0..MAX_REPLIES as u32).map(|n| ran("x", n)).collect();
        replied.get("big");
        replied.fill("big", &big);
        assert!(replied.lock().held <= MAX_REPLIES);
        assert_eq!(replied.lock().by_resource.len(), 1, "only the newest fits");
    }
}

//! The node's changes feed: what happened to its resources, in the order
//! this node learnt it, each event numbered. The number is the resume
//! token: a client that read up to `seq` asks for what follows it, after a
//! daemon restart too.
//!
//! Events are derived from the database's changes as the follower hands
//! them over, and appended to a file in the data directory (one JSON
//! object per line) as well as kept in memory. Each event has a key (what
//! it is about), and an event whose key is already in the feed is not
//! added again: the changes a restarted follower reads again add nothing.
//! A reply that completes the set of the resource's sites adds an
//! `operation-complete` event after it, once; an operation announced, then
//! refused in the end, is followed by `operation-refused`.
//!
//! The file is synced before the follower saves its checkpoint, so a
//! change is never skipped for good: events lost with the machine are
//! derived again from the changes after the checkpoint. The feed keeps the
//! last [`RETAIN`] events; a token older than the oldest is refused as gone.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use cheops_model::{Status, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::warn;

use crate::node::journal::site_file;
use crate::ReplicatorError;

/// How many events the feed keeps.
pub const RETAIN: usize = 50_000;

/// The most output bytes of a reply an event carries.
pub const OUTPUT_CAP: usize = 1024;

/// What an event says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventType {
    /// An operation was accepted (by any site) and reached this node.
    Operation,
    /// A site ran an operation and its reply reached this node.
    Reply,
    /// Every site of the resource has replied to the operation.
    OperationComplete,
    /// The operation announced was refused in the end (its `/exec`
    /// answered an error): it never runs.
    OperationRefused,
    /// A site ran the block again from its start, from this operation on
    /// (a rebuild, CONSISTENCY.md, Rule 3): its commands ran there again.
    Rerun,
    /// This node merged concurrent revisions of the resource into one.
    Merge,
    /// This node's `/exec` took the operation's payload out of the block:
    /// every site ran it (CONSISTENCY.md, "Pruning").
    Pruned,
}

impl EventType {
    /// Its name, as the feed and the hooks write it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Operation => "operation",
            EventType::Reply => "reply",
            EventType::OperationComplete => "operation-complete",
            EventType::OperationRefused => "operation-refused",
            EventType::Rerun => "rerun",
            EventType::Merge => "merge",
            EventType::Pruned => "pruned",
        }
    }
}

/// One thing that happened to a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Its place in this node's feed: the token to resume after it.
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub resource: String,
    /// The operation's request id (empty for `merge`).
    pub request: String,
    /// When this node added it.
    pub time: Timestamp,
    /// The sites of the resource.
    pub locations: Vec<String>,
    /// The site that replied (`reply`, `rerun`), that accepted the
    /// operation (`operation`, `operation-refused`; absent when the
    /// operation's history document does not say), or this node's
    /// (`merge`, `pruned`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Its reply's status (`reply`, `rerun`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// When the site ran it (`reply`, `rerun`): a site that runs an
    /// operation again replies again, at another time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ran_at: Option<Timestamp>,
    /// The start of the reply's output, at most [`OUTPUT_CAP`] bytes
    /// (`reply`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// The operation's type (`operation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op_type: Option<String>,
    /// What each site replied, its last reply for a site that ran it again
    /// (`operation-complete`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub statuses: BTreeMap<String, Status>,
    /// The revision the merge wrote (`merge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<String>,
    /// How many concurrent revisions it merged into it (`merge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged: Option<usize>,
}

impl Event {
    /// An event of `kind` about `request` of `resource`, not numbered yet.
    pub fn new(kind: EventType, resource: &str, request: &str, locations: &[String]) -> Self {
        Event {
            seq: 0,
            kind,
            resource: resource.to_owned(),
            request: request.to_owned(),
            time: Timestamp::now(),
            locations: locations.to_vec(),
            site: None,
            status: None,
            ran_at: None,
            output: None,
            op_type: None,
            statuses: BTreeMap::new(),
            rev: None,
            merged: None,
        }
    }

    /// What it is about: two events with one key are one event, in this
    /// feed and in every other node's.
    pub fn key(&self) -> String {
        let Event {
            kind,
            resource,
            request,
            ..
        } = self;
        match kind {
            EventType::Operation => format!("operation\n{resource}\n{request}"),
            EventType::OperationComplete => format!("complete\n{resource}\n{request}"),
            EventType::OperationRefused => format!("refused\n{resource}\n{request}"),
            EventType::Pruned => format!("pruned\n{resource}\n{request}"),
            EventType::Merge => format!(
                "merge\n{resource}\n{}",
                self.rev.as_deref().unwrap_or_default()
            ),
            EventType::Reply | EventType::Rerun => format!(
                "{}\n{resource}\n{request}\n{}\n{}",
                kind.as_str(),
                self.site.as_deref().unwrap_or_default(),
                self.ran_at.map(|t| t.to_string()).unwrap_or_default()
            ),
        }
    }
}

/// `output` cut to at most [`OUTPUT_CAP`] bytes, on a character boundary.
pub fn cap_output(output: &str) -> String {
    let mut end = output.len().min(OUTPUT_CAP);
    while !output.is_char_boundary(end) {
        end -= 1;
    }
    output[..end].to_owned()
}

/// A page of the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The events after the token asked for, oldest first.
    pub events: Vec<Event>,
    /// The token to ask with next: the last event's, or the feed's last
    /// when none matched.
    pub last_seq: u64,
}

/// The node's feed; clones share it.
#[derive(Clone)]
pub struct Feed {
    inner: Arc<Inner>,
}

struct Inner {
    /// The file, or none for a feed kept in memory alone.
    path: Option<PathBuf>,
    state: Mutex<State>,
    /// The last event's number, for waiting readers.
    last: watch::Sender<u64>,
}

struct State {
    events: VecDeque<Event>,
    keys: HashSet<String>,
    /// What each site replied to a request, as the feed's replies say, by
    /// resource and request.
    replied: HashMap<(String, String), BTreeMap<String, Status>>,
    /// The number of the last event ever added (0 before any).
    last: u64,
    file: Option<File>,
    /// Lines appended since the file was last synced.
    unsynced: bool,
    /// The number of the last event the file holds for sure.
    durable: u64,
}

impl Feed {
    /// Opens (or creates) the feed of `site` in `dir`, reading back the
    /// events a previous run kept. A line cut short, or unreadable, is
    /// skipped: the feed is derived from the database, never the only
    /// copy of anything.
    pub fn open(dir: &Path, site: &str) -> Result<Feed, ReplicatorError> {
        let path = site_file(dir, "changes", site);
        let failed = |source: std::io::Error| ReplicatorError::Feed {
            path: path.display().to_string(),
            source,
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(error) => return Err(failed(error)),
        };
        let mut events = VecDeque::new();
        let mut skipped = 0usize;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Event>(line) {
                Ok(event)
                    if events
                        .back()
                        .is_none_or(|last: &Event| last.seq < event.seq) =>
                {
                    events.push_back(event);
                }
                _ => skipped += 1,
            }
        }
        if skipped > 0 {
            warn!(site, path = %path.display(), skipped, "unreadable lines of the changes feed skipped");
        }
        // Outputs are in it: readable by the node's user only, as the journal.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(failed)?;
        let feed = Feed::with(Some(path), Some(file), events);
        // A file read with skipped lines, or too long, is written anew.
        if skipped > 0 || feed.state().events.len() > RETAIN {
            feed.compact()?;
        }
        Ok(feed)
    }

    /// A feed kept in memory alone (for tests of the HTTP layers).
    pub fn in_memory() -> Feed {
        Feed::with(None, None, VecDeque::new())
    }

    fn with(path: Option<PathBuf>, file: Option<File>, events: VecDeque<Event>) -> Feed {
        let last = events.back().map_or(0, |e| e.seq);
        let keys = events.iter().map(Event::key).collect();
        let replied = replied(&events);
        Feed {
            inner: Arc::new(Inner {
                path,
                state: Mutex::new(State {
                    events,
                    keys,
                    replied,
                    last,
                    file,
                    unsynced: false,
                    durable: last,
                }),
                last: watch::channel(last).0,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Each critical section leaves events, keys and file in step.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `event` under the next number, unless an event with its key is
    /// in the feed, and after a reply the `operation-complete` it makes;
    /// returns how many events were added.
    pub fn append(&self, mut event: Event) -> Result<usize, ReplicatorError> {
        let mut state = self.state();
        if event.kind == EventType::OperationRefused {
            let announced = Event::new(EventType::Operation, &event.resource, &event.request, &[]);
            if !state.keys.contains(&announced.key()) {
                return Ok(0);
            }
            // Refused where it was accepted.
            event.site = state
                .events
                .iter()
                .rev()
                .find(|e| e.kind == EventType::Operation && e.key() == announced.key())
                .and_then(|e| e.site.clone());
        }
        let complete = (event.kind == EventType::Reply).then(|| {
            Event::new(
                EventType::OperationComplete,
                &event.resource,
                &event.request,
                &event.locations,
            )
        });
        let mut added = usize::from(self.add(&mut state, event)?);
        if let Some(mut complete) = complete {
            let key = (complete.resource.clone(), complete.request.clone());
            let sites = state.replied.get(&key);
            // A reply naming no site completes nothing.
            let all = !complete.locations.is_empty()
                && sites
                    .is_some_and(|sites| complete.locations.iter().all(|l| sites.contains_key(l)));
            if all {
                complete.statuses = sites.cloned().unwrap_or_default();
                added += usize::from(self.add(&mut state, complete)?);
            }
        }
        let (seq, full) = (state.last, state.events.len() > 2 * RETAIN);
        drop(state);
        if full {
            // The events are added all the same: the file only grows.
            if let Err(error) = self.compact() {
                warn!(%error, "the changes feed could not be compacted");
            }
        }
        if added > 0 {
            self.inner.last.send_replace(seq);
        }
        Ok(added)
    }

    /// Appends `event`; a feed that cannot be written is logged, not
    /// fatal: replication and runs go on without it.
    pub fn note(&self, event: Event) {
        if let Err(error) = self.append(event) {
            warn!(%error, "changes feed event lost");
        }
    }

    /// Adds `event` unless its key is in the feed; whether it did.
    fn add(&self, state: &mut State, mut event: Event) -> Result<bool, ReplicatorError> {
        let key = event.key();
        if state.keys.contains(&key) {
            return Ok(false);
        }
        event.seq = state.last + 1;
        if let Some(file) = state.file.as_mut() {
            let mut line =
                serde_json::to_vec(&event).map_err(|source| ReplicatorError::Decode {
                    context: "a changes feed event".into(),
                    source,
                })?;
            line.push(b'\n');
            file.write_all(&line)
                .map_err(|source| self.failed(source))?;
            state.unsynced = true;
        }
        state.last = event.seq;
        state.keys.insert(key);
        note_reply(&mut state.replied, &event);
        state.events.push_back(event);
        Ok(true)
    }

    /// Makes every event added so far durable (on a blocking thread).
    pub async fn sync(&self) -> Result<(), ReplicatorError> {
        let feed = self.clone();
        tokio::task::spawn_blocking(move || feed.sync_now())
            .await
            .unwrap_or_else(|join| Err(self.failed(std::io::Error::other(join))))
    }

    fn sync_now(&self) -> Result<(), ReplicatorError> {
        let mut state = self.state();
        if state.unsynced {
            if let Some(file) = state.file.as_ref() {
                file.sync_data().map_err(|source| self.failed(source))?;
            }
            state.unsynced = false;
        }
        state.durable = state.last;
        Ok(())
    }

    /// The number of the last event made durable by [`Feed::sync`]: the
    /// events up to it keep their numbers across a crash, those after it
    /// may be derived again under other numbers.
    pub fn durable(&self) -> u64 {
        self.state().durable
    }

    /// The events after `since` (every one kept when `None`), of
    /// `resource` alone when given, at most `limit` (at least one); `None`
    /// when events after `since` are no longer kept, or `since` is not a
    /// token of this feed.
    pub fn read(&self, since: Option<u64>, resource: Option<&str>, limit: usize) -> Option<Page> {
        let state = self.state();
        let first = state.events.front().map_or(state.last + 1, |e| e.seq);
        let since = match since {
            // From the oldest kept.
            None => first.saturating_sub(1),
            // Dropped since, or from a feed this node no longer has.
            Some(since) if since + 1 < first || since > state.last => return None,
            Some(since) => since,
        };
        let start = state.events.partition_point(|e| e.seq <= since);
        let mut events = Vec::new();
        let mut last_seq = state.last;
        for event in state.events.range(start..) {
            if resource.is_none_or(|r| r == event.resource) {
                events.push(event.clone());
                if events.len() >= limit {
                    last_seq = event.seq;
                    break;
                }
            }
        }
        Some(Page { events, last_seq })
    }

    /// The last `limit` events (of `resource` alone when given), newest
    /// first: what a page showing the feed live starts from.
    pub fn latest(&self, resource: Option<&str>, limit: usize) -> Vec<Event> {
        let state = self.state();
        state
            .events
            .iter()
            .rev()
            .filter(|e| resource.is_none_or(|r| r == e.resource))
            .take(limit)
            .cloned()
            .collect()
    }

    /// The number of the last event, as it changes.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.inner.last.subscribe()
    }

    /// Keeps the last [`RETAIN`] events, and rewrites the file with them.
    fn compact(&self) -> Result<(), ReplicatorError> {
        let mut state = self.state();
        while state.events.len() > RETAIN {
            if let Some(event) = state.events.pop_front() {
                state.keys.remove(&event.key());
            }
        }
        state.replied = replied(&state.events);
        let Some(path) = self.inner.path.as_ref() else {
            return Ok(());
        };
        let fresh = path.with_extension("jsonl.new");
        let mut text = Vec::new();
        for event in &state.events {
            if let Ok(line) = serde_json::to_vec(event) {
                text.extend_from_slice(&line);
                text.push(b'\n');
            }
        }
        let write = || -> std::io::Result<File> {
            let mut file = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(&fresh)?;
            file.write_all(&text)?;
            file.sync_data()?;
            std::fs::rename(&fresh, path)?;
            OpenOptions::new().append(true).open(path)
        };
        state.file = Some(write().map_err(|source| self.failed(source))?);
        state.unsynced = false;
        state.durable = state.last;
        Ok(())
    }

    fn failed(&self, source: std::io::Error) -> ReplicatorError {
        ReplicatorError::Feed {
            path: self
                .inner
                .path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            source,
        }
    }
}

/// What each site replied to each request, as `events` say.
fn replied(events: &VecDeque<Event>) -> HashMap<(String, String), BTreeMap<String, Status>> {
    let mut replied = HashMap::new();
    for event in events {
        note_reply(&mut replied, event);
    }
    replied
}

fn note_reply(replied: &mut HashMap<(String, String), BTreeMap<String, Status>>, event: &Event) {
    if let (EventType::Reply, Some(site), Some(status)) = (event.kind, &event.site, event.status) {
        replied
            .entry((event.resource.clone(), event.request.clone()))
            .or_default()
            .insert(site.clone(), status);
    }
}

#[cfg(test)]
mod tests;

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
//!
//! Memory holds the newest [`TAIL`] events whole; older ones are read back
//! from the file (memory keeps where each line starts, and a hash of each
//! key), so the daemon's memory does not follow the feed's length.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
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

/// How many of the newest events a feed with a file holds in memory.
pub const TAIL: usize = 1_000;

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
    /// operation does not say), or this node's
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

    /// The `operation` event of `request`, of type `op_type`, accepted by
    /// `site` (when known).
    pub fn accepted(
        resource: &str,
        request: &str,
        locations: &[String],
        op_type: String,
        site: Option<String>,
    ) -> Self {
        let mut event = Event::new(EventType::Operation, resource, request, locations);
        event.op_type = Some(op_type);
        event.site = site;
        event
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
    /// The newest events: the last [`TAIL`] with a file, all without.
    events: VecDeque<Event>,
    /// With a file, where each event kept starts in it, oldest first.
    lines: VecDeque<Line>,
    /// The file's length.
    len: u64,
    /// A hash of each kept event's key.
    keys: HashSet<u64>,
    /// What each site replied to a request not yet complete, as the
    /// feed's replies say, by resource and request.
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
        // Outputs are in it: readable by the node's user only, as the journal.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(failed)?;
        let feed = Feed::with(Some(path.clone()), Some(file), VecDeque::new());
        let skipped = {
            let mut state = feed.state();
            feed.load(&mut state).map_err(failed)?
        };
        if skipped > 0 {
            warn!(
                site,
                skipped, "unreadable lines of the changes feed skipped"
            );
        }
        // A file read with skipped lines, or too long, is written anew.
        if skipped > 0 || feed.state().lines.len() > RETAIN {
            feed.compact()?;
        }
        Ok(feed)
    }

    /// Reads the file into `state` (its events, their lines, keys and
    /// replies); how many lines were skipped (a last line without its
    /// newline counts, so that the file is written anew).
    fn load(&self, state: &mut State) -> std::io::Result<usize> {
        state.events.clear();
        state.lines.clear();
        state.keys.clear();
        state.replied.clear();
        let mut skipped = 0;
        let mut offset = 0;
        let mut complete = HashSet::new();
        if let Some(path) = &self.inner.path {
            let mut reader = BufReader::new(File::open(path)?);
            let mut line = String::new();
            loop {
                line.clear();
                let read = reader.read_line(&mut line)? as u64;
                if read == 0 {
                    break;
                }
                let start = offset;
                offset += read;
                if line.trim().is_empty() {
                    continue;
                }
                if !line.ends_with('\n') {
                    skipped += 1;
                }
                match serde_json::from_str::<Event>(&line) {
                    Ok(event) if state.lines.back().is_none_or(|l| l.seq < event.seq) => {
                        state.lines.push_back(Line {
                            seq: event.seq,
                            offset: start,
                        });
                        state.keys.insert(key_hash(&event.key()));
                        if event.kind == EventType::OperationComplete {
                            complete.insert((event.resource.clone(), event.request.clone()));
                        }
                        note_reply(&mut state.replied, &event);
                        state.events.push_back(event);
                        if state.events.len() > TAIL {
                            state.events.pop_front();
                        }
                    }
                    _ => skipped += 1,
                }
            }
        }
        state
            .replied
            .retain(|request, _| !complete.contains(request));
        state.len = offset;
        state.last = state.lines.back().map_or(0, |l| l.seq);
        state.durable = state.last;
        Ok(skipped)
    }

    /// A feed kept in memory alone (for tests of the HTTP layers).
    pub fn in_memory() -> Feed {
        Feed::with(None, None, VecDeque::new())
    }

    fn with(path: Option<PathBuf>, file: Option<File>, events: VecDeque<Event>) -> Feed {
        let last = events.back().map_or(0, |e| e.seq);
        let keys = events.iter().map(|e| key_hash(&e.key())).collect();
        let replied = replied(&events);
        Feed {
            inner: Arc::new(Inner {
                path,
                state: Mutex::new(State {
                    events,
                    lines: VecDeque::new(),
                    len: 0,
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
            let key = announced.key();
            if !state.keys.contains(&key_hash(&key)) {
                return Ok(0);
            }
            // Refused where it was accepted.
            let is_announced = |e: &Event| e.kind == EventType::Operation && e.key() == key;
            event.site = match state.events.iter().rev().find(|e| is_announced(e)) {
                Some(announced) => announced.site.clone(),
                None => {
                    let mut site = None;
                    self.older(&state, None, |e| {
                        if is_announced(&e) {
                            site = e.site;
                        }
                        true
                    })?;
                    site
                }
            };
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
                // Complete once: what it said is no longer needed.
                state.replied.remove(&key);
            }
        }
        let kept = state.lines.len().max(state.events.len());
        let (seq, full) = (state.last, kept > 2 * RETAIN);
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
        let key = key_hash(&event.key());
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
            if let Err(source) = file.write_all(&line) {
                // Where the next line starts, whatever part of this one
                // was written.
                if let Ok(meta) = file.metadata() {
                    state.len = meta.len();
                }
                return Err(self.failed(source));
            }
            state.lines.push_back(Line {
                seq: event.seq,
                offset: state.len,
            });
            state.len += line.len() as u64;
            state.unsynced = true;
        }
        state.last = event.seq;
        state.keys.insert(key);
        note_reply(&mut state.replied, &event);
        state.events.push_back(event);
        if state.file.is_some() && state.events.len() > TAIL {
            state.events.pop_front();
        }
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
    /// token of this feed. Events older than memory holds are read from the
    /// file under the feed's lock: appends wait meanwhile. A file that
    /// cannot be read is an error, not a token gone: a reader that took it
    /// for one would skip what the file still holds.
    pub fn read(
        &self,
        since: Option<u64>,
        resource: Option<&str>,
        limit: usize,
    ) -> Result<Option<Page>, ReplicatorError> {
        let state = self.state();
        let first = state
            .lines
            .front()
            .map(|l| l.seq)
            .or(state.events.front().map(|e| e.seq))
            .unwrap_or(state.last + 1);
        let since = match since {
            // From the oldest kept.
            None => first.saturating_sub(1),
            // Dropped since, or from a feed this node no longer has.
            Some(since) if since > state.last || since + 1 < first => return Ok(None),
            Some(since) => since,
        };
        let mut events = Vec::new();
        let mut last_seq = state.last;
        let matches = |e: &Event| resource.is_none_or(|r| r == e.resource);
        // Older than memory holds: from the file.
        let older = self.older(&state, Some(since), |event| {
            if matches(&event) {
                last_seq = event.seq;
                events.push(event);
            }
            events.len() < limit
        });
        older?;
        if events.len() >= limit {
            return Ok(Some(Page { events, last_seq }));
        }
        last_seq = state.last;
        let start = state.events.partition_point(|e| e.seq <= since);
        for event in state.events.range(start..) {
            if resource.is_none_or(|r| r == event.resource) {
                events.push(event.clone());
                if events.len() >= limit {
                    last_seq = event.seq;
                    break;
                }
            }
        }
        Ok(Some(Page { events, last_seq }))
    }

    /// The last `limit` events (of `resource` alone when given), newest
    /// first: what a page showing the feed live starts from.
    pub fn latest(&self, resource: Option<&str>, limit: usize) -> Vec<Event> {
        let state = self.state();
        let matches = |e: &Event| resource.is_none_or(|r| r == e.resource);
        let mut latest: Vec<Event> = state
            .events
            .iter()
            .rev()
            .filter(|e| matches(e))
            .take(limit)
            .cloned()
            .collect();
        if latest.len() < limit {
            // The last of the older ones, oldest first.
            let wanted = limit - latest.len();
            let mut older = VecDeque::with_capacity(wanted);
            let read = self.older(&state, None, |event| {
                if matches(&event) {
                    if older.len() == wanted {
                        older.pop_front();
                    }
                    older.push_back(event);
                }
                true
            });
            if let Err(error) = read {
                warn!(%error, "the changes feed's file could not be read");
            }
            latest.extend(older.into_iter().rev());
        }
        latest
    }

    /// Hands `visit` the events kept in the file but not in memory, after
    /// `since` (all when `None`), oldest first, until it answers false.
    fn older(
        &self,
        state: &State,
        since: Option<u64>,
        mut visit: impl FnMut(Event) -> bool,
    ) -> Result<(), ReplicatorError> {
        let (Some(path), Some(in_memory)) = (&self.inner.path, state.events.front()) else {
            return Ok(());
        };
        let start = since.map_or(0, |since| state.lines.partition_point(|l| l.seq <= since));
        let Some(first) = state.lines.get(start).filter(|l| l.seq < in_memory.seq) else {
            return Ok(());
        };
        let mut reader = File::open(path)
            .and_then(|mut file| {
                file.seek(SeekFrom::Start(first.offset))?;
                Ok(BufReader::new(file))
            })
            .map_err(|source| self.failed(source))?;
        let mut line = String::new();
        loop {
            line.clear();
            if reader
                .read_line(&mut line)
                .map_err(|source| self.failed(source))?
                == 0
            {
                return Ok(());
            }
            let Ok(event) = serde_json::from_str::<Event>(&line) else {
                continue;
            };
            if event.seq >= in_memory.seq || !visit(event) {
                return Ok(());
            }
        }
    }

    /// The number of the last event, as it changes.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.inner.last.subscribe()
    }

    /// Keeps the last [`RETAIN`] events, and rewrites the file with them.
    fn compact(&self) -> Result<(), ReplicatorError> {
        let mut state = self.state();
        let Some(path) = self.inner.path.as_ref() else {
            while state.events.len() > RETAIN {
                state.events.pop_front();
            }
            state.keys = state.events.iter().map(|e| key_hash(&e.key())).collect();
            state.replied = replied(&state.events);
            return Ok(());
        };
        let from = state.lines.len().saturating_sub(RETAIN);
        let base = state.lines.get(from).map_or(state.len, |l| l.offset);
        let fresh = path.with_extension("jsonl.new");
        let write = || -> std::io::Result<File> {
            let mut old = File::open(path)?;
            old.seek(SeekFrom::Start(base))?;
            let mut file = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(&fresh)?;
            // Only whole lines: a line cut short at the end is left out.
            for line in BufReader::new(old).split(b'\n') {
                let mut line = line?;
                if serde_json::from_slice::<Event>(&line).is_ok() {
                    line.push(b'\n');
                    file.write_all(&line)?;
                }
            }
            file.sync_data()?;
            std::fs::rename(&fresh, path)?;
            OpenOptions::new().append(true).open(path)
        };
        state.file = Some(write().map_err(|source| self.failed(source))?);
        self.load(&mut state)
            .map_err(|source| self.failed(source))?;
        state.unsynced = false;
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

/// Where an event's line starts in the feed's file.
#[derive(Debug, Clone, Copy)]
struct Line {
    seq: u64,
    offset: u64,
}

/// What memory keeps of an event's key: two keys of one hash would make
/// the second event look like the first, which at 64 bits and at most
/// twice [`RETAIN`] events kept does not happen.
fn key_hash(key: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
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

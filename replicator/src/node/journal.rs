//! The node's journal of results: every reply the runner makes is appended
//! to a file in the data directory, and synced to disk, before anything
//! else is done with it, and stays there until CouchDB holds it. A node that
//! dies, or a CouchDB that refuses or is away, loses no result: the runner
//! counts the journal's replies as run, and they are written to CouchDB
//! again until it takes them.
//!
//! The file holds one JSON object per line: `{"ran": REPLY}` when a reply
//! is made, `{"stored": ID}` once CouchDB holds the reply with that `_id`.
//! When no reply is left to store the file is emptied, once it passes
//! [`EMPTY_AT`] (emptying costs a sync); when some reply stays
//! unstored for long (CouchDB away, or refusing it) while others come and go,
//! the file is rewritten with the unstored replies alone once it passes
//! [`COMPACT_AT`]. Either way it stays about as small as the backlog. A crash can leave the last line cut short: it is dropped
//! when the file is opened (its reply was never acknowledged as durable, so
//! its operation is the one that was running). Any other line that cannot
//! be read stops the node, rather than run again what the line recorded.
//!
//!
//! Group commit: a sync makes durable every line appended before it
//! starts, so replies recorded while another sync runs share the next one.
//! Each [`Journal::record`] still returns only once a sync that began after
//! its line was appended has ended: what the runner relies on — a reply
//! is on disk before the next command of its batch starts — holds for
//! every reply, whichever sync carried it.
//!
//! Lock order: `synced`, then `file`, then `pending`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use cheops_model::{ReplyDocument, Timestamp};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::consistency::Run;
use crate::ReplicatorError;

/// Past this size the journal is rewritten with its unstored replies alone.
const COMPACT_AT: u64 = 1 << 20;
/// Past this size the journal is emptied when no reply is left to store.
const EMPTY_AT: u64 = 64 << 10;

/// The replies of this node that CouchDB may not hold yet.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    file: Mutex<File>,
    /// Replies not yet stored, by `_id`.
    pending: Mutex<BTreeMap<String, ReplyDocument>>,
    /// `ran` lines appended since the journal was opened; changed with
    /// `file` held.
    appended: AtomicU64,
    /// How many of them a sync made durable; held while syncing.
    synced: Mutex<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    Ran(Box<ReplyDocument>),
    Stored(String),
}

/// The `_id` of the reply `site` made to `request` at `time`: the same
/// each time the reply is written, so that writing it twice stores it once
/// (the second write is a conflict).
pub fn reply_id(site: &str, request: &str, time: Timestamp) -> String {
    format!("reply-{site}-{request}-{time}")
}

impl Journal {
    /// Opens (or creates) the journal of `site` in `dir`, creating `dir` if
    /// needed, and reads back the replies a previous run left unstored.
    pub fn open(dir: &Path, site: &str) -> Result<Journal, ReplicatorError> {
        let name: String = site
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = dir.join(format!("journal-{name}.jsonl"));
        let failed = |source| ReplicatorError::Journal {
            path: path.clone(),
            source,
        };
        // Outputs may be secrets: the daemon's user alone reads them.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(failed)?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(failed)?;
        let mut text = Vec::new();
        file.read_to_end(&mut text).map_err(failed)?;
        let (pending, good) =
            replay(&text).map_err(|(line, reason)| ReplicatorError::JournalCorrupt {
                path: path.clone(),
                line,
                reason,
            })?;
        if good < text.len() {
            warn!(path = %path.display(), dropped = text.len() - good, "the journal's last line was cut short by a crash; dropped");
            file.set_len(good as u64).map_err(failed)?;
            file.sync_data().map_err(failed)?;
        }
        if !pending.is_empty() {
            info!(path = %path.display(), replies = pending.len(), "replies not yet in CouchDB found in the journal");
        }
        Ok(Journal {
            inner: Arc::new(Inner {
                path,
                file: Mutex::new(file),
                pending: Mutex::new(pending),
                appended: AtomicU64::new(0),
                synced: Mutex::new(0),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Appends `reply` (whose `_id` is set) and syncs it to disk, with
    /// any other reply recorded meanwhile.
    ///
    /// Cancellation: the write goes on on a blocking thread; the reply may
    /// or may not be recorded.
    pub async fn record(&self, reply: &ReplyDocument) -> Result<(), ReplicatorError> {
        let inner = Arc::clone(&self.inner);
        let reply = reply.clone();
        let written = tokio::task::spawn_blocking(move || inner.record(reply)).await;
        written.unwrap_or_else(|join| Err(self.inner.failed(std::io::Error::other(join))))
    }

    /// Notes that CouchDB holds the replies `ids`: they leave the journal.
    ///
    /// Cancellation: as for [`Journal::record`]; a note lost is harmless,
    /// the reply is only written again.
    pub async fn stored(&self, ids: Vec<String>) -> Result<(), ReplicatorError> {
        if ids.is_empty() {
            return Ok(());
        }
        let inner = Arc::clone(&self.inner);
        let written = tokio::task::spawn_blocking(move || inner.stored(&ids)).await;
        written.unwrap_or_else(|join| Err(self.inner.failed(std::io::Error::other(join))))
    }

    /// The replies to `resource` the journal holds.
    pub fn ran(&self, resource: &str) -> Vec<Run> {
        self.inner
            .pending()
            .values()
            .filter(|reply| reply.resource_id == resource)
            .map(Run::of)
            .collect()
    }

    /// How many replies the journal holds.
    pub fn unstored(&self) -> usize {
        self.inner.pending().len()
    }

    /// Every reply the journal holds, oldest first.
    pub fn pending(&self) -> Vec<ReplyDocument> {
        let mut replies: Vec<ReplyDocument> = self.inner.pending().values().cloned().collect();
        replies.sort_by_key(|reply| reply.execution_time);
        replies
    }
}

impl Inner {
    fn file(&self) -> MutexGuard<'_, File> {
        self.file.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn pending(&self) -> MutexGuard<'_, BTreeMap<String, ReplyDocument>> {
        // Single inserts and removals: never left inconsistent.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn failed(&self, source: std::io::Error) -> ReplicatorError {
        ReplicatorError::Journal {
            path: self.path.clone(),
            source,
        }
    }

    fn record(&self, reply: ReplyDocument) -> Result<(), ReplicatorError> {
        let id = reply.id.clone().unwrap_or_default();
        let line = Line::Ran(Box::new(reply));
        let line_number = {
            let mut file = self.file();
            append(&mut file, &line).map_err(|e| self.failed(e))?;
            let Line::Ran(reply) = line else {
                return Ok(());
            };
            // Pending from now on: neither emptied nor left out of a
            // rewrite while its sync is on the way.
            self.pending().insert(id.clone(), *reply);
            self.appended.fetch_add(1, Ordering::SeqCst) + 1
        };
        if let Err(error) = self.sync(line_number) {
            // Not acknowledged: its command counts as not ended.
            self.pending().remove(&id);
            return Err(error);
        }
        Ok(())
    }

    /// Returns once the first `line_number` lines appended are on disk: at
    /// once if a sync that began after the line was appended has ended,
    /// otherwise after a sync of every line appended so far.
    fn sync(&self, line_number: u64) -> Result<(), ReplicatorError> {
        let mut synced = self.synced.lock().unwrap_or_else(PoisonError::into_inner);
        if *synced >= line_number {
            return Ok(());
        }
        // Read together: every line up to `upto` is in this file, or was
        // in one a rewrite copied, synced, before it took its place.
        let (file, upto) = {
            let file = self.file();
            (file.try_clone(), self.appended.load(Ordering::SeqCst))
        };
        file.and_then(|file| file.sync_data())
            .map_err(|e| self.failed(e))?;
        *synced = upto;
        Ok(())
    }

    fn stored(&self, ids: &[String]) -> Result<(), ReplicatorError> {
        let mut file = self.file();
        let mut pending = self.pending();
        for id in ids {
            pending.remove(id);
        }
        let size = file.metadata().map_err(|e| self.failed(e))?.len();
        if pending.is_empty() && size > EMPTY_AT {
            // Nothing left to store: start afresh. Synced so that a crash
            // cannot bring back lines whose `stored` notes are gone.
            file.set_len(0).map_err(|e| self.failed(e))?;
            file.sync_data().map_err(|e| self.failed(e))?;
            return Ok(());
        }
        drop(pending);
        for id in ids {
            append(&mut file, &Line::Stored(id.clone())).map_err(|e| self.failed(e))?;
        }
        let size = file.metadata().map_err(|e| self.failed(e))?.len();
        if size > COMPACT_AT {
            *file = self.rewrite(&self.pending())?;
        }
        Ok(())
    }

    /// Writes the `pending` replies to a new file, synced, that then takes
    /// the journal's place by a rename: a crash leaves either the old file,
    /// whole, or the new one.
    fn rewrite(&self, pending: &BTreeMap<String, ReplyDocument>) -> Result<File, ReplicatorError> {
        let fresh_path = self.path.with_extension("jsonl.new");
        let write = || -> std::io::Result<File> {
            match std::fs::remove_file(&fresh_path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            let mut fresh = OpenOptions::new()
                .read(true)
                .append(true)
                .create_new(true)
                .mode(0o600)
                .open(&fresh_path)?;
            for reply in pending.values() {
                append(&mut fresh, &Line::Ran(Box::new(reply.clone())))?;
            }
            fresh.sync_data()?;
            std::fs::rename(&fresh_path, &self.path)?;
            if let Some(dir) = self.path.parent() {
                File::open(dir)?.sync_all()?;
            }
            Ok(fresh)
        };
        let fresh = write().map_err(|e| self.failed(e))?;
        info!(path = %self.path.display(), replies = pending.len(), "journal rewritten with its unstored replies");
        Ok(fresh)
    }
}

/// One line, written with a single call so that only a crash can cut it.
fn append(file: &mut File, line: &Line) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(line)?;
    bytes.push(b'\n');
    file.write_all(&bytes)
}

/// The unstored replies `text` records, and how many of its bytes are whole
/// lines; or the number of a line that cannot be read, and why.
fn replay(text: &[u8]) -> Result<(BTreeMap<String, ReplyDocument>, usize), (usize, String)> {
    let mut pending = BTreeMap::new();
    let mut good = 0;
    let mut number = 0;
    while good < text.len() {
        number += 1;
        let rest = &text[good..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            // Cut short by a crash: never acknowledged.
            break;
        };
        match serde_json::from_slice::<Line>(&rest[..end]) {
            Ok(Line::Ran(reply)) => {
                pending.insert(reply.id.clone().unwrap_or_default(), *reply);
            }
            Ok(Line::Stored(id)) => {
                pending.remove(&id);
            }
            Err(error) => return Err((number, error.to_string())),
        }
        good += end + 1;
    }
    Ok((pending, good))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("cheops-journal-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn reply(resource: &str, request: &str, nanos: u32) -> ReplyDocument {
        let time: Timestamp = format!("2026-01-01T00:00:00.{nanos:09}Z").parse().unwrap();
        ReplyDocument {
            id: Some(reply_id("site1", request, time)),
            site: "site1".into(),
            request_id: request.into(),
            resource_id: resource.into(),
            output: format!("output of {request}\n"),
            execution_time: time,
            ..ReplyDocument::default()
        }
    }

    fn requests(ran: Vec<Run>) -> Vec<String> {
        let mut requests: Vec<String> = ran.into_iter().map(|ran| ran.request).collect();
        requests.sort();
        requests
    }

    #[tokio::test]
    async fn recorded_replies_survive_a_restart_until_stored() {
        let scratch = Scratch::new("survive");
        let journal = Journal::open(&scratch.0, "site1").unwrap();
        let (a, b, c) = (
            reply("res", "a", 1),
            reply("res", "b", 2),
            reply("other", "c", 3),
        );
        for r in [&a, &b, &c] {
            journal.record(r).await.unwrap();
        }
        journal.stored(vec![a.id.clone().unwrap()]).await.unwrap();
        drop(journal);

        let reopened = Journal::open(&scratch.0, "site1").unwrap();
        assert_eq!(requests(reopened.ran("res")), ["b"]);
        let mode = std::fs::metadata(reopened.path()).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        assert_eq!(requests(reopened.ran("other")), ["c"]);
        assert_eq!(reopened.pending(), vec![b.clone(), c.clone()]);

        reopened
            .stored(vec![b.id.unwrap(), c.id.unwrap()])
            .await
            .unwrap();
        assert!(reopened.pending().is_empty());
        drop(reopened);
        assert!(Journal::open(&scratch.0, "site1")
            .unwrap()
            .pending()
            .is_empty());
    }

    #[tokio::test]
    async fn a_journal_past_its_bound_is_emptied_once_everything_is_stored() {
        let scratch = Scratch::new("empty");
        let journal = Journal::open(&scratch.0, "site1").unwrap();
        let mut ids = Vec::new();
        for n in 0..=EMPTY_AT / 10_000 {
            let mut big = reply("res", &format!("r{n}"), n as u32);
            big.output = "x".repeat(10_000);
            journal.record(&big).await.unwrap();
            ids.push(big.id.unwrap());
        }
        let last = ids.split_off(1);
        journal.stored(ids).await.unwrap();
        assert!(std::fs::metadata(journal.path()).unwrap().len() > EMPTY_AT);
        journal.stored(last).await.unwrap();
        assert_eq!(std::fs::metadata(journal.path()).unwrap().len(), 0);
    }

    #[tokio::test]
    async fn replies_recorded_at_once_are_all_durable() {
        let scratch = Scratch::new("group");
        let journal = Journal::open(&scratch.0, "site1").unwrap();
        let mut recording = tokio::task::JoinSet::new();
        for n in 0..32 {
            let journal = journal.clone();
            recording.spawn(async move {
                journal
                    .record(&reply(&format!("res{n}"), &format!("r{n}"), n))
                    .await
            });
        }
        while let Some(recorded) = recording.join_next().await {
            recorded.unwrap().unwrap();
        }
        assert_eq!(*journal.inner.synced.lock().unwrap(), 32);
        drop(journal);
        assert_eq!(
            Journal::open(&scratch.0, "site1").unwrap().pending().len(),
            32
        );
    }

    #[tokio::test]
    async fn a_reply_that_stays_unstored_does_not_let_the_journal_grow() {
        let scratch = Scratch::new("compact");
        let journal = Journal::open(&scratch.0, "site1").unwrap();
        let stuck = reply("res", "stuck", 0);
        journal.record(&stuck).await.unwrap();
        let output = "x".repeat(10_000);
        for n in 1..=400 {
            let mut passing = reply("res", &format!("r{n}"), n);
            passing.output = output.clone();
            journal.record(&passing).await.unwrap();
            journal.stored(vec![passing.id.unwrap()]).await.unwrap();
        }
        let size = std::fs::metadata(journal.path()).unwrap().len();
        assert!(
            size <= COMPACT_AT + 20_000,
            "{size} bytes for one unstored reply"
        );
        let mode = std::fs::metadata(journal.path()).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        drop(journal);
        let reopened = Journal::open(&scratch.0, "site1").unwrap();
        assert_eq!(reopened.pending(), vec![stuck]);
    }

    #[tokio::test]
    async fn a_last_line_cut_short_by_a_crash_is_dropped() {
        let scratch = Scratch::new("torn");
        let journal = Journal::open(&scratch.0, "site1").unwrap();
        journal.record(&reply("res", "a", 1)).await.unwrap();
        let path = journal.path().to_owned();
        drop(journal);
        let whole = std::fs::read(&path).unwrap();
        let mut line = serde_json::to_vec(&Line::Ran(Box::new(reply("res", "b", 2)))).unwrap();
        line.truncate(line.len() / 2);
        std::fs::write(&path, [whole.clone(), line].concat()).unwrap();

        let reopened = Journal::open(&scratch.0, "site1").unwrap();
        assert_eq!(requests(reopened.ran("res")), ["a"]);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            whole,
            "the cut line is gone from the file"
        );
        reopened.record(&reply("res", "c", 3)).await.unwrap();
        drop(reopened);
        assert_eq!(
            requests(Journal::open(&scratch.0, "site1").unwrap().ran("res")),
            ["a", "c"],
            "what follows the cut is read back whole"
        );
    }

    #[test]
    fn an_unreadable_line_before_the_last_stops_the_node() {
        let scratch = Scratch::new("corrupt");
        std::fs::create_dir_all(&scratch.0).unwrap();
        let good = serde_json::to_string(&Line::Ran(Box::new(reply("res", "a", 1)))).unwrap();
        std::fs::write(
            scratch.0.join("journal-site1.jsonl"),
            format!("{good}\nnot json\n{good}\n"),
        )
        .unwrap();
        match Journal::open(&scratch.0, "site1") {
            Err(ReplicatorError::JournalCorrupt { line, .. }) => assert_eq!(line, 2),
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("a corrupt journal was accepted"),
        }
    }

    /// One step of a journal's life: a reply to request `rN` recorded, or
    /// the replies to some requests noted as stored.
    #[derive(Debug, Clone)]
    enum Step {
        Record(u8),
        Stored(Vec<u8>),
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            (0u8..20).prop_map(Step::Record),
            proptest::collection::vec(0u8..20, 1..4).prop_map(Step::Stored),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Whatever was recorded and noted, a reopened journal holds what
        /// was recorded and not stored; cut anywhere inside its last line by
        /// a crash, it loses at most that line.
        #[test]
        fn a_reopened_journal_holds_what_was_not_stored(
            steps in proptest::collection::vec(step(), 1..30),
            cut in 1usize..10_000,
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let scratch = Scratch::new("property");
            let mut model: BTreeMap<String, ReplyDocument> = BTreeMap::new();
            let mut nanos = 0;
            let journal = Journal::open(&scratch.0, "site1").unwrap();
            for step in &steps {
                match step {
                    Step::Record(n) => {
                        nanos += 1;
                        let reply = reply("res", &format!("r{n}"), nanos);
                        runtime.block_on(journal.record(&reply)).unwrap();
                        model.insert(reply.id.clone().unwrap(), reply);
                    }
                    Step::Stored(ns) => {
                        let ids: Vec<String> = model
                            .keys()
                            .filter(|id| ns.iter().any(|n| id.contains(&format!("-r{n}-"))))
                            .cloned()
                            .collect();
                        for id in &ids {
                            model.remove(id);
                        }
                        runtime.block_on(journal.stored(ids)).unwrap();
                    }
                }
            }
            let path = journal.path().to_owned();
            drop(journal);
            let ids = |journal: &Journal| -> Vec<String> {
                journal.pending().into_iter().filter_map(|r| r.id).collect()
            };
            let reopened = Journal::open(&scratch.0, "site1").unwrap();
            let whole: Vec<String> = model.keys().cloned().collect();
            let mut held = ids(&reopened);
            held.sort();
            proptest::prop_assert_eq!(&held, &whole);
            drop(reopened);

            let text = std::fs::read(&path).unwrap();
            if text.is_empty() {
                return Ok(());
            }
            let last_start = text[..text.len() - 1]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |at| at + 1);
            let at = last_start + cut % (text.len() - last_start);
            std::fs::write(&path, &text[..at]).unwrap();
            let last: Line = serde_json::from_slice(&text[last_start..text.len() - 1]).unwrap();
            let mut expected = model.clone();
            match last {
                Line::Ran(reply) => {
                    expected.remove(reply.id.as_deref().unwrap());
                }
                Line::Stored(id) => {
                    // Its note is lost: the reply is written again, harmlessly.
                    let text = String::from_utf8_lossy(&text[..last_start]).into_owned();
                    let replayed = replay(text.as_bytes()).unwrap().0;
                    if let Some(reply) = replayed.get(&id) {
                        expected.insert(id, reply.clone());
                    }
                }
            }
            let after_crash = Journal::open(&scratch.0, "site1").unwrap();
            let mut held = ids(&after_crash);
            held.sort();
            let expected: Vec<String> = expected.keys().cloned().collect();
            proptest::prop_assert_eq!(held, expected);
        }
    }
}

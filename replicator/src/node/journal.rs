//! The node's journal of results: every reply the runner makes is appended
//! to a file in the data directory and synced before anything else is done
//! with it, and stays until CouchDB holds it. A node that dies, or a
//! CouchDB that refuses or is away, loses no result.
//!
//! One JSON object per line: `{"ran": REPLY}` when a reply is made,
//! `{"stored": ID}` once CouchDB holds it. The file is emptied when nothing
//! is left to store (past [`EMPTY_AT`]), or rewritten with the unstored
//! replies alone (past [`COMPACT_AT`]): it stays about as small as the
//! backlog. A last line cut short by a crash is dropped (its reply was never
//! acknowledged); any other unreadable line stops the node rather than run
//! again what it recorded. A write that fails midway is cut back to the
//! last whole line, so the node never leaves such a line behind itself.
//! Syncing needs no new file descriptor: a node out of them still makes
//! what it recorded durable.
//!
//! Group commit: replies recorded while a sync runs share the next one, and
//! [`Journal::record`] returns only once a sync that began after its line
//! was appended has ended. Lock order: `synced`, then `file`, then `pending`.

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
    file: Mutex<Open>,
    /// Replies not yet stored, by `_id`.
    pending: Mutex<BTreeMap<String, ReplyDocument>>,
    /// `ran` lines appended since the journal was opened; changed with
    /// `file` held.
    appended: AtomicU64,
    /// How many of them a sync made durable; held while syncing.
    synced: Mutex<u64>,
}

/// The journal's open file.
struct Open {
    lines: Lines<File>,
    /// The same file, opened when it was, to sync it with.
    sync: Arc<File>,
}

impl Open {
    /// `file`, whose first `good` bytes are whole lines (all of it).
    fn new(file: File, good: u64) -> std::io::Result<Open> {
        let sync = Arc::new(file.try_clone()?);
        Ok(Open {
            lines: Lines {
                file,
                good,
                torn: false,
            },
            sync,
        })
    }
}

/// A file of lines and the length of its whole lines.
struct Lines<F> {
    file: F,
    good: u64,
    /// A line was cut midway and could not be cut back yet.
    torn: bool,
}

/// What a journal file must do besides being written.
trait Truncate {
    fn truncate(&mut self, len: u64) -> std::io::Result<()>;
}

impl Truncate for File {
    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        self.set_len(len)
    }
}

impl<F: Write + Truncate> Lines<F> {
    /// Writes `line` whole, or not at all: a write that fails midway is cut
    /// back to the last whole line, at once or, when that fails too,
    /// before the next line is written.
    fn append(&mut self, line: &Line) -> std::io::Result<()> {
        let mut bytes = serde_json::to_vec(line)?;
        bytes.push(b'\n');
        if self.torn {
            self.file.truncate(self.good)?;
            self.torn = false;
        }
        if let Err(error) = self.file.write_all(&bytes) {
            self.torn = self.file.truncate(self.good).is_err();
            return Err(error);
        }
        self.good += bytes.len() as u64;
        Ok(())
    }

    /// Empties the file.
    fn clear(&mut self) -> std::io::Result<()> {
        self.file.truncate(0)?;
        self.good = 0;
        self.torn = false;
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    Ran(Box<ReplyDocument>),
    Stored(String),
}

/// `DIR/{kind}-{site}.jsonl`, the site's name kept to letters, digits, `-`
/// and `.` (anything else becomes `_`): the node's files in its data
/// directory, one per site sharing it.
pub fn site_file(dir: &Path, kind: &str, site: &str) -> PathBuf {
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
    dir.join(format!("{kind}-{name}.jsonl"))
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
        let path = site_file(dir, "journal", site);
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
        let open = Open::new(file, good as u64).map_err(failed)?;
        Ok(Journal {
            inner: Arc::new(Inner {
                path,
                file: Mutex::new(open),
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
    fn file(&self) -> MutexGuard<'_, Open> {
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
            self.file()
                .lines
                .append(&line)
                .map_err(|e| self.failed(e))?;
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
            let open = self.file();
            (Arc::clone(&open.sync), self.appended.load(Ordering::SeqCst))
        };
        file.sync_data().map_err(|e| self.failed(e))?;
        *synced = upto;
        Ok(())
    }

    fn stored(&self, ids: &[String]) -> Result<(), ReplicatorError> {
        let mut open = self.file();
        let mut pending = self.pending();
        for id in ids {
            pending.remove(id);
        }
        if pending.is_empty() && open.lines.good > EMPTY_AT {
            // Nothing left to store: start afresh. Synced so that a crash
            // cannot bring back lines whose `stored` notes are gone.
            open.lines.clear().map_err(|e| self.failed(e))?;
            open.sync.sync_data().map_err(|e| self.failed(e))?;
            return Ok(());
        }
        drop(pending);
        for id in ids {
            open.lines
                .append(&Line::Stored(id.clone()))
                .map_err(|e| self.failed(e))?;
        }
        if open.lines.good > COMPACT_AT {
            *open = self.rewrite(&self.pending())?;
        }
        Ok(())
    }

    /// Writes the `pending` replies to a new file, synced, that then takes
    /// the journal's place by a rename: a crash leaves either the old file,
    /// whole, or the new one.
    fn rewrite(&self, pending: &BTreeMap<String, ReplyDocument>) -> Result<Open, ReplicatorError> {
        let fresh_path = self.path.with_extension("jsonl.new");
        let write = || -> std::io::Result<Open> {
            match std::fs::remove_file(&fresh_path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .create_new(true)
                .mode(0o600)
                .open(&fresh_path)?;
            let mut fresh = Open::new(file, 0)?;
            for reply in pending.values() {
                fresh.lines.append(&Line::Ran(Box::new(reply.clone())))?;
            }
            fresh.sync.sync_data()?;
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
mod tests;

//! Reading a resource's history: every operation ever accepted for it,
//! oldest first (its `Time` as an instant, then its `RequestId`), each with
//! every site's replies, a page of [`PAGE`] operations at a time, so that
//! memory stays bounded however long the history.
//!
//! The history documents, and the replies that carry their operation, are
//! read in order through [`HISTORY_VIEW`] (its key is the time normalised,
//! see `db/design.rs`); the current block adds the operations that have
//! neither (accepted by a Go node, or whose history has not replicated
//! yet), merged in the same order. An operation found in several is listed
//! once, whole, from the view.
//! Replies are read per page through [`REQUESTS_VIEW`].

use std::collections::{HashMap, HashSet, VecDeque};

use cheops_model::{
    history_order, DocumentKind, HistoryDocument, HistoryEntry, Operation, ReplyDocument,
    ResourceDocument, Timestamp,
};
use futures::stream::{self, BoxStream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::warn;

use crate::db::couch::{CouchClient, ViewRow};
use crate::db::design::{DESIGN, HISTORY_VIEW, REQUESTS_VIEW};
use crate::ReplicatorError;

/// Operations read (and answered) per page.
pub const PAGE: usize = 32;

/// What to read of a history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Include the files' contents (base64), not only their names and sizes.
    pub files: bool,
    /// Start after this operation (its `Time` and `RequestId`): the next
    /// page of a history read in parts.
    pub after: Option<(Timestamp, String)>,
}

/// The entries of a history, oldest first; an error ends it.
pub type HistoryStream = BoxStream<'static, Result<HistoryEntry, ReplicatorError>>;

/// The history of the resource `doc`, as stored here.
pub fn read_history(
    couch: CouchClient,
    doc: ResourceDocument,
    query: HistoryQuery,
) -> HistoryStream {
    let resource = doc.id.as_str();
    let mut block = doc.operations;
    block.sort_by(|a, b| history_order(a).cmp(&history_order(b)));
    let in_block: HashSet<String> = block.iter().map(|op| op.request_id.clone()).collect();
    let after = query.after.clone();
    let pending: VecDeque<Operation> = block
        .into_iter()
        .filter(|op| {
            after
                .as_ref()
                .is_none_or(|(time, id)| history_order(op) > (*time, id.as_str()))
        })
        .collect();
    let start = match &after {
        None => json!([resource]),
        Some((time, id)) => {
            let (seconds, nanos) = view_time(time);
            json!([resource, seconds, nanos, id, {}])
        }
    };
    let reader = Reader {
        couch,
        resource: resource.to_owned(),
        files: query.files,
        in_block,
        pending,
        from_history: HashSet::new(),
        from_block: HashSet::new(),
        last: None,
        next: Some(start),
        ready: VecDeque::new(),
    };
    let entries = stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        match reader.next().await {
            Ok(Some(entry)) => Some((Ok(entry), Some(reader))),
            Ok(None) => None,
            // An error ends the stream after it is yielded.
            Err(error) => Some((Err(error), None)),
        }
    });
    entries.boxed()
}

/// A time as the history view emits it: UTC seconds and nanoseconds.
fn view_time(time: &Timestamp) -> (i64, i64) {
    let nanos = time.unix_nanos();
    let seconds = i64::try_from(nanos.div_euclid(1_000_000_000)).unwrap_or(i64::MAX);
    (seconds, nanos.rem_euclid(1_000_000_000) as i64)
}

/// The state of a history being read.
struct Reader {
    couch: CouchClient,
    resource: String,
    files: bool,
    /// Request ids of the block's operations.
    in_block: HashSet<String>,
    /// The block's operations not listed yet, in history order.
    pending: VecDeque<Operation>,
    /// Block operations listed from their history document.
    from_history: HashSet<String>,
    /// Block operations listed from the block: a history document of one
    /// of them that shows up later (replication) is not listed again.
    from_block: HashSet<String>,
    /// The request of the last row listed from the view.
    last: Option<String>,
    /// Where the next page of the view starts; `None` once it is read.
    next: Option<Value>,
    /// Entries read and not yet given out.
    ready: VecDeque<HistoryEntry>,
}

/// The operations of a page, in history order.
type Batch = Vec<Operation>;

impl Reader {
    async fn next(&mut self) -> Result<Option<HistoryEntry>, ReplicatorError> {
        loop {
            if let Some(entry) = self.ready.pop_front() {
                return Ok(Some(entry));
            }
            let batch = match self.next.take() {
                Some(start) => self.history_page(start).await?,
                None => self.block_page(),
            };
            if batch.is_empty() && self.next.is_none() && self.pending.is_empty() {
                return Ok(None);
            }
            self.answer(batch).await?;
        }
    }

    /// The next page of history documents, with the block's operations
    /// that come before each.
    async fn history_page(&mut self, start: Value) -> Result<Batch, ReplicatorError> {
        let end = json!([self.resource, {}]);
        let mut rows = self
            .couch
            .view_range(DESIGN, HISTORY_VIEW, &start, &end, PAGE + 1)
            .await?;
        if rows.len() > PAGE {
            self.next = rows.pop().map(|row| row.key);
        }
        let mut batch = Vec::with_capacity(rows.len());
        let operations: Vec<Operation> = rows
            .into_iter()
            .filter_map(|row| self.operation(row))
            .collect();
        for operation in operations {
            let id = operation.request_id.clone();
            // Its history document and a reply carrying it: adjacent rows.
            if self.from_block.contains(&id) || self.last.as_ref() == Some(&id) {
                continue;
            }
            self.last = Some(id.clone());
            while self
                .pending
                .front()
                .is_some_and(|op| history_order(op) < history_order(&operation))
            {
                self.take_pending(&mut batch);
            }
            if self.in_block.contains(&id) {
                self.from_history.insert(id);
            }
            batch.push(operation);
        }
        if self.next.is_none() {
            batch.extend(self.block_page());
        }
        Ok(batch)
    }

    /// The next page of block operations, once the history documents are
    /// all read.
    fn block_page(&mut self) -> Batch {
        let mut batch = Vec::new();
        while batch.len() < PAGE && !self.pending.is_empty() {
            self.take_pending(&mut batch);
        }
        batch
    }

    /// Moves the next block operation to `batch`, unless its history
    /// document is listed instead.
    fn take_pending(&mut self, batch: &mut Batch) {
        if let Some(operation) = self.pending.pop_front() {
            if !self.from_history.contains(&operation.request_id) {
                self.from_block.insert(operation.request_id.clone());
                batch.push(operation);
            }
        }
    }

    /// The operation of a history view row (a history document, or a reply
    /// carrying it); a document that does not read as one of this resource
    /// is left out, and logged.
    fn operation(&self, row: ViewRow) -> Option<Operation> {
        let doc = row.doc?;
        let kind = DocumentKind::deserialize(&doc).ok()?;
        let read = if kind.is_history() {
            HistoryDocument::deserialize(&doc).map(|h| (h.resource_id, Some(h.operation)))
        } else if kind.is_reply() {
            ReplyDocument::deserialize(&doc).map(|r| (r.resource_id, r.operation))
        } else {
            return None;
        };
        match read {
            Ok((resource, operation)) if resource == self.resource => operation,
            Ok(_) => None,
            Err(error) => {
                warn!(resource = %self.resource, key = %row.key, %error, "history view row's document unreadable, left out");
                None
            }
        }
    }

    /// Reads the replies of `batch`'s operations and queues their entries.
    async fn answer(&mut self, batch: Batch) -> Result<(), ReplicatorError> {
        if batch.is_empty() {
            return Ok(());
        }
        let keys: Vec<Value> = batch
            .iter()
            .map(|op| json!([self.resource, op.request_id]))
            .collect();
        let rows = self.couch.view_keys(DESIGN, REQUESTS_VIEW, &keys).await?;
        let mut replies: HashMap<String, Vec<ReplyDocument>> = HashMap::new();
        let is_reply = |doc: &Value| DocumentKind::deserialize(doc).is_ok_and(|k| k.is_reply());
        for doc in rows.into_iter().filter_map(|row| row.doc).filter(is_reply) {
            match ReplyDocument::deserialize(&doc) {
                Ok(reply) => replies
                    .entry(reply.request_id.clone())
                    .or_default()
                    .push(reply),
                Err(error) => {
                    warn!(resource = %self.resource, %error, "reply unreadable, left out of the history");
                }
            }
        }
        for operation in batch {
            let in_block = self.in_block.contains(&operation.request_id);
            let replies = replies.remove(&operation.request_id).unwrap_or_default();
            self.ready.push_back(HistoryEntry::new(
                &operation, in_block, self.files, &replies,
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_times_are_utc_seconds_and_nanoseconds() {
        let time: Timestamp = "2024-03-05T14:07:09.5+01:00".parse().unwrap();
        assert_eq!(view_time(&time), (1_709_644_029, 500_000_000));
        let before_epoch: Timestamp = "1969-12-31T23:59:59.25Z".parse().unwrap();
        assert_eq!(view_time(&before_epoch), (-1, 250_000_000));
    }
}

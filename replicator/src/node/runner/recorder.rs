//! Turning each command's result into a reply, durable in the journal
//! before the next command starts.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use cheops_backends::{CommandResult, Next, Progress, ProgressFuture};
use cheops_model::{Command, Operation, ReplyDocument, ResourceDocument, Timestamp};
use tracing::{error, info};

use super::Inner;
use crate::node::journal::reply_id;
use crate::node::oversize::fit;
use crate::ReplicatorError;

/// The largest operation, as JSON, a reply carries. Pages read replies
/// whole: a reply carrying a larger one would make them read its files.
const MAX_CARRIED_BYTES: usize = 16 * 1024;

/// Makes each result of a batch a reply, durable in the journal before the
/// next command starts.
pub struct Recorder<'a> {
    pub inner: &'a Inner,
    pub doc: &'a ResourceDocument,
    pub to_run: &'a [&'a Operation],
    /// Their commands: a pruned operation's from its history document.
    pub commands: &'a [Command],
    /// The requests this site ran before the batch.
    pub ran: &'a HashSet<&'a str>,
    /// The batch rebuilds the block: its first reply says so.
    pub rebuild: bool,
    /// The time of this site's last reply to the resource.
    pub last_time: Mutex<Option<Timestamp>>,
    pub replies: Mutex<Vec<ReplyDocument>>,
    /// The operations this site accepted, run here for the first time,
    /// too large for a reply to carry: they get a history document.
    pub too_large_to_carry: Mutex<Vec<Operation>>,
    /// Set when the journal could not be written: the batch stops, as
    /// nothing more could be run safely.
    pub journal_error: Mutex<Option<ReplicatorError>>,
}

impl Recorder<'_> {
    fn reply(&self, index: usize, op: &Operation, result: &CommandResult) -> ReplyDocument {
        let mut last = self
            .last_time
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let execution_time = Timestamp::now_after(*last);
        *last = Some(execution_time);
        let site = &self.inner.ctx.site;
        let command = self.commands.get(index);
        // The site that accepted the operation carries it whole in its first
        // reply, which stands for its history document; one too large for
        // that gets a history document of its own.
        let first_run = !self.ran.contains(op.request_id.as_str());
        let whole = (first_run && op.site == *site)
            .then(|| {
                command.map(|command| Operation {
                    command: command.clone(),
                    pruned: false,
                    ..op.clone()
                })
            })
            .flatten();
        let uncarried = |whole: Operation| {
            self.too_large_to_carry
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(whole);
        };
        let carried = whole.and_then(|whole| {
            let size = serde_json::to_vec(&whole).map_or(usize::MAX, |json| json.len());
            if size <= MAX_CARRIED_BYTES {
                return Some(whole);
            }
            uncarried(whole);
            None
        });
        let reply = ReplyDocument {
            id: Some(reply_id(site, &op.request_id, execution_time)),
            locations: self.doc.locations.clone(),
            site: site.clone(),
            request_id: op.request_id.clone(),
            resource_id: self.doc.id.clone(),
            status: result.status(),
            input: command.map(Command::describe).unwrap_or_default(),
            output: result.output.clone(),
            execution_time,
            rebuild: self.rebuild && index == 0,
            reads_history: true,
            operation: carried.clone(),
            ..ReplyDocument::default()
        };
        let reply = fit(reply, self.inner.max_reply_bytes);
        // A reply that could not keep it leaves it to a history document.
        if let (Some(whole), None) = (carried, &reply.operation) {
            uncarried(whole);
        }
        reply
    }
}

impl Progress for Recorder<'_> {
    fn finished<'a>(&'a self, index: usize, result: &'a CommandResult) -> ProgressFuture<'a> {
        Box::pin(async move {
            let Some(op) = self.to_run.get(index) else {
                return Next::Stop;
            };
            let reply = self.reply(index, op, result);
            let resource = self.doc.id.as_str();
            let recorded = self.inner.ctx.journal.record(&reply).await;
            let again = self.ran.contains(op.request_id.as_str());
            self.inner.ctx.metrics.ran(reply.status, again);
            // Known before the feed can echo it.
            self.inner.ctx.ledger.ran(&reply);
            info!(resource, request = %op.request_id, site = %self.inner.ctx.site, status = %reply.status, "operation ran");
            self.replies
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(reply);
            if let Err(error) = recorded {
                error!(resource, site = %self.inner.ctx.site, %error, "cannot journal a reply; running no more until it can");
                *self
                    .journal_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(error);
                return Next::Stop;
            }
            if self.inner.is_stopping() {
                Next::Stop
            } else {
                Next::Continue
            }
        })
    }
}

//! Delivers replies seen on the changes feed to the `/exec` calls waiting for
//! them. A call's registration lives exactly as long as its receiver: nothing
//! is kept once the call ends (the original leaked a watcher per request).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use cheops_model::ReplyDocument;
use tokio::sync::mpsc;

/// Routes replies to waiting calls by request id.
#[derive(Debug, Clone, Default)]
pub struct ReplyHub {
    waiting: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<ReplyDocument>>>>,
}

impl ReplyHub {
    /// Registers interest in the replies to `request_id`; register before the
    /// operation is written so that no reply can be missed.
    pub fn subscribe(&self, request_id: &str) -> ReplyReceiver {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.lock().insert(request_id.to_owned(), sender);
        ReplyReceiver {
            hub: self.clone(),
            request_id: request_id.to_owned(),
            receiver,
        }
    }

    /// Hands a reply to the call waiting for it, if any.
    pub fn deliver(&self, reply: ReplyDocument) {
        if let Some(sender) = self.lock().get(&reply.request_id) {
            // A closed receiver is being dropped and will unregister itself.
            let _ = sender.send(reply);
        }
    }

    /// How many calls are waiting (for health and tests).
    pub fn waiting(&self) -> usize {
        self.lock().len()
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<ReplyDocument>>> {
        // The map stays consistent even if a holder panicked: every operation
        // on it is a single insert, get or remove.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The replies to one request, in the order they are seen.
#[derive(Debug)]
pub struct ReplyReceiver {
    hub: ReplyHub,
    request_id: String,
    receiver: mpsc::UnboundedReceiver<ReplyDocument>,
}

impl ReplyReceiver {
    /// The next reply; `None` only if the hub is gone.
    pub async fn recv(&mut self) -> Option<ReplyDocument> {
        self.receiver.recv().await
    }
}

impl Drop for ReplyReceiver {
    fn drop(&mut self) {
        self.hub.lock().remove(&self.request_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(request: &str, site: &str) -> ReplyDocument {
        ReplyDocument {
            request_id: request.into(),
            site: site.into(),
            ..ReplyDocument::default()
        }
    }

    #[tokio::test]
    async fn replies_reach_their_request_only() {
        let hub = ReplyHub::default();
        let mut a = hub.subscribe("a");
        let mut b = hub.subscribe("b");
        hub.deliver(reply("a", "site1"));
        hub.deliver(reply("b", "site2"));
        hub.deliver(reply("c", "site3"));
        assert_eq!(a.recv().await.unwrap().site, "site1");
        assert_eq!(b.recv().await.unwrap().site, "site2");
    }

    #[test]
    fn a_finished_call_leaves_nothing_behind() {
        let hub = ReplyHub::default();
        let receiver = hub.subscribe("a");
        assert_eq!(hub.waiting(), 1);
        drop(receiver);
        assert_eq!(hub.waiting(), 0);
        hub.deliver(reply("a", "site1"));
    }
}

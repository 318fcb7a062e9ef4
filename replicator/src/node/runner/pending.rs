//! The resources scheduled or running, and what the feed delivered for
//! each since its pass took a document.

use std::collections::HashMap;

use cheops_model::ResourceDocument;

/// The resources scheduled or running, each with the newest document the
/// feed delivered that no pass has taken yet.
#[derive(Debug, Default)]
pub struct Pending(HashMap<String, Option<ResourceDocument>>);

impl Pending {
    pub fn is_scheduled(&self, id: &str) -> bool {
        self.0.contains_key(id)
    }

    /// How many resources are scheduled.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Hands `doc` over; gives it back when its resource was not scheduled:
    /// the caller then starts a run with it. Otherwise it replaces any
    /// document still waiting, which it is newer than.
    pub fn offer(&mut self, doc: ResourceDocument) -> Option<ResourceDocument> {
        match self.0.get_mut(&doc.id) {
            Some(waiting) => {
                *waiting = Some(doc);
                None
            }
            None => {
                self.0.insert(doc.id.clone(), None);
                Some(doc)
            }
        }
    }

    /// Whether a document arrived for `id` since the last one was taken.
    pub fn has_newer(&self, id: &str) -> bool {
        self.0.get(id).is_some_and(Option::is_some)
    }

    /// The document that arrived for `id` since the last one was taken.
    pub fn take(&mut self, id: &str) -> Option<ResourceDocument> {
        self.0.get_mut(id).and_then(Option::take)
    }

    /// After a pass that settled `id`: the document to handle next, or
    /// `None` when none arrived, and the resource is no longer scheduled.
    pub fn finish(&mut self, id: &str) -> Option<ResourceDocument> {
        let next = self.take(id);
        if next.is_none() {
            self.0.remove(id);
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: &str, rev: &str) -> ResourceDocument {
        ResourceDocument {
            id: id.into(),
            rev: Some(rev.into()),
            ..ResourceDocument::default()
        }
    }

    fn rev(doc: Option<ResourceDocument>) -> Option<String> {
        doc.and_then(|d| d.rev)
    }

    #[test]
    fn an_idle_resource_starts_a_run_with_its_document() {
        let mut pending = Pending::default();
        assert_eq!(rev(pending.offer(doc("r", "1-a"))), Some("1-a".into()));
        assert!(pending.is_scheduled("r"));
        assert_eq!(rev(pending.finish("r")), None, "nothing arrived meanwhile");
        assert!(!pending.is_scheduled("r") && pending.is_empty());
    }

    #[test]
    fn changes_during_a_run_leave_the_newest_for_the_next_pass() {
        let mut pending = Pending::default();
        pending.offer(doc("r", "1-a"));
        assert!(pending.offer(doc("r", "2-b")).is_none());
        assert!(pending.offer(doc("r", "3-c")).is_none());
        assert!(pending.offer(doc("other", "1-x")).is_some());
        assert_eq!(rev(pending.finish("r")), Some("3-c".into()));
        assert!(pending.is_scheduled("r"), "still running its next pass");
        assert_eq!(rev(pending.finish("r")), None);
        assert!(!pending.is_scheduled("r"));
        assert!(!pending.is_empty(), "other is still scheduled");
    }

    #[test]
    fn a_retry_takes_a_newer_document_and_keeps_the_resource_scheduled() {
        let mut pending = Pending::default();
        pending.offer(doc("r", "1-a"));
        assert_eq!(rev(pending.take("r")), None);
        pending.offer(doc("r", "2-b"));
        assert!(pending.has_newer("r"), "a waiting pass wakes for it");
        assert_eq!(rev(pending.take("r")), Some("2-b".into()));
        assert!(!pending.has_newer("r"));
        assert!(pending.is_scheduled("r"));
    }
}

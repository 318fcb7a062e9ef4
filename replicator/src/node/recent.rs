//! The resource documents this node stored lately, each with the revision
//! CouchDB gave it: the next operation submitted here for the resource
//! starts from it instead of reading the document again, which halves the
//! requests of an exec at its entry site when nothing else wrote meanwhile.
//!
//! Safe however stale: a document written from a revision that is no longer
//! a leaf is refused (409) and the caller reads the document afresh. A
//! revision still a leaf but no longer the winner (a conflict not yet
//! merged) takes the write, as a concurrent writer's would, and the merge
//! keeps every operation of both branches. An entry is taken out when used,
//! so a revision refused once is never tried again. Memory is bounded:
//! documents larger than [`MAX_DOCUMENT_BYTES`] are not kept, and at most
//! [`MAX_DOCUMENTS`] are, the least recently stored going first.

use std::sync::{Mutex, MutexGuard, PoisonError};

use cheops_model::ResourceDocument;

use crate::node::by_use::ByUse;

/// Documents kept at most.
const MAX_DOCUMENTS: usize = 256;
/// The largest document kept, as JSON: 256 of them take 16 MiB at most.
const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

#[derive(Debug, Default)]
pub struct Recent {
    /// Each document, by when it was stored.
    inner: Mutex<ByUse<ResourceDocument>>,
}

impl Recent {
    fn lock(&self) -> MutexGuard<'_, ByUse<ResourceDocument>> {
        // One insert or removal per critical section: never inconsistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The document of `resource` as this node last stored it, `_rev`
    /// set; taken out until stored again.
    pub fn take(&self, resource: &str) -> Option<ResourceDocument> {
        self.lock().remove(resource)
    }

    /// `doc` was stored with its `_rev`, `size` bytes as JSON.
    pub fn stored(&self, doc: ResourceDocument, size: usize) {
        if size > MAX_DOCUMENT_BYTES || !doc.conflicts.is_empty() || doc.rev.is_none() {
            return;
        }
        let mut docs = self.lock();
        let id = doc.id.clone();
        *docs.use_or_insert_with(&id, ResourceDocument::default) = doc;
        if docs.len() > MAX_DOCUMENTS {
            docs.pop_oldest();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resource document as stored at `rev` (`None`: never stored).
    fn doc(id: &str, rev: Option<&str>) -> ResourceDocument {
        ResourceDocument {
            id: id.into(),
            rev: rev.map(str::to_owned),
            locations: vec!["site1".into()],
            ..ResourceDocument::default()
        }
    }

    #[test]
    fn a_document_is_used_once_until_stored_again() {
        let recent = Recent::default();
        recent.stored(doc("r", Some("1-a")), 100);
        assert_eq!(recent.take("r").and_then(|d| d.rev), Some("1-a".into()));
        assert!(
            recent.take("r").is_none(),
            "a refused revision is not retried"
        );
        recent.stored(doc("r", Some("2-b")), 100);
        assert_eq!(recent.take("r").and_then(|d| d.rev), Some("2-b".into()));
    }

    #[test]
    fn large_documents_and_documents_without_revision_are_not_kept() {
        let recent = Recent::default();
        recent.stored(doc("big", Some("1-a")), MAX_DOCUMENT_BYTES + 1);
        recent.stored(doc("new", None), 10);
        let mut conflicted = doc("c", Some("2-a"));
        conflicted.conflicts = vec!["2-b".into()];
        recent.stored(conflicted, 10);
        assert!(recent.take("big").is_none());
        assert!(recent.take("new").is_none());
        assert!(recent.take("c").is_none());
    }

    #[test]
    fn the_least_recently_stored_go_first() {
        let recent = Recent::default();
        for i in 0..=MAX_DOCUMENTS {
            recent.stored(doc(&format!("r{i}"), Some("1-a")), 10);
        }
        assert!(recent.take("r0").is_none());
        assert!(recent.take("r1").is_some());
        assert!(recent.take(&format!("r{MAX_DOCUMENTS}")).is_some());
    }
}

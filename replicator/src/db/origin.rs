//! The database a document was written to, stamped on it as `Origin`.
//!
//! Replication forwards what it receives, so without a mark every document
//! would come back to the site that wrote it, one replication batch per
//! peer, only for the target to answer that it holds it already. A peer
//! sends no document whose `Origin` is the target database's identity
//! (`design`'s `by-site` filter; the identity is `bootstrap::identity`).
//! The identity, not the site's name, is what is compared: a database
//! created anew has another, so whatever the one before wrote comes back
//! to it as to anyone.
//!
//! Only documents written once, by one site, carry it: replies and hook
//! receipts. The target holds each of them, so holding them back loses
//! nothing. A history document does not: every site that writes one
//! writes the same revision. A resource document does not either: the
//! filter sees its winning revision alone, and would hold back with it a
//! conflicting revision the target lacks, which the target would then
//! learn of only from another site's merge. Documents of the Go original
//! carry none, and go everywhere as they always did.

use serde::Serialize;

/// `doc` with the identity of the database it is written to.
#[derive(Debug, Serialize)]
pub struct Stamped<'a, T> {
    #[serde(flatten)]
    pub doc: &'a T,
    #[serde(rename = "Origin", skip_serializing_if = "Option::is_none")]
    pub origin: Option<&'a str>,
}

impl<'a, T> Stamped<'a, T> {
    pub fn new(doc: &'a T, origin: Option<&'a str>) -> Self {
        Stamped { doc, origin }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cheops_model::ReplyDocument;

    #[test]
    fn a_stamped_document_is_the_document_and_its_origin() {
        let reply = ReplyDocument {
            site: "site1".into(),
            request_id: "q".into(),
            ..ReplyDocument::default()
        };
        let plain = serde_json::to_value(&reply).unwrap();
        let stamped = serde_json::to_value(Stamped::new(&reply, Some("db1"))).unwrap();
        let mut expected = plain.clone();
        expected["Origin"] = "db1".into();
        assert_eq!(stamped, expected);
        // Read back, it is the same reply: `Origin` is not one of its fields.
        let read: ReplyDocument = serde_json::from_value(stamped).unwrap();
        assert_eq!(read, reply);
        // Unknown, it is left out: the document goes everywhere.
        assert_eq!(
            serde_json::to_value(Stamped::new(&reply, None)).unwrap(),
            plain
        );
    }
}

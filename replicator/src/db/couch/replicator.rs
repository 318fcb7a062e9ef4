//! The server's `_replicator` database, where each replication to a peer
//! is a document.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{rev_of, CouchClient, Written};
use crate::metrics::RequestKind;
use crate::ReplicatorError;

/// What a server without what is asked for answers (PouchDB Server's 404
/// for a path it does not know, or a proxy's refusal).
const ABSENT: [StatusCode; 4] = [
    StatusCode::NOT_FOUND,
    StatusCode::BAD_REQUEST,
    StatusCode::METHOD_NOT_ALLOWED,
    StatusCode::NOT_IMPLEMENTED,
];

impl CouchClient {
    /// A document of the server's `_replicator` database.
    pub async fn get_replication(&self, id: &str) -> Result<Option<Value>, ReplicatorError> {
        let builder = self.request(Method::GET, self.server_url(&["_replicator", id]));
        match self
            .send(
                RequestKind::Replicator,
                builder,
                "GET _replicator doc",
                &[StatusCode::NOT_FOUND],
            )
            .await?
        {
            (StatusCode::NOT_FOUND, _) => Ok(None),
            (_, value) => Ok(Some(value)),
        }
    }

    /// What CouchDB's replication scheduler says of the job of the
    /// `_replicator` document `id` (`GET /_scheduler/docs/_replicator/{id}`:
    /// its `state`, and its `info` with `doc_write_failures`); `None` when
    /// the server has no scheduler (PouchDB Server) or no such job.
    pub async fn scheduler_doc(&self, id: &str) -> Result<Option<Value>, ReplicatorError> {
        let url = self.server_url(&["_scheduler", "docs", "_replicator", id]);
        let builder = self.request(Method::GET, url);
        match self
            .send(
                RequestKind::Replicator,
                builder,
                "GET _scheduler doc",
                &ABSENT,
            )
            .await?
        {
            (status, _) if ABSENT.contains(&status) => Ok(None),
            (_, value) => Ok(Some(value)),
        }
    }

    /// Whether the server has CouchDB 3's replication scheduler: `GET
    /// /_scheduler/jobs` answers on CouchDB, and is unknown to PouchDB
    /// Server (which answers a job's document as missing, like CouchDB for
    /// a document it has no job for).
    pub async fn has_scheduler(&self) -> Result<bool, ReplicatorError> {
        let mut url = self.server_url(&["_scheduler", "jobs"]);
        url.set_query(Some("limit=0"));
        let builder = self.request(Method::GET, url);
        let (status, _) = self
            .send(
                RequestKind::Replicator,
                builder,
                "GET _scheduler jobs",
                &ABSENT,
            )
            .await?;
        Ok(!ABSENT.contains(&status))
    }

    /// Writes a `_replicator` document (with `_rev` to replace one).
    pub async fn put_replication(&self, id: &str, doc: &Value) -> Result<Written, ReplicatorError> {
        let builder = self
            .request(Method::PUT, self.server_url(&["_replicator", id]))
            .json(doc);
        match self
            .send(
                RequestKind::Replicator,
                builder,
                "PUT _replicator doc",
                &[StatusCode::CONFLICT],
            )
            .await?
        {
            (StatusCode::CONFLICT, _) => Ok(Written::Conflict),
            (_, value) => Ok(Written::Rev(rev_of(&value))),
        }
    }

    /// Deletes a `_replicator` document (which stops its replication).
    ///
    /// The tombstone keeps the document's `_replication_id`: PouchDB Server
    /// forgets a replication by that field of the deleted document, and
    /// would otherwise take a recreated document for a duplicate of the
    /// stopped one and never start it. Deleting one already gone, or changed
    /// meanwhile, is not an error: the caller looks again.
    pub async fn delete_replication(
        &self,
        id: &str,
        current: &Value,
    ) -> Result<(), ReplicatorError> {
        let mut tombstone = serde_json::json!({ "_rev": current.get("_rev"), "_deleted": true });
        if let Some(replication_id) = current.get("_replication_id") {
            tombstone["_replication_id"] = replication_id.clone();
        }
        let builder = self
            .request(Method::PUT, self.server_url(&["_replicator", id]))
            .json(&tombstone);
        let accept = [StatusCode::NOT_FOUND, StatusCode::CONFLICT];
        self.send(
            RequestKind::Replicator,
            builder,
            "DELETE _replicator doc",
            &accept,
        )
        .await?;
        Ok(())
    }

    /// Creates the server's `_replicator` database unless it exists (PouchDB
    /// Server and a fresh single-node CouchDB may not have it yet).
    pub async fn ensure_replicator_db(&self) -> Result<(), ReplicatorError> {
        let builder = self.request(Method::PUT, self.server_url(&["_replicator"]));
        self.send(
            RequestKind::ReplicatorDb,
            builder,
            "PUT _replicator",
            &[StatusCode::PRECONDITION_FAILED],
        )
        .await?;
        Ok(())
    }
}

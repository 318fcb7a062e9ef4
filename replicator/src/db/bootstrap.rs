//! Making the local database ready: the database itself, its security
//! object, the design document (see [`super::design`]) and the server's
//! `_replicator` database. Every step is idempotent.

use serde_json::{json, Value};

use crate::db::couch::{CouchClient, Written};
use crate::db::design::{merged_design, DESIGN};
use crate::ReplicatorError;

/// Who may read and write the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DatabaseAccess {
    /// Admins only: peers replicate with admin credentials. The default.
    #[default]
    AdminsOnly,
    /// Members open, as the Go original sets `_security`: a Go node sharing
    /// the database queries its views without credentials. Anyone who
    /// reaches CouchDB can then read and write the database.
    OpenMembers,
}

impl DatabaseAccess {
    fn security(self) -> Value {
        let members = match self {
            DatabaseAccess::AdminsOnly => json!({"names": [], "roles": ["_admin"]}),
            DatabaseAccess::OpenMembers => json!({"names": [], "roles": []}),
        };
        json!({"admins": {"names": [], "roles": ["_admin"]}, "members": members})
    }
}

/// Brings the database to the state the daemon needs; safe to run on every
/// start and concurrently with other daemons (of this port or of the Go
/// original) on the same database. Answers the database's identity.
pub async fn bootstrap(
    couch: &CouchClient,
    access: DatabaseAccess,
) -> Result<String, ReplicatorError> {
    couch.ensure_db().await?;
    couch.ensure_replicator_db().await?;
    couch.put_security(&access.security()).await?;
    ensure_design(couch).await?;
    identity(couch).await
}

const IDENTITY: [&str; 2] = ["_local", "cheops-database"];

/// The database's identity: a random id kept in a `_local` document made
/// with it (never replicated), so that a database deleted and created
/// again, even under the same name, has another.
pub async fn identity(couch: &CouchClient) -> Result<String, ReplicatorError> {
    loop {
        let stored: Option<Value> = couch.get(&IDENTITY, &[]).await?;
        if let Some(id) = stored.as_ref().and_then(|doc| doc["Id"].as_str()) {
            return Ok(id.to_owned());
        }
        let fresh = uuid::Uuid::new_v4().simple().to_string();
        let mut doc = json!({ "Id": fresh });
        if let Some(rev) = stored.as_ref().and_then(|doc| doc["_rev"].as_str()) {
            doc["_rev"] = Value::from(rev);
        }
        match couch.put(&IDENTITY, &doc).await? {
            Written::Rev(_) => return Ok(fresh),
            // Another daemon made it meanwhile: read theirs.
            Written::Conflict => continue,
        }
    }
}

/// The identity of a database that some daemon prepared, read without
/// making one: `None` for a database no daemon of this port prepared (or
/// none at all).
pub async fn read_identity(couch: &CouchClient) -> Result<Option<String>, ReplicatorError> {
    let stored: Option<Value> = couch.get(&IDENTITY, &[]).await?;
    Ok(stored.and_then(|doc| doc["Id"].as_str().map(str::to_owned)))
}

async fn ensure_design(couch: &CouchClient) -> Result<(), ReplicatorError> {
    loop {
        let current: Option<Value> = couch.get(&["_design", DESIGN], &[]).await?;
        let Some(doc) = merged_design(current.as_ref()) else {
            return Ok(());
        };
        match couch.put(&["_design", DESIGN], &doc).await? {
            Written::Rev(_) => return Ok(()),
            // Another daemon wrote it meanwhile: merge again.
            Written::Conflict => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_locks_members_unless_the_original_shares_the_database() {
        assert_eq!(
            DatabaseAccess::AdminsOnly.security()["members"]["roles"],
            json!(["_admin"])
        );
        assert_eq!(
            DatabaseAccess::OpenMembers.security()["members"]["roles"],
            json!([])
        );
    }
}

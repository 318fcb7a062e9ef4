//! The documents Cheops stores in CouchDB, shaped exactly as the Go original
//! writes them so that both implementations can share a database; and what
//! the node and its client must agree on: names, file placeholders, the
//! API's other answers, tokens and how errors are told.
//!
//! Field names are PascalCase, empty lists and maps are written as `null`,
//! attached files are base64 and times keep their nanoseconds and offset.
//! Reading is as lenient as Go's decoder (a missing field takes its zero
//! value); an unknown resolution result or status is an error.

mod answers;
mod attachments;
mod config;
mod error;
mod history;
mod names;
mod nullable;
mod operation;
mod reply;
mod resource;
mod secret;
mod timestamp;

pub use answers::{ErrorBody, SiteOutput};
pub use attachments::{
    check_file_name, check_file_names, rewrite_groups, Group, NestedFileNames, RefusedFileName,
};
pub use config::{Resolution, ResolutionResult, ResourceConfig};
pub use error::{error_chain, ModelError};
pub use history::{
    history_id, history_of, history_order, HistoryDocument, HistoryEntry, HistoryFile, HistoryKind,
    HistoryReply, HISTORY_PREFIX,
};
pub use names::{
    check_resource_id, check_site_name, split_sites, SiteList, MAX_RESOURCE_ID_LEN, MAX_SITES,
    MAX_SITE_NAME_LEN,
};
pub use operation::{Command, HttpRequest, Kind, Operation, FOREIGN_SHELL};
pub use reply::{ReplyDocument, ReplyKind, Status};
pub use resource::{DocumentKind, ResourceDocument, ResourceKind};
pub use secret::{Secret, MIN_TOKEN_LEN};
pub use timestamp::Timestamp;

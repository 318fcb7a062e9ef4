//! Scenarios against the API router with fake nodes: requests go through
//! `tower::ServiceExt::oneshot`, and `/show` fan-out through real local
//! listeners.

mod fake;
mod http;

mod auth;
mod changes;
mod exec;
mod history;
mod refusals;
mod routes;
mod show;

//! The backends a site serves, each operation run by the one of its kind.

use std::sync::Arc;

use cheops_model::{Command, Kind};

use crate::batch::run_batch;
use crate::{
    Backend, BatchFuture, CommandFuture, CommandResult, HttpBackend, Outcome, Progress,
    RedisBackend, Run, ShellBackend,
};

/// What a site serves: shell commands unless the operator turned them
/// off, HTTP requests and Redis commands when the operator said where its
/// application and its Redis are.
#[derive(Default)]
pub struct Backends {
    pub shell: Option<Arc<ShellBackend>>,
    pub http: Option<HttpBackend>,
    pub redis: Option<RedisBackend>,
}

impl Backends {
    fn runner(&self, kind: Kind) -> Option<&dyn Run> {
        match kind {
            Kind::Shell => self.shell.as_deref().map(|s| s as &dyn Run),
            Kind::Http => self.http.as_ref().map(|h| h as &dyn Run),
            Kind::Redis => self.redis.as_ref().map(|r| r as &dyn Run),
            Kind::Unknown => None,
        }
    }
}

impl Run for Backends {
    fn run_one<'a>(&'a self, command: &'a Command) -> CommandFuture<'a> {
        match self.runner(command.kind) {
            Some(runner) => runner.run_one(command),
            None => {
                let kind = command.kind;
                Box::pin(async move {
                    CommandResult {
                        outcome: Outcome::Failed,
                        output: format!("this site does not serve {kind} operations"),
                    }
                })
            }
        }
    }
}

impl Backend for Backends {
    fn serves(&self, kind: Kind) -> bool {
        self.runner(kind).is_some()
    }

    fn run_with<'a>(&'a self, batch: &'a [Command], progress: &'a dyn Progress) -> BatchFuture<'a> {
        Box::pin(run_batch(self, batch, progress))
    }
}

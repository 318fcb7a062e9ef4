//! The status of each background task, as `/health`, `/metrics` and
//! Chephren show it, and the one backoff that follows its failures.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cheops_model::Timestamp;
use serde::Serialize;

use crate::workers::backoff;

/// What a task is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Working, or waiting for work; its last attempt succeeded.
    Running,
    /// Its last attempt failed; it tries again after a delay.
    Retrying,
    /// It ended, as it should when the node shuts down.
    Stopped,
    /// It ended when it should not have, or panicked.
    Failed,
}

/// The status of one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskStatus {
    pub name: String,
    /// The node cannot work without it: it stops when this task dies.
    pub vital: bool,
    pub state: TaskState,
    /// Failures since its last success.
    pub failures: u32,
    pub last_error: Option<String>,
    pub last_error_at: Option<Timestamp>,
}

/// The statuses of a node's tasks; clones share them.
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    statuses: Arc<Mutex<BTreeMap<String, TaskStatus>>>,
}

impl Tasks {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, TaskStatus>> {
        // Each critical section updates one entry: never inconsistent.
        self.statuses.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every task's status, by name.
    pub fn snapshot(&self) -> Vec<TaskStatus> {
        self.lock().values().cloned().collect()
    }

    /// The state of the task `name`, if registered.
    pub fn state(&self, name: &str) -> Option<TaskState> {
        self.lock().get(name).map(|status| status.state)
    }

    /// Changes the status of the task `name`, if registered.
    pub fn update(&self, name: &str, update: impl FnOnce(&mut TaskStatus)) {
        if let Some(status) = self.lock().get_mut(name) {
            update(status);
        }
    }

    /// A handle for the task `name`, registered as running.
    pub fn register(&self, name: &str, vital: bool) -> Task {
        self.lock().insert(
            name.to_owned(),
            TaskStatus {
                name: name.to_owned(),
                vital,
                state: TaskState::Running,
                failures: 0,
                last_error: None,
                last_error_at: None,
            },
        );
        Task {
            name: name.to_owned(),
            tasks: self.clone(),
        }
    }
}

/// What a task reports about itself.
#[derive(Debug, Clone)]
pub struct Task {
    name: String,
    tasks: Tasks,
}

impl Task {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The task's work is complete: its end is no failure.
    pub fn done(self) {
        self.tasks
            .update(&self.name, |status| status.state = TaskState::Stopped);
    }

    /// The last attempt succeeded: the backoff starts over.
    pub fn succeeded(&self) {
        self.tasks.update(&self.name, |status| {
            status.state = TaskState::Running;
            status.failures = 0;
        });
    }

    /// The last attempt failed with `error`: returns how long to wait
    /// before the next ([`backoff::delay`] of the failures in a row).
    pub fn failed(&self, error: &dyn Display) -> Duration {
        let mut failures = 1;
        self.tasks.update(&self.name, |status| {
            status.failures = status.failures.saturating_add(1);
            failures = status.failures;
            status.state = TaskState::Retrying;
            status.last_error = Some(error.to_string());
            status.last_error_at = Some(Timestamp::now());
        });
        backoff::delay(failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_grows_with_failures_and_resets_after_a_success() {
        let tasks = Tasks::default();
        let task = tasks.register("follower", true);
        let delays: Vec<Duration> = (0..3).map(|_| task.failed(&"down")).collect();
        assert!(delays[0] < delays[1] && delays[1] < delays[2], "{delays:?}");
        assert_eq!(tasks.state("follower"), Some(TaskState::Retrying));
        task.succeeded();
        assert_eq!(tasks.state("follower"), Some(TaskState::Running));
        assert_eq!(tasks.snapshot()[0].failures, 0);
        assert_eq!(task.failed(&"down again"), delays[0], "starts over");
        assert_eq!(
            tasks.snapshot()[0].last_error.as_deref(),
            Some("down again")
        );
    }
}

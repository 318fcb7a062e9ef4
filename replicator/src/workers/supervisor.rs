//! The node's background tasks under one supervisor (after garage's
//! background workers): each has a name, a status `/health` and Chephren
//! show, and one retry backoff that resets after a success. One shutdown
//! signal reaches every task; draining has a deadline. A vital task that
//! ends (or panics) while the node is not shutting down stops the whole
//! node, which then exits with a failure instead of running half alive.

use std::future::Future;
use std::time::Duration;

use cheops_model::Timestamp;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::workers::status::{Task, TaskState, Tasks};
use crate::workers::worker::{drive, Worker};

/// Starts tasks under a [`Supervisor`], from anywhere; clones share it.
#[derive(Clone)]
pub struct Spawner {
    tasks: Tasks,
    shutdown: watch::Receiver<bool>,
    started: mpsc::UnboundedSender<Started>,
}

struct Started {
    name: String,
    vital: bool,
    handle: JoinHandle<()>,
}

impl Spawner {
    /// The signal every task stops on.
    pub fn shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    /// Spawns the task `name`; `work` gets its handle. Once the node shuts
    /// down, the task is expected to end within the drain deadline.
    pub fn spawn<F, W>(&self, name: &str, vital: bool, work: W)
    where
        W: FnOnce(Task) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        let task = self.tasks.register(name, vital);
        let handle = tokio::spawn(work(task));
        let started = Started {
            name: name.to_owned(),
            vital,
            handle,
        };
        if let Err(mpsc::error::SendError(started)) = self.started.send(started) {
            // The supervisor is gone: the node is stopping.
            started.handle.abort();
        }
    }

    /// Starts `worker` as the task `name` (see [`crate::workers::worker`]).
    pub fn spawn_worker<W: Worker>(&self, name: &str, vital: bool, worker: W) {
        let shutdown = self.shutdown();
        self.spawn(name, vital, |task| drive(worker, task, shutdown));
    }
}

/// Owns the node's tasks: watches them, and stops them all at the end.
pub struct Supervisor {
    tasks: Tasks,
    shutdown: watch::Sender<bool>,
    spawner: Spawner,
    started: mpsc::UnboundedReceiver<Started>,
}

/// How the node's life ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// The signal came; every task ended in time.
    Signalled,
    /// The signal came; these tasks had to be abandoned at the deadline.
    Abandoned(Vec<String>),
    /// This vital task died first, and the node was stopped.
    Died(String),
}

impl Supervisor {
    pub fn new(tasks: Tasks) -> Self {
        let (shutdown, receiver) = watch::channel(false);
        let (sender, started) = mpsc::unbounded_channel();
        Supervisor {
            spawner: Spawner {
                tasks: tasks.clone(),
                shutdown: receiver,
                started: sender,
            },
            tasks,
            shutdown,
            started,
        }
    }

    pub fn spawner(&self) -> Spawner {
        self.spawner.clone()
    }

    /// Runs until `signal` completes or a vital task dies, then tells every
    /// task to stop and waits for them up to `deadline`; those still
    /// running then are aborted.
    pub async fn run(mut self, signal: impl Future<Output = ()>, deadline: Duration) -> Ending {
        // Only tasks hold spawners now: the channel closes when they end.
        drop(self.spawner);
        let mut running = FuturesUnordered::new();
        let mut died = None;
        tokio::pin!(signal);
        loop {
            tokio::select! {
                Some(started) = self.started.recv() => running.push(watched(started)),
                Some((name, vital, ended)) = running.next() => {
                    if record_end(&self.tasks, &name, ended, false) && vital {
                        error!(task = %name, "a vital task died; stopping the node");
                        died = Some(name);
                        break;
                    }
                }
                () = &mut signal => break,
            }
        }
        info!("stopping background tasks");
        self.shutdown.send_replace(true);
        let drain = async {
            loop {
                // Started tasks first: a task spawned just before the signal
                // may still wait in the channel while `running` is empty,
                // and must be awaited, not left behind.
                tokio::select! {
                    biased;
                    Some(started) = self.started.recv() => running.push(watched(started)),
                    next = running.next() => match next {
                        Some((name, _, ended)) => { record_end(&self.tasks, &name, ended, true); }
                        None => break,
                    },
                }
            }
        };
        let abandoned = match tokio::time::timeout(deadline, drain).await {
            Ok(()) => Vec::new(),
            Err(_) => {
                let names: Vec<String> = self
                    .tasks
                    .snapshot()
                    .into_iter()
                    .filter(|s| matches!(s.state, TaskState::Running | TaskState::Retrying))
                    .map(|s| s.name)
                    .collect();
                warn!(tasks = ?names, ?deadline, "tasks did not stop in time; abandoned");
                names
            }
        };
        match died {
            Some(name) => Ending::Died(name),
            None if abandoned.is_empty() => Ending::Signalled,
            None => Ending::Abandoned(abandoned),
        }
    }
}

type Ended = Result<(), tokio::task::JoinError>;

/// A task's end, with its name. Dropping this (past the deadline) aborts it.
async fn watched(started: Started) -> (String, bool, Ended) {
    struct AbortOnDrop(JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut handle = AbortOnDrop(started.handle);
    let ended = (&mut handle.0).await;
    (started.name, started.vital, ended)
}

/// Records how a task ended; true when it ended badly (before shutdown, or
/// by a panic).
fn record_end(tasks: &Tasks, name: &str, ended: Ended, stopping: bool) -> bool {
    let done = tasks.state(name) == Some(TaskState::Stopped);
    let failure = match ended {
        Ok(()) if stopping || done => None,
        Ok(()) => Some("ended unexpectedly".to_owned()),
        Err(error) if error.is_panic() => Some("panicked".to_owned()),
        Err(error) => Some(error.to_string()),
    };
    match &failure {
        None => info!(task = %name, "task stopped"),
        Some(why) => error!(task = %name, why, "task died"),
    }
    tasks.update(name, |status| match failure.clone() {
        None => status.state = TaskState::Stopped,
        Some(why) => {
            status.state = TaskState::Failed;
            status.last_error = Some(why);
            status.last_error_at = Some(Timestamp::now());
        }
    });
    failure.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_vital_task_that_dies_stops_the_others() {
        let tasks = Tasks::default();
        let supervisor = Supervisor::new(tasks.clone());
        let spawner = supervisor.spawner();
        spawner.spawn("patient", false, |_| {
            let mut shutdown = spawner.shutdown();
            async move {
                let _ = shutdown.changed().await;
            }
        });
        spawner.spawn("fragile", true, |_| async { panic!("boom") });
        let ending = supervisor
            .run(std::future::pending(), Duration::from_secs(10))
            .await;
        assert_eq!(ending, Ending::Died("fragile".into()));
        assert_eq!(tasks.state("fragile"), Some(TaskState::Failed));
        assert_eq!(tasks.state("patient"), Some(TaskState::Stopped));
    }

    #[tokio::test]
    async fn a_signal_drains_tasks_and_abandons_the_slow_at_the_deadline() {
        let tasks = Tasks::default();
        let supervisor = Supervisor::new(tasks.clone());
        let spawner = supervisor.spawner();
        spawner.spawn("quick", true, |_| {
            let mut shutdown = spawner.shutdown();
            async move {
                let _ = shutdown.changed().await;
            }
        });
        spawner.spawn("stuck", false, |_| std::future::pending());
        drop(spawner);
        let ending = supervisor
            .run(std::future::ready(()), Duration::from_millis(200))
            .await;
        assert_eq!(ending, Ending::Abandoned(vec!["stuck".into()]));
        assert_eq!(tasks.state("quick"), Some(TaskState::Stopped));
    }
}

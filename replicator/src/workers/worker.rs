//! Background work as workers, after garage's: a worker does one step of
//! work at a time and says whether more is waiting; the supervisor owns the
//! loop around it, the one retry backoff, the worker's status and its stop.

use std::future::Future;

use tokio::sync::watch;
use tracing::warn;

use crate::workers::status::Task;
use crate::ReplicatorError;

/// What a worker has left after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// More work is waiting: the next step starts at once.
    Busy,
    /// Nothing to do until [`Worker::wait_for_work`] returns.
    Idle,
    /// The worker's job is over; it ends, and that is no failure.
    Done,
}

/// A background worker. A step that fails is retried, after the backoff,
/// by calling [`Worker::work`] again; a step must therefore leave the
/// worker ready for that. Steps and waits are dropped at shutdown: they
/// must not leave anything half done that a restart could not redo.
pub trait Worker: Send + 'static {
    /// Does one step of work.
    fn work(&mut self) -> impl Future<Output = Result<WorkerState, ReplicatorError>> + Send;

    /// Returns once there may be work again.
    fn wait_for_work(&mut self) -> impl Future<Output = ()> + Send;
}

/// Runs `worker` until it is done or `shutdown`, showing its state in
/// `task`.
pub async fn drive<W: Worker>(mut worker: W, task: Task, mut shutdown: watch::Receiver<bool>) {
    let mut state = WorkerState::Busy;
    // Whether the last step failed: the status changes only then, not at
    // every step (the follower's is a change of the feed).
    let mut failing = false;
    loop {
        let current = state;
        let step = async {
            match current {
                WorkerState::Busy => match worker.work().await {
                    Ok(next) => {
                        if std::mem::take(&mut failing) {
                            task.succeeded();
                        }
                        next
                    }
                    Err(error) => {
                        failing = true;
                        let delay = task.failed(&error);
                        warn!(task = %task.name(), %error, ?delay, "background work failed; retrying");
                        tokio::time::sleep(delay).await;
                        WorkerState::Busy
                    }
                },
                WorkerState::Idle => {
                    worker.wait_for_work().await;
                    WorkerState::Busy
                }
                WorkerState::Done => WorkerState::Done,
            }
        };
        tokio::select! {
            next = step => state = next,
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        if state == WorkerState::Done {
            task.done();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::Notify;

    use super::*;
    use crate::workers::status::{TaskState, Tasks};

    /// Fails `failures` times, then works through `items`, then waits for
    /// `more` and is done.
    struct Counting {
        failures: u32,
        items: u32,
        done: u32,
        more: Arc<Notify>,
        waited: bool,
    }

    impl Worker for Counting {
        async fn work(&mut self) -> Result<WorkerState, ReplicatorError> {
            if self.failures > 0 {
                self.failures -= 1;
                return Err(ReplicatorError::Interrupted("failing on purpose"));
            }
            if self.done < self.items {
                self.done += 1;
                return Ok(WorkerState::Busy);
            }
            Ok(if self.waited {
                WorkerState::Done
            } else {
                WorkerState::Idle
            })
        }

        async fn wait_for_work(&mut self) {
            self.more.notified().await;
            self.waited = true;
        }
    }

    fn state(tasks: &Tasks) -> (TaskState, u32) {
        let status = tasks.snapshot().remove(0);
        (status.state, status.failures)
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_retries_with_backoff_works_while_busy_waits_when_idle() {
        let tasks = Tasks::default();
        let task = tasks.register("counting", true);
        let more = Arc::new(Notify::new());
        let worker = Counting {
            failures: 2,
            items: 3,
            done: 0,
            more: Arc::clone(&more),
            waited: false,
        };
        let (_stop, shutdown) = watch::channel(false);
        let driven = tokio::spawn(drive(worker, task, shutdown));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(state(&tasks), (TaskState::Retrying, 1), "in its backoff");
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            state(&tasks),
            (TaskState::Running, 0),
            "idle after its items"
        );
        assert!(!driven.is_finished());
        more.notify_one();
        driven.await.unwrap();
        assert_eq!(state(&tasks).0, TaskState::Stopped, "done is no failure");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_a_waiting_worker() {
        let tasks = Tasks::default();
        let task = tasks.register("counting", true);
        let worker = Counting {
            failures: 0,
            items: 0,
            done: 0,
            more: Arc::new(Notify::new()),
            waited: false,
        };
        let (stop, shutdown) = watch::channel(false);
        let driven = tokio::spawn(drive(worker, task, shutdown));
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.send_replace(true);
        driven.await.unwrap();
        assert_eq!(state(&tasks).0, TaskState::Running, "stopped, not done");
    }
}

//! Group commit for requests to CouchDB: callers that arrive while the
//! requests of their kind in flight are as many as allowed wait for one to
//! end, then share the next one. A lone caller is served at once; under load, one request
//! serves everyone who queued meanwhile, so the number of requests follows
//! the sidecar's pace rather than the number of callers.

use std::future::Future;
use std::sync::{Mutex, PoisonError};

use tokio::sync::{oneshot, Semaphore};

/// Items waiting for the next request, each with where its answer goes.
type Queue<I, O> = Vec<(I, oneshot::Sender<O>)>;

/// Gathers items of many callers into requests of at most `max` items.
pub struct Batcher<I, O> {
    queue: Mutex<Queue<I, O>>,
    /// One held per request in flight.
    in_flight: Semaphore,
    max: usize,
}

impl<I, O> Batcher<I, O> {
    /// Requests of at most `max` items, `in_flight` of them at once.
    pub fn new(max: usize, in_flight: usize) -> Self {
        Batcher {
            queue: Mutex::new(Vec::new()),
            in_flight: Semaphore::new(in_flight.max(1)),
            max: max.max(1),
        }
    }

    /// Hands `item` over and waits for its answer. `send` makes one request
    /// of the items given and answers each, in order (an answer missing
    /// counts as `None`). `None` too when the request serving `item` was
    /// cancelled before it answered.
    ///
    /// Cancellation: `item` may or may not have been sent.
    pub async fn submit<F, Fut>(&self, item: I, send: F) -> Option<O>
    where
        F: Fn(Vec<I>) -> Fut,
        Fut: Future<Output = Vec<O>>,
    {
        let (answer, mut answered) = oneshot::channel();
        self.lock().push((item, answer));
        loop {
            // The semaphore is never closed.
            let _in_flight = self.in_flight.acquire().await.ok()?;
            match answered.try_recv() {
                Ok(answer) => return Some(answer),
                Err(oneshot::error::TryRecvError::Closed) => return None,
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            // Still queued: this caller sends the next request, for the
            // oldest items (its own among them, or in a later round).
            let batch: Queue<I, O> = {
                let mut queue = self.lock();
                let take = queue.len().min(self.max);
                queue.drain(..take).collect()
            };
            if batch.is_empty() {
                // Its item is in a request in flight: wait for that one.
                drop(_in_flight);
                return answered.await.ok();
            }
            let (items, answers): (Vec<I>, Vec<oneshot::Sender<O>>) = batch.into_iter().unzip();
            let outputs = send(items).await;
            for (answer, output) in answers.into_iter().zip(outputs) {
                // A caller that gave up no longer listens.
                let _ = answer.send(output);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue<I, O>> {
        // Pushes and drains only: never left inconsistent.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn callers_arriving_during_a_request_share_the_next_one() {
        let batcher: Arc<Batcher<u32, u32>> = Arc::new(Batcher::new(100, 1));
        let requests = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let send = {
            let requests = Arc::clone(&requests);
            move |items: Vec<u32>| {
                let requests = Arc::clone(&requests);
                let mut released = released.clone();
                async move {
                    requests.fetch_add(1, Ordering::SeqCst);
                    // The first request stays in flight until all queued.
                    let _ = released.wait_for(|go| *go).await;
                    items.into_iter().map(|n| n * 10).collect()
                }
            }
        };
        let mut callers = tokio::task::JoinSet::new();
        for n in 0..50 {
            let (batcher, send) = (Arc::clone(&batcher), send.clone());
            callers.spawn(async move { (n, batcher.submit(n, send).await) });
        }
        while batcher.lock().len() < 49 {
            tokio::task::yield_now().await;
        }
        release.send_replace(true);
        while let Some(joined) = callers.join_next().await {
            let (n, answer) = joined.unwrap();
            assert_eq!(answer, Some(n * 10));
        }
        assert_eq!(
            requests.load(Ordering::SeqCst),
            2,
            "the first, then the 49 others"
        );
    }

    #[tokio::test]
    async fn up_to_in_flight_requests_run_at_once_and_each_caller_is_answered() {
        let batcher: Arc<Batcher<u32, u32>> = Arc::new(Batcher::new(100, 2));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let send = {
            let (running, most) = (Arc::clone(&running), Arc::clone(&most));
            move |items: Vec<u32>| {
                let (running, most) = (Arc::clone(&running), Arc::clone(&most));
                let mut released = released.clone();
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    let _ = released.wait_for(|go| *go).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    items.into_iter().map(|n| n + 1).collect()
                }
            }
        };
        let mut callers = tokio::task::JoinSet::new();
        for n in 0..20 {
            let (batcher, send) = (Arc::clone(&batcher), send.clone());
            callers.spawn(async move { (n, batcher.submit(n, send).await) });
        }
        while running.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        release.send_replace(true);
        while let Some(joined) = callers.join_next().await {
            let (n, answer) = joined.unwrap();
            assert_eq!(answer, Some(n + 1));
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn requests_hold_at_most_max_items() {
        let batcher: Batcher<u32, u32> = Batcher::new(3, 1);
        for n in 0..7 {
            batcher.lock().push((n, oneshot::channel().0));
        }
        let sizes = Mutex::new(Vec::new());
        let answer = batcher
            .submit(7, |items: Vec<u32>| {
                sizes.lock().unwrap().push(items.len());
                async move { items }
            })
            .await;
        assert_eq!(answer, Some(7));
        assert_eq!(*sizes.lock().unwrap(), vec![3, 3, 2]);
    }
}

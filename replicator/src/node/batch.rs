//! Group commit for requests to CouchDB: callers that arrive while the
//! requests of their kind in flight are as many as allowed wait for one to
//! end, then share the next one. A lone caller is served at once; under load, one request
//! serves everyone who queued meanwhile, so the number of requests follows
//! the sidecar's pace rather than the number of callers.
//!
//! A paced batcher also waits, after a request ends, twice as long as it
//! took before sending the next: a sidecar under load answers slowly, and
//! the callers that come meanwhile share one request rather than each pay
//! for one; an idle one answers in milliseconds, and so is waited for that
//! little. A caller in a hurry ([`Batcher::submit_now`]) cuts that wait
//! short, and takes along whatever waits.

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{oneshot, Notify, Semaphore};
use tokio::time::Instant;

/// Items waiting for the next request, each with where its answer goes.
type Queue<I, O> = Vec<(I, oneshot::Sender<O>)>;

/// What waits for the next request.
struct Waiting<I, O> {
    queue: Queue<I, O>,
    /// How many of the oldest items to send at once, the last of them
    /// from a caller in a hurry; 0 when none waits.
    hurried: usize,
}

/// Gathers items of many callers into requests of at most `max` items.
pub struct Batcher<I, O> {
    waiting: Mutex<Waiting<I, O>>,
    /// Wakes a request waiting for its pace when a caller in a hurry came.
    hurry: Notify,
    /// One held per request in flight.
    in_flight: Semaphore,
    max: usize,
    /// The longest a paced batcher waits between requests; zero when not
    /// paced.
    most_wait: Duration,
    /// When the last request ended, and how long it took.
    last: Mutex<Option<(Instant, Duration)>>,
}

impl<I, O> Batcher<I, O> {
    /// Requests of at most `max` items, `in_flight` of them at once.
    pub fn new(max: usize, in_flight: usize) -> Self {
        Batcher {
            waiting: Mutex::new(Waiting {
                queue: Vec::new(),
                hurried: 0,
            }),
            hurry: Notify::new(),
            in_flight: Semaphore::new(in_flight.max(1)),
            max: max.max(1),
            most_wait: Duration::ZERO,
            last: Mutex::new(None),
        }
    }

    /// Paced: a request starts no sooner than twice the last one's
    /// duration after it ended, nor later than `most_wait` after.
    pub fn paced(mut self, most_wait: Duration) -> Self {
        self.most_wait = most_wait;
        self
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
        self.hand_over(item, send, false).await
    }

    /// [`Batcher::submit`], for a caller in a hurry: the next request
    /// leaves as soon as none is in flight, without waiting for its pace,
    /// and carries `item` with whatever waits.
    pub async fn submit_now<F, Fut>(&self, item: I, send: F) -> Option<O>
    where
        F: Fn(Vec<I>) -> Fut,
        Fut: Future<Output = Vec<O>>,
    {
        self.hand_over(item, send, true).await
    }

    async fn hand_over<F, Fut>(&self, item: I, send: F, hurried: bool) -> Option<O>
    where
        F: Fn(Vec<I>) -> Fut,
        Fut: Future<Output = Vec<O>>,
    {
        let (answer, mut answered) = oneshot::channel();
        {
            let mut waiting = self.lock();
            waiting.queue.push((item, answer));
            if hurried {
                waiting.hurried = waiting.queue.len();
            }
        }
        if hurried {
            self.hurry.notify_waiters();
        }
        loop {
            // The semaphore is never closed.
            let _in_flight = self.in_flight.acquire().await.ok()?;
            match answered.try_recv() {
                Ok(answer) => return Some(answer),
                Err(oneshot::error::TryRecvError::Closed) => return None,
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            // Still queued: this caller sends the next request, for the
            // oldest items (its own among them, or in a later round), once
            // paced.
            let last = *self.last.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((ended, took)) = last {
                let hurry = self.hurry.notified();
                tokio::pin!(hurry);
                // Listening before looking: a hurry after the look wakes it.
                hurry.as_mut().enable();
                if self.lock().hurried == 0 {
                    let paced = ended + (took * 2).min(self.most_wait);
                    tokio::select! {
                        () = tokio::time::sleep_until(paced) => {}
                        () = hurry => {}
                    }
                }
            }
            let batch: Queue<I, O> = {
                let mut waiting = self.lock();
                let take = waiting.queue.len().min(self.max);
                waiting.hurried = waiting.hurried.saturating_sub(take);
                waiting.queue.drain(..take).collect()
            };
            if batch.is_empty() {
                // Its item is in a request in flight: wait for that one.
                drop(_in_flight);
                return answered.await.ok();
            }
            let (items, answers): (Vec<I>, Vec<oneshot::Sender<O>>) = batch.into_iter().unzip();
            let started = Instant::now();
            let outputs = send(items).await;
            let ended = Instant::now();
            *self.last.lock().unwrap_or_else(PoisonError::into_inner) =
                Some((ended, ended - started));
            for (answer, output) in answers.into_iter().zip(outputs) {
                // A caller that gave up no longer listens.
                let _ = answer.send(output);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting<I, O>> {
        // Pushes and drains only: never left inconsistent.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
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
        while batcher.lock().queue.len() < 49 {
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

    /// The requests a batcher paced to at most 100 ms makes for `calls`,
    /// each `(at, item, hurried)`: when, in milliseconds from the start,
    /// and with which items. Each item is how long its request takes, in
    /// milliseconds.
    async fn paced_requests(calls: &[(u64, u64, bool)]) -> Vec<(Duration, Vec<u64>)> {
        let ms = Duration::from_millis;
        let batcher: Arc<Batcher<u64, u64>> = Arc::new(Batcher::new(100, 1).paced(ms(100)));
        let start = Instant::now();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let send = {
            let sent = Arc::clone(&sent);
            move |items: Vec<u64>| {
                let sent = Arc::clone(&sent);
                async move {
                    sent.lock().unwrap().push((start.elapsed(), items.clone()));
                    tokio::time::sleep(ms(items[0])).await;
                    items
                }
            }
        };
        let callers: Vec<_> = calls
            .iter()
            .map(|&(at, item, hurried)| {
                let (batcher, send) = (Arc::clone(&batcher), send.clone());
                tokio::spawn(async move {
                    tokio::time::sleep_until(start + ms(at)).await;
                    if hurried {
                        batcher.submit_now(item, send).await
                    } else {
                        batcher.submit(item, send).await
                    }
                })
            })
            .collect();
        for caller in callers {
            assert!(caller.await.unwrap().is_some());
        }
        let sent = sent.lock().unwrap().clone();
        sent
    }

    #[tokio::test(start_paused = true)]
    async fn a_paced_batcher_waits_twice_the_last_request_for_more_callers() {
        let ms = Duration::from_millis;
        let sent = paced_requests(&[
            // Alone: sent at once, ends at 10 ms.
            (0, 10, false),
            // Come after it ended: wait until 10 + 2 × 10 ms, together.
            (12, 60, false),
            (25, 61, false),
            // A request of 60 ms ending at 90: the next at most 100 ms
            // after, not 120.
            (150, 1, false),
            // Long after: at once.
            (1000, 2, false),
        ])
        .await;
        assert_eq!(
            sent,
            vec![
                (ms(0), vec![10]),
                (ms(30), vec![60, 61]),
                (ms(190), vec![1]),
                (ms(1000), vec![2]),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_in_a_hurry_cuts_the_pace_short_and_takes_the_waiting_along() {
        let ms = Duration::from_millis;
        let sent = paced_requests(&[
            // Alone: sent at once, ends at 40 ms; the next paced to 120.
            (0, 40, false),
            // Waits for the pace, until a hurry at 70 takes it along.
            (50, 1, false),
            (70, 2, true),
            // Paced after that one (ended at 71, took 1 ms): at 73.
            (72, 3, false),
            // Alone: at once, in flight until 230.
            (200, 30, false),
            // In a hurry while it is in flight: as soon as it ends, not
            // paced to 290.
            (210, 4, true),
        ])
        .await;
        assert_eq!(
            sent,
            vec![
                (ms(0), vec![40]),
                (ms(70), vec![1, 2]),
                (ms(73), vec![3]),
                (ms(200), vec![30]),
                (ms(230), vec![4]),
            ]
        );
    }

    #[tokio::test]
    async fn requests_hold_at_most_max_items() {
        let batcher: Batcher<u32, u32> = Batcher::new(3, 1);
        for n in 0..7 {
            batcher.lock().queue.push((n, oneshot::channel().0));
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

//! The hooks' deliveries: each hook reads the changes feed from where it
//! stands, in two lanes. The first delivers, in the feed's order, the
//! events this node owes at once; the second stands by for completions
//! another site delivers first, and delivers those it has not when their
//! turn comes. A failing delivery holds its lane (order is kept) and is
//! retried with a growing wait, until given up. Positions are saved after
//! deliveries: a crash delivers an event again, under its one id.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cheops_model::Timestamp;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::hooks::board::{Board, Delivery};
use crate::hooks::config::Hook;
use crate::hooks::delivery::{deliver, RETRIES};
use crate::hooks::duty::{duty, Duty};
use crate::hooks::positions::{Position, Positions};
use crate::hooks::receipts;
use crate::hooks::signature::message_id;
use crate::node::context::Context;
use crate::node::feed::{Event, EventType};
use crate::workers::worker::{Worker, WorkerState};
use crate::ReplicatorError;

/// Events read from the feed at a time.
const PAGE: usize = 256;

/// The wait before a lane asks again for a receipt it could not read.
const RECEIPT_RETRY: Duration = Duration::from_secs(5);
/// How long a hook waits before reading the changes feed again after its
/// file could not be read.
const FEED_RETRY: Duration = Duration::from_secs(1);

/// Which events a lane delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Now,
    StandBy,
}

/// One lane of one hook.
struct Lane {
    hook: Arc<Hook>,
    kind: Kind,
    /// The last event it is done with.
    done: u64,
    /// Failed attempts of the event at its head.
    attempts: u32,
    /// Not before then: a retry's wait, or a completion's turn.
    not_before: Option<Instant>,
}

impl Lane {
    /// Done with everything up to `seq`: the event at its head is a new
    /// one, with no attempt and no wait of its own yet.
    fn pass(&mut self, seq: u64) {
        self.done = seq;
        self.attempts = 0;
        self.not_before = None;
    }
}

/// What a lane did in a step.
enum Step {
    /// Delivered or gave up an event: look again at once, and save.
    Ended,
    /// Passed events by: look again at once.
    Moved,
    /// Nothing until then.
    Until(Instant),
    /// Nothing until the feed grows.
    Idle,
}

/// The worker delivering every hook's events.
pub struct Deliveries {
    pub ctx: Context,
    pub http: reqwest::Client,
    /// The hooks, as the file last read says.
    pub hooks: watch::Receiver<Arc<Vec<Hook>>>,
    pub positions: Positions,
    pub board: Board,
    /// How long each site standing by for a completion waits, per turn.
    pub grace: Duration,
    pub feed: watch::Receiver<u64>,
    lanes: Vec<Lane>,
    /// The earliest time a lane waits for.
    wake: Option<Instant>,
    /// The hooks changed since the lanes were built.
    reload: bool,
    /// The lanes were built anew: their positions are saved, so that a
    /// new hook starts where it started, after a restart too.
    rebuilt: bool,
}

impl Deliveries {
    pub fn new(
        ctx: Context,
        http: reqwest::Client,
        hooks: watch::Receiver<Arc<Vec<Hook>>>,
        positions: Positions,
        board: Board,
        grace: Duration,
    ) -> Self {
        let feed = ctx.feed.watch();
        let mut deliveries = Deliveries {
            ctx,
            http,
            hooks,
            positions,
            board,
            grace,
            feed,
            lanes: Vec::new(),
            wake: None,
            reload: true,
            rebuilt: false,
        };
        deliveries.reload();
        deliveries
    }

    /// Builds the lanes of the hooks as last read, each at its position. A
    /// lane whose hook still goes to the same place, for the same events,
    /// keeps its failed attempts and its wait: reading the file again is
    /// no reason to retry sooner, nor to give up later.
    fn reload(&mut self) {
        self.reload = false;
        self.rebuilt = true;
        let hooks = Arc::clone(&self.hooks.borrow_and_update());
        let newest = self.ctx.feed.durable();
        let mut before: HashMap<(String, Kind), Lane> = self
            .lanes
            .drain(..)
            .map(|lane| ((lane.hook.name.clone(), lane.kind), lane))
            .collect();
        for hook in hooks.iter() {
            let hook = Arc::new(hook.clone());
            let Position { now, standby } = self.positions.of(&hook.name, newest);
            for (kind, done) in [(Kind::Now, now), (Kind::StandBy, standby)] {
                let mut lane = Lane {
                    hook: Arc::clone(&hook),
                    kind,
                    done,
                    attempts: 0,
                    not_before: None,
                };
                if let Some(old) = before.remove(&(hook.name.clone(), kind)) {
                    if old.done == done && old.hook.same_deliveries(&hook) {
                        lane.attempts = old.attempts;
                        lane.not_before = old.not_before;
                    }
                }
                self.lanes.push(lane);
            }
        }
        let names: Vec<&str> = hooks.iter().map(|h| h.name.as_str()).collect();
        self.positions.keep_only(names.iter().copied());
        self.board.keep(&names);
        if !hooks.is_empty() {
            info!(site = %self.ctx.site, hooks = ?names, "hooks loaded");
        }
    }

    /// One step of `lane`: at most one delivery.
    async fn step(&self, lane: &mut Lane, durable: u64) -> Step {
        if let Some(at) = lane.not_before.filter(|at| *at > Instant::now()) {
            return Step::Until(at);
        }
        let feed = &self.ctx.feed;
        let page = match feed.read(Some(lane.done), None, PAGE) {
            Ok(Some(page)) => page,
            Ok(None) => match feed.read(None, None, 1) {
                Ok(first) => {
                    let oldest = first
                        .and_then(|p| p.events.first().map(|e| e.seq.saturating_sub(1)))
                        .unwrap_or(durable);
                    error!(site = %self.ctx.site, hook = %lane.hook.name, from = lane.done, to = oldest, "events left the changes feed before this hook could deliver them; it resumes at the oldest kept");
                    self.ctx.metrics.hook(&lane.hook.name, "lost");
                    lane.pass(oldest);
                    return Step::Moved;
                }
                Err(error) => return self.read_again(lane, &error),
            },
            Err(error) => return self.read_again(lane, &error),
        };
        let site = &self.ctx.site;
        for event in page.events.iter().take_while(|e| e.seq <= durable) {
            let owed = match duty(event, site) {
                Duty::Now if lane.kind == Kind::Now => Some(0),
                Duty::StandBy(turn) if lane.kind == Kind::StandBy => Some(turn),
                _ => None,
            };
            let Some(turn) = owed.filter(|_| lane.hook.wants(event.kind, &event.resource)) else {
                lane.pass(event.seq);
                continue;
            };
            if turn > 0 {
                if let Some(at) = self.due(event, turn) {
                    lane.not_before = Some(at);
                    return Step::Until(at);
                }
                match receipts::delivered(&self.ctx.couch, event, &lane.hook.name).await {
                    Ok(true) => {
                        self.ctx
                            .metrics
                            .hook(&lane.hook.name, "delivered-elsewhere");
                        self.board
                            .update(&lane.hook.name, |s| s.delivered_elsewhere += 1);
                        lane.pass(event.seq);
                        continue;
                    }
                    Ok(false) => {}
                    Err(error) => {
                        warn!(site = %site, hook = %lane.hook.name, resource = %event.resource, request = %event.request, %error, "cannot read whether a completion was delivered; asking again");
                        let at = Instant::now() + RECEIPT_RETRY;
                        lane.not_before = Some(at);
                        return Step::Until(at);
                    }
                }
            }
            return self.deliver(lane, event).await;
        }
        if page.events.len() >= PAGE && lane.done < durable {
            Step::Moved
        } else {
            Step::Idle
        }
    }

    /// The feed's file could not be read: the events are still there, so
    /// `lane` reads them again later rather than skip them.
    fn read_again(&self, lane: &mut Lane, error: &ReplicatorError) -> Step {
        warn!(site = %self.ctx.site, hook = %lane.hook.name, %error, "cannot read the changes feed; trying again");
        let at = Instant::now() + FEED_RETRY;
        lane.not_before = Some(at);
        Step::Until(at)
    }

    /// When the turn `turn` of a completion comes, if it has not yet.
    fn due(&self, event: &Event, turn: u32) -> Option<Instant> {
        let wait = self.grace.saturating_mul(turn).as_nanos() as i128;
        let left = event.time.unix_nanos() + wait - Timestamp::now().unix_nanos();
        (left > 0)
            .then(|| Instant::now() + Duration::from_nanos(left.try_into().unwrap_or(u64::MAX)))
    }

    /// Delivers the event at the head of `lane` once.
    async fn deliver(&self, lane: &mut Lane, event: &Event) -> Step {
        let hook = &lane.hook;
        let answer = deliver(&self.http, hook, event).await;
        lane.attempts += 1;
        let record = |result: String, delivered: bool| Delivery {
            id: message_id(event),
            event: event.kind,
            resource: event.resource.clone(),
            request: event.request.clone(),
            result,
            delivered,
            attempts: lane.attempts,
            at: Timestamp::now(),
        };
        match answer {
            Ok(status) => {
                info!(site = %self.ctx.site, hook = %hook.name, event = event.kind.as_str(), resource = %event.resource, request = %event.request, attempts = lane.attempts, "event delivered");
                self.ctx.metrics.hook(&hook.name, "delivered");
                self.board
                    .ended(&hook.name, record(status.to_string(), true));
                if event.kind == EventType::OperationComplete {
                    if let Err(error) = receipts::record(
                        &self.ctx.couch,
                        event,
                        &hook.name,
                        &self.ctx.site,
                        self.ctx.origin(),
                    )
                    .await
                    {
                        warn!(site = %self.ctx.site, hook = %hook.name, resource = %event.resource, request = %event.request, %error, "delivered, but the receipt could not be written; a site standing by may deliver it again, under the same id");
                    }
                }
            }
            Err(failure) => {
                self.ctx.metrics.hook(&hook.name, "failed");
                self.board.update(&hook.name, |s| s.failed_attempts += 1);
                if let Some(wait) = RETRIES.get(lane.attempts as usize - 1) {
                    warn!(site = %self.ctx.site, hook = %hook.name, event = event.kind.as_str(), resource = %event.resource, request = %event.request, attempts = lane.attempts, %failure, ?wait, "delivery failed; retrying");
                    let at = Instant::now() + *wait;
                    lane.not_before = Some(at);
                    return Step::Until(at);
                }
                error!(site = %self.ctx.site, hook = %hook.name, event = event.kind.as_str(), resource = %event.resource, request = %event.request, attempts = lane.attempts, %failure, "delivery given up");
                self.ctx.metrics.hook(&hook.name, "abandoned");
                self.board.ended(&hook.name, record(failure, false));
            }
        }
        lane.pass(event.seq);
        Step::Ended
    }
}

impl Worker for Deliveries {
    async fn work(&mut self) -> Result<WorkerState, ReplicatorError> {
        if self.reload || self.hooks.has_changed().unwrap_or(false) {
            self.reload();
        }
        self.wake = None;
        if self.lanes.is_empty() {
            return Ok(WorkerState::Idle);
        }
        // Only durable events: their numbers hold after a crash.
        self.ctx.feed.sync().await?;
        let durable = self.ctx.feed.durable();
        let mut lanes = std::mem::take(&mut self.lanes);
        let steps =
            futures::future::join_all(lanes.iter_mut().map(|lane| self.step(lane, durable))).await;
        self.lanes = lanes;
        for pair in self.lanes.chunks(2) {
            let [now, standby] = pair else { continue };
            let name = &now.hook.name;
            self.positions.set(
                name,
                Position {
                    now: now.done,
                    standby: standby.done,
                },
            );
            let behind = durable.saturating_sub(now.done.min(standby.done));
            self.board.update(name, |s| s.backlog = behind);
        }
        let (mut moved, mut ended) = (false, false);
        for step in steps {
            match step {
                Step::Ended => (moved, ended) = (true, true),
                Step::Moved => moved = true,
                Step::Until(at) => self.wake = Some(self.wake.map_or(at, |w| w.min(at))),
                Step::Idle => {}
            }
        }
        // Passing events by needs no saving: passing them again is harmless.
        if ended || self.rebuilt {
            self.positions.save().await?;
            self.rebuilt = false;
        }
        Ok(if moved {
            WorkerState::Busy
        } else {
            WorkerState::Idle
        })
    }

    async fn wait_for_work(&mut self) {
        let wake = self.wake;
        let until = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.feed.changed() => {}
            _ = self.hooks.changed() => self.reload = true,
            () = until => {}
        }
    }
}

#[cfg(test)]
mod tests;

//! What the repair worker remembers of the replication to one peer, and
//! what it decides at each look: a broken replication is recreated, each
//! time after a longer wait; documents the replication could not write are
//! sent again from the start, until a resend writes them all.

use std::time::Duration;

use cheops_model::Timestamp;
use serde::Serialize;
use tokio::time::Instant;

/// The longest wait between two recreations, or two resends.
const MAX_WAIT: Duration = Duration::from_secs(600);

/// The replication to one peer as its last check saw it, for `/health`,
/// `/metrics` and Chephren.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicationStatus {
    pub peer: String,
    /// What the server that runs it says (see
    /// [`crate::metrics::replication_state`]).
    pub state: &'static str,
    /// Documents it could not write to the peer, as CouchDB 3's scheduler
    /// counts them (PouchDB Server does not tell).
    pub write_failures: u64,
    /// Whether documents it could not write are being sent again.
    pub resend: Resend,
    /// When it was last checked.
    pub checked: Timestamp,
}

/// Where sending again what a replication could not write stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resend {
    /// Nothing is known to be missing.
    #[default]
    None,
    /// Documents were not written: a resend starts at the next check due.
    Due,
    /// A resend is running.
    Running,
}

/// The worker's memory of one peer's replication.
#[derive(Debug, Clone)]
pub(super) struct Peer {
    pub status: ReplicationStatus,
    /// The write failures the running replication reported last.
    failures_seen: u64,
    /// Recreations of a broken replication in a row.
    recreations: u32,
    recreate_after: Option<Instant>,
    /// Resends that did not write everything, in a row.
    resends: u32,
    resend_after: Instant,
    /// The peer database's identity, as last read: what the replication
    /// does not send back to it.
    pub identity: Option<String>,
}

impl Peer {
    pub fn new(peer: &str, now: Instant) -> Self {
        Peer {
            status: ReplicationStatus {
                peer: peer.to_owned(),
                state: "missing",
                write_failures: 0,
                resend: Resend::None,
                checked: Timestamp::now(),
            },
            failures_seen: 0,
            recreations: 0,
            recreate_after: None,
            resends: 0,
            resend_after: now,
            identity: None,
        }
    }

    /// Records what a check saw of the continuous replication; `true`
    /// when it could not write more documents than it said before.
    pub fn saw(&mut self, state: &'static str, write_failures: u64, now: Instant) -> bool {
        self.status.state = state;
        self.status.write_failures = write_failures;
        self.status.checked = Timestamp::now();
        let more = write_failures > self.failures_seen;
        if more && self.status.resend == Resend::None {
            self.status.resend = Resend::Due;
            self.resend_after = now;
        }
        // Lower when its job restarted: the count starts over.
        self.failures_seen = write_failures;
        if matches!(state, "running" | "triggered" | "pending") {
            self.recreations = 0;
            self.recreate_after = None;
        }
        more
    }

    /// Whether a broken replication is to be recreated now; if so, the
    /// next recreation waits longer.
    pub fn recreate_broken(&mut self, every: Duration, now: Instant) -> bool {
        if self.recreate_after.is_some_and(|after| now < after) {
            return false;
        }
        self.recreations += 1;
        self.recreate_after = Some(now + wait(every, self.recreations));
        true
    }

    /// Whether a resend is due now.
    pub fn resend_due(&self, now: Instant) -> bool {
        self.status.resend == Resend::Due && now >= self.resend_after
    }

    pub fn resend_started(&mut self) {
        self.status.resend = Resend::Running;
    }

    /// Records how a resend ended: `clean` when it wrote every document.
    pub fn resend_ended(&mut self, clean: bool, every: Duration, now: Instant) {
        if clean {
            self.resends = 0;
            self.status.resend = Resend::None;
        } else {
            self.resends += 1;
            self.resend_after = now + wait(every, self.resends);
            self.status.resend = Resend::Due;
        }
    }
}

/// States in which a replication moves nothing until it is recreated, or
/// until its server retries it.
pub(super) fn is_broken(state: &str) -> bool {
    matches!(state, "failed" | "error" | "crashing")
}

/// The wait after the `n`th try in a row (≥ 1): one check period, doubling,
/// at most [`MAX_WAIT`] (or the period, if longer).
fn wait(every: Duration, n: u32) -> Duration {
    let doubled = every.saturating_mul(1 << n.saturating_sub(1).min(16));
    doubled.min(MAX_WAIT.max(every))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY: Duration = Duration::from_secs(30);

    #[test]
    fn waits_double_up_to_ten_minutes() {
        assert_eq!(wait(EVERY, 1), EVERY);
        assert_eq!(wait(EVERY, 2), 2 * EVERY);
        assert_eq!(wait(EVERY, 5), 16 * EVERY);
        assert_eq!(wait(EVERY, 6), MAX_WAIT);
        assert_eq!(wait(EVERY, 1000), MAX_WAIT);
        assert_eq!(wait(Duration::from_secs(900), 3), Duration::from_secs(900));
    }

    /// Checked every period while it stays broken, a replication is
    /// recreated at the first check, then after 1, 2, 4… periods.
    #[test]
    fn a_broken_replication_is_recreated_less_and_less_often() {
        let start = Instant::now();
        let mut peer = Peer::new("site2", start);
        let mut recreated = Vec::new();
        for check in 0..40u32 {
            let now = start + EVERY * check;
            peer.saw("crashing", 0, now);
            if peer.recreate_broken(EVERY, now) {
                recreated.push(check);
            }
        }
        assert_eq!(recreated, [0, 1, 3, 7, 15, 31]);
        // Once it runs again, a new break is repaired at once.
        let now = start + EVERY * 41;
        peer.saw("running", 0, now);
        peer.saw("error", 0, now);
        assert!(peer.recreate_broken(EVERY, now));
    }

    /// Write failures that grow make a resend due; a resend that writes
    /// everything ends it; one that does not is tried again later.
    #[test]
    fn write_failures_are_resent_until_a_resend_writes_everything() {
        let now = Instant::now();
        let mut peer = Peer::new("site2", now);
        peer.saw("running", 0, now);
        assert_eq!(peer.status.resend, Resend::None);
        assert!(peer.saw("running", 2, now));
        assert!(peer.resend_due(now));
        peer.resend_started();
        // The same count seen again asks for nothing more.
        assert!(!peer.saw("running", 2, now));
        assert_eq!(peer.status.resend, Resend::Running);

        peer.resend_ended(false, EVERY, now);
        assert!(!peer.resend_due(now));
        assert!(peer.resend_due(now + EVERY));
        peer.resend_started();
        peer.resend_ended(false, EVERY, now + EVERY);
        assert!(!peer.resend_due(now + 2 * EVERY));
        assert!(peer.resend_due(now + 3 * EVERY));
        peer.resend_started();
        peer.resend_ended(true, EVERY, now + 3 * EVERY);
        assert_eq!(peer.status.resend, Resend::None);

        // Its job restarted (count back to 0), then failed again.
        peer.saw("running", 0, now + 4 * EVERY);
        assert_eq!(peer.status.resend, Resend::None);
        peer.saw("running", 1, now + 5 * EVERY);
        assert!(peer.resend_due(now + 5 * EVERY));
    }
}

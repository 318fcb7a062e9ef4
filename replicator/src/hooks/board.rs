//! What each hook's deliveries look like, for `/health`, `/metrics` and
//! Chephren: counts, the last deliveries, and the one failing now.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use cheops_model::Timestamp;
use serde::{Deserialize, Serialize};

use crate::node::feed::EventType;

/// How many of a hook's last deliveries are kept.
const LAST: usize = 10;

/// A hook's deliveries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookStatus {
    pub name: String,
    /// Events delivered (answered 2xx).
    pub delivered: u64,
    /// Attempts that failed (each retried, until given up).
    pub failed_attempts: u64,
    /// Events given up after every retry failed.
    pub abandoned: u64,
    /// Completions not delivered because another site had.
    pub delivered_elsewhere: u64,
    /// Events of the feed this hook has not looked at yet.
    pub backlog: u64,
    /// The last deliveries and given-up events, newest first.
    pub last: VecDeque<Delivery>,
}

/// One delivery, or one event given up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Its `webhook-id`.
    pub id: String,
    pub event: EventType,
    pub resource: String,
    pub request: String,
    /// The receiver's status, or what went wrong with the last attempt.
    pub result: String,
    pub delivered: bool,
    pub attempts: u32,
    pub at: Timestamp,
}

/// Every hook's status; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Board(Arc<Mutex<BTreeMap<String, HookStatus>>>);

impl Board {
    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, HookStatus>) -> T) -> T {
        // Every update sets counters and a list: never left inconsistent.
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Keeps the hooks named, dropping the others.
    pub fn keep(&self, names: &[&str]) {
        self.with(|hooks| {
            hooks.retain(|name, _| names.contains(&name.as_str()));
            for name in names {
                hooks
                    .entry((*name).to_owned())
                    .or_insert_with(|| HookStatus {
                        name: (*name).to_owned(),
                        ..HookStatus::default()
                    });
            }
        });
    }

    pub fn update(&self, hook: &str, f: impl FnOnce(&mut HookStatus)) {
        self.with(|hooks| {
            if let Some(status) = hooks.get_mut(hook) {
                f(status);
            }
        });
    }

    /// Records the end of a delivery: delivered or given up.
    pub fn ended(&self, hook: &str, delivery: Delivery) {
        self.update(hook, |status| {
            if delivery.delivered {
                status.delivered += 1;
            } else {
                status.abandoned += 1;
            }
            status.last.push_front(delivery);
            status.last.truncate(LAST);
        });
    }

    pub fn snapshot(&self) -> Vec<HookStatus> {
        self.with(|hooks| hooks.values().cloned().collect())
    }
}

//! A map by resource that knows which entries were used least lately: the
//! node's caches (recent documents, the ledger) bound their memory by
//! dropping those first.

use std::collections::{BTreeMap, HashMap};

#[derive(Debug)]
pub struct ByUse<V> {
    entries: HashMap<String, (u64, V)>,
    /// Keys by last use, oldest first.
    order: BTreeMap<u64, String>,
    clock: u64,
}

impl<V> Default for ByUse<V> {
    fn default() -> Self {
        ByUse {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            clock: 0,
        }
    }
}

impl<V> ByUse<V> {
    /// The entry of `key`, left where it is in the order of use.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.entries.get_mut(key).map(|(_, value)| value)
    }

    /// The entry of `key`, made the most recently used; created with
    /// `insert` when missing.
    pub fn use_or_insert_with(&mut self, key: &str, insert: impl FnOnce() -> V) -> &mut V {
        self.clock += 1;
        let used = self.clock;
        self.order.insert(used, key.to_owned());
        let (at, value) = self
            .entries
            .entry(key.to_owned())
            .or_insert_with(|| (used, insert()));
        if *at != used {
            self.order.remove(at);
            *at = used;
        }
        value
    }

    pub fn remove(&mut self, key: &str) -> Option<V> {
        let (used, value) = self.entries.remove(key)?;
        self.order.remove(&used);
        Some(value)
    }

    /// Removes the least recently used entry.
    pub fn pop_oldest(&mut self) -> Option<(String, V)> {
        let (_, key) = self.order.pop_first()?;
        let value = self.entries.remove(&key).map(|(_, value)| value)?;
        Some((key, value))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_goes_first() {
        let mut map = ByUse::default();
        for key in ["a", "b", "c"] {
            *map.use_or_insert_with(key, || 0) += 1;
        }
        *map.use_or_insert_with("a", || 0) += 1;
        // Reading without using does not move "b".
        *map.get_mut("b").expect("b") += 10;
        assert_eq!(map.pop_oldest(), Some(("b".to_owned(), 11)));
        assert_eq!(map.remove("c"), Some(1));
        assert_eq!(map.len(), 1);
        assert_eq!(map.pop_oldest(), Some(("a".to_owned(), 2)));
        assert_eq!(map.pop_oldest(), None);
        assert_eq!(map.order.len(), 0);
    }
}

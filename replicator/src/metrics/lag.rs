//! How far the follower is behind the database, from two opaque sequences.
//!
//! Sequences are opaque, but both servers give them a number that counts:
//! PouchDB Server's are plain numbers (`42`); CouchDB 3's are strings whose
//! numeric prefix, before the first `-`, is the sum of the database's shard
//! sequences (`"42-g1AAAA…"`), so that it grows by one per update on a
//! single node and at least as fast as updates on a cluster. The lag is the
//! database's number minus the follower's, or none when either has no such
//! number. It never goes below zero: the database's sequence is read after
//! the follower's, and a cluster's shards may answer out of step.

use serde_json::Value;

/// The number a sequence counts: a JSON number, or the digits a string
/// begins with (up to `-`, or all of it).
pub fn sequence_number(seq: &Value) -> Option<u64> {
    match seq {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => {
            let digits = s.split_once('-').map_or(s.as_str(), |(prefix, _)| prefix);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse().ok()
        }
        _ => None,
    }
}

/// Changes of the database not yet handled: `database` (its `update_seq`)
/// minus `handled` (the last change handed over; `None` when none was
/// yet, which counts from the beginning).
pub fn changes_lag(database: &Value, handled: Option<&Value>) -> Option<u64> {
    let database = sequence_number(database)?;
    let handled = match handled {
        Some(seq) => sequence_number(seq)?,
        None => 0,
    };
    Some(database.saturating_sub(handled))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pouchdb_sequences_are_numbers() {
        assert_eq!(changes_lag(&json!(42), Some(&json!(40))), Some(2));
        assert_eq!(changes_lag(&json!(42), Some(&json!(42))), Some(0));
    }

    #[test]
    fn couchdb_sequences_count_by_their_numeric_prefix() {
        let database = json!("1207-g1AAAAFTeJzLYWBg4MhgTmHgz8tPSTV0MDQy1zMwMDfWMwBKMiUyJMn___8_K5EBh6IkBSCZZA9Sx4FPnQNIXTxIHQM");
        let handled = json!("1200-g1AAAAFTeJzLYWBg4MhgTmHgz8tPSTV0MDQy1zMwMDfWMwBKMiUyJMn");
        assert_eq!(changes_lag(&database, Some(&handled)), Some(7));
        // A single node's sequence may be a bare number in a string.
        assert_eq!(changes_lag(&json!("9"), Some(&json!("3-x"))), Some(6));
    }

    #[test]
    fn nothing_handled_yet_counts_from_the_beginning() {
        assert_eq!(changes_lag(&json!(5), None), Some(5));
        assert_eq!(changes_lag(&json!("5-abc"), None), Some(5));
        assert_eq!(changes_lag(&json!(0), None), Some(0));
    }

    #[test]
    fn a_follower_ahead_of_a_stale_read_is_not_behind() {
        assert_eq!(changes_lag(&json!("10-a"), Some(&json!("12-b"))), Some(0));
        assert_eq!(changes_lag(&json!(10), Some(&json!(12))), Some(0));
    }

    #[test]
    fn sequences_without_a_number_give_no_lag() {
        for unreadable in [
            json!("g1AAAA-12"),
            json!(""),
            json!("-3"),
            json!("12a-b"),
            json!(-4),
            json!(1.5),
            json!(null),
            json!([3, "x"]),
        ] {
            assert_eq!(sequence_number(&unreadable), None, "{unreadable}");
            assert_eq!(changes_lag(&unreadable, Some(&json!(1))), None);
            assert_eq!(changes_lag(&json!(9), Some(&unreadable)), None);
        }
    }

    #[test]
    fn numbers_too_large_for_a_counter_give_no_lag() {
        let huge = json!("99999999999999999999999-x");
        assert_eq!(sequence_number(&huge), None);
        assert_eq!(sequence_number(&json!(u64::MAX)), Some(u64::MAX));
    }
}

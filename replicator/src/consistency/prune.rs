//! Pruning an operation's payload from the block, and finding it again when
//! a site must run the operation (CONSISTENCY.md, "Pruning").
//!
//! A pruned operation keeps its place, `RequestId`, `Type` and `Time` in the
//! block: the three rules read nothing else, so they decide on a pruned
//! block exactly what they decide on the full one. Its `Command` (text and
//! files) and `Site` are emptied: the operation lives on whole in the reply
//! that carries it, or in its history document.

use std::collections::{HashMap, HashSet};

use cheops_model::{Command, Operation};

/// What a site's database holds about one request of a resource: the
/// replies to it, and whether the operation whole is there (a reply that
/// carries it, or its history document).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub replies: Vec<SeenReply>,
    pub history: bool,
}

/// One stored reply to a request: whose, and whether that site's daemon
/// reads history documents (the reply's `ReadsHistory`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenReply {
    pub site: String,
    pub reads_history: bool,
}

/// Whether an operation of a resource living on `locations` may lose its
/// payload, given what the database holds about its request: every location
/// has run it (a stored reply), every reply to it comes from a site that
/// reads history documents, and the operation whole is stored (so that it
/// goes wherever the pruned block goes).
///
/// A location that never declares `ReadsHistory` (a Go node) therefore
/// keeps every payload of its resources in the block; so does an operation
/// that no reply carries and that has no history document.
pub fn prunable(locations: &[String], seen: &Seen) -> bool {
    seen.history
        && !locations.is_empty()
        && seen.replies.iter().all(|reply| reply.reads_history)
        && locations
            .iter()
            .all(|site| seen.replies.iter().any(|reply| &reply.site == site))
}

/// Empties the payload of each operation of `block` not pruned yet for which
/// `prune` says yes, and marks it `Pruned`; returns how many were pruned.
pub fn prune_payloads(block: &mut [Operation], mut prune: impl FnMut(&Operation) -> bool) -> usize {
    let mut pruned = 0;
    for op in block.iter_mut().filter(|op| !op.pruned) {
        if prune(op) {
            op.pruned = true;
            op.command = Command::default();
            op.site = String::new();
            pruned += 1;
        }
    }
    pruned
}

/// Rule 2's part in pruning: an operation is pruned in the merged `block`
/// when any of the merged revisions (`revisions`) has it pruned. A function
/// of the revisions alone, so every site merges into the same document; and
/// monotone, so a payload once gone never comes back.
pub fn prune_as_any<'a>(
    block: &mut [Operation],
    revisions: impl IntoIterator<Item = &'a [Operation]>,
) {
    let pruned: HashSet<&str> = revisions
        .into_iter()
        .flatten()
        .filter(|op| op.pruned)
        .map(|op| op.request_id.as_str())
        .collect();
    if !pruned.is_empty() {
        prune_payloads(block, |op| pruned.contains(op.request_id.as_str()));
    }
}

/// The operations of `before` (the blocks a write replaces) that `after`
/// no longer holds and that leave with their payload: pruned in none of
/// them. Each once, as `before` first has it. Such an operation may not
/// have run at the site that accepted it, so no reply may carry it: the
/// site dropping it keeps it in a history document (CONSISTENCY.md,
/// "History documents").
pub fn dropped<'a>(
    before: impl IntoIterator<Item = &'a Operation>,
    after: &[Operation],
) -> Vec<&'a Operation> {
    let before: Vec<&Operation> = before.into_iter().collect();
    let kept: HashSet<&str> = after.iter().map(|op| op.request_id.as_str()).collect();
    let pruned: HashSet<&str> = before
        .iter()
        .filter(|op| op.pruned)
        .map(|op| op.request_id.as_str())
        .collect();
    let mut seen = HashSet::new();
    before
        .into_iter()
        .filter(|op| {
            let request = op.request_id.as_str();
            !kept.contains(request) && !pruned.contains(request) && seen.insert(request)
        })
        .collect()
}

/// The commands to run for `ops`, in order: an operation's own, or, when it
/// is pruned, the one its history document holds (`history`, by request
/// id). `Err` names the first pruned operation whose history document is
/// not at hand: nothing may run before it arrives, since an empty command
/// is never run in a pruned operation's place.
pub fn payloads(
    ops: &[&Operation],
    history: &HashMap<String, Operation>,
) -> Result<Vec<Command>, String> {
    ops.iter()
        .map(|op| {
            if !op.pruned {
                return Ok(op.command.clone());
            }
            history
                .get(&op.request_id)
                .map(|whole| whole.command.clone())
                .ok_or_else(|| op.request_id.clone())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(site: &str, reads_history: bool) -> SeenReply {
        SeenReply {
            site: site.into(),
            reads_history,
        }
    }

    fn locations() -> Vec<String> {
        vec!["s1".into(), "s2".into()]
    }

    fn with_command(request: &str, command: &str) -> Operation {
        Operation {
            op_type: "add".into(),
            request_id: request.into(),
            command: Command {
                command: command.into(),
                ..Command::default()
            },
            site: "s1".into(),
            ..Operation::default()
        }
    }

    #[test]
    fn an_operation_every_location_ran_and_reads_from_history_is_prunable() {
        let seen = Seen {
            replies: vec![reply("s1", true), reply("s2", true), reply("s2", true)],
            history: true,
        };
        assert!(prunable(&locations(), &seen));
    }

    #[test]
    fn a_missing_location_a_reply_without_the_capability_or_no_history_keeps_the_payload() {
        let missing = Seen {
            replies: vec![reply("s1", true)],
            history: true,
        };
        let go_reply = Seen {
            replies: vec![reply("s1", true), reply("s2", false)],
            history: true,
        };
        let no_history = Seen {
            replies: vec![reply("s1", true), reply("s2", true)],
            history: false,
        };
        for seen in [missing, go_reply, no_history] {
            assert!(!prunable(&locations(), &seen), "{seen:?}");
        }
    }

    #[test]
    fn pruning_empties_the_payload_and_keeps_what_the_rules_read() {
        let mut block = vec![with_command("a", "echo a"), with_command("b", "echo b")];
        assert_eq!(prune_payloads(&mut block, |op| op.request_id == "a"), 1);
        assert!(block[0].pruned && block[0].command == Command::default());
        assert!(
            block[0].site.is_empty(),
            "who accepted it is in its carrier"
        );
        assert_eq!(
            (block[0].op_type.as_str(), block[0].request_id.as_str()),
            ("add", "a")
        );
        assert!(!block[1].pruned && block[1].command.command == "echo b");
        assert_eq!(prune_payloads(&mut block, |_| false), 0);
    }

    #[test]
    fn a_merge_prunes_what_any_revision_pruned() {
        let mut pruned_a = vec![with_command("a", "echo a")];
        prune_payloads(&mut pruned_a, |_| true);
        let mut merged = vec![with_command("a", "echo a"), with_command("b", "echo b")];
        prune_as_any(
            &mut merged,
            [pruned_a.as_slice(), &[with_command("b", "x")]],
        );
        assert!(merged[0].pruned && merged[0].command.command.is_empty());
        assert!(!merged[1].pruned);
    }

    #[test]
    fn a_pruned_operation_runs_its_history_command_or_waits_for_it() {
        let mut block = vec![with_command("a", "echo a"), with_command("b", "echo b")];
        prune_payloads(&mut block, |op| op.request_id == "a");
        let ops: Vec<&Operation> = block.iter().collect();
        assert_eq!(payloads(&ops, &HashMap::new()), Err("a".to_owned()));
        let history = HashMap::from([("a".to_owned(), with_command("a", "echo a"))]);
        let commands = payloads(&ops, &history).expect("all at hand");
        assert_eq!(commands[0].command, "echo a");
        assert_eq!(commands[1].command, "echo b");
    }

    #[test]
    fn a_pruned_http_or_redis_operation_runs_whole_from_its_stored_history() {
        use cheops_model::{HistoryDocument, HttpRequest, Kind};
        let whole = [
            Command::redis(vec!["LSET".into(), "my list".into(), "0".into()]),
            Command::http(HttpRequest {
                method: "PUT".into(),
                path: "/items/a?x=1".into(),
                headers: vec![("Content-Type".into(), "text/plain".into())],
                body: vec![0, 159, 146, 150],
            }),
        ];
        let mut block: Vec<Operation> = whole
            .iter()
            .enumerate()
            .map(|(i, command)| Operation {
                request_id: format!("r{i}"),
                command: command.clone(),
                ..Operation::default()
            })
            .collect();
        // Each history document as the database gives it back.
        let history: HashMap<String, Operation> = block
            .iter()
            .map(|op| {
                let doc = HistoryDocument::new("res", &locations(), op);
                let stored = serde_json::to_value(&doc).expect("a document");
                let read: HistoryDocument = serde_json::from_value(stored).expect("readable");
                (op.request_id.clone(), read.operation)
            })
            .collect();
        assert_eq!(prune_payloads(&mut block, |_| true), 2);
        assert!(block
            .iter()
            .all(|op| op.command.kind == Kind::Shell && op.command.is_empty()));
        let ops: Vec<&Operation> = block.iter().collect();
        assert_eq!(payloads(&ops, &history).expect("all at hand"), whole);
    }
}

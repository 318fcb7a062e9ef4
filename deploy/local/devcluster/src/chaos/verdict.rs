//! What a chaos run checks once the cluster is whole again: no accepted
//! operation lost, none run twice where it must not, none invented, none
//! run where its final block does not hold it, every site in the same
//! state, and every accepted operation held whole by every site of its
//! resource (its history lists it).
//!
//! Each operation writes its tag to its resource's file on each site it
//! runs on. Without a matrix every pair of operations is
//! take-both-any-order, so each operation of the final block must appear
//! exactly once in the file of each of its sites, and every accepted
//! operation must be in its final block. With the matrix, a set may rightly
//! drop earlier operations from the block and Rule 3 may re-run a block
//! from a reset: the file must hold exactly what replaying the final block
//! in order writes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use super::client::Outcome;
use super::plan::{site, Action, Plan, Resource};
use crate::Fault;
use cheops_testkit::convergence::{check, Snapshot};
use cheops_testkit::Process;

/// The violations found, by kind; each entry says what and where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// An accepted operation missing from its final block, or from a site
    /// that must have run it.
    pub lost: Vec<String>,
    /// An operation run more often on a site than its final block allows,
    /// or held twice by a block.
    pub twice: Vec<String>,
    /// An operation, in a block or a file, that no client sent.
    pub invented: Vec<String>,
    /// An operation that ran on a site although its final block does not
    /// hold it there.
    pub stray: Vec<String>,
    /// A resource whose sites do not hold the same document and replies.
    pub unconverged: Vec<String>,
    /// A matrix resource whose file differs from replaying its final block
    /// in another way (the order).
    pub state: Vec<String>,
    /// An accepted operation that a site of its resource holds nowhere
    /// whole: not in the block with its payload, in no reply that carries
    /// it, in no history document. That site's history would not list it.
    pub forgotten: Vec<String>,
    /// How many operations the converged final blocks hold (not a
    /// violation: a figure for the summary).
    pub in_blocks: usize,
    /// Second runs on a site whose daemon was killed (not a violation: the
    /// command running when a daemon dies may run again, one per resource
    /// and kill).
    pub excused: Vec<String>,
}

impl Verdict {
    pub fn holds(&self) -> bool {
        self.kinds().iter().all(|(_, found)| found.is_empty())
    }

    /// Whether waiting longer could change the verdict: once a resource
    /// has converged, every site has replied to every operation of its
    /// block, so has run it.
    pub fn unsettled(&self) -> bool {
        !self.unconverged.is_empty()
    }

    pub fn kinds(&self) -> [(&'static str, &Vec<String>); 7] {
        [
            ("lost", &self.lost),
            ("ran twice", &self.twice),
            ("invented", &self.invented),
            ("stray", &self.stray),
            ("unconverged", &self.unconverged),
            ("wrong state", &self.state),
            ("forgotten", &self.forgotten),
        ]
    }

    /// `lost 0, ran twice 1, …`
    pub fn counts(&self) -> String {
        self.kinds()
            .iter()
            .map(|(kind, found)| format!("{kind} {}", found.len()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Judges the run: `outcomes` by index in `plan.ops` (the matrix
/// resource's creation is `setup`, an accepted `set`), `snapshots` every
/// node's database, `node_dirs` every node's `NODE_DIR`.
pub fn judge(
    plan: &Plan,
    setup: &str,
    outcomes: &BTreeMap<usize, Outcome>,
    snapshots: &[Snapshot],
    node_dirs: &[String],
) -> Verdict {
    let kills: Vec<usize> = (0..plan.nodes)
        .map(|i| {
            plan.events
                .iter()
                .filter(|e| e.action == Action::Process(Fault::Kill, i, Process::Daemon))
                .count()
        })
        .collect();
    let mut verdict = Verdict::default();
    for (r, resource) in plan.resources.iter().enumerate() {
        let mut sent: BTreeSet<&str> = plan
            .ops
            .iter()
            .filter(|op| op.resource == r)
            .map(|op| op.tag.as_str())
            .collect();
        let mut accepted: BTreeSet<&str> = plan
            .ops
            .iter()
            .enumerate()
            .filter(|(i, op)| {
                op.resource == r && matches!(outcomes.get(i), Some(Outcome::Accepted { .. }))
            })
            .map(|(_, op)| op.tag.as_str())
            .collect();
        if resource.matrix {
            sent.insert(setup);
            accepted.insert(setup);
        }
        let files: Vec<Vec<String>> = node_dirs
            .iter()
            .map(|dir| lines(&Path::new(dir).join(&resource.id)))
            .collect();
        let exists = snapshots.iter().any(|s| s.doc(&resource.id).is_some());
        if !exists {
            for tag in &accepted {
                verdict
                    .lost
                    .push(format!("{tag} accepted, but no site has {}", resource.id));
            }
            stray_files(&mut verdict, resource, &files, &[], &sent);
            continue;
        }
        let doc = match check(snapshots, &resource.id) {
            Ok(doc) => doc,
            Err(why) => {
                verdict.unconverged.push(format!("{}: {why}", resource.id));
                continue;
            }
        };
        // Pruned operations whole again: their tags are in their commands.
        let doc = match snapshots.iter().find(|s| s.doc(&resource.id).is_some()) {
            Some(holder) => holder.whole(&resource.id, doc),
            None => doc,
        };
        for &i in &resource.sites {
            if let Some(snapshot) = snapshots.get(i) {
                judge_history(&mut verdict, resource, snapshot, &accepted);
            }
        }
        let block = block(&doc);
        verdict.in_blocks += block.len();
        judge_block(&mut verdict, resource, &block, &sent, &accepted);
        let tags: Vec<&str> = block.iter().map(|(_, tag)| tag.as_str()).collect();
        for &i in &resource.sites {
            let expected = if resource.matrix {
                replay(&block)
            } else {
                tags.iter().map(|t| (*t).to_owned()).collect()
            };
            let file = excuse_kills(&mut verdict, resource, i, &files[i], &expected, kills[i]);
            judge_file(&mut verdict, resource, i, &file, &expected, &sent);
        }
        stray_files(&mut verdict, resource, &files, &resource.sites, &sent);
    }
    verdict
}

/// The final block's operations: (type, tag), in order.
fn block(doc: &Value) -> Vec<(String, String)> {
    doc["Operations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|op| {
            let op_type = op["Type"].as_str().unwrap_or_default();
            (op_type.to_owned(), tag(op).to_owned())
        })
        .collect()
}

/// The tag an operation's command writes (`echo TAG >> …`).
fn tag(op: &Value) -> &str {
    let command = op["Command"]["Command"].as_str().unwrap_or_default();
    command.split_whitespace().nth(1).unwrap_or(command)
}

/// Every `accepted` operation of `resource` is held whole by `snapshot`'s
/// site: in its block with its payload, in a reply that carries it, or in a
/// history document (CONSISTENCY.md, "History documents").
fn judge_history(
    verdict: &mut Verdict,
    resource: &Resource,
    snapshot: &Snapshot,
    accepted: &BTreeSet<&str>,
) {
    let id = &resource.id;
    let in_block = snapshot
        .doc(id)
        .and_then(|doc| doc["Operations"].as_array())
        .into_iter()
        .flatten()
        .filter(|op| op["Pruned"] != true);
    let held: BTreeSet<&str> = in_block
        .chain(snapshot.held_whole(id).into_values())
        .map(tag)
        .collect();
    for tag in accepted.difference(&held) {
        verdict.forgotten.push(format!(
            "{tag} accepted, held whole nowhere on {} for {id}",
            snapshot.site
        ));
    }
}

/// What the file holds after running `block` in order from nothing.
fn replay(block: &[(String, String)]) -> Vec<String> {
    let mut file = Vec::new();
    for (op_type, tag) in block {
        if op_type == "set" {
            file.clear();
        }
        file.push(tag.clone());
    }
    file
}

fn judge_block(
    verdict: &mut Verdict,
    resource: &Resource,
    block: &[(String, String)],
    sent: &BTreeSet<&str>,
    accepted: &BTreeSet<&str>,
) {
    let id = &resource.id;
    let mut seen = BTreeSet::new();
    for (_, tag) in block {
        if !seen.insert(tag.as_str()) {
            verdict
                .twice
                .push(format!("{tag} twice in the block of {id}"));
        }
        if !sent.contains(tag.as_str()) {
            verdict
                .invented
                .push(format!("{tag} in the block of {id}, sent by no client"));
        }
    }
    // With the matrix, a later set or a take-one merge may rightly drop an
    // operation from the block.
    if resource.matrix {
        return;
    }
    for tag in accepted.difference(&seen) {
        verdict
            .lost
            .push(format!("{tag} accepted, missing from the block of {id}"));
    }
}

/// Site `i`'s file of `resource` without the second runs that `kills`
/// SIGKILLs of its daemon excuse: each kill may have cut short the one
/// command of the resource that was running, which then runs again after
/// the restart. The later runs are the ones dropped.
fn excuse_kills(
    verdict: &mut Verdict,
    resource: &Resource,
    i: usize,
    file: &[String],
    expected: &[String],
    kills: usize,
) -> Vec<String> {
    let wanted = counts(expected);
    let mut seen: BTreeMap<&String, usize> = BTreeMap::new();
    let mut left = kills;
    let mut kept = Vec::new();
    for line in file {
        let n = seen.entry(line).or_insert(0);
        *n += 1;
        let want = wanted.get(line).copied().unwrap_or(0);
        if want > 0 && *n > want && left > 0 {
            left -= 1;
            verdict.excused.push(format!(
                "{line} ran {n}x on {} for {}, whose daemon was killed {kills}x",
                site(i),
                resource.id
            ));
        } else {
            kept.push(line.clone());
        }
    }
    kept
}

/// Site `i`'s file of `resource` against what it must hold.
fn judge_file(
    verdict: &mut Verdict,
    resource: &Resource,
    i: usize,
    file: &[String],
    expected: &[String],
    sent: &BTreeSet<&str>,
) {
    let held = counts(file);
    let wanted = counts(expected);
    // Without a matrix, any order is right.
    let same = if resource.matrix {
        file == expected
    } else {
        held == wanted
    };
    if same {
        return;
    }
    let (id, site) = (&resource.id, site(i));
    let mut explained = false;
    for (tag, &n) in &held {
        let want = wanted.get(tag).copied().unwrap_or(0);
        if want == 0 && !sent.contains(tag.as_str()) {
            verdict
                .invented
                .push(format!("{tag} in {site}'s {id}, sent by no client"));
        } else if want == 0 {
            verdict.stray.push(format!(
                "{tag} ran on {site} ({n}x) but the block of {id} does not hold it"
            ));
        } else if n > want {
            verdict.twice.push(format!(
                "{tag} ran {n}x on {site} for {id}, {want}x expected"
            ));
        } else {
            continue;
        }
        explained = true;
    }
    for (tag, &want) in &wanted {
        let n = held.get(tag).copied().unwrap_or(0);
        if n < want {
            verdict.lost.push(format!(
                "{tag} ran {n}x on {site} for {id}, {want}x expected"
            ));
            explained = true;
        }
    }
    if !explained {
        verdict.state.push(format!(
            "{site}'s {id} holds {file:?}, replaying its block gives {expected:?}"
        ));
    }
}

/// Files of `resource` on sites that are not among `holders`: whatever they
/// hold ran where it must not.
fn stray_files(
    verdict: &mut Verdict,
    resource: &Resource,
    files: &[Vec<String>],
    holders: &[usize],
    sent: &BTreeSet<&str>,
) {
    for (i, file) in files.iter().enumerate() {
        if holders.contains(&i) {
            continue;
        }
        for tag in file {
            let (id, site) = (&resource.id, site(i));
            if sent.contains(tag.as_str()) {
                verdict
                    .stray
                    .push(format!("{tag} ran on {site}, which holds no block of {id}"));
            } else {
                verdict
                    .invented
                    .push(format!("{tag} in {site}'s {id}, sent by no client"));
            }
        }
    }
}

fn counts(lines: &[String]) -> BTreeMap<&String, usize> {
    let mut counts = BTreeMap::new();
    for line in lines {
        *counts.entry(line).or_insert(0) += 1;
    }
    counts
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(matrix: bool) -> Resource {
        Resource {
            id: "r".into(),
            sites: vec![0, 1],
            matrix,
            from_ms: 0,
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn replaying_a_block_resets_at_each_set() {
        let block = [("add", "a"), ("set", "b"), ("add", "c"), ("add", "d")]
            .map(|(t, g)| (t.to_owned(), g.to_owned()));
        assert_eq!(replay(&block), strings(&["b", "c", "d"]));
    }

    #[test]
    fn a_file_is_judged_line_by_line() {
        let sent = BTreeSet::from(["a", "b", "c", "x"]);
        let expected = strings(&["a", "b", "c"]);
        let cases: [(&[&str], &str); 6] = [
            (&["c", "a", "b"], ""),
            (
                &["a", "b", "c", "a"],
                "ran twice: a ran 2x on site2 for r, 1x expected",
            ),
            (&["a", "c"], "lost: b ran 0x on site2 for r, 1x expected"),
            (
                &["a", "b", "c", "z"],
                "invented: z in site2's r, sent by no client",
            ),
            (
                &["a", "b", "c", "x"],
                "stray: x ran on site2 (1x) but the block of r does not hold it",
            ),
            (&["b", "a", "c"], "wrong state: site2's r holds"),
        ];
        for (file, found) in cases {
            let mut verdict = Verdict::default();
            let matrix = found.starts_with("wrong state");
            let file = strings(file);
            judge_file(&mut verdict, &resource(matrix), 1, &file, &expected, &sent);
            let all: Vec<String> = verdict
                .kinds()
                .iter()
                .flat_map(|(kind, found)| found.iter().map(move |f| format!("{kind}: {f}")))
                .collect();
            match found {
                "" => assert!(verdict.holds(), "{file:?}: {all:?}"),
                found => assert!(
                    all.len() == 1 && all[0].starts_with(found),
                    "{file:?}: {all:?}"
                ),
            }
        }
    }

    #[test]
    fn a_kill_excuses_one_second_run_per_resource() {
        let expected = strings(&["a", "b", "c"]);
        let file = strings(&["a", "b", "b", "c", "c"]);
        let mut verdict = Verdict::default();
        let kept = excuse_kills(&mut verdict, &resource(true), 1, &file, &expected, 1);
        assert_eq!(kept, strings(&["a", "b", "c", "c"]));
        assert_eq!(
            verdict.excused,
            ["b ran 2x on site2 for r, whose daemon was killed 1x"]
        );
        let mut verdict = Verdict::default();
        let kept = excuse_kills(&mut verdict, &resource(true), 1, &file, &expected, 0);
        assert_eq!(kept, file);
        assert!(verdict.excused.is_empty());
    }

    #[test]
    fn every_accepted_operation_is_held_whole_by_every_site() {
        let docs = serde_json::json!({"rows": [
            {"id": "r", "doc": {"Type": "RESOURCE", "Operations": [
                {"Type": "add", "RequestId": "1", "Command": {"Command": "echo a"}},
                {"Type": "add", "RequestId": "2", "Pruned": true, "Command": {"Command": ""}}]}},
            {"id": "reply-site1-2-t", "doc": {"Type": "REPLY", "ResourceId": "r",
                "Operation": {"RequestId": "2", "Command": {"Command": "echo b"}}}},
            {"id": "history:r:3", "doc": {"Type": "HISTORY", "ResourceId": "r",
                "Operation": {"RequestId": "3", "Command": {"Command": "echo c"}}}}]});
        let snapshot = Snapshot::from_all_docs("site1", &docs);
        let mut verdict = Verdict::default();
        let accepted = BTreeSet::from(["a", "b", "c", "d"]);
        judge_history(&mut verdict, &resource(true), &snapshot, &accepted);
        assert_eq!(
            verdict.forgotten,
            ["d accepted, held whole nowhere on site1 for r"]
        );
    }

    #[test]
    fn a_block_must_hold_every_accepted_operation_once() {
        let block =
            [("add", "a"), ("add", "a"), ("add", "q")].map(|(t, g)| (t.to_owned(), g.to_owned()));
        let mut verdict = Verdict::default();
        let sent = BTreeSet::from(["a", "b"]);
        judge_block(&mut verdict, &resource(false), &block, &sent, &sent);
        assert_eq!(verdict.twice, ["a twice in the block of r"]);
        assert_eq!(verdict.invented, ["q in the block of r, sent by no client"]);
        assert_eq!(verdict.lost, ["b accepted, missing from the block of r"]);
    }
}

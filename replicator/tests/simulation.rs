//! A deterministic simulation of the consistency layer, in the manner of
//! FoundationDB's simulator and TigerBeetle's VOPR: simulated sites, each
//! with its own database, run random schedules of operations, replications,
//! conflict merges, runner passes, failing commands and crashes, through the
//! very functions the daemon uses (`add_operation` when an operation is
//! submitted, `resolve_conflicts` when a conflict is seen, `plan` for what a
//! runner pass runs). Then the network heals and every site settles, and:
//!
//! - every site holds the same block, without conflicts;
//! - every site's application state is that of replaying the block;
//! - a site ran an operation twice only after something reset its state in
//!   between (Rule 3's rebuild, or a resetting operation) or when a crash
//!   lost the reply of its previous run — so an operation that commutes with
//!   everything runs once, give or take a crash;
//! - every command a site ran is its operation's own, never the empty one of
//!   a pruned operation.
//!
//! Pruning (CONSISTENCY.md, "Pruning") runs through it too: each operation
//! has its history document from its exec on, replicated on its own (so it
//! may arrive after a block that needs it), and replies replicate; an exec
//! prunes, at random, operations whose replies from every site and history
//! document its site holds (`prunable`, `prune_payloads`), a merge prunes
//! what any revision pruned, and a pass that must run a pruned operation
//! takes its command from the history document (`payloads`), or waits for
//! it to arrive.
//!
//! The application gives each type a meaning that its scenario's matrix
//! describes truthfully: `set` resets the state, `add` inserts into a
//! multiset, `push` appends to a sequence (pushes keep their order). Where
//! pushes exist, resources start with a `set`: two pushes created at once on
//! two sites cannot converge (CONSISTENCY.md, Rule 3). One scenario keeps the
//! original's own matrix for appends to a file, which says nothing about two
//! appends although they do not commute: from a `set`, the sites converge
//! all the same.
//!
//! CouchDB is modelled as far as the rules depend on it: revision trees
//! merged by replication, the winner chosen by generation then revision id,
//! losers listed in that order, resolutions written as revisions whose ids
//! derive from their content (so that sites resolving alike write the same
//! revisions), and deletions of the losers.
//!
//! A crash strikes between a command and its reply: the command ran, its
//! reply is lost, the rest of its batch never runs. Replies are durable per
//! command (issue 12, part 3), so the command that ran without a reply is
//! the only one that may run again; the state checked is that of the runs a
//! site recorded, which is all Rule 3 can know.
//!
//! `CHEOPS_SIM_SCHEDULES` sets how many schedules run (seeds 0 to n-1);
//! `CHEOPS_SIM_SEED` replays one and prints its trace.

use std::collections::{BTreeMap, BTreeSet};

use cheops_model::{
    Operation, Resolution, ResolutionResult, ResourceConfig, ResourceDocument, ShellCommand,
    Timestamp,
};
use cheops_replicator::consistency::{
    add_operation, payloads, plan, prunable, prune_payloads, resolve_conflicts, Run, Seen,
    SeenReply,
};

/// Schedules run by default: enough to find the known defects every time,
/// in a few seconds.
const DEFAULT_SCHEDULES: u64 = 3_000;
/// Events of the random phase of a schedule, at most.
const MAX_EVENTS: usize = 120;
/// Rounds of replicating and running after the heal before giving up.
const MAX_ROUNDS: usize = 50;
/// Runner passes of one site in one round before it is deemed looping.
const MAX_PASSES: usize = 200;

/// SplitMix64: small, fast and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// FNV-1a, for revision ids that do not depend on the build.
fn fnv(parts: &[&str]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for part in parts {
        for byte in part.bytes().chain([0xff]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// A matrix, the types a schedule uses, and those a resource may start with.
struct Scenario {
    name: &'static str,
    config: ResourceConfig,
    types: &'static [&'static str],
    creation: &'static [&'static str],
}

fn entry(before: &str, after: &str, result: ResolutionResult) -> Resolution {
    Resolution {
        before: before.into(),
        after: after.into(),
        result,
    }
}

fn scenarios() -> Vec<Scenario> {
    use ResolutionResult::{TakeBothKeepOrder, TakeBothReverseOrder, TakeOne};
    let counter = vec![
        entry("set", "set", TakeOne),
        entry("set", "add", TakeBothKeepOrder),
        entry("add", "set", TakeBothReverseOrder),
    ];
    let mut sequence = counter.clone();
    sequence.extend([
        entry("set", "push", TakeBothKeepOrder),
        entry("push", "set", TakeBothReverseOrder),
        entry("push", "push", TakeBothKeepOrder),
    ]);
    // The original's scenarios: lines appended to a file, with no entry for
    // two appends. They do not commute: only rebuilding from the set keeps
    // the sites' files alike.
    let appends = vec![
        entry("set", "set", TakeOne),
        entry("set", "push", TakeBothKeepOrder),
        entry("push", "set", TakeBothReverseOrder),
    ];
    // A set after anything keeps its order: sets end up inside blocks.
    let inside = vec![
        entry("set", "set", TakeOne),
        entry("set", "add", TakeBothKeepOrder),
        entry("add", "set", TakeBothKeepOrder),
        entry("set", "push", TakeBothKeepOrder),
        entry("push", "set", TakeBothKeepOrder),
        entry("push", "push", TakeBothKeepOrder),
    ];
    vec![
        // No configuration: every pair commutes, nothing may run twice.
        Scenario {
            name: "adds without a matrix",
            config: ResourceConfig::default(),
            types: &["add"],
            creation: &["add"],
        },
        Scenario {
            name: "set and add",
            config: ResourceConfig {
                resolution_matrix: counter,
            },
            types: &["set", "add", "add"],
            creation: &["set", "add"],
        },
        // Pushes must keep their order: a site that ran them in another
        // order can only rebuild from a reset, so resources start with one.
        Scenario {
            name: "set, add and push",
            config: ResourceConfig {
                resolution_matrix: sequence,
            },
            types: &["set", "add", "push", "push"],
            creation: &["set"],
        },
        Scenario {
            name: "appends the matrix says nothing about",
            config: ResourceConfig {
                resolution_matrix: appends,
            },
            types: &["set", "push", "push"],
            creation: &["set"],
        },
        Scenario {
            name: "sets inside blocks",
            config: ResourceConfig {
                resolution_matrix: inside,
            },
            types: &["set", "add", "push", "push"],
            creation: &["set"],
        },
    ]
}

/// The application of one resource on one site.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct App {
    value: Option<String>,
    bag: BTreeMap<String, usize>,
    sequence: Vec<String>,
}

/// An operation's command fails, on every site, when it is `false …`; a
/// failing command changes nothing.
fn fails(op: &Operation) -> bool {
    op.command.command.starts_with("false")
}

impl App {
    fn apply(&mut self, op: &Operation) {
        if fails(op) {
            return;
        }
        let id = op.request_id.clone();
        match op.op_type.as_str() {
            "set" => {
                *self = App {
                    value: Some(id),
                    ..App::default()
                }
            }
            "add" => *self.bag.entry(id).or_default() += 1,
            _ => self.sequence.push(id),
        }
    }

    fn replay<'a>(ops: impl IntoIterator<Item = &'a Operation>) -> App {
        let mut app = App::default();
        for op in ops {
            app.apply(op);
        }
        app
    }
}

/// A revision id: CouchDB elects the greatest (generation, then id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct RevId {
    generation: u64,
    hash: u64,
}

impl RevId {
    fn child(parent: Option<RevId>, content: &[&str]) -> RevId {
        let parent_rev = parent.map(|p| p.rev()).unwrap_or_default();
        let mut parts = vec![parent_rev.as_str()];
        parts.extend_from_slice(content);
        RevId {
            generation: parent.map_or(1, |p| p.generation + 1),
            hash: fnv(&parts),
        }
    }

    fn rev(self) -> String {
        format!("{}-{:016x}", self.generation, self.hash)
    }
}

#[derive(Debug, Clone)]
struct Revision {
    parent: Option<RevId>,
    deleted: bool,
    operations: Vec<Operation>,
}

/// One site's database: each resource's revision tree.
#[derive(Debug, Default, Clone)]
struct Database(BTreeMap<String, BTreeMap<RevId, Revision>>);

impl Database {
    /// The live leaves of `resource`, the winner first and the losers in
    /// `_conflicts` order.
    fn leaves(&self, resource: &str) -> Vec<(RevId, &Revision)> {
        let Some(tree) = self.0.get(resource) else {
            return Vec::new();
        };
        let parents: BTreeSet<RevId> = tree.values().filter_map(|r| r.parent).collect();
        let mut leaves: Vec<(RevId, &Revision)> = tree
            .iter()
            .filter(|(id, rev)| !rev.deleted && !parents.contains(id))
            .map(|(id, rev)| (*id, rev))
            .collect();
        leaves.sort_by_key(|&(id, _)| std::cmp::Reverse(id));
        leaves
    }

    /// Adds a revision; false when it was already there.
    fn insert(&mut self, resource: &str, id: RevId, revision: Revision) -> bool {
        let tree = self.0.entry(resource.to_owned()).or_default();
        if tree.contains_key(&id) {
            return false;
        }
        tree.insert(id, revision);
        true
    }
}

/// A command a site ran, as its application saw it.
#[derive(Debug, Clone)]
struct Ran {
    resource: String,
    op: Operation,
    /// False when a crash lost its reply.
    recorded: bool,
}

#[derive(Debug, Default)]
struct Site {
    name: String,
    db: Database,
    /// This site's replies, per resource: durable.
    replies: BTreeMap<String, Vec<Run>>,
    /// Every command it ran, in order.
    log: Vec<Ran>,
    /// Resources whose document changed since a pass last settled them: the
    /// changes feed and the runner's queue.
    dirty: BTreeSet<String>,
    /// Every site's replies this site holds, per resource: request → sites.
    seen_replies: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    /// The history documents this site holds, per resource, by request.
    history: BTreeMap<String, BTreeMap<String, Operation>>,
}

/// What the schedules went through, to show that they exercise every rule.
#[derive(Debug, Default)]
struct Stats {
    operations: u64,
    merges: u64,
    /// Merges whose block starts with another operation than the winner's.
    new_first: u64,
    /// Merges that dropped an operation (take-one).
    drops: u64,
    rebuilds: u64,
    failures: u64,
    crashes: u64,
    /// Payloads pruned by execs.
    prunes: u64,
    /// Passes that waited for a history document.
    waits: u64,
    /// Runs of a pruned operation, from its history document.
    from_history: u64,
}

impl Stats {
    fn add(&mut self, other: &Stats) {
        self.operations += other.operations;
        self.merges += other.merges;
        self.new_first += other.new_first;
        self.drops += other.drops;
        self.rebuilds += other.rebuilds;
        self.failures += other.failures;
        self.crashes += other.crashes;
        self.prunes += other.prunes;
        self.waits += other.waits;
        self.from_history += other.from_history;
    }
}

/// What a pass did.
#[derive(PartialEq, Eq)]
enum Pass {
    Nothing,
    Merged,
    Ran,
    /// A pruned operation must run and its history document is not here.
    Waiting,
}

struct Sim<'s> {
    scenario: &'s Scenario,
    rng: Rng,
    sites: Vec<Site>,
    resources: Vec<String>,
    /// Percent chance that a command is followed by a crash.
    crash_percent: u64,
    clock: u64,
    requests: u64,
    trace: Vec<String>,
    stats: Stats,
    /// Percent chance that an exec prunes each operation it may prune.
    prune_percent: u64,
    /// Every operation as it was sent, by request id.
    originals: BTreeMap<String, Operation>,
}

impl<'s> Sim<'s> {
    fn new(scenario: &'s Scenario, mut rng: Rng) -> Self {
        let sites = (1..=2 + rng.below(3))
            .map(|n| Site {
                name: format!("site{n}"),
                ..Site::default()
            })
            .collect();
        let resources = (0..1 + rng.below(2)).map(|n| format!("res{n}")).collect();
        let crash_percent = rng.below(6) as u64;
        let prune_percent = [0, 50, 100][rng.below(3)];
        Sim {
            scenario,
            rng,
            sites,
            resources,
            crash_percent,
            clock: 0,
            requests: 0,
            trace: Vec::new(),
            stats: Stats::default(),
            prune_percent,
            originals: BTreeMap::new(),
        }
    }

    /// What `site` holds about `request` of `resource`.
    fn seen(&self, site: usize, resource: &str, request: &str) -> Seen {
        let site = &self.sites[site];
        let replies = site
            .seen_replies
            .get(resource)
            .and_then(|by_request| by_request.get(request));
        Seen {
            replies: replies
                .into_iter()
                .flatten()
                .map(|site| SeenReply {
                    site: site.clone(),
                    reads_history: true,
                })
                .collect(),
            history: site
                .history
                .get(resource)
                .is_some_and(|h| h.contains_key(request)),
        }
    }

    fn document(&self, resource: &str, id: RevId, revision: &Revision) -> ResourceDocument {
        ResourceDocument {
            id: resource.to_owned(),
            rev: Some(id.rev()),
            locations: self.sites.iter().map(|s| s.name.clone()).collect(),
            operations: revision.operations.clone(),
            config: self.scenario.config.clone(),
            ..ResourceDocument::default()
        }
    }

    /// A client sends an operation to `site`: it joins the winning
    /// revision's block (Rule 1) as a child revision.
    fn exec(&mut self, site: usize, resource: &str) {
        self.requests += 1;
        self.stats.operations += 1;
        let leaves = self.sites[site].db.leaves(resource);
        let winner = leaves
            .first()
            .map(|(id, rev)| (*id, rev.operations.clone()));
        let op_type = match winner {
            None => *self.rng.pick(self.scenario.creation),
            Some(_) => *self.rng.pick(self.scenario.types),
        };
        let failing = op_type != "set" && self.rng.percent(10);
        let request = format!("r{}", self.requests);
        let op = Operation {
            op_type: op_type.to_owned(),
            command: ShellCommand {
                command: format!("{} {request}", if failing { "false" } else { "true" }),
                ..ShellCommand::default()
            },
            request_id: request,
            ..Operation::default()
        };
        self.originals.insert(op.request_id.clone(), op.clone());
        let (parent, block) = winner.unzip();
        let mut operations = add_operation(
            &self.scenario.config,
            block.as_deref().unwrap_or_default(),
            op.clone(),
        );
        // The exec prunes, at random, what it may: its site may not have
        // looked at every reply it holds.
        let locations: Vec<String> = self.sites.iter().map(|s| s.name.clone()).collect();
        let mut chosen = BTreeSet::new();
        for candidate in operations
            .iter()
            .filter(|o| !o.pruned && o.request_id != op.request_id)
        {
            let seen = self.seen(site, resource, &candidate.request_id);
            if prunable(&locations, &seen) && self.rng.percent(self.prune_percent) {
                chosen.insert(candidate.request_id.clone());
            }
        }
        self.stats.prunes +=
            prune_payloads(&mut operations, |o| chosen.contains(&o.request_id)) as u64;
        // Its history document, written with the revision.
        self.sites[site]
            .history
            .entry(resource.to_owned())
            .or_default()
            .insert(op.request_id.clone(), op.clone());
        let id = RevId::child(parent, &[&op.request_id]);
        self.trace(format!(
            "{} exec {} {}{} on {resource} -> {}",
            self.sites[site].name,
            op.op_type,
            op.request_id,
            if failing { " (fails)" } else { "" },
            ids(&operations)
        ));
        let revision = Revision {
            parent,
            deleted: false,
            operations,
        };
        let site = &mut self.sites[site];
        site.db.insert(resource, id, revision);
        site.dirty.insert(resource.to_owned());
    }

    /// Copies the revisions, replies and (when `history`) history documents
    /// `from` has and `to` lacks, of one resource or of all; true when some
    /// were copied.
    fn replicate(&mut self, from: usize, to: usize, resource: Option<&str>, history: bool) -> bool {
        let (source, target) = if from < to {
            let (left, right) = self.sites.split_at_mut(to);
            (&left[from], &mut right[0])
        } else {
            let (left, right) = self.sites.split_at_mut(from);
            (&right[0], &mut left[to])
        };
        let mut copied = false;
        for (name, tree) in &source.db.0 {
            if resource.is_some_and(|r| r != name) {
                continue;
            }
            let mut new = false;
            for (id, revision) in tree {
                if !target.db.0.get(name).is_some_and(|t| t.contains_key(id)) {
                    new |= target.db.insert(name, *id, revision.clone());
                }
            }
            if new {
                target.dirty.insert(name.clone());
                copied = true;
            }
        }
        for (name, by_request) in &source.seen_replies {
            if resource.is_some_and(|r| r != name) {
                continue;
            }
            let known = target.seen_replies.entry(name.clone()).or_default();
            for (request, sites) in by_request {
                let known = known.entry(request.clone()).or_default();
                let before = known.len();
                known.extend(sites.iter().cloned());
                copied |= known.len() != before;
            }
        }
        for (name, docs) in source.history.iter().filter(|_| history) {
            if resource.is_some_and(|r| r != name) {
                continue;
            }
            let held = target.history.entry(name.clone()).or_default();
            for (request, op) in docs {
                if !held.contains_key(request) {
                    held.insert(request.clone(), op.clone());
                    // The changes feed brings it: a waiting pass looks again.
                    target.dirty.insert(name.clone());
                    copied = true;
                }
            }
        }
        if copied {
            let (from, to) = (self.sites[from].name.clone(), self.sites[to].name.clone());
            self.trace(format!(
                "replicate {from} -> {to} ({})",
                resource.unwrap_or("all")
            ));
        }
        copied
    }

    /// One runner pass of `site` over `resource`, as the runner does it:
    /// merge the conflicts if there are some, else run what `plan` says, one
    /// reply per command, a failure stopping the batch.
    fn pass(&mut self, site: usize, resource: &str, crashes: bool) -> Pass {
        let leaves = self.sites[site].db.leaves(resource);
        let Some(&(winner_id, winner)) = leaves.first() else {
            self.sites[site].dirty.remove(resource);
            return Pass::Nothing;
        };
        if leaves.len() > 1 {
            let winner_doc = self.document(resource, winner_id, winner);
            let losers: Vec<ResourceDocument> = leaves[1..]
                .iter()
                .map(|(id, rev)| self.document(resource, *id, rev))
                .collect();
            let merged = resolve_conflicts(&winner_doc, &losers);
            self.stats.merges += 1;
            let kept: BTreeSet<&str> = ids_of(&merged.operations);
            let all = losers
                .iter()
                .map(|l| &l.operations)
                .chain([&winner_doc.operations]);
            if all.flat_map(|ops| ids_of(ops)).any(|id| !kept.contains(id)) {
                self.stats.drops += 1;
            }
            if merged.operations.first() != winner.operations.first() {
                self.stats.new_first += 1;
            }
            let mut content: Vec<&str> = vec!["merged"];
            for op in &merged.operations {
                content.push(op.request_id.as_str());
                content.extend(op.pruned.then_some("pruned"));
            }
            let merged_id = RevId::child(Some(winner_id), &content);
            let loser_ids: Vec<RevId> = leaves[1..].iter().map(|(id, _)| *id).collect();
            self.trace(format!(
                "{} merges {resource}: {} with {} losers -> {}",
                self.sites[site].name,
                ids(&winner.operations),
                loser_ids.len(),
                ids(&merged.operations)
            ));
            let db = &mut self.sites[site].db;
            db.insert(
                resource,
                merged_id,
                Revision {
                    parent: Some(winner_id),
                    deleted: false,
                    operations: merged.operations,
                },
            );
            for loser in loser_ids {
                let tombstone = Revision {
                    parent: Some(loser),
                    deleted: true,
                    operations: Vec::new(),
                };
                db.insert(resource, RevId::child(Some(loser), &["deleted"]), tombstone);
            }
            // The merged revision comes back through the feed.
            return Pass::Merged;
        }

        let block = winner.operations.clone();
        let replies = self.sites[site]
            .replies
            .get(resource)
            .cloned()
            .unwrap_or_default();
        let decision = plan(&block, &replies, &self.scenario.config);
        if decision.operations.is_empty() {
            self.sites[site].dirty.remove(resource);
            return Pass::Nothing;
        }
        // The history documents here of the pruned operations to run.
        let held = self.sites[site].history.get(resource);
        let history = decision
            .operations
            .iter()
            .filter(|op| op.pruned)
            .filter_map(|op| Some((op.request_id.clone(), held?.get(&op.request_id)?.clone())))
            .collect();
        let commands = match payloads(&decision.operations, &history) {
            Ok(commands) => commands,
            Err(request) => {
                self.stats.waits += 1;
                self.trace(format!(
                    "{} waits for the history document of {request}",
                    self.sites[site].name
                ));
                return Pass::Waiting;
            }
        };
        self.stats.from_history += decision.operations.iter().filter(|op| op.pruned).count() as u64;
        // What the backend runs: the operation with the command found.
        let batch: Vec<Operation> = decision
            .operations
            .into_iter()
            .zip(commands)
            .map(|(op, command)| Operation {
                command,
                ..op.clone()
            })
            .collect();
        self.stats.rebuilds += u64::from(decision.rebuild);
        self.trace(format!(
            "{} runs {}{} of {resource} {}",
            self.sites[site].name,
            ids(&batch),
            if decision.rebuild { " (rebuild)" } else { "" },
            ids(&block)
        ));
        for (index, op) in batch.iter().enumerate() {
            let crash = crashes && self.rng.percent(self.crash_percent);
            self.sites[site].log.push(Ran {
                resource: resource.to_owned(),
                op: op.clone(),
                recorded: !crash,
            });
            if crash {
                self.stats.crashes += 1;
                self.trace(format!(
                    "{} crashes after running {}: its reply is lost",
                    self.sites[site].name, op.request_id
                ));
                self.restart(site);
                return Pass::Ran;
            }
            self.clock += 1;
            let run = Run {
                request: op.request_id.clone(),
                time: at(self.clock),
                rebuild: decision.rebuild && index == 0,
            };
            let site = &mut self.sites[site];
            site.replies
                .entry(resource.to_owned())
                .or_default()
                .push(run);
            site.seen_replies
                .entry(resource.to_owned())
                .or_default()
                .entry(op.request_id.clone())
                .or_default()
                .insert(site.name.clone());
            if fails(op) {
                self.stats.failures += 1;
                // The rest of the batch did not run: the next pass runs it.
                return Pass::Ran;
            }
        }
        Pass::Ran
    }

    /// The daemon starts again: it looks at every resource anew.
    fn restart(&mut self, site: usize) {
        let site = &mut self.sites[site];
        site.dirty = site.db.0.keys().cloned().collect();
    }

    fn trace(&mut self, line: String) {
        self.trace.push(line);
    }

    /// The random phase: `events` random steps.
    fn random_phase(&mut self, events: usize) {
        for _ in 0..events {
            let site = self.rng.below(self.sites.len());
            match self.rng.below(100) {
                0..=29 => {
                    let resource = self.rng.pick(&self.resources).clone();
                    self.exec(site, &resource);
                }
                30..=59 => {
                    let to = self.rng.below(self.sites.len());
                    if to != site {
                        let resource = self.rng.pick(&self.resources).clone();
                        let one = self.rng.percent(50).then_some(resource.as_str());
                        // History documents replicate on their own: often late.
                        let history = self.rng.percent(30);
                        self.replicate(site, to, one, history);
                    }
                }
                60..=96 => {
                    let dirty: Vec<String> = self.sites[site].dirty.iter().cloned().collect();
                    if !dirty.is_empty() {
                        let resource = self.rng.pick(&dirty).clone();
                        self.pass(site, &resource, true);
                    }
                }
                _ => {
                    self.trace(format!("{} restarts", self.sites[site].name));
                    self.restart(site);
                }
            }
        }
    }

    /// The network heals: replicate everything everywhere and run every
    /// pass until nothing changes.
    fn settle(&mut self) -> Result<(), String> {
        self.trace("the network heals".into());
        for _ in 0..MAX_ROUNDS {
            let mut changed = false;
            for from in 0..self.sites.len() {
                for to in 0..self.sites.len() {
                    if from != to {
                        changed |= self.replicate(from, to, None, true);
                    }
                }
            }
            for site in 0..self.sites.len() {
                let mut passes = 0;
                // Waiting for a history document until the next round's
                // replication brings it.
                let mut waiting = BTreeSet::new();
                while let Some(resource) = self.sites[site]
                    .dirty
                    .iter()
                    .find(|r| !waiting.contains(*r))
                    .cloned()
                {
                    passes += 1;
                    if passes > MAX_PASSES {
                        return Err(format!(
                            "{} keeps running {resource}",
                            self.sites[site].name
                        ));
                    }
                    match self.pass(site, &resource, false) {
                        Pass::Nothing => {}
                        Pass::Waiting => {
                            waiting.insert(resource);
                            changed = true;
                        }
                        Pass::Merged | Pass::Ran => changed = true,
                    }
                }
            }
            if !changed {
                return Ok(());
            }
        }
        Err(format!("not settled after {MAX_ROUNDS} rounds"))
    }

    /// The invariants, once settled.
    fn check(&self) -> Result<(), String> {
        for resource in &self.resources {
            let mut block: Option<&[Operation]> = None;
            for site in &self.sites {
                let leaves = site.db.leaves(resource);
                let ours = match leaves.as_slice() {
                    [] => continue,
                    [(_, winner)] => winner.operations.as_slice(),
                    _ => return Err(format!("{} still has a conflict on {resource}", site.name)),
                };
                match block {
                    None => block = Some(ours),
                    Some(first) if ids(first) != ids(ours) => {
                        return Err(format!(
                            "blocks differ on {resource}: {} and {} on {}",
                            ids(first),
                            ids(ours),
                            site.name
                        ));
                    }
                    Some(_) => {}
                }
            }
            let Some(block) = block else { continue };
            // The block's operations whole: a pruned one's from history.
            let expected = App::replay(block.iter().map(|op| &self.originals[&op.request_id]));
            for site in &self.sites {
                let ran: Vec<&Operation> = site
                    .log
                    .iter()
                    .filter(|r| r.recorded && &r.resource == resource)
                    .map(|r| &r.op)
                    .collect();
                let state = App::replay(ran.iter().copied());
                if state != expected {
                    return Err(format!(
                        "{} on {resource}: state {state:?}, but the block {} gives {expected:?}; it ran {}",
                        site.name,
                        ids(block),
                        ids(ran.iter().copied())
                    ));
                }
                check_reruns(&site.name, resource, &site.log)?;
                for run in site.log.iter().filter(|r| &r.resource == resource) {
                    let own = &self.originals[&run.op.request_id].command;
                    if &run.op.command != own {
                        return Err(format!(
                            "{} ran {} as {:?}, not its own command {:?}",
                            site.name, run.op.request_id, run.op.command.command, own.command
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// An operation runs again on a site only after a reset since its last
/// run (a `set`: a rebuild's first operation, or one that resets), or when
/// a crash lost the reply of its last run: the command running when a
/// daemon dies is the only one that may run again.
fn check_reruns(site: &str, resource: &str, log: &[Ran]) -> Result<(), String> {
    let runs: Vec<&Ran> = log.iter().filter(|r| r.resource == resource).collect();
    let mut last_run: BTreeMap<&str, (usize, bool)> = BTreeMap::new();
    let mut last_reset = None;
    for (index, run) in runs.iter().enumerate() {
        let op = &run.op;
        if op.op_type == "set" {
            last_reset = Some(index);
        }
        if let Some(&(previous, recorded)) = last_run.get(op.request_id.as_str()) {
            if recorded && last_reset.is_none_or(|reset| reset <= previous) {
                let all: Vec<String> = runs
                    .iter()
                    .map(|r| {
                        format!(
                            "{}{}",
                            r.op.request_id,
                            if r.recorded { "" } else { "(lost)" }
                        )
                    })
                    .collect();
                return Err(format!(
                    "{site} ran {} twice on {resource} with no reset in between; it ran {}",
                    op.request_id,
                    all.join(" ")
                ));
            }
        }
        last_run.insert(&op.request_id, (index, run.recorded));
    }
    Ok(())
}

fn at(tick: u64) -> Timestamp {
    let (seconds, nanos) = (tick / 1_000_000_000, tick % 1_000_000_000);
    format!("2026-01-01T00:00:{seconds:02}.{nanos:09}Z")
        .parse()
        .unwrap_or_else(|e| panic!("tick {tick}: {e:?}"))
}

fn ids_of(ops: &[Operation]) -> BTreeSet<&str> {
    ops.iter().map(|op| op.request_id.as_str()).collect()
}

fn ids<'a>(ops: impl IntoIterator<Item = &'a Operation>) -> String {
    let names: Vec<String> = ops
        .into_iter()
        .map(|op| {
            let pruned = if op.pruned { "*" } else { "" };
            format!("{}:{}{pruned}", op.op_type, op.request_id)
        })
        .collect();
    format!("[{}]", names.join(" "))
}

/// One schedule: its outcome, its trace and what it went through.
fn schedule(seed: u64) -> (Result<(), String>, Vec<String>, Stats) {
    let scenarios = scenarios();
    let mut rng = Rng(seed);
    let scenario = &scenarios[rng.below(scenarios.len())];
    let events = 10 + rng.below(MAX_EVENTS - 10);
    let mut sim = Sim::new(scenario, rng);
    sim.trace(format!(
        "scenario {:?}: {} sites, {} resources, {events} events, crash {}%, prune {}%",
        scenario.name,
        sim.sites.len(),
        sim.resources.len(),
        sim.crash_percent,
        sim.prune_percent
    ));
    sim.random_phase(events);
    let outcome = sim.settle().and_then(|()| sim.check());
    (outcome, sim.trace, sim.stats)
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|e| panic!("{name}={value}: {e}")),
    )
}

#[test]
fn random_schedules_converge_and_run_each_operation_once() {
    if let Some(seed) = env_u64("CHEOPS_SIM_SEED") {
        let (outcome, trace, _) = schedule(seed);
        for line in trace {
            eprintln!("  {line}");
        }
        if let Err(message) = outcome {
            panic!("seed {seed}: {message}");
        }
        return;
    }
    let schedules = env_u64("CHEOPS_SIM_SCHEDULES").unwrap_or(DEFAULT_SCHEDULES);
    let mut total = Stats::default();
    for seed in 0..schedules {
        let (outcome, trace, stats) = schedule(seed);
        total.add(&stats);
        if let Err(message) = outcome {
            let tail = trace.len().saturating_sub(40);
            for line in &trace[tail..] {
                eprintln!("  {line}");
            }
            panic!(
                "seed {seed}: {message}\nreplay: CHEOPS_SIM_SEED={seed} cargo test -p cheops-replicator --test simulation"
            );
        }
    }
    println!("{schedules} schedules passed: {total:?}");
}

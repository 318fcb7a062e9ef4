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
//! Pruning (CONSISTENCY.md, "Pruning") runs through it too: the first
//! reply of the site that accepted an operation carries it whole, and
//! replicates with the replies; an operation that leaves a block with its
//! payload (a reset, a take-one merge) gets a history document from the
//! site that drops it unless that site holds it whole already (`dropped`),
//! replicated on its own (so it may arrive after a block that needs it); an
//! exec prunes, at random, operations whose replies from every site and
//! whole copy its site holds (`prunable`, `prune_payloads`), a merge prunes
//! what any revision pruned, and a pass that must run a pruned operation
//! takes its command from a history document or a carrying reply
//! (`payloads`), or waits for one to arrive. Once settled, every operation
//! ever accepted is, at every site, in the block with its payload, in a
//! reply that carries it or in a history document: the history lists it.
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
//! CouchDB is modelled as far as the rules depend on it: each site's
//! revision tree of each resource, the winner elected as CouchDB elects it
//! (the live leaf of the greatest generation, then revision id), losers
//! listed in that order, a resource that reads as deleted when every leaf is
//! a deletion, resolutions written as revisions whose ids derive from their
//! content (so that sites resolving alike write the same revisions), and
//! deletions of the losers. Replication works as CouchDB's and PouchDB's
//! replicators do: a batch lists the leaves the target lacks, and fetches
//! them later with `latest=true`, from the source as it is by then, one leaf
//! per revision listed (PouchDB's answer when a revision has several). Each
//! site's changes feed delivers a resource some time after it changed, and a
//! runner pass works on what it delivered, however stale. An exec writes on
//! the revision its site wrote last while that is a live leaf (as the node
//! does), else on the winner.
//!
//! Clients send configs too: a resource is created with any of its
//! scenario's matrices (two sites creating it at once may pick two, and the
//! merge chooses one for all), and a later exec sends none, the same rules
//! in another order, another of the scenario's, or one that says other
//! types reset; one whose rules differ from the stored ones is refused, as
//! the node refuses it, so no config read later changes how a site reads
//! what it ran before.
//!
//! Half the schedules are busy: three or four sites writing one resource
//! for a long while, as concurrent clients do. Besides the checks above,
//! every resource keeps a live leaf in the union of all sites' revisions
//! after every step: no interleaving deletes a resource for good.
//!
//! A crash strikes between a command and its reply: the command ran, its
//! reply is lost, the rest of its batch never runs. Replies are durable per
//! command, so the command that ran without a reply is
//! the only one that may run again; the state checked is that of the runs a
//! site recorded, which is all Rule 3 can know.
//!
//! `CHEOPS_SIM_SCHEDULES` sets how many schedules run (seeds 0 to n-1);
//! `CHEOPS_SIM_SEED` replays one and prints its trace.

use std::collections::{BTreeMap, BTreeSet};

use cheops_model::{
    Command, Operation, Resolution, ResolutionResult, ResourceConfig, ResourceDocument, Timestamp,
};
use cheops_replicator::consistency::{
    add_operation, dropped, payloads, plan, prunable, prune_payloads, resolve_conflicts, Run, Seen,
    SeenReply,
};

/// Schedules run by default: enough to find the known defects every time,
/// in a few seconds.
const DEFAULT_SCHEDULES: u64 = 3_000;
/// Events of the random phase of a schedule, at most.
const MAX_EVENTS: usize = 120;
/// Events of the random phase of a busy schedule (several sites writing one
/// resource at once, as concurrent clients do), at least and at most.
const BUSY_EVENTS: (usize, usize) = (150, 400);
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

/// Adds a line to the trace of a schedule that keeps one: formatted only
/// then, since a long schedule formats many long blocks.
macro_rules! trace {
    ($sim:expr, $($arg:tt)*) => {
        if $sim.tracing {
            let line = format!($($arg)*);
            $sim.trace.push(line);
        }
    };
}

/// The matrices a schedule's clients send (each describes the application
/// truthfully), the types it uses, and those a resource may start with.
struct Scenario {
    name: &'static str,
    configs: Vec<ResourceConfig>,
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

/// Each matrix as given and in reverse order: the same rules, another
/// config.
fn sent(matrices: Vec<Vec<Resolution>>) -> Vec<ResourceConfig> {
    matrices
        .into_iter()
        .flat_map(|matrix| {
            let mut reversed = matrix.clone();
            reversed.reverse();
            [matrix, reversed]
        })
        .map(|resolution_matrix| ResourceConfig { resolution_matrix })
        .collect()
}

fn scenarios() -> Vec<Scenario> {
    use ResolutionResult::{TakeBothAnyOrder, TakeBothKeepOrder, TakeBothReverseOrder, TakeOne};
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
    // The same meaning, said of two adds too.
    let mut counter_adds = counter.clone();
    counter_adds.push(entry("add", "add", TakeBothAnyOrder));
    // The original's appends, saying that two appends keep their order.
    let mut ordered_appends = appends.clone();
    ordered_appends.push(entry("push", "push", TakeBothKeepOrder));
    // A sequence saying nothing of two pushes, as the original's appends.
    let loose_sequence = sequence[..5].to_vec();
    // Clients of one resource may send different matrices: sites creating
    // it at once with two of them, or a later exec sending other rules. A
    // scenario's matrices all hold for the resources it starts: sets inside
    // blocks only where blocks start with a set.
    vec![
        // No configuration: every pair commutes, nothing may run twice.
        Scenario {
            name: "adds without a matrix",
            configs: vec![
                ResourceConfig::default(),
                sent(vec![vec![entry("add", "add", TakeBothAnyOrder)]]).remove(0),
            ],
            types: &["add"],
            creation: &["add"],
        },
        Scenario {
            name: "set and add",
            configs: sent(vec![counter, counter_adds]),
            types: &["set", "add", "add"],
            creation: &["set", "add"],
        },
        // Pushes must keep their order: a site that ran them in another
        // order can only rebuild from a reset, so resources start with one.
        Scenario {
            name: "set, add and push",
            configs: sent(vec![sequence.clone(), inside.clone(), loose_sequence]),
            types: &["set", "add", "push", "push"],
            creation: &["set"],
        },
        Scenario {
            name: "appends the matrix says nothing about",
            configs: sent(vec![appends, ordered_appends]),
            types: &["set", "push", "push"],
            creation: &["set"],
        },
        Scenario {
            name: "sets inside blocks",
            configs: sent(vec![inside, sequence]),
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
    config: ResourceConfig,
}

/// A resource's revision tree.
#[derive(Debug, Default, Clone)]
struct Tree {
    revisions: BTreeMap<RevId, Revision>,
    children: BTreeMap<RevId, BTreeSet<RevId>>,
}

/// One site's database: each resource's revision tree.
#[derive(Debug, Default, Clone)]
struct Database(BTreeMap<String, Tree>);

/// A resource as a reader of one database finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Read {
    /// Never stored here.
    Missing,
    /// Every leaf is a deletion: CouchDB answers 404 `deleted`.
    Deleted,
    /// The winner and, in `_conflicts` order, the other live leaves.
    Live(Snapshot),
}

/// A live resource as read at one moment: what the changes feed delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    winner: RevId,
    block: Vec<Operation>,
    config: ResourceConfig,
    losers: Vec<(RevId, Vec<Operation>, ResourceConfig)>,
}

impl Database {
    fn tree(&self, resource: &str) -> Option<&Tree> {
        self.0.get(resource)
    }

    fn revision(&self, resource: &str, id: RevId) -> Option<&Revision> {
        self.tree(resource)?.revisions.get(&id)
    }

    /// The leaves of `resource`, deletions included, greatest first.
    fn all_leaves(&self, resource: &str) -> Vec<RevId> {
        let Some(tree) = self.tree(resource) else {
            return Vec::new();
        };
        tree.revisions
            .keys()
            .rev()
            .filter(|id| !tree.children.contains_key(id))
            .copied()
            .collect()
    }

    /// The live leaves of `resource`, the winner first and the losers in
    /// `_conflicts` order.
    fn leaves(&self, resource: &str) -> Vec<(RevId, &Revision)> {
        let Some(tree) = self.tree(resource) else {
            return Vec::new();
        };
        self.all_leaves(resource)
            .into_iter()
            .map(|id| (id, &tree.revisions[&id]))
            .filter(|(_, rev)| !rev.deleted)
            .collect()
    }

    fn read(&self, resource: &str) -> Read {
        let leaves = self.leaves(resource);
        match leaves.split_first() {
            None if self.tree(resource).is_some() => Read::Deleted,
            None => Read::Missing,
            Some((&(winner, rev), losers)) => Read::Live(Snapshot {
                winner,
                block: rev.operations.clone(),
                config: rev.config.clone(),
                losers: losers
                    .iter()
                    .map(|&(id, rev)| (id, rev.operations.clone(), rev.config.clone()))
                    .collect(),
            }),
        }
    }

    fn is_live_leaf(&self, resource: &str, id: RevId) -> bool {
        self.leaves(resource).iter().any(|&(leaf, _)| leaf == id)
    }

    /// The leaf PouchDB's `_bulk_get?latest=true` answers for `id`: the
    /// first leaf of a depth-first walk that takes the greatest child first.
    /// One leaf, even when `id` has several (a merge and a deletion written
    /// by sites that disagreed on the winner): the others come with a later
    /// batch, if a later change lists them.
    fn latest(&self, resource: &str, mut id: RevId) -> RevId {
        let Some(tree) = self.tree(resource) else {
            return id;
        };
        while let Some(&child) = tree.children.get(&id).and_then(|c| c.last()) {
            id = child;
        }
        id
    }

    /// The revisions of `resource` from `leaf` up to the first one `other`
    /// holds: what replicating `leaf` to `other` adds to it.
    fn missing_from(
        &self,
        other: &Database,
        resource: &str,
        leaf: RevId,
    ) -> Vec<(RevId, Revision)> {
        let mut path = Vec::new();
        let mut next = Some(leaf);
        while let Some(id) = next {
            if other.revision(resource, id).is_some() {
                break;
            }
            let Some(rev) = self.revision(resource, id) else {
                break;
            };
            path.push((id, rev.clone()));
            next = rev.parent;
        }
        path
    }

    /// Adds a revision; false when it was already there.
    fn insert(&mut self, resource: &str, id: RevId, revision: Revision) -> bool {
        let tree = self.0.entry(resource.to_owned()).or_default();
        if tree.revisions.contains_key(&id) {
            return false;
        }
        if let Some(parent) = revision.parent {
            tree.children.entry(parent).or_default().insert(id);
        }
        tree.revisions.insert(id, revision);
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
    /// Resources changed since the changes feed last delivered them.
    changed: BTreeSet<String>,
    /// What the feed delivered and no pass has settled yet, as it was when
    /// delivered: the runner's queue. A pass works on it, however the
    /// database moved on since.
    queued: BTreeMap<String, Snapshot>,
    /// The revision of each resource this site's last exec wrote: the next
    /// exec writes on it without reading, while it is a leaf (`Recent`).
    recent: BTreeMap<String, RevId>,
    /// Every site's replies this site holds, per resource: request → sites.
    seen_replies: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    /// The history documents this site holds, per resource, by request.
    history: BTreeMap<String, BTreeMap<String, Operation>>,
    /// The operations replies carry that this site holds, per resource, by
    /// request: they replicate with the replies.
    carried: BTreeMap<String, BTreeMap<String, Operation>>,
}

impl Site {
    /// Whether this site holds `request` of `resource` whole: a history
    /// document, or a reply that carries it.
    fn holds_whole(&self, resource: &str, request: &str) -> bool {
        [&self.history, &self.carried]
            .iter()
            .any(|held| held.get(resource).is_some_and(|h| h.contains_key(request)))
    }

    /// `request` of `resource` whole, when this site holds it.
    fn whole(&self, resource: &str, request: &str) -> Option<&Operation> {
        [&self.history, &self.carried]
            .into_iter()
            .find_map(|held| held.get(resource)?.get(request))
    }
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
    /// Runs of a pruned operation, from its history document or a reply
    /// that carries it.
    from_history: u64,
    /// Replies that carried their operation.
    carriers: u64,
    /// History documents written for operations a block dropped.
    dropped: u64,
    /// Times a site's database held a resource whose every leaf is a
    /// deletion (replication brought a deletion before the merge it goes
    /// with).
    all_deleted: u64,
    /// Execs refused because every leaf of their resource was a deletion.
    refused: u64,
    /// Execs refused because their config had other rules than the
    /// resource's.
    config_refused: u64,
    /// Passes that found a block lacking operations their site ran, and
    /// waited for the rest of the resource.
    incomplete: u64,
    /// Replication batches that fetched a revision other than the one the
    /// changes listed (`latest`).
    moved_on: u64,
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
        self.carriers += other.carriers;
        self.dropped += other.dropped;
        self.all_deleted += other.all_deleted;
        self.refused += other.refused;
        self.config_refused += other.config_refused;
        self.incomplete += other.incomplete;
        self.moved_on += other.moved_on;
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
    /// Whether `trace` is kept: when a failing seed is replayed.
    tracing: bool,
    trace: Vec<String>,
    stats: Stats,
    /// Percent chance that an exec prunes each operation it may prune.
    prune_percent: u64,
    /// Every operation as it was sent, by request id.
    originals: BTreeMap<String, Operation>,
    /// The resource of each of them.
    resource_of: BTreeMap<String, String>,
    /// The revisions each replication (source, target) listed and has not
    /// fetched yet.
    listed: BTreeMap<(usize, usize), Vec<(String, RevId)>>,
    /// Sites write no history document for what a block drops: what the
    /// search must then catch.
    no_dropped: bool,
}

impl<'s> Sim<'s> {
    fn new(scenario: &'s Scenario, mut rng: Rng, busy: bool) -> Self {
        let sites = if busy {
            3 + rng.below(2)
        } else {
            2 + rng.below(3)
        };
        let sites = (1..=sites)
            .map(|n| Site {
                name: format!("site{n}"),
                ..Site::default()
            })
            .collect();
        let resources = if busy { 1 } else { 1 + rng.below(2) };
        let resources = (0..resources).map(|n| format!("res{n}")).collect();
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
            tracing: false,
            trace: Vec::new(),
            stats: Stats::default(),
            prune_percent,
            originals: BTreeMap::new(),
            resource_of: BTreeMap::new(),
            listed: BTreeMap::new(),
            no_dropped: std::env::var_os("CHEOPS_SIM_NO_DROPPED").is_some(),
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
            history: site.holds_whole(resource, request),
        }
    }

    fn document(&self, resource: &str, id: RevId, revision: &Revision) -> ResourceDocument {
        ResourceDocument {
            id: resource.to_owned(),
            rev: Some(id.rev()),
            locations: self.sites.iter().map(|s| s.name.clone()).collect(),
            operations: revision.operations.clone(),
            config: revision.config.clone(),
            ..ResourceDocument::default()
        }
    }

    /// A client sends an operation to `site`, as `Node::submit` stores it:
    /// on the revision this site's last exec wrote while it is a live leaf
    /// (the node keeps it instead of reading again), else on the winner;
    /// a resource never stored here is created. A resource whose every
    /// leaf is a deletion is not created again from nothing: the node waits
    /// a while for the merge, then refuses, and the client may try again.
    fn exec(&mut self, site: usize, resource: &str) {
        let recent = self.sites[site]
            .recent
            .remove(resource)
            .filter(|&rev| self.sites[site].db.is_live_leaf(resource, rev));
        let base = match (recent, self.sites[site].db.read(resource)) {
            (Some(rev), _) => {
                let stored = self.sites[site].db.revision(resource, rev);
                stored.map(|r| (rev, (r.operations.clone(), r.config.clone())))
            }
            (None, Read::Live(snapshot)) => {
                Some((snapshot.winner, (snapshot.block, snapshot.config)))
            }
            (None, Read::Missing) => None,
            (None, Read::Deleted) => {
                self.stats.refused += 1;
                trace!(
                    self,
                    "{} refuses an exec on {resource}: every leaf is a deletion",
                    self.sites[site].name
                );
                return;
            }
        };
        // The config the client sends: any of the scenario's, or none (the
        // stored one stays), or, to an existing resource, one that says
        // other types reset. One with other rules than the stored one is
        // refused, and nothing is written.
        let sent = match &base {
            Some(_) if self.rng.percent(50) => ResourceConfig::default(),
            Some(_) if self.rng.percent(20) => {
                let op_type = *self.rng.pick(self.scenario.types);
                let result = *self.rng.pick(&[
                    ResolutionResult::TakeOne,
                    ResolutionResult::TakeBothAnyOrder,
                ]);
                ResourceConfig {
                    resolution_matrix: vec![entry(op_type, op_type, result)],
                }
            }
            Some((_, (_, stored))) if self.rng.percent(70) => {
                let alike: Vec<&ResourceConfig> = self
                    .scenario
                    .configs
                    .iter()
                    .filter(|c| c.same_rules(stored))
                    .collect();
                alike
                    .get(self.rng.below(alike.len().max(1)))
                    .map_or_else(ResourceConfig::default, |c| (*c).clone())
            }
            _ => self.rng.pick(&self.scenario.configs).clone(),
        };
        let config = match &base {
            None => sent,
            Some((_, (_, stored))) if sent.is_empty() => stored.clone(),
            Some((_, (_, stored))) if stored.same_rules(&sent) => sent,
            Some(_) => {
                self.stats.config_refused += 1;
                trace!(
                    self,
                    "{} refuses an exec on {resource}: its config has other rules",
                    self.sites[site].name
                );
                return;
            }
        };
        self.requests += 1;
        self.stats.operations += 1;
        let op_type = match base {
            None => *self.rng.pick(self.scenario.creation),
            Some(_) => *self.rng.pick(self.scenario.types),
        };
        let failing = op_type != "set" && self.rng.percent(10);
        let request = format!("r{}", self.requests);
        let op = Operation {
            op_type: op_type.to_owned(),
            command: Command {
                command: format!("{} {request}", if failing { "false" } else { "true" }),
                ..Command::default()
            },
            request_id: request,
            site: self.sites[site].name.clone(),
            ..Operation::default()
        };
        self.originals.insert(op.request_id.clone(), op.clone());
        self.resource_of
            .insert(op.request_id.clone(), resource.to_owned());
        let (parent, block) = base.map(|(rev, (block, _))| (rev, block)).unzip();
        let mut operations =
            add_operation(&config, block.as_deref().unwrap_or_default(), op.clone());
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
        // What a reset drops gets a history document, unless held whole.
        let before = block.clone().unwrap_or_default();
        self.keep_dropped(site, resource, &before, &operations);
        let id = RevId::child(parent, &[&op.request_id]);
        trace!(
            self,
            "{} exec {} {}{} on {resource} -> {}",
            self.sites[site].name,
            op.op_type,
            op.request_id,
            if failing { " (fails)" } else { "" },
            ids(&operations)
        );
        let revision = Revision {
            parent,
            deleted: false,
            operations,
            config,
        };
        let site = &mut self.sites[site];
        site.db.insert(resource, id, revision);
        site.recent.insert(resource.to_owned(), id);
        site.changed.insert(resource.to_owned());
    }

    /// The history documents `site` writes, as the node does, for the
    /// operations of `before` that `after` drops with their payload and
    /// that it does not hold whole yet. Unless `CHEOPS_SIM_NO_DROPPED` is
    /// set: then the search must find an operation that leaves the history.
    fn keep_dropped(
        &mut self,
        site: usize,
        resource: &str,
        before: &[Operation],
        after: &[Operation],
    ) {
        if self.no_dropped {
            return;
        }
        let written: Vec<Operation> = dropped(before, after)
            .into_iter()
            .filter(|op| !self.sites[site].holds_whole(resource, &op.request_id))
            .cloned()
            .collect();
        if written.is_empty() {
            return;
        }
        trace!(
            self,
            "{} keeps {} dropped from {resource} in history documents",
            self.sites[site].name,
            ids(&written)
        );
        self.stats.dropped += written.len() as u64;
        let held = self.sites[site]
            .history
            .entry(resource.to_owned())
            .or_default();
        for op in written {
            held.insert(op.request_id.clone(), op);
        }
    }

    /// The first half of a replication batch from `from` to `to`: the
    /// changes feed lists the leaves of each resource (of one, or all) and
    /// `_revs_diff` keeps those `to` lacks. They are fetched later, by
    /// [`Sim::fetch`], from the source as it is then.
    fn list(&mut self, from: usize, to: usize, resource: Option<&str>) {
        let (source, target) = (&self.sites[from].db, &self.sites[to].db);
        let mut missing = Vec::new();
        for name in source.0.keys() {
            if resource.is_some_and(|r| r != name) {
                continue;
            }
            for leaf in source.all_leaves(name) {
                if target.revision(name, leaf).is_none() {
                    missing.push((name.clone(), leaf));
                }
            }
        }
        self.listed.entry((from, to)).or_default().extend(missing);
    }

    /// The second half: `_bulk_get?latest=true` on the source as it is now,
    /// then one `_bulk_docs` to the target, with the replies (and the
    /// operations they carry) and (when `history`) the history documents
    /// `from` has and `to` lacks. True
    /// when something was copied.
    fn fetch(&mut self, from: usize, to: usize, history: bool) -> bool {
        let listed = self.listed.remove(&(from, to)).unwrap_or_default();
        let (source, target) = if from < to {
            let (left, right) = self.sites.split_at_mut(to);
            (&left[from], &mut right[0])
        } else {
            let (left, right) = self.sites.split_at_mut(from);
            (&right[0], &mut left[to])
        };
        let mut copied = false;
        let mut moved_on = false;
        for (name, rev) in &listed {
            let leaf = source.db.latest(name, *rev);
            moved_on |= leaf != *rev;
            let mut new = false;
            for (id, revision) in source.db.missing_from(&target.db, name, leaf) {
                new |= target.db.insert(name, id, revision);
            }
            if new {
                target.changed.insert(name.clone());
                copied = true;
            }
        }
        let resources: BTreeSet<&String> = listed.iter().map(|(name, _)| name).collect();
        for (name, by_request) in &source.seen_replies {
            let known = target.seen_replies.entry(name.clone()).or_default();
            for (request, sites) in by_request {
                let known = known.entry(request.clone()).or_default();
                let before = known.len();
                known.extend(sites.iter().cloned());
                copied |= known.len() != before;
            }
        }
        copied |= copy_whole(&source.carried, &mut target.carried, &mut target.changed);
        if history {
            copied |= copy_whole(&source.history, &mut target.history, &mut target.changed);
        }
        self.stats.moved_on += u64::from(moved_on);
        if copied {
            let (from, to) = (self.sites[from].name.clone(), self.sites[to].name.clone());
            let names: Vec<&str> = resources.iter().map(|r| r.as_str()).collect();
            trace!(
                self,
                "replicate {from} -> {to} ({}){}",
                names.join(" "),
                if moved_on { ", latest moved on" } else { "" }
            );
        }
        copied
    }

    /// A replication batch with nothing in between: what a healed network
    /// ends with.
    fn replicate(&mut self, from: usize, to: usize) -> bool {
        self.list(from, to, None);
        self.fetch(from, to, true)
    }

    /// The changes feed of `site` delivers `resource` (or every changed
    /// one) as it is now. The follower skips a resource whose every leaf
    /// is a deletion: the runner keeps what it had.
    fn deliver(&mut self, site: usize, resource: Option<&str>) {
        let changed: Vec<String> = self.sites[site]
            .changed
            .iter()
            .filter(|r| resource.is_none_or(|one| one == r.as_str()))
            .cloned()
            .collect();
        for name in changed {
            let site = &mut self.sites[site];
            site.changed.remove(&name);
            match site.db.read(&name) {
                Read::Live(snapshot) => {
                    site.queued.insert(name, snapshot);
                }
                Read::Deleted => self.stats.all_deleted += 1,
                Read::Missing => {}
            }
        }
    }

    /// One runner pass of `site` over `resource`, as the runner does it, on
    /// the resource as the feed delivered it: merge the conflicts if there
    /// are some, else run what `plan` says, one reply per command, a failure
    /// stopping the batch.
    fn pass(&mut self, site: usize, resource: &str, crashes: bool) -> Pass {
        let Some(snapshot) = self.sites[site].queued.get(resource).cloned() else {
            return Pass::Nothing;
        };
        let winner = Revision {
            parent: None,
            deleted: false,
            operations: snapshot.block.clone(),
            config: snapshot.config.clone(),
        };
        if !snapshot.losers.is_empty() {
            let winner_doc = self.document(resource, snapshot.winner, &winner);
            let losers: Vec<ResourceDocument> = snapshot
                .losers
                .iter()
                .map(|(id, operations, config)| {
                    let rev = Revision {
                        parent: None,
                        deleted: false,
                        operations: operations.clone(),
                        config: config.clone(),
                    };
                    self.document(resource, *id, &rev)
                })
                .collect();
            let merged = resolve_conflicts(&winner_doc, &losers);
            self.stats.merges += 1;
            // What a take-one drops gets a history document, written with
            // the merge, unless held whole.
            let before: Vec<Operation> = std::iter::once(&winner_doc)
                .chain(&losers)
                .flat_map(|doc| doc.operations.iter().cloned())
                .collect();
            self.keep_dropped(site, resource, &before, &merged.operations);
            let kept: BTreeSet<&str> = ids_of(&merged.operations);
            let all = losers
                .iter()
                .map(|l| &l.operations)
                .chain([&winner_doc.operations]);
            if all.flat_map(|ops| ids_of(ops)).any(|id| !kept.contains(id)) {
                self.stats.drops += 1;
            }
            if merged.operations.first() != snapshot.block.first() {
                self.stats.new_first += 1;
            }
            let config = serde_json::to_string(&merged.config).unwrap_or_default();
            let mut content: Vec<&str> = vec!["merged", &config];
            for op in &merged.operations {
                content.push(op.request_id.as_str());
                content.extend(op.pruned.then_some("pruned"));
            }
            let merged_id = RevId::child(Some(snapshot.winner), &content);
            trace!(
                self,
                "{} merges {resource}: {} with {} losers -> {}",
                self.sites[site].name,
                ids(&snapshot.block),
                snapshot.losers.len(),
                ids(&merged.operations)
            );
            let site = &mut self.sites[site];
            let mut written = site.db.insert(
                resource,
                merged_id,
                Revision {
                    parent: Some(snapshot.winner),
                    deleted: false,
                    operations: merged.operations,
                    config: merged.config,
                },
            );
            for (loser, _, _) in &snapshot.losers {
                let tombstone = Revision {
                    parent: Some(*loser),
                    deleted: true,
                    operations: Vec::new(),
                    config: ResourceConfig::default(),
                };
                written |= site.db.insert(
                    resource,
                    RevId::child(Some(*loser), &["deleted"]),
                    tombstone,
                );
            }
            site.queued.remove(resource);
            // The merged revision comes back through the feed.
            if written {
                site.changed.insert(resource.to_owned());
            }
            return Pass::Merged;
        }

        let block = snapshot.block;
        let replies = self.sites[site]
            .replies
            .get(resource)
            .cloned()
            .unwrap_or_default();
        let decision = plan(&block, &replies, &snapshot.config);
        if decision.incomplete {
            self.stats.incomplete += 1;
            trace!(
                self,
                "{} waits for the rest of {resource}: {} lacks operations it ran",
                self.sites[site].name,
                ids(&block)
            );
        }
        if decision.operations.is_empty() {
            self.sites[site].queued.remove(resource);
            return Pass::Nothing;
        }
        // The pruned operations to run, whole as this site holds them.
        let history = decision
            .operations
            .iter()
            .filter(|op| op.pruned)
            .filter_map(|op| {
                let whole = self.sites[site].whole(resource, &op.request_id)?;
                Some((op.request_id.clone(), whole.clone()))
            })
            .collect();
        let commands = match payloads(&decision.operations, &history) {
            Ok(commands) => commands,
            Err(request) => {
                self.stats.waits += 1;
                trace!(
                    self,
                    "{} waits for the history document of {request}",
                    self.sites[site].name
                );
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
        trace!(
            self,
            "{} runs {}{} of {resource} {}",
            self.sites[site].name,
            ids(&batch),
            if decision.rebuild { " (rebuild)" } else { "" },
            ids(&block)
        );
        for (index, op) in batch.iter().enumerate() {
            let crash = crashes && self.rng.percent(self.crash_percent);
            self.sites[site].log.push(Ran {
                resource: resource.to_owned(),
                op: op.clone(),
                recorded: !crash,
            });
            if crash {
                self.stats.crashes += 1;
                trace!(
                    self,
                    "{} crashes after running {}: its reply is lost",
                    self.sites[site].name,
                    op.request_id
                );
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
            // The accepting site's first reply carries the operation.
            let first = !replies.iter().any(|r| r.request == op.request_id);
            if first && op.site == site.name {
                self.stats.carriers += 1;
                let whole = Operation {
                    pruned: false,
                    ..op.clone()
                };
                site.carried
                    .entry(resource.to_owned())
                    .or_default()
                    .insert(op.request_id.clone(), whole);
            }
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

    /// The daemon starts again: it forgets what it held in memory, and its
    /// feed delivers every resource anew.
    fn restart(&mut self, site: usize) {
        let site = &mut self.sites[site];
        site.changed = site.db.0.keys().cloned().collect();
        site.queued.clear();
        site.recent.clear();
    }

    /// Every resource stored somewhere has a live leaf in the union of
    /// every site's revisions: no interleaving of writers, resolvers and
    /// replication deletes a resource for good.
    fn check_live_somewhere(&self) -> Result<(), String> {
        for resource in &self.resources {
            // A live leaf of the union is a live leaf wherever it is.
            let extended = |leaf: RevId| {
                self.sites.iter().any(|site| {
                    site.db
                        .tree(resource)
                        .is_some_and(|t| t.children.contains_key(&leaf))
                })
            };
            let stored = self.sites.iter().any(|s| s.db.tree(resource).is_some());
            let live = self.sites.iter().any(|site| {
                site.db
                    .leaves(resource)
                    .iter()
                    .any(|&(leaf, _)| !extended(leaf))
            });
            if stored && !live {
                return Err(format!(
                    "every leaf of {resource} is a deletion on every site"
                ));
            }
        }
        Ok(())
    }

    /// The random phase: `events` random steps.
    fn random_phase(&mut self, events: usize) -> Result<(), String> {
        for _ in 0..events {
            let site = self.rng.below(self.sites.len());
            let resource = self.rng.pick(&self.resources).clone();
            let one = self.rng.percent(50).then_some(resource.as_str());
            match self.rng.below(100) {
                0..=19 => self.exec(site, &resource),
                // A replication from `site` to another: it fetches what it
                // listed last time, and lists what changed since.
                20..=64 => {
                    let to = self.rng.below(self.sites.len());
                    if to != site {
                        // History documents replicate on their own: often late.
                        let history = self.rng.percent(30);
                        self.fetch(site, to, history);
                        self.list(site, to, one);
                    }
                }
                65..=74 => self.deliver(site, one),
                75..=96 => {
                    let queued: Vec<String> = self.sites[site].queued.keys().cloned().collect();
                    if !queued.is_empty() {
                        let resource = self.rng.pick(&queued).clone();
                        self.pass(site, &resource, true);
                    }
                }
                _ => {
                    trace!(self, "{} restarts", self.sites[site].name);
                    self.restart(site);
                }
            }
            self.check_live_somewhere()?;
        }
        Ok(())
    }

    /// The network heals: replicate everything everywhere and run every
    /// pass until nothing changes.
    fn settle(&mut self) -> Result<(), String> {
        trace!(self, "the network heals");
        for _ in 0..MAX_ROUNDS {
            let mut changed = false;
            for from in 0..self.sites.len() {
                for to in 0..self.sites.len() {
                    if from != to {
                        changed |= self.replicate(from, to);
                    }
                }
            }
            for site in 0..self.sites.len() {
                let mut passes = 0;
                // Waiting for a history document until the next round's
                // replication brings it.
                let mut waiting = BTreeSet::new();
                loop {
                    self.deliver(site, None);
                    let Some(resource) = self.sites[site]
                        .queued
                        .keys()
                        .find(|r| !waiting.contains(*r))
                        .cloned()
                    else {
                        break;
                    };
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
            self.check_live_somewhere()?;
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
                self.check_history(site, resource, block)?;
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

impl Sim<'_> {
    /// Every operation ever accepted for `resource` is on `site` in the
    /// block with its payload, in a reply that carries it or in a history
    /// document: the site's history lists it, command and files.
    fn check_history(
        &self,
        site: &Site,
        resource: &str,
        block: &[Operation],
    ) -> Result<(), String> {
        let in_block: BTreeSet<&str> = block
            .iter()
            .filter(|op| !op.pruned)
            .map(|op| op.request_id.as_str())
            .collect();
        for (request, original) in &self.originals {
            let ours = self.resource_of.get(request).is_some_and(|r| r == resource);
            if !ours || in_block.contains(request.as_str()) {
                continue;
            }
            match site.whole(resource, request) {
                Some(whole) if whole.command == original.command => {}
                Some(whole) => {
                    return Err(format!(
                        "{} holds {request} of {resource} with the command {:?}, not {:?}",
                        site.name, whole.command.command, original.command.command
                    ))
                }
                None => {
                    return Err(format!(
                        "{} lost {request} of {resource} from its history: not in the block {}, no reply carries it, no history document",
                        site.name,
                        ids(block)
                    ))
                }
            }
        }
        Ok(())
    }
}

/// Copies into `to` the operations held whole in `from` that it lacks;
/// the changes feed brings each, so a pass waiting for one looks again
/// (`changed`). True when something was copied.
fn copy_whole(
    from: &BTreeMap<String, BTreeMap<String, Operation>>,
    to: &mut BTreeMap<String, BTreeMap<String, Operation>>,
    changed: &mut BTreeSet<String>,
) -> bool {
    let mut copied = false;
    for (name, docs) in from {
        let held = to.entry(name.clone()).or_default();
        for (request, op) in docs {
            if !held.contains_key(request) {
                held.insert(request.clone(), op.clone());
                changed.insert(name.clone());
                copied = true;
            }
        }
    }
    copied
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

/// One schedule: its outcome, its trace (when `tracing`) and what it went
/// through.
fn schedule(seed: u64, tracing: bool) -> (Result<(), String>, Vec<String>, Stats) {
    let scenarios = scenarios();
    let mut rng = Rng(seed);
    let mut scenario = &scenarios[rng.below(scenarios.len())];
    let busy = rng.percent(50);
    // Half the busy schedules run the scenario where nothing may run
    // twice: no reset excuses a second run there.
    if busy && rng.percent(50) {
        scenario = &scenarios[0];
    }
    let events = if busy {
        BUSY_EVENTS.0 + rng.below(BUSY_EVENTS.1 - BUSY_EVENTS.0)
    } else {
        10 + rng.below(MAX_EVENTS - 10)
    };
    let mut sim = Sim::new(scenario, rng, busy);
    sim.tracing = tracing;
    trace!(
        sim,
        "scenario {:?}: {} sites, {} resources, {events} events, crash {}%, prune {}%",
        scenario.name,
        sim.sites.len(),
        sim.resources.len(),
        sim.crash_percent,
        sim.prune_percent
    );
    let outcome = sim
        .random_phase(events)
        .and_then(|()| sim.settle())
        .and_then(|()| sim.check());
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
        let (outcome, trace, _) = schedule(seed, true);
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
        let (outcome, _, stats) = schedule(seed, false);
        total.add(&stats);
        if let Err(message) = outcome {
            // Again, deterministically, keeping the trace this time.
            let (_, trace, _) = schedule(seed, true);
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

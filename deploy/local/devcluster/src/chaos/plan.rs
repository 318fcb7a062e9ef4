//! What a chaos run will do, drawn from its seed alone: the resources, every
//! operation each site's client sends and when, every fault and when. The
//! same seed, node count and duration give the same plan, so a failing run
//! can be replayed (its timing, and so its interleavings, may differ).

use std::fmt;

use crate::Fault;
use cheops_testkit::Process;

/// The matrix of the one resource that has one (the original scenarios'):
/// a later set wins over what came before it, an add builds on the set
/// before it, two adds go in any order.
pub const MATRIX: &str = r#"{"ResolutionMatrix": [
    {"Before": "set", "After": "set", "Result": "take-one"},
    {"Before": "set", "After": "add", "Result": "take-both-keep-order"},
    {"Before": "add", "After": "set", "Result": "take-both-reverse-order"}
]}"#;

/// A new resource without a matrix comes into use every this many
/// milliseconds, so that sites create resources at once throughout a run.
const RESOURCE_EVERY_MS: u64 = 8_000;
/// Without faults: clients per node, resources without a matrix (every
/// site holds them), and the longest pause of a client between two
/// operations.
const CONCURRENT_CLIENTS_PER_NODE: usize = 2;
const CONCURRENT_RESOURCES: usize = 3;
const CONCURRENT_PAUSE_MS: u64 = 400;

/// What a run puts the cluster through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One client per site, sending through it, to resources on all sites
    /// or some, while faults come and go.
    Faults,
    /// No fault: several clients per site, each sending through sites
    /// drawn at random to a few resources every site holds, with short
    /// pauses after each answer (an operation's `at_ms` is its client's
    /// planned time, so the pauses are the differences). Sites resolve the
    /// same conflicts at once, all the time.
    Concurrency,
}

/// A small, seeded generator (SplitMix64): the plan must not change with a
/// dependency's version.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi` (`lo` when the range is empty).
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.between(0, items.len() as u64) as usize]
    }
}

/// A resource the clients update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub id: String,
    /// Indexes of its sites.
    pub sites: Vec<usize>,
    /// Whether it has [`MATRIX`] (created before the faults start); without
    /// one every pair of operations is take-both-any-order, so each
    /// operation must run exactly once on each of its sites.
    pub matrix: bool,
    /// When clients start using it, in milliseconds from the start.
    pub from_ms: u64,
}

/// One operation a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub at_ms: u64,
    /// The client that sends it (a client sends one at a time).
    pub client: usize,
    /// The index of the site whose API it is sent to.
    pub via: usize,
    pub resource: usize,
    /// Unique in the run; the command writes it to the resource's file.
    pub tag: String,
    /// `set` (replaces the file; only on the matrix resource) or `add`
    /// (appends a line).
    pub op_type: &'static str,
}

impl Op {
    /// The shell command: writes the tag to `$NODE_DIR/RESOURCE`.
    pub fn command(&self, resource: &Resource) -> String {
        let redirect = if self.op_type == "set" { ">" } else { ">>" };
        format!("echo {} {redirect} \"$NODE_DIR/{}\"", self.tag, resource.id)
    }
}

/// What the network or one process undergoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Partition,
    Heal,
    Process(Fault, usize, Process),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub at_ms: u64,
    pub action: Action,
}

/// The kinds of fault episodes, each undone after a while, with their
/// weights.
const EPISODES: [(Episode, u64); 5] = [
    (Episode::Partition, 2),
    (Episode::KillDaemon, 2),
    (Episode::FreezeDaemon, 1),
    (Episode::FreezeSidecar, 2),
    (Episode::KillSidecar, 2),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Episode {
    Partition,
    KillDaemon,
    FreezeDaemon,
    FreezeSidecar,
    KillSidecar,
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub seed: u64,
    pub nodes: usize,
    pub millis: u64,
    pub mode: Mode,
    /// How many clients send operations.
    pub clients: usize,
    pub resources: Vec<Resource>,
    /// Sorted by time.
    pub ops: Vec<Op>,
    /// Sorted by time; every fault is undone before the end.
    pub events: Vec<Event>,
}

impl Plan {
    pub fn new(seed: u64, nodes: usize, seconds: u64, mode: Mode) -> Plan {
        let millis = seconds * 1000;
        let mut rng = Rng::new(seed);
        let (resources, events, clients) = match mode {
            Mode::Faults => {
                let resources = resources(&mut rng, nodes, millis);
                (resources, events(&mut rng, nodes, millis), nodes)
            }
            Mode::Concurrency => (
                shared_resources(nodes),
                Vec::new(),
                nodes * CONCURRENT_CLIENTS_PER_NODE,
            ),
        };
        let mut ops: Vec<Op> = (0..clients)
            .flat_map(|client| client_ops(&mut rng, client, &resources, millis, mode))
            .collect();
        ops.sort_by_key(|op| op.at_ms);
        Plan {
            seed,
            nodes,
            millis,
            mode,
            clients,
            resources,
            ops,
            events,
        }
    }

    /// The arguments that replay this plan.
    pub fn replay(&self) -> String {
        let mode = match self.mode {
            Mode::Faults => "",
            Mode::Concurrency => " --concurrency",
        };
        format!(
            "--seed {} --nodes {} --seconds {}{mode}",
            self.seed,
            self.nodes,
            self.millis / 1000
        )
    }

    /// How many faults of each kind, for the summary.
    pub fn fault_counts(&self) -> String {
        let count =
            |wanted: fn(&Action) -> bool| self.events.iter().filter(|e| wanted(&e.action)).count();
        format!(
            "{} partitions, {} daemon kills, {} daemon freezes, {} sidecar freezes, {} sidecar kills",
            count(|a| *a == Action::Partition),
            count(|a| matches!(a, Action::Process(Fault::Kill, _, Process::Daemon))),
            count(|a| matches!(a, Action::Process(Fault::Freeze, _, Process::Daemon))),
            count(|a| matches!(a, Action::Process(Fault::Freeze, _, Process::Sidecar))),
            count(|a| matches!(a, Action::Process(Fault::Kill, _, Process::Sidecar))),
        )
    }
}

/// The site name of node index `i`.
pub fn site(i: usize) -> String {
    format!("site{}", i + 1)
}

/// The one resource with [`MATRIX`], on every site, created before the run.
fn matrix_resource(nodes: usize) -> Resource {
    Resource {
        id: "chaos-matrix".into(),
        sites: (0..nodes).collect(),
        matrix: true,
        from_ms: 0,
    }
}

fn resources(rng: &mut Rng, nodes: usize, millis: u64) -> Vec<Resource> {
    let all: Vec<usize> = (0..nodes).collect();
    let mut resources = vec![matrix_resource(nodes)];
    for k in 0..=millis / RESOURCE_EVERY_MS {
        // Every other one lives on some of the sites only.
        let sites = if k % 2 == 1 && nodes > 2 {
            let size = rng.between(2, nodes as u64) as usize;
            let mut pool = all.clone();
            let mut chosen: Vec<usize> = (0..size)
                .map(|_| pool.remove(rng.between(0, pool.len() as u64) as usize))
                .collect();
            chosen.sort_unstable();
            chosen
        } else {
            all.clone()
        };
        resources.push(Resource {
            id: format!("chaos-{}", k + 1),
            sites,
            matrix: false,
            from_ms: k * RESOURCE_EVERY_MS,
        });
    }
    resources
}

/// The resources of a run without faults: the matrix resource and a few
/// without a matrix, all on every site and in use from the start, so that
/// sites also create them at once.
fn shared_resources(nodes: usize) -> Vec<Resource> {
    let mut resources = vec![matrix_resource(nodes)];
    resources.extend((1..=CONCURRENT_RESOURCES).map(|k| Resource {
        id: format!("chaos-{k}"),
        sites: (0..nodes).collect(),
        matrix: false,
        from_ms: 0,
    }));
    resources
}

/// The operations of one client, one after the other. With faults, a
/// client sends through its own site, to the resources in use there; without
/// them, to any resource, through a site of it drawn at random each time,
/// after shorter pauses.
fn client_ops(
    rng: &mut Rng,
    client: usize,
    resources: &[Resource],
    millis: u64,
    mode: Mode,
) -> Vec<Op> {
    let (first, pause) = match mode {
        Mode::Faults => (500, (150, 900)),
        Mode::Concurrency => (CONCURRENT_PAUSE_MS, (0, CONCURRENT_PAUSE_MS)),
    };
    let mut ops = Vec::new();
    let mut at_ms = rng.between(0, first);
    while at_ms < millis {
        let usable: Vec<usize> = (0..resources.len())
            .filter(|&r| {
                resources[r].from_ms <= at_ms
                    && (mode == Mode::Concurrency || resources[r].sites.contains(&client))
            })
            .collect();
        let resource = rng.pick(&usable);
        let op_type = if resources[resource].matrix && rng.between(0, 10) < 3 {
            "set"
        } else {
            "add"
        };
        let (via, tag) = match mode {
            Mode::Faults => (client, site(client)),
            Mode::Concurrency => (
                rng.pick(&resources[resource].sites),
                format!("client{}", client + 1),
            ),
        };
        ops.push(Op {
            at_ms,
            client,
            via,
            resource,
            tag: format!("{tag}-{:04}", ops.len() + 1),
            op_type,
        });
        at_ms += rng.between(pause.0, pause.1);
    }
    ops
}

/// Fault episodes one after the other, overlapping sometimes: never two on
/// one node at once, never every node down at once.
fn events(rng: &mut Rng, nodes: usize, millis: u64) -> Vec<Event> {
    let total: u64 = EPISODES.iter().map(|(_, w)| w).sum();
    let mut events = Vec::new();
    let mut busy_until = vec![0; nodes];
    let mut network_busy_until = 0;
    let mut at_ms = rng.between(1_000, 3_000);
    while at_ms + 1_000 < millis {
        let mut roll = rng.between(0, total);
        let episode = EPISODES
            .iter()
            .find(|(_, weight)| {
                let hit = roll < *weight;
                roll = roll.saturating_sub(*weight);
                hit
            })
            .map_or(Episode::Partition, |(episode, _)| *episode);
        let (lo, hi) = if episode == Episode::Partition {
            (2_000, 8_000)
        } else {
            (1_000, 6_000)
        };
        let end = (at_ms + rng.between(lo, hi)).min(millis);
        let free: Vec<usize> = (0..nodes).filter(|&i| busy_until[i] <= at_ms).collect();
        let pick = rng.between(0, free.len() as u64) as usize;
        // Some node stays whole.
        let target = free
            .get(pick)
            .copied()
            .filter(|_| nodes - free.len() + 1 < nodes);
        let pair = match (episode, target) {
            (Episode::Partition, _) if network_busy_until <= at_ms => {
                network_busy_until = end + 500;
                Some((Action::Partition, Action::Heal))
            }
            (Episode::Partition, _) | (_, None) => None,
            (_, Some(i)) => {
                busy_until[i] = end + 500;
                let (fault, undo, process) = match episode {
                    Episode::KillDaemon => (Fault::Kill, Fault::Restart, Process::Daemon),
                    Episode::FreezeDaemon => (Fault::Freeze, Fault::Thaw, Process::Daemon),
                    Episode::FreezeSidecar => (Fault::Freeze, Fault::Thaw, Process::Sidecar),
                    _ => (Fault::Kill, Fault::Restart, Process::Sidecar),
                };
                Some((
                    Action::Process(fault, i, process),
                    Action::Process(undo, i, process),
                ))
            }
        };
        if let Some((start, stop)) = pair {
            events.push(Event {
                at_ms,
                action: start,
            });
            events.push(Event {
                at_ms: end,
                action: stop,
            });
        }
        at_ms += rng.between(2_000, 5_000);
    }
    events.sort_by_key(|e| e.at_ms);
    events
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Partition => f.write_str("partition"),
            Action::Heal => f.write_str("heal"),
            Action::Process(fault, i, process) => {
                write!(f, "{} {} {process}", fault.verb(), site(*i))
            }
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.replay())?;
        for r in &self.resources {
            let sites: Vec<String> = r.sites.iter().map(|&i| site(i)).collect();
            let matrix = if r.matrix { " (matrix)" } else { "" };
            writeln!(
                f,
                "resource {} on {}{matrix} from {} ms",
                r.id,
                sites.join("&"),
                r.from_ms
            )?;
        }
        for e in &self.events {
            writeln!(f, "{:>6} ms  {}", e.at_ms, e.action)?;
        }
        for op in &self.ops {
            let resource = &self.resources[op.resource];
            writeln!(
                f,
                "{:>6} ms  {} {} via {}: {}",
                op.at_ms,
                op.op_type,
                resource.id,
                site(op.via),
                op.command(resource)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_one_plan() {
        let plan = Plan::new(7, 3, 60, Mode::Faults);
        assert_eq!(plan, Plan::new(7, 3, 60, Mode::Faults));
        assert_ne!(plan, Plan::new(8, 3, 60, Mode::Faults));
        assert_eq!(
            plan.to_string(),
            Plan::new(7, 3, 60, Mode::Faults).to_string()
        );
    }

    #[test]
    fn every_fault_is_undone_and_a_node_stays_whole() {
        for seed in 0..200 {
            let plan = Plan::new(seed, 3, 60, Mode::Faults);
            assert!(!plan.ops.is_empty(), "seed {seed}");
            let mut partitioned = false;
            let mut impaired = [false; 3];
            for event in &plan.events {
                assert!(event.at_ms <= plan.millis, "seed {seed}: {event:?}");
                match event.action {
                    Action::Partition => partitioned = true,
                    Action::Heal => partitioned = false,
                    Action::Process(Fault::Kill | Fault::Freeze, i, _) => {
                        assert!(!impaired[i], "seed {seed}: two faults on site{}", i + 1);
                        impaired[i] = true;
                        assert!(impaired.contains(&false), "seed {seed}: every node down");
                    }
                    Action::Process(Fault::Restart | Fault::Thaw, i, _) => impaired[i] = false,
                }
            }
            assert!(!partitioned && !impaired.contains(&true), "seed {seed}");
        }
    }

    #[test]
    fn clients_use_only_their_resources_and_tags_are_unique() {
        let plan = Plan::new(3, 4, 60, Mode::Faults);
        let mut tags = std::collections::BTreeSet::new();
        for op in &plan.ops {
            assert!(plan.resources[op.resource].sites.contains(&op.client));
            assert!(op.op_type == "add" || plan.resources[op.resource].matrix);
            assert!(tags.insert(op.tag.clone()), "{} twice", op.tag);
        }
        assert!(plan.resources.iter().any(|r| r.sites.len() < 4));
    }

    #[test]
    fn without_faults_many_clients_share_every_resource_through_any_site() {
        let plan = Plan::new(5, 4, 30, Mode::Concurrency);
        assert_eq!(plan, Plan::new(5, 4, 30, Mode::Concurrency));
        assert!(plan.events.is_empty());
        assert_eq!(plan.clients, 8);
        assert!(plan.resources.iter().all(|r| r.sites.len() == 4));
        let mut tags = std::collections::BTreeSet::new();
        let mut vias = std::collections::BTreeSet::new();
        for op in &plan.ops {
            assert!(tags.insert(op.tag.clone()), "{} twice", op.tag);
            assert!(op.op_type == "add" || plan.resources[op.resource].matrix);
            vias.insert((op.client, op.via));
        }
        for client in 0..plan.clients {
            let through = vias.iter().filter(|(c, _)| *c == client).count();
            assert!(through > 1, "client {client} sends through one site only");
        }
        assert!(plan
            .to_string()
            .starts_with("--seed 5 --nodes 4 --seconds 30 --concurrency\n"));
    }
}

//! The throughput floor: the document traffic of the throughput part at the
//! same concurrency, without Cheops. Each client writes the next revision
//! of one of its resource documents (its block one operation longer, as
//! `/exec` writes it, never pruned, as the original's) at its entry site;
//! the same replications carry it to every site; a minimal responder per
//! site, following that site's changes feed, writes one reply to each new
//! revision, which replicates to every site of the resource as replies do;
//! the operation is done when the entry site holds every site's reply. The
//! daemons ignore these documents.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cheops_model::Operation;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::docs::{self, FLOOR_REPLY, FLOOR_RESOURCE};
use super::feed::Feed;
use super::floor;
use super::throughput::{owned_resources, tally, Load};
use super::{Failure, Params, SITES};
use cheops_testkit::Cluster;

/// How long an operation may wait for its replies, as `/exec` does in the
/// benchmark's cluster.
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

/// The operations an entry site waits for: by request, the sites that
/// replied so far and who to tell once all did.
type Waiting = Arc<Mutex<HashMap<String, (BTreeSet<String>, Option<oneshot::Sender<()>>)>>>;

/// Each resource's revision and block as the floor last wrote them, by id.
type Blocks = HashMap<String, (Option<String>, Vec<Operation>)>;

/// The floor's resources, kept from one slice to the next as Cheops keeps
/// its own: a slice goes on where the one before left them.
#[derive(Default)]
pub struct Resources {
    blocks: Mutex<Blocks>,
    /// Slices run so far: request ids name theirs.
    slices: AtomicUsize,
}

/// Runs the floor's clients for `params.duration` over the resources named
/// `{prefix}-{r}`, created by the first slice.
pub async fn measure(
    cluster: &Cluster,
    params: &Params,
    prefix: &str,
    resources: &Arc<Resources>,
) -> Result<Load, Failure> {
    let slice = resources.slices.fetch_add(1, Ordering::Relaxed);
    let http = reqwest::Client::new();
    let sites: Vec<String> = (0..SITES).map(|i| cluster.node(i).site.clone()).collect();
    let urls: Vec<String> = (0..SITES).map(|i| cluster.node(i).couch_url()).collect();
    let waiting: Vec<Waiting> = (0..SITES).map(|_| Waiting::default()).collect();
    let mut responders = Responders(Vec::new());
    for i in 0..SITES {
        let feed = Feed::open(&http, &sites[i], &urls[i]).await?;
        let site = Site {
            http: http.clone(),
            url: urls[i].clone(),
            sites: sites.clone(),
            me: i,
        };
        responders
            .0
            .push(tokio::spawn(respond(feed, site, waiting[i].clone())));
    }

    let start = Instant::now();
    let deadline = start + params.duration;
    let clients = params.clients.max(1);
    let workers: Vec<_> = (0..clients)
        .map(|c| {
            let via = c % SITES;
            let site = Site {
                http: http.clone(),
                url: urls[via].clone(),
                sites: sites.clone(),
                me: via,
            };
            let waiting = waiting[via].clone();
            let owned = owned_resources(c, clients, params.resources, prefix);
            let resources = Arc::clone(resources);
            tokio::spawn(async move {
                // Each client alone writes its resources.
                let mut blocks: Blocks = {
                    let mut kept = lock(&resources.blocks);
                    owned
                        .iter()
                        .filter_map(|id| kept.remove_entry(id))
                        .collect()
                };
                let done = client(site, waiting, &owned, &mut blocks, slice, deadline).await;
                lock(&resources.blocks).extend(blocks);
                done
            })
        })
        .collect();
    tally(workers, start).await
}

/// One site's database, as a client or responder writes to it.
struct Site {
    http: reqwest::Client,
    url: String,
    sites: Vec<String>,
    me: usize,
}

impl Site {
    /// Writes `doc`, returning its new revision.
    async fn put(&self, doc: &Value) -> Result<String, Failure> {
        floor::put(&self.http, &self.url, doc).await
    }
}

/// The responders, stopped when dropped.
struct Responders(Vec<JoinHandle<Result<(), Failure>>>);

impl Drop for Responders {
    fn drop(&mut self) {
        for responder in &self.0 {
            responder.abort();
        }
    }
}

/// One client: the next operation on each of its resources in turn, one at
/// a time, until the deadline. Each operation's latency, or `None` when
/// some reply did not come in time.
async fn client(
    site: Site,
    waiting: Waiting,
    owned: &[String],
    blocks: &mut Blocks,
    slice: usize,
    deadline: Instant,
) -> Result<Vec<Option<Duration>>, Failure> {
    let mut done = Vec::new();
    for (n, id) in owned.iter().cycle().enumerate() {
        if Instant::now() >= deadline {
            break;
        }
        let request = format!("{id}-{slice}-{n}");
        let (rev, block) = blocks.entry(id.clone()).or_default();
        block.push(docs::operation(&request, "true"));
        let mut doc = docs::resource(id, &site.sites, block.clone());
        doc.rev = rev.clone();
        let mut doc = docs::floor_kind(
            serde_json::to_value(doc).map_err(|e| e.to_string())?,
            FLOOR_RESOURCE,
        );
        doc["Request"] = Value::from(request.as_str());
        let (tell, told) = oneshot::channel();
        lock(&waiting).insert(request.clone(), (BTreeSet::new(), Some(tell)));
        let start = Instant::now();
        *rev = Some(site.put(&doc).await?);
        let replied = tokio::time::timeout(REPLY_TIMEOUT, told).await;
        lock(&waiting).remove(&request);
        done.push(matches!(replied, Ok(Ok(()))).then(|| start.elapsed()));
    }
    Ok(done)
}

/// A site's responder: replies once to each new revision of a floor
/// resource, and tells the clients waiting at this site when a request has
/// every site's reply.
async fn respond(mut feed: Feed, site: Site, waiting: Waiting) -> Result<(), Failure> {
    let site = Arc::new(site);
    loop {
        let doc = feed.next().await?;
        if doc["Type"] == FLOOR_RESOURCE {
            let (Some(resource), Some(request)) = (doc["_id"].as_str(), doc["Request"].as_str())
            else {
                continue;
            };
            let me = &site.sites[site.me];
            let reply = docs::reply(
                format!("bench-floor-reply-{request}-{me}"),
                &site.sites,
                me,
                resource,
                request,
            );
            // Concurrently, as daemons answer many resources at once.
            let site = site.clone();
            tokio::spawn(async move { site.put(&reply).await });
        } else if doc["Type"] == FLOOR_REPLY {
            let (Some(request), Some(from)) = (doc["RequestId"].as_str(), doc["Site"].as_str())
            else {
                continue;
            };
            let mut waiting = lock(&waiting);
            if let Some((replied, tell)) = waiting.get_mut(request) {
                replied.insert(from.to_owned());
                if replied.len() == SITES {
                    if let Some(tell) = tell.take() {
                        let _ = tell.send(());
                    }
                }
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

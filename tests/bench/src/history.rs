//! A long history: N sequential `add` operations on one resource of every
//! site, each attaching a 32 KiB file that the command reads
//! (`wc -c < {payload.bin}`). Every exec rewrites the resource document
//! and sends it to every site, so a block that keeps every operation and
//! its file makes each exec slower than the one before: the ratio of the
//! exec p50 of the last tenth to that of the first tenth, and the size of
//! the resource document at the end, show whether the cost stays flat.

use super::client::ExecClient;
use super::stats::Latencies;
use super::{Failure, SITES};
use cheops_testkit::Cluster;

/// The resource the operations go to.
const RESOURCE: &str = "bench-history";
/// The size of each operation's file.
const FILE_SIZE: usize = 32 * 1024;
/// The file's name, as the command names it.
const FILE: &str = "payload.bin";

/// How the cost of an exec grew with the history.
#[derive(Debug, Clone)]
pub struct Growth {
    pub operations: usize,
    /// The first and the last tenth of the execs.
    pub first: Latencies,
    pub last: Latencies,
    /// The resource document's size on site1 at the end, as its sidecar
    /// sends it (`GET /db/id`).
    pub document_bytes: usize,
}

impl Growth {
    /// The p50 of the last tenth divided by that of the first.
    pub fn ratio(&self) -> f64 {
        self.last.p50.as_secs_f64() / self.first.p50.as_secs_f64().max(f64::EPSILON)
    }
}

pub async fn measure(
    cluster: &Cluster,
    client: &ExecClient,
    operations: usize,
) -> Result<Growth, Failure> {
    let mut samples = Vec::with_capacity(operations);
    for n in 0..operations {
        let command = format!("wc -c < {{{FILE}}}");
        let done = client
            .exec_with_file(0, RESOURCE, &command, (FILE, payload(n)))
            .await?;
        if done.replied < SITES {
            return Err(format!(
                "history operation {n}: {} of {SITES} sites replied",
                done.replied
            ));
        }
        samples.push(done.elapsed);
    }
    let tenth = (operations / 10).max(1).min(operations);
    let document = reqwest::Client::new()
        .get(format!("{}/{RESOURCE}", cluster.node(0).couch_url()))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("reading {RESOURCE} from site1's sidecar: {e}"))?
        .bytes()
        .await
        .map_err(|e| format!("reading {RESOURCE} from site1's sidecar: {e}"))?;
    Ok(Growth {
        operations,
        first: Latencies::of(samples[..tenth].to_vec()),
        last: Latencies::of(samples[operations - tenth..].to_vec()),
        document_bytes: document.len(),
    })
}

/// Operation `n`'s file: bytes of its own that do not compress, so that
/// neither deduplication nor compression hides the size.
pub fn payload(n: usize) -> Vec<u8> {
    let mut state = (n as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..FILE_SIZE)
        .map(|_| {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

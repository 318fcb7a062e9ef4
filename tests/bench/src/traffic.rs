//! What the sidecars were asked: HTTP requests, counted in each sidecar's
//! own log (PouchDB Server writes one `[info]` line per request it
//! answered, as it finishes: a `_changes` feed still open is not counted
//! yet), and bytes each way, counted by the relay in front of each sidecar
//! that every client of it goes through (its daemon, its peers'
//! replications, the benchmark itself).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Sub;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{Failure, SITES};
use cheops_testkit::Cluster;

/// How often [`Meter::quiet`] looks at the logs.
const QUIET_POLL: Duration = Duration::from_millis(25);

/// One sidecar's requests by kind, and bytes, counted so far or over a
/// window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// Requests by kind: the method and what the path names (`_changes`,
    /// `_bulk_docs`, `_local`, a view, `doc`, …).
    pub requests: BTreeMap<String, u64>,
    /// Bytes sent to the sidecar.
    pub bytes_in: u64,
    /// Bytes the sidecar sent.
    pub bytes_out: u64,
}

impl Counts {
    pub fn total_requests(&self) -> u64 {
        self.requests.values().sum()
    }

    /// What `other` adds to these counts.
    pub fn add(&mut self, other: &Counts) {
        for (kind, n) in &other.requests {
            *self.requests.entry(kind.clone()).or_default() += n;
        }
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
    }
}

impl Sub for &Counts {
    type Output = Counts;

    /// What happened between `rhs` (earlier) and `self`.
    fn sub(self, rhs: &Counts) -> Counts {
        let requests = self
            .requests
            .iter()
            .map(|(kind, n)| {
                let before = rhs.requests.get(kind).copied().unwrap_or(0);
                (kind.clone(), n.saturating_sub(before))
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        Counts {
            requests,
            bytes_in: self.bytes_in.saturating_sub(rhs.bytes_in),
            bytes_out: self.bytes_out.saturating_sub(rhs.bytes_out),
        }
    }
}

/// Each sidecar's counts between two readings of a [`Meter`].
pub fn between(before: &[Counts], after: &[Counts]) -> Vec<Counts> {
    after.iter().zip(before).map(|(a, b)| a - b).collect()
}

/// Reads every sidecar's counts as they grow.
pub struct Meter {
    logs: Vec<PathBuf>,
    /// How far each log was read.
    read: Vec<u64>,
    /// Requests counted in each log so far.
    seen: Vec<BTreeMap<String, u64>>,
    /// A line cut by the end of the file when last read.
    partial: Vec<String>,
}

impl Meter {
    /// Counts from now on.
    pub fn start(cluster: &Cluster) -> Result<Meter, Failure> {
        let logs: Vec<PathBuf> = (0..SITES).map(|i| cluster.sidecar_log(i)).collect();
        let read = logs
            .iter()
            .map(|log| {
                std::fs::metadata(log)
                    .map(|m| m.len())
                    .map_err(|e| format!("{}: {e}", log.display()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Meter {
            read,
            seen: vec![BTreeMap::new(); logs.len()],
            partial: vec![String::new(); logs.len()],
            logs,
        })
    }

    /// Every sidecar's counts so far (requests since [`Meter::start`],
    /// bytes since the cluster started): a window is the difference of two
    /// readings ([`between`]).
    pub fn read(&mut self, cluster: &Cluster) -> Result<Vec<Counts>, Failure> {
        let mut counts = Vec::new();
        for i in 0..self.logs.len() {
            self.read_log(i)?;
            let (bytes_in, bytes_out) = cluster
                .sidecar_bytes(i)
                .ok_or("the cluster does not count its traffic")?;
            counts.push(Counts {
                requests: self.seen[i].clone(),
                bytes_in,
                bytes_out,
            });
        }
        Ok(counts)
    }

    /// Waits until no sidecar has finished a request for `still`, or
    /// `longest` passed: the replication batches that documents set off
    /// (those that only learn the target holds them already included) are
    /// over, and are counted in the window of what set them off rather than
    /// in the next one.
    pub async fn quiet(&mut self, still: Duration, longest: Duration) -> Result<(), Failure> {
        let start = Instant::now();
        let mut before = self.totals()?;
        let mut since = Instant::now();
        while start.elapsed() < longest {
            tokio::time::sleep(QUIET_POLL).await;
            let now = self.totals()?;
            if now != before {
                before = now;
                since = Instant::now();
            } else if since.elapsed() >= still {
                break;
            }
        }
        Ok(())
    }

    /// Each sidecar's count of requests so far.
    fn totals(&mut self) -> Result<Vec<u64>, Failure> {
        (0..self.logs.len())
            .map(|i| {
                self.read_log(i)?;
                Ok(self.seen[i].values().sum())
            })
            .collect()
    }

    fn read_log(&mut self, i: usize) -> Result<(), Failure> {
        let path = &self.logs[i];
        let fail = |e: std::io::Error| format!("{}: {e}", path.display());
        let mut file = std::fs::File::open(path).map_err(fail)?;
        file.seek(SeekFrom::Start(self.read[i])).map_err(fail)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(fail)?;
        self.read[i] += bytes.len() as u64;
        let text = std::mem::take(&mut self.partial[i]) + &String::from_utf8_lossy(&bytes);
        let mut lines: Vec<&str> = text.split('\n').collect();
        self.partial[i] = lines.pop().unwrap_or_default().to_owned();
        for line in lines {
            if let Some(kind) = request_kind(line) {
                *self.seen[i].entry(kind).or_default() += 1;
            }
        }
        Ok(())
    }
}

/// The kind of request a log line records, if it records one:
/// `[…] [info] [<0.000.0>] 127.0.0.1 - - PUT /cheops/some-id 201`.
/// Background that comes at the same rate whatever the cluster does is
/// not: the daemons' liveness probes and health checks (`GET /`, four a
/// second on each sidecar of the test cluster) and their replication
/// checks (reads of `_replicator` and of a peer's identity, every two
/// seconds).
fn request_kind(line: &str) -> Option<String> {
    if !line.contains("] [info] [") {
        return None;
    }
    let (_, request) = line.split_once(" - - ")?;
    let mut words = request.split(' ');
    let method = words.next()?;
    let target = words.next()?;
    let path = target.split('?').next().unwrap_or_default();
    if path.ends_with("/_local/cheops-database") && method == "GET" {
        return None;
    }
    let mut segments = path.trim_start_matches('/').split('/');
    match segments.next() {
        Some("_replicator") => return None,
        Some("") | None if method == "GET" => return None,
        _ => {}
    }
    let what = match segments.next() {
        None | Some("") => "server",
        Some("_design") => match segments.nth(1) {
            Some("_view") => "view",
            _ => "_design",
        },
        Some(special) if special.starts_with('_') => special,
        Some(_) => "doc",
    };
    Some(format!("{method} {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_name_their_request() {
        let line = |request: &str| {
            format!("[Sun, 29 Nov 2026 18:37:00 GMT] [info] [<0.000.0>] 127.0.0.1 - - {request}")
        };
        let kinds: Vec<Option<String>> = [
            "PUT /cheops/bench-1 201",
            "POST /cheops/_bulk_docs 201",
            "GET /cheops/_changes?feed=longpoll&since=3 200",
            "GET /cheops/_design/cheops/_view/replies-by-resource-site?key=x 200",
            "PUT /cheops/_local/abc 201",
            "PUT /cheops 201",
            "GET /cheops 200",
            "GET / 200",
            "GET /_replicator/cheops-site1-to-site2 200",
            "GET /cheops/_local/cheops-database 200",
        ]
        .iter()
        .map(|r| request_kind(&line(r)))
        .collect();
        assert_eq!(
            kinds,
            [
                "PUT doc",
                "POST _bulk_docs",
                "GET _changes",
                "GET view",
                "PUT _local",
                "PUT server",
                "GET server",
            ]
            .map(|k| Some(k.to_owned()))
            .into_iter()
            .chain([None, None, None])
            .collect::<Vec<_>>(),
            "probes and replication checks are not counted"
        );
        assert_eq!(
            request_kind("[Sun, 29 Nov 2026 18:37:00 GMT] [debug] [<0.000.0>] 'GET' /x"),
            None
        );
    }

    #[test]
    fn a_window_is_the_difference_of_two_readings() {
        let before = Counts {
            requests: [("GET doc".to_owned(), 2)].into(),
            bytes_in: 10,
            bytes_out: 100,
        };
        let after = Counts {
            requests: [("GET doc".to_owned(), 5), ("PUT doc".to_owned(), 1)].into(),
            bytes_in: 30,
            bytes_out: 160,
        };
        let window = &after - &before;
        assert_eq!(window.total_requests(), 4);
        assert_eq!((window.bytes_in, window.bytes_out), (20, 60));
    }
}

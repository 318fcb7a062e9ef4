//! The memory and CPU time of the cluster's processes, read from `/proc`
//! over a window: CPU seconds spent in it, resident memory at its peak and
//! at its end. The commands a daemon ran count apart, as `commands`: the
//! CPU of its children once it reaped them.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{Failure, SITES};
use cheops_testkit::Cluster;

/// Clock ticks per second of `/proc/PID/stat`'s times: `USER_HZ`, which
/// Linux fixes at 100 for user space on every architecture.
const TICKS_PER_SECOND: f64 = 100.0;
/// How often resident memory is sampled for its peak.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// One process of the cluster, or the commands its daemon ran.
#[derive(Debug, Clone)]
pub struct Process {
    /// `daemon`, `commands` or `sidecar`.
    pub role: &'static str,
    pub site: String,
    pid: u32,
    /// Counts the process's reaped children (`commands`), not itself.
    children: bool,
}

/// What a process used over a window.
#[derive(Debug, Clone)]
pub struct Used {
    pub process: Process,
    pub cpu_seconds: f64,
    pub peak_rss: u64,
    pub end_rss: u64,
}

/// What every process used over a window.
#[derive(Debug, Clone)]
pub struct Window {
    pub seconds: f64,
    pub used: Vec<Used>,
}

impl Window {
    /// What the processes of `role` used, by site.
    pub fn of(&self, role: &str) -> Vec<&Used> {
        self.used
            .iter()
            .filter(|u| u.process.role == role)
            .collect()
    }

    /// Adds a later window over the same processes: their CPU adds up, a
    /// memory peak is the higher of the two.
    pub fn add(&mut self, later: Window) {
        self.seconds += later.seconds;
        for theirs in later.used {
            let same = |u: &&mut Used| {
                u.process.role == theirs.process.role && u.process.site == theirs.process.site
            };
            match self.used.iter_mut().find(same) {
                Some(mine) => {
                    mine.cpu_seconds += theirs.cpu_seconds;
                    mine.peak_rss = mine.peak_rss.max(theirs.peak_rss);
                    mine.end_rss = theirs.end_rss;
                }
                None => self.used.push(theirs),
            }
        }
    }

    /// Which sites [`Window::of`] covers, for a label: "per site" when all.
    pub fn sites(&self, role: &str) -> String {
        let sites: Vec<&str> = self
            .of(role)
            .iter()
            .map(|u| u.process.site.as_str())
            .collect();
        if sites.len() == SITES {
            "per site".to_owned()
        } else {
            sites.join(", ")
        }
    }
}

/// The daemons and sidecars running at one moment (a stopped one is left
/// out).
pub struct Processes(Vec<Process>);

impl Processes {
    pub fn of(cluster: &Cluster) -> Processes {
        let mut processes = Vec::new();
        for i in 0..SITES {
            let site = &cluster.node(i).site;
            for (role, pid, children) in [
                ("daemon", cluster.daemon_pid(i), false),
                ("commands", cluster.daemon_pid(i), true),
                ("sidecar", cluster.sidecar_pid(i), false),
            ] {
                if let Some(pid) = pid {
                    processes.push(Process {
                        role,
                        site: site.clone(),
                        pid,
                        children,
                    });
                }
            }
        }
        Processes(processes)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The CPU seconds each has spent so far.
    pub fn cpu(&self) -> Result<Vec<f64>, Failure> {
        self.0.iter().map(Process::cpu_seconds).collect()
    }

    fn rss(&self) -> Result<Vec<u64>, Failure> {
        self.0.iter().map(Process::rss).collect()
    }

    /// A window of `elapsed` in which each spent `cpu`; memory as it is now.
    pub fn window(&self, elapsed: Duration, cpu: Vec<f64>) -> Result<Window, Failure> {
        let rss = self.rss()?;
        Ok(self.window_with(elapsed, cpu, rss.clone(), rss))
    }

    fn window_with(
        &self,
        elapsed: Duration,
        cpu: Vec<f64>,
        peaks: Vec<u64>,
        ends: Vec<u64>,
    ) -> Window {
        let used = self
            .0
            .iter()
            .zip(cpu)
            .zip(peaks.into_iter().zip(ends))
            .map(|((process, cpu_seconds), (peak, end_rss))| Used {
                process: process.clone(),
                cpu_seconds,
                peak_rss: peak.max(end_rss),
                end_rss,
            })
            .collect();
        Window {
            seconds: elapsed.as_secs_f64(),
            used,
        }
    }
}

/// Waits, at most `longest`, until no process of the cluster spends more
/// than a twentieth of a core over a second: what the last writes set off
/// (replication, indexing, compaction) is over.
pub async fn quiet(cluster: &Cluster, longest: Duration) -> Result<(), Failure> {
    let processes = Processes::of(cluster);
    let start = Instant::now();
    let mut before = processes.cpu()?;
    while start.elapsed() < longest {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = processes.cpu()?;
        if now
            .iter()
            .zip(&before)
            .all(|(now, before)| now - before < 0.05)
        {
            return Ok(());
        }
        before = now;
    }
    Ok(())
}

/// Samples the cluster's processes until [`Sampler::finish`].
pub struct Sampler {
    start: Instant,
    processes: Processes,
    cpu_at_start: Vec<f64>,
    stop: oneshot::Sender<()>,
    peaks: JoinHandle<Result<Vec<u64>, Failure>>,
}

impl Sampler {
    /// Starts a window over the daemons and sidecars running now.
    pub fn start(cluster: &Cluster) -> Result<Sampler, Failure> {
        let processes = Processes::of(cluster);
        let cpu_at_start = processes.cpu()?;
        let sampled = processes.0.clone();
        let (stop, mut stopped) = oneshot::channel();
        let peaks = tokio::spawn(async move {
            let mut peaks = vec![0; sampled.len()];
            loop {
                for (peak, process) in peaks.iter_mut().zip(&sampled) {
                    *peak = (*peak).max(process.rss()?);
                }
                tokio::select! {
                    _ = tokio::time::sleep(SAMPLE_EVERY) => {}
                    _ = &mut stopped => return Ok(peaks),
                }
            }
        });
        Ok(Sampler {
            start: Instant::now(),
            processes,
            cpu_at_start,
            stop,
            peaks,
        })
    }

    /// Ends the window.
    pub async fn finish(self) -> Result<Window, Failure> {
        let elapsed = self.start.elapsed();
        let _ = self.stop.send(());
        let peaks = self
            .peaks
            .await
            .map_err(|e| format!("sampling memory failed: {e}"))??;
        let cpu = self
            .processes
            .cpu()?
            .into_iter()
            .zip(self.cpu_at_start)
            .map(|(end, start)| end - start)
            .collect();
        let ends = self.processes.rss()?;
        Ok(self.processes.window_with(elapsed, cpu, peaks, ends))
    }
}

impl Process {
    /// Its CPU seconds so far.
    fn cpu_seconds(&self) -> Result<f64, Failure> {
        cpu_seconds(self.pid, self.children)
    }

    /// Its resident memory; none for commands, which come and go.
    fn rss(&self) -> Result<u64, Failure> {
        if self.children {
            return Ok(0);
        }
        rss(self.pid)
    }
}

/// User and system CPU time of `pid` so far (of its reaped children with
/// `children`), from `/proc/PID/stat`.
fn cpu_seconds(pid: u32, children: bool) -> Result<f64, Failure> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // The command name (field 2) may hold spaces; the fields after it do not.
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After the name: state is field 3, utime 14 and stime 15, the reaped
    // children's cutime 16 and cstime 17.
    let ticks = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let (user, system) = if children { (16, 17) } else { (14, 15) };
    match (ticks(user), ticks(system)) {
        (Some(user), Some(system)) => Ok((user + system) as f64 / TICKS_PER_SECOND),
        _ => Err(format!("{path}: unexpected content")),
    }
}

/// Resident memory of `pid` in bytes, from `/proc/PID/status`.
fn rss(pid: u32) -> Result<u64, Failure> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| format!("{path}: no VmRSS"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss(me).unwrap() > 0);
        assert!(cpu_seconds(me, false).unwrap() >= 0.0);
    }

    #[test]
    fn counts_the_children_once_reaped() {
        let me = std::process::id();
        let before = cpu_seconds(me, true).unwrap();
        // A child that spends a tenth of a second or more of CPU.
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i + 1)); done"])
            .status()
            .unwrap();
        assert!(status.success());
        let spent = cpu_seconds(me, true).unwrap() - before;
        assert!(spent >= 0.05, "the child's CPU: {spent} s");
    }
}

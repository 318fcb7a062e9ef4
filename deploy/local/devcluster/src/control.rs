//! The supervisor's control port: one command per connection, one line
//! each way (`ping`, `partition`, `heal`, `state`, `down`, and `kill`,
//! `restart`, `freeze`, `thaw` followed by a site and `daemon` or
//! `sidecar`).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{files, Failure};
use cheops_testkit::{Cluster, Process};

/// How long `ask` waits for an answer: a restart waits for the node to be
/// healthy, up to a minute.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(90);

/// Sends `command` to the supervisor of `dir`; returns its answer.
pub fn ask(dir: &Path, command: &str) -> Result<String, Failure> {
    let port =
        files::control_port(dir).ok_or_else(|| format!("no cluster is up in {}", dir.display()))?;
    let unreachable = |e: std::io::Error| {
        format!(
            "the cluster's supervisor does not answer ({e}); see {}",
            dir.join(files::SUPERVISOR_LOG).display()
        )
    };
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .map_err(unreachable)?;
    writeln!(stream, "{command}").map_err(unreachable)?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(unreachable)?;
    match answer.trim().strip_prefix("ok") {
        Some(rest) => Ok(rest.trim().to_owned()),
        None => Err(format!(
            "the supervisor refused {command:?}: {}",
            answer.trim()
        )),
    }
}

/// Answers commands until `down`, SIGTERM or SIGINT.
pub async fn serve(listener: TcpListener, cluster: &mut Cluster) {
    let stop = async {
        let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
        match terminate {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::pin!(stop);
    let mut frozen = BTreeSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let (read, mut write) = stream.into_split();
        let mut line = String::new();
        if tokio::io::BufReader::new(read)
            .read_line(&mut line)
            .await
            .is_err()
        {
            continue;
        }
        let (answer, done) = match line.trim() {
            "ping" => ("ok".to_owned(), false),
            "partition" => {
                cluster.partition();
                eprintln!("network partitioned");
                ("ok".to_owned(), false)
            }
            "heal" => {
                cluster.heal();
                eprintln!("network healed");
                ("ok".to_owned(), false)
            }
            "state" => (format!("ok {}", state(cluster, &frozen)), false),
            "down" => ("ok".to_owned(), true),
            other => {
                let answer = match act(cluster, &mut frozen, other).await {
                    Ok(done) => {
                        eprintln!("{done}");
                        "ok".to_owned()
                    }
                    Err(why) => format!("error: {why}"),
                };
                (answer, false)
            }
        };
        let _ = write.write_all(format!("{answer}\n").as_bytes()).await;
        if done {
            return;
        }
    }
}

/// The network's state, then each process that is not running as it
/// should, separated by "; ".
fn state(cluster: &Cluster, frozen: &BTreeSet<(usize, Process)>) -> String {
    let mut state = vec![if cluster.is_partitioned() {
        "partitioned".to_owned()
    } else {
        "connected".to_owned()
    }];
    for i in 0..cluster.len() {
        let site = &cluster.node(i).site;
        if cluster.daemon_pid(i).is_none() {
            state.push(format!("{site}'s daemon is killed"));
        }
        if cluster.sidecar_pid(i).is_none() {
            state.push(format!("{site}'s sidecar is killed"));
        }
        for process in [Process::Daemon, Process::Sidecar] {
            if frozen.contains(&(i, process)) {
                state.push(format!("{site}'s {process} is frozen"));
            }
        }
    }
    state.join("; ")
}

/// Carries out `kill`, `restart`, `freeze` or `thaw SITE daemon|sidecar`;
/// returns what was done, for the log.
async fn act(
    cluster: &mut Cluster,
    frozen: &mut BTreeSet<(usize, Process)>,
    line: &str,
) -> Result<String, Failure> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let [verb, site, process] = words[..] else {
        return Err(format!("unknown command {line:?}"));
    };
    let i = (0..cluster.len())
        .find(|&i| cluster.node(i).site == site)
        .ok_or_else(|| format!("no site is named {site:?}"))?;
    let process = match process {
        "daemon" => Process::Daemon,
        "sidecar" => Process::Sidecar,
        other => return Err(format!("{other:?} is neither daemon nor sidecar")),
    };
    match verb {
        "kill" => {
            stop(cluster, i, process);
            frozen.remove(&(i, process));
        }
        "restart" => {
            stop(cluster, i, process);
            frozen.remove(&(i, process));
            match process {
                Process::Daemon => {
                    cluster.spawn_daemon(i);
                    // Healthy needs its sidecar: with the sidecar away the
                    // daemon waits for it, as a real one would.
                    let sidecar_up = cluster.sidecar_pid(i).is_some()
                        && !frozen.contains(&(i, Process::Sidecar));
                    if sidecar_up {
                        cluster.healthy(i).await?;
                    }
                }
                Process::Sidecar => {
                    cluster.start_sidecar(i);
                    cluster.sidecar_ready(i).await?;
                }
            }
        }
        "freeze" => {
            cluster.signal(i, process, "STOP")?;
            frozen.insert((i, process));
        }
        "thaw" => {
            cluster.signal(i, process, "CONT")?;
            frozen.remove(&(i, process));
        }
        _ => return Err(format!("unknown command {line:?}")),
    }
    Ok(format!("{site}'s {process}: {verb}"))
}

/// Kills (SIGKILL) one process of node `i`; its files stay.
fn stop(cluster: &mut Cluster, i: usize, process: Process) {
    match process {
        Process::Daemon => cluster.stop_daemon(i),
        Process::Sidecar => cluster.stop_sidecar(i),
    }
}

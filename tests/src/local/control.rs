//! The supervisor's control port: one command per connection, one line
//! each way (`ping`, `partition`, `heal`, `state`, `down`).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{files, Failure};
use crate::Cluster;

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
        .set_read_timeout(Some(Duration::from_secs(60)))
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
pub async fn serve(listener: TcpListener, cluster: &Cluster) {
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
            "state" => {
                let state = if cluster.is_partitioned() {
                    "partitioned"
                } else {
                    "connected"
                };
                (format!("ok {state}"), false)
            }
            "down" => ("ok".to_owned(), true),
            other => (format!("error: unknown command {other:?}"), false),
        };
        let _ = write.write_all(format!("{answer}\n").as_bytes()).await;
        if done {
            return;
        }
    }
}

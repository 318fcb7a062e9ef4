//! The network between local nodes, made of gates that can be cut.
//!
//! On real sites the original cut replication by dropping inbound CouchDB
//! traffic except from localhost. Here every node's sidecar is reached by
//! its peers through a gate: a TCP relay in front of it, while the node's
//! own daemon talks to its sidecar directly. Cutting the network closes
//! every relayed connection and refuses new ones; healing lets them through
//! again. The APIs stay reachable, as in the original.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The switch shared by all gates of a cluster.
#[derive(Clone)]
pub struct Network {
    cut: watch::Sender<bool>,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            cut: watch::channel(false).0,
        }
    }
}

impl Network {
    /// From now on no traffic passes any gate.
    pub fn partition(&self) {
        self.cut.send_replace(true);
    }

    /// Lets traffic through again.
    pub fn heal(&self) {
        self.cut.send_replace(false);
    }

    pub fn is_partitioned(&self) -> bool {
        *self.cut.borrow()
    }

    /// A gate on a free local port, relaying to `target`.
    pub async fn gate(&self, target: SocketAddr) -> std::io::Result<Gate> {
        let listener = crate::process::listen_free().await?;
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(relay(listener, target, Some(self.cut.subscribe()), None));
        Ok(Gate { port, task })
    }
}

/// A relay on a free local port that is never cut and counts the bytes it
/// carries: in front of a sidecar, what every client of it (its daemon, its
/// peers' replications through the gate, a benchmark) sends and receives.
pub async fn counter(target: SocketAddr) -> std::io::Result<(Gate, Arc<Traffic>)> {
    let listener = crate::process::listen_free().await?;
    let port = listener.local_addr()?.port();
    let traffic = Arc::new(Traffic::default());
    let task = tokio::spawn(relay(listener, target, None, Some(traffic.clone())));
    Ok((Gate { port, task }, traffic))
}

/// The bytes a counting relay carried so far, each way.
#[derive(Debug, Default)]
pub struct Traffic {
    to_target: AtomicU64,
    from_target: AtomicU64,
}

impl Traffic {
    /// Bytes sent to the target (requests) and received from it (answers).
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.to_target.load(Ordering::Relaxed),
            self.from_target.load(Ordering::Relaxed),
        )
    }
}

/// One relay on a local port (a node's gate, or the TLS front of its
/// sidecar); closed when dropped.
pub struct Gate {
    pub port: u16,
    pub(crate) task: JoinHandle<()>,
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    listener: TcpListener,
    target: SocketAddr,
    cut: Option<watch::Receiver<bool>>,
    traffic: Option<Arc<Traffic>>,
) {
    accept_each(listener, |inbound| {
        let mut cut = cut.clone();
        if cut.as_ref().is_some_and(|cut| *cut.borrow()) {
            // Closed at once: the peer sees its connection fail.
            return None;
        }
        let traffic = traffic.clone();
        Some(async move {
            let Ok(outbound) = TcpStream::connect(target).await else {
                return;
            };
            let (in_read, in_write) = inbound.into_split();
            let (out_read, out_write) = outbound.into_split();
            let to = traffic.as_ref().map(|t| &t.to_target);
            let from = traffic.as_ref().map(|t| &t.from_target);
            let both = both_ways(pipe(in_read, out_write, to), pipe(out_read, in_write, from));
            match &mut cut {
                Some(cut) => {
                    tokio::select! {
                        _ = both => {}
                        _ = cut.wait_for(|cut| *cut) => {}
                    }
                }
                None => {
                    both.await;
                }
            }
        })
    })
    .await;
}

/// Both directions of a relayed connection: until each has ended, or
/// either failed (as `copy_bidirectional` does).
async fn both_ways(a: impl Future<Output = bool>, b: impl Future<Output = bool>) {
    tokio::pin!(a, b);
    tokio::select! {
        ended = &mut a => if ended { b.await; },
        ended = &mut b => if ended { a.await; },
    }
}

/// Copies one direction of a relayed connection, counting the bytes, and
/// passes its end on (half-close). False if it failed.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, count: Option<&AtomicU64>) -> bool {
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) => return to.shutdown().await.is_ok(),
            Ok(n) => n,
            Err(_) => return false,
        };
        if let Some(count) = count {
            count.fetch_add(n as u64, Ordering::Relaxed);
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return false;
        }
    }
}

/// Accepts connections on `listener` for ever, each served by the task
/// `handle` makes of it (none: it is closed at once). The tasks end with
/// the returned future.
pub(crate) async fn accept_each<F, Fut>(listener: TcpListener, mut handle: F)
where
    F: FnMut(TcpStream) -> Option<Fut>,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            // Out of file descriptors, say: give the system a moment.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
        if let Some(task) = handle(inbound) {
            connections.spawn(task);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_counter_relays_both_ways_and_counts_every_byte() {
        // A target that answers each connection with twice what it read.
        let target = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let address = target.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = target.accept().await.unwrap();
            let mut request = Vec::new();
            socket.read_to_end(&mut request).await.unwrap();
            socket.write_all(&request.repeat(2)).await.unwrap();
        });
        let (relay, traffic) = counter(address).await.unwrap();
        let mut client = TcpStream::connect(("127.0.0.1", relay.port)).await.unwrap();
        let request = vec![7u8; 100_000];
        client.write_all(&request).await.unwrap();
        client.shutdown().await.unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer.len(), 200_000);
        // Each chunk is counted before it is passed on: all was counted.
        assert_eq!(traffic.bytes(), (100_000, 200_000));
    }
}

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

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::process::free_port;

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
        let listener = TcpListener::bind(("127.0.0.1", free_port())).await?;
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(relay(listener, target, self.cut.subscribe()));
        Ok(Gate { port, task })
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

async fn relay(listener: TcpListener, target: SocketAddr, cut: watch::Receiver<bool>) {
    accept_each(listener, |inbound| {
        if *cut.borrow() {
            // Closed at once: the peer sees its connection fail.
            return None;
        }
        let mut cut = cut.clone();
        Some(async move {
            let Ok(mut outbound) = TcpStream::connect(target).await else {
                return;
            };
            let mut inbound = inbound;
            tokio::select! {
                _ = copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = cut.wait_for(|cut| *cut) => {}
            }
        })
    })
    .await;
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

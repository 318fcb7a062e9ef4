//! The daemon's HTTP listeners: plain or TLS (rustls), HTTP/1.1, with a
//! deadline on request headers, an idle limit on request and response
//! bodies and a cap on open connections, so that slow or numerous clients
//! cannot hold the node's tasks or memory.
//!
//! Beyond the cap, new connections are not accepted: they wait in the
//! kernel's listen backlog (as Go's `netutil.LimitListener` does) and are
//! served as soon as a connection closes; the kernel refuses them once the
//! backlog is full.

mod write_deadline;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower_http::timeout::{RequestBodyTimeout, RequestBodyTimeoutLayer};
use tracing::{debug, warn};

use write_deadline::WriteDeadline;

/// How long to pause when accepting fails (out of file descriptors, say),
/// rather than spinning.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Limits every listener applies to its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a client has to finish its TLS handshake and then each
    /// request's headers, counted from the connection or from the previous
    /// response (an idle kept-alive connection is closed after it too).
    pub header_timeout: Duration,
    /// How long a request body may go without sending anything, and a
    /// response wait for the client to read.
    pub body_timeout: Duration,
    /// How many connections are served at once.
    pub max_connections: usize,
}

/// The HTTPS identity of the listeners.
#[derive(Clone)]
pub struct Tls(TlsAcceptor);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// Reads a certificate chain and its private key, both PEM.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Tls, String> {
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
        if chain.is_empty() {
            return Err(format!(
                "--tls-cert {}: no PEM certificate in it",
                cert.display()
            ));
        }
        // Never echo the key file's content: only its path.
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| format!("--tls-cert and --tls-key: {e}"))?;
        // HTTP/1.1 only: its header deadline is what keeps slow clients out.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls(TlsAcceptor::from(Arc::new(config))))
    }
}

type Service = RequestBodyTimeout<Router>;

/// Serves `router` on `listener` until `shutdown`, then lets the requests
/// in flight finish (the caller bounds how long).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Tls>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let service = tower::ServiceBuilder::new()
        .layer(RequestBodyTimeoutLayer::new(limits.body_timeout))
        .service(router);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    loop {
        // A slot first: beyond the cap, connections stay in the backlog.
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let connection = connection(
            stream,
            tls.clone(),
            service.clone(),
            limits,
            graceful.watcher(),
        );
        tokio::spawn(async move {
            connection.await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// One client's connection, TLS handshake included.
async fn connection(
    stream: TcpStream,
    tls: Option<Tls>,
    service: Service,
    limits: Limits,
    watcher: Watcher,
) {
    let _ = stream.set_nodelay(true);
    let stream = WriteDeadline::new(stream, limits.body_timeout);
    let Some(Tls(acceptor)) = tls else {
        return http(TokioIo::new(stream), service, limits, watcher).await;
    };
    match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => http(TokioIo::new(stream), service, limits, watcher).await,
        Ok(Err(error)) => debug!(%error, "TLS handshake failed"),
        Err(_) => debug!("TLS handshake timed out"),
    }
}

async fn http<I>(io: I, service: Service, limits: Limits, watcher: Watcher)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(io, TowerToHyperService::new(service));
    if let Err(error) = watcher.watch(connection).await {
        debug!(%error, "connection ended");
    }
}

#[cfg(test)]
mod tests;

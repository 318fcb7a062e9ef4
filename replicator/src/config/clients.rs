//! How the daemon's HTTP clients are built: the certificates they trust and
//! how long a request to CouchDB may take. One value is shared by every
//! client to the local CouchDB and to peers, so that an `https://` URL works
//! wherever a URL is configured.

use std::time::Duration;

use reqwest::{Certificate, ClientBuilder};

use crate::ReplicatorError;

/// The longest a connection attempt waits, whatever the request timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an idle connection is kept for reuse: less than the servers'
/// own keep-alive (Node's, under PouchDB Server, is 5 s), so that a request
/// is seldom sent on a connection the server is closing.
const POOL_IDLE: Duration = Duration::from_secs(4);

/// What every HTTP client of a node shares.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Certificates trusted besides the built-in web PKI roots (an
    /// operator's own CA, say).
    pub extra_roots: Vec<Certificate>,
    /// The longest any request to CouchDB may take, answer included. The
    /// continuous changes feed is exempt, and is instead reopened when
    /// nothing (not even a heartbeat) arrived for this long.
    pub couch_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            extra_roots: Vec::new(),
            couch_timeout: Duration::from_secs(30),
        }
    }
}

impl ClientOptions {
    /// Reads every certificate of a PEM bundle (an operator's CA file).
    pub fn roots_from_pem(pem: &[u8]) -> Result<Vec<Certificate>, ReplicatorError> {
        let roots = Certificate::from_pem_bundle(pem).map_err(|e| {
            ReplicatorError::InvalidRequest(format!("not a PEM certificate bundle: {e}"))
        })?;
        if roots.is_empty() {
            return Err(ReplicatorError::InvalidRequest(
                "no PEM certificate in it".into(),
            ));
        }
        Ok(roots)
    }

    /// A client builder trusting the extra roots, with a connect timeout no
    /// longer than the CouchDB timeout and idle connections dropped before
    /// servers drop them.
    pub fn builder(&self) -> ClientBuilder {
        let builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT.min(self.couch_timeout))
            .pool_idle_timeout(POOL_IDLE)
            .use_rustls_tls();
        self.extra_roots
            .iter()
            .cloned()
            .fold(builder, ClientBuilder::add_root_certificate)
    }
}

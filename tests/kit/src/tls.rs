//! TLS for tests: a certificate authority made on the spot, a certificate it
//! signs for this machine, and a TLS-terminating front that puts a sidecar
//! behind `https://` (as a reverse proxy does in front of a real CouchDB).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::network::{accept_each, Gate};

/// A fresh CA and a server certificate it signed for `127.0.0.1` and
/// `localhost`, all PEM.
pub struct TestCa {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Where [`TestCa::write`] put its files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        // Distinct names: OpenSSL (Node.js) takes a certificate whose
        // issuer is its subject for self-signed.
        ca_params.distinguished_name = named("Cheops test CA");
        let ca_key = KeyPair::generate().expect("a CA key");
        let ca = ca_params.self_signed(&ca_key).expect("a CA certificate");
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("certificate parameters");
        params.distinguished_name = named("127.0.0.1");
        let key = KeyPair::generate().expect("a server key");
        let cert = params
            .signed_by(&key, &ca, &ca_key)
            .expect("a server certificate");
        TestCa {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes `ca.pem`, `cert.pem` and `key.pem` into `dir`.
    pub fn write(&self, dir: &Path) -> TlsFiles {
        std::fs::create_dir_all(dir).expect("cannot create a directory");
        let files = TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        for (path, pem) in [
            (&files.ca, &self.ca_pem),
            (&files.cert, &self.cert_pem),
            (&files.key, &self.key_pem),
        ] {
            std::fs::write(path, pem).expect("cannot write a PEM file");
        }
        files
    }

    /// The CA as reqwest trusts it.
    pub fn reqwest_root(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("the CA's PEM")
    }

    fn acceptor(&self) -> TlsAcceptor {
        let chain = vec![CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).expect("cert")];
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("a TLS server configuration");
        TlsAcceptor::from(Arc::new(config))
    }

    /// A TLS-terminating front on a free local port, relaying the decrypted
    /// stream to `target`.
    pub async fn front(&self, target: SocketAddr) -> std::io::Result<Gate> {
        let listener = crate::process::listen_free().await?;
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(terminate(listener, self.acceptor(), target));
        Ok(Gate { port, task })
    }
}

fn named(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

async fn terminate(listener: TcpListener, acceptor: TlsAcceptor, target: SocketAddr) {
    accept_each(listener, |inbound| {
        let acceptor = acceptor.clone();
        Some(async move {
            let Ok(mut inbound) = acceptor.accept(inbound).await else {
                return;
            };
            let Ok(mut outbound) = TcpStream::connect(target).await else {
                return;
            };
            let _ = copy_bidirectional(&mut inbound, &mut outbound).await;
        })
    })
    .await;
}

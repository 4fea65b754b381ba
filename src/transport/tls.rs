//! Mutual TLS for every connection (rustls with the ring provider; no OpenSSL), and the
//! binding of identities to certificates.
//!
//! Identities. Every certificate is issued by the cluster's CA ([`super::certs`]) and names
//! its holder with a DNS subject alternative name that encodes the cluster id
//! ([`crate::config::Config::cluster_id`], 16 hex digits):
//! - replica `uid`: `replica-<uid>.<cluster_id>.paxos` (plus its listen address as an IP
//!   SAN), extended key usage server + client auth (it listens and dials);
//! - a client: `client.<cluster_id>.paxos`, client auth only.
//!
//! Invariants:
//! 1. Both sides verify: a listener requires a client certificate chained to the CA; a
//!    dialer checks that the listener's certificate names the replica it meant to reach.
//! 2. A `Hello::Peer { uid }` is accepted only from a certificate naming `replica-<uid>` of
//!    this cluster, checked before any `PeerMessage` is read ([`PeerIdentity::is_replica`]);
//!    a client certificate (or another replica's) cannot open a peer link.
//! 3. A `Hello::Client` is accepted from any certificate of this cluster (a client's or a
//!    replica's: an operator on a replica host may use its certificate).
//! 4. No `[tls]` section: plaintext, allowed only when every replica address is loopback
//!    (one warning at start); `[tls] enabled = false` turns TLS off explicitly, anywhere.
//! 5. The metrics endpoint (HTTPS, [`TlsContext::https_acceptor`]) presents the replica's
//!    certificate and asks for no client certificate: a scraper needs only the CA (as
//!    etcd's metrics URL without `--client-cert-auth`). It serves counters, never chat
//!    data, and reads nothing but one `GET`.
//!
//! Not done: certificate revocation (CRLs), reloading certificates without a restart (a
//! rolling restart rotates them), TLS session resumption (peer links live long).

use crate::config::tls::{TlsConfig, TlsMode};
use crate::config::Config;
use crate::core::Uid;
use crate::error::{Error, Result};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{error, warn};

/// The reading half of a connection, plaintext or TLS.
pub type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The writing half of a connection, plaintext or TLS.
pub type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// The DNS name in replica `uid`'s certificate.
pub fn replica_name(cluster_id: u64, uid: Uid) -> String {
    format!("replica-{uid}.{cluster_id:016x}.paxos")
}

/// The DNS name in a client certificate.
pub fn client_name(cluster_id: u64) -> String {
    format!("client.{cluster_id:016x}.paxos")
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Who is on the other end of an accepted TLS connection, by its verified certificate.
#[derive(Clone, Debug)]
pub struct PeerIdentity {
    cluster_id: u64,
    replicas: usize,
    cert: CertificateDer<'static>,
}

impl PeerIdentity {
    fn holds(&self, name: &str) -> bool {
        let Ok(parsed) = ParsedCertificate::try_from(&self.cert) else {
            return false;
        };
        let Ok(name) = ServerName::try_from(name.to_string()) else {
            return false;
        };
        rustls::client::verify_server_name(&parsed, &name).is_ok()
    }

    /// The certificate names replica `uid` of this cluster.
    pub fn is_replica(&self, uid: Uid) -> bool {
        self.holds(&replica_name(self.cluster_id, uid))
    }

    /// The certificate belongs to this cluster (a client's or any replica's).
    pub fn is_member(&self) -> bool {
        self.holds(&client_name(self.cluster_id))
            || (0..self.replicas as Uid).any(|uid| self.is_replica(uid))
    }

    /// For logs: the names this certificate holds among the cluster's.
    pub fn describe(&self) -> String {
        let mut names: Vec<String> = (0..self.replicas as Uid)
            .filter(|uid| self.is_replica(*uid))
            .map(|uid| format!("replica {uid}"))
            .collect();
        if self.holds(&client_name(self.cluster_id)) {
            names.push("client".to_string());
        }
        if names.is_empty() {
            "no identity of this cluster".to_string()
        } else {
            names.join(", ")
        }
    }
}

/// The TLS side of one replica or client: built once from the config, shared by every
/// connection (`Arc`).
pub struct TlsContext {
    cluster_id: u64,
    replicas: usize,
    /// Present when this context can accept connections (replicas).
    acceptor: Option<TlsAcceptor>,
    /// One-way TLS with the same certificate (no client certificate), for HTTPS.
    https_acceptor: Option<TlsAcceptor>,
    connector: TlsConnector,
}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsContext")
            .field("cluster_id", &self.cluster_id)
            .field("serves", &self.acceptor.is_some())
            .finish()
    }
}

/// PEM inputs of a [`TlsContext`], with the config fields they came from (for errors).
pub struct TlsPem<'a> {
    /// The CA certificate(s) that every peer's certificate must chain to.
    pub ca: &'a [u8],
    /// This side's certificate chain and private key; `None`: present no certificate
    /// (only useful to show that a listener refuses such a client).
    pub identity: Option<(&'a [u8], &'a [u8])>,
    /// Build an acceptor too (a replica). Needs `identity`.
    pub serve: bool,
}

impl TlsContext {
    /// Builds a context from PEM bytes. Errors name `tls.ca`, `tls.cert` or `tls.key`.
    pub fn from_pem(cluster_id: u64, replicas: usize, pem: TlsPem<'_>) -> Result<TlsContext> {
        let mut roots = RootCertStore::empty();
        let mut found = 0;
        for cert in CertificateDer::pem_slice_iter(pem.ca) {
            let cert = cert.map_err(|e| Error::config("tls.ca", format!("bad PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| Error::config("tls.ca", format!("not a usable CA: {e}")))?;
            found += 1;
        }
        if found == 0 {
            return Err(Error::config("tls.ca", "no CERTIFICATE in the file"));
        }
        let roots = Arc::new(roots);
        let identity = match pem.identity {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert)
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| Error::config("tls.cert", format!("bad PEM: {e}")))?;
                if chain.is_empty() {
                    return Err(Error::config("tls.cert", "no CERTIFICATE in the file"));
                }
                let key = PrivateKeyDer::from_pem_slice(key)
                    .map_err(|e| Error::config("tls.key", format!("no usable private key: {e}")))?;
                Some((chain, key))
            }
            None => None,
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| Error::config("tls", format!("TLS setup failed: {e}")))?
            .with_root_certificates(roots.clone());
        let client = match &identity {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(|e| Error::config("tls.key", format!("does not fit tls.cert: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        let (acceptor, https_acceptor) = if pem.serve {
            let Some((chain, key)) = identity else {
                return Err(Error::config("tls.cert", "a replica needs a certificate"));
            };
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| Error::config("tls.ca", format!("cannot verify clients: {e}")))?;
            let mut server = ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map_err(|e| Error::config("tls", format!("TLS setup failed: {e}")))?
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain.clone(), key.clone_key())
                .map_err(|e| Error::config("tls.key", format!("does not fit tls.cert: {e}")))?;
            // Connections live long; resumption buys nothing and tickets would be unread
            // bytes on a peer link.
            server.send_tls13_tickets = 0;
            let mut https = ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map_err(|e| Error::config("tls", format!("TLS setup failed: {e}")))?
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .map_err(|e| Error::config("tls.key", format!("does not fit tls.cert: {e}")))?;
            // One response per connection: nothing to resume.
            https.send_tls13_tickets = 0;
            (
                Some(TlsAcceptor::from(Arc::new(server))),
                Some(TlsAcceptor::from(Arc::new(https))),
            )
        } else {
            (None, None)
        };
        Ok(TlsContext {
            cluster_id,
            replicas,
            acceptor,
            https_acceptor,
            connector: TlsConnector::from(Arc::new(client)),
        })
    }

    /// The server side of one-way TLS 1.3 with this replica's certificate, asking for no
    /// client certificate (invariant 5): for the metrics endpoint. `None` when this
    /// context cannot serve (a client's).
    pub fn https_acceptor(&self) -> Option<TlsAcceptor> {
        self.https_acceptor.clone()
    }

    /// The context of replica `uid`, or `None` for plaintext. Applies the plaintext rule
    /// (invariant 4; the error names `tls`), loads the files (errors name the field and
    /// path), refuses a certificate that does not name `replica-<uid>` of this cluster,
    /// and logs an error (but starts) when the certificate is expired or not yet valid:
    /// the peers will refuse it, and the log says why.
    pub fn for_replica(config: &Config, uid: Uid) -> Result<Option<Arc<TlsContext>>> {
        let Some(tls) = enabled(config)? else {
            return Ok(None);
        };
        let ca = read(tls, "tls.ca", &tls.ca)?;
        let cert_path = tls.cert_path(uid);
        let cert = read(tls, "tls.cert", &cert_path)?;
        let key = read(tls, "tls.key", &tls.key_path(uid))?;
        let context = TlsContext::from_pem(
            config.cluster_id(),
            config.replicas(),
            TlsPem {
                ca: &ca,
                identity: Some((&cert, &key)),
                serve: true,
            },
        )?;
        let problem = own_certificate_problem(&ca, &cert, &replica_name(config.cluster_id(), uid));
        match problem {
            None => {}
            Some(CertProblem::Time(reason)) => {
                error!(uid, cert = %tls.resolve(&cert_path).display(), reason,
                    "this replica's TLS certificate is outside its validity period: peers will refuse it (reissue it with `paxosctl certs`)");
            }
            Some(CertProblem::Other(reason)) => {
                return Err(Error::config(
                    "tls.cert",
                    format!(
                        "{} is not a valid certificate for replica {uid} of this cluster ({}): {reason}",
                        tls.resolve(&cert_path).display(),
                        replica_name(config.cluster_id(), uid)
                    ),
                ));
            }
        }
        Ok(Some(Arc::new(context)))
    }

    /// The context of a client (`paxosctl`, the client library), or `None` for plaintext
    /// (same rule as replicas, but without the warning). Errors name `tls.client_cert`,
    /// `tls.client_key` or `tls.ca`.
    pub fn for_client(config: &Config) -> Result<Option<Arc<TlsContext>>> {
        let Some(tls) = config.tls.as_ref().filter(|t| t.mode() == TlsMode::On) else {
            return Ok(None);
        };
        let ca = read(tls, "tls.ca", &tls.ca)?;
        let cert = read(tls, "tls.client_cert", &tls.client_cert)?;
        let key = read(tls, "tls.client_key", &tls.client_key)?;
        let context = TlsContext::from_pem(
            config.cluster_id(),
            config.replicas(),
            TlsPem {
                ca: &ca,
                identity: Some((&cert, &key)),
                serve: false,
            },
        )
        .map_err(|e| match e {
            Error::Config { field, reason } => Error::config(
                field
                    .replace("tls.cert", "tls.client_cert")
                    .replace("tls.key", "tls.client_key"),
                reason,
            ),
            other => other,
        })?;
        Ok(Some(Arc::new(context)))
    }

    /// Runs the client side of the handshake on `stream`, checking that the listener is
    /// replica `server_uid` of this cluster. The error says TLS and why.
    pub async fn connect(
        &self,
        stream: TcpStream,
        server_uid: Uid,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = ServerName::try_from(replica_name(self.cluster_id, server_uid))
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        self.connector
            .connect(name, stream)
            .await
            .map_err(|e| tls_error("TLS handshake", e))
    }

    /// Runs the server side of the handshake; returns the stream and the verified
    /// identity of the dialer. Errors when this context cannot serve.
    pub async fn accept(
        &self,
        stream: TcpStream,
    ) -> std::io::Result<(tokio_rustls::server::TlsStream<TcpStream>, PeerIdentity)> {
        let Some(acceptor) = &self.acceptor else {
            return Err(std::io::Error::other("this TLS context cannot accept"));
        };
        let stream = acceptor
            .accept(stream)
            .await
            .map_err(|e| tls_error("TLS handshake", e))?;
        let cert = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|cert| cert.clone().into_owned())
            .ok_or_else(|| std::io::Error::other("TLS: the client presented no certificate"))?;
        let identity = PeerIdentity {
            cluster_id: self.cluster_id,
            replicas: self.replicas,
            cert,
        };
        Ok((stream, identity))
    }
}

/// Prefixes an io error from rustls so that every message says TLS.
pub fn tls_error(what: &str, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{what} failed: {e}"))
}

/// Splits a stream into boxed halves (plaintext: the socket's own halves, no lock).
pub fn split_plain(stream: TcpStream) -> (ReadHalf, WriteHalf) {
    let (r, w) = stream.into_split();
    (Box::new(r), Box::new(w))
}

/// Splits a TLS stream into boxed halves.
pub fn split_tls<S>(stream: S) -> (ReadHalf, WriteHalf)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (r, w) = tokio::io::split(stream);
    (Box::new(EofAsClose(r)), Box::new(w))
}

/// Reads a TLS stream whose peer may close without a `close_notify` (every client and
/// replica that exits or drops a link does) as an ordinary end of stream. Safe because
/// frames are length-prefixed and crc-checked: a truncated frame is still an error.
struct EofAsClose<R>(R);

impl<R: AsyncRead + Unpin> AsyncRead for EofAsClose<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match std::pin::Pin::new(&mut self.0).poll_read(cx, buf) {
            std::task::Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                std::task::Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

/// The `[tls]` section when TLS is on; `None` for plaintext, after checking the plaintext
/// rule and logging its warning.
fn enabled(config: &Config) -> Result<Option<&TlsConfig>> {
    match config.tls.as_ref() {
        Some(tls) if tls.mode() == TlsMode::On => Ok(Some(tls)),
        Some(_) => {
            warn!("TLS is turned off ([tls] enabled = false): peers and clients are not authenticated and traffic is plaintext");
            Ok(None)
        }
        None => {
            for (uid, replica) in config.replica.iter().enumerate() {
                let addr = config.replica_addr(uid as Uid)?;
                if !addr.ip().is_loopback() {
                    return Err(Error::config(
                        "tls",
                        format!(
                            "the config has no [tls] section and replica[{uid}].addr ({}) is not a loopback address: \
                             plaintext is allowed on loopback only. Issue certificates with `paxosctl certs --config FILE` \
                             (it adds [tls]), or set `[tls] enabled = false` to run without TLS anyway",
                            replica.addr
                        ),
                    ));
                }
            }
            warn!("no [tls] section in the config: plaintext on loopback (anyone on this host can talk to the cluster)");
            Ok(None)
        }
    }
}

fn read(tls: &TlsConfig, field: &str, path: &str) -> Result<Vec<u8>> {
    let resolved = tls.resolve(path);
    std::fs::read(&resolved)
        .map_err(|e| Error::config(field, format!("cannot read {}: {e}", resolved.display())))
}

enum CertProblem {
    /// Expired or not yet valid.
    Time(String),
    Other(String),
}

/// Checks this side's own certificate as its peers will: chained to the CA, valid now,
/// naming `name`.
fn own_certificate_problem(ca: &[u8], cert: &[u8], name: &str) -> Option<CertProblem> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca).flatten() {
        let _ = roots.add(c);
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert).flatten().collect();
    let (end_entity, intermediates) = chain.split_first()?;
    let roots = Arc::new(roots);
    let classify = |e: rustls::Error| {
        use rustls::CertificateError as C;
        match &e {
            rustls::Error::InvalidCertificate(
                C::Expired
                | C::ExpiredContext { .. }
                | C::NotValidYet
                | C::NotValidYetContext { .. },
            ) => CertProblem::Time(e.to_string()),
            _ => CertProblem::Other(e.to_string()),
        }
    };
    let server = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .ok()?;
    let server_name = ServerName::try_from(name.to_string()).ok()?;
    server
        .verify_server_cert(
            end_entity,
            intermediates,
            &server_name,
            &[],
            UnixTime::now(),
        )
        .err()
        .map(classify)
}

/// Checks `cert` against `ca` as a listener would check a client (for `paxosctl certs`
/// and tests): `None` when valid now.
pub fn client_certificate_problem(ca: &[u8], cert: &[u8]) -> Option<String> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca).flatten() {
        let _ = roots.add(c);
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert).flatten().collect();
    let (end_entity, intermediates) = chain.split_first()?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .ok()?;
    verifier
        .verify_client_cert(end_entity, intermediates, UnixTime::now())
        .err()
        .map(|e| e.to_string())
}

//! Inbound connections: the accept loop, the handshake, peer readers, and the
//! server side of a client connection ([`ClientConn`]).
//!
//! [`accept_loop`] runs until shutdown. For every accepted connection it:
//! 1. takes a permit from a semaphore of [`ListenerConfig::connections_max`] (the loop
//!    waits for a free permit rather than accept an unbounded number of sockets); the
//!    permit is held as long as the connection lives, clients included;
//! 2. with [`ListenerConfig::tls`], runs the TLS handshake (the dialer must present a
//!    certificate of the cluster's CA; see [`super::tls`]); then reads one [`Hello`]
//!    frame, both within [`ListenerConfig::hello_timeout`];
//! 3. `Hello::Peer` from another uid of this cluster: spawns a reader that forwards each
//!    `PeerMessage` as `(from_uid, msg)` into the node's peer channel (awaiting room in
//!    it, so a slow node pushes back on the peer through TCP). With TLS, the certificate
//!    must name replica `uid`, or the connection is closed before any `PeerMessage` is
//!    read. A newer connection from
//!    the same uid supersedes (closes) the older one, so half-dead connections left by a
//!    partition do not pile up;
//! 4. `Hello::Client` (with TLS: from a certificate of this cluster): hands a
//!    [`ClientConn`] to the node's client channel; the node
//!    reads requests and writes responses on it.
//!
//! Every frame read is counted in [`ListenerConfig::counters`] ([`ListenerCounters`]):
//! bytes from each peer uid (its hello included), bytes from and to clients, as framed
//! (before TLS). The metrics read them at scrape time.
//!
//! Any bad input (no hello in time, random bytes, an HTTP request, an oversized length, a
//! crc mismatch, an undecodable frame, a wrong cluster id or uid) closes that one
//! connection with a `warn!` carrying the remote address and the reason. Nothing here
//! panics on input, and the loop keeps accepting.

use super::frame::{read_frame_counted, write_frame_counted};
use super::peer::wait_shutdown;
use super::tls::{split_plain, split_tls, ReadHalf, TlsContext, WriteHalf};
use super::wire::{ClientRequest, ClientResponse, Hello};
use crate::core::{PeerMessage, Uid};
use crate::error::{Error, Result};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

/// Default bound on concurrent inbound connections (peers and clients).
pub const CONNECTIONS_MAX_DEFAULT: usize = 1024;
/// Default time a new connection has to send its [`Hello`].
pub const HELLO_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Read buffer per inbound connection.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// What the accept loop needs to know about this replica.
#[derive(Clone, Debug)]
pub struct ListenerConfig {
    /// This replica's uid: a peer claiming it is refused.
    pub my_uid: Uid,
    /// Peers must present this cluster id ([`crate::config::Config::cluster_id`]).
    pub cluster_id: u64,
    /// Number of replicas: peer uids must be in `0..replicas`.
    pub replicas: usize,
    /// Bound on concurrent inbound connections.
    pub connections_max: usize,
    /// Time a new connection has to finish its TLS handshake and send its hello.
    pub hello_timeout: Duration,
    /// `Some`: every connection must be TLS with a certificate of the cluster's CA.
    pub tls: Option<Arc<TlsContext>>,
    /// Where the connections count their bytes (shared with whoever reports them).
    pub counters: Arc<ListenerCounters>,
}

/// Frame bytes (header + payload, before TLS) through one listener's connections, since
/// it started. Every field only grows.
#[derive(Debug, Default)]
pub struct ListenerCounters {
    /// Bytes read from each peer, by the uid its hello names (index = uid), hello
    /// included. Connections that never got past their hello count nowhere.
    peer_received_bytes: Vec<AtomicU64>,
    /// Bytes read from clients (hellos and requests).
    client_received_bytes: AtomicU64,
    /// Bytes written to clients (responses).
    client_sent_bytes: AtomicU64,
}

impl ListenerCounters {
    /// Counters for peers `0..replicas`, all zero.
    pub fn new(replicas: usize) -> ListenerCounters {
        ListenerCounters {
            peer_received_bytes: (0..replicas).map(|_| AtomicU64::new(0)).collect(),
            ..ListenerCounters::default()
        }
    }

    fn peer_received(&self, uid: Uid, bytes: usize) {
        if let Some(counter) = self.peer_received_bytes.get(uid as usize) {
            counter.fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }

    /// Bytes read from each peer uid so far, `(uid, bytes)` in uid order.
    pub fn peer_received_bytes(&self) -> Vec<(Uid, u64)> {
        self.peer_received_bytes
            .iter()
            .enumerate()
            .map(|(uid, bytes)| (uid as Uid, bytes.load(Ordering::Relaxed)))
            .collect()
    }

    /// Bytes read from clients so far.
    pub fn client_received_bytes(&self) -> u64 {
        self.client_received_bytes.load(Ordering::Relaxed)
    }

    /// Bytes written to clients so far.
    pub fn client_sent_bytes(&self) -> u64 {
        self.client_sent_bytes.load(Ordering::Relaxed)
    }
}

impl ListenerConfig {
    /// The defaults: [`CONNECTIONS_MAX_DEFAULT`] connections, [`HELLO_TIMEOUT_DEFAULT`].
    pub fn new(my_uid: Uid, cluster_id: u64, replicas: usize) -> ListenerConfig {
        ListenerConfig {
            my_uid,
            cluster_id,
            replicas,
            connections_max: CONNECTIONS_MAX_DEFAULT,
            hello_timeout: HELLO_TIMEOUT_DEFAULT,
            tls: None,
            counters: Arc::new(ListenerCounters::new(replicas)),
        }
    }

    /// The same, with TLS required when `tls` is `Some`.
    pub fn with_tls(mut self, tls: Option<Arc<TlsContext>>) -> ListenerConfig {
        self.tls = tls;
        self
    }
}

/// Pending connections the kernel queues before `accept` (capped by `net.core.somaxconn`).
/// The default of 128 overflowed when hundreds of clients connected at once, and each
/// dropped SYN cost its client a one-second retransmission.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listening socket (SO_REUSEADDR, a [`LISTEN_BACKLOG`] queue), with the address
/// in the error.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    let context = || format!("binding {addr}");
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| Error::io(context(), e))?;
    socket
        .set_reuseaddr(true)
        .map_err(|e| Error::io(context(), e))?;
    socket.bind(addr).map_err(|e| Error::io(context(), e))?;
    socket
        .listen(LISTEN_BACKLOG)
        .map_err(|e| Error::io(context(), e))
}

/// Accepts connections on `listener` until `shutdown` becomes `true` (or its sender is
/// dropped). Peer messages go to `peer_tx` as `(from_uid, msg)`; client connections go
/// to `client_tx`. Spawned connection tasks stop at shutdown too (client connections are
/// the node's to close). Run it with `tokio::spawn`.
pub async fn accept_loop(
    listener: TcpListener,
    config: ListenerConfig,
    peer_tx: mpsc::Sender<(Uid, PeerMessage)>,
    client_tx: mpsc::Sender<ClientConn>,
    mut shutdown: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(config.connections_max.max(1)));
    // One generation counter per peer uid: a newer connection closes older ones.
    let generations: Arc<Vec<watch::Sender<u64>>> =
        Arc::new((0..config.replicas).map(|_| watch::channel(0).0).collect());
    let config = Arc::new(config);
    let mut next_client_id: u64 = 1;
    loop {
        let permit = tokio::select! {
            _ = wait_shutdown(&mut shutdown) => return,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return, // the semaphore is never closed
            },
        };
        let accepted = tokio::select! {
            _ = wait_shutdown(&mut shutdown) => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "accept failed");
                drop(permit);
                tokio::select! {
                    _ = wait_shutdown(&mut shutdown) => return,
                    _ = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                }
                continue;
            }
        };
        let client_id = next_client_id;
        next_client_id += 1;
        let conn = Incoming {
            stream,
            remote,
            permit,
            client_id,
            config: config.clone(),
            generations: generations.clone(),
            peer_tx: peer_tx.clone(),
            client_tx: client_tx.clone(),
            shutdown: shutdown.clone(),
        };
        tokio::spawn(conn.run());
    }
}

/// One accepted connection before its hello.
struct Incoming {
    stream: TcpStream,
    remote: SocketAddr,
    permit: OwnedSemaphorePermit,
    client_id: u64,
    config: Arc<ListenerConfig>,
    generations: Arc<Vec<watch::Sender<u64>>>,
    peer_tx: mpsc::Sender<(Uid, PeerMessage)>,
    client_tx: mpsc::Sender<ClientConn>,
    shutdown: watch::Receiver<bool>,
}

impl Incoming {
    async fn run(self) {
        let remote = self.remote;
        if let Err(e) = self.stream.set_nodelay(true) {
            debug!(peer = %remote, error = %e, "cannot set TCP_NODELAY");
        }
        let tls = self.config.tls.clone();
        let stream = self.stream;
        let opened = tokio::time::timeout(self.config.hello_timeout, async move {
            let (reader, writer, identity) = match &tls {
                Some(tls) => {
                    let (stream, identity) = tls.accept(stream).await.map_err(Opening::Tls)?;
                    let (reader, writer) = split_tls(stream);
                    (reader, writer, Some(identity))
                }
                None => {
                    let (reader, writer) = split_plain(stream);
                    (reader, writer, None)
                }
            };
            let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, reader);
            let hello = read_frame_counted::<Hello, _>(&mut reader)
                .await
                .map_err(Opening::Hello)?;
            Ok::<_, Opening>((reader, writer, identity, hello))
        })
        .await;
        let (reader, writer, identity, hello, hello_bytes) = match opened {
            Err(_) => {
                warn!(peer = %remote, reason = "no TLS handshake and hello in time", timeout_ms = self.config.hello_timeout.as_millis() as u64, "closing connection");
                return;
            }
            Ok(Err(Opening::Tls(e))) => {
                warn!(peer = %remote, reason = %e, "closing connection: TLS refused");
                return;
            }
            Ok(Ok((_, _, _, None))) => {
                debug!(peer = %remote, "connection closed before its hello");
                return;
            }
            Ok(Err(Opening::Hello(e))) => {
                warn!(peer = %remote, reason = %e, "closing connection: bad hello");
                return;
            }
            Ok(Ok((reader, writer, identity, Some((hello, hello_bytes))))) => {
                (reader, writer, identity, hello, hello_bytes)
            }
        };
        match hello {
            Hello::Peer { uid, cluster_id } => {
                let config = &self.config;
                if cluster_id != config.cluster_id {
                    warn!(peer = %remote, uid, cluster_id, expected = config.cluster_id,
                        reason = "wrong cluster id", "closing connection: peer from another cluster");
                    return;
                }
                if uid as usize >= config.replicas || uid == config.my_uid {
                    warn!(peer = %remote, uid, replicas = config.replicas, my_uid = config.my_uid,
                        reason = "bad uid", "closing connection: peer uid out of range or mine");
                    return;
                }
                if let Some(identity) = &identity {
                    if !identity.is_replica(uid) {
                        warn!(peer = %remote, uid, certificate = identity.describe(),
                            reason = "certificate does not name this uid",
                            "closing connection: peer hello refused");
                        return;
                    }
                }
                let Some(generation) = self.generations.get(uid as usize) else {
                    return; // unreachable: uid < replicas == generations.len()
                };
                let mut mine = 0;
                generation.send_modify(|g| {
                    *g += 1;
                    mine = *g;
                });
                let superseded = generation.subscribe();
                info!(peer = %remote, uid, "peer connected");
                let counters = config.counters.clone();
                counters.peer_received(uid, hello_bytes);
                read_peer(
                    reader,
                    remote,
                    uid,
                    mine,
                    superseded,
                    self.peer_tx,
                    self.shutdown,
                    &counters,
                )
                .await;
                drop(writer);
                drop(self.permit);
            }
            Hello::Client => {
                if let Some(identity) = identity.as_ref().filter(|i| !i.is_member()) {
                    warn!(peer = %remote, certificate = identity.describe(),
                        reason = "certificate names no client or replica of this cluster",
                        "closing connection: client hello refused");
                    return;
                }
                debug!(peer = %remote, client = self.client_id, "client connected");
                let counters = self.config.counters.clone();
                counters
                    .client_received_bytes
                    .fetch_add(hello_bytes as u64, Ordering::Relaxed);
                let conn = ClientConn {
                    remote,
                    id: self.client_id,
                    reader,
                    writer,
                    counters,
                    _permit: self.permit,
                };
                // If the node is gone the connection is simply dropped (closed).
                let _ = self.client_tx.send(conn).await;
            }
        }
    }
}

/// Why a connection failed before its hello was read.
enum Opening {
    Tls(std::io::Error),
    Hello(Error),
}

/// Forwards peer `uid`'s messages until EOF, a bad frame, supersession or shutdown,
/// counting their bytes.
#[allow(clippy::too_many_arguments)]
async fn read_peer(
    mut reader: BufReader<ReadHalf>,
    remote: SocketAddr,
    uid: Uid,
    mine: u64,
    mut superseded: watch::Receiver<u64>,
    peer_tx: mpsc::Sender<(Uid, PeerMessage)>,
    mut shutdown: watch::Receiver<bool>,
    counters: &ListenerCounters,
) {
    loop {
        // read_frame is not cancel-safe, but losing a partial frame is fine when the
        // other branches close the connection anyway.
        let frame = tokio::select! {
            _ = wait_shutdown(&mut shutdown) => return,
            _ = superseded.wait_for(|g| *g != mine) => {
                info!(peer = %remote, uid, "closing peer connection: superseded by a newer one");
                return;
            }
            frame = read_frame_counted::<PeerMessage, _>(&mut reader) => frame,
        };
        match frame {
            Ok(Some((msg, bytes))) => {
                counters.peer_received(uid, bytes);
                if peer_tx.send((uid, msg)).await.is_err() {
                    return; // the node stopped
                }
            }
            Ok(None) => {
                info!(peer = %remote, uid, "peer connection closed");
                return;
            }
            Err(Error::Frame(reason)) => {
                warn!(peer = %remote, uid, reason, "closing connection: bad frame");
                return;
            }
            Err(e) => {
                warn!(peer = %remote, uid, error = %e, "closing peer connection: read failed");
                return;
            }
        }
    }
}

/// The server side of a client connection, handed to the node after `Hello::Client`.
///
/// Protocol: loop { [`read_request`](Self::read_request) → answer with exactly one
/// [`send_response`](Self::send_response) }. Dropping it closes the connection and frees
/// its slot in the connection limit.
pub struct ClientConn {
    remote: SocketAddr,
    id: u64,
    reader: BufReader<ReadHalf>,
    writer: WriteHalf,
    counters: Arc<ListenerCounters>,
    _permit: OwnedSemaphorePermit,
}

impl ClientConn {
    /// The client's address, for logs.
    pub fn peer_addr(&self) -> SocketAddr {
        self.remote
    }

    /// A number unique among this listener's connections (starts at 1): usable as the
    /// core's `ClientRef`.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The next request; `Ok(None)` when the client closed the connection. An error
    /// (bad frame, reset) means the connection is unusable: log it and drop `self`.
    /// Not cancel-safe (see [`read_frame`]).
    pub async fn read_request(&mut self) -> Result<Option<ClientRequest>> {
        let request = read_frame_counted(&mut self.reader).await?;
        Ok(request.map(|(request, bytes)| {
            self.counters
                .client_received_bytes
                .fetch_add(bytes as u64, Ordering::Relaxed);
            request
        }))
    }

    /// Sends the response to the last request. A response too large for one frame is an
    /// [`Error::Frame`] and nothing is sent (answer with a smaller one instead).
    pub async fn send_response(&mut self, response: &ClientResponse) -> Result<()> {
        let bytes = write_frame_counted(&mut self.writer, response).await?;
        self.counters
            .client_sent_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        Ok(())
    }
}

impl std::fmt::Debug for ClientConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConn")
            .field("remote", &self.remote)
            .field("id", &self.id)
            .finish()
    }
}

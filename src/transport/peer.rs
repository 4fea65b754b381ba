//! Outbound peer links: one task per other replica that dials it, says
//! [`Hello::Peer`], and streams [`PeerMessage`] frames to it.
//!
//! [`PeerLinks::send`] never blocks the node: it puts the message on the peer's bounded
//! queue (at most [`PEER_QUEUE_MESSAGES`] messages and [`PEER_QUEUE_BYTES_MAX`] bytes by
//! [`PeerMessage::size_bytes`], [`PEER_QUEUE_DOWN_BYTES_MAX`] while not connected) or
//! drops it. Dropping is always safe because the core
//! retransmits every request after `timeout_ms`; it is also how the configured `loss`
//! (testing only) is applied.
//!
//! Each link task:
//! 1. dials with exponential backoff ([`BACKOFF_MIN`] doubling to [`BACKOFF_MAX`]; reset
//!    once a connection has lasted [`BACKOFF_MAX`]); TCP_NODELAY on;
//! 2. with TLS, runs the handshake, checking that the listener's certificate names the
//!    replica dialed (see [`super::tls`]); sends `Hello::Peer { uid, cluster_id }`;
//! 3. writes frames through a `BufWriter`, flushing whenever its queue is momentarily
//!    empty, so a burst of messages goes out in a few syscalls;
//! 4. on a write error, or when the remote closes the connection (detected by a pending
//!    read, since the remote never writes on a peer connection), reconnects.
//!
//! Each link reports whether it is connected and the frame bytes it wrote (before TLS)
//! through [`PeerLinks::link_states`], for the metrics.
//!
//! Messages queued while a link is down survive one connection attempt (so a quick
//! reconnect loses nothing, and the last retransmission of a registration or a Prepare
//! is delivered the moment the peer comes up); after a failed attempt the queue is
//! emptied, so a dead peer costs at most a backoff's worth of messages (within the byte
//! bound) and stale messages are not replayed minutes later.
//!
//! Not done here: messages to self (the node loops them back itself), acknowledgements
//! or retransmission (the core's job). Without TLS there is no authentication (the cluster
//! id only guards against misconfiguration).
//!
//! A failure to connect is logged as a warning when its reason changes (an expired
//! certificate, a refused handshake), and at debug level while it stays the same.

use super::frame::encode_frame;
use super::tls::{split_plain, split_tls, ReadHalf, TlsContext, WriteHalf};
use super::wire::Hello;
use crate::core::{PeerMessage, Uid};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

/// Messages queued per peer before [`PeerLinks::send`] starts dropping.
pub const PEER_QUEUE_MESSAGES: usize = 16 * 1024;
/// Bytes ([`PeerMessage::size_bytes`]) queued per peer before [`PeerLinks::send`] starts
/// dropping: more than a second of a saturated leader's Accepts, and many times the
/// largest message (a 1 MiB batch or chunk).
pub const PEER_QUEUE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// The byte bound while the link is not connected: enough for every retransmission of
/// an idle cluster (registrations, Prepares, heartbeats), which is what the peer needs
/// the moment it comes up; a loaded leader's Accepts for a dead follower stop here
/// instead of filling up to [`PEER_QUEUE_BYTES_MAX`] once per backoff.
pub const PEER_QUEUE_DOWN_BYTES_MAX: usize = 1024 * 1024;
/// First reconnect delay.
pub const BACKOFF_MIN: Duration = Duration::from_millis(20);
/// Longest reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long one dial may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Write buffer per link; a full buffer is written out even if more messages are queued.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;
/// At most one "queue full" warning per peer per this period.
const DROP_WARN_PERIOD: Duration = Duration::from_secs(5);

/// Handles to the outbound links of one replica. Cheap to share behind an `Arc`; all
/// methods take `&self`. Dropping it (or signalling shutdown) stops the link tasks.
pub struct PeerLinks {
    my_uid: Uid,
    loss: f64,
    links: HashMap<Uid, Link>,
    dropped_loss: AtomicU64,
}

/// A queued message and the bytes it counts for in [`LinkState::queued_bytes`].
type Queued = (PeerMessage, usize);

struct Link {
    tx: mpsc::Sender<Queued>,
    state: Arc<LinkState>,
    dropped_full: AtomicU64,
    /// When the last "queue full" warning was logged, and how many drops it reported.
    warned: Mutex<(Option<Instant>, u64)>,
}

impl PeerLinks {
    /// Spawns one link task per entry of `peers` (which must not include `my_uid`) on the
    /// current tokio runtime. `loss` is the probability of dropping each message in
    /// [`send`](Self::send) (values outside `[0, 1]` are clamped). The tasks stop when
    /// `shutdown` becomes `true` (or its sender is dropped) or when `PeerLinks` is dropped.
    pub fn spawn(
        my_uid: Uid,
        cluster_id: u64,
        peers: Vec<(Uid, SocketAddr)>,
        loss: f64,
        shutdown: watch::Receiver<bool>,
    ) -> PeerLinks {
        PeerLinks::spawn_with_tls(my_uid, cluster_id, peers, loss, None, shutdown)
    }

    /// [`spawn`](Self::spawn), with every link over TLS when `tls` is `Some`.
    pub fn spawn_with_tls(
        my_uid: Uid,
        cluster_id: u64,
        peers: Vec<(Uid, SocketAddr)>,
        loss: f64,
        tls: Option<Arc<TlsContext>>,
        shutdown: watch::Receiver<bool>,
    ) -> PeerLinks {
        let mut links = HashMap::new();
        for (uid, addr) in peers {
            if uid == my_uid {
                warn!(
                    uid,
                    "not linking to self: the node delivers its own messages"
                );
                continue;
            }
            let (tx, rx) = mpsc::channel(PEER_QUEUE_MESSAGES);
            let state = Arc::new(LinkState::default());
            let task = LinkTask {
                state: state.clone(),
                my_uid,
                cluster_id,
                peer: uid,
                addr,
                rx,
                tls: tls.clone(),
                shutdown: shutdown.clone(),
            };
            tokio::spawn(task.run());
            links.insert(
                uid,
                Link {
                    tx,
                    state,
                    dropped_full: AtomicU64::new(0),
                    warned: Mutex::new((None, 0)),
                },
            );
        }
        let loss = if loss.is_nan() {
            0.0
        } else {
            loss.clamp(0.0, 1.0)
        };
        PeerLinks {
            my_uid,
            loss,
            links,
            dropped_loss: AtomicU64::new(0),
        }
    }

    /// Queues `msg` for replica `to` without blocking. The message is dropped (the core
    /// retransmits) with probability `loss`, when the peer's queue is full (with a
    /// rate-limited warning), or when `to` is not a linked peer (self or unknown: a bug in
    /// the caller, logged as a warning).
    pub fn send(&self, to: Uid, msg: PeerMessage) {
        let Some(link) = self.links.get(&to) else {
            warn!(
                to,
                my_uid = self.my_uid,
                kind = msg.kind(),
                "dropping message to a uid with no peer link"
            );
            return;
        };
        if self.loss > 0.0 && rand::random::<f64>() < self.loss {
            self.dropped_loss.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if link.tx.is_closed() {
            // The link task stopped: we are shutting down.
            return;
        }
        let bytes = msg.size_bytes();
        let limit = if link.state.up.load(Ordering::Relaxed) {
            PEER_QUEUE_BYTES_MAX
        } else {
            PEER_QUEUE_DOWN_BYTES_MAX
        };
        let queued = link.state.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        if queued + bytes > limit {
            link.state.release(bytes);
            let total = link.dropped_full.fetch_add(1, Ordering::Relaxed) + 1;
            link.warn_full(to, total, msg.kind());
            return;
        }
        match link.tx.try_send((msg, bytes)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full((msg, bytes))) => {
                link.state.release(bytes);
                let total = link.dropped_full.fetch_add(1, Ordering::Relaxed) + 1;
                link.warn_full(to, total, msg.kind());
            }
            Err(mpsc::error::TrySendError::Closed((_, bytes))) => {
                // The link task stopped: we are shutting down.
                link.state.release(bytes);
            }
        }
    }

    /// The uids this replica has links to.
    pub fn peers(&self) -> impl Iterator<Item = Uid> + '_ {
        self.links.keys().copied()
    }

    /// Each link's connection state and bytes sent, in uid order.
    pub fn link_states(&self) -> Vec<LinkReport> {
        let mut reports: Vec<LinkReport> = self
            .links
            .iter()
            .map(|(peer, link)| LinkReport {
                peer: *peer,
                up: link.state.up.load(Ordering::Relaxed),
                sent_bytes: link.state.sent_bytes.load(Ordering::Relaxed),
                queued_bytes: link.state.queued_bytes.load(Ordering::Relaxed),
            })
            .collect();
        reports.sort_by_key(|r| r.peer);
        reports
    }

    /// Messages dropped so far on purpose (`loss`) and because a queue was full.
    pub fn dropped(&self) -> (u64, u64) {
        let full = self
            .links
            .values()
            .map(|l| l.dropped_full.load(Ordering::Relaxed))
            .sum();
        (self.dropped_loss.load(Ordering::Relaxed), full)
    }
}

impl Link {
    fn warn_full(&self, to: Uid, total: u64, kind: &str) {
        let Ok(mut warned) = self.warned.lock() else {
            return;
        };
        let now = Instant::now();
        let due = warned
            .0
            .is_none_or(|last| now.duration_since(last) >= DROP_WARN_PERIOD);
        if due {
            let since = total - warned.1;
            *warned = (Some(now), total);
            warn!(
                peer = to,
                dropped = since,
                dropped_total = total,
                kind,
                queue_messages = PEER_QUEUE_MESSAGES,
                queue_bytes = PEER_QUEUE_BYTES_MAX,
                "peer queue full: dropping messages (the core retransmits)"
            );
        }
    }
}

/// What a link task reports about its connection (read by the metrics).
#[derive(Default)]
struct LinkState {
    /// Connected and past the hello.
    up: AtomicBool,
    /// Frame bytes written to the peer, hellos included.
    sent_bytes: AtomicU64,
    /// [`PeerMessage::size_bytes`] of the messages in the queue.
    queued_bytes: std::sync::atomic::AtomicUsize,
}

impl LinkState {
    /// A message of `bytes` left the queue (written, discarded or never queued).
    fn release(&self, bytes: usize) {
        self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// One peer link as [`PeerLinks::link_states`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkReport {
    pub peer: Uid,
    pub up: bool,
    pub sent_bytes: u64,
    /// [`PeerMessage::size_bytes`] of the messages waiting in its queue.
    pub queued_bytes: usize,
}

struct LinkTask {
    state: Arc<LinkState>,
    my_uid: Uid,
    cluster_id: u64,
    peer: Uid,
    addr: SocketAddr,
    rx: mpsc::Receiver<Queued>,
    tls: Option<Arc<TlsContext>>,
    shutdown: watch::Receiver<bool>,
}

/// Why a connection ended.
enum Ended {
    /// Stop the task.
    Stop,
    /// Reconnect.
    Broken(String),
}

impl LinkTask {
    async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        let mut was_up = false;
        // The last failure logged as a warning: the same one again is logged at debug.
        let mut last_warned = String::new();
        loop {
            if is_shutdown(&self.shutdown) {
                return;
            }
            let attempt = tokio::select! {
                _ = wait_shutdown(&mut self.shutdown) => return,
                result = connect(self.addr, self.my_uid, self.cluster_id, self.peer, self.tls.as_deref(), &self.state.sent_bytes) => result,
            };
            match attempt {
                Ok((reader, writer)) => {
                    let up_since = Instant::now();
                    if last_warned.is_empty() {
                        info!(peer = self.peer, addr = %self.addr, "peer link up");
                    } else {
                        debug!(peer = self.peer, addr = %self.addr, "peer link up");
                    }
                    was_up = true;
                    self.state.up.store(true, Ordering::Relaxed);
                    let ended = self.stream(reader, writer).await;
                    self.state.up.store(false, Ordering::Relaxed);
                    match ended {
                        Ended::Stop => return,
                        Ended::Broken(reason) => {
                            if reason != last_warned {
                                warn!(peer = self.peer, addr = %self.addr, reason, "peer link down, reconnecting");
                                last_warned = reason;
                            } else {
                                debug!(peer = self.peer, addr = %self.addr, reason, "peer link down, reconnecting");
                            }
                        }
                    }
                    if up_since.elapsed() >= BACKOFF_MAX {
                        // It worked for a while: a later failure is news.
                        last_warned.clear();
                        backoff = BACKOFF_MIN;
                    }
                }
                Err(e) => {
                    let reason = e.to_string();
                    let tls_failure = reason.contains("TLS");
                    if (was_up || tls_failure) && reason != last_warned {
                        warn!(peer = self.peer, addr = %self.addr, error = %e, "cannot reach peer");
                        was_up = false;
                        last_warned = reason;
                    } else {
                        debug!(peer = self.peer, addr = %self.addr, error = %e, "cannot reach peer");
                    }
                    let mut discarded = 0u64;
                    while let Ok((_, bytes)) = self.rx.try_recv() {
                        self.state.release(bytes);
                        discarded += 1;
                    }
                    if discarded > 0 {
                        debug!(
                            peer = self.peer,
                            discarded, "discarded messages queued for an unreachable peer"
                        );
                    }
                }
            }
            tokio::select! {
                _ = wait_shutdown(&mut self.shutdown) => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Streams queued messages until the connection breaks or the task must stop.
    async fn stream(&mut self, mut reader: ReadHalf, mut writer: BufWriter<WriteHalf>) -> Ended {
        let mut probe = [0u8; 64];
        loop {
            let first = tokio::select! {
                _ = wait_shutdown(&mut self.shutdown) => return Ended::Stop,
                // The remote never writes on a peer connection: a read completing means
                // it closed (or broke) the connection.
                read = reader.read(&mut probe) => {
                    return Ended::Broken(match read {
                        Ok(0) => "closed by the remote".to_string(),
                        Ok(_) => "unexpected bytes from the remote".to_string(),
                        Err(e) => e.to_string(),
                    });
                }
                msg = self.rx.recv() => match msg {
                    Some(msg) => msg,
                    None => return Ended::Stop,
                },
            };
            let batch = write_batch(self.peer, first, &mut self.rx, &mut writer, &self.state);
            let result = tokio::select! {
                _ = wait_shutdown(&mut self.shutdown) => return Ended::Stop,
                result = batch => result,
            };
            if let Err(reason) = result {
                return Ended::Broken(reason);
            }
        }
    }
}

/// Writes `first` and whatever else is queued right now, then flushes once.
async fn write_batch(
    peer: Uid,
    first: Queued,
    rx: &mut mpsc::Receiver<Queued>,
    writer: &mut BufWriter<WriteHalf>,
    state: &LinkState,
) -> std::result::Result<(), String> {
    let sent_bytes = &state.sent_bytes;
    let mut next = Some(first);
    while let Some((msg, bytes)) = next {
        state.release(bytes);
        match encode_frame(&msg) {
            Ok(frame) => {
                if let Err(e) = writer.write_all(&frame).await {
                    return Err(format!("write failed: {e}"));
                }
                sent_bytes.fetch_add(frame.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                // Our own message is too large: a bug upstream, not the peer's fault.
                warn!(peer, kind = msg.kind(), error = %e, "dropping unsendable message");
            }
        }
        next = rx.try_recv().ok();
    }
    writer
        .flush()
        .await
        .map_err(|e| format!("flush failed: {e}"))
}

/// Dials the peer (`peer` is its uid, checked against its certificate with TLS) and
/// sends the hello, counting it in `sent_bytes`. [`CONNECT_TIMEOUT`] bounds the dial and
/// the handshake.
async fn connect(
    addr: SocketAddr,
    my_uid: Uid,
    cluster_id: u64,
    peer: Uid,
    tls: Option<&TlsContext>,
    sent_bytes: &AtomicU64,
) -> Result<(ReadHalf, BufWriter<WriteHalf>)> {
    let context = || format!("connecting to {addr}");
    let opened = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok::<_, std::io::Error>(match tls {
            Some(tls) => split_tls(tls.connect(stream, peer).await?),
            None => split_plain(stream),
        })
    })
    .await
    .map_err(|_| Error::io(context(), std::io::ErrorKind::TimedOut.into()))?;
    let (reader, writer) = opened.map_err(|e| Error::io(context(), e))?;
    let mut writer = BufWriter::with_capacity(WRITE_BUFFER_BYTES, writer);
    let hello = encode_frame(&Hello::Peer {
        uid: my_uid,
        cluster_id,
    })?;
    writer
        .write_all(&hello)
        .await
        .map_err(|e| Error::io("writing hello", e))?;
    writer
        .flush()
        .await
        .map_err(|e| Error::io("writing hello", e))?;
    sent_bytes.fetch_add(hello.len() as u64, Ordering::Relaxed);
    Ok((reader, writer))
}

fn is_shutdown(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow()
}

/// Resolves once `shutdown` is `true` or its sender is gone.
pub(crate) async fn wait_shutdown(shutdown: &mut watch::Receiver<bool>) {
    // `wait_for` fails only when the sender is dropped: treat that as shutdown too.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

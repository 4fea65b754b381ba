//! The tokio driver of one replica. It owns sockets, timers and the loop, and holds no
//! protocol state of its own:
//!
//! 1. gather inputs (peer messages, client requests, a tick every [`tick_ms`]) for as long
//!    as more are immediately available (up to [`BATCH_INPUTS_MAX`]), stepping the core
//!    with each;
//! 2. take the core's `Ready` and hand it to the [`flusher`] thread, which persists the
//!    records of every queued `Ready` with one flush (group commit) and only then sends
//!    their messages and client replies.
//!
//! The core keeps stepping while a flush runs, so the disk and the network overlap, but
//! nothing leaves the process before the records it depends on are durable.
//!
//! Threads: `paxosd` runs this loop, the sockets and TLS on one current-thread runtime
//! by default (`--runtime-threads`), so a write crosses threads only to the flusher and
//! back; store reads for clients and catch-up run on tokio's blocking pool, sealing on
//! the store's segment writer. Nothing here may block: the one blocking call left on the
//! loop is the store read of a Promise chunk below the core's tail (phase 1 only, one
//! chunk of at most 1 MiB per Prepare).
//!
//! Shutdown: one `watch` channel, set by SIGTERM/SIGINT (see [`shutdown`]) or by a fatal
//! storage error; every task stops when it flips.

pub mod allocator;
mod client_conn;
pub mod flusher;
pub mod metrics;
mod reads;
pub mod shutdown;
pub mod systemd;

use crate::config::Config;
use crate::core::{
    ClientRef, Input, LogAnswer, LogSend, PeerMessage, Replica, ReplicaConfig, ReplicaStatus,
    RequestId, Slot, SubmitReply, Uid,
};
use crate::storage::sled_store::SledStorage;
use crate::storage::Storage;
use crate::transport::listener::{accept_loop, ClientConn, ListenerConfig};
use crate::transport::peer::PeerLinks;
use crate::transport::wire::{ClientResponse, StatusReport};
use crate::{Error, Result};
use flusher::{Flusher, Outbox};
use reads::Reads;
pub use reads::{READ_LOG_BYTES_MAX, READ_LOG_ENTRIES_MAX, READ_LOG_WAIT_MS_MAX};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

/// The core is ticked this often: a tenth of the heartbeat interval, within
/// [`TICK_MS_MIN`]..=[`TICK_MS_MAX`] (10 ms with the default 100 ms heartbeat).
/// Heartbeats, timeouts and retransmission fire on the first tick at or after they are
/// due, so they run late by less than a tick; a tick costs a wake-up of the core loop.
pub fn tick_ms(heartbeat_ms: u64) -> u64 {
    (heartbeat_ms / 10).clamp(TICK_MS_MIN, TICK_MS_MAX)
}
/// Bounds of [`tick_ms`].
pub const TICK_MS_MIN: u64 = 5;
pub const TICK_MS_MAX: u64 = 20;
/// Most inputs stepped before a `Ready` is taken.
pub const BATCH_INPUTS_MAX: usize = 4096;
/// A second in which the decided prefix advanced, or the store served, this many slots
/// or more is busy (writes, a catch-up, a dump); status polls and a trickle of writes or
/// reads are not.
pub const IDLE_SLOTS_PER_S: u64 = 1_000;
/// Quiet sweeps (seconds below [`IDLE_SLOTS_PER_S`]) after a busy one before the flusher
/// checkpoints, drops the readers' block cache and trims ([`Flusher::idle`]): once per
/// burst of writes or reads, never under steady load, and at most one segment per burst.
pub const IDLE_SWEEPS: u32 = 3;
/// Bound of the queue of client requests into the core loop.
const CLIENT_QUEUE_MAX: usize = 65_536;
/// Bound of the queue of peer messages into the core loop.
const PEER_QUEUE_MAX: usize = 65_536;

/// How to run one replica.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub config: Config,
    pub uid: Uid,
    /// Slots the initial leader never proposes in (uid 0 on a fresh store only).
    pub skip_slots: BTreeSet<Slot>,
    /// The replica's store directory (default: `<data_dir>/node-<uid>`).
    pub data_dir: PathBuf,
}

/// A client request handed to the core loop by a client connection.
pub(crate) enum ClientEvent {
    Submit {
        id: RequestId,
        body: String,
        reply: oneshot::Sender<SubmitReply>,
    },
    Status {
        reply: oneshot::Sender<StatusReport>,
    },
    ReadLog {
        from_slot: Slot,
        max_entries: u32,
        wait_ms: u64,
        reply: oneshot::Sender<ClientResponse>,
    },
    /// A linearizable read begins (see `ClientRequest::ReadIndex`).
    ReadIndex {
        reply: oneshot::Sender<ClientResponse>,
    },
}

/// A replica that has opened its store and bound its port, ready to [`Node::run`].
pub struct Node {
    options: NodeOptions,
    replica: Replica,
    storage: SledStorage,
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    started: Instant,
    /// `Some`: peers and clients speak mutual TLS ([`crate::transport::tls`]).
    tls: Option<std::sync::Arc<crate::transport::TlsContext>>,
    /// The bound metrics port (`replica[uid].metrics_addr`), served by `run`.
    metrics_listener: Option<metrics::MetricsListener>,
}

impl Node {
    /// Opens the store, rebuilds the replica from it, persists its first records and binds
    /// the replica's port. After this returns the node may announce readiness.
    pub async fn open(options: NodeOptions) -> Result<Node> {
        let config = &options.config;
        let uid = options.uid;
        config.check_uid(uid)?;
        let addr = config.replica_addr(uid)?;
        // TLS (or the plaintext rule) before anything else: a bad [tls] refuses to start.
        let tls = crate::transport::tls::TlsContext::for_replica(config, uid)?;
        // Bind before touching the store: a replica that cannot serve must not mark a
        // fresh store as used (uid 0 would lose its initial leadership and --skip-slots).
        let listener = crate::transport::listener::bind(addr).await?;
        // The metrics port too: a busy or bad metrics_addr fails the start, not later.
        let metrics_listener = match config.metrics_addr(uid)? {
            Some(metrics_addr) => Some(metrics::bind(uid, metrics_addr, tls.as_deref()).await?),
            None => None,
        };
        let mut storage = SledStorage::open(&options.data_dir, uid, config.cluster_id())?;
        let state = storage.load()?;
        let fresh = state.is_fresh();
        if !options.skip_slots.is_empty() {
            if uid != 0 {
                return Err(Error::config(
                    "--skip-slots",
                    "only the initial leader (uid 0) may skip slots",
                ));
            }
            if !fresh {
                return Err(Error::config(
                    "--skip-slots",
                    format!(
                        "only accepted on a fresh store; {} already holds state",
                        options.data_dir.display()
                    ),
                ));
            }
        }
        info!(
            uid,
            %addr,
            data_dir = %options.data_dir.display(),
            fresh,
            promised = ?state.promised,
            accepted = state.accepted.len(),
            decided_upto = state.decided_upto,
            sessions = state.sessions.len(),
            replayed = state.tail.len(),
            "replica state loaded"
        );
        let mut replica_config = ReplicaConfig::new(
            uid,
            config.replicas(),
            config.heartbeat_ms,
            config.timeout_ms,
        );
        replica_config.skip_slots = options.skip_slots.clone();
        replica_config.incarnation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let mut replica = Replica::new(replica_config, state, 0);
        let first = replica.take_ready();
        storage.persist(&first.records)?;
        replica.step(Input::Persisted { seq: first.seq });
        let status = replica.status();
        info!(uid, role = ?status.role, ballot = %status.ballot, decided_upto = status.decided_upto, "replica recovered");
        Ok(Node {
            options,
            replica,
            storage,
            listener,
            addr,
            started: Instant::now(),
            tls,
            metrics_listener,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs until `shutdown` flips to true (or a fatal storage error), then stops every
    /// task. Returns the fatal error, if any.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        let Node {
            options,
            replica,
            storage,
            listener,
            addr,
            started,
            tls,
            metrics_listener,
        } = self;
        let config = &options.config;
        let uid = options.uid;
        let (fatal_tx, mut fatal_rx) = watch::channel(None::<String>);
        // Every task stops on this one signal: a shutdown request or a fatal error.
        let (stop_tx, stop_rx) = watch::channel(false);

        let peers: Vec<(Uid, SocketAddr)> = (0..config.replicas() as Uid)
            .filter(|p| *p != uid)
            .map(|p| config.replica_addr(p).map(|a| (p, a)))
            .collect::<Result<_>>()?;
        let links = Arc::new(PeerLinks::spawn_with_tls(
            uid,
            config.cluster_id(),
            peers,
            config.loss,
            tls.clone(),
            stop_rx.clone(),
        ));
        let metrics = Arc::new(metrics::Metrics::new(uid));
        let listener_config =
            ListenerConfig::new(uid, config.cluster_id(), config.replicas()).with_tls(tls);
        if let Some(metrics_listener) = metrics_listener {
            let sources = metrics::Sources {
                links: links.clone(),
                counters: listener_config.counters.clone(),
            };
            let dir = options.data_dir.clone();
            metrics::serve(
                uid,
                metrics_listener,
                metrics.clone(),
                sources,
                dir,
                stop_rx.clone(),
            );
        }
        let (peer_tx, mut peer_rx) = mpsc::channel::<(Uid, PeerMessage)>(PEER_QUEUE_MAX);
        let (client_tx, mut client_rx) = mpsc::channel::<ClientEvent>(CLIENT_QUEUE_MAX);
        let (conn_tx, mut conn_rx) = mpsc::channel::<ClientConn>(64);
        tokio::spawn(accept_loop(
            listener,
            listener_config,
            peer_tx,
            conn_tx,
            stop_rx.clone(),
        ));
        let submit_wait = Duration::from_millis(config.timeout_ms.saturating_mul(8).max(2_000));
        {
            let client_tx = client_tx.clone();
            let stop_rx = stop_rx.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                while let Some(conn) = conn_rx.recv().await {
                    let serve =
                        client_conn::serve(conn, client_tx.clone(), submit_wait, stop_rx.clone());
                    let counted = metrics.client_connection();
                    tokio::spawn(async move {
                        serve.await;
                        drop(counted)
                    });
                }
            });
        }
        drop(client_tx);

        let (durable_tx, mut durable_rx) = watch::channel(0u64);
        let log: reads::SharedLog = Arc::new(storage.log_reader());
        let flusher = Flusher::spawn(
            storage,
            links.clone(),
            fatal_tx,
            durable_tx,
            metrics.clone(),
        )?;
        let mut tick = tokio::time::interval(Duration::from_millis(tick_ms(config.heartbeat_ms)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        // Longest a clean shutdown waits for the hand-off (a dead peer never acks).
        let drain_wait = Duration::from_millis(config.timeout_ms.saturating_mul(2).min(3_000));
        let mut driver = Driver {
            uid,
            addr,
            started,
            last_status: replica.status(),
            replica,
            links,
            flusher,
            waiting: HashMap::new(),
            next_client_ref: 1,
            reads: Reads::new(log.clone()),
            log,
            catch_up_reading: (0..config.replicas())
                .map(|_| Arc::new(std::sync::atomic::AtomicBool::new(false)))
                .collect(),
            last_sweep: Instant::now(),
            moved_at_sweep: 0,
            idle_sweeps: None,
            draining_until: None,
            sent_seq: 0,
            durable_seq: 0,
            metrics,
        };
        info!(uid, %addr, "serving");

        let result = loop {
            let mut stepped = 0usize;
            tokio::select! {
                biased;
                _ = shutdown.changed(), if driver.draining_until.is_none() => {
                    if *shutdown.borrow() {
                        // Hand off before stopping: the leader tells the followers its
                        // final decisions, the followers learn them, bounded in time.
                        driver.replica.step(Input::ShutDown);
                        driver.draining_until = Some(Instant::now() + drain_wait);
                        stepped += 1;
                    }
                }
                _ = fatal_rx.changed() => {
                    let reason = fatal_rx.borrow().clone().unwrap_or_default();
                    break Err(Error::Flusher(reason));
                }
                Ok(()) = durable_rx.changed() => {
                    let seq = *durable_rx.borrow_and_update();
                    // The max: an idle outbox reports seq 0.
                    driver.durable_seq = driver.durable_seq.max(seq);
                    driver.replica.step(Input::Persisted { seq });
                    stepped += 1;
                }
                _ = tick.tick() => {
                    let now_ms = driver.now_ms();
                    driver.replica.step(Input::Tick { now_ms });
                    stepped += 1;
                }
                Some((from, msg)) = peer_rx.recv() => {
                    driver.replica.step(Input::Peer { from, msg });
                    stepped += 1;
                }
                Some(event) = client_rx.recv() => {
                    driver.on_client(event);
                    stepped += 1;
                }
            }
            // Drain whatever else is already queued, so it shares one Ready (one flush).
            while stepped < BATCH_INPUTS_MAX {
                if durable_rx.has_changed().unwrap_or(false) {
                    let seq = *durable_rx.borrow_and_update();
                    // The max: an idle outbox reports seq 0.
                    driver.durable_seq = driver.durable_seq.max(seq);
                    driver.replica.step(Input::Persisted { seq });
                } else if let Ok((from, msg)) = peer_rx.try_recv() {
                    driver.replica.step(Input::Peer { from, msg });
                } else if let Ok(event) = client_rx.try_recv() {
                    driver.on_client(event);
                } else {
                    break;
                }
                stepped += 1;
            }
            if let Err(e) = driver.dispatch().await {
                break Err(e);
            }
            driver.after_batch();
            if let Some(until) = driver.draining_until {
                let flushed = driver.durable_seq >= driver.sent_seq;
                if (flushed && driver.replica.drained()) || Instant::now() >= until {
                    info!(
                        uid,
                        handed_off = flushed && driver.replica.drained(),
                        decided_upto = driver.replica.decided_upto(),
                        "shutting down"
                    );
                    break Ok(());
                }
            }
        };

        // One shutdown path: tell systemd and every task, then let the flusher finish what
        // it holds.
        systemd::notify("STOPPING=1");
        let _ = stop_tx.send(true);
        let Driver {
            waiting, flusher, ..
        } = driver;
        drop(waiting);
        flusher.finish().await;
        match &result {
            Ok(()) => info!(uid, "stopped cleanly"),
            Err(e) => warn!(uid, error = %e, "stopped on a fatal error"),
        }
        result
    }
}

/// The core loop's state: the replica and what the driver needs to carry out its `Ready`s.
/// Owned by the one task that runs [`Node::run`]; holds no protocol state of its own.
struct Driver {
    uid: Uid,
    addr: SocketAddr,
    started: Instant,
    replica: Replica,
    links: Arc<PeerLinks>,
    flusher: Flusher,
    /// Submits waiting for the core's reply, by the handle the core was given. Bounded by
    /// the client connections (one request in flight each); swept of closed ones.
    /// With the instant each arrived (for the commit latency metric).
    waiting: HashMap<ClientRef, (oneshot::Sender<SubmitReply>, Instant)>,
    next_client_ref: ClientRef,
    reads: Reads,
    /// The store's applied log: client reads, catch-up and phase-1 chunks of slots the
    /// core no longer holds.
    log: reads::SharedLog,
    /// Per peer uid: a catch-up answer is being read from the store.
    catch_up_reading: Vec<Arc<std::sync::atomic::AtomicBool>>,
    last_status: ReplicaStatus,
    last_sweep: Instant,
    /// The decided prefix plus the entries read from the store, at the last sweep (about
    /// a second ago): a replica where both moved by less than [`IDLE_SLOTS_PER_S`] since
    /// is quiet.
    moved_at_sweep: u64,
    /// `Some(n)`: n quiet sweeps since the last busy one, the idle checkpoint and trim
    /// ([`Flusher::idle`]) not yet asked for; `None`: asked for (or never busy).
    idle_sweeps: Option<u32>,
    /// Shutting down: the hand-off runs until then at the latest.
    draining_until: Option<Instant>,
    /// The last `Ready::seq` handed to the flusher, and the last it reported durable.
    sent_seq: u64,
    durable_seq: u64,
    metrics: Arc<metrics::Metrics>,
}

impl Driver {
    /// Milliseconds since the node started: the core's clock.
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn on_client(&mut self, event: ClientEvent) {
        match event {
            ClientEvent::Submit { id, body, reply } => {
                let client = self.next_client_ref;
                self.next_client_ref += 1;
                self.waiting.insert(client, (reply, Instant::now()));
                self.replica.step(Input::Submit { client, id, body });
            }
            ClientEvent::Status { reply } => {
                let _ = reply.send(StatusReport {
                    status: self.replica.status(),
                    addr: self.addr.to_string(),
                    last_slot: self.replica.last_slot(),
                });
            }
            ClientEvent::ReadLog {
                from_slot,
                max_entries,
                wait_ms,
                reply,
            } => self
                .reads
                .read(&self.replica, from_slot, max_entries, wait_ms, reply),
            ClientEvent::ReadIndex { reply } => {
                let read = self.reads.begin_linearizable(reply);
                self.replica.step(Input::ReadIndex { read });
            }
        }
    }

    /// Carries out the core's `Ready` (the commit path): proposals, heartbeats and client
    /// replies go at once; records and the messages that vouch for them go to the
    /// flusher, which sends those messages once the records are durable.
    async fn dispatch(&mut self) -> Result<()> {
        let ready = self.replica.take_ready();
        for (peer, reason) in &ready.warnings {
            warn!(uid = self.uid, peer, reason = %reason, "refused a peer message");
        }
        for (to, msg) in ready.messages_now {
            self.links.send(to, msg);
        }
        for (read, read_index) in ready.reads {
            self.reads.read_index(&self.replica, read, read_index);
        }
        let mut messages = ready.messages;
        for send in ready.log_sends {
            self.log_send(send, &mut messages);
        }
        for (client, reply) in ready.replies {
            if let Some((tx, arrived)) = self.waiting.remove(&client) {
                if matches!(reply, SubmitReply::Committed { .. }) {
                    self.metrics.observe_commit(arrived.elapsed());
                }
                let _ = tx.send(reply);
            }
        }
        if !ready.records.is_empty() || !messages.is_empty() {
            let outbox = Outbox {
                seq: ready.seq,
                records: ready.records,
                messages,
                idle: false,
            };
            self.sent_seq = ready.seq;
            if self.flusher.send(outbox).await.is_err() {
                return Err(Error::Flusher("the flusher thread stopped".into()));
            }
        }
        Ok(())
    }

    /// Completes a [`LogSend`] from the store. A CatchUp is read and sent from a blocking
    /// thread (a laggard streaming millions of entries must not hold up the core loop); a
    /// Promise is read here and joins the messages sent after this Ready's flush (it
    /// vouches for the promise).
    fn log_send(&self, send: LogSend, after_flush: &mut Vec<(Uid, PeerMessage)>) {
        let read = |log: &reads::SharedLog, send: &LogSend| match log.read_log(
            send.from_slot,
            send.entries_max,
            send.bytes_max,
        ) {
            Ok(entries) => send.complete(entries),
            Err(e) => {
                tracing::error!(to = send.to, from_slot = send.from_slot, error = %e, "reading the applied log for a peer failed");
                None
            }
        };
        match send.answer {
            LogAnswer::Promise { .. } => {
                if let Some((msg, _)) = read(&self.log, &send) {
                    after_flush.push((send.to, msg));
                }
            }
            LogAnswer::CatchUp { .. } => {
                // One store read in flight per peer: a peer flooding CatchUpRequests gets
                // the rest dropped (an honest one asks again after its timeout).
                let Some(reading) = self.catch_up_reading.get(send.to as usize).cloned() else {
                    return;
                };
                if reading.swap(true, std::sync::atomic::Ordering::AcqRel) {
                    return;
                }
                let (log, links) = (self.log.clone(), self.links.clone());
                tokio::task::spawn_blocking(move || {
                    let answer = read(&log, &send);
                    // Free the slot before the answer leaves: the peer's next request can
                    // arrive as soon as the answer does, and must not find it taken (it
                    // would be dropped, and the peer would wait a timeout to ask again).
                    reading.store(false, std::sync::atomic::Ordering::Release);
                    if let Some((msg, _)) = answer {
                        links.send(send.to, msg);
                    }
                });
            }
        }
    }

    /// After each batch: log role changes, answer parked reads, sweep closed waiters.
    fn after_batch(&mut self) {
        let uid = self.uid;
        let status = self.replica.status();
        if status.role != self.last_status.role || status.ballot != self.last_status.ballot {
            info!(uid, role = ?status.role, ballot = %status.ballot, leader = ?status.leader, decided_upto = status.decided_upto, "role changed");
        }
        if status.decided_upto != self.last_status.decided_upto || !self.reads.is_empty() {
            self.reads.serve_parked(&self.replica);
        }
        let backlog = self.replica.catch_up_backlog();
        self.metrics
            .observe_status(&status, &self.last_status, backlog);
        self.last_status = status;
        if self.last_sweep.elapsed() >= Duration::from_secs(1) {
            self.last_sweep = Instant::now();
            self.waiting.retain(|_, (tx, _)| !tx.is_closed());
            // Once a busy period ends, checkpoint (no tail in memory) and give the
            // allocator's free pages back, on the flusher thread.
            let moved = self
                .replica
                .decided_upto()
                .saturating_add(self.log.entries_read());
            let busy = moved.saturating_sub(self.moved_at_sweep) >= IDLE_SLOTS_PER_S;
            self.moved_at_sweep = moved;
            if busy {
                self.idle_sweeps = Some(0);
            } else if let Some(quiet) = self.idle_sweeps {
                if quiet + 1 >= IDLE_SWEEPS {
                    self.idle_sweeps = None;
                    self.flusher.idle();
                } else {
                    self.idle_sweeps = Some(quiet + 1);
                }
            }
            debug!(
                uid,
                waiting = self.waiting.len(),
                parked = self.reads.len(),
                "sweep"
            );
        }
    }
}

//! Operator metrics of one replica: the registry, the metric handles the driver and the
//! flusher update, and a tiny HTTP/1.1 responder that serves them in Prometheus text
//! format (OpenMetrics 1.0) on `replica[uid].metrics_addr`, off when that is absent.
//! The port is bound by [`bind`] in `Node::open` (a busy or bad address fails the start,
//! naming the field, before the replica announces readiness) and served by [`serve`].
//!
//! Metrics are kept by `prometheus-client` (the Prometheus project's Rust client: no
//! global registry, typed metrics, lock-free counters). Every name is prefixed `paxos_`
//! and every sample carries a `uid` label. The names, types and meanings are listed in
//! the README ("Metrics"). Sources:
//! - the driver, after each batch: role, ballot round, decided prefix, proposals
//!   committed (the decided prefix's advance, like `etcd_server_proposals_committed_total`),
//!   elections started (Candidate entered) and won (Leader entered), catch-up backlog;
//!   on each client reply: commit latency (submit received to `Committed` reply);
//! - the flusher: fsync duration (one `Storage::persist`) and records per flush;
//! - at scrape time: peer link state and bytes sent (from [`PeerLinks`]), bytes received
//!   from each peer and bytes from and to clients (from [`ListenerCounters`]);
//! - a task every [`STORE_SIZE_PERIOD`]: the store's size on disk (a walk of its dir).
//!
//! The responder answers `GET /metrics` only (404 for other paths, 405 for other
//! methods), reads at most [`REQUEST_BYTES_MAX`] of request head within
//! [`REQUEST_TIMEOUT`], serves at most [`CONNECTIONS_MAX`] connections at once, and closes
//! each connection after one response.
//!
//! TLS: when the cluster uses TLS the endpoint speaks only HTTPS (TLS 1.3), presenting the
//! replica's certificate (`replica-<uid>.<cluster id>.paxos`, see
//! [`crate::transport::tls`]) and asking for no client certificate, so a scraper needs
//! only the cluster's CA (Prometheus: `scheme: https`, `tls_config: {ca_file,
//! server_name}`). A plaintext request on it gets a plaintext `400` saying so. A
//! plaintext cluster serves plain HTTP.
//!
//! Not done: client-certificate authentication of scrapers, keep-alive, compression,
//! protobuf exposition.

use crate::core::{ReplicaStatus, Role, Uid};
use crate::transport::peer::PeerLinks;
use crate::transport::{ListenerCounters, TlsContext};
use crate::{Error, Result};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

/// Longest request head (request line and headers) read before answering 400.
pub const REQUEST_BYTES_MAX: usize = 8 * 1024;
/// How long a scraper may take to send its request head, and to take the response.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Metrics connections served at once; more wait in the kernel's accept queue.
pub const CONNECTIONS_MAX: usize = 16;
/// How often the store's size on disk is measured.
pub const STORE_SIZE_PERIOD: Duration = Duration::from_secs(10);
/// Most directory entries visited when measuring the store (bounds one walk).
const STORE_WALK_ENTRIES_MAX: usize = 100_000;

type Labels = Vec<(String, String)>;

/// The metric handles of one replica. Shared behind an `Arc`; every update is atomic.
pub struct Metrics {
    registry: Registry,
    is_leader: Gauge,
    role: Family<Labels, Gauge>,
    ballot_round: Gauge,
    decided_prefix: Gauge,
    catch_up_backlog: Gauge,
    proposals_committed: Counter,
    elections_started: Counter,
    elections_won: Counter,
    commit_latency: Histogram,
    fsync_duration: Histogram,
    flush_records: Histogram,
    peer_link_up: Family<Labels, Gauge>,
    peer_sent_bytes: Family<Labels, Counter>,
    peer_received_bytes: Family<Labels, Counter>,
    client_received_bytes: Counter,
    client_sent_bytes: Counter,
    client_connections: Gauge,
    store_size: Gauge<i64, AtomicI64>,
}

/// Decrements the client connection gauge when dropped.
pub struct ClientConnectionGuard(Arc<Metrics>);

impl Drop for ClientConnectionGuard {
    fn drop(&mut self) {
        self.0.client_connections.dec();
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
    }
}

impl Metrics {
    /// A registry for replica `uid` with every metric at zero.
    pub fn new(uid: Uid) -> Metrics {
        let mut registry = Registry::with_prefix_and_labels(
            "paxos",
            [("uid".into(), uid.to_string().into())].into_iter(),
        );
        let m = Metrics {
            is_leader: Gauge::default(),
            role: Family::default(),
            ballot_round: Gauge::default(),
            decided_prefix: Gauge::default(),
            catch_up_backlog: Gauge::default(),
            proposals_committed: Counter::default(),
            elections_started: Counter::default(),
            elections_won: Counter::default(),
            // 100 us .. ~3.3 s
            commit_latency: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            fsync_duration: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            // 1 .. 32768 records
            flush_records: Histogram::new(exponential_buckets(1.0, 2.0, 16)),
            peer_link_up: Family::default(),
            peer_sent_bytes: Family::default(),
            peer_received_bytes: Family::default(),
            client_received_bytes: Counter::default(),
            client_sent_bytes: Counter::default(),
            client_connections: Gauge::default(),
            store_size: Gauge::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "is_leader",
            "1 while this replica leads a ballot, else 0",
            m.is_leader.clone(),
        );
        r.register(
            "role",
            "1 for the replica's current role (follower, candidate, leader), 0 for the others",
            m.role.clone(),
        );
        r.register(
            "ballot_round",
            "Round of the ballot led, campaigned for or promised",
            m.ballot_round.clone(),
        );
        r.register(
            "decided_prefix",
            "Every slot below this is decided here (length of the applied chat log)",
            m.decided_prefix.clone(),
        );
        r.register(
            "catch_up_backlog_slots",
            "Slots the most advanced peer has decided that this replica has not",
            m.catch_up_backlog.clone(),
        );
        r.register(
            "proposals_committed",
            "Slots decided here: the advance of the decided prefix",
            m.proposals_committed.clone(),
        );
        r.register(
            "elections_started",
            "Times this replica became a candidate",
            m.elections_started.clone(),
        );
        r.register(
            "elections_won",
            "Times this replica became the leader",
            m.elections_won.clone(),
        );
        r.register_with_unit(
            "commit_latency",
            "Time from a submit's arrival to its Committed reply, on the leader",
            Unit::Seconds,
            m.commit_latency.clone(),
        );
        r.register_with_unit(
            "fsync_duration",
            "Time of one group-commit persist (write and fsync) of the store",
            Unit::Seconds,
            m.fsync_duration.clone(),
        );
        r.register(
            "flush_records",
            "Records persisted per group-commit flush",
            m.flush_records.clone(),
        );
        r.register(
            "peer_link_up",
            "1 while the outbound link to the peer is connected, else 0",
            m.peer_link_up.clone(),
        );
        r.register_with_unit(
            "peer_sent",
            "Frame bytes written to the peer",
            Unit::Bytes,
            m.peer_sent_bytes.clone(),
        );
        r.register_with_unit(
            "peer_received",
            "Frame bytes read from the peer (its inbound connections to this replica)",
            Unit::Bytes,
            m.peer_received_bytes.clone(),
        );
        r.register_with_unit(
            "client_received",
            "Frame bytes read from clients",
            Unit::Bytes,
            m.client_received_bytes.clone(),
        );
        r.register_with_unit(
            "client_sent",
            "Frame bytes written to clients",
            Unit::Bytes,
            m.client_sent_bytes.clone(),
        );
        r.register(
            "client_connections",
            "Client connections open now",
            m.client_connections.clone(),
        );
        r.register_with_unit(
            "store_size",
            "Size on disk of this replica's store directory, measured every 10 s",
            Unit::Bytes,
            m.store_size.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Records the replica's state after a batch; `last` is the state after the previous
    /// one. Counts elections and committed proposals from the difference.
    pub fn observe_status(&self, status: &ReplicaStatus, last: &ReplicaStatus, backlog: u64) {
        if status.role != last.role {
            match status.role {
                Role::Candidate => {
                    self.elections_started.inc();
                }
                Role::Leader => {
                    self.elections_won.inc();
                }
                Role::Follower => {}
            }
        }
        for role in [Role::Follower, Role::Candidate, Role::Leader] {
            let label = vec![("role".to_string(), role_name(role).to_string())];
            self.role
                .get_or_create(&label)
                .set(i64::from(status.role == role));
        }
        self.is_leader.set(i64::from(status.role == Role::Leader));
        self.ballot_round.set(saturating_i64(status.ballot.round));
        self.decided_prefix.set(saturating_i64(status.decided_upto));
        if status.decided_upto > last.decided_upto {
            self.proposals_committed
                .inc_by(status.decided_upto - last.decided_upto);
        }
        self.catch_up_backlog.set(saturating_i64(backlog));
    }

    /// One `Committed` reply, `elapsed` after its submit arrived.
    pub fn observe_commit(&self, elapsed: Duration) {
        self.commit_latency.observe(elapsed.as_secs_f64());
    }

    /// One group-commit flush of `records` records that took `elapsed`.
    pub fn observe_flush(&self, records: usize, elapsed: Duration) {
        self.fsync_duration.observe(elapsed.as_secs_f64());
        self.flush_records.observe(records as f64);
    }

    /// Counts one client connection until the guard is dropped.
    pub fn client_connection(self: &Arc<Self>) -> ClientConnectionGuard {
        self.client_connections.inc();
        ClientConnectionGuard(self.clone())
    }

    /// Copies the transport's state and byte counts into the registry. Counters only
    /// move up (`fetch_max`), so concurrent scrapes neither double-count nor go back.
    fn observe_transport(&self, links: &PeerLinks, counters: &ListenerCounters) {
        let peer_label = |peer: Uid| vec![("peer".to_string(), peer.to_string())];
        for link in links.link_states() {
            let label = peer_label(link.peer);
            self.peer_link_up
                .get_or_create(&label)
                .set(i64::from(link.up));
            raise(&self.peer_sent_bytes.get_or_create(&label), link.sent_bytes);
        }
        for (peer, bytes) in counters.peer_received_bytes() {
            if links.peers().any(|p| p == peer) {
                raise(
                    &self.peer_received_bytes.get_or_create(&peer_label(peer)),
                    bytes,
                );
            }
        }
        raise(
            &self.client_received_bytes,
            counters.client_received_bytes(),
        );
        raise(&self.client_sent_bytes, counters.client_sent_bytes());
    }

    fn set_store_size(&self, bytes: u64) {
        self.store_size.set(saturating_i64(bytes));
    }

    /// The exposition text (OpenMetrics 1.0, ending in `# EOF`).
    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Err(e) = encode(&mut text, &self.registry) {
            // Encoding into a String fails only on a bug in a metric's encoder.
            warn!(error = %e, "encoding metrics failed");
        }
        text
    }
}

/// Sets a counter that mirrors a monotonic source to `value` unless it is already there.
fn raise(counter: &Counter, value: u64) {
    counter.inner().fetch_max(value, Ordering::Relaxed);
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The metrics port of one replica, bound and not yet served.
pub struct MetricsListener {
    listener: TcpListener,
    addr: SocketAddr,
    /// `Some`: HTTPS only (the cluster uses TLS).
    tls: Option<TlsAcceptor>,
}

impl MetricsListener {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Binds replica `uid`'s metrics port at `addr`, HTTPS with the replica's certificate when
/// `tls` is `Some`. The error names `replica[uid].metrics_addr` and says why.
pub async fn bind(uid: Uid, addr: SocketAddr, tls: Option<&TlsContext>) -> Result<MetricsListener> {
    let field = format!("replica[{uid}].metrics_addr");
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Error::config(&field, format!("cannot listen on {addr}: {e}")))?;
    let addr = listener.local_addr().unwrap_or(addr);
    let tls = match tls {
        Some(tls) => Some(tls.https_acceptor().ok_or_else(|| {
            Error::config(&field, "the TLS context has no certificate to serve with")
        })?),
        None => None,
    };
    Ok(MetricsListener {
        listener,
        addr,
        tls,
    })
}

/// What a scrape reads besides the registry: the transport's state and byte counts.
pub struct Sources {
    pub links: Arc<PeerLinks>,
    pub counters: Arc<ListenerCounters>,
}

/// Serves `GET /metrics` on `listener` until `stop` flips; also starts the store size
/// task. Returns at once (the work runs in spawned tasks).
pub fn serve(
    uid: Uid,
    listener: MetricsListener,
    metrics: Arc<Metrics>,
    sources: Sources,
    data_dir: PathBuf,
    stop: watch::Receiver<bool>,
) {
    let scheme = if listener.tls.is_some() {
        "https"
    } else {
        "http"
    };
    info!(uid, addr = %listener.addr, scheme, "serving metrics");
    tokio::spawn(measure_store(metrics.clone(), data_dir, stop.clone()));
    tokio::spawn(accept_scrapes(listener, metrics, Arc::new(sources), stop));
}

async fn accept_scrapes(
    listener: MetricsListener,
    metrics: Arc<Metrics>,
    sources: Arc<Sources>,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            _ = crate::transport::peer::wait_shutdown(&mut stop) => return,
            accepted = listener.listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                warn!(error = %e, "accepting a metrics connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        let sources = sources.clone();
        let tls = listener.tls.clone();
        tokio::spawn(async move {
            let answered = tokio::time::timeout(
                REQUEST_TIMEOUT,
                answer_connection(stream, tls, &metrics, &sources),
            )
            .await;
            match answered {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(%peer, error = %e, "metrics connection failed"),
                Err(_) => debug!(%peer, "metrics connection timed out"),
            }
            drop(permit);
        });
    }
}

/// First byte of a TLS handshake record: what an HTTPS client sends first.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Runs the TLS handshake when the endpoint is HTTPS (a plaintext request gets a
/// plaintext 400 instead), then answers one request.
async fn answer_connection(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    metrics: &Metrics,
    sources: &Sources,
) -> io::Result<()> {
    let Some(tls) = tls else {
        return answer(stream, metrics, sources).await;
    };
    let mut first = [0u8; 1];
    if stream.peek(&mut first).await? == 0 {
        return Ok(());
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        // Read the request first: closing with it unread would reset the connection and
        // the client might never see why.
        let mut stream = stream;
        let _ = read_head(&mut stream).await?;
        let body = "this metrics endpoint speaks HTTPS only (the cluster uses TLS): scrape https:// with the cluster's CA\n";
        return respond(&mut stream, "400 Bad Request", "text/plain", body).await;
    }
    let stream = tls
        .accept(stream)
        .await
        .map_err(|e| crate::transport::tls::tls_error("TLS handshake", e))?;
    answer(stream, metrics, sources).await
}

/// Reads one request head and writes one response, then closes.
async fn answer<S>(mut stream: S, metrics: &Metrics, sources: &Sources) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let head = read_head(&mut stream).await?;
    let (status, content_type, body) = if let Some(head) = head {
        route(&head, metrics, sources)
    } else {
        ("400 Bad Request", "text/plain", "bad request\n".to_string())
    };
    respond(&mut stream, status, content_type, &body).await
}

/// Reads a request head (up to its blank line) of at most [`REQUEST_BYTES_MAX`] bytes;
/// `None` when it is longer or the stream ends first.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(head));
        }
        if head.len() >= REQUEST_BYTES_MAX {
            return Ok(None);
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&buf[..n.min(REQUEST_BYTES_MAX - head.len())]);
    }
}

/// The response to one complete request head: (status, content type, body).
fn route(
    head: &[u8],
    metrics: &Metrics,
    sources: &Sources,
) -> (&'static str, &'static str, String) {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default();
    let path = parts.next().unwrap_or_default();
    let path = path.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET", "/metrics") => {
            metrics.observe_transport(&sources.links, &sources.counters);
            (
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                metrics.render(),
            )
        }
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "only /metrics is served\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET is served\n".to_string(),
        ),
    }
}

/// Writes one complete response and closes the stream.
async fn respond<S>(stream: &mut S, status: &str, content_type: &str, body: &str) -> io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Measures the store's size every [`STORE_SIZE_PERIOD`] until `stop` flips.
async fn measure_store(metrics: Arc<Metrics>, data_dir: PathBuf, mut stop: watch::Receiver<bool>) {
    loop {
        let dir = data_dir.clone();
        match tokio::task::spawn_blocking(move || dir_size_bytes(&dir)).await {
            Ok(bytes) => metrics.set_store_size(bytes),
            Err(e) => warn!(error = %e, "measuring the store size failed"),
        }
        tokio::select! {
            _ = crate::transport::peer::wait_shutdown(&mut stop) => return,
            _ = tokio::time::sleep(STORE_SIZE_PERIOD) => {}
        }
    }
}

/// Bytes of the regular files under `dir` (unreadable entries count 0; at most
/// [`STORE_WALK_ENTRIES_MAX`] entries are visited).
fn dir_size_bytes(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut visited = 0usize;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            visited += 1;
            if visited > STORE_WALK_ENTRIES_MAX {
                return total;
            }
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() {
                total = total.saturating_add(meta.len());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Ballot;

    fn status(role: Role, round: u64, decided_upto: u64) -> ReplicaStatus {
        ReplicaStatus {
            uid: 1,
            role,
            ballot: Ballot { round, uid: 1 },
            leader: None,
            decided_upto,
            standing: crate::core::Standing::Voter,
        }
    }

    #[test]
    fn names_follow_prometheus_conventions() {
        let m = Metrics::new(1);
        let f = status(Role::Follower, 0, 0);
        let c = status(Role::Candidate, 1, 3);
        let l = status(Role::Leader, 1, 10);
        m.observe_status(&c, &f, 7);
        m.observe_status(&l, &c, 0);
        m.observe_commit(Duration::from_millis(3));
        m.observe_flush(12, Duration::from_millis(1));
        let _guard = Arc::new(Metrics::new(2)).client_connection();
        let text = m.render();
        for line in [
            "paxos_is_leader{uid=\"1\"} 1",
            "paxos_role{uid=\"1\",role=\"leader\"} 1",
            "paxos_role{uid=\"1\",role=\"candidate\"} 0",
            "paxos_ballot_round{uid=\"1\"} 1",
            "paxos_decided_prefix{uid=\"1\"} 10",
            "paxos_proposals_committed_total{uid=\"1\"} 10",
            "paxos_elections_started_total{uid=\"1\"} 1",
            "paxos_elections_won_total{uid=\"1\"} 1",
            "paxos_catch_up_backlog_slots{uid=\"1\"} 0",
            "paxos_commit_latency_seconds_count{uid=\"1\"} 1",
            "paxos_fsync_duration_seconds_count{uid=\"1\"} 1",
            "paxos_flush_records_sum{uid=\"1\"} 12.0",
            "paxos_store_size_bytes{uid=\"1\"} 0",
            "paxos_client_received_bytes_total{uid=\"1\"} 0",
            "paxos_client_sent_bytes_total{uid=\"1\"} 0",
            "# EOF",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn store_size_counts_files_below_the_dir() {
        let dir = std::env::temp_dir().join(format!("paxos-metrics-{}", std::process::id()));
        let sub = dir.join("a");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(dir.join("x"), [0u8; 100]).unwrap();
        std::fs::write(sub.join("y"), [0u8; 23]).unwrap();
        assert_eq!(dir_size_bytes(&dir), 123);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(dir_size_bytes(&dir), 0);
    }
}

//! The client library: what `paxosctl` (and tests, benchmarks) use to talk to a cluster.
//!
//! A [`Client`] submits chat messages exactly once and reads replicas' state:
//!
//! - **Request ids.** A client picks a random `client_id` once and numbers its requests
//!   `seq = 1, 2, ...` ([`RequestId`]). A retry of the same message, to the same or
//!   another replica, reuses the same id, so the cluster applies it once.
//! - **Leader discovery.** [`Client::submit`] starts at the replica it believes leads
//!   (the last one that committed for it, or the last `NotLeader` hint; uid 0 on a fresh
//!   client, the initial leader), follows `NotLeader` hints, and moves to the next
//!   replica on a `NotLeader` without a hint, a timeout or a connection error, with a
//!   small jittered backoff after each unsuccessful round. A refused connection costs
//!   nothing, so it is followed by the next replica at once, and a replica that refused
//!   within [`REFUSED_SKIP`] is tried after the others.
//! - **Fail fast.** When every replica refuses the connection in one round (no daemon
//!   is running), the submit fails at once with [`ClientError::Refused`] naming each
//!   address, instead of waiting out its deadline.
//! - **Timeouts.** Each attempt is bounded by [`ClientOptions::attempt_timeout`] (by
//!   default 4x the config's `timeout_ms`: long enough for a leader to retransmit an
//!   Accept once); the whole submit by [`ClientOptions::deadline`] (10 s), after which it
//!   fails with [`ClientError::NoQuorum`] listing what each replica last answered.
//! - **Stale replies.** A reply whose request id is not the request's (a late answer to
//!   an earlier request) is never taken for this one: the link is dropped and the request
//!   resent with its own id.
//! - **Connections.** One [`ClientLink`] per replica, reused across requests (TCP_NODELAY
//!   is set by the transport); any error or timeout drops it, since a half-read answer
//!   leaves it out of step.
//!
//! Beside it: [`log`] (the applied chat log: network paging, following, offline store
//! reading) and [`status`] (the concurrent status of every replica). `paxosctl`'s
//! commands and their rendering live in [`crate::ctl`], above this library; nothing here
//! prints.
//!
//! Not implemented: pipelining several requests on one connection (the client protocol
//! answers one request at a time per connection), and reads with linearizable guarantees
//! (a replica answers reads from its own applied log).

pub mod log;
pub mod snapshot;
pub mod status;

use crate::config::Config;
use crate::core::{LogEntry, RequestId, Slot, SubmitReply, Uid};
use crate::transport::wire::{ClientRequest, ClientResponse, StatusReport};
use crate::transport::ClientLink;
use rand::Rng;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

/// Default bound on one whole [`Client::submit`].
pub const DEADLINE_DEFAULT: Duration = Duration::from_secs(10);
/// An attempt waits this many times the config's `timeout_ms` for an answer.
pub const ATTEMPT_TIMEOUTS: u32 = 4;
/// Longest a connect may take before the replica counts as unreachable.
pub const CONNECT_TIMEOUT_MAX: Duration = Duration::from_millis(1000);
/// First backoff after an unsuccessful round of attempts; doubles up to
/// [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(20);
/// Largest backoff between rounds of attempts.
pub const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// A replica that refused a connection this recently is tried after the others.
pub const REFUSED_SKIP: Duration = Duration::from_secs(2);

/// Errors of the client library. Every one names what failed and where.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No replica committed the request before the deadline: no quorum answered.
    #[error("no quorum answered within {}: tried {tried}", secs(*.waited))]
    NoQuorum {
        waited: Duration,
        /// What each replica last answered, e.g. `replica 1 (127.0.0.1:7102): timed out`.
        tried: String,
    },
    /// Every replica refused the connection: no daemon is listening at any address.
    #[error("every replica refused the connection: {tried}")]
    Refused {
        /// `replica 0 (127.0.0.1:7101): connection refused; ...`
        tried: String,
    },
    /// The cluster refused the request for good (e.g. too large); retrying will not help.
    #[error("request {id} rejected: {reason}")]
    Rejected { id: RequestId, reason: String },
    /// One replica could not be reached or did not answer as expected.
    #[error("replica {uid} ({addr}): {reason}")]
    Replica {
        uid: Uid,
        addr: String,
        reason: String,
    },
    /// No replica answered a read (each was tried once).
    #[error("no replica reachable: {tried}")]
    Unreachable {
        /// What each replica said.
        tried: String,
    },
    /// The configuration, a store or a file could not be used.
    #[error(transparent)]
    Paxos(#[from] crate::Error),
}

/// `10s`, `2.5s`, `300ms`: a duration as a person reads it in an error message.
pub fn secs(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        let s = d.as_secs_f64();
        if (s - s.round()).abs() < 0.05 {
            format!("{}s", s.round())
        } else {
            format!("{s:.1}s")
        }
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// How long a [`Client`] waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// Bound on one whole submit, all retries included.
    pub deadline: Duration,
    /// Bound on one request to one replica (a `ReadLog` gets its `wait_ms` on top).
    pub attempt_timeout: Duration,
    /// Bound on establishing a connection.
    pub connect_timeout: Duration,
    /// First pause after an unsuccessful round ([`BACKOFF_MIN`]); doubles up to
    /// [`BACKOFF_MAX`].
    pub backoff_min: Duration,
}

impl ClientOptions {
    /// Timeouts derived from the config: attempts of 4x `timeout_ms`, connects of at most
    /// 1 s, a 10 s deadline.
    pub fn from_config(config: &Config) -> ClientOptions {
        let attempt_timeout = Duration::from_millis(config.timeout_ms.max(1))
            .saturating_mul(ATTEMPT_TIMEOUTS)
            .max(Duration::from_millis(200));
        ClientOptions {
            deadline: DEADLINE_DEFAULT,
            attempt_timeout,
            connect_timeout: attempt_timeout.min(CONNECT_TIMEOUT_MAX),
            backoff_min: BACKOFF_MIN,
        }
    }
}

/// What one attempt at a replica came to, for the [`ClientError::NoQuorum`] message.
#[derive(Clone, Debug)]
enum Outcome {
    NotLeader(Option<Uid>),
    /// The connection was refused (nothing listens there).
    Refused,
    ServerError(String),
    Failed(String),
    TimedOut,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::NotLeader(Some(leader)) => write!(f, "not leader (points to {leader})"),
            Outcome::NotLeader(None) => write!(f, "not leader (leader unknown)"),
            Outcome::ServerError(reason) => write!(f, "could not decide: {reason}"),
            Outcome::Refused => write!(f, "connection refused"),
            Outcome::Failed(reason) => write!(f, "{reason}"),
            Outcome::TimedOut => write!(f, "no answer in time"),
        }
    }
}

/// A client of one cluster: one request id space, one link per replica, the last known
/// leader. Not shared between tasks: give each concurrent task its own `Client`.
pub struct Client {
    config: Config,
    options: ClientOptions,
    client_id: u64,
    /// The seq of the next new request (starts at 1).
    next_seq: u64,
    /// The replica believed to lead (it committed for us, or a replica pointed to it);
    /// submits start there.
    leader: Option<Uid>,
    links: HashMap<Uid, ClientLink>,
    /// The TLS context from the config's `[tls]`, built at the first connect
    /// (`Some(None)`: plaintext).
    tls: Option<Option<std::sync::Arc<crate::transport::TlsContext>>>,
    /// When each replica last refused a connection.
    refused_at: HashMap<Uid, Instant>,
}

impl Client {
    /// A client with a fresh random `client_id` and timeouts derived from `config`.
    pub fn new(config: Config) -> Client {
        let options = ClientOptions::from_config(&config);
        Client::with_options(config, options)
    }

    /// A client with a fresh random `client_id` and the given timeouts.
    pub fn with_options(config: Config, options: ClientOptions) -> Client {
        Client {
            config,
            options,
            client_id: rand::thread_rng().gen(),
            next_seq: 1,
            leader: None,
            links: HashMap::new(),
            tls: None,
            refused_at: HashMap::new(),
        }
    }

    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The replica believed to lead, if known.
    pub fn leader(&self) -> Option<Uid> {
        self.leader
    }

    /// Takes the id of a new request (`seq` 1, 2, ...). Keep it to retry the same message
    /// with [`Client::submit_with_id`].
    pub fn next_request_id(&mut self) -> RequestId {
        let id = RequestId {
            client_id: self.client_id,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        id
    }

    /// Appends `body` to the chat log as a new request and returns its id and slot once
    /// it is chosen and applied.
    pub async fn submit(&mut self, body: &str) -> Result<(RequestId, Slot), ClientError> {
        let id = self.next_request_id();
        let slot = self.submit_with_id(id, body).await?;
        Ok((id, slot))
    }

    /// Submits `body` under `id` (a new id from [`Client::next_request_id`], or the id of
    /// an earlier attempt at the same message: the cluster applies it once). Returns the
    /// slot where the request first appears in the log.
    pub async fn submit_with_id(&mut self, id: RequestId, body: &str) -> Result<Slot, ClientError> {
        let started = Instant::now();
        let deadline = started + self.options.deadline;
        let replicas = self.config.replicas().max(1) as Uid;
        let mut target = match self.leader {
            Some(leader) => leader % replicas,
            None => self.next_candidate(replicas - 1),
        };
        let mut tried: BTreeMap<Uid, Outcome> = BTreeMap::new();
        let mut backoff = self.options.backoff_min;
        // Hops since the last backoff: after a whole round without success, back off.
        let mut hops: u32 = 0;
        let request = ClientRequest::Submit {
            id,
            body: body.to_string(),
        };
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(ClientError::NoQuorum {
                    waited: self.options.deadline,
                    tried: self.describe_tried(&tried),
                });
            }
            let budget = self.options.attempt_timeout.min(deadline - now);
            let outcome = match self.call(target, &request, budget).await {
                Ok(ClientResponse::Submit(reply)) if reply.id() == id => match reply {
                    SubmitReply::Committed { slot, .. } => {
                        self.leader = Some(target);
                        return Ok(slot);
                    }
                    SubmitReply::Rejected { reason, .. } => {
                        return Err(ClientError::Rejected { id, reason });
                    }
                    SubmitReply::NotLeader { leader, .. } => Outcome::NotLeader(leader),
                },
                Ok(ClientResponse::Submit(reply)) => {
                    // A late answer to another request: never ours. The link is out of
                    // step; drop it and ask again with our own id.
                    self.links.remove(&target);
                    tracing::debug!(expected = %id, got = %reply.id(), "ignoring a reply to another request");
                    Outcome::Failed(format!("answered request {} instead", reply.id()))
                }
                Ok(ClientResponse::Error { reason }) => Outcome::ServerError(reason),
                Ok(other) => {
                    self.links.remove(&target);
                    Outcome::Failed(format!("unexpected answer to a submit: {other:?}"))
                }
                Err(CallError::TimedOut) => Outcome::TimedOut,
                Err(CallError::Refused) => Outcome::Refused,
                Err(CallError::Failed(reason)) => Outcome::Failed(reason),
            };
            tracing::debug!(%id, target, outcome = %outcome, "submit attempt");
            let next = match &outcome {
                Outcome::NotLeader(Some(leader)) if *leader != target && *leader < replicas => {
                    Some(*leader)
                }
                // The leader could not decide in time: it may recover; ask it again.
                Outcome::ServerError(_) => Some(target),
                _ => None,
            };
            let refused = matches!(outcome, Outcome::Refused);
            tried.insert(target, outcome);
            if tried.len() == replicas as usize
                && tried.values().all(|o| matches!(o, Outcome::Refused))
            {
                return Err(ClientError::Refused {
                    tried: self.describe_tried(&tried),
                });
            }
            hops += 1;
            let follow_hint = matches!(next, Some(n) if n != target);
            target = match next {
                Some(next) => next,
                None => self.next_candidate(target),
            };
            self.leader = follow_hint.then_some(target);
            // Follow hints and refusals at once, but back off after another failure or a
            // whole round (replicas pointing at each other during an election).
            if (!follow_hint && !refused) || hops >= replicas {
                hops = 0;
                let jitter = rand::thread_rng().gen_range(0..=backoff.as_millis() as u64 / 2);
                let pause = backoff + Duration::from_millis(jitter);
                let left = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(pause.min(left)).await;
                backoff = (backoff * 2).min(BACKOFF_MAX.max(self.options.backoff_min));
            }
        }
    }

    /// The replica to try after `after`: the next one in uid order that has not refused
    /// a connection within [`REFUSED_SKIP`], else simply the next one.
    fn next_candidate(&self, after: Uid) -> Uid {
        let replicas = self.config.replicas().max(1) as Uid;
        let recently_refused = |uid: &Uid| {
            self.refused_at
                .get(uid)
                .is_some_and(|at| at.elapsed() < REFUSED_SKIP)
        };
        (1..=replicas)
            .map(|step| (after + step) % replicas)
            .find(|uid| !recently_refused(uid))
            .unwrap_or((after + 1) % replicas)
    }

    /// Replica `uid`'s status (role, ballot, decided prefix, ...).
    pub async fn status(&mut self, uid: Uid) -> Result<StatusReport, ClientError> {
        let budget = self.options.attempt_timeout;
        match self.call(uid, &ClientRequest::Status, budget).await {
            Ok(ClientResponse::Status(report)) => Ok(report),
            Ok(other) => Err(self.unexpected(uid, other)),
            Err(e) => Err(self.replica_error(uid, e)),
        }
    }

    /// Begins a linearizable read at replica `uid`: it gets a read index confirmed by the
    /// leader and answers once it has applied every slot below it, so what it serves
    /// next holds every message acknowledged before this call. Retried (an election may
    /// be under way) until the client's deadline.
    pub async fn read_index(&mut self, uid: Uid) -> Result<Slot, ClientError> {
        let deadline = Instant::now() + self.options.deadline;
        loop {
            let budget = self.options.attempt_timeout;
            match self.call(uid, &ClientRequest::ReadIndex, budget).await {
                Ok(ClientResponse::ReadIndex { read_index }) => return Ok(read_index),
                Ok(ClientResponse::Error { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(other) => return Err(self.unexpected(uid, other)),
                Err(e) => return Err(self.replica_error(uid, e)),
            }
        }
    }

    /// Up to `max_entries` applied entries of replica `uid`'s chat log from `from_slot`,
    /// waiting up to `wait_ms` for one to be applied, and the replica's decided prefix.
    pub async fn read_log(
        &mut self,
        uid: Uid,
        from_slot: Slot,
        max_entries: u32,
        wait_ms: u64,
    ) -> Result<(Vec<LogEntry>, Slot), ClientError> {
        let request = ClientRequest::ReadLog {
            from_slot,
            max_entries,
            wait_ms,
        };
        let budget = self.options.attempt_timeout + Duration::from_millis(wait_ms);
        match self.call(uid, &request, budget).await {
            Ok(ClientResponse::Log {
                entries,
                decided_upto,
            }) => Ok((entries, decided_upto)),
            Ok(other) => Err(self.unexpected(uid, other)),
            Err(e) => Err(self.replica_error(uid, e)),
        }
    }

    /// Sends one request to `uid` on its (re)used link, within `budget` (connect
    /// included). Any failure drops the link.
    async fn call(
        &mut self,
        uid: Uid,
        request: &ClientRequest,
        budget: Duration,
    ) -> Result<ClientResponse, CallError> {
        let started = Instant::now();
        if !self.links.contains_key(&uid) {
            let addr = self
                .config
                .replica_addr(uid)
                .map_err(|e| CallError::Failed(e.to_string()))?;
            let connect_timeout = self.options.connect_timeout.min(budget);
            if self.tls.is_none() {
                let tls = crate::transport::TlsContext::for_client(&self.config)
                    .map_err(|e| CallError::Failed(e.to_string()))?;
                self.tls = Some(tls);
            }
            let tls = self.tls.clone().flatten();
            let link = match ClientLink::connect_to(
                addr,
                connect_timeout,
                tls.as_deref().map(|t| (t, uid)),
            )
            .await
            {
                Ok(link) => link,
                Err(e) if is_refused(&e) => {
                    self.refused_at.insert(uid, Instant::now());
                    return Err(CallError::Refused);
                }
                Err(e) => return Err(CallError::Failed(connect_reason(&e))),
            };
            self.refused_at.remove(&uid);
            self.links.insert(uid, link);
        }
        let left = budget.saturating_sub(started.elapsed());
        let Some(link) = self.links.get_mut(&uid) else {
            return Err(CallError::Failed("no link".to_string()));
        };
        let result = match tokio::time::timeout(left, link.call(request)).await {
            Ok(Ok(response)) => return Ok(response),
            Ok(Err(e)) => CallError::Failed(e.to_string()),
            Err(_) => CallError::TimedOut,
        };
        self.links.remove(&uid);
        Err(result)
    }

    fn addr_of(&self, uid: Uid) -> String {
        self.config
            .replica
            .get(uid as usize)
            .map_or_else(|| "?".to_string(), |r| r.addr.clone())
    }

    fn replica_error(&self, uid: Uid, e: CallError) -> ClientError {
        ClientError::Replica {
            uid,
            addr: self.addr_of(uid),
            reason: match e {
                CallError::TimedOut => "no answer in time".to_string(),
                CallError::Refused => "connection refused".to_string(),
                CallError::Failed(reason) => reason,
            },
        }
    }

    fn unexpected(&mut self, uid: Uid, response: ClientResponse) -> ClientError {
        let reason = match response {
            ClientResponse::Error { reason } => reason,
            other => {
                self.links.remove(&uid);
                format!("unexpected answer: {other:?}")
            }
        };
        ClientError::Replica {
            uid,
            addr: self.addr_of(uid),
            reason,
        }
    }

    fn describe_tried(&self, tried: &BTreeMap<Uid, Outcome>) -> String {
        if tried.is_empty() {
            return "no replica (the deadline passed first)".to_string();
        }
        tried
            .iter()
            .map(|(uid, outcome)| format!("replica {uid} ({}): {outcome}", self.addr_of(*uid)))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Why one call failed.
#[derive(Debug)]
enum CallError {
    TimedOut,
    Refused,
    Failed(String),
}

fn is_refused(e: &crate::Error) -> bool {
    matches!(e, crate::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::ConnectionRefused)
}

/// A connect error as a short reason: `connection refused` rather than the whole chain.
fn connect_reason(e: &crate::Error) -> String {
    match e {
        crate::Error::Io { source, .. } => match source.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
            std::io::ErrorKind::TimedOut => "connect timed out".to_string(),
            _ => format!("cannot connect: {source}"),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::frame::{read_frame, write_frame};
    use crate::transport::wire::Hello;
    use tokio::net::TcpListener;

    #[test]
    fn durations_read_well() {
        assert_eq!(secs(Duration::from_secs(10)), "10s");
        assert_eq!(secs(Duration::from_millis(2500)), "2.5s");
        assert_eq!(secs(Duration::from_millis(300)), "300ms");
    }

    #[test]
    fn ids_count_from_one() {
        let mut client = Client::new(Config::embedded_default());
        let a = client.next_request_id();
        let b = client.next_request_id();
        assert_eq!((a.seq, b.seq), (1, 2));
        assert_eq!(a.client_id, client.client_id());
        assert_eq!(a.to_string(), format!("{}:1", client.client_id()));
    }

    /// A config whose replicas listen on the given ports of 127.0.0.1.
    fn config_on(ports: &[u16]) -> Config {
        let mut config = Config::generate(ports.len() / 2, 0.0, 100, 1);
        for (replica, port) in config.replica.iter_mut().zip(ports) {
            replica.addr = format!("127.0.0.1:{port}");
        }
        config
    }

    /// A port nothing listens on.
    async fn dead_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    }

    /// A fake replica that answers each submit with `answer(request id)`.
    async fn fake_replica(
        answer: impl Fn(RequestId) -> Vec<ClientResponse> + Send + Sync + 'static,
    ) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let answer = std::sync::Arc::new(answer);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let hello: Option<Hello> = read_frame(&mut stream).await.unwrap();
                    assert_eq!(hello, Some(Hello::Client));
                    while let Ok(Some(request)) = read_frame::<ClientRequest, _>(&mut stream).await
                    {
                        let ClientRequest::Submit { id, .. } = request else {
                            panic!("not a submit");
                        };
                        for response in answer(id) {
                            if write_frame(&mut stream, &response).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn follows_the_hint_and_skips_dead_replicas() {
        let leader = fake_replica(|id| {
            vec![ClientResponse::Submit(SubmitReply::Committed {
                id,
                slot: 7,
            })]
        })
        .await;
        let follower = fake_replica(|id| {
            vec![ClientResponse::Submit(SubmitReply::NotLeader {
                id,
                leader: Some(2),
            })]
        })
        .await;
        let config = config_on(&[dead_port().await, follower, leader]);
        let mut client = Client::new(config);
        let (id, slot) = client.submit("hi").await.unwrap();
        assert_eq!((id.seq, slot), (1, 7));
        assert_eq!(client.leader(), Some(2));
        // The next submit goes straight to the leader.
        let (id, slot) = client.submit("again").await.unwrap();
        assert_eq!((id.seq, slot), (2, 7));
    }

    #[tokio::test]
    async fn ignores_a_reply_to_another_request() {
        // Answers first with a reply to an older request, then (on the resend) properly.
        let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = count.clone();
        let port = fake_replica(move |id| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let stale = RequestId {
                client_id: id.client_id,
                seq: id.seq.wrapping_sub(1),
            };
            if n == 0 {
                vec![ClientResponse::Submit(SubmitReply::Committed {
                    id: stale,
                    slot: 1,
                })]
            } else {
                vec![ClientResponse::Submit(SubmitReply::Committed {
                    id,
                    slot: 42,
                })]
            }
        })
        .await;
        let mut client = Client::new(config_on(&[port]));
        let (_, slot) = client.submit("x").await.unwrap();
        assert_eq!(slot, 42);
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn rejected_is_final() {
        let port = fake_replica(|id| {
            vec![ClientResponse::Submit(SubmitReply::Rejected {
                id,
                reason: "too large".into(),
            })]
        })
        .await;
        let mut client = Client::new(config_on(&[port]));
        match client.submit("x").await {
            Err(ClientError::Rejected { reason, .. }) => assert_eq!(reason, "too large"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn every_replica_refusing_fails_at_once_naming_each() {
        let config = config_on(&[dead_port().await, dead_port().await, dead_port().await]);
        let addrs: Vec<String> = config.replica.iter().map(|r| r.addr.clone()).collect();
        let mut client = Client::new(config);
        let started = Instant::now();
        let err = client.submit("x").await.unwrap_err();
        // Not the 10 s deadline: no backoff between refusals either.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(matches!(err, ClientError::Refused { .. }), "{err}");
        let text = err.to_string();
        for (uid, addr) in addrs.iter().enumerate() {
            assert!(
                text.contains(&format!("replica {uid} ({addr}): connection refused")),
                "{text}"
            );
        }
    }

    #[tokio::test]
    async fn no_quorum_names_the_deadline_and_every_replica() {
        // One replica accepts but never answers; the others refuse.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let config = config_on(&[dead_port().await, port, dead_port().await]);
        let options = ClientOptions {
            deadline: Duration::from_millis(300),
            ..ClientOptions::from_config(&config)
        };
        let mut client = Client::with_options(config, options);
        let started = Instant::now();
        let err = client.submit("x").await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        let text = err.to_string();
        assert!(
            text.starts_with("no quorum answered within 300ms: tried "),
            "{text}"
        );
        // The silent replica held the whole 300 ms: replica 2 was never reached.
        assert!(text.contains("replica 0 ("), "{text}");
        assert!(text.contains("connection refused"), "{text}");
        assert!(text.contains("replica 1 ("), "{text}");
        assert!(text.contains("no answer in time"), "{text}");
        drop(silent);
    }

    #[tokio::test]
    async fn dead_replicas_cost_no_backoff_and_are_skipped_later() {
        let leader = fake_replica(|id| {
            vec![ClientResponse::Submit(SubmitReply::Committed {
                id,
                slot: 3,
            })]
        })
        .await;
        let config = config_on(&[dead_port().await, dead_port().await, leader]);
        let options = ClientOptions {
            // One backoff would cost 5 s: the test fails if one is taken.
            backoff_min: Duration::from_secs(5),
            deadline: Duration::from_secs(30),
            ..ClientOptions::from_config(&config)
        };
        let mut client = Client::with_options(config, options);
        let started = Instant::now();
        client.submit("a").await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(client.leader(), Some(2));
        // The leader is forgotten; the replicas that refused are still skipped.
        client.leader = None;
        assert_eq!(client.next_candidate(2), 2);
    }
}

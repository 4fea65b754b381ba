//! One Multi-Paxos replica (acceptor, learner and, when elected, proposer) as a pure state
//! machine: [`Replica::step`] takes an [`Input`], [`Replica::take_ready`] hands back a
//! [`Ready`] of records to persist, messages to send and client replies. The driver must
//! persist `records` durably before it sends any message or reply of the same `Ready`.
//!
//! Where each message is handled: `on_prepare` (acceptor, phase 1), `on_promise`
//! (candidate), `on_accept` (acceptor, phase 2), `on_accepted` (leader), `on_heartbeat`,
//! `on_reject`, `on_catch_up_request` / `on_catch_up`, `on_submit` (client), `on_tick`
//! (heartbeats, failure detection, retransmission).
//!
//! The replica is split by agent, as every replica plays every role: [`acceptor`]
//! (phase 1b and 2b, hearing the leader), [`candidate`] (phase 1a, winning a campaign),
//! [`leader`] (client submits, proposing, counting accepts, heartbeats, retransmission,
//! the shutdown hand-off), [`learner`] (deciding, applying, catch-up), [`quorum`]
//! (heartbeat acks, check-quorum, read index); [`bounds`] refuses out-of-bounds peer
//! input, [`tick`] is what time does. This file holds the state, the constructor
//! (recovery), dispatch and the helpers every agent uses.

mod acceptor;
mod bounds;
mod candidate;
mod leader;
mod learner;
mod quorum;
mod rejoin;
mod tick;

use super::message::{ClientRef, PeerMessage, PromiseEntry, Record, SubmitReply};
use super::sessions::{Sessions, SESSIONS_CHECKPOINT_SLOTS, SESSIONS_MAX};
use super::state::PersistentState;
use super::types::{Ballot, LogEntry, RequestId, Slot, Standing, Uid, Value};
pub use bounds::{ROUND_MAX, SLOT_LOOKAHEAD_MAX};
use candidate::Campaign;
use leader::Leadership;
use learner::CatchUpProgress;
pub use learner::CATCH_UP_CHUNK_SCALE;
use quorum::ForwardedReads;
pub use quorum::{ReadRef, READS_PENDING_MAX};
use rejoin::{PeerStore, Registration};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// Tunables of one replica. [`ReplicaConfig::new`] fills in sensible bounds.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    pub uid: Uid,
    /// Cluster size, 2f+1 (at most 64).
    pub replicas: usize,
    pub heartbeat_ms: u64,
    pub timeout_ms: u64,
    /// Slots the initial leader (uid 0, ballot (0,0), fresh store) never proposes in.
    pub skip_slots: BTreeSet<Slot>,
    /// Most values in one Accept message.
    pub batch_values_max: usize,
    /// Most value bytes in one Accept, Promise or CatchUp message.
    pub batch_bytes_max: usize,
    /// Most slots the leader has proposed but not yet seen chosen (the pipeline window).
    pub inflight_slots_max: usize,
    /// Most entries in one Promise chunk; a CatchUp chunk holds up to
    /// [`CATCH_UP_CHUNK_SCALE`] times as many (both at most `batch_bytes_max` bytes).
    pub chunk_entries_max: usize,
    /// Largest chat message body accepted from a client.
    pub body_bytes_max: usize,
    /// An acceptor accepts no slot this far or more above its own decided prefix (a
    /// laggard catches up first instead of holding what it cannot apply yet).
    pub accept_window_slots: u64,
    /// Most client requests queued at the leader beyond the pipeline window.
    pub queue_max: usize,
    /// A peer message naming a slot this far or more above our decided prefix is refused
    /// (a broken or hostile peer; a laggard this far behind catches up first).
    pub slot_lookahead_max: u64,
    /// Most client sessions kept (exactly-once, see [`crate::core::Sessions`]). Every
    /// replica of a cluster must use the same bound (it decides which slots are dups).
    pub sessions_max: usize,
    /// The session table is checkpointed every this many applied slots (bounds the
    /// replay at restart).
    pub sessions_checkpoint_slots: u64,
    /// Distinct for every start of this replica, and growing (the driver uses the wall
    /// clock in microseconds): read-index request ids count up from it, so a delayed
    /// reply to a request sent before a restart never answers a read made after it. A
    /// fresh store takes it as its store id.
    pub incarnation: u64,
}

impl ReplicaConfig {
    pub fn new(uid: Uid, replicas: usize, heartbeat_ms: u64, timeout_ms: u64) -> ReplicaConfig {
        ReplicaConfig {
            uid,
            replicas,
            heartbeat_ms,
            timeout_ms,
            skip_slots: BTreeSet::new(),
            batch_values_max: 1024,
            batch_bytes_max: 1024 * 1024,
            inflight_slots_max: 8192,
            accept_window_slots: 65_536,
            chunk_entries_max: 1024,
            body_bytes_max: 64 * 1024,
            queue_max: 100_000,
            slot_lookahead_max: SLOT_LOOKAHEAD_MAX,
            sessions_max: SESSIONS_MAX,
            sessions_checkpoint_slots: SESSIONS_CHECKPOINT_SLOTS,
            incarnation: 0,
        }
    }

    fn majority(&self) -> usize {
        self.replicas / 2 + 1
    }
}

/// What the core reacts to.
#[derive(Clone, Debug)]
pub enum Input {
    /// Time passes. `now_ms` is any monotonic clock in milliseconds; it never goes back.
    Tick { now_ms: u64 },
    /// A message from peer `from`.
    Peer { from: Uid, msg: PeerMessage },
    /// A client asks to append `body`; the reply goes to `client`.
    Submit {
        client: ClientRef,
        id: RequestId,
        body: String,
    },
    /// A linearizable read wants a read index: answered in [`Ready::reads`].
    ReadIndex { read: ReadRef },
    /// The replica is shutting down cleanly: a leader takes no new client values and
    /// tells the followers its final decisions at once; nobody campaigns any more. The
    /// driver keeps stepping until [`Replica::drained`] (or a bounded wait) before it
    /// stops, so every store ends with the same decided log.
    ShutDown,
    /// The records of every [`Ready`] up to and including `seq` are durable. The driver
    /// reports it after each flush; a leader's own accept counts toward a majority only
    /// from then on.
    Persisted { seq: u64 },
}

/// What the driver must do after stepping. The commit path of DESIGN.md: what vouches for
/// a record waits for it, nothing else does.
///
/// - `records`: persist them, in order, after every earlier `Ready`'s (one flush may
///   cover many `Ready`s: group commit), then step [`Input::Persisted`] with `seq`.
/// - `messages`: each vouches for something recorded here or earlier (a Promise, an
///   Accepted, a new leader's first Accepts while its own promise is not yet durable):
///   send only once the records of this `Ready` and every earlier one are durable.
/// - `messages_now`: vouch for nothing that is not already durable (a leader's Accept
///   proposals once its promise is durable, heartbeats, Prepares, Rejects, catch-up):
///   send at once, while `records` are being flushed.
/// - `replies`: client replies. A `Committed` names a slot chosen on a majority of durable
///   accepts (the leader's own counted only after [`Input::Persisted`]), so replies go at
///   once too.
#[derive(Clone, Debug, Default)]
pub struct Ready {
    /// This `Ready`'s number, 1 for the first; consecutive, one per `take_ready`.
    pub seq: u64,
    pub records: Vec<Record>,
    pub messages: Vec<(Uid, PeerMessage)>,
    pub messages_now: Vec<(Uid, PeerMessage)>,
    pub replies: Vec<(ClientRef, SubmitReply)>,
    /// Peer messages refused as out of bounds, with the reason: the driver logs each as a
    /// warning naming the peer. Nothing else comes of them.
    pub warnings: Vec<(Uid, String)>,
    /// Read indexes for [`Input::ReadIndex`]: `Some(s)`: serve the read once the decided
    /// prefix reaches `s`; `None`: no leader confirmed it (the reader retries).
    pub reads: Vec<(ReadRef, Option<Slot>)>,
    /// Answers the driver completes with applied entries read from the store (slots the
    /// core no longer holds): see [`LogSend`].
    pub log_sends: Vec<LogSend>,
}

/// A Promise or CatchUp chunk made of applied entries the core no longer holds (they are
/// durable in the store): the driver reads them with
/// `LogRead::read_log(from_slot, entries_max, bytes_max)`, keeps those below `upto`, and
/// sends [`LogSend::complete`]'s message to `to` (a Promise after the flush of this
/// `Ready`, as it vouches for its promise; a CatchUp at once).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSend {
    pub to: Uid,
    pub from_slot: Slot,
    /// The first slot the core still holds: the chunk stops before it.
    pub upto: Slot,
    pub entries_max: usize,
    pub bytes_max: usize,
    /// The core holds nothing a Promise must report at or above `upto`: a chunk that
    /// reaches `upto` is the last one.
    pub last: bool,
    pub answer: LogAnswer,
}

/// Which message a [`LogSend`] becomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogAnswer {
    /// A Promise chunk of `ballot`; `from_slot` echoes the Prepare's.
    Promise {
        ballot: Ballot,
        decided_upto: Slot,
        /// The promiser's view of store ids (see [`PeerMessage::Promise`]).
        stores: Vec<u64>,
    },
    CatchUp {
        decided_upto: Slot,
    },
}

impl LogSend {
    /// The message, from the entries the store returned for this request, and whether it
    /// vouches for the records of its `Ready` (send it after their flush). `None` if the
    /// store returned nothing (an error was logged by whoever read it): the requester
    /// asks again after its timeout.
    pub fn complete(&self, entries: Vec<LogEntry>) -> Option<(PeerMessage, bool)> {
        let entries: Vec<LogEntry> = entries
            .into_iter()
            .filter(|e| e.slot >= self.from_slot && e.slot < self.upto)
            .collect();
        let end = entries.last()?.slot + 1;
        Some(match &self.answer {
            LogAnswer::Promise {
                ballot,
                decided_upto,
                stores,
            } => (
                PeerMessage::Promise {
                    ballot: *ballot,
                    from_slot: self.from_slot,
                    decided_upto: *decided_upto,
                    stores: stores.clone(),
                    entries: entries
                        .iter()
                        .map(|e| PromiseEntry {
                            slot: e.slot,
                            accepted_in: None,
                            value: e.value(),
                        })
                        .collect(),
                    next_slot: (!(self.last && end >= self.upto)).then_some(end),
                },
                true,
            ),
            LogAnswer::CatchUp { decided_upto } => (
                PeerMessage::CatchUp {
                    entries: entries.iter().map(|e| (e.slot, e.value())).collect(),
                    decided_upto: *decided_upto,
                },
                false,
            ),
        })
    }
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
            && self.messages.is_empty()
            && self.messages_now.is_empty()
            && self.replies.is_empty()
            && self.warnings.is_empty()
            && self.reads.is_empty()
            && self.log_sends.is_empty()
    }

    /// Whether the driver has anything to hand to storage: records, or messages that
    /// must wait for earlier records.
    pub fn needs_flush(&self) -> bool {
        !self.records.is_empty() || !self.messages.is_empty()
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Follower,
    Candidate,
    Leader,
}

/// A snapshot for `paxosctl status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub uid: Uid,
    pub role: Role,
    /// The ballot being led or campaigned for; a follower's promised ballot.
    pub ballot: Ballot,
    /// The leader this replica follows, if known.
    pub leader: Option<Uid>,
    /// Every slot below this is decided here: the length of the applied chat log.
    pub decided_upto: Slot,
    /// Whether this replica's store votes yet (a fresh store registering, a lost disk
    /// rebuilding).
    pub standing: Standing,
}

#[derive(Debug)]
// Leadership is the large one and there is one RoleState per replica: boxing it would
// only add an indirection on the hot path.
#[allow(clippy::large_enum_variant)]
enum RoleState {
    Follower,
    Candidate(Campaign),
    Leader(Leadership),
}

/// One Multi-Paxos replica. See the module doc of [`crate::core`] for the invariants.
#[derive(Debug)]
pub struct Replica {
    config: ReplicaConfig,
    now_ms: u64,
    /// The acceptor's promise (durable). Never decreases.
    promised: Ballot,
    role: RoleState,
    /// The leader this replica believes in.
    leader: Option<Uid>,
    /// When a valid Accept/Heartbeat from `leader` last arrived (leader stickiness).
    leader_heard_ms: Option<u64>,
    /// Failure-detector clock: reset by leader messages, promises given, and campaigns.
    last_heard_ms: u64,
    /// Highest ballot round seen anywhere, so a campaign picks a higher one.
    max_round_seen: u64,
    /// Accepted entries of slots not yet decided here: slot -> (ballot, value).
    accepted: BTreeMap<Slot, (Ballot, Value)>,
    /// Decided entries the store does not hold yet: applied slots from `stored_upto` to
    /// `decided_upto` (their Decided records not yet durable) and decided slots above
    /// the prefix (holes possible). Everything below `stored_upto` is read from the
    /// store by the driver ([`Ready::log_sends`]).
    decided: BTreeMap<Slot, Value>,
    /// Every slot below this is decided and applied.
    decided_upto: Slot,
    /// Every slot below this is applied and its Decided record is durable.
    stored_upto: Slot,
    /// Decided records handed out and not yet durable: (Ready seq, applied prefix they
    /// reach), oldest first.
    storing: VecDeque<(u64, Slot)>,
    /// The applied slots in `stored_upto..decided_upto` that are dups.
    dups_unstored: BTreeSet<Slot>,
    /// Decided slots above `decided_upto`, as disjoint ranges start -> end (exclusive).
    decided_above: BTreeMap<Slot, Slot>,
    /// Exactly-once: per client the latest applied request and its slot.
    sessions: Sessions,
    /// Requests decided above the prefix, not applied yet (a retry joins them instead of
    /// being proposed again): at most one per slot of `decided` above `decided_upto`.
    decided_unapplied: HashMap<RequestId, Slot>,
    /// The applied prefix of the last session checkpoint (persisted or loaded).
    sessions_checkpoint_upto: Slot,
    /// The highest decided prefix each peer has advertised.
    peer_decided_upto: Vec<Slot>,
    /// This store's id (see `rejoin`).
    store: u64,
    /// Whether this store may vote (lost disks, see `rejoin`); durable.
    standing: Standing,
    /// Per uid, the newest store id known (ours at our uid); durable.
    peer_stores: Vec<PeerStore>,
    /// A fresh store's registration answers.
    registration: Registration,
    /// When we, rebuilding, last asked the leader for a fence.
    fence_requested_ms: Option<u64>,
    /// When we, leading, last began a campaign to fence a rebuilding replica.
    fence_campaign_ms: Option<u64>,
    /// Per uid, the fence this leadership completed for it: (store, ballot, end). A
    /// repeated request (the Fenced was lost) gets it again instead of a new campaign.
    fences_done: Vec<Option<(u64, Ballot, Slot)>>,
    /// A store from before store ids: announce its new id once (`Register`, answers
    /// ignored), so that registrars know it if its disk is lost later.
    announce_store: bool,
    /// Clients of chosen requests, answered once the decided prefix passes the request:
    /// only then is its first slot in the log final (a retry may have landed twice).
    awaiting_apply: HashMap<RequestId, Vec<ClientRef>>,
    catch_up: Option<CatchUpProgress>,
    /// Per uid: when a catch-up request to it last went unanswered (cleared when it
    /// answers). Such peers are tried last: they may be dead, their prefix stale.
    catch_up_unanswered_ms: Vec<Option<u64>>,
    ready: Ready,
    /// The highest `Ready::seq` whose records are known durable ([`Input::Persisted`]).
    durable_seq: u64,
    /// Reads forwarded to the leader, waiting for its ReadIndexReply.
    forwarded_reads: ForwardedReads,
    /// Shutting down ([`Input::ShutDown`]): no campaigns, no new proposals.
    shutting_down: bool,
    /// While shutting down: the leader's Handoff, or a plain Heartbeat (it is not
    /// stopping), arrived since.
    heard_after_shutdown: bool,
    next_read_id: u64,
}

impl Replica {
    /// Rebuilds a replica from what storage holds. A fresh store (nothing persisted)
    /// starts promised to (0, 0), with uid 0 leading it; any other replica, and every
    /// restarted one, starts as a follower and never resumes leading an old ballot.
    pub fn new(config: ReplicaConfig, state: PersistentState, now_ms: u64) -> Replica {
        assert!(
            (1..=64).contains(&config.replicas),
            "cluster size must be 1..=64"
        );
        assert!((config.uid as usize) < config.replicas, "uid out of range");
        let fresh = state.is_fresh();
        let config_incarnation = config.incarnation;
        let config_replicas = config.replicas;
        let sessions_max = config.sessions_max;
        let mut replica = Replica {
            peer_decided_upto: vec![0; config.replicas],
            awaiting_apply: HashMap::new(),
            config,
            now_ms,
            promised: Ballot::ZERO,
            role: RoleState::Follower,
            leader: None,
            leader_heard_ms: None,
            last_heard_ms: now_ms,
            max_round_seen: 0,
            accepted: BTreeMap::new(),
            decided: BTreeMap::new(),
            decided_upto: 0,
            stored_upto: 0,
            storing: VecDeque::new(),
            dups_unstored: BTreeSet::new(),
            decided_above: BTreeMap::new(),
            sessions: Sessions::new(sessions_max),
            decided_unapplied: HashMap::new(),
            sessions_checkpoint_upto: 0,
            catch_up: None,
            catch_up_unanswered_ms: vec![None; config_replicas],
            ready: Ready {
                seq: 1,
                ..Ready::default()
            },
            durable_seq: 0,
            forwarded_reads: ForwardedReads::new(),
            shutting_down: false,
            heard_after_shutdown: false,
            next_read_id: config_incarnation,
            store: 0,
            standing: Standing::Voter,
            peer_stores: vec![PeerStore::default(); config_replicas],
            registration: Registration {
                answers: vec![None; config_replicas],
                sent_ms: None,
            },
            fence_requested_ms: None,
            fence_campaign_ms: None,
            fences_done: vec![None; config_replicas],
            announce_store: false,
        };
        // The store's identity: a fresh store (or a restored one, store 0) takes a new id
        // and registers before it votes; a store from before store ids is a voter.
        let (store, standing) = match state.identity {
            Some((store, standing)) if store != 0 => (store, standing),
            Some((_, standing)) => (0, standing),
            None if fresh => (0, Standing::Unregistered),
            None => {
                replica.announce_store = true;
                (0, Standing::Voter)
            }
        };
        replica.standing = standing;
        replica.store = store;
        if store == 0 {
            replica.store = config_incarnation.max(1);
            replica.ready.records.push(Record::Identity {
                store: replica.store,
                standing,
            });
        }
        for (uid, store, replaced) in &state.peer_stores {
            if let Some(p) = replica.peer_stores.get_mut(*uid as usize) {
                *p = PeerStore {
                    store: *store,
                    replaced: *replaced,
                };
            }
        }
        let me = replica.config.uid as usize;
        replica.peer_stores[me] = PeerStore {
            store: replica.store,
            replaced: false,
        };
        if fresh {
            // Every fresh acceptor is promised to (0, 0): uid 0 leads it (uid 0 itself
            // once its store has registered).
            if replica.config.uid != 0 {
                replica.leader = Some(0);
            }
            if replica.standing == Standing::Voter {
                // Registered before a restart (or a one-replica cluster): as fresh.
                replica.ready.records.push(Record::Promise(Ballot::ZERO));
                if replica.config.uid == 0 {
                    replica.lead_initial_ballot();
                }
            }
            return replica;
        }
        // A batch may have been cut by a crash after an accept but before its promise:
        // an accept in ballot b implies a promise of b.
        let accepted_max = state.accepted.values().map(|(b, _)| *b).max();
        replica.promised = state
            .promised
            .into_iter()
            .chain(accepted_max)
            .max()
            .unwrap_or_default();
        replica.max_round_seen = replica.promised.round;
        // The applied log stays in the store; only the session table is rebuilt, from
        // its checkpoint and the entries applied after it.
        replica.decided_upto = state.decided_upto;
        replica.stored_upto = state.decided_upto;
        replica.sessions_checkpoint_upto = state.sessions_upto;
        replica.sessions = Sessions::from_checkpoint(replica.config.sessions_max, &state.sessions);
        for entry in &state.tail {
            if entry.slot >= state.sessions_upto && entry.slot < state.decided_upto {
                replica.sessions.replay(entry);
            }
        }
        replica.accepted = state
            .accepted
            .into_iter()
            .filter(|(slot, _)| *slot >= replica.decided_upto)
            .collect();
        replica
    }
    /// Uid 0 on a fresh cluster leads ballot (0, 0) without phase 1: every acceptor starts
    /// promised to it.
    fn lead_initial_ballot(&mut self) {
        let promise_seq = self.ready.seq;
        self.role = RoleState::Leader(Leadership::new(
            Ballot::ZERO,
            0,
            0,
            self.now_ms,
            promise_seq,
            self.config.replicas,
        ));
        self.leader = Some(self.config.uid);
    }

    /// Feeds one input. Effects accumulate until [`Replica::take_ready`].
    pub fn step(&mut self, input: Input) {
        match input {
            Input::Tick { now_ms } => {
                self.now_ms = self.now_ms.max(now_ms);
                self.on_tick();
            }
            Input::Peer { from, msg } => {
                if (from as usize) >= self.config.replicas || from == self.config.uid {
                    return;
                }
                self.on_peer(from, msg);
            }
            Input::Submit { client, id, body } => self.on_submit(client, id, body),
            Input::Persisted { seq } => self.on_persisted(seq),
            Input::ReadIndex { read } => self.on_read_index(read),
            Input::ShutDown => self.on_shut_down(),
        }
    }
    /// Everything to persist, send and reply since the last call. Proposes queued client
    /// values first, so that every submit stepped since the last call shares one batch.
    pub fn take_ready(&mut self) -> Ready {
        if matches!(&self.role, RoleState::Leader(l) if l.quorum.beat_wanted) {
            self.send_heartbeat();
        }
        self.flush_proposals();
        let next = Ready {
            seq: self.ready.seq + 1,
            ..Ready::default()
        };
        std::mem::replace(&mut self.ready, next)
    }
    pub fn status(&self) -> ReplicaStatus {
        let (role, ballot) = match &self.role {
            RoleState::Follower => (Role::Follower, self.promised),
            RoleState::Candidate(c) => (Role::Candidate, c.ballot),
            RoleState::Leader(l) => (Role::Leader, l.ballot),
        };
        ReplicaStatus {
            uid: self.config.uid,
            role,
            ballot,
            leader: self.leader,
            decided_upto: self.decided_upto,
            standing: self.standing,
        }
    }
    /// After [`Input::ShutDown`]: whether this replica has handed off what it must. A
    /// leader: nothing in flight, and every peer heard from within `timeout_ms` has
    /// acknowledged our decided prefix. A follower: its leader spoke since (a Handoff if
    /// it stops too, a Heartbeat if not) and it has decided up to the prefix advertised.
    pub fn drained(&self) -> bool {
        let me = self.config.uid as usize;
        match &self.role {
            RoleState::Leader(l) => {
                l.inflight.is_empty()
                    && self.peer_decided_upto.iter().enumerate().all(|(p, upto)| {
                        p == me
                            || *upto >= self.decided_upto
                            || self.now_ms.saturating_sub(l.quorum.heard_ms[p])
                                >= self.config.timeout_ms
                    })
            }
            _ => match self.leader {
                Some(leader) if leader as usize != me => {
                    self.heard_after_shutdown
                        && self.decided_upto >= self.peer_decided_upto[leader as usize]
                }
                _ => true,
            },
        }
    }

    pub fn uid(&self) -> Uid {
        self.config.uid
    }
    /// Whether this replica's store votes yet (lost disks).
    pub fn standing(&self) -> Standing {
        self.standing
    }
    /// This store's id.
    pub fn store(&self) -> u64 {
        self.store
    }
    pub fn promised(&self) -> Ballot {
        self.promised
    }
    pub fn is_leader(&self) -> bool {
        matches!(self.role, RoleState::Leader(_))
    }
    /// Every slot below this is decided here.
    pub fn decided_upto(&self) -> Slot {
        self.decided_upto
    }
    /// How far this replica's decided prefix trails the most advanced one a peer has
    /// reported (0 when it is not behind): the catch-up still to do.
    pub fn catch_up_backlog(&self) -> u64 {
        let ahead = self.peer_decided_upto.iter().copied().max().unwrap_or(0);
        ahead.saturating_sub(self.decided_upto)
    }
    /// The decided slots the core still holds: from [`Replica::stored_upto`] on, holes
    /// included (the store holds every applied slot below).
    pub fn decided(&self) -> &BTreeMap<Slot, Value> {
        &self.decided
    }
    /// Every slot below this is applied and durable in the store; reads below it go to
    /// the store ([`crate::storage::LogRead`]).
    pub fn stored_upto(&self) -> Slot {
        self.stored_upto
    }
    /// Client sessions held (bounded by `sessions_max`).
    pub fn sessions_len(&self) -> usize {
        self.sessions.len()
    }
    /// The highest slot this replica holds anything for.
    pub fn last_slot(&self) -> Option<Slot> {
        let d = self.decided.keys().next_back().copied();
        let a = self.accepted.keys().next_back().copied();
        let applied = self.decided_upto.checked_sub(1);
        d.max(a).max(applied)
    }
    /// The applied chat log the core still holds, from `from_slot`: applied slots from
    /// `max(from_slot, stored_upto)` below the decided prefix, at most `max` of them,
    /// each marked msg, noop or dup (a later copy of a request). Slots below
    /// [`Replica::stored_upto`] are read from the store.
    pub fn log_entries(&self, from_slot: Slot, max: usize) -> Vec<LogEntry> {
        self.log_page(from_slot, max, usize::MAX)
    }

    /// As [`Replica::log_entries`], also stopping before the bodies pass `bytes_max`
    /// (always at least one entry, so a reader makes progress).
    pub fn log_page(&self, from_slot: Slot, max: usize, bytes_max: usize) -> Vec<LogEntry> {
        let from_slot = from_slot.max(self.stored_upto);
        if from_slot >= self.decided_upto {
            return Vec::new();
        }
        let mut bytes = 0usize;
        let mut page = Vec::new();
        for (slot, value) in self.decided.range(from_slot..self.decided_upto).take(max) {
            let size = value.size_bytes();
            if !page.is_empty() && bytes.saturating_add(size) > bytes_max {
                break;
            }
            bytes = bytes.saturating_add(size);
            page.push(LogEntry::from_decided(
                *slot,
                value,
                !self.dups_unstored.contains(slot),
            ));
        }
        page
    }

    // ---------------------------------------------------------------- dispatch

    pub(super) fn on_peer(&mut self, from: Uid, msg: PeerMessage) {
        if let Some(reason) = self.out_of_bounds(&msg) {
            self.ready.warnings.push((from, reason));
            return;
        }
        match msg {
            PeerMessage::Prepare {
                ballot,
                from_slot,
                stores,
            } => {
                self.learn_stores(&stores);
                self.on_prepare(from, ballot, from_slot)
            }
            PeerMessage::Promise {
                ballot,
                from_slot,
                decided_upto,
                entries,
                next_slot,
                stores,
            } => {
                self.learn_stores(&stores);
                self.on_promise(
                    from,
                    &stores,
                    ballot,
                    from_slot,
                    decided_upto,
                    entries,
                    next_slot,
                )
            }
            PeerMessage::Register { store } => self.on_register(from, store),
            PeerMessage::Registered {
                store,
                known,
                replaced,
            } => self.on_registered(from, store, known, replaced),
            PeerMessage::FenceRequest { store } => self.on_fence_request(from, store),
            PeerMessage::Fenced { ballot, end, store } => self.on_fenced(from, ballot, end, store),
            PeerMessage::Reject {
                ballot,
                promised,
                live_leader,
            } => self.on_reject(ballot, promised, live_leader),
            PeerMessage::Accept {
                ballot,
                first_slot,
                values,
                decided_upto,
                decided_above,
            } => self.on_accept(
                from,
                ballot,
                first_slot,
                values,
                decided_upto,
                &decided_above,
            ),
            PeerMessage::Accepted {
                ballot,
                first_slot,
                count,
                decided_upto,
            } => self.on_accepted(from, ballot, first_slot, count, decided_upto),
            PeerMessage::Heartbeat {
                ballot,
                beat,
                decided_upto,
                decided_above,
            } => self.on_heartbeat(from, ballot, beat, decided_upto, &decided_above),
            PeerMessage::CatchUpRequest { from_slot } => self.on_catch_up_request(from, from_slot),
            PeerMessage::HeartbeatAck {
                ballot,
                beat,
                decided_upto,
            } => self.on_heartbeat_ack(from, ballot, beat, decided_upto),
            PeerMessage::ReadIndexRequest { id } => self.on_read_index_request(from, id),
            PeerMessage::ReadIndexReply { id, read_index } => {
                self.on_read_index_reply(id, read_index)
            }
            PeerMessage::Handoff {
                ballot,
                decided_upto,
            } => self.on_handoff(from, ballot, decided_upto),
            PeerMessage::CatchUp {
                entries,
                decided_upto,
            } => self.on_catch_up(from, entries, decided_upto),
        }
    }

    pub(super) fn send(&mut self, to: Uid, msg: PeerMessage) {
        debug_assert_ne!(to, self.config.uid, "never send to self");
        // Persist before you vouch: a Promise or an Accepted waits for its records; a
        // leader's Accepts wait only until its own promise of the ballot is durable (its
        // phase-1 majority counted that promise). Everything else goes at once.
        let vouches = match &msg {
            // ReadIndexReply vouches for nothing on disk: a read index is about what is
            // chosen, which a majority holds durably.
            // Registered vouches for the new store id, Fenced for the leader's own
            // promise of the fencing ballot.
            PeerMessage::Promise { .. }
            | PeerMessage::Accepted { .. }
            | PeerMessage::Registered { .. }
            | PeerMessage::Fenced { .. } => true,
            PeerMessage::Accept { .. } => !self.leader_promise_durable(),
            _ => false,
        };
        if vouches {
            self.ready.messages.push((to, msg));
        } else {
            self.ready.messages_now.push((to, msg));
        }
    }

    /// A request to the driver for a Promise or CatchUp chunk of applied slots the core
    /// no longer holds (from `from_slot` up to `stored_upto`).
    fn log_send(&self, to: Uid, from_slot: Slot, answer: LogAnswer) -> LogSend {
        LogSend {
            to,
            from_slot,
            upto: self.stored_upto,
            entries_max: match answer {
                LogAnswer::CatchUp { .. } => self.catch_up_entries_max(),
                LogAnswer::Promise { .. } => self.config.chunk_entries_max,
            },
            bytes_max: self.config.batch_bytes_max,
            last: self.accepted.range(from_slot..).next().is_none()
                && self.decided.range(from_slot..).next().is_none(),
            answer,
        }
    }

    /// Whether `slot` is decided here (applied, or decided above the prefix).
    pub(super) fn is_decided(&self, slot: Slot) -> bool {
        slot < self.decided_upto || self.decided.contains_key(&slot)
    }

    /// Whether this replica leads a ballot whose promise is durable here.
    fn leader_promise_durable(&self) -> bool {
        matches!(&self.role, RoleState::Leader(l) if l.promise_seq <= self.durable_seq)
    }

    pub(super) fn peers(&self) -> impl Iterator<Item = Uid> + 'static {
        let me = self.config.uid;
        (0..self.config.replicas as Uid).filter(move |u| *u != me)
    }

    pub(super) fn broadcast(&mut self, msg: PeerMessage) {
        for peer in self.peers() {
            self.send(peer, msg.clone());
        }
    }

    /// Refuses `ballot` from `to`: the one way a Prepare, Accept or Heartbeat is refused,
    /// with our promise and the live leader we stick to (if that is the reason).
    fn reject(&mut self, to: Uid, ballot: Ballot, live_leader: Option<Uid>) {
        let promised = self.promised;
        self.send(
            to,
            PeerMessage::Reject {
                ballot,
                promised,
                live_leader,
            },
        );
    }

    /// Takes one chunk of a Promise or CatchUp answer from `items` (in slot order): at
    /// most `entries_max` entries and `batch_bytes_max` value bytes (but always at least
    /// one entry). Returns the chunk and the slot the next chunk starts at (`None`:
    /// nothing is left). `slot_and_size` gives an item's slot and value bytes.
    fn chunk<T>(
        &self,
        items: impl Iterator<Item = T>,
        entries_max: usize,
        slot_and_size: impl Fn(&T) -> (Slot, usize),
    ) -> (Vec<T>, Option<Slot>) {
        let mut entries = Vec::new();
        let mut bytes = 0;
        for item in items {
            let (slot, size) = slot_and_size(&item);
            if entries.len() >= entries_max
                || (bytes > 0 && bytes + size > self.config.batch_bytes_max)
            {
                return (entries, Some(slot));
            }
            bytes += size;
            entries.push(item);
        }
        (entries, None)
    }

    /// Raises the promise, durably. Invariant: a promise never goes backwards.
    pub(super) fn promise(&mut self, ballot: Ballot) {
        debug_assert!(ballot >= self.promised, "promise went backwards");
        if ballot > self.promised {
            self.promised = ballot;
            self.ready.records.push(Record::Promise(ballot));
        }
        self.max_round_seen = self.max_round_seen.max(ballot.round);
    }

    /// Who this acceptor is sticky to: a live leader heard within `timeout_ms`, or itself
    /// if it leads.
    pub(super) fn sticky_leader(&self) -> Option<Uid> {
        if self.is_leader() {
            return Some(self.config.uid);
        }
        match self.leader_heard_ms {
            Some(t) if self.now_ms.saturating_sub(t) < self.config.timeout_ms => self.leader,
            _ => None,
        }
    }

    pub(super) fn become_follower(&mut self, leader: Option<Uid>) {
        self.release_clients(leader);
        self.role = RoleState::Follower;
        self.leader = leader;
        self.last_heard_ms = self.now_ms;
    }
}

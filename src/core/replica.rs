//! One Multi-Paxos replica (acceptor, learner and, when elected, proposer) as a pure state
//! machine: [`Replica::step`] takes an [`Input`], [`Replica::take_ready`] hands back a
//! [`Ready`] of records to persist, messages to send and client replies. The driver must
//! persist `records` durably before it sends any message or reply of the same `Ready`.
//!
//! Where each message is handled: `on_prepare` (acceptor, phase 1), `on_promise`
//! (candidate), `on_accept` (acceptor, phase 2), `on_accepted` (leader), `on_heartbeat`,
//! `on_reject`, `on_catch_up_request` / `on_catch_up`, `on_submit` (client), `on_tick`
//! (heartbeats, failure detection, retransmission).

use super::applied::applied_entry;
use super::message::{ClientRef, PeerMessage, PromiseEntry, Record, SlotRange, SubmitReply};
use super::state::PersistentState;
use super::types::{Ballot, LogEntry, RequestId, Slot, Uid, Value};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

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
    /// Most entries in one Promise or CatchUp chunk.
    pub chunk_entries_max: usize,
    /// Largest chat message body accepted from a client.
    pub body_bytes_max: usize,
    /// Most client requests queued at the leader beyond the pipeline window.
    pub queue_max: usize,
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
            chunk_entries_max: 1024,
            body_bytes_max: 64 * 1024,
            queue_max: 100_000,
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
}

/// What the driver must do after stepping: persist `records` (durably, in order), then
/// send `messages` and `replies`.
#[derive(Clone, Debug, Default)]
pub struct Ready {
    pub records: Vec<Record>,
    pub messages: Vec<(Uid, PeerMessage)>,
    pub replies: Vec<(ClientRef, SubmitReply)>,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.messages.is_empty() && self.replies.is_empty()
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
}

/// A campaign's progress with one acceptor.
#[derive(Clone, Debug)]
struct PromiseProgress {
    /// All chunks received.
    done: bool,
    /// The `from_slot` of the Prepare last sent.
    from_slot: Slot,
    sent_ms: u64,
}

/// Phase 1 in progress.
#[derive(Debug)]
struct Campaign {
    ballot: Ballot,
    /// Indexed by uid; `None` for self.
    progress: Vec<Option<PromiseProgress>>,
    /// Highest-ranked entry reported per slot: `accepted_in == None` (decided) outranks all.
    reported: BTreeMap<Slot, (Option<Ballot>, Value)>,
    /// The leader this campaign replaces (the one we stopped hearing), if known.
    deposing: Option<Uid>,
}

/// A value the leader proposed in its ballot that is not chosen yet.
#[derive(Debug)]
struct Proposal {
    value: Value,
    /// Bit `uid` set once `uid` accepted this slot in the leader's ballot.
    acks: u64,
    sent_ms: u64,
    clients: Vec<ClientRef>,
}

/// A client request waiting for room in the pipeline window.
#[derive(Debug)]
struct Queued {
    id: RequestId,
    body: String,
    clients: Vec<ClientRef>,
}

/// Phase 2: this replica leads `ballot`.
#[derive(Debug)]
struct Leadership {
    ballot: Ballot,
    /// The first slot this leadership proposes in (everything from here on is either
    /// proposed in `ballot` or learned in phase 1). Catch-up never decides slots at or
    /// above it while leading: the leader advertises only what it chose itself.
    start_slot: Slot,
    /// The next slot a fresh client value goes into.
    next_slot: Slot,
    inflight: BTreeMap<Slot, Proposal>,
    /// Which slot an in-flight request was proposed in (joins duplicates).
    request_slots: HashMap<RequestId, Slot>,
    queue: VecDeque<Queued>,
    /// The ids in `queue`, so a duplicate submit is found without a scan.
    queued: HashSet<RequestId>,
    heartbeat_sent_ms: u64,
    resend_scan_ms: u64,
}

#[derive(Debug)]
enum RoleState {
    Follower,
    Candidate(Campaign),
    Leader(Leadership),
}

/// A catch-up request in flight.
#[derive(Debug)]
struct CatchUpProgress {
    peer: Uid,
    sent_ms: u64,
}

/// Most ranges of decided slots above the prefix carried by one Accept or Heartbeat.
const DECIDED_RANGES_MAX: usize = 64;

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
    /// Decided entries (the chat log, holes possible above `decided_upto`).
    decided: BTreeMap<Slot, Value>,
    /// Every slot below this is decided.
    decided_upto: Slot,
    /// Decided slots above `decided_upto`, as disjoint ranges start -> end (exclusive).
    decided_above: BTreeMap<Slot, Slot>,
    /// For every request in `decided`, the lowest slot it is decided at.
    first_slot_of: HashMap<RequestId, Slot>,
    /// The highest decided prefix each peer has advertised.
    peer_decided_upto: Vec<Slot>,
    /// Clients of chosen requests, answered once the decided prefix passes the request:
    /// only then is its first slot in the log final (a retry may have landed twice).
    awaiting_apply: HashMap<RequestId, Vec<ClientRef>>,
    catch_up: Option<CatchUpProgress>,
    /// The last catch-up peer that did not answer in time: tried last next time (it may
    /// be dead, and its advertised prefix stale).
    catch_up_unanswered: Option<Uid>,
    ready: Ready,
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
            decided_above: BTreeMap::new(),
            first_slot_of: HashMap::new(),
            catch_up: None,
            catch_up_unanswered: None,
            ready: Ready::default(),
        };
        if fresh {
            // Mark the store as used, so a restart is told apart from a fresh start.
            replica.ready.records.push(Record::Promise(Ballot::ZERO));
            replica.leader = Some(0);
            if replica.config.uid == 0 {
                replica.role = RoleState::Leader(Leadership::new(Ballot::ZERO, 0, 0, now_ms));
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
        for (slot, value) in state.decided {
            replica.learn_decided(slot, value);
        }
        for (slot, entry) in state.accepted {
            if !replica.decided.contains_key(&slot) {
                replica.accepted.insert(slot, entry);
            }
        }
        replica
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
        }
    }

    /// Everything to persist, send and reply since the last call. Proposes queued client
    /// values first, so that every submit stepped since the last call shares one batch.
    pub fn take_ready(&mut self) -> Ready {
        self.flush_proposals();
        std::mem::take(&mut self.ready)
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
        }
    }

    pub fn uid(&self) -> Uid {
        self.config.uid
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

    /// Every decided slot known here, holes included.
    pub fn decided(&self) -> &BTreeMap<Slot, Value> {
        &self.decided
    }

    /// The highest slot this replica holds anything for.
    pub fn last_slot(&self) -> Option<Slot> {
        let d = self.decided.keys().next_back().copied();
        let a = self.accepted.keys().next_back().copied();
        d.max(a)
    }

    /// The applied chat log from `from_slot`: decided slots below the decided prefix, at
    /// most `max` of them, each marked msg, noop or dup (a later copy of a request).
    pub fn log_entries(&self, from_slot: Slot, max: usize) -> Vec<LogEntry> {
        if from_slot >= self.decided_upto {
            return Vec::new();
        }
        self.decided
            .range(from_slot..self.decided_upto)
            .take(max)
            .map(|(slot, value)| {
                let first = value
                    .request_id()
                    .and_then(|id| self.first_slot_of.get(&id).copied());
                applied_entry(*slot, value, first)
            })
            .collect()
    }

    // ---------------------------------------------------------------- dispatch

    fn on_peer(&mut self, from: Uid, msg: PeerMessage) {
        match msg {
            PeerMessage::Prepare { ballot, from_slot } => self.on_prepare(from, ballot, from_slot),
            PeerMessage::Promise {
                ballot,
                from_slot,
                decided_upto,
                entries,
                next_slot,
            } => self.on_promise(from, ballot, from_slot, decided_upto, entries, next_slot),
            PeerMessage::Reject {
                ballot,
                promised,
                live_leader,
            } => self.on_reject(ballot, promised, live_leader),
            PeerMessage::Accept {
                ballot,
                first_slot,
                values,
                commit,
                decided_above,
            } => self.on_accept(from, ballot, first_slot, values, commit, &decided_above),
            PeerMessage::Accepted {
                ballot,
                first_slot,
                count,
                decided_upto,
            } => self.on_accepted(from, ballot, first_slot, count, decided_upto),
            PeerMessage::Heartbeat {
                ballot,
                commit,
                decided_above,
            } => self.on_heartbeat(from, ballot, commit, &decided_above),
            PeerMessage::CatchUpRequest { from_slot } => self.on_catch_up_request(from, from_slot),
            PeerMessage::CatchUp {
                entries,
                decided_upto,
            } => self.on_catch_up(from, entries, decided_upto),
        }
    }

    fn send(&mut self, to: Uid, msg: PeerMessage) {
        debug_assert_ne!(to, self.config.uid, "never send to self");
        self.ready.messages.push((to, msg));
    }

    fn peers(&self) -> impl Iterator<Item = Uid> + 'static {
        let me = self.config.uid;
        (0..self.config.replicas as Uid).filter(move |u| *u != me)
    }

    fn broadcast(&mut self, msg: PeerMessage) {
        for peer in self.peers() {
            self.send(peer, msg.clone());
        }
    }

    /// Raises the promise, durably. Invariant: a promise never goes backwards.
    fn promise(&mut self, ballot: Ballot) {
        debug_assert!(ballot >= self.promised, "promise went backwards");
        if ballot > self.promised {
            self.promised = ballot;
            self.ready.records.push(Record::Promise(ballot));
        }
        self.max_round_seen = self.max_round_seen.max(ballot.round);
    }

    /// Who this acceptor is sticky to: a live leader heard within `timeout_ms`, or itself
    /// if it leads.
    fn sticky_leader(&self) -> Option<Uid> {
        if self.is_leader() {
            return Some(self.config.uid);
        }
        match self.leader_heard_ms {
            Some(t) if self.now_ms.saturating_sub(t) < self.config.timeout_ms => self.leader,
            _ => None,
        }
    }

    /// Leaving leadership: every client waiting on this leader's proposals or queue is
    /// told to go elsewhere now (it retries with the same id; a proposal that still gets
    /// chosen is found by the next leader's dedupe), instead of waiting for a timeout.
    fn release_clients(&mut self, leader: Option<Uid>) {
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        let mut released: Vec<(ClientRef, RequestId)> = Vec::new();
        for proposal in std::mem::take(&mut l.inflight).into_values() {
            if let Some(id) = proposal.value.request_id() {
                released.extend(proposal.clients.into_iter().map(|c| (c, id)));
            }
        }
        for queued in std::mem::take(&mut l.queue) {
            released.extend(queued.clients.into_iter().map(|c| (c, queued.id)));
        }
        l.queued.clear();
        l.request_slots.clear();
        for (client, id) in released {
            self.ready
                .replies
                .push((client, SubmitReply::NotLeader { id, leader }));
        }
    }

    fn become_follower(&mut self, leader: Option<Uid>) {
        self.release_clients(leader);
        self.role = RoleState::Follower;
        self.leader = leader;
        self.last_heard_ms = self.now_ms;
    }

    // ---------------------------------------------------------------- acceptor: phase 1

    /// Phase 1b. Refused while a live leader is heard (stickiness) or for a ballot below
    /// the promise; otherwise the promise is persisted and accepted/decided entries from
    /// `max(from_slot, decided_upto)` are reported, one chunk at a time.
    fn on_prepare(&mut self, from: Uid, ballot: Ballot, from_slot: Slot) {
        if ballot.uid != from {
            return;
        }
        self.max_round_seen = self.max_round_seen.max(ballot.round);
        // Stickiness first: a live leader other than the candidate refuses it outright.
        let live_leader = self.sticky_leader().filter(|live| *live != from);
        if live_leader.is_some() || ballot < self.promised {
            let promised = self.promised;
            self.send(
                from,
                PeerMessage::Reject {
                    ballot,
                    promised,
                    live_leader,
                },
            );
            return;
        }
        self.promise(ballot);
        match &self.role {
            RoleState::Candidate(c) if c.ballot < ballot => self.become_follower(None),
            RoleState::Leader(l) if l.ballot < ballot => self.become_follower(None),
            _ => {}
        }
        if !matches!(self.role, RoleState::Candidate(_)) {
            self.leader = None;
        }
        self.last_heard_ms = self.now_ms;

        // Everything from the candidate's own prefix on, decided values included: the
        // candidate must not depend on any one peer for slots it lacks.
        let start = from_slot;
        let mut entries = Vec::new();
        let mut bytes = 0;
        let mut accepted = self.accepted.range(start..).peekable();
        let mut decided = self.decided.range(start..).peekable();
        let mut next_slot = None;
        loop {
            let take_accepted = match (accepted.peek(), decided.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((a, _)), Some((d, _))) => a < d,
            };
            let entry = if take_accepted {
                let (slot, (b, v)) = accepted.next().expect("peeked");
                PromiseEntry {
                    slot: *slot,
                    accepted_in: Some(*b),
                    value: v.clone(),
                }
            } else {
                let (slot, v) = decided.next().expect("peeked");
                PromiseEntry {
                    slot: *slot,
                    accepted_in: None,
                    value: v.clone(),
                }
            };
            if entries.len() >= self.config.chunk_entries_max
                || (bytes > 0 && bytes + entry.value.size_bytes() > self.config.batch_bytes_max)
            {
                next_slot = Some(entry.slot);
                break;
            }
            bytes += entry.value.size_bytes();
            entries.push(entry);
        }
        let decided_upto = self.decided_upto;
        self.send(
            from,
            PeerMessage::Promise {
                ballot,
                from_slot,
                decided_upto,
                entries,
                next_slot,
            },
        );
    }

    // ---------------------------------------------------------------- candidate: phase 1

    /// Starts phase 1 with a round above any seen. The candidate does not promise itself
    /// until a majority of the others has promised: until then it keeps following a live
    /// leader it hears, so a partitioned replica cannot depose a healthy one.
    fn start_campaign(&mut self) {
        self.release_clients(None);
        let ballot = Ballot::new(
            self.max_round_seen.max(self.promised.round) + 1,
            self.config.uid,
        );
        self.max_round_seen = ballot.round;
        let from_slot = self.decided_upto;
        let mut progress = vec![None; self.config.replicas];
        for peer in self.peers() {
            progress[peer as usize] = Some(PromiseProgress {
                done: false,
                from_slot,
                sent_ms: self.now_ms,
            });
            self.send(peer, PeerMessage::Prepare { ballot, from_slot });
        }
        let deposing = self.leader.filter(|l| *l != self.config.uid);
        self.role = RoleState::Candidate(Campaign {
            ballot,
            progress,
            reported: BTreeMap::new(),
            deposing,
        });
        self.leader = None;
        self.last_heard_ms = self.now_ms;
        self.maybe_win_campaign();
    }

    fn on_promise(
        &mut self,
        from: Uid,
        ballot: Ballot,
        from_slot: Slot,
        decided_upto: Slot,
        entries: Vec<PromiseEntry>,
        next_slot: Option<Slot>,
    ) {
        self.note_peer_decided(from, decided_upto);
        let now_ms = self.now_ms;
        let RoleState::Candidate(campaign) = &mut self.role else {
            return;
        };
        if campaign.ballot != ballot {
            return;
        }
        let Some(progress) = campaign.progress[from as usize].as_mut() else {
            return;
        };
        if progress.done || progress.from_slot != from_slot {
            return; // a duplicate, or a chunk answering an earlier request
        }
        let mut ask_next = None;
        match next_slot {
            Some(next) if next > progress.from_slot => {
                progress.from_slot = next;
                progress.sent_ms = now_ms;
                ask_next = Some(next);
            }
            Some(_) => {} // a stale chunk: the retransmission timer asks again
            None => progress.done = true,
        }
        for entry in entries {
            rank_entry(
                &mut campaign.reported,
                entry.slot,
                entry.accepted_in,
                entry.value,
            );
        }
        match ask_next {
            Some(from_slot) => self.send(from, PeerMessage::Prepare { ballot, from_slot }),
            None => self.maybe_win_campaign(),
        }
    }

    fn maybe_win_campaign(&mut self) {
        let RoleState::Candidate(campaign) = &self.role else {
            return;
        };
        let promises = 1 + campaign
            .progress
            .iter()
            .flatten()
            .filter(|p| p.done)
            .count();
        if promises < self.config.majority() {
            return;
        }
        let RoleState::Candidate(campaign) = std::mem::replace(&mut self.role, RoleState::Follower)
        else {
            unreachable!("checked above");
        };
        if campaign.ballot < self.promised {
            // Promised a higher candidate meanwhile: this ballot can no longer lead.
            self.become_follower(None);
            return;
        }
        self.become_leader(campaign);
    }

    /// Phase 1 is complete: promise our own ballot, then re-propose, for every slot from
    /// the highest reported decided prefix up to the highest slot anyone reported, the
    /// value with the highest ballot (decided values outrank all), or a no-op.
    fn become_leader(&mut self, mut campaign: Campaign) {
        let ballot = campaign.ballot;
        self.promise(ballot);
        // Promises reported everything from our own decided prefix on (decided values
        // too), so no slot depends on a peer that may since have died.
        let start = self.decided_upto;
        // Our own acceptor state counts as one promise.
        for (slot, (b, v)) in self.accepted.range(start..) {
            rank_entry(&mut campaign.reported, *slot, Some(*b), v.clone());
        }
        for (slot, v) in self.decided.range(start..) {
            rank_entry(&mut campaign.reported, *slot, None, v.clone());
        }
        let end = campaign
            .reported
            .keys()
            .next_back()
            .map_or(start, |s| s.saturating_add(1).max(start));
        let mut leadership = Leadership::new(ballot, start, end, self.now_ms);
        self.leader = Some(self.config.uid);
        // Decided values reported by promises are chosen: learn them directly.
        let mut to_propose = Vec::new();
        for slot in start..end {
            if self.decided.contains_key(&slot) {
                continue;
            }
            match campaign.reported.remove(&slot) {
                Some((None, value)) => self.decide(slot, value),
                Some((Some(_), value)) => to_propose.push((slot, value)),
                None => to_propose.push((slot, Value::Noop)),
            }
        }
        let mut proposed = Vec::with_capacity(to_propose.len());
        for (slot, value) in to_propose {
            self.propose(&mut leadership, slot, value, Vec::new());
            proposed.push(slot);
        }
        self.role = RoleState::Leader(leadership);
        self.send_accepts(&proposed, None);
        self.send_heartbeat();
        self.check_chosen(&proposed);
        self.maybe_catch_up();
    }

    fn on_reject(&mut self, ballot: Ballot, promised: Ballot, live_leader: Option<Uid>) {
        self.max_round_seen = self.max_round_seen.max(promised.round);
        let me = self.config.uid;
        match &self.role {
            RoleState::Candidate(c) if c.ballot == ballot => {
                let deposing = c.deposing;
                if let Some(live) = live_leader.filter(|l| *l != me) {
                    self.become_follower(Some(live));
                    if deposing == Some(live) {
                        // The acceptor heard the leader we gave up on a moment after we
                        // last did: if it stays silent, try again after two heartbeats
                        // rather than a whole timeout (keeping the rank order).
                        let retry_ms = (2 * self.config.heartbeat_ms).min(self.config.timeout_ms);
                        self.last_heard_ms = self
                            .now_ms
                            .saturating_sub(self.config.timeout_ms - retry_ms);
                    }
                } else if promised > ballot {
                    self.become_follower(None);
                }
            }
            RoleState::Leader(l) if l.ballot == ballot && promised > ballot => {
                if let Some(live) = live_leader.filter(|l| *l != me) {
                    self.become_follower(Some(live));
                } else {
                    // An acceptor promised a stray candidate while we are alive: lead
                    // again under a higher ballot.
                    self.start_campaign();
                }
            }
            _ => {}
        }
    }

    // ---------------------------------------------------------------- acceptor: phase 2

    /// A leader message with `ballot` arrived from `from`. Returns false (and rejects) if
    /// the ballot is below our promise; otherwise adopts `from` as leader.
    fn hear_leader(&mut self, from: Uid, ballot: Ballot) -> bool {
        if ballot.uid != from {
            return false;
        }
        if ballot < self.promised {
            let promised = self.promised;
            let live_leader = self.sticky_leader();
            self.send(
                from,
                PeerMessage::Reject {
                    ballot,
                    promised,
                    live_leader,
                },
            );
            return false;
        }
        self.promise(ballot);
        match &self.role {
            RoleState::Follower => {}
            RoleState::Candidate(_) => self.role = RoleState::Follower,
            RoleState::Leader(l) => {
                debug_assert!(l.ballot < ballot, "two leaders of ballot {ballot}");
                self.release_clients(Some(from));
                self.role = RoleState::Follower;
            }
        }
        self.leader = Some(from);
        self.leader_heard_ms = Some(self.now_ms);
        self.last_heard_ms = self.now_ms;
        true
    }

    /// Phase 2b: persist each value (unless the slot is already decided), then answer.
    fn on_accept(
        &mut self,
        from: Uid,
        ballot: Ballot,
        first_slot: Slot,
        values: Vec<Value>,
        commit: Slot,
        decided_above: &[SlotRange],
    ) {
        let count = values.len() as u64;
        if first_slot.checked_add(count).is_none() {
            return; // malformed: slots past the end of the slot space
        }
        if !self.hear_leader(from, ballot) {
            return;
        }
        for (slot, value) in (first_slot..).zip(values) {
            if self.decided.contains_key(&slot) {
                continue;
            }
            self.ready.records.push(Record::Accepted {
                slot,
                ballot,
                value: value.clone(),
            });
            self.accepted.insert(slot, (ballot, value));
        }
        let decided_upto = self.decided_upto;
        self.send(
            from,
            PeerMessage::Accepted {
                ballot,
                first_slot,
                count,
                decided_upto,
            },
        );
        self.learn_commit(from, ballot, commit, decided_above);
    }

    fn on_heartbeat(
        &mut self,
        from: Uid,
        ballot: Ballot,
        commit: Slot,
        decided_above: &[SlotRange],
    ) {
        if !self.hear_leader(from, ballot) {
            return;
        }
        self.learn_commit(from, ballot, commit, decided_above);
    }

    /// A leader of `ballot` says slots below `commit` and in `decided_above` are chosen.
    /// A slot is marked decided only if we accepted it in that same ballot (then our value
    /// is the chosen one); anything else is fetched by catch-up.
    fn learn_commit(
        &mut self,
        leader: Uid,
        ballot: Ballot,
        commit: Slot,
        decided_above: &[SlotRange],
    ) {
        let mut learned: Vec<Slot> = Vec::new();
        if commit > self.decided_upto {
            learned.extend(
                self.accepted
                    .range(self.decided_upto..commit)
                    .filter(|(_, (b, _))| *b == ballot)
                    .map(|(s, _)| *s),
            );
        }
        for (lo, hi) in decided_above.iter().take(DECIDED_RANGES_MAX) {
            if lo < hi {
                learned.extend(
                    self.accepted
                        .range(*lo..*hi)
                        .filter(|(_, (b, _))| *b == ballot)
                        .map(|(s, _)| *s),
                );
            }
        }
        for slot in learned {
            if let Some((_, value)) = self.accepted.get(&slot).cloned() {
                self.decide(slot, value);
            }
        }
        self.note_peer_decided(leader, commit);
        self.maybe_catch_up();
    }

    // ---------------------------------------------------------------- leader: phase 2

    fn on_submit(&mut self, client: ClientRef, id: RequestId, body: String) {
        if body.len() > self.config.body_bytes_max {
            let reason = format!(
                "message of {} bytes is over the limit of {} bytes",
                body.len(),
                self.config.body_bytes_max
            );
            self.ready
                .replies
                .push((client, SubmitReply::Rejected { id, reason }));
            return;
        }
        if let Some(slot) = self.first_slot_of.get(&id) {
            let slot = *slot;
            if slot < self.decided_upto {
                self.ready
                    .replies
                    .push((client, SubmitReply::Committed { id, slot }));
            } else {
                self.awaiting_apply.entry(id).or_default().push(client);
            }
            return;
        }
        let leader = self.leader;
        let queue_max = self.config.queue_max;
        let RoleState::Leader(l) = &mut self.role else {
            self.ready
                .replies
                .push((client, SubmitReply::NotLeader { id, leader }));
            return;
        };
        if let Some(slot) = l.request_slots.get(&id) {
            if let Some(p) = l.inflight.get_mut(slot) {
                p.clients.push(client); // joins the in-flight duplicate
                return;
            }
        }
        if l.queued.contains(&id) {
            if let Some(q) = l.queue.iter_mut().find(|q| q.id == id) {
                q.clients.push(client);
                return;
            }
        }
        if l.queue.len() >= queue_max {
            // Overloaded: the client backs off and retries this same leader.
            let leader = Some(self.config.uid);
            self.ready
                .replies
                .push((client, SubmitReply::NotLeader { id, leader }));
            return;
        }
        l.queued.insert(id);
        l.queue.push_back(Queued {
            id,
            body,
            clients: vec![client],
        });
    }

    /// Moves queued client values into the pipeline, as many as the window allows, and
    /// sends them in as few Accept messages as the batch bounds allow.
    fn flush_proposals(&mut self) {
        if !matches!(&self.role, RoleState::Leader(l) if !l.queue.is_empty()) {
            return;
        }
        let RoleState::Leader(mut l) = std::mem::replace(&mut self.role, RoleState::Follower)
        else {
            return;
        };
        let mut proposed = Vec::new();
        while l.inflight.len() < self.config.inflight_slots_max {
            let Some(q) = l.queue.pop_front() else { break };
            l.queued.remove(&q.id);
            if l.ballot == Ballot::ZERO {
                while self.config.skip_slots.contains(&l.next_slot) {
                    l.next_slot += 1;
                }
            }
            let slot = l.next_slot;
            l.next_slot += 1;
            let value = Value::Msg {
                id: q.id,
                body: q.body,
            };
            self.propose(&mut l, slot, value, q.clients);
            proposed.push(slot);
        }
        self.role = RoleState::Leader(l);
        if !proposed.is_empty() {
            self.send_accepts(&proposed, None);
            self.check_chosen(&proposed);
        }
    }

    /// The leader accepts its own proposal (persisted with this Ready, before any send).
    fn propose(&mut self, l: &mut Leadership, slot: Slot, value: Value, clients: Vec<ClientRef>) {
        debug_assert!(
            !self.decided.contains_key(&slot),
            "proposing in decided slot {slot}"
        );
        debug_assert!(self.promised == l.ballot, "leading a ballot not promised");
        self.ready.records.push(Record::Accepted {
            slot,
            ballot: l.ballot,
            value: value.clone(),
        });
        self.accepted.insert(slot, (l.ballot, value.clone()));
        if let Some(id) = value.request_id() {
            l.request_slots.insert(id, slot);
        }
        l.inflight.insert(
            slot,
            Proposal {
                value,
                acks: 1 << self.config.uid,
                sent_ms: self.now_ms,
                clients,
            },
        );
    }

    /// Sends Accepts for in-flight `slots` (sorted) to `only` or to every peer, one
    /// message per contiguous run, each bounded in values and bytes.
    fn send_accepts(&mut self, slots: &[Slot], only: Option<Uid>) {
        let RoleState::Leader(l) = &self.role else {
            return;
        };
        let ballot = l.ballot;
        let commit = self.decided_upto;
        let decided_above = self.decided_ranges();
        let mut batches: Vec<(Slot, Vec<Value>)> = Vec::new();
        let mut bytes = 0;
        for slot in slots {
            let Some(p) = l.inflight.get(slot) else {
                continue;
            };
            let size = p.value.size_bytes();
            match batches.last_mut() {
                Some((first, values))
                    if *first + values.len() as u64 == *slot
                        && values.len() < self.config.batch_values_max
                        && bytes + size <= self.config.batch_bytes_max =>
                {
                    values.push(p.value.clone());
                    bytes += size;
                }
                _ => {
                    batches.push((*slot, vec![p.value.clone()]));
                    bytes = size;
                }
            }
        }
        let targets: Vec<Uid> = match only {
            Some(peer) => vec![peer],
            None => self.peers().collect(),
        };
        for (first_slot, values) in batches {
            for peer in &targets {
                self.send(
                    *peer,
                    PeerMessage::Accept {
                        ballot,
                        first_slot,
                        values: values.clone(),
                        commit,
                        decided_above: decided_above.clone(),
                    },
                );
            }
        }
    }

    fn on_accepted(
        &mut self,
        from: Uid,
        ballot: Ballot,
        first_slot: Slot,
        count: u64,
        decided_upto: Slot,
    ) {
        self.note_peer_decided(from, decided_upto);
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        if l.ballot != ballot {
            return;
        }
        let end = first_slot.saturating_add(count);
        let mut touched = Vec::new();
        for (slot, p) in l.inflight.range_mut(first_slot..end) {
            p.acks |= 1 << from;
            touched.push(*slot);
        }
        self.check_chosen(&touched);
        self.maybe_catch_up();
    }

    /// Slots accepted by a majority in the leader's ballot are chosen: decide them and
    /// answer their clients (the accepts are durable on that majority).
    fn check_chosen(&mut self, slots: &[Slot]) {
        let majority = self.config.majority();
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        let mut chosen = Vec::new();
        for slot in slots {
            if l.inflight
                .get(slot)
                .is_some_and(|p| p.acks.count_ones() as usize >= majority)
            {
                if let Some(p) = l.inflight.remove(slot) {
                    if let Some(id) = p.value.request_id() {
                        l.request_slots.remove(&id);
                    }
                    chosen.push((*slot, p));
                }
            }
        }
        for (slot, p) in chosen {
            let id = p.value.request_id();
            if let Some(id) = id {
                if !p.clients.is_empty() {
                    self.awaiting_apply.entry(id).or_default().extend(p.clients);
                }
            }
            self.decide(slot, p.value);
            // Normally answered as the prefix passes the slot (in `decide`); if the
            // request was already applied at an earlier slot, answer now.
            if let Some(id) = id {
                let applied = self.first_slot_of.get(&id).copied();
                if applied.is_some_and(|first| first < self.decided_upto) {
                    if let Some(clients) = self.awaiting_apply.remove(&id) {
                        let slot = applied.unwrap_or(slot);
                        for client in clients {
                            self.ready
                                .replies
                                .push((client, SubmitReply::Committed { id, slot }));
                        }
                    }
                }
            }
        }
    }

    fn send_heartbeat(&mut self) {
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        l.heartbeat_sent_ms = self.now_ms;
        let ballot = l.ballot;
        let commit = self.decided_upto;
        let decided_above = self.decided_ranges();
        self.broadcast(PeerMessage::Heartbeat {
            ballot,
            commit,
            decided_above,
        });
    }

    /// Re-sends Accepts unanswered for `timeout_ms` to the peers that did not answer.
    fn resend_accepts(&mut self) {
        let timeout = self.config.timeout_ms;
        let now = self.now_ms;
        let replicas = self.config.replicas;
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        l.resend_scan_ms = now;
        let mut per_peer: Vec<Vec<Slot>> = vec![Vec::new(); replicas];
        for (slot, p) in l.inflight.iter_mut() {
            if now.saturating_sub(p.sent_ms) < timeout {
                continue;
            }
            p.sent_ms = now;
            for (peer, slots) in per_peer.iter_mut().enumerate() {
                if p.acks & (1 << peer) == 0 {
                    slots.push(*slot);
                }
            }
        }
        for (peer, slots) in per_peer.into_iter().enumerate() {
            if !slots.is_empty() {
                self.send_accepts(&slots, Some(peer as Uid));
            }
        }
    }

    // ---------------------------------------------------------------- learner

    /// Marks `slot` decided with `value` and persists it. Invariant: a decided slot never
    /// changes (agreement is checked by the simulator across replicas).
    fn decide(&mut self, slot: Slot, value: Value) {
        if slot == Slot::MAX {
            return; // malformed: no slot range can end after it
        }
        if let Some(existing) = self.decided.get(&slot) {
            // Two values for one slot means a broken peer or a protocol bug: the simulator
            // stops on it; a release build keeps the first value rather than crash on input.
            debug_assert_eq!(existing, &value, "slot {slot} decided two ways");
            return;
        }
        self.ready.records.push(Record::Decided {
            slot,
            value: value.clone(),
        });
        self.learn_decided(slot, value);
    }

    /// Updates the in-memory decided state (no record: used by recovery and `decide`).
    fn learn_decided(&mut self, slot: Slot, value: Value) {
        if slot == Slot::MAX {
            return;
        }
        if let Some(id) = value.request_id() {
            let first = self.first_slot_of.entry(id).or_insert(slot);
            *first = (*first).min(slot);
        }
        self.accepted.remove(&slot);
        if self.decided.insert(slot, value).is_some() {
            return;
        }
        // Merge `slot` into the ranges of decided slots, then absorb the prefix.
        let mut start = slot;
        let mut end = slot + 1;
        if let Some((&s, &e)) = self.decided_above.range(..=slot).next_back() {
            if e >= slot {
                start = s;
                end = end.max(e);
                self.decided_above.remove(&s);
            }
        }
        if let Some(e) = self.decided_above.remove(&end) {
            end = e;
        }
        if start <= self.decided_upto {
            let applied_from = self.decided_upto;
            self.decided_upto = self.decided_upto.max(end);
            self.answer_applied(applied_from);
        } else {
            self.decided_above.insert(start, end);
        }
    }

    /// Answers the clients waiting for requests applied in `from..decided_upto`, with the
    /// request's first slot (final now that every slot below is decided).
    fn answer_applied(&mut self, from: Slot) {
        if self.awaiting_apply.is_empty() {
            return;
        }
        let applied: Vec<RequestId> = self
            .decided
            .range(from..self.decided_upto)
            .filter_map(|(_, v)| v.request_id())
            .collect();
        for id in applied {
            if let Some(clients) = self.awaiting_apply.remove(&id) {
                let slot = self.first_slot_of[&id];
                for client in clients {
                    self.ready
                        .replies
                        .push((client, SubmitReply::Committed { id, slot }));
                }
            }
        }
    }

    /// Decided slots above the prefix, as at most `DECIDED_RANGES_MAX` ranges.
    fn decided_ranges(&self) -> Vec<SlotRange> {
        self.decided_above
            .iter()
            .take(DECIDED_RANGES_MAX)
            .map(|(s, e)| (*s, *e))
            .collect()
    }

    fn note_peer_decided(&mut self, peer: Uid, decided_upto: Slot) {
        if let Some(known) = self.peer_decided_upto.get_mut(peer as usize) {
            *known = (*known).max(decided_upto);
        }
    }

    /// If some peer's decided prefix is ahead of ours and no catch-up is in flight, ask
    /// the most advanced peer for the next chunk.
    fn maybe_catch_up(&mut self) {
        if self.catch_up.is_some() {
            return;
        }
        // A leader fetches only what lies below its own proposals.
        let limit = match &self.role {
            RoleState::Leader(l) => l.start_slot,
            _ => Slot::MAX,
        };
        let me = self.config.uid as usize;
        let mine = self.decided_upto;
        let unanswered = self.catch_up_unanswered.map(|u| u as usize);
        let best = self
            .peer_decided_upto
            .iter()
            .enumerate()
            .filter(|(p, upto)| *p != me && (**upto).min(limit) > mine)
            .max_by_key(|(p, upto)| (Some(*p) != unanswered, **upto));
        if let Some((peer, _)) = best {
            let peer = peer as Uid;
            self.catch_up = Some(CatchUpProgress {
                peer,
                sent_ms: self.now_ms,
            });
            self.send(peer, PeerMessage::CatchUpRequest { from_slot: mine });
        }
    }

    fn on_catch_up_request(&mut self, from: Uid, from_slot: Slot) {
        let mut entries = Vec::new();
        let mut bytes = 0;
        for (slot, value) in self.decided.range(from_slot..) {
            if entries.len() >= self.config.chunk_entries_max
                || (bytes > 0 && bytes + value.size_bytes() > self.config.batch_bytes_max)
            {
                break;
            }
            bytes += value.size_bytes();
            entries.push((*slot, value.clone()));
        }
        let decided_upto = self.decided_upto;
        self.send(
            from,
            PeerMessage::CatchUp {
                entries,
                decided_upto,
            },
        );
    }

    fn on_catch_up(&mut self, from: Uid, entries: Vec<(Slot, Value)>, decided_upto: Slot) {
        self.note_peer_decided(from, decided_upto);
        if let RoleState::Leader(l) = &self.role {
            // A different value chosen in a slot we have in flight: a higher ballot chose
            // it, so we no longer lead.
            let deposed = entries
                .iter()
                .any(|(slot, v)| l.inflight.get(slot).is_some_and(|p| &p.value != v));
            if deposed {
                self.become_follower(None);
            }
        }
        // While leading, slots from our start on are decided only by our own ballot:
        // followers decide from our commit index what they accepted in our ballot, so we
        // must never advertise a slot we did not choose ourselves.
        let leading_from = match &self.role {
            RoleState::Leader(l) => Some(l.start_slot),
            _ => None,
        };
        for (slot, value) in entries {
            if leading_from.is_some_and(|start| slot >= start) {
                continue;
            }
            self.decide(slot, value);
        }
        if self.catch_up.as_ref().is_some_and(|c| c.peer == from) {
            self.catch_up = None;
        }
        if self.catch_up_unanswered == Some(from) {
            self.catch_up_unanswered = None;
        }
        self.maybe_catch_up();
    }

    // ---------------------------------------------------------------- time

    fn on_tick(&mut self) {
        let now = self.now_ms;
        let timeout = self.config.timeout_ms;
        // Catch-up retransmission.
        if self
            .catch_up
            .as_ref()
            .is_some_and(|c| now.saturating_sub(c.sent_ms) >= timeout)
        {
            self.catch_up_unanswered = self.catch_up.take().map(|c| c.peer);
            self.maybe_catch_up();
        }
        match &mut self.role {
            RoleState::Leader(l) => {
                let heartbeat_due =
                    now.saturating_sub(l.heartbeat_sent_ms) >= self.config.heartbeat_ms;
                let resend_due = now.saturating_sub(l.resend_scan_ms) >= self.config.heartbeat_ms;
                if heartbeat_due {
                    self.send_heartbeat();
                }
                if resend_due {
                    self.resend_accepts();
                }
            }
            RoleState::Candidate(c) => {
                let ballot = c.ballot;
                let mut resend = Vec::new();
                for (peer, progress) in c.progress.iter_mut().enumerate() {
                    if let Some(p) = progress {
                        if !p.done && now.saturating_sub(p.sent_ms) >= timeout {
                            p.sent_ms = now;
                            resend.push((peer as Uid, p.from_slot));
                        }
                    }
                }
                for (peer, from_slot) in resend {
                    self.send(peer, PeerMessage::Prepare { ballot, from_slot });
                }
            }
            RoleState::Follower => {
                let leader = self.leader.unwrap_or(self.promised.uid);
                let n = self.config.replicas as u64;
                let rank = (self.config.uid as u64 + n - leader as u64 - 1) % n;
                let stagger = rank * timeout / 2;
                if now.saturating_sub(self.last_heard_ms) >= timeout + stagger {
                    self.start_campaign();
                }
            }
        }
    }
}

impl Leadership {
    fn new(ballot: Ballot, start_slot: Slot, next_slot: Slot, now_ms: u64) -> Leadership {
        Leadership {
            ballot,
            start_slot,
            next_slot,
            inflight: BTreeMap::new(),
            request_slots: HashMap::new(),
            queue: VecDeque::new(),
            queued: HashSet::new(),
            heartbeat_sent_ms: 0,
            resend_scan_ms: now_ms,
        }
    }
}

/// Keeps, per slot, the entry with the highest rank: decided (`None`) above any ballot,
/// then the highest ballot.
fn rank_entry(
    reported: &mut BTreeMap<Slot, (Option<Ballot>, Value)>,
    slot: Slot,
    accepted_in: Option<Ballot>,
    value: Value,
) {
    let rank = |b: &Option<Ballot>| match b {
        None => (1u8, Ballot::ZERO),
        Some(b) => (0u8, *b),
    };
    match reported.get(&slot) {
        Some((existing, _)) if rank(existing) >= rank(&accepted_in) => {}
        _ => {
            reported.insert(slot, (accepted_in, value));
        }
    }
}

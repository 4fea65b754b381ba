//! Deterministic simulator of N replicas over a simulated network and simulated storage.
//!
//! Every schedule comes from one seed: message loss (up to 30%), duplication, reordering
//! (random delays), partitions that heal, crashes at any step that drop whatever was not
//! persisted, restarts from storage, and clients that retry with the same request id.
//! After every step the safety invariants are checked; once faults heal, every submitted
//! request must commit within a bounded time.
//!
//! Storage is modelled as the daemon uses it: a replica's applied log lives in its store
//! (the core drops slots once their Decided records are durable), so client reads,
//! catch-up and phase-1 chunks of old slots are read back from the store
//! (`Ready::log_sends`), restarts rebuild sessions from a checkpoint plus the entries
//! after it, and a small session table (some seeds) makes sessions expire.
//!
//! - `cargo test --test simulator` runs `PAXOS_SIM_SEEDS` seeds (default 2000).
//! - `PAXOS_SIM_SEED=N cargo test --test simulator replay -- --nocapture` replays one seed
//!   with a trace of its events.

use paxos::core::{
    Ballot, Input, LogEntry, LogEntryKind, PeerMessage, Record, Replica, ReplicaConfig, RequestId,
    Slot, Standing, SubmitReply, Uid, Value, SESSIONS_MAX,
};
use paxos::storage::{LogRead, MemStorage, Storage};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// SplitMix64: tiny, seedable, identical on every platform and crate version.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// The shape of one schedule, drawn from the seed.
#[derive(Clone, Debug)]
struct Scenario {
    replicas: usize,
    clients: usize,
    requests_per_client: u64,
    loss: f64,
    duplicate: f64,
    delay_max_ms: u64,
    crash_per_ms: f64,
    crash_in_step: f64,
    partition_per_ms: f64,
    /// Faults stop at this time; afterwards the network is clean and everyone is up.
    faults_end_ms: u64,
    /// Every request must be committed by this time.
    deadline_ms: u64,
    skip_slots: Vec<Slot>,
    /// Replicas that crash for good when faults end (at most f): liveness is then
    /// required of the survivors.
    permanent_down: usize,
    /// Chance that a message is held back 100-2000 ms (long enough to cross a restart).
    long_delay: f64,
    /// A flush completes 0 to this many ms after its first record was handed to the disk
    /// (records handed over meanwhile join it: group commit). Messages that do not vouch
    /// for records leave at once, so a leader's own accept may become durable after a
    /// follower's.
    flush_delay_max_ms: u64,
    /// Chance per ms (while faulty) of cutting some links one way only.
    one_way_per_ms: f64,
    /// When faults end, the leader's inbound links from every peer are cut for good (it
    /// can send but not hear): check-quorum must let the others elect and commit.
    deaf_leader: bool,
    /// Chance per ms of a linearizable read at a random replica.
    read_per_ms: f64,
    /// The session table's bound (small in some seeds: sessions expire).
    sessions_max: usize,
    /// Applied slots between session checkpoints.
    sessions_checkpoint_slots: u64,
    /// How far above its prefix an acceptor accepts (small: laggards decline to vote).
    accept_window_slots: u64,
    /// Chance per ms (while faulty) of a lost disk: a running replica is killed, its store
    /// wiped, and it restarts on a fresh one. At most one store rebuilds at a time, and
    /// only while every other store is a voter (a lost disk counts as a failure until it
    /// is rebuilt).
    wipe_per_ms: f64,
}

impl Scenario {
    fn from_seed(seed: u64, rng: &mut Rng) -> Scenario {
        let replicas = if seed.is_multiple_of(2) { 3 } else { 5 };
        let faults_end_ms = rng.range(1_000, 6_000);
        let skip_slots = if rng.chance(0.2) {
            vec![rng.range(0, 3), rng.range(4, 8)]
        } else {
            Vec::new()
        };
        Scenario {
            replicas,
            clients: rng.range(1, 6) as usize,
            requests_per_client: rng.range(3, 40),
            loss: rng.below(31) as f64 / 100.0,
            duplicate: rng.below(11) as f64 / 100.0,
            delay_max_ms: rng.range(1, 20),
            crash_per_ms: rng.below(4) as f64 / 1000.0,
            crash_in_step: rng.below(3) as f64 / 1000.0,
            partition_per_ms: rng.below(3) as f64 / 1000.0,
            faults_end_ms,
            deadline_ms: faults_end_ms + 8_000,
            skip_slots,
            permanent_down: if rng.chance(0.3) {
                rng.range(1, (replicas / 2) as u64) as usize
            } else {
                0
            },
            long_delay: if rng.chance(0.5) { 0.01 } else { 0.0 },
            flush_delay_max_ms: rng.range(1, 6),
            one_way_per_ms: rng.below(3) as f64 / 1000.0,
            deaf_leader: rng.chance(0.15),
            read_per_ms: rng.below(30) as f64 / 1000.0,
            sessions_max: if rng.chance(0.3) {
                rng.range(1, 4) as usize
            } else {
                SESSIONS_MAX
            },
            sessions_checkpoint_slots: rng.range(1, 20),
            accept_window_slots: rng.range(8, 64),
            wipe_per_ms: if rng.chance(0.4) {
                rng.range(1, 4) as f64 / 1000.0
            } else {
                0.0
            },
        }
    }
}

const HEARTBEAT_MS: u64 = 20;
const TIMEOUT_MS: u64 = 100;
const TICK_MS: u64 = 5;
const CLIENT_RETRY_MS: u64 = 150;
/// Marks a pending request to resend at once to the redirected target.
const REDIRECTED: u64 = u64::MAX;

/// What travels on the simulated network.
#[derive(Clone, Debug)]
enum Packet {
    Peer {
        from: Uid,
        to: Uid,
        msg: PeerMessage,
    },
    Submit {
        client: usize,
        to: Uid,
        id: RequestId,
        body: String,
    },
    Reply {
        client: usize,
        reply: SubmitReply,
    },
}

/// One Ready handed to the disk: its seq, records, and the messages that vouch for them.
type Unflushed = (u64, Vec<Record>, Vec<(Uid, PeerMessage)>);

struct Node {
    replica: Option<Replica>,
    /// What survived: only records persisted before a crash.
    storage: MemStorage,
    down_until: u64,
    /// Highest promise ever persisted here (invariant: never goes backwards).
    max_promised: Option<Ballot>,
    /// Readys handed to the disk and not yet flushed: (seq, records, messages that vouch
    /// for them). A crash loses them.
    unflushed: Vec<Unflushed>,
    /// When the flush of `unflushed` completes.
    flush_at: Option<u64>,
    /// The store this replica last lost (a wiped disk), for the durability check.
    lost_storage: Option<MemStorage>,
}

struct Client {
    client_id: u64,
    seq: u64,
    /// The request in flight: id, body, when it was (re)sent.
    pending: Option<(RequestId, String, u64)>,
    target: Uid,
    next_send_ms: u64,
}

struct Sim {
    rng: Rng,
    sc: Scenario,
    now: u64,
    nodes: Vec<Node>,
    clients: Vec<Client>,
    net: BinaryHeap<Reverse<(u64, u64, usize)>>,
    packets: HashMap<usize, Packet>,
    packet_seq: u64,
    /// `Some(group)` per replica while partitioned: different groups cannot talk.
    partition: Option<Vec<u8>>,
    partition_until: u64,
    /// The value each slot was decided with, by anyone.
    chosen: HashMap<Slot, Value>,
    /// Whether each applied slot is a dup, as the first replica to apply it said.
    chosen_dup: HashMap<Slot, bool>,
    submitted: HashMap<RequestId, String>,
    acked: HashMap<RequestId, Slot>,
    steps: u64,
    trace: bool,
    /// Directed links cut while faulty: (from, to), until `cuts_until`.
    cuts: HashSet<(Uid, Uid)>,
    cuts_until: u64,
    /// The replica whose inbound peer links are cut for good (`deaf_leader`).
    deaf: Option<Uid>,
    /// Linearizable reads asked of the core: read -> (replica, acks seen before it began).
    reads: HashMap<u64, (Uid, HashMap<RequestId, Slot>)>,
    /// Reads with a confirmed index, waiting for their replica to apply up to it.
    reads_applying: Vec<(Uid, Slot, HashMap<RequestId, Slot>)>,
    next_read: u64,
    /// Reads checked (served with every earlier ack in them).
    reads_checked: u64,
    /// Replica starts so far (each start's incarnation is distinct).
    starts: u64,
    /// Lost disks injected.
    wipes: u64,
    /// The permanent crashes of `permanent_down` happened.
    permanent_done: bool,
}

type Failure = String;

impl Sim {
    fn new(seed: u64, trace: bool) -> Sim {
        let mut rng = Rng(seed);
        let sc = Scenario::from_seed(seed, &mut rng);
        let mut sim = Sim {
            rng,
            nodes: Vec::new(),
            clients: Vec::new(),
            now: 0,
            net: BinaryHeap::new(),
            packets: HashMap::new(),
            packet_seq: 0,
            partition: None,
            partition_until: 0,
            chosen: HashMap::new(),
            chosen_dup: HashMap::new(),
            submitted: HashMap::new(),
            acked: HashMap::new(),
            steps: 0,
            trace,
            sc,
            cuts: HashSet::new(),
            cuts_until: 0,
            deaf: None,
            reads: HashMap::new(),
            reads_applying: Vec::new(),
            next_read: 0,
            reads_checked: 0,
            starts: 0,
            wipes: 0,
            permanent_done: false,
        };
        for uid in 0..sim.sc.replicas {
            sim.nodes.push(Node {
                replica: None,
                storage: MemStorage::new(),
                down_until: 0,
                max_promised: None,
                unflushed: Vec::new(),
                flush_at: None,
                lost_storage: None,
            });
            // Replicas start a little apart, in any order.
            sim.nodes[uid].down_until = sim.rng.below(50);
        }
        for c in 0..sim.sc.clients {
            let target = sim.rng.below(sim.sc.replicas as u64) as Uid;
            sim.clients.push(Client {
                client_id: 1000 + c as u64,
                seq: 0,
                pending: None,
                target,
                next_send_ms: sim.rng.below(100),
            });
        }
        sim
    }

    fn log(&self, what: impl FnOnce() -> String) {
        if self.trace {
            println!("[{:>6}ms] {}", self.now, what());
        }
    }

    fn majority(&self) -> usize {
        self.sc.replicas / 2 + 1
    }

    fn faulty(&self) -> bool {
        self.now < self.sc.faults_end_ms
    }

    /// Whether a message from `a` reaches `b` now (partitions are symmetric, cuts one way).
    fn connected(&self, a: Uid, b: Uid) -> bool {
        if self.cuts.contains(&(a, b)) || (self.deaf == Some(b) && a != b) {
            return false;
        }
        match &self.partition {
            Some(groups) => groups[a as usize] == groups[b as usize],
            None => true,
        }
    }

    fn enqueue(&mut self, packet: Packet) {
        let faulty = self.faulty();
        if let Packet::Peer { from, to, .. } = &packet {
            if !self.connected(*from, *to) {
                return;
            }
        }
        if faulty && self.rng.chance(self.sc.loss) {
            return;
        }
        let copies = if faulty && self.rng.chance(self.sc.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = if faulty && self.rng.chance(self.sc.long_delay) {
                self.rng.range(100, 2_000)
            } else {
                self.rng.range(1, self.sc.delay_max_ms)
            };
            let at = self.now + delay;
            self.packet_seq += 1;
            let key = self.packet_seq as usize;
            self.packets.insert(key, packet.clone());
            self.net.push(Reverse((at, self.packet_seq, key)));
        }
    }

    fn replica_config(&self, uid: Uid) -> ReplicaConfig {
        let mut config = ReplicaConfig::new(uid, self.sc.replicas, HEARTBEAT_MS, TIMEOUT_MS);
        // Small bounds, so chunking and windows are exercised.
        config.batch_values_max = 4;
        config.chunk_entries_max = 3;
        config.inflight_slots_max = 16;
        config.sessions_max = self.sc.sessions_max;
        config.sessions_checkpoint_slots = self.sc.sessions_checkpoint_slots;
        config.accept_window_slots = self.sc.accept_window_slots;
        if uid == 0 {
            config.skip_slots = self.sc.skip_slots.iter().copied().collect();
        }
        config
    }

    fn start_node(&mut self, uid: Uid) -> Result<(), Failure> {
        let state = self.nodes[uid as usize]
            .storage
            .load()
            .map_err(|e| e.to_string())?;
        if let (Some(max), Some(loaded)) = (self.nodes[uid as usize].max_promised, state.promised) {
            if loaded < max {
                return Err(format!(
                    "replica {uid} restarted with promise {loaded} below {max}"
                ));
            }
        }
        let fresh_leader = uid == 0 && state.promised.is_none();
        self.starts += 1;
        let mut config = self.replica_config(uid);
        // Growing like the wall clock in microseconds (a store id takes it), well within
        // the day of slack a peer store id may be ahead of ours.
        config.incarnation = self.starts << 20;
        let replica = Replica::new(config, state, self.now);
        self.log(|| format!("start replica {uid} (fresh leader: {fresh_leader})"));
        self.nodes[uid as usize].replica = Some(replica);
        // A replica's first Ready (marking a fresh store) is persisted before it serves.
        self.deliver(uid, None)?;
        self.flush(uid, false)
    }

    fn crash(&mut self, uid: Uid) {
        let down = self.rng.range(20, 600);
        self.log(|| format!("CRASH replica {uid} for {down}ms"));
        let node = &mut self.nodes[uid as usize];
        node.replica = None;
        node.down_until = self.now + down;
        // What was not flushed is gone.
        node.unflushed.clear();
        node.flush_at = None;
        self.reads.retain(|_, (at, _)| *at != uid);
        self.reads_applying.retain(|(at, _, _)| *at != uid);
    }

    /// Steps one replica with `input` (or just takes its Ready): sends what may go at once,
    /// answers clients, and hands records (with the messages that vouch for them) to the
    /// disk, whose flush completes later (`flush`).
    fn deliver(&mut self, uid: Uid, input: Option<Input>) -> Result<(), Failure> {
        let Some(replica) = self.nodes[uid as usize].replica.as_mut() else {
            return Ok(());
        };
        if let Some(input) = input {
            replica.step(input);
        }
        let ready = replica.take_ready();
        self.steps += 1;
        if ready.is_empty() {
            return Ok(());
        }
        if let Some((peer, reason)) = ready.warnings.first() {
            return Err(format!(
                "replica {uid} refused an honest peer {peer}: {reason}"
            ));
        }
        self.check_decisions(uid, &ready.records)?;
        self.check_held(uid)?;
        let mut after_flush = ready.messages;
        for send in &ready.log_sends {
            // The store answers for what the core dropped: it must hold all of it.
            let store = &self.nodes[uid as usize].storage;
            let entries = store
                .read_log(send.from_slot, send.entries_max, send.bytes_max)
                .map_err(|e| e.to_string())?;
            let Some((msg, vouches)) = send.complete(entries) else {
                return Err(format!(
                    "replica {uid} dropped slots from {} its store does not hold (stored log ends at {})",
                    send.from_slot,
                    store.decided_upto()
                ));
            };
            if vouches {
                after_flush.push((send.to, msg));
            } else {
                self.log(|| format!("{uid} -> {} (now, from store): {msg:?}", send.to));
                self.enqueue(Packet::Peer {
                    from: uid,
                    to: send.to,
                    msg,
                });
            }
        }
        for (read, index) in &ready.reads {
            if let (Some((at, seen)), Some(index)) = (self.reads.remove(read), index) {
                debug_assert_eq!(at, uid);
                self.reads_applying.push((uid, *index, seen));
            }
        }
        for (to, msg) in ready.messages_now {
            self.log(|| format!("{uid} -> {to} (now): {msg:?}"));
            self.enqueue(Packet::Peer { from: uid, to, msg });
        }
        for (client, reply) in ready.replies {
            if let SubmitReply::Committed { id, slot } = &reply {
                self.check_durable_reply(*id, *slot)?;
            }
            self.enqueue(Packet::Reply {
                client: client as usize,
                reply,
            });
        }
        if !ready.records.is_empty() || !after_flush.is_empty() {
            let delay = self.rng.below(self.sc.flush_delay_max_ms + 1);
            let node = &mut self.nodes[uid as usize];
            node.unflushed.push((ready.seq, ready.records, after_flush));
            node.flush_at.get_or_insert(self.now + delay);
        }
        Ok(())
    }

    /// Completes the flush of everything `uid` handed to its disk: persists it, sends the
    /// messages that vouch for it, and tells the replica. A crash inside the flush
    /// (`may_crash`) keeps a prefix of the records (sled recovers a prefix of its log)
    /// and sends nothing.
    fn flush(&mut self, uid: Uid, may_crash: bool) -> Result<(), Failure> {
        let node = &mut self.nodes[uid as usize];
        node.flush_at = None;
        let mut batch = std::mem::take(&mut node.unflushed);
        if batch.is_empty() || node.replica.is_none() {
            return Ok(());
        }
        // Like the flusher thread, a flush may cover only the Readys handed to it before
        // it began: the later ones wait for the next flush.
        if may_crash && batch.len() > 1 && self.rng.chance(0.5) {
            let covered = self.rng.range(1, batch.len() as u64 - 1) as usize;
            let later = batch.split_off(covered);
            let delay = self.rng.below(self.sc.flush_delay_max_ms + 1);
            let node = &mut self.nodes[uid as usize];
            node.unflushed = later;
            node.flush_at = Some(self.now + delay);
        }
        let seq = batch.iter().map(|(seq, _, _)| *seq).max().unwrap_or(0);
        let records: Vec<Record> = batch.iter().flat_map(|(_, r, _)| r.clone()).collect();
        if may_crash && self.faulty() && self.rng.chance(self.sc.crash_in_step) && self.can_crash()
        {
            let kept = self.rng.below(records.len() as u64 + 1) as usize;
            let prefix = &records[..kept];
            self.check_records(uid, prefix)?;
            self.nodes[uid as usize]
                .storage
                .persist(prefix)
                .map_err(|e| e.to_string())?;
            self.crash(uid);
            return Ok(());
        }
        self.check_records(uid, &records)?;
        self.nodes[uid as usize]
            .storage
            .persist(&records)
            .map_err(|e| e.to_string())?;
        for (_, _, messages) in batch {
            for (to, msg) in messages {
                self.log(|| format!("{uid} -> {to}: {msg:?}"));
                self.enqueue(Packet::Peer { from: uid, to, msg });
            }
        }
        self.deliver(uid, Some(Input::Persisted { seq }))
    }

    /// A linearizable read begins at a random live replica.
    fn start_read(&mut self) -> Result<(), Failure> {
        let uid = self.rng.below(self.sc.replicas as u64) as Uid;
        if self.nodes[uid as usize].replica.is_none() {
            return Ok(());
        }
        self.next_read += 1;
        let read = self.next_read;
        self.log(|| format!("read {read} at replica {uid}"));
        self.reads.insert(read, (uid, self.acked.clone()));
        self.deliver(uid, Some(Input::ReadIndex { read }))
    }

    /// Serves every read whose replica has applied up to its index, and checks it: it
    /// holds every message acknowledged before the read began, at its slot.
    fn check_reads(&mut self) -> Result<(), Failure> {
        let mut i = 0;
        while i < self.reads_applying.len() {
            let (uid, index, _) = &self.reads_applying[i];
            let Some(r) = self.nodes[*uid as usize].replica.as_ref() else {
                self.reads_applying.swap_remove(i);
                continue;
            };
            if r.decided_upto() < *index {
                i += 1;
                continue;
            }
            let (uid, index, seen) = self.reads_applying.swap_remove(i);
            // Every Msg as (request, slot): a request applied again after its session
            // expired has two, and the acknowledged one must be among them.
            let log: HashSet<(RequestId, Slot)> = self
                .applied_log(uid)
                .into_iter()
                .filter(|e| e.kind == LogEntryKind::Msg)
                .filter_map(|e| e.id.map(|id| (id, e.slot)))
                .collect();
            for (id, slot) in &seen {
                if *slot >= index || !log.contains(&(*id, *slot)) {
                    return Err(format!(
                        "linearizability: a read at replica {uid} with index {index} misses {id}, acknowledged at slot {slot} before the read began"
                    ));
                }
            }
            self.reads_checked += 1;
        }
        Ok(())
    }

    /// Whether every store (of running and crashed replicas alike) is a voter.
    fn all_voters(&self) -> bool {
        self.nodes
            .iter()
            .all(|n| matches!(n.storage.identity, Some((_, Standing::Voter))))
    }

    fn can_crash(&self) -> bool {
        let down = self.nodes.iter().filter(|n| n.replica.is_none()).count();
        down < self.sc.replicas / 2
    }

    /// Invariants on what a replica is about to persist.
    fn check_records(&mut self, uid: Uid, records: &[Record]) -> Result<(), Failure> {
        let node = &mut self.nodes[uid as usize];
        let mut promised = node.max_promised.unwrap_or(Ballot::ZERO);
        // Decided records extend the stored log at its end, in order.
        let mut stored_end = node.storage.decided_upto();
        for record in records {
            match record {
                Record::Promise(b) => {
                    if node.max_promised.is_some_and(|m| *b < m) {
                        return Err(format!(
                            "replica {uid}: promise went backwards from {promised} to {b}"
                        ));
                    }
                    promised = promised.max(*b);
                    node.max_promised = Some(promised);
                }
                Record::Accepted {
                    slot,
                    ballot,
                    value,
                } => {
                    if *ballot == Ballot::ZERO && self.sc.skip_slots.contains(slot) {
                        return Err(format!(
                            "replica {uid}: skipped slot {slot} accepted in (0,0)"
                        ));
                    }
                    if *ballot < promised {
                        return Err(format!(
                            "replica {uid}: accepted slot {slot} in {ballot} below its promise {promised}"
                        ));
                    }
                    check_valid(&self.submitted, value)
                        .map_err(|e| format!("replica {uid} accepted at slot {slot}: {e}"))?;
                }
                Record::Decided { slot, value, .. } => {
                    let stored = stored_end;
                    match node.storage.log.get(*slot as usize) {
                        Some(mine) if &mine.value() != value => {
                            return Err(format!(
                                "stability: replica {uid} re-decided slot {slot}: {mine:?} then {value:?}"
                            ));
                        }
                        Some(_) => {}
                        None if *slot != stored => {
                            return Err(format!(
                                "replica {uid}: Decided record for slot {slot} while its stored log ends at {stored}"
                            ));
                        }
                        None => stored_end += 1,
                    }
                }
                Record::SessionsCheckpoint { upto, .. } => {
                    if *upto > stored_end {
                        return Err(format!(
                            "replica {uid}: session checkpoint at {upto} past its stored log ({stored_end})"
                        ));
                    }
                }
                Record::Identity { .. } | Record::PeerStore { .. } => {}
            }
        }
        Ok(())
    }

    /// Agreement and validity of every decision, checked as the replica makes it (before
    /// its Decided record is durable: a reply or a read may already depend on it).
    fn check_decisions(&mut self, uid: Uid, records: &[Record]) -> Result<(), Failure> {
        for record in records {
            if let Record::Decided { slot, value, dup } = record {
                check_valid(&self.submitted, value)
                    .map_err(|e| format!("replica {uid} decided slot {slot}: {e}"))?;
                // Sessions are a function of the applied log: every replica marks the same
                // slots dup, whatever its restarts and expiries.
                match self.chosen_dup.get(slot) {
                    Some(d) if d != dup => {
                        return Err(format!(
                            "exactly-once: replica {uid} applied slot {slot} with dup={dup}, another with dup={d}"
                        ));
                    }
                    Some(_) => {}
                    None => {
                        self.chosen_dup.insert(*slot, *dup);
                    }
                }
                self.agree(uid, *slot, value)?;
            }
        }
        Ok(())
    }

    /// A Committed reply must name a slot decided with that request, and the value must be
    /// durable (accepted or decided) on a majority of stores.
    fn check_durable_reply(&self, id: RequestId, slot: Slot) -> Result<(), Failure> {
        match self.chosen.get(&slot) {
            Some(v) if v.request_id() == Some(id) => {}
            other => {
                return Err(format!(
                    "reply for {id} names slot {slot}, which holds {other:?}"
                ))
            }
        }
        let value = &self.chosen[&slot];
        let holds = |s: &MemStorage| {
            s.log.get(slot as usize).map(|e| e.value()).as_ref() == Some(value)
                || s.accepted.get(&slot).map(|(_, v)| v) == Some(value)
        };
        // A store lost since (a lost disk, one at a time) still counts: the value was
        // durable on a majority when chosen; the lost disk is the failure we tolerate.
        let holders = self
            .nodes
            .iter()
            .filter(|n| holds(&n.storage) || n.lost_storage.as_ref().is_some_and(holds))
            .count();
        if holders < self.majority() {
            return Err(format!(
                "durability: reply for {id} at slot {slot} while only {holders} stores hold it"
            ));
        }
        Ok(())
    }

    fn client_step(&mut self, c: usize) {
        let now = self.now;
        let client = &mut self.clients[c];
        if client.next_send_ms > now {
            return;
        }
        if client.pending.is_none() {
            if client.seq >= self.sc.requests_per_client {
                return;
            }
            client.seq += 1;
            let id = RequestId {
                client_id: client.client_id,
                seq: client.seq,
            };
            let body = format!("c{}-m{}", client.client_id, client.seq);
            self.submitted.insert(id, body.clone());
            self.clients[c].pending = Some((id, body, now));
        } else if let Some((_, _, sent)) = &self.clients[c].pending {
            if *sent == REDIRECTED {
                // Told where the leader is: resend there.
            } else if now < sent + CLIENT_RETRY_MS {
                return;
            } else {
                // No answer: try the next replica.
                let client = &mut self.clients[c];
                client.target = (client.target + 1) % self.sc.replicas as Uid;
            }
        }
        let client = &mut self.clients[c];
        let Some((id, body, sent)) = client.pending.as_mut() else {
            return;
        };
        *sent = now;
        let (id, body, to) = (*id, body.clone(), client.target);
        client.next_send_ms = now;
        self.log(|| format!("client {c} submits {id} to {to}"));
        self.enqueue(Packet::Submit {
            client: c,
            to,
            id,
            body,
        });
    }

    fn on_reply(&mut self, c: usize, reply: SubmitReply) -> Result<(), Failure> {
        let client = &mut self.clients[c];
        let Some((pending, _, _)) = &client.pending else {
            return Ok(()); // a late duplicate
        };
        if reply.id() != *pending {
            return Ok(()); // an answer to an earlier request: must not be matched
        }
        match reply {
            SubmitReply::Committed { id, slot } => {
                client.pending = None;
                client.next_send_ms = self.now + self.rng.below(20);
                if let Some(previous) = self.acked.insert(id, slot) {
                    if previous != slot {
                        return Err(format!("{id} acknowledged at slot {previous} and {slot}"));
                    }
                }
            }
            SubmitReply::NotLeader { leader, .. } => {
                let client = &mut self.clients[c];
                client.target = match leader {
                    Some(l) => l,
                    None => (client.target + 1) % self.sc.replicas as Uid,
                };
                client.next_send_ms = self.now + 10;
                if let Some((_, _, sent)) = client.pending.as_mut() {
                    *sent = REDIRECTED; // resend to `target` once next_send_ms allows
                }
            }
            SubmitReply::Rejected { id, reason } => {
                return Err(format!("{id} rejected: {reason}"));
            }
        }
        Ok(())
    }

    fn faults(&mut self) -> Result<(), Failure> {
        if !self.faulty() {
            if self.partition.take().is_some() {
                self.log(|| "partition healed (faults over)".into());
            }
            self.cuts.clear();
            // Like the permanent crashes below, once every store is a voter (a fresh
            // cluster needs its replicas to hear each other once).
            if self.now >= self.sc.faults_end_ms
                && self.sc.deaf_leader
                && self.deaf.is_none()
                && self.sc.permanent_down == 0
                && self.sc.skip_slots.is_empty()
                && self.all_voters()
            {
                let leader = (0..self.sc.replicas as Uid).find(|u| {
                    self.nodes[*u as usize]
                        .replica
                        .as_ref()
                        .is_some_and(|r| r.is_leader())
                });
                if let Some(leader) = leader {
                    self.log(|| format!("PERMANENT one-way cut: replica {leader} hears no peer"));
                    self.deaf = Some(leader);
                }
            }
            // A fresh cluster votes once every store registered (each needs a majority of
            // the others), and a lost disk counts as a failure until rebuilt: the permanent
            // crashes wait until every store is a voter.
            if self.now >= self.sc.faults_end_ms
                && self.sc.permanent_down > 0
                && !self.permanent_done
                && self.all_voters()
            {
                self.permanent_done = true;
                let mut uids: Vec<Uid> = (0..self.sc.replicas as Uid).collect();
                for _ in 0..self.sc.permanent_down {
                    let uid = uids.remove(self.rng.below(uids.len() as u64) as usize);
                    self.log(|| format!("PERMANENT crash of replica {uid}"));
                    let node = &mut self.nodes[uid as usize];
                    node.replica = None;
                    node.down_until = u64::MAX;
                }
            }
            // The seed's skipped-slot case: holes stay until the initial leader dies.
            // (Also when uid 0 registers and leads (0, 0) only after the faults.)
            if self.now >= self.sc.faults_end_ms && !self.sc.skip_slots.is_empty() {
                let leading_zero = self.nodes[0]
                    .replica
                    .as_ref()
                    .is_some_and(|r| r.is_leader() && r.status().ballot == Ballot::ZERO);
                if leading_zero {
                    self.crash(0);
                }
            }
            return Ok(());
        }
        if !self.cuts.is_empty() && self.now >= self.cuts_until {
            self.cuts.clear();
            self.log(|| "one-way cuts healed".into());
        } else if self.cuts.is_empty() && self.rng.chance(self.sc.one_way_per_ms) {
            let n = self.sc.replicas as u64;
            for _ in 0..self.rng.range(1, 2 * n) {
                let a = self.rng.below(n) as Uid;
                let b = self.rng.below(n) as Uid;
                if a != b {
                    self.cuts.insert((a, b));
                }
            }
            self.cuts_until = self.now + self.rng.range(50, 800);
            let cuts = self.cuts.clone();
            self.log(|| format!("one-way cuts {cuts:?}"));
        }
        if self.rng.chance(self.sc.crash_per_ms) && self.can_crash() {
            let uid = self.rng.below(self.sc.replicas as u64) as Uid;
            if self.nodes[uid as usize].replica.is_some() {
                self.crash(uid);
            }
        }
        // A lost disk counts as a failure until rebuilt: not combined with the failures
        // that last past the faults (a deaf leader, permanent crashes).
        let wipes_allowed = !self.sc.deaf_leader && self.sc.permanent_down == 0;
        if wipes_allowed
            && self.rng.chance(self.sc.wipe_per_ms)
            && self.can_crash()
            && self.all_voters()
        {
            let uid = self.rng.below(self.sc.replicas as u64) as Uid;
            if self.nodes[uid as usize].replica.is_some() {
                self.log(|| format!("LOST DISK of replica {uid}"));
                self.crash(uid);
                let node = &mut self.nodes[uid as usize];
                node.lost_storage = Some(std::mem::take(&mut node.storage));
                node.max_promised = None;
                self.wipes += 1;
            }
        }
        if self.partition.is_some() && self.now >= self.partition_until {
            self.partition = None;
            self.log(|| "partition healed".into());
        } else if self.partition.is_none() && self.rng.chance(self.sc.partition_per_ms) {
            let groups: Vec<u8> = (0..self.sc.replicas)
                .map(|_| self.rng.below(2) as u8)
                .collect();
            self.partition_until = self.now + self.rng.range(50, 800);
            self.log(|| format!("partition {groups:?}"));
            self.partition = Some(groups);
        }
        Ok(())
    }

    fn all_done(&self) -> bool {
        self.clients
            .iter()
            .all(|c| c.pending.is_none() && c.seq >= self.sc.requests_per_client)
    }

    fn run(&mut self) -> Result<(), Failure> {
        while self.now <= self.sc.deadline_ms {
            self.faults()?;
            // Restart replicas whose downtime is over.
            for uid in 0..self.sc.replicas as Uid {
                let node = &self.nodes[uid as usize];
                if node.replica.is_none() && node.down_until <= self.now {
                    self.start_node(uid)?;
                }
            }
            // Deliver everything due now.
            while let Some(Reverse((at, _, key))) = self.net.peek().copied() {
                if at > self.now {
                    break;
                }
                self.net.pop();
                let Some(packet) = self.packets.remove(&key) else {
                    continue;
                };
                match packet {
                    Packet::Peer { from, to, msg } => {
                        if self.connected(from, to) {
                            self.deliver(to, Some(Input::Peer { from, msg }))?;
                        }
                    }
                    Packet::Submit {
                        client,
                        to,
                        id,
                        body,
                    } => {
                        let input = Input::Submit {
                            client: client as u64,
                            id,
                            body,
                        };
                        self.deliver(to, Some(input))?;
                    }
                    Packet::Reply { client, reply } => self.on_reply(client, reply)?,
                }
            }
            // Complete the flushes due now.
            for uid in 0..self.sc.replicas as Uid {
                if self.nodes[uid as usize]
                    .flush_at
                    .is_some_and(|at| at <= self.now)
                {
                    self.flush(uid, true)?;
                }
            }
            if self.rng.chance(self.sc.read_per_ms) {
                self.start_read()?;
            }
            self.check_reads()?;
            if self.now.is_multiple_of(TICK_MS) {
                for uid in 0..self.sc.replicas as Uid {
                    let now_ms = self.now;
                    self.deliver(uid, Some(Input::Tick { now_ms }))?;
                }
            }
            for c in 0..self.clients.len() {
                self.client_step(c);
            }
            if self.now.is_multiple_of(250) {
                self.check_logs()?;
            }
            if !self.faulty()
                && self.all_done()
                && self.converged()
                && (self.wipes == 0 || self.all_voters())
            {
                break;
            }
            self.now += 1;
        }
        self.check_logs()?;
        // A lost disk is rebuilt (registered, caught up, fenced) once the faults are over.
        if self.wipes > 0 && !self.all_voters() {
            let standings: Vec<_> = self.nodes.iter().map(|n| n.storage.identity).collect();
            return Err(format!(
                "rebuild liveness: stores not voters {}ms after faults healed: {standings:?}",
                self.sc.deadline_ms - self.sc.faults_end_ms
            ));
        }
        if !self.all_done() {
            let stuck: Vec<_> = self
                .clients
                .iter()
                .filter_map(|c| c.pending.as_ref().map(|p| p.0))
                .collect();
            return Err(format!(
                "liveness: requests {stuck:?} not committed {}ms after faults healed",
                self.sc.deadline_ms - self.sc.faults_end_ms
            ));
        }
        self.check_final()
    }

    fn converged(&self) -> bool {
        let uptos: HashSet<Slot> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(uid, _)| self.deaf != Some(*uid as Uid))
            .filter_map(|(_, n)| n.replica.as_ref().map(|r| r.decided_upto()))
            .collect();
        let Some(upto) = uptos.iter().next().copied() else {
            return false;
        };
        // No holes: nothing decided anywhere above the common prefix.
        uptos.len() == 1
            && self
                .nodes
                .iter()
                .all(|n| n.replica.is_some() || n.down_until == u64::MAX)
            && self.chosen.keys().all(|s| *s < upto)
    }

    /// Exactly-once and agreement over every replica's applied log.
    fn check_logs(&self) -> Result<(), Failure> {
        for (uid, node) in self.nodes.iter().enumerate() {
            if node.replica.is_none() {
                continue;
            }
            let mut seen: HashMap<RequestId, Slot> = HashMap::new();
            let log = self.applied_log(uid as Uid);
            for entry in &log {
                if self.chosen.get(&entry.slot).map(|v| v.request_id()) != Some(entry.id) {
                    return Err(format!(
                        "replica {uid} applied slot {} not matching the chosen value",
                        entry.slot
                    ));
                }
                if entry.kind == LogEntryKind::Msg {
                    let id = entry.id.ok_or("msg without id")?;
                    if let Some(first) = seen.insert(id, entry.slot) {
                        // Allowed only if the client's session can have expired in between:
                        // after one of its Msgs, at least `sessions_max` other clients
                        // applied before its next one (LRU eviction).
                        // A model of the client's session over the window: set by each of
                        // its Msgs, gone once `sessions_max` other clients applied after
                        // its last one (LRU eviction). The copy may apply only if the
                        // session is gone or holds a lower seq.
                        let window = &log[first as usize..entry.slot as usize];
                        let mut session = Some(id.seq);
                        let mut others: HashSet<u64> = HashSet::new();
                        for e in window.iter().skip(1) {
                            let Some(i) = e.id else { continue };
                            if e.kind != LogEntryKind::Msg {
                                continue;
                            }
                            if i.client_id == id.client_id {
                                others.clear();
                                session = Some(i.seq);
                            } else {
                                others.insert(i.client_id);
                                if others.len() >= self.sc.sessions_max {
                                    session = None;
                                }
                            }
                        }
                        let expired = session.is_none_or(|seq| seq < id.seq);
                        if !expired {
                            return Err(format!(
                                "exactly-once: replica {uid} applied {id} at slots {first} and {} with its session live",
                                entry.slot
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// After healing: every replica holds the same log and every acknowledged request is
    /// in it once, at the slot its client was told.
    fn check_final(&self) -> Result<(), Failure> {
        if !self.converged() {
            return Err("liveness: replicas did not converge on one decided prefix".into());
        }
        let logs: Vec<(usize, Vec<paxos::core::LogEntry>)> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(uid, _)| self.deaf != Some(*uid as Uid))
            .filter(|(_, n)| n.replica.is_some())
            .map(|(uid, _)| (uid, self.applied_log(uid as Uid)))
            .collect();
        let (first_uid, reference) = logs.first().cloned().ok_or("no replica is up")?;
        for (uid, log) in &logs {
            if log != &reference {
                return Err(format!(
                    "replica {uid}'s log differs from replica {first_uid}'s"
                ));
            }
        }
        // The dup verdicts are the session rule applied to the chosen values (the same
        // on every replica is not enough: a request wrongly marked dup everywhere would
        // be lost).
        let chosen: std::collections::BTreeMap<Slot, Value> = reference
            .iter()
            .filter_map(|e| self.chosen.get(&e.slot).map(|v| (e.slot, v.clone())))
            .collect();
        let expected = paxos::core::applied::applied_log(&chosen, self.sc.sessions_max);
        if expected != reference {
            return Err("exactly-once: the applied log's dup verdicts differ from the session rule over the chosen values".into());
        }
        for (id, slot) in &self.acked {
            match reference.get(*slot as usize) {
                Some(e) if e.kind == LogEntryKind::Msg && e.id == Some(*id) => {}
                other => {
                    return Err(format!(
                        "acknowledged {id} at slot {slot} but the log holds {other:?} there"
                    ))
                }
            }
        }
        Ok(())
    }

    /// Agreement: `slot` decided as `value` at `uid` matches every other decision of it.
    fn agree(&mut self, uid: Uid, slot: Slot, value: &Value) -> Result<(), Failure> {
        match self.chosen.get(&slot) {
            Some(v) if v != value => Err(format!(
                "agreement: slot {slot} decided as {v:?} elsewhere and {value:?} at replica {uid}"
            )),
            Some(_) => Ok(()),
            None => {
                self.chosen.insert(slot, value.clone());
                Ok(())
            }
        }
    }

    /// A replica's whole applied log, as a reader sees it: from its store below the
    /// core's `stored_upto`, from the core above.
    fn applied_log(&self, uid: Uid) -> Vec<LogEntry> {
        let node = &self.nodes[uid as usize];
        let Some(r) = &node.replica else {
            return Vec::new();
        };
        let stored = r.stored_upto() as usize;
        let mut log: Vec<LogEntry> =
            node.storage.log[..stored.min(node.storage.log.len())].to_vec();
        log.extend(r.log_entries(r.stored_upto(), usize::MAX));
        log
    }

    /// Agreement of what the core holds decided (above its prefix too) with every other
    /// decision, after every step; and the core holds only a bounded part of the log.
    fn check_held(&mut self, uid: Uid) -> Result<(), Failure> {
        let Some(r) = &self.nodes[uid as usize].replica else {
            return Ok(());
        };
        let mut decided = Vec::new();
        for (slot, value) in r.decided() {
            if *slot < r.stored_upto() {
                return Err(format!(
                    "replica {uid} holds slot {slot} below its stored prefix {}",
                    r.stored_upto()
                ));
            }
            decided.push((*slot, value.clone()));
        }
        let stored_upto = r.stored_upto();
        for (slot, value) in &decided {
            self.agree(uid, *slot, value)?;
        }
        if stored_upto > self.nodes[uid as usize].storage.decided_upto() {
            return Err(format!(
                "replica {uid} believes slots below {} stored, its store ends at {}",
                stored_upto,
                self.nodes[uid as usize].storage.decided_upto()
            ));
        }
        Ok(())
    }
}

fn check_valid(submitted: &HashMap<RequestId, String>, value: &Value) -> Result<(), String> {
    match value {
        Value::Noop => Ok(()),
        Value::Msg { id, body } => match submitted.get(id) {
            Some(b) if b == body => Ok(()),
            _ => Err(format!("validity: {id} = {body:?} was never submitted")),
        },
    }
}

/// Runs one seed; `Err` carries the reason and the scenario.
fn run_seed(seed: u64, trace: bool) -> Result<(u64, u64, u64, u64), String> {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let mut sim = Sim::new(seed, trace);
        let result = sim.run();
        (
            result,
            sim.sc.clone(),
            sim.steps,
            sim.now,
            sim.reads_checked,
            sim.wipes,
        )
    }));
    match outcome {
        Ok((Ok(()), _, steps, now, reads, wipes)) => Ok((steps, now, reads, wipes)),
        Ok((Err(reason), sc, steps, now, _, _)) => Err(format!(
            "{reason}\n  at {now}ms after {steps} steps; scenario {sc:?}"
        )),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("panicked: {msg}"))
        }
    }
}

/// A seed and what running it gave: (steps, simulated ms, reads checked, lost disks) or
/// the failure.
type SeedOutcome = (u64, Result<(u64, u64, u64, u64), String>);

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn seeds() {
    if env_u64("PAXOS_SIM_SEED").is_some() {
        return; // replay mode: see `replay`
    }
    let count = env_u64("PAXOS_SIM_SEEDS").unwrap_or(3000);
    let first = env_u64("PAXOS_SIM_FIRST_SEED").unwrap_or(0);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let started = std::time::Instant::now();
    std::panic::set_hook(Box::new(|_| {})); // failures are reported with their seed below
    let results: Vec<SeedOutcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (first..first + count)
                        .filter(|s| s % threads == t)
                        .map(|seed| (seed, run_seed(seed, false)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let _ = std::panic::take_hook();
    let steps: u64 = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .map(|r| r.0)
        .sum();
    let reads: u64 = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .map(|r| r.2)
        .sum();
    let wipes: u64 = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .map(|r| r.3)
        .sum();
    let mut failures: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
    failures.sort_by_key(|(s, _)| *s);
    println!(
        "simulator: {} seeds, {} failed, {} steps, {} linearizable reads checked, {} lost disks rebuilt, {:.1}s",
        results.len(),
        failures.len(),
        steps,
        reads,
        wipes,
        started.elapsed().as_secs_f64()
    );
    for (seed, result) in failures.iter().take(5) {
        if let Err(reason) = result {
            println!("seed {seed} FAILED: {reason}");
            println!(
                "  replay: PAXOS_SIM_SEED={seed} cargo test --test simulator replay -- --nocapture"
            );
        }
    }
    assert_eq!(results.len() as u64, count, "some seeds did not run");
    assert!(
        failures.is_empty(),
        "{} seeds failed (see above)",
        failures.len()
    );
}

#[test]
fn replay() {
    let Some(seed) = env_u64("PAXOS_SIM_SEED") else {
        return;
    };
    match run_seed(seed, true) {
        Ok((steps, now, reads, _)) => {
            println!("seed {seed} passed: {steps} steps, {reads} reads checked, {now}ms simulated")
        }
        Err(reason) => panic!("seed {seed} failed: {reason}"),
    }
}

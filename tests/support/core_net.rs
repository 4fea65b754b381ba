//! Cores stepped by hand, for tests that read like the protocol: one-line message
//! constructors (`prepare`, `promise`, `accept`, `accepted`, `heartbeat`), a text printer
//! for a [`Ready`] (`show`), and [`Net`], a hand-driven network of cores for scripted
//! schedules where every message waits in `outbox` until a test delivers or drops it.
//! Storage is synchronous here: a `Ready`'s records are applied to the store and the
//! replica is told `Persisted` at once.
use paxos::core::*;
use paxos::storage::{LogRead, MemStorage, Storage};
use std::fmt::Write as _;

pub const HB: u64 = 100;
pub const TIMEOUT: u64 = 500;

pub struct Net {
    pub reps: Vec<Option<Replica>>,
    pub stores: Vec<MemStorage>,
    pub outbox: Vec<(Uid, Uid, PeerMessage)>,
    pub replies: Vec<(Uid, u64, SubmitReply)>,
    pub n: usize,
    pub now: u64,
    pub chunk: usize,
    /// Replica starts so far: each start's incarnation (a fresh store's id) is higher.
    pub starts: u64,
}

/// Request `seq` of the one test client (client id 7).
pub fn id(seq: u64) -> RequestId {
    RequestId { client_id: 7, seq }
}
/// The chat message of request `seq`: body `m<seq>`.
pub fn msg(seq: u64) -> Value {
    Value::Msg {
        id: id(seq),
        body: format!("m{seq}"),
    }
}
pub fn b(round: u64, uid: Uid) -> Ballot {
    Ballot::new(round, uid)
}
/// The store-id view hand-built messages carry: three replicas, each on store 1 (a test
/// config's incarnation is 0, and a fresh store takes `max(incarnation, 1)`).
pub fn stores3() -> Vec<u64> {
    vec![1; 3]
}
/// A fresh store of a fresh cluster that has already registered (the state a hand-stepped
/// test starts from: uid 0 leads (0, 0) at once).
pub fn registered_state() -> PersistentState {
    PersistentState {
        identity: Some((1, Standing::Voter)),
        peer_stores: (0..3).map(|uid| (uid, 1, false)).collect(),
        ..PersistentState::default()
    }
}
pub fn prepare(ballot: Ballot, from_slot: Slot) -> PeerMessage {
    PeerMessage::Prepare {
        ballot,
        from_slot,
        stores: stores3(),
    }
}
/// A last-chunk Promise answering a Prepare from `from_slot`.
pub fn promise(
    ballot: Ballot,
    from_slot: Slot,
    decided_upto: Slot,
    entries: Vec<PromiseEntry>,
) -> PeerMessage {
    PeerMessage::Promise {
        ballot,
        from_slot,
        decided_upto,
        entries,
        next_slot: None,
        stores: stores3(),
    }
}
/// A phase-1 report: `value` accepted at `slot` in `ballot` (`None`: known decided).
pub fn reported(slot: Slot, accepted_in: Option<Ballot>, value: Value) -> PromiseEntry {
    PromiseEntry {
        slot,
        accepted_in,
        value,
    }
}
pub fn accept(
    ballot: Ballot,
    first_slot: Slot,
    values: Vec<Value>,
    decided_upto: Slot,
) -> PeerMessage {
    PeerMessage::Accept {
        ballot,
        first_slot,
        values,
        decided_upto,
        decided_above: Vec::new(),
    }
}
pub fn accepted(ballot: Ballot, first_slot: Slot, count: u64, decided_upto: Slot) -> PeerMessage {
    PeerMessage::Accepted {
        ballot,
        first_slot,
        count,
        decided_upto,
    }
}
pub fn heartbeat(ballot: Ballot, decided_upto: Slot) -> PeerMessage {
    PeerMessage::Heartbeat {
        beat: 1,
        ballot,
        decided_upto,
        decided_above: Vec::new(),
    }
}
pub fn submit_input(client: ClientRef, seq: u64) -> Input {
    Input::Submit {
        client,
        id: id(seq),
        body: format!("m{seq}"),
    }
}

/// A `Ready` as text, one effect a line, so a failing step shows what the core did:
/// `persist ...`, `send-now -> 1 ...`, `send-after -> 1 ...`, `reply 3 ...`.
pub fn show(ready: &Ready) -> String {
    let mut out = format!("ready #{}\n", ready.seq);
    for r in &ready.records {
        let _ = writeln!(out, "  persist {r:?}");
    }
    for (to, m) in &ready.messages_now {
        let _ = writeln!(out, "  send-now -> {to} {m:?}");
    }
    for (to, m) in &ready.messages {
        let _ = writeln!(out, "  send-after-flush -> {to} {m:?}");
    }
    for (c, r) in &ready.replies {
        let _ = writeln!(out, "  reply {c} {r:?}");
    }
    for send in &ready.log_sends {
        let _ = writeln!(out, "  from-store {send:?}");
    }
    out
}

/// Every message of `ready`, whether it goes at once or after the flush.
pub fn all_messages(ready: &Ready) -> Vec<(Uid, PeerMessage)> {
    ready
        .messages_now
        .iter()
        .chain(ready.messages.iter())
        .cloned()
        .collect()
}

impl Net {
    pub fn new(n: usize) -> Net {
        Net::with_chunk(n, 1024)
    }
    pub fn with_chunk(n: usize, chunk: usize) -> Net {
        let mut net = Net {
            reps: Vec::new(),
            stores: vec![MemStorage::default(); n],
            outbox: Vec::new(),
            replies: Vec::new(),
            n,
            now: 0,
            chunk,
            starts: 0,
        };
        for u in 0..n {
            net.reps.push(None);
            net.start(u as Uid);
        }
        net.register_all();
        net
    }
    /// Fresh stores register with each other (a tick sends `Register`), so a scripted
    /// schedule starts from a fresh cluster whose uid 0 leads (0, 0).
    pub fn register_all(&mut self) {
        for u in 0..self.n as Uid {
            let now = self.now;
            self.tick(u, now);
        }
        self.deliver(|_, _, m| {
            matches!(
                m,
                PeerMessage::Register { .. } | PeerMessage::Registered { .. }
            )
        });
    }
    pub fn cfg(&self, u: Uid) -> ReplicaConfig {
        let mut c = ReplicaConfig::new(u, self.n, HB, TIMEOUT);
        c.chunk_entries_max = self.chunk;
        c.incarnation = self.starts;
        c
    }
    pub fn start(&mut self, u: Uid) {
        self.starts += 1;
        let state = self.stores[u as usize].load().expect("memory store loads");
        let r = Replica::new(self.cfg(u), state, self.now);
        self.reps[u as usize] = Some(r);
        self.flush(u);
    }
    pub fn crash(&mut self, u: Uid) {
        self.reps[u as usize] = None;
        self.outbox.retain(|(f, _, _)| *f != u);
    }
    pub fn r(&self, u: Uid) -> &Replica {
        self.reps[u as usize].as_ref().expect("replica running")
    }
    pub fn flush(&mut self, u: Uid) {
        let Some(r) = self.reps[u as usize].as_mut() else {
            return;
        };
        loop {
            let ready = r.take_ready();
            if ready.is_empty() {
                return;
            }
            for (to, m) in all_messages(&ready) {
                self.outbox.push((u, to, m));
            }
            // Answers made of entries only the store holds (it has every one: the core
            // drops a slot only once it is durable).
            for send in &ready.log_sends {
                let store = &self.stores[u as usize];
                let entries = store
                    .read_log(send.from_slot, send.entries_max, send.bytes_max)
                    .expect("memory store reads");
                let (m, _) = send
                    .complete(entries)
                    .expect("the store holds what the core dropped");
                self.outbox.push((u, send.to, m));
            }
            for rec in &ready.records {
                self.stores[u as usize].apply(rec);
            }
            for (c, rep) in ready.replies {
                self.replies.push((u, c, rep));
            }
            // Synchronous disk: durable at once (may choose the leader's own proposals).
            r.step(Input::Persisted { seq: ready.seq });
        }
    }
    pub fn step(&mut self, u: Uid, input: Input) {
        if let Some(r) = self.reps[u as usize].as_mut() {
            r.step(input);
        }
        self.flush(u);
    }
    pub fn tick(&mut self, u: Uid, now: u64) {
        self.now = self.now.max(now);
        self.step(u, Input::Tick { now_ms: now });
    }
    pub fn submit(&mut self, u: Uid, seq: u64) {
        self.step(
            u,
            Input::Submit {
                client: seq,
                id: id(seq),
                body: format!("m{seq}"),
            },
        );
    }
    /// Delivers (once) every queued message matching `pred`, repeatedly until none match; others stay queued.
    pub fn deliver(&mut self, mut pred: impl FnMut(Uid, Uid, &PeerMessage) -> bool) -> usize {
        let mut count = 0;
        loop {
            let pos = self.outbox.iter().position(|(f, t, m)| pred(*f, *t, m));
            let Some(pos) = pos else { break };
            let (f, t, m) = self.outbox.remove(pos);
            count += 1;
            self.step(t, Input::Peer { from: f, msg: m });
        }
        count
    }
    pub fn drop_all(&mut self) {
        self.outbox.clear();
    }
    pub fn drop_where(&mut self, mut pred: impl FnMut(Uid, Uid, &PeerMessage) -> bool) {
        self.outbox.retain(|(f, t, m)| !pred(*f, *t, m));
    }
}

/// Agreement over every store and every running replica: no slot decided two ways.
pub fn assert_agreement(net: &Net) {
    let mut chosen: std::collections::BTreeMap<Slot, Value> = Default::default();
    let running = net.reps.iter().flatten().map(|r| r.decided().clone());
    let stored = net
        .stores
        .iter()
        .map(|s| s.log.iter().map(|e| (e.slot, e.value())).collect());
    for decided in running.chain(stored) {
        for (slot, value) in decided {
            let first = chosen.entry(slot).or_insert_with(|| value.clone());
            assert_eq!(first, &value, "agreement violated at slot {slot}");
        }
    }
}

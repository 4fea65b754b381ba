//! A hand-driven network of cores for scripted schedules: every message waits in
//! `outbox` until a test delivers or drops it. (Written by the review that found the
//! bugs these scenarios pin down.)
#![allow(dead_code)]
use paxos::core::*;
use paxos::storage::PersistentState;

pub const HB: u64 = 100;
pub const TIMEOUT: u64 = 500;

pub struct Net {
    pub reps: Vec<Option<Replica>>,
    pub stores: Vec<PersistentState>,
    pub outbox: Vec<(Uid, Uid, PeerMessage)>,
    pub replies: Vec<(Uid, u64, SubmitReply)>,
    pub n: usize,
    pub now: u64,
    pub chunk: usize,
}

pub fn id(seq: u64) -> RequestId {
    RequestId { client_id: 7, seq }
}
pub fn msg(seq: u64) -> Value {
    Value::Msg {
        id: id(seq),
        body: format!("m{seq}"),
    }
}

impl Net {
    pub fn new(n: usize) -> Net {
        Net::with_chunk(n, 1024)
    }
    pub fn with_chunk(n: usize, chunk: usize) -> Net {
        let mut net = Net {
            reps: Vec::new(),
            stores: vec![PersistentState::default(); n],
            outbox: Vec::new(),
            replies: Vec::new(),
            n,
            now: 0,
            chunk,
        };
        for u in 0..n {
            net.reps.push(None);
            net.start(u as Uid);
        }
        net
    }
    pub fn cfg(&self, u: Uid) -> ReplicaConfig {
        let mut c = ReplicaConfig::new(u, self.n, HB, TIMEOUT);
        c.chunk_entries_max = self.chunk;
        c
    }
    pub fn start(&mut self, u: Uid) {
        let r = Replica::new(self.cfg(u), self.stores[u as usize].clone(), self.now);
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
        let ready = r.take_ready();
        for rec in &ready.records {
            self.stores[u as usize].apply(rec);
        }
        for (to, m) in ready.messages {
            self.outbox.push((u, to, m));
        }
        for (c, rep) in ready.replies {
            self.replies.push((u, c, rep));
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
    let stored = net.stores.iter().map(|s| s.decided.clone());
    for decided in running.chain(stored) {
        for (slot, value) in decided {
            let first = chosen.entry(slot).or_insert_with(|| value.clone());
            assert_eq!(first, &value, "agreement violated at slot {slot}");
        }
    }
}

//! The leader: phase 2a. Client submits (`on_submit`, deduplicated by request id),
//! proposing queued values into the pipeline window (`flush_proposals`, `propose`),
//! Accept batches (`send_accepts`), counting Accepted (`on_accepted`, `check_chosen`),
//! heartbeats and retransmission, and releasing waiting clients when leadership ends.

use super::learner::superseded_reason;
use super::quorum::QuorumState;
use super::{Replica, RoleState};
use crate::core::message::{ClientRef, PeerMessage, Record, SubmitReply};
use crate::core::sessions::SessionLookup;
use crate::core::types::{Ballot, RequestId, Slot, Uid, Value};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// A value the leader proposed in its ballot that is not chosen yet.
#[derive(Debug)]
pub(super) struct Proposal {
    pub(super) value: Value,
    /// Bit `uid` set once `uid` accepted this slot in the leader's ballot.
    pub(super) acks: u64,
    pub(super) sent_ms: u64,
    pub(super) clients: Vec<ClientRef>,
}

/// A client request waiting for room in the pipeline window.
#[derive(Debug)]
pub(super) struct Queued {
    pub(super) id: RequestId,
    pub(super) body: String,
    pub(super) clients: Vec<ClientRef>,
}

/// Phase 2: this replica leads `ballot`.
#[derive(Debug)]
pub(super) struct Leadership {
    pub(super) ballot: Ballot,
    /// The first slot this leadership proposes in (everything from here on is either
    /// proposed in `ballot` or learned in phase 1). Catch-up never decides slots at or
    /// above it while leading: the leader advertises only what it chose itself.
    pub(super) start_slot: Slot,
    /// The next slot a fresh client value goes into.
    pub(super) next_slot: Slot,
    pub(super) inflight: BTreeMap<Slot, Proposal>,
    /// Which slot an in-flight request was proposed in (joins duplicates).
    pub(super) request_slots: HashMap<RequestId, Slot>,
    pub(super) queue: VecDeque<Queued>,
    /// The ids in `queue`, so a duplicate submit is found without a scan.
    pub(super) queued: HashSet<RequestId>,
    /// Phase-1 values still to re-propose: the highest-ballot accepted value of each slot
    /// in `start_slot..next_slot` that is not decided. Drained into the window by
    /// `fill_recovered`, with a no-op for every slot that has none.
    pub(super) recovered: BTreeMap<Slot, Value>,
    /// The next slot of `start_slot..next_slot` not yet re-proposed or filled.
    pub(super) fill_next: Slot,
    /// The `Ready::seq` that recorded this leader's promise of `ballot`: its Accepts wait
    /// for their records until that Ready is durable (see `Replica::send`).
    pub(super) promise_seq: u64,
    /// Own accepts not yet known durable, by the `Ready::seq` that records them. The
    /// leader's own vote for a slot counts only once its accept is durable.
    pub(super) own_pending: BTreeMap<u64, Vec<Slot>>,
    pub(super) heartbeat_sent_ms: u64,
    pub(super) resend_scan_ms: u64,
    /// Heartbeat acks, check-quorum and pending read indexes.
    pub(super) quorum: QuorumState,
}

impl Leadership {
    pub(super) fn new(
        ballot: Ballot,
        start_slot: Slot,
        next_slot: Slot,
        now_ms: u64,
        promise_seq: u64,
        replicas: usize,
    ) -> Leadership {
        Leadership {
            ballot,
            start_slot,
            next_slot,
            inflight: BTreeMap::new(),
            request_slots: HashMap::new(),
            queue: VecDeque::new(),
            queued: HashSet::new(),
            recovered: BTreeMap::new(),
            fill_next: start_slot,
            promise_seq,
            own_pending: BTreeMap::new(),
            heartbeat_sent_ms: 0,
            quorum: QuorumState::new(replicas, now_ms, next_slot),
            resend_scan_ms: now_ms,
        }
    }
}

impl Replica {
    /// Leaving leadership: every client waiting on this leader's proposals or queue is
    /// told to go elsewhere now (it retries with the same id; a proposal that still gets
    /// chosen is found by the next leader's dedupe), instead of waiting for a timeout.
    pub(super) fn release_clients(&mut self, leader: Option<Uid>) {
        self.release_reads();
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

    pub(super) fn on_submit(&mut self, client: ClientRef, id: RequestId, body: String) {
        if self.shutting_down {
            self.ready
                .replies
                .push((client, SubmitReply::NotLeader { id, leader: None }));
            return;
        }
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
        match self.sessions.lookup(id) {
            SessionLookup::Applied { slot } => {
                self.ready
                    .replies
                    .push((client, SubmitReply::Committed { id, slot }));
                return;
            }
            SessionLookup::Superseded { latest } => {
                let reason = superseded_reason(latest);
                self.ready
                    .replies
                    .push((client, SubmitReply::Rejected { id, reason }));
                return;
            }
            SessionLookup::Unknown => {}
        }
        if self.decided_unapplied.contains_key(&id) {
            // Chosen already, above a hole: answered once it applies.
            self.awaiting_apply.entry(id).or_default().push(client);
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

    /// Shutting down: queued client values go back to their clients (they retry
    /// elsewhere with the same id); what is in flight still gets chosen; the followers
    /// hear the decided prefix at once, and again with every heartbeat.
    pub(super) fn on_shut_down(&mut self) {
        self.shutting_down = true;
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        let queued: Vec<_> = l.queue.drain(..).collect();
        l.queued.clear();
        l.quorum.beat_wanted = true;
        for q in queued {
            for client in q.clients {
                self.ready.replies.push((
                    client,
                    SubmitReply::NotLeader {
                        id: q.id,
                        leader: None,
                    },
                ));
            }
        }
    }

    /// Moves queued client values into the pipeline, as many as the window allows, and
    /// sends them in as few Accept messages as the batch bounds allow.
    pub(super) fn flush_proposals(&mut self) {
        if !matches!(&self.role, RoleState::Leader(l) if !l.queue.is_empty() || l.fill_next < l.next_slot)
        {
            return;
        }
        let RoleState::Leader(mut l) = std::mem::replace(&mut self.role, RoleState::Follower)
        else {
            return;
        };
        let mut proposed = Vec::new();
        self.fill_recovered(&mut l, &mut proposed);
        // Fresh client values go above every recovered slot, once those are proposed.
        while l.fill_next >= l.next_slot && l.inflight.len() < self.config.inflight_slots_max {
            let Some(q) = l.queue.pop_front() else { break };
            l.queued.remove(&q.id);
            if l.ballot == Ballot::ZERO {
                while self.config.skip_slots.contains(&l.next_slot) {
                    l.next_slot += 1;
                }
            }
            let slot = l.next_slot;
            l.next_slot += 1;
            l.fill_next = l.next_slot;
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

    /// Re-proposes phase-1 values (or no-ops in holes) from `fill_next`, as many as the
    /// pipeline window allows; appends the slots proposed to `proposed`.
    pub(super) fn fill_recovered(&mut self, l: &mut Leadership, proposed: &mut Vec<Slot>) {
        while l.fill_next < l.next_slot && l.inflight.len() < self.config.inflight_slots_max {
            let slot = l.fill_next;
            l.fill_next += 1;
            if self.is_decided(slot) {
                continue;
            }
            let value = l.recovered.remove(&slot).unwrap_or(Value::Noop);
            self.propose(l, slot, value, Vec::new());
            proposed.push(slot);
        }
    }

    /// The leader accepts its own proposal (persisted with this Ready, before any send).
    pub(super) fn propose(
        &mut self,
        l: &mut Leadership,
        slot: Slot,
        value: Value,
        clients: Vec<ClientRef>,
    ) {
        debug_assert!(!self.is_decided(slot), "proposing in decided slot {slot}");
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
        // Our own vote counts once this Ready is durable (`on_persisted`).
        l.own_pending.entry(self.ready.seq).or_default().push(slot);
        l.inflight.insert(
            slot,
            Proposal {
                value,
                acks: 0,
                sent_ms: self.now_ms,
                clients,
            },
        );
    }

    /// Sends Accepts for in-flight `slots` (sorted) to `only` or to every peer, one
    /// message per contiguous run, each bounded in values and bytes.
    pub(super) fn send_accepts(&mut self, slots: &[Slot], only: Option<Uid>) {
        let RoleState::Leader(l) = &self.role else {
            return;
        };
        let ballot = l.ballot;
        let decided_upto = self.decided_upto;
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
                        decided_upto,
                        decided_above: decided_above.clone(),
                    },
                );
            }
        }
    }

    pub(super) fn on_accepted(
        &mut self,
        from: Uid,
        ballot: Ballot,
        first_slot: Slot,
        count: u64,
        decided_upto: Slot,
    ) {
        self.note_peer_decided(from, decided_upto);
        if !matches!(&self.role, RoleState::Leader(l) if l.ballot == ballot) {
            return;
        }
        self.heard_from(from);
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        let end = first_slot.saturating_add(count);
        let mut touched = Vec::new();
        for (slot, p) in l.inflight.range_mut(first_slot..end) {
            p.acks |= 1 << from;
            touched.push(*slot);
        }
        self.check_chosen(&touched);
        self.maybe_catch_up();
    }

    /// The records of every Ready up to `seq` are durable: our own accepts among them now
    /// count as votes.
    pub(super) fn on_persisted(&mut self, seq: u64) {
        // A driver never reports a Ready it was not handed; clamp rather than trust it.
        let seq = seq.min(self.ready.seq.saturating_sub(1));
        if seq <= self.durable_seq {
            return;
        }
        self.durable_seq = seq;
        self.forget_stored();
        let me = self.config.uid;
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        let later = l.own_pending.split_off(&(seq + 1));
        let durable = std::mem::replace(&mut l.own_pending, later);
        let mut touched = Vec::new();
        for slot in durable.into_values().flatten() {
            if let Some(p) = l.inflight.get_mut(&slot) {
                p.acks |= 1 << me;
                touched.push(slot);
            }
        }
        self.check_chosen(&touched);
    }

    /// Slots accepted by a majority in the leader's ballot are chosen: decide them and
    /// answer their clients (the accepts are durable on that majority).
    pub(super) fn check_chosen(&mut self, slots: &[Slot]) {
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
        if self.shutting_down && l.inflight.is_empty() && !chosen.is_empty() {
            l.quorum.beat_wanted = true; // the hand-off can go now
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
                self.answer_applied(id);
            }
        }
    }

    pub(super) fn send_heartbeat(&mut self) {
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        if self.shutting_down {
            // Stopping: say nothing until what is in flight is chosen, then hand off the
            // final decided prefix (a follower stopping too waits for it).
            l.heartbeat_sent_ms = self.now_ms;
            l.quorum.beat_wanted = false;
            if l.inflight.is_empty() {
                let ballot = l.ballot;
                let decided_upto = self.decided_upto;
                self.broadcast(PeerMessage::Handoff {
                    ballot,
                    decided_upto,
                });
            }
            return;
        }
        l.heartbeat_sent_ms = self.now_ms;
        l.quorum.beat += 1;
        l.quorum.beat_wanted = false;
        let beat = l.quorum.beat;
        let ballot = l.ballot;
        let decided_upto = self.decided_upto;
        let decided_above = self.decided_ranges();
        self.broadcast(PeerMessage::Heartbeat {
            ballot,
            beat,
            decided_upto,
            decided_above,
        });
    }

    /// Re-sends Accepts unanswered for `timeout_ms` to the peers that did not answer.
    pub(super) fn resend_accepts(&mut self) {
        let timeout = self.config.timeout_ms;
        let now = self.now_ms;
        let replicas = self.config.replicas;
        let me = self.config.uid as usize;
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
                // Our own accept is not re-sent: it is durable once its Ready is.
                if peer != me && p.acks & (1 << peer) == 0 {
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
}

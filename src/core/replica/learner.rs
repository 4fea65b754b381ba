//! The learner: deciding slots (from the leader's decided prefix and ranges, from phase 1,
//! from catch-up), applying the decided prefix and answering the clients whose requests
//! it passes, and catch-up (asking the most advanced peer for decided entries in chunks,
//! answering such requests).

use super::{LogAnswer, Replica, RoleState};
use crate::core::message::{PeerMessage, Record, SlotRange, SubmitReply};
use crate::core::sessions::SessionLookup;
use crate::core::types::{Ballot, RequestId, Slot, Uid, Value};

/// Why a request older than the client's latest applied one is refused.
pub(super) fn superseded_reason(latest: u64) -> String {
    format!("superseded: this client has already applied a later request (seq {latest}); this one will not be applied")
}

/// A catch-up request in flight.
#[derive(Debug)]
pub(super) struct CatchUpProgress {
    pub(super) peer: Uid,
    pub(super) sent_ms: u64,
}

/// Slots a replica may have applied but not yet stored before catch-up waits for its
/// disk, in units of `chunk_entries_max` (the bound on what catch-up makes the core
/// hold: 32 x 1,024 slots by default, eight CatchUp answers).
pub(super) const CATCH_UP_CHUNKS_UNSTORED: usize = 32;

/// A CatchUp answer holds up to this many times `chunk_entries_max` entries (and at most
/// `batch_bytes_max` value bytes). A laggard asks for one chunk at a time, so it catches
/// up at a chunk per round trip, and under a full write load that round trip is long
/// (~15 ms measured: the request and the answer queue behind the writes). Measured with
/// `bench/growth.sh` (500k slots behind, 256 clients writing) on one slow day:
/// 1,024-entry answers 57-88k entries/s; 4,096 (this scale) 66-123k; 8,192 144k (one run)
/// but the cluster's writes fell to 0.54x. Past this, more in flight would help, not size.
pub const CATCH_UP_CHUNK_SCALE: usize = 4;

/// Most ranges of decided slots above the prefix carried by one Accept or Heartbeat.
pub(super) const DECIDED_RANGES_MAX: usize = 64;

impl Replica {
    /// A leader of `ballot` says slots below `commit` and in `decided_above` are chosen.
    /// A slot is marked decided only if we accepted it in that same ballot (then our value
    /// is the chosen one); anything else is fetched by catch-up.
    pub(super) fn learn_commit(
        &mut self,
        leader: Uid,
        ballot: Ballot,
        leader_decided_upto: Slot,
        decided_above: &[SlotRange],
    ) {
        let mut learned: Vec<Slot> = Vec::new();
        if leader_decided_upto > self.decided_upto {
            learned.extend(
                self.accepted
                    .range(self.decided_upto..leader_decided_upto)
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
        self.note_peer_decided(leader, leader_decided_upto);
        self.maybe_catch_up();
    }

    /// Marks `slot` decided with `value`. Invariant: a decided slot never changes
    /// (agreement is checked by the simulator across replicas). Applying the prefix
    /// writes the Decided records (see [`Replica::apply_prefix`]).
    pub(super) fn decide(&mut self, slot: Slot, value: Value) {
        if slot == Slot::MAX {
            return; // malformed: no slot range can end after it
        }
        if let Some(existing) = self.decided.get(&slot) {
            // Two values for one slot means a broken peer or a protocol bug: the simulator
            // stops on it; a release build keeps the first value rather than crash on input.
            debug_assert_eq!(existing, &value, "slot {slot} decided two ways");
            return;
        }
        if slot < self.decided_upto {
            return; // applied already: the store holds it
        }
        self.accepted.remove(&slot);
        if let Some(id) = value.request_id() {
            self.decided_unapplied.entry(id).or_insert(slot);
        }
        self.decided.insert(slot, value);
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
            self.apply_prefix(end);
        } else {
            self.decided_above.insert(start, end);
        }
    }

    /// Applies the decided slots `decided_upto..end` in order: the session table says
    /// which are dups, each gets its Decided record (the store's applied log grows by
    /// one), and the clients waiting for requests applied here are answered with the
    /// request's slot (final now that every slot below is decided). Every
    /// `sessions_checkpoint_slots` slots the session table is checkpointed after them.
    fn apply_prefix(&mut self, end: Slot) {
        debug_assert!(
            (self.decided_upto..end).all(|s| self.decided.contains_key(&s)),
            "applying past a hole"
        );
        for slot in self.decided_upto..end {
            let Some(value) = self.decided.get(&slot) else {
                break;
            };
            let dup = self.sessions.apply(slot, value);
            if dup {
                self.dups_unstored.insert(slot);
            }
            self.ready.records.push(Record::Decided {
                slot,
                value: value.clone(),
                dup,
            });
            let id = value.request_id();
            self.decided_upto = slot + 1;
            if let Some(id) = id {
                self.decided_unapplied.remove(&id);
                self.answer_applied(id);
            }
        }
        self.storing.push_back((self.ready.seq, self.decided_upto));
        if self.decided_upto - self.sessions_checkpoint_upto
            >= self.config.sessions_checkpoint_slots.max(1)
        {
            self.sessions_checkpoint_upto = self.decided_upto;
            self.ready.records.push(Record::SessionsCheckpoint {
                upto: self.decided_upto,
                sessions: self.sessions.checkpoint(),
            });
        }
    }

    /// Answers the clients waiting for request `id` from what the session table says
    /// (called once the request is applied, or found applied already).
    pub(super) fn answer_applied(&mut self, id: RequestId) {
        if self.awaiting_apply.is_empty() {
            return;
        }
        let reply = match self.sessions.lookup(id) {
            SessionLookup::Applied { slot } => SubmitReply::Committed { id, slot },
            SessionLookup::Superseded { latest } => SubmitReply::Rejected {
                id,
                reason: superseded_reason(latest),
            },
            SessionLookup::Unknown => return,
        };
        if let Some(clients) = self.awaiting_apply.remove(&id) {
            for client in clients {
                self.ready.replies.push((client, reply.clone()));
            }
        }
    }

    /// Most entries in one CatchUp answer (see [`CATCH_UP_CHUNK_SCALE`]).
    pub(super) fn catch_up_entries_max(&self) -> usize {
        self.config
            .chunk_entries_max
            .saturating_mul(CATCH_UP_CHUNK_SCALE)
    }

    /// Most applied slots held while their Decided records are not durable before
    /// catch-up waits for the disk: a few chunks' worth.
    pub(super) fn unstored_max(&self) -> u64 {
        (CATCH_UP_CHUNKS_UNSTORED * self.config.chunk_entries_max) as u64
    }

    /// The Decided records of every `Ready` up to `durable_seq` are durable: the store
    /// serves those slots from now on, and the core drops them.
    pub(super) fn forget_stored(&mut self) {
        let mut stored = self.stored_upto;
        while let Some((seq, upto)) = self.storing.front() {
            if *seq > self.durable_seq {
                break;
            }
            stored = stored.max(*upto);
            self.storing.pop_front();
        }
        if stored > self.stored_upto {
            self.stored_upto = stored;
            self.decided = self.decided.split_off(&stored);
            self.dups_unstored = self.dups_unstored.split_off(&stored);
            self.maybe_catch_up();
        }
    }

    /// Decided slots above the prefix, as at most `DECIDED_RANGES_MAX` ranges.
    pub(super) fn decided_ranges(&self) -> Vec<SlotRange> {
        self.decided_above
            .iter()
            .take(DECIDED_RANGES_MAX)
            .map(|(s, e)| (*s, *e))
            .collect()
    }

    pub(super) fn note_peer_decided(&mut self, peer: Uid, decided_upto: Slot) {
        if let Some(known) = self.peer_decided_upto.get_mut(peer as usize) {
            *known = (*known).max(decided_upto);
        }
    }

    /// If some peer's decided prefix is ahead of ours and no catch-up is in flight, ask
    /// the most advanced peer for the next chunk.
    pub(super) fn maybe_catch_up(&mut self) {
        if self.catch_up.is_some() {
            return;
        }
        // Backpressure: a laggard fetches no faster than its disk stores what it learned
        // (the core holds applied slots until their Decided records are durable).
        if self.decided_upto - self.stored_upto > self.unstored_max() {
            return;
        }
        // A leader fetches only what lies below its own proposals.
        let limit = match &self.role {
            RoleState::Leader(l) => l.start_slot,
            _ => Slot::MAX,
        };
        let me = self.config.uid as usize;
        let mine = self.decided_upto;
        let leader = self.leader.map(|l| l as usize);
        // Peers that never failed to answer first (a dead peer's advertised prefix is
        // stale), then the one that failed longest ago; then the leader; then the most
        // advanced. Every failure is remembered per peer, so a live peer is always found
        // before two dead ones are tried in turn.
        let best = self
            .peer_decided_upto
            .iter()
            .enumerate()
            .filter(|(p, upto)| *p != me && (**upto).min(limit) > mine)
            .max_by_key(|(p, upto)| {
                let unanswered_ms = self.catch_up_unanswered_ms[*p];
                (
                    unanswered_ms.is_none(),
                    std::cmp::Reverse(unanswered_ms.unwrap_or(0)),
                    Some(*p) == leader,
                    **upto,
                )
            });
        if let Some((peer, _)) = best {
            let peer = peer as Uid;
            self.catch_up = Some(CatchUpProgress {
                peer,
                sent_ms: self.now_ms,
            });
            self.send(peer, PeerMessage::CatchUpRequest { from_slot: mine });
        }
    }

    pub(super) fn on_catch_up_request(&mut self, from: Uid, from_slot: Slot) {
        if from_slot < self.stored_upto {
            // Below what the core holds: the driver answers from the store.
            let decided_upto = self.decided_upto;
            let send = self.log_send(from, from_slot, LogAnswer::CatchUp { decided_upto });
            self.ready.log_sends.push(send);
            return;
        }
        let decided = self
            .decided
            .range(from_slot..)
            .map(|(slot, value)| (*slot, value.clone()));
        let (entries, _) = self.chunk(decided, self.catch_up_entries_max(), |(slot, value)| {
            (*slot, value.size_bytes())
        });
        let decided_upto = self.decided_upto;
        self.send(
            from,
            PeerMessage::CatchUp {
                entries,
                decided_upto,
            },
        );
    }

    pub(super) fn on_catch_up(
        &mut self,
        from: Uid,
        entries: Vec<(Slot, Value)>,
        decided_upto: Slot,
    ) {
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
        self.catch_up_unanswered_ms[from as usize] = None;
        self.maybe_catch_up();
    }
}

//! The acceptor: every replica, whatever its role. Phase 1b (`on_prepare`: promise or
//! refuse, then report accepted and decided entries in chunks), phase 2b (`on_accept`:
//! persist, then answer Accepted), and hearing a leader (`hear_leader`, `on_heartbeat`),
//! which feeds leader stickiness and the failure detector.

use super::{LogAnswer, Replica, RoleState};
use crate::core::message::{PeerMessage, PromiseEntry, Record, SlotRange};
use crate::core::types::{Ballot, Slot, Uid, Value};

impl Replica {
    /// Phase 1b. Refused while a live leader is heard (stickiness) or for a ballot below
    /// the promise; otherwise the promise is persisted and accepted/decided entries from
    /// `max(from_slot, decided_upto)` are reported, one chunk at a time.
    pub(super) fn on_prepare(&mut self, from: Uid, ballot: Ballot, from_slot: Slot) {
        if ballot.uid != from {
            return;
        }
        self.max_round_seen = self.max_round_seen.max(ballot.round);
        if !self.votes() {
            // A store that may have forgotten promises it gave promises nothing (lost
            // disks): the candidate's majority comes from the others.
            return;
        }
        // Stickiness first: a live leader other than the candidate refuses it outright.
        let live_leader = self.sticky_leader().filter(|live| *live != from);
        if live_leader.is_some() || ballot < self.promised {
            self.reject(from, ballot, live_leader);
            return;
        }
        // Only the first Prepare of a ballot resets our failure detector: the chunks a
        // laggard candidate fetches afterwards must not keep up-to-date replicas from
        // campaigning themselves (two laggards would otherwise pre-empt each other).
        let new_ballot = ballot > self.promised;
        self.promise(ballot);
        match &self.role {
            RoleState::Candidate(c) if c.ballot < ballot => self.become_follower(None),
            RoleState::Leader(l) if l.ballot < ballot => self.become_follower(None),
            _ => {}
        }
        if !matches!(self.role, RoleState::Candidate(_)) {
            self.leader = None;
        }
        if new_ballot {
            self.last_heard_ms = self.now_ms;
        }

        // Everything from the candidate's own prefix on, decided values included: the
        // candidate must not depend on any one peer for slots it lacks. Applied slots the
        // core no longer holds come from the store (the driver completes the chunk).
        let stores = self.stores_view();
        if from_slot < self.stored_upto {
            let decided_upto = self.decided_upto;
            let send = self.log_send(
                from,
                from_slot,
                LogAnswer::Promise {
                    ballot,
                    decided_upto,
                    stores,
                },
            );
            self.ready.log_sends.push(send);
            return;
        }
        let accepted = self
            .accepted
            .range(from_slot..)
            .map(|(slot, (b, v))| PromiseEntry {
                slot: *slot,
                accepted_in: Some(*b),
                value: v.clone(),
            });
        let decided = self
            .decided
            .range(from_slot..)
            .map(|(slot, v)| PromiseEntry {
                slot: *slot,
                accepted_in: None,
                value: v.clone(),
            });
        // A slot is in at most one of the two maps (deciding removes the accept).
        let merged = merge_by_slot(accepted, decided, |e| e.slot);
        let (entries, next_slot) = self.chunk(merged, self.config.chunk_entries_max, |e| {
            (e.slot, e.value.size_bytes())
        });
        let decided_upto = self.decided_upto;
        self.send(
            from,
            PeerMessage::Promise {
                ballot,
                from_slot,
                decided_upto,
                entries,
                next_slot,
                stores,
            },
        );
    }

    /// A leader message with `ballot` arrived from `from`. Returns false (and rejects) if
    /// the ballot is below our promise; otherwise adopts `from` as leader.
    pub(super) fn hear_leader(&mut self, from: Uid, ballot: Ballot) -> bool {
        if ballot.uid != from {
            return false;
        }
        if ballot < self.promised {
            let live_leader = self.sticky_leader();
            self.reject(from, ballot, live_leader);
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
    pub(super) fn on_accept(
        &mut self,
        from: Uid,
        ballot: Ballot,
        first_slot: Slot,
        values: Vec<Value>,
        leader_decided_upto: Slot,
        decided_above: &[SlotRange],
    ) {
        let count = values.len() as u64;
        if first_slot.checked_add(count).is_none() {
            return; // malformed: slots past the end of the slot space
        }
        if !self.hear_leader(from, ballot) {
            return;
        }
        if !self.accepts() {
            // Not fenced yet (lost disks): follow and learn, vote for nothing.
            self.learn_commit(from, ballot, leader_decided_upto, decided_above);
            return;
        }
        // A laggard accepts nothing far above its own prefix (Raft's followers cannot
        // append past a gap either): it would hold those entries in memory for as long as
        // its catch-up takes. It votes again once caught up to within the window; the
        // leader's majority meanwhile comes from the others. Declining is always safe.
        let window_end = self
            .decided_upto
            .saturating_add(self.config.accept_window_slots);
        let count = count.min(window_end.saturating_sub(first_slot));
        if count == 0 {
            self.learn_commit(from, ballot, leader_decided_upto, decided_above);
            return;
        }
        for (slot, value) in (first_slot..).zip(values).take(count as usize) {
            if self.is_decided(slot) {
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
        self.learn_commit(from, ballot, leader_decided_upto, decided_above);
    }

    /// A leader shutting down hands off its final decided prefix: learn it, ack it.
    pub(super) fn on_handoff(&mut self, from: Uid, ballot: Ballot, leader_decided_upto: Slot) {
        self.on_heartbeat(from, ballot, 0, leader_decided_upto, &[]);
    }

    /// A leader's heartbeat: follow it, answer with an ack (check-quorum, read index),
    /// and learn its decisions.
    pub(super) fn on_heartbeat(
        &mut self,
        from: Uid,
        ballot: Ballot,
        beat: u64,
        leader_decided_upto: Slot,
        decided_above: &[SlotRange],
    ) {
        if !self.hear_leader(from, ballot) {
            return;
        }
        if self.shutting_down {
            self.heard_after_shutdown = true;
        }
        self.learn_commit(from, ballot, leader_decided_upto, decided_above);
        if !self.accepts() {
            // A store that may have forgotten its promises confirms no leadership (read
            // index, check-quorum count acks as promises not to follow a higher ballot).
            return;
        }
        let decided_upto = self.decided_upto;
        self.send(
            from,
            PeerMessage::HeartbeatAck {
                ballot,
                beat,
                decided_upto,
            },
        );
    }
}

/// Merges two iterators sorted by `key` into one sorted iterator.
fn merge_by_slot<T>(
    a: impl Iterator<Item = T>,
    b: impl Iterator<Item = T>,
    key: impl Fn(&T) -> Slot,
) -> impl Iterator<Item = T> {
    let mut a = a.peekable();
    let mut b = b.peekable();
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) => {
            if key(x) <= key(y) {
                a.next()
            } else {
                b.next()
            }
        }
        (Some(_), None) => a.next(),
        (None, _) => b.next(),
    })
}

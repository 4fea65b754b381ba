//! What a leader knows of its majority, and what it does with it:
//!
//! - **Heartbeat acks**: every follower answers each Heartbeat it accepts with a
//!   HeartbeatAck echoing the beat; Accepted answers count as hearing the peer too.
//! - **Check-quorum**: a leader that has not heard from a majority (itself included)
//!   within `timeout_ms` steps down. It stops heartbeating, so followers stop being
//!   sticky to it and elect a leader that can make progress (partial connectivity, a
//!   leader whose inbound links are cut).
//! - **Read index** (linearizable reads): a read arriving at the leader takes as its
//!   index the end of what the leader knows chosen (its decided prefix and any slot
//!   it chose above a hole: a follower may have applied and acknowledged one), or the
//!   end of what it recovered in phase 1 if that is higher (an acknowledged write of an
//!   earlier leader lies below it), and is
//!   confirmed once a majority acks a heartbeat sent after the read arrived: no other
//!   leader can have chosen anything meanwhile. A read at a follower asks the leader
//!   (ReadIndexRequest) and is answered with the confirmed index. The driver serves the
//!   read once its replica has applied up to the index.
//!
//! Bounds: at most [`READS_PENDING_MAX`] reads wait at a leader and as many forwarded
//! reads at a follower; more are refused at once (`None`), as are reads that wait longer
//! than `timeout_ms` for confirmation.

use super::{Replica, RoleState};
use crate::core::message::PeerMessage;
use crate::core::types::{Slot, Uid};
use std::collections::{BTreeMap, VecDeque};

/// The driver's handle for a waiting read; opaque to the core.
pub type ReadRef = u64;

/// Most reads waiting for confirmation at one replica.
pub const READS_PENDING_MAX: usize = 65_536;

/// Who asked for a read index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ReadOrigin {
    /// A read served by this replica.
    Local(ReadRef),
    /// A follower's ReadIndexRequest `id`.
    Remote(Uid, u64),
}

/// A read waiting at the leader for a majority to ack beat `beat` (or a later one).
#[derive(Debug)]
pub(super) struct PendingRead {
    pub(super) origin: ReadOrigin,
    pub(super) beat: u64,
    pub(super) read_index: Slot,
    pub(super) since_ms: u64,
}

/// A leader's view of its followers.
#[derive(Debug)]
pub(super) struct QuorumState {
    /// The last beat sent (0: none yet).
    pub(super) beat: u64,
    /// Per uid: the highest beat that peer acked.
    pub(super) acked_beat: Vec<u64>,
    /// Per uid: when we last heard that peer answer in our ballot (Accepted or ack).
    pub(super) heard_ms: Vec<u64>,
    /// Reads waiting for confirmation, in arrival (and so beat) order.
    pub(super) reads: VecDeque<PendingRead>,
    /// A read arrived since the last beat: send one now rather than at the next period.
    pub(super) beat_wanted: bool,
    /// The end of what phase 1 recovered (every slot an earlier leader may have had
    /// acknowledged lies below it).
    pub(super) recovered_end: Slot,
}

impl QuorumState {
    pub(super) fn new(replicas: usize, now_ms: u64, recovered_end: Slot) -> QuorumState {
        QuorumState {
            beat: 0,
            acked_beat: vec![0; replicas],
            // A new leader gets one timeout of grace before check-quorum applies.
            heard_ms: vec![now_ms; replicas],
            reads: VecDeque::new(),
            beat_wanted: false,
            recovered_end,
        }
    }
}

impl Replica {
    /// A peer answered in our ballot (an Accepted or a HeartbeatAck).
    pub(super) fn heard_from(&mut self, peer: Uid) {
        let now = self.now_ms;
        if let RoleState::Leader(l) = &mut self.role {
            if let Some(t) = l.quorum.heard_ms.get_mut(peer as usize) {
                *t = now;
            }
        }
    }

    pub(super) fn on_heartbeat_ack(
        &mut self,
        from: Uid,
        ballot: crate::core::types::Ballot,
        beat: u64,
        decided_upto: Slot,
    ) {
        self.note_peer_decided(from, decided_upto);
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        if l.ballot != ballot || beat > l.quorum.beat {
            return; // another leadership's, or a beat we never sent
        }
        if let Some(acked) = l.quorum.acked_beat.get_mut(from as usize) {
            *acked = (*acked).max(beat);
        }
        self.heard_from(from);
        self.confirm_reads();
        self.maybe_catch_up();
    }

    /// Check-quorum, on every tick while leading: steps down if a majority (ourselves
    /// included) has not been heard within `timeout_ms`. Returns whether it stepped down.
    pub(super) fn check_quorum(&mut self) -> bool {
        let need = self.config.majority() - 1; // peers besides ourselves
        let me = self.config.uid as usize;
        let now = self.now_ms;
        let RoleState::Leader(l) = &self.role else {
            return false;
        };
        if need == 0 {
            return false;
        }
        let mut heard: Vec<u64> = l
            .quorum
            .heard_ms
            .iter()
            .enumerate()
            .filter(|(p, _)| *p != me)
            .map(|(_, t)| *t)
            .collect();
        heard.sort_unstable_by(|a, b| b.cmp(a));
        let majority_heard_ms = heard.get(need - 1).copied().unwrap_or(0);
        if now.saturating_sub(majority_heard_ms) < self.config.timeout_ms {
            return false;
        }
        self.become_follower(None);
        true
    }

    /// A local read asks for a read index: at the leader it waits for the next beat's
    /// majority; at a follower it is forwarded to the leader; with no leader known it is
    /// refused at once.
    pub(super) fn on_read_index(&mut self, read: ReadRef) {
        self.request_read_index(ReadOrigin::Local(read));
    }

    pub(super) fn on_read_index_request(&mut self, from: Uid, id: u64) {
        self.request_read_index(ReadOrigin::Remote(from, id));
    }

    fn request_read_index(&mut self, origin: ReadOrigin) {
        let now = self.now_ms;
        // Past every slot this leader knows chosen: a follower may already have applied
        // (and acknowledged) one above a hole in our prefix.
        let decided_end = self
            .decided
            .keys()
            .next_back()
            .map_or(0, |s| s.saturating_add(1));
        let decided_upto = self.decided_upto.max(decided_end);
        match &mut self.role {
            RoleState::Leader(l) if l.quorum.reads.len() < READS_PENDING_MAX => {
                l.quorum.reads.push_back(PendingRead {
                    origin,
                    beat: l.quorum.beat + 1,
                    read_index: decided_upto.max(l.quorum.recovered_end),
                    since_ms: now,
                });
                l.quorum.beat_wanted = true;
                // A one-replica cluster is its own majority.
                self.confirm_reads();
            }
            RoleState::Follower => match (origin, self.leader) {
                (ReadOrigin::Local(read), Some(leader))
                    if self.forwarded_reads.len() < READS_PENDING_MAX =>
                {
                    self.next_read_id += 1;
                    let id = self.next_read_id;
                    self.forwarded_reads.insert(id, (read, now));
                    self.send(leader, PeerMessage::ReadIndexRequest { id });
                }
                _ => self.answer_read(origin, None),
            },
            _ => self.answer_read(origin, None),
        }
    }

    pub(super) fn on_read_index_reply(&mut self, id: u64, read_index: Option<Slot>) {
        if let Some((read, _)) = self.forwarded_reads.remove(&id) {
            self.ready.reads.push((read, read_index));
        }
    }

    /// Answers every pending read whose beat a majority has acked.
    pub(super) fn confirm_reads(&mut self) {
        let majority = self.config.majority();
        let me = self.config.uid as usize;
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        let mut answered = Vec::new();
        while let Some(read) = l.quorum.reads.front() {
            let acks = 1 + l
                .quorum
                .acked_beat
                .iter()
                .enumerate()
                .filter(|(p, b)| *p != me && **b >= read.beat)
                .count();
            if acks < majority {
                break;
            }
            if let Some(read) = l.quorum.reads.pop_front() {
                answered.push(read);
            }
        }
        for read in answered {
            self.answer_read(read.origin, Some(read.read_index));
        }
    }

    fn answer_read(&mut self, origin: ReadOrigin, read_index: Option<Slot>) {
        match origin {
            ReadOrigin::Local(read) => self.ready.reads.push((read, read_index)),
            ReadOrigin::Remote(peer, id) => {
                self.send(peer, PeerMessage::ReadIndexReply { id, read_index })
            }
        }
    }

    /// Leaving leadership: every pending read is refused (the reader asks again).
    pub(super) fn release_reads(&mut self) {
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        let reads: Vec<PendingRead> = l.quorum.reads.drain(..).collect();
        for read in reads {
            self.answer_read(read.origin, None);
        }
    }

    /// Reads unconfirmed for `timeout_ms` are refused: at the leader (no majority acks)
    /// and at a follower (no reply from the leader).
    pub(super) fn expire_reads(&mut self) {
        let now = self.now_ms;
        let timeout = self.config.timeout_ms;
        let mut expired = Vec::new();
        if let RoleState::Leader(l) = &mut self.role {
            while l
                .quorum
                .reads
                .front()
                .is_some_and(|r| now.saturating_sub(r.since_ms) >= timeout)
            {
                if let Some(r) = l.quorum.reads.pop_front() {
                    expired.push(r.origin);
                }
            }
        }
        let stale: Vec<u64> = self
            .forwarded_reads
            .iter()
            .filter(|(_, (_, sent))| now.saturating_sub(*sent) >= timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some((read, _)) = self.forwarded_reads.remove(&id) {
                expired.push(ReadOrigin::Local(read));
            }
        }
        for origin in expired {
            self.answer_read(origin, None);
        }
    }
}

/// The reads forwarded to the leader, by request id: (read, when sent).
pub(super) type ForwardedReads = BTreeMap<u64, (ReadRef, u64)>;

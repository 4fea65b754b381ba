//! Bounds on what a peer may make us do: a broken or hostile peer (even one with a valid
//! certificate) must not make a replica allocate, propose or fill no-ops without bound,
//! panic, or wrap a ballot round. Counts (values per Accept, entries per Promise or
//! CatchUp, ranges) are bounded by the frame size already; slots and rounds are bounded
//! here, and a refused message becomes a `Ready::warnings` entry naming the peer.

use super::Replica;
use crate::core::message::PeerMessage;
use crate::core::types::{Ballot, Slot};

/// Default of [`ReplicaConfig::slot_lookahead_max`]: 2^26 (67M) slots.
pub const SLOT_LOOKAHEAD_MAX: u64 = 1 << 26;
/// The highest ballot round a peer may name: far beyond any real election count, and far
/// enough below `u64::MAX` that a round + 1 never wraps.
pub const ROUND_MAX: u64 = u64::MAX >> 2;

impl Replica {
    /// Why a peer message must be refused, if it must: a ballot round above
    /// [`ROUND_MAX`] (a round + 1 would wrap and end all elections), or a slot at or past
    /// `decided_upto + slot_lookahead_max` (it would make us allocate, propose or fill
    /// no-ops without bound). Counts are bounded by the frame size already.
    pub(super) fn out_of_bounds(&self, msg: &PeerMessage) -> Option<String> {
        let limit = self
            .decided_upto
            .saturating_add(self.config.slot_lookahead_max);
        let far = |slot: Slot| slot >= limit;
        let stores_len = match msg {
            PeerMessage::Prepare { stores, .. } | PeerMessage::Promise { stores, .. } => {
                stores.len()
            }
            _ => 0,
        };
        if stores_len > self.config.replicas {
            return Some(format!(
                "{} with {stores_len} store ids, more than the {} replicas",
                msg.kind(),
                self.config.replicas
            ));
        }
        let (ballot, slots): (Option<Ballot>, Vec<Slot>) = match msg {
            PeerMessage::Prepare { ballot, .. } => (Some(*ballot), Vec::new()),
            PeerMessage::Promise {
                ballot,
                entries,
                next_slot,
                ..
            } => (
                Some(*ballot),
                entries.iter().map(|e| e.slot).chain(*next_slot).collect(),
            ),
            PeerMessage::Reject {
                ballot, promised, ..
            } => (Some((*ballot).max(*promised)), Vec::new()),
            PeerMessage::Accept {
                ballot,
                first_slot,
                values,
                decided_above,
                ..
            } => (
                Some(*ballot),
                std::iter::once(first_slot.saturating_add(values.len() as u64))
                    .chain(decided_above.iter().map(|(lo, _)| *lo))
                    .collect(),
            ),
            PeerMessage::Accepted { ballot, .. } => (Some(*ballot), Vec::new()),
            PeerMessage::Heartbeat {
                ballot,
                decided_above,
                ..
            } => (
                Some(*ballot),
                decided_above.iter().map(|(lo, _)| *lo).collect(),
            ),
            PeerMessage::CatchUpRequest { .. }
            | PeerMessage::ReadIndexRequest { .. }
            | PeerMessage::ReadIndexReply { .. }
            | PeerMessage::Register { .. }
            | PeerMessage::Registered { .. }
            | PeerMessage::FenceRequest { .. } => (None, Vec::new()),
            PeerMessage::Fenced { ballot, end, .. } => (Some(*ballot), vec![*end]),
            PeerMessage::HeartbeatAck { ballot, .. } | PeerMessage::Handoff { ballot, .. } => {
                (Some(*ballot), Vec::new())
            }
            PeerMessage::CatchUp { entries, .. } => {
                (None, entries.iter().map(|(slot, _)| *slot).collect())
            }
        };
        if let Some(b) = ballot.filter(|b| b.round > ROUND_MAX) {
            return Some(format!(
                "{} with ballot {b}: round above the maximum {ROUND_MAX}",
                msg.kind()
            ));
        }
        if let Some(slot) = slots.into_iter().find(|s| far(*s)) {
            return Some(format!(
                "{} naming slot {slot}, {} or more above our decided prefix {}",
                msg.kind(),
                self.config.slot_lookahead_max,
                self.decided_upto
            ));
        }
        None
    }
}

//! Paxos vocabulary shared by every layer: replica ids, slots, ballots, client
//! request ids and the values that fill slots.
//!
//! The same serde types go over the wire (postcard) and to disk (postcard + crc32).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A replica's id, `0..n`. Uid 0 leads ballot (0, 0) on a fresh cluster.
pub type Uid = u32;

/// A position in the replicated log. Slots start at 0.
pub type Slot = u64;

/// A Paxos ballot: ordered by `round`, then by `uid` (field order gives the derived `Ord`).
///
/// The zero ballot `(0, 0)` is the one every acceptor starts promised to, which lets
/// uid 0 lead it without a phase 1.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Ballot {
    /// Increases with every election attempt; 0 only for the initial ballot.
    pub round: u64,
    /// The replica that leads this ballot.
    pub uid: Uid,
}

impl Ballot {
    pub const ZERO: Ballot = Ballot { round: 0, uid: 0 };

    pub fn new(round: u64, uid: Uid) -> Ballot {
        Ballot { round, uid }
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({},{})", self.round, self.uid)
    }
}

/// Whether a replica's store may vote (lost-disk safety, see the [`crate::core`] module
/// doc, "Lost disks"). Persisted with the store's id ([`crate::core::Record::Identity`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Standing {
    /// A fresh store asking its peers whether they knew an earlier store of this uid. It
    /// neither promises nor accepts, and does not campaign.
    Unregistered,
    /// A peer knew an earlier store: this one has forgotten promises and accepts it gave.
    /// A learner only: it catches up, then asks the leader for a fence (a phase 1 begun
    /// after its request, completed by a majority of the others).
    Rebuilding,
    /// A fence completed at our promise, recovering every slot below `end`: the replica
    /// accepts again, and votes in phase 1 once it has decided every slot below `end`.
    Fenced { end: u64 },
    /// A full member.
    Voter,
}

/// Identifies one client request for exactly-once: a client picks a random `client_id`
/// once and numbers its requests `seq = 1, 2, ...`; a retry reuses the same pair.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId {
    pub client_id: u64,
    pub seq: u64,
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.client_id, self.seq)
    }
}

/// What fills a slot.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Value {
    /// Fills a slot no client value was accepted in (a skipped slot, or one a dead
    /// leader never got accepted by anyone a new leader heard from).
    Noop,
    /// A chat message.
    Msg { id: RequestId, body: String },
}

impl Value {
    pub fn request_id(&self) -> Option<RequestId> {
        match self {
            Value::Noop => None,
            Value::Msg { id, .. } => Some(*id),
        }
    }

    /// Approximate encoded size, used to bound batches and chunks.
    pub fn size_bytes(&self) -> usize {
        match self {
            Value::Noop => 1,
            Value::Msg { body, .. } => 24 + body.len(),
        }
    }
}

/// How one decided slot reads once the log is applied in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogEntryKind {
    /// A no-op: nothing to show.
    Noop,
    /// The first time this request appears in the log: it counts.
    Msg,
    /// A later copy of a request already applied at an earlier slot: ignored.
    Dup,
}

/// One applied slot of the chat log, as `dump-log` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub slot: Slot,
    pub kind: LogEntryKind,
    pub id: Option<RequestId>,
    pub body: String,
}

impl LogEntry {
    /// The decided value this entry was applied from.
    pub fn value(&self) -> Value {
        match self.id {
            Some(id) if self.kind != LogEntryKind::Noop => Value::Msg {
                id,
                body: self.body.clone(),
            },
            _ => Value::Noop,
        }
    }

    pub fn from_decided(slot: Slot, value: &Value, first_time: bool) -> LogEntry {
        match value {
            Value::Noop => LogEntry {
                slot,
                kind: LogEntryKind::Noop,
                id: None,
                body: String::new(),
            },
            Value::Msg { id, body } => LogEntry {
                slot,
                kind: if first_time {
                    LogEntryKind::Msg
                } else {
                    LogEntryKind::Dup
                },
                id: Some(*id),
                body: body.clone(),
            },
        }
    }
}

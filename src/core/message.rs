//! The one message enum replicas exchange, and what the core exchanges with clients.
//!
//! Every field's doc says what its zero or `None` means. The same types are encoded with
//! postcard on the wire (see `transport`) and, for [`Record`](super::Record), on disk.

use super::sessions::Session;
use super::types::{Ballot, RequestId, Slot, Standing, Uid, Value};
use serde::{Deserialize, Serialize};

/// A half-open range `[start, end)` of decided slots above a hole in the decided prefix.
pub type SlotRange = (Slot, Slot);

/// What [`PeerMessage::size_bytes`] counts for a message's fixed fields.
pub const MESSAGE_BYTES_FIXED: usize = 64;

/// One entry a promising acceptor reports in phase 1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromiseEntry {
    pub slot: Slot,
    /// The ballot the value was accepted in; `None` means the acceptor knows the slot is
    /// decided with this value, which outranks every ballot.
    pub accepted_in: Option<Ballot>,
    pub value: Value,
}

/// Peer-to-peer protocol messages. The sender's uid travels in the envelope (transport
/// handshake, or the simulator), not in the message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerMessage {
    /// Phase 1a: "promise me `ballot`, and tell me what you accepted from `from_slot` on".
    /// Re-sent with the same ballot and a higher `from_slot` to fetch the next chunk.
    Prepare {
        ballot: Ballot,
        from_slot: Slot,
        /// The candidate's view of every replica's store id (index: uid; 0: unknown),
        /// its own included: acceptors learn newer stores from it before they promise.
        stores: Vec<u64>,
    },
    /// Phase 1b: the acceptor has durably promised `ballot`.
    Promise {
        ballot: Ballot,
        /// The `from_slot` of the Prepare this answers: a candidate takes only the chunk
        /// it asked for last (a chunk delayed from an earlier request, or from before the
        /// candidate restarted, is ignored).
        from_slot: Slot,
        /// The acceptor's decided prefix: every slot below it is decided there (0: none).
        decided_upto: Slot,
        /// Accepted or decided entries at slots `>= from_slot`, in slot order, at most one
        /// chunk of them (decided ones with `accepted_in: None`).
        entries: Vec<PromiseEntry>,
        /// `None`: this was the last chunk. `Some(s)`: more entries start at slot `s`.
        next_slot: Option<Slot>,
        /// The promiser's view of every replica's store id (index: uid; 0: unknown), its
        /// own included. A candidate counts a promise only from the newest store it knows
        /// of for that uid (a promise of a store since lost is void).
        stores: Vec<u64>,
    },
    /// A Prepare, Accept or Heartbeat for `ballot` was refused.
    Reject {
        /// The ballot that was refused.
        ballot: Ballot,
        /// The rejecting acceptor's promised ballot.
        promised: Ballot,
        /// `Some(uid)`: refused because the acceptor heard leader `uid` within
        /// `timeout_ms` (leader stickiness). `None`: refused for a lower ballot only.
        live_leader: Option<Uid>,
    },
    /// Phase 2a: accept `values` at slots `first_slot..first_slot + values.len()`.
    /// Also carries the leader's decisions.
    Accept {
        ballot: Ballot,
        first_slot: Slot,
        values: Vec<Value>,
        /// The leader's decided prefix (every slot below it is chosen; 0: none).
        decided_upto: Slot,
        /// Slots the leader knows are chosen above `decided_upto` (at most a bounded
        /// number of ranges; empty: none).
        decided_above: Vec<SlotRange>,
    },
    /// Phase 2b: the acceptor durably accepted `count` slots from `first_slot` in `ballot`.
    Accepted {
        ballot: Ballot,
        first_slot: Slot,
        count: u64,
        /// The acceptor's decided prefix, so the leader knows who lags.
        decided_upto: Slot,
    },
    /// Sent by the leader every `heartbeat_ms`: "I am alive, this is what is decided".
    Heartbeat {
        ballot: Ballot,
        /// The leader's heartbeat counter (from 1 in each leadership), echoed by
        /// [`PeerMessage::HeartbeatAck`]: a majority acking a beat sent after a read
        /// arrived confirms the leadership for that read.
        beat: u64,
        /// The leader's decided prefix, as on Accept.
        decided_upto: Slot,
        /// Chosen slots above `decided_upto`, as on Accept.
        decided_above: Vec<SlotRange>,
    },
    /// "Send me decided entries from `from_slot` on."
    CatchUpRequest { from_slot: Slot },
    /// Decided entries in slot order (holes skipped), at most one chunk.
    CatchUp {
        entries: Vec<(Slot, Value)>,
        /// The sender's decided prefix: the requester is caught up once it reaches it.
        decided_upto: Slot,
    },
    /// A follower's answer to a Heartbeat it accepted: "I still follow `ballot`". The
    /// leader steps down when a majority has not answered for `timeout_ms`
    /// (check-quorum), and confirms read indexes with it.
    HeartbeatAck {
        ballot: Ballot,
        /// The `beat` of the Heartbeat answered.
        beat: u64,
        /// The follower's decided prefix.
        decided_upto: Slot,
    },
    /// "Confirm that you lead and give me a read index" (a linearizable read served by
    /// a follower). `id` is the requester's, echoed in the reply.
    ReadIndexRequest { id: u64 },
    /// `read_index: Some(s)`: a majority confirmed the leadership after the request
    /// arrived, and every message acknowledged before it is below slot `s`. `None`: not
    /// the leader (or no longer): ask again elsewhere.
    ReadIndexReply { id: u64, read_index: Option<Slot> },
    /// A leader shutting down cleanly, with nothing left in flight: "this is my final
    /// decided prefix". Followers learn it as from a Heartbeat and ack it; one shutting
    /// down too may then stop (see `Input::ShutDown`).
    Handoff { ballot: Ballot, decided_upto: Slot },
    /// A replica on a fresh store: "do you know an earlier store of mine?" (`store`: the
    /// new store's id).
    Register { store: u64 },
    /// The answer, sent once the registrar has durably recorded `store`: what it knew
    /// before (`known`: 0 for nothing; `replaced`: that store had itself replaced an
    /// older one).
    Registered {
        store: u64,
        known: u64,
        replaced: bool,
    },
    /// A rebuilding replica (caught up, store `store`) asks the leader for a fence.
    FenceRequest { store: u64 },
    /// The leader's answer: a phase 1 of `ballot` begun after the request completed with
    /// a majority of the others, and recovered every slot below `end`. For the store
    /// `store` only (a copy delayed past another wipe must not fence the next store).
    Fenced {
        ballot: Ballot,
        end: Slot,
        store: u64,
    },
}

impl PeerMessage {
    /// Approximate encoded size: what its values and entries weigh
    /// ([`Value::size_bytes`] and their slots and ballots) plus [`MESSAGE_BYTES_FIXED`]
    /// for the rest. Bounds the queues that hold messages (the peer links').
    pub fn size_bytes(&self) -> usize {
        let ranges = |r: &Vec<SlotRange>| 16 * r.len();
        MESSAGE_BYTES_FIXED
            + match self {
                PeerMessage::Prepare { stores, .. } => 8 * stores.len(),
                PeerMessage::Promise {
                    entries, stores, ..
                } => {
                    entries
                        .iter()
                        .map(|e| 24 + e.value.size_bytes())
                        .sum::<usize>()
                        + 8 * stores.len()
                }
                PeerMessage::Accept {
                    values,
                    decided_above,
                    ..
                } => values.iter().map(Value::size_bytes).sum::<usize>() + ranges(decided_above),
                PeerMessage::Heartbeat { decided_above, .. } => ranges(decided_above),
                PeerMessage::CatchUp { entries, .. } => entries
                    .iter()
                    .map(|(_, v)| 8 + v.size_bytes())
                    .sum::<usize>(),
                _ => 0,
            }
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            PeerMessage::Prepare { .. } => "prepare",
            PeerMessage::Promise { .. } => "promise",
            PeerMessage::Reject { .. } => "reject",
            PeerMessage::Accept { .. } => "accept",
            PeerMessage::Accepted { .. } => "accepted",
            PeerMessage::Heartbeat { .. } => "heartbeat",
            PeerMessage::CatchUpRequest { .. } => "catchup_request",
            PeerMessage::CatchUp { .. } => "catchup",
            PeerMessage::HeartbeatAck { .. } => "heartbeat_ack",
            PeerMessage::ReadIndexRequest { .. } => "read_index_request",
            PeerMessage::ReadIndexReply { .. } => "read_index_reply",
            PeerMessage::Handoff { .. } => "handoff",
            PeerMessage::Register { .. } => "register",
            PeerMessage::Registered { .. } => "registered",
            PeerMessage::FenceRequest { .. } => "fence_request",
            PeerMessage::Fenced { .. } => "fenced",
        }
    }
}

/// The driver's handle for a waiting client (a connection id); opaque to the core.
pub type ClientRef = u64;

/// The core's answer to one client submit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubmitReply {
    /// The request is chosen (durable on a majority) and first appears at `slot`.
    Committed { id: RequestId, slot: Slot },
    /// This replica is not the leader; try `leader` if known (`None`: unknown, e.g. an
    /// election is running).
    NotLeader { id: RequestId, leader: Option<Uid> },
    /// The request is refused for good (e.g. too large); retrying will not help.
    Rejected { id: RequestId, reason: String },
}

impl SubmitReply {
    pub fn id(&self) -> RequestId {
        match self {
            SubmitReply::Committed { id, .. }
            | SubmitReply::NotLeader { id, .. }
            | SubmitReply::Rejected { id, .. } => *id,
        }
    }
}

/// A durable fact the core asks storage to record before anything in the same
/// [`Ready`](super::Ready) is sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// The acceptor promised `ballot` (never lower than a previous promise).
    Promise(Ballot),
    /// The acceptor accepted `value` at `slot` in `ballot` (replaces an older accept).
    Accepted {
        slot: Slot,
        ballot: Ballot,
        value: Value,
    },
    /// `slot` is decided with `value` and applied: it extends the applied log by one.
    /// Decided records come in slot order, contiguous from the end of the stored log
    /// (a store may drop one it already holds); `dup` is how it applies (a later copy
    /// of a request, see [`crate::core::Sessions`]). Never changes once written. The
    /// store may now drop the accepted entry of `slot`.
    Decided { slot: Slot, value: Value, dup: bool },
    /// The session table as of the applied prefix `upto` (every slot below it applied,
    /// and its Decided record written before this one). A store keeps the latest; a
    /// restart rebuilds the table from it plus the applied entries from `upto` on.
    SessionsCheckpoint { upto: Slot, sessions: Vec<Session> },
    /// This store's id (distinct for every store a uid ever had, and growing: the wall
    /// clock in microseconds when it was created) and its standing. A store keeps the
    /// latest. `store: 0` asks the replica to pick a new id (a restored snapshot).
    Identity { store: u64, standing: Standing },
    /// The newest store id known for replica `uid`; `replaced`: it replaced an older one
    /// (that replica lost a disk, or was restored). A store keeps the latest per uid.
    PeerStore {
        uid: Uid,
        store: u64,
        replaced: bool,
    },
}

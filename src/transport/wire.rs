//! What travels inside frames besides [`PeerMessage`]: the handshake and the client
//! protocol.
//!
//! Every connection starts with one [`Hello`] frame from the side that dialed:
//! - `Hello::Peer`: the stream then carries `PeerMessage` frames, one way only (dialer to
//!   listener). Each replica dials every other replica, so a pair of replicas uses two
//!   connections, one per direction.
//! - `Hello::Client`: the stream then carries [`ClientRequest`] frames from the client and
//!   [`ClientResponse`] frames from the replica, strictly alternating: one request at a
//!   time, each answered by exactly one response, in order.
//!
//! All enums are postcard-encoded, so variant order is part of the wire format: append
//! new variants at the end, never reorder.

use crate::core::{LogEntry, ReplicaStatus, RequestId, Slot, SubmitReply, Uid};
use serde::{Deserialize, Serialize};

/// The first frame on every connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Hello {
    /// A replica's outbound peer link. The listener refuses it (closes the connection)
    /// unless `cluster_id` equals its own and `uid` is another replica of the cluster.
    Peer { uid: Uid, cluster_id: u64 },
    /// A client (`paxosctl`, a test, a benchmark): the node answers its requests.
    Client,
}

/// One client request; the replica answers each with one [`ClientResponse`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientRequest {
    /// Append `body` to the chat log. `id` makes retries exactly-once: reuse it when
    /// resending the same message (to this or another replica).
    /// Answered by [`ClientResponse::Submit`].
    Submit { id: RequestId, body: String },
    /// This replica's view of itself. Answered by [`ClientResponse::Status`].
    Status,
    /// Applied chat-log entries from `from_slot` on, at most `max_entries` of them (the
    /// replica may return fewer, e.g. to stay under the frame size). If none is available
    /// yet, the replica may wait up to `wait_ms` for some before answering (0: answer at
    /// once); this is what `paxosctl watch` long-polls with.
    /// Answered by [`ClientResponse::Log`].
    ReadLog {
        from_slot: Slot,
        max_entries: u32,
        wait_ms: u64,
    },
    /// A linearizable read begins: the replica gets a read index confirmed by the leader
    /// and answers once it has applied everything below it, so the `ReadLog` pages that
    /// follow on this connection contain every message acknowledged before this request
    /// was sent. Answered by [`ClientResponse::ReadIndex`], or a retryable `Error` if no
    /// leader confirmed it in time.
    ReadIndex,
}

/// The answer to one [`ClientRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientResponse {
    /// The outcome of a `Submit`: committed (with its slot), not the leader (with a hint),
    /// or rejected for good.
    Submit(SubmitReply),
    /// The answer to `Status`.
    Status(StatusReport),
    /// The answer to `ReadLog`: applied entries in slot order (empty if none arrived
    /// within `wait_ms`), and the replica's decided prefix (every slot below it is
    /// decided there; 0: none), so a reader knows how far the log goes.
    Log {
        entries: Vec<LogEntry>,
        decided_upto: Slot,
    },
    /// The request could not be served (e.g. the replica is shutting down or still
    /// recovering); the connection stays usable.
    Error { reason: String },
    /// The answer to `ReadIndex`: this replica has applied every slot below `read_index`.
    ReadIndex { read_index: Slot },
}

/// One replica's status as `paxosctl status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Role, ballot, known leader and decided prefix, from the core.
    pub status: ReplicaStatus,
    /// The address this replica listens on (from the config).
    pub addr: String,
    /// The highest slot this replica knows of (accepted or decided); `None`: no slot yet.
    pub last_slot: Option<Slot>,
}

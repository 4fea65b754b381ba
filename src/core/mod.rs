//! The pure Multi-Paxos core. (Module doc with invariants: see replica.rs; filled in below.)

mod message;
mod replica;
mod types;

pub use message::{ClientRef, PeerMessage, PromiseEntry, Record, SlotRange, SubmitReply};
pub use replica::{Input, Ready, Replica, ReplicaConfig, ReplicaStatus, Role};
pub use types::{Ballot, LogEntry, LogEntryKind, RequestId, Slot, Uid, Value};

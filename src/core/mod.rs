//! The pure Multi-Paxos core: every protocol decision, no IO.
//!
//! A [`Replica`] is stepped with [`Input`]s (a peer message, a client submit, a timer tick
//! carrying the current time) and hands back a [`Ready`]: records to persist, messages to
//! send, client replies. The driver persists the records durably *before* it sends
//! anything of the same `Ready`. There is no clock, socket, disk or randomness in here, so
//! the deterministic simulator (`tests/simulator.rs`) can drive it through any schedule.
//!
//! # Protocol summary
//! - Ballots are `(round, uid)`. A fresh cluster starts promised to `(0, 0)` and uid 0
//!   leads it without phase 1. A restarted replica always comes back as a follower.
//! - The leader sends a Heartbeat every `heartbeat_ms`. A follower that hears no valid
//!   leader message for `timeout_ms + rank * timeout_ms / 2` (rank = distance after the
//!   leader's uid) campaigns: phase 1 with a round above any it has seen.
//! - Leader stickiness: an acceptor that heard a live leader within `timeout_ms` refuses
//!   other candidates' Prepares. A candidate does not promise itself until a majority of
//!   the others promised, and steps back as soon as it hears a live leader.
//! - Phase 1: Prepare(ballot, from_slot), with `from_slot` the candidate's own decided
//!   prefix. Promises carry every accepted and decided entry from `from_slot` on, in
//!   bounded chunks (`next_slot`); each chunk echoes the `from_slot` it answers, and a
//!   candidate takes only the chunk it asked for last. With a majority, the new leader
//!   learns the reported decided values and re-proposes every other slot from its own
//!   prefix to the highest reported slot: the highest-ballot value, or a no-op. No slot
//!   depends on one peer staying alive.
//! - Phase 2: the leader accepts its own proposal (persisted with the same Ready) and
//!   pipelines Accept(ballot, first_slot, values[]) batches, up to `inflight_slots_max`
//!   slots in flight. A slot is chosen with a majority of Accepted in one ballot; its
//!   clients are answered once the decided prefix passes it (the first slot of a
//!   request is final only then).
//! - Decisions ride on Accept and Heartbeat: the decided prefix (`decided_upto`) and ranges of
//!   decided slots above a hole. A follower decides a slot from them only if it accepted
//!   that slot in the same ballot; anything else is fetched by chunked catch-up (from
//!   the most advanced peer; one that did not answer is tried last). A leader never
//!   decides a slot at or above its start by catch-up, so its decided prefix covers only
//!   what it chose itself (or learned in phase 1); a catch-up value that contradicts one
//!   of its in-flight proposals deposes it.
//! - Every request (Accept, Prepare, CatchUpRequest) is re-sent after `timeout_ms`.
//! - Exactly once: requests carry `(client_id, seq)`. A duplicate of a decided request is
//!   answered with its first slot; a duplicate of an in-flight one joins it. Applying the
//!   log marks any later copy `Dup`.
//!
//! # Invariants (checked by the simulator after every step; the cheap ones also by
//! `debug_assert!` here)
//! 1. A promise never goes backwards, also across restarts.
//! 2. An acceptor never accepts below its promise.
//! 3. No slot is decided with two different values (agreement), and a decided slot never
//!    changes (stability).
//! 4. A decided value is a no-op or a value some client submitted (validity).
//! 5. A client is answered `Committed` only when the value is durable on a majority.
//! 6. No request is applied twice (`Msg` once, later copies `Dup`).
//! 7. Nothing in a `Ready` may be sent before its records are durable.
//!
//! # Deliberately not implemented
//! Log compaction/snapshots (the whole log stays in memory and on disk), membership
//! changes, and leader leases for reads (reads are served from the local applied log).

pub mod applied;
mod message;
mod replica;
mod state;
mod types;

pub use message::{ClientRef, PeerMessage, PromiseEntry, Record, SlotRange, SubmitReply};
pub use replica::{
    Input, ReadRef, Ready, Replica, ReplicaConfig, ReplicaStatus, Role, READS_PENDING_MAX,
    ROUND_MAX, SLOT_LOOKAHEAD_MAX,
};
pub use state::PersistentState;
pub use types::{Ballot, LogEntry, LogEntryKind, RequestId, Slot, Uid, Value};

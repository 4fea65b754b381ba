//! The pure Multi-Paxos core: every protocol decision, no IO.
//!
//! A [`Replica`] is stepped with [`Input`]s (a peer message, a client submit, a timer tick
//! carrying the current time) and hands back a [`Ready`]: records to persist, messages to
//! send, client replies. The driver persists the records durably before it sends what
//! vouches for them (see [`Ready`] for the commit path). There is no clock, socket, disk or randomness in here, so
//! the deterministic simulator (`tests/simulator.rs`) can drive it through any schedule.
//!
//! # Protocol summary
//! - Ballots are `(round, uid)`. A fresh cluster starts promised to `(0, 0)` and uid 0
//!   leads it without phase 1 (once its fresh store registered, see "Lost disks"). A
//!   restarted replica always comes back as a follower.
//! - The leader sends a Heartbeat every `heartbeat_ms`. A follower that hears no valid
//!   leader message for `timeout_ms + rank * timeout_ms / 2` (rank = distance after the
//!   leader's uid) campaigns: phase 1 with a round above any it has seen.
//! - Leader stickiness: an acceptor that heard a live leader within `timeout_ms` refuses
//!   other candidates' Prepares. A candidate does not promise itself until a majority of
//!   the others promised, and steps back as soon as it hears a live leader.
//! - Phase 1: Prepare(ballot, from_slot), with `from_slot` the candidate's own decided
//!   prefix. Promises carry every accepted and decided entry from `from_slot` on, in
//!   bounded chunks (`next_slot`); each chunk echoes the `from_slot` it answers, and a
//!   candidate takes only the chunk it asked for last. Chunks of slots an acceptor's
//!   core no longer holds are read from its store (`Ready::log_sends`). The candidate
//!   learns reported decided values as they arrive; with a majority, the new leader
//!   re-proposes every other slot from its prefix to the highest reported or decided
//!   slot: the highest-ballot value, or a no-op. No slot depends on one peer staying
//!   alive, and no peer needs the log in memory.
//! - Phase 2 and the commit path: the leader sends Accept(ballot, first_slot, values[])
//!   batches at once (`Ready::messages_now`), up to `inflight_slots_max` slots in flight,
//!   while its own accept is flushed; its own vote counts only once the driver reports
//!   that Ready durable (`Input::Persisted`). Acceptors persist, then answer Accepted
//!   (`Ready::messages`, sent after the flush). A slot is chosen with a majority of
//!   durable accepts in one ballot; its clients are answered at once when the decided
//!   prefix passes it (the first slot of a request is final only then), without waiting
//!   for the Decided record, which is a cache written with a later batch. A new leader's
//!   Accepts wait once for its own promise to be durable (its phase-1 majority counted
//!   it). Phase-1 re-proposals and no-op fills go out as the window allows.
//! - Decisions ride on Accept and Heartbeat: the decided prefix (`decided_upto`) and
//!   ranges of decided slots above a hole. A follower decides a slot from them only if it
//!   accepted that slot in the same ballot; anything else is fetched by chunked catch-up
//!   (peers that never failed to answer first, then the leader, then the most advanced).
//!   A leader never decides a slot at or above its start by catch-up, so its decided
//!   prefix covers only what it chose itself (or learned in phase 1); a catch-up value
//!   that contradicts one of its in-flight proposals deposes it.
//! - Check-quorum: followers ack every Heartbeat (numbered by a beat); a leader that has
//!   not heard a majority within `timeout_ms` steps down, so followers stop being sticky
//!   to a leader that cannot make progress.
//! - Linearizable reads (read index): `Input::ReadIndex` at the leader takes
//!   max(decided prefix, end of phase-1 recovery) and answers once a majority acked a
//!   beat sent after the read arrived; a follower forwards it to the leader. The driver
//!   serves the read once it has applied up to the index.
//! - Only the first Prepare of a ballot resets an acceptor's failure detector (a laggard
//!   fetching chunks must not silence the others); a replica that knows it lags by more
//!   than a chunk campaigns after the up-to-date ones.
//! - Bounds on peer input: a ballot round above [`ROUND_MAX`] or a slot
//!   `slot_lookahead_max` past the decided prefix is refused with a warning naming the
//!   peer (`Ready::warnings`); counts are bounded by the frame size.
//! - Every request (Accept, Prepare, CatchUpRequest) is re-sent after `timeout_ms`.
//! - Exactly once: requests carry `(client_id, seq)`. A duplicate of an applied request
//!   is answered from its client's session; a duplicate of an in-flight or decided one
//!   joins it. Applying the log marks any later copy `Dup` (see below).
//!
//! # Invariants (checked by the simulator after every step; the cheap ones also by
//! `debug_assert!` here)
//! 1. A promise never goes backwards, also across restarts.
//! 2. An acceptor never accepts below its promise.
//! 3. No slot is decided with two different values (agreement), and a decided slot never
//!    changes (stability).
//! 4. A decided value is a no-op or a value some client submitted (validity).
//! 5. A client is answered `Committed` only when the value is durable on a majority
//!    (the leader's own accept counted only after `Input::Persisted`).
//! 6. No request is applied twice (`Msg` once, later copies `Dup`).
//! 7. Nothing in `Ready::messages` is sent before the records of that Ready (and every
//!    earlier one) are durable; `messages_now` vouch for nothing unflushed.
//! 8. A linearizable read contains every message acknowledged before it began.
//! 9. An honest peer's message is never refused as out of bounds.
//!
//! # What the core holds (memory)
//! Only what the protocol needs; the chat log itself lives in the store.
//! - The promise, and the accepted entries of undecided slots: an acceptor accepts
//!   nothing `accept_window_slots` (65,536) or more above its own decided prefix, so a
//!   laggard catches up before it votes again (as a Raft follower cannot append past a
//!   gap); Accepts naming slots `slot_lookahead_max` above it are refused as hostile.
//! - Decided entries not yet in the store: applied slots whose Decided records are not
//!   durable yet (`stored_upto..decided_upto`: one flush's worth, and catch-up stops
//!   asking for more past 32 x `chunk_entries_max` of them (32,768 slots by default, plus
//!   the one CatchUp answer in flight), so a laggard fetches at its disk's pace)
//!   and decided slots
//!   above a hole (bounded like accepted entries). A slot leaves the core as soon as
//!   the `Ready` holding its Decided record is reported durable (`Input::Persisted`).
//!   Applied slots below `stored_upto` are read back from the store by the driver:
//!   client reads directly ([`crate::storage::LogRead`]), Promise and CatchUp chunks
//!   through [`Ready::log_sends`], which the driver completes with
//!   [`LogSend::complete`].
//! - Client sessions ([`Sessions`]): at most `sessions_max` (default [`SESSIONS_MAX`],
//!   100,000, about 80 bytes each: 8 MB), least recently applied evicted first;
//!   checkpointed to the store every `sessions_checkpoint_slots` (default
//!   [`SESSIONS_CHECKPOINT_SLOTS`], 65,536) applied slots, so a restart replays at
//!   most that many entries. Requests decided above a hole and not applied yet (one
//!   per such slot).
//! - A candidate's phase-1 view: the accepted entries promisers report (bounded as
//!   above); decided entries they report are learned as they arrive, so a candidate far
//!   behind streams the log into its store in chunks instead of holding it.
//! - The leader's in-flight window (at most `inflight_slots_max` proposals), its queue
//!   (at most `queue_max` requests), pending reads (at most `READS_PENDING_MAX`).
//!
//! So the core's memory does not grow with the log: with the defaults, a few MB of
//! window plus at most 8 MB of sessions.
//!
//! # Exactly-once with bounded state
//! Applying the log in slot order, a request whose client's session already holds its
//! seq (or a later one) is a dup; the Decided record carries that verdict, so every
//! replica and every reader of the store agrees on it. A retry of a request that is
//! applied is answered from the session (its slot); one older than the client's latest
//! applied request is refused (`Rejected`, superseded). Past `sessions_max` clients the
//! least recently applied session is evicted: a client retrying an old request after
//! that gets it applied again (see the README).
//!
//! # Lost disks (how a fresh store is told from a lost one)
//! A replica whose data dir is wiped forgets promises and accepts it gave; if it voted
//! again at once, a value chosen with its old vote could be lost (issue 13's schedules:
//! uid 0 leading (0, 0) again, two survivors outvoting an acked value). The rules
//! (`replica/rejoin.rs`):
//! - **Store ids.** Every store has an id: the wall clock in microseconds when it was
//!   created (`ReplicaConfig::incarnation`), so a later store of a uid has a higher id.
//!   Every replica durably records the newest store id it knows for each peer
//!   (`Record::PeerStore`, with whether it replaced an older one), learned from
//!   `Register`, `Prepare` and `Promise` (both carry the sender's whole view).
//! - **Registration.** A fresh store (`Standing::Unregistered`) neither promises, accepts
//!   nor campaigns until `(n - 1) / 2 + 1` of the others have durably recorded its id
//!   (`Register` / `Registered`). Any two such sets of the others intersect, so if this
//!   uid ever had a store that voted, one registrar remembers it: the store is a lost
//!   disk (`Rebuilding`). Otherwise it is a voter, and uid 0 on a fresh cluster leads
//!   (0, 0) as before. Cost: a brand-new cluster serves once a majority of the others
//!   has heard each replica once (a 3-replica cluster: all three started once).
//! - **Rebuilding.** A learner: it follows the leader, acks heartbeats, catches up, and
//!   votes for nothing. Caught up, it asks the leader for a fence (`FenceRequest`); the
//!   leader runs a new phase 1 (begun after the request; the rebuilding replica does not
//!   promise, so a majority of the others completes it) and answers `Fenced { ballot,
//!   end }` once its own promise is durable. Every ballot the lost store promised is
//!   below that ballot (the fence's promisers intersect every majority it promised
//!   with), and every value it helped choose is in the fence's recovery, below `end`.
//! - **Fenced.** The replica promises the fence ballot and accepts from it on; it
//!   promises (votes in phase 1) again once it has decided every slot below `end`, so
//!   its reports then cover everything its old store knew. Then it is a voter.
//! - **Stale promises.** A candidate counts a promise only from the newest store it knows
//!   of that uid, and drops (and asks again) a counted one as soon as it learns a newer
//!   store: a promise given by a store since lost never completes a phase 1 that overlaps
//!   the fence.
//! - **Restored snapshots** (`paxosctl snapshot restore`) are lost disks with a head
//!   start: they register under a new id and rebuild.
//! - **Limits.** Safety holds with one store rebuilding at a time and any crashes; two
//!   disks lost at once (or a wiped registrar) are beyond it. The ids are wall-clock
//!   microseconds: a clock set back across a wipe could make a new store look older.
//!
//! # Deliberately not implemented
//! Membership changes and leases for reads (reads use a read index).

pub mod applied;
mod message;
mod replica;
mod sessions;
mod state;
mod types;

pub use message::{ClientRef, PeerMessage, PromiseEntry, Record, SlotRange, SubmitReply};
pub use replica::{
    Input, LogAnswer, LogSend, ReadRef, Ready, Replica, ReplicaConfig, ReplicaStatus, Role,
    CATCH_UP_CHUNK_SCALE, READS_PENDING_MAX, ROUND_MAX, SLOT_LOOKAHEAD_MAX,
};
pub use sessions::{Session, SessionLookup, Sessions, SESSIONS_CHECKPOINT_SLOTS, SESSIONS_MAX};
pub use state::PersistentState;
pub use types::{Ballot, LogEntry, LogEntryKind, RequestId, Slot, Standing, Uid, Value};

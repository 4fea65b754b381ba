//! What a replica rebuilds itself from after a restart, in Paxos terms. Storage backends
//! produce it ([`crate::storage::Storage::load`]); the core consumes it
//! ([`crate::core::Replica::new`]). It lives in the core so that storage depends on the
//! core and never the reverse.
//!
//! It is small by design: the decided log itself is not in it. Every slot below
//! `decided_upto` is applied and stays in the store, read back through
//! [`crate::storage::LogRead`] by whoever needs it (the driver, for reads, catch-up and
//! phase 1 answers below what the core holds).

use super::sessions::Session;
use super::types::{Ballot, LogEntry, Slot, Standing, Uid, Value};
use std::collections::BTreeMap;

/// Everything a replica needs to rebuild itself after a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PersistentState {
    /// `None`: a fresh store (nothing was ever persisted). `Some(b)`: the highest promise
    /// (a store folds in the highest ballot it ever accepted in).
    pub promised: Option<Ballot>,
    /// slot -> (ballot, value) of the latest accept at each slot at or above
    /// `decided_upto` (a store may also return lower ones; the core ignores them).
    pub accepted: BTreeMap<Slot, (Ballot, Value)>,
    /// Every slot below this is decided, applied and durable in the store's log.
    pub decided_upto: Slot,
    /// The latest session checkpoint: the table as of slot `sessions_upto`.
    pub sessions: Vec<Session>,
    /// The applied prefix the checkpoint was taken at (0 with no checkpoint), at most
    /// `decided_upto`.
    pub sessions_upto: Slot,
    /// The applied entries of slots `sessions_upto..decided_upto`, in order: the core
    /// replays them into the session table (only slot, kind and id are used; stores
    /// leave bodies out, so a restart never holds up to 65,536 message bodies).
    pub tail: Vec<LogEntry>,
    /// This store's id and standing (`Record::Identity`); `None`: never recorded (a
    /// fresh store, or one written before store ids existed).
    pub identity: Option<(u64, Standing)>,
    /// The newest store id known per peer, and whether it replaced an older one
    /// (`Record::PeerStore`), in uid order.
    pub peer_stores: Vec<(Uid, u64, bool)>,
}

impl PersistentState {
    /// A store that never persisted anything: no promise, no accept, no decision. This is
    /// the one place "fresh" is defined; the core (initial leadership of uid 0) and the
    /// driver (`--skip-slots` only on a fresh store) both ask it.
    pub fn is_fresh(&self) -> bool {
        self.promised.is_none() && self.accepted.is_empty() && self.decided_upto == 0
    }
}

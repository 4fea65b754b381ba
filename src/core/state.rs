//! What a replica rebuilds itself from after a restart, in Paxos terms. Storage backends
//! produce it ([`crate::storage::Storage::load`]); the core consumes it
//! ([`crate::core::Replica::new`]). It lives in the core so that storage depends on the
//! core and never the reverse.

use super::message::Record;
use super::types::{Ballot, Slot, Value};
use std::collections::BTreeMap;

/// Everything a replica needs to rebuild itself after a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PersistentState {
    /// `None`: a fresh store (nothing was ever persisted). `Some(b)`: the highest promise.
    pub promised: Option<Ballot>,
    /// slot -> (ballot, value) of the latest accept at each slot.
    pub accepted: BTreeMap<Slot, (Ballot, Value)>,
    /// slot -> decided value.
    pub decided: BTreeMap<Slot, Value>,
}

impl PersistentState {
    /// A store that never persisted anything: no promise, no accept, no decision. This is
    /// the one place "fresh" is defined; the core (initial leadership of uid 0) and the
    /// driver (`--skip-slots` only on a fresh store) both ask it.
    pub fn is_fresh(&self) -> bool {
        self.promised.is_none() && self.accepted.is_empty() && self.decided.is_empty()
    }

    /// Applies records in order, as a backend must (later records win; a promise never
    /// goes backwards; a decided slot never changes).
    pub fn apply(&mut self, record: &Record) {
        match record {
            Record::Promise(ballot) => {
                if self.promised.is_none_or(|p| p < *ballot) {
                    self.promised = Some(*ballot);
                }
            }
            Record::Accepted {
                slot,
                ballot,
                value,
            } => {
                self.accepted.insert(*slot, (*ballot, value.clone()));
            }
            Record::Decided { slot, value } => {
                self.decided.entry(*slot).or_insert_with(|| value.clone());
            }
        }
    }
}

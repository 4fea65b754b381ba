//! Durable replica state in Paxos terms: the promised ballot, accepted entries and decided
//! entries.
//!
//! [`Storage::persist`] applies a batch of [`Record`]s and returns only once they are
//! durable (they survive `kill -9`, and with the sled backend a power loss too): the node
//! driver sends nothing from a `Ready` before its records are persisted. One call serves a
//! whole batch (group commit). A storage error is fatal to the replica: the driver stops,
//! never acknowledges after it, and never retries a failed sync.
//!
//! Backends: [`MemStorage`] (tests, the simulator) and [`sled_store::SledStorage`] (the daemon).

mod memory;
pub mod sled_store;

pub use memory::MemStorage;

use crate::core::{Ballot, Record, Slot, Value};
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

/// Where a replica keeps its durable state.
pub trait Storage {
    /// Reads the whole durable state back (at startup).
    fn load(&self) -> Result<PersistentState, crate::Error>;

    /// Makes every record durable, in order, before returning.
    fn persist(&mut self, records: &[Record]) -> Result<(), crate::Error>;
}

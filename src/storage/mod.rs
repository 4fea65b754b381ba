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
pub mod snapshot;

pub use memory::MemStorage;

pub use crate::core::PersistentState;
use crate::core::Record;

/// Where a replica keeps its durable state.
pub trait Storage {
    /// Reads the whole durable state back (at startup).
    fn load(&self) -> Result<PersistentState, crate::Error>;

    /// Makes every record durable, in order, before returning.
    fn persist(&mut self, records: &[Record]) -> Result<(), crate::Error>;
}

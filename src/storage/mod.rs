//! Durable replica state in Paxos terms: the promise, accepted entries, the applied
//! (decided) log and checkpoints of the session table.
//!
//! [`Storage::persist`] applies a batch of [`Record`]s and returns only once they are
//! durable (they survive `kill -9`, and with the sled backend a power loss too): the node
//! driver sends nothing from a `Ready` before its records are persisted. One call serves a
//! whole batch (group commit). A storage error is fatal to the replica: the driver stops,
//! never acknowledges after it, and never retries a failed sync.
//!
//! [`Storage::load`] reads back only what the core needs to restart (promise, accepted
//! entries above the applied prefix, the session checkpoint and the entries after it),
//! never the whole log: the applied log is read through [`LogRead`], from any thread,
//! by the driver (client reads, catch-up and phase-1 answers for slots the core no
//! longer holds).
//!
//! Backends: [`MemStorage`] (tests, the simulator) and [`sled_store::SledStorage`] (the daemon).

mod memory;
pub mod sled_store;
pub mod snapshot;

pub use memory::MemStorage;

pub use crate::core::PersistentState;
use crate::core::{LogEntry, Record, Slot};

/// Where a replica keeps its durable state.
pub trait Storage {
    /// Reads back what a restart needs (at startup): see [`PersistentState`].
    fn load(&self) -> Result<PersistentState, crate::Error>;

    /// Makes every record durable, in order, before returning.
    fn persist(&mut self, records: &[Record]) -> Result<(), crate::Error>;
}

/// Reads the durable applied log.
pub trait LogRead {
    /// Applied entries from `from_slot` on, in slot order and contiguous: at most
    /// `entries_max` of them and, past the first, at most `bytes_max` bytes of values
    /// ([`crate::core::Value::size_bytes`]). Only durable entries (written by a `persist`
    /// that returned): empty when `from_slot` is at or past the end of the stored log.
    fn read_log(
        &self,
        from_slot: Slot,
        entries_max: usize,
        bytes_max: usize,
    ) -> Result<Vec<LogEntry>, crate::Error>;

    /// Entries returned by `read_log` since the store opened (a replica serving dumps or
    /// catch-up from its store is busy even when its own prefix stands still).
    fn entries_read(&self) -> u64 {
        0
    }
}

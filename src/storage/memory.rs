//! In-memory storage for tests and the simulator: `persist` is durable by definition, and
//! a simulated crash keeps exactly what was persisted.

use super::{PersistentState, Storage};
use crate::core::Record;

/// A store that lives in memory. Cloning it is how the simulator keeps a crashed
/// replica's disk.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    pub state: PersistentState,
    /// Number of `persist` calls (one per flush), for tests.
    pub flushes: u64,
}

impl MemStorage {
    pub fn new() -> MemStorage {
        MemStorage::default()
    }
}

impl Storage for MemStorage {
    fn load(&self) -> Result<PersistentState, crate::Error> {
        Ok(self.state.clone())
    }

    fn persist(&mut self, records: &[Record]) -> Result<(), crate::Error> {
        for record in records {
            self.state.apply(record);
        }
        self.flushes += 1;
        Ok(())
    }
}

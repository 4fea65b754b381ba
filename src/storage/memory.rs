//! In-memory storage for tests and the simulator: `persist` is durable by definition, and
//! a simulated crash keeps exactly what was persisted. It keeps the whole applied log (a
//! test store) but loads like the sled backend: only the session checkpoint and the
//! entries after it.

use super::{LogRead, PersistentState, Storage};
use crate::core::{Ballot, LogEntry, Record, Session, Slot, Standing, Uid, Value};
use std::collections::BTreeMap;

/// A store that lives in memory. Cloning it is how the simulator keeps a crashed
/// replica's disk.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    pub promised: Option<Ballot>,
    /// slot -> (ballot, value) of the latest accept, for slots not applied yet.
    pub accepted: BTreeMap<Slot, (Ballot, Value)>,
    /// The applied log, slot `i` at index `i`.
    pub log: Vec<LogEntry>,
    /// The latest session checkpoint and the applied prefix it was taken at.
    pub sessions: Vec<Session>,
    pub sessions_upto: Slot,
    /// The store's id and standing (`Record::Identity`).
    pub identity: Option<(u64, Standing)>,
    /// uid -> (newest store id known, replaced an older one).
    pub peer_stores: BTreeMap<Uid, (u64, bool)>,
    /// Number of `persist` calls (one per flush), for tests.
    pub flushes: u64,
}

impl MemStorage {
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// Every slot below this is applied and stored.
    pub fn decided_upto(&self) -> Slot {
        self.log.len() as Slot
    }

    /// Applies one record, as a backend must (later records win; a promise never goes
    /// backwards; a Decided record extends the log only at its end).
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
                if *slot >= self.decided_upto() {
                    self.accepted.insert(*slot, (*ballot, value.clone()));
                }
            }
            Record::Decided { slot, value, dup } => {
                if *slot == self.decided_upto() {
                    self.log.push(LogEntry::from_decided(*slot, value, !dup));
                    self.accepted.remove(slot);
                } else {
                    debug_assert!(
                        *slot < self.decided_upto(),
                        "Decided record past the log end"
                    );
                }
            }
            Record::SessionsCheckpoint { upto, sessions } => {
                if *upto <= self.decided_upto() && *upto >= self.sessions_upto {
                    self.sessions = sessions.clone();
                    self.sessions_upto = *upto;
                }
            }
            Record::Identity { store, standing } => self.identity = Some((*store, *standing)),
            Record::PeerStore {
                uid,
                store,
                replaced,
            } => {
                self.peer_stores.insert(*uid, (*store, *replaced));
            }
        }
    }
}

impl Storage for MemStorage {
    fn load(&self) -> Result<PersistentState, crate::Error> {
        Ok(PersistentState {
            promised: self.promised,
            accepted: self.accepted.clone(),
            decided_upto: self.decided_upto(),
            sessions: self.sessions.clone(),
            sessions_upto: self.sessions_upto,
            // As the sled backend: the replay needs no bodies.
            tail: self.log[self.sessions_upto as usize..]
                .iter()
                .map(|e| LogEntry {
                    body: String::new(),
                    ..e.clone()
                })
                .collect(),
            identity: self.identity,
            peer_stores: self
                .peer_stores
                .iter()
                .map(|(uid, (store, replaced))| (*uid, *store, *replaced))
                .collect(),
        })
    }

    fn persist(&mut self, records: &[Record]) -> Result<(), crate::Error> {
        for record in records {
            self.apply(record);
        }
        self.flushes += 1;
        Ok(())
    }
}

impl LogRead for MemStorage {
    fn read_log(
        &self,
        from_slot: Slot,
        entries_max: usize,
        bytes_max: usize,
    ) -> Result<Vec<LogEntry>, crate::Error> {
        let mut page = Vec::new();
        let mut bytes = 0usize;
        for entry in self.log.iter().skip(from_slot as usize).take(entries_max) {
            let size = entry.value().size_bytes();
            if !page.is_empty() && bytes.saturating_add(size) > bytes_max {
                break;
            }
            bytes = bytes.saturating_add(size);
            page.push(entry.clone());
        }
        Ok(page)
    }
}

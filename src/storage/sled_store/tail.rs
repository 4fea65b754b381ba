//! The applied log's tail: the slots after the segment chain (and the open bulk segment),
//! in memory. Each entry is the postcard bytes of `(dup, value)`, as a segment block
//! stores it. Durable in the write-ahead log (`wal.rs`) until a checkpoint or the segment
//! writer seals it into a segment; the flusher pushes at its end, the segment writer
//! removes from its front, readers copy out under a read lock.
//!
//! Bound: the slots logged since the last checkpoint (at most the write-ahead log's
//! [`super::wal::WAL_CHECKPOINT_BYTES`] of records) or `segment_slots`, whichever is
//! reached first; more only while the segment writer has failed (then the log is not
//! emptied either, and both grow until a restart; a `warn!` says so).

use crate::core::Slot;
use std::collections::VecDeque;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

#[derive(Debug, Default)]
struct Inner {
    /// The slot of `entries[0]` (where the next entry goes when empty).
    first: Slot,
    entries: VecDeque<Vec<u8>>,
    bytes: usize,
}

/// See the module doc.
#[derive(Debug, Default)]
pub(super) struct Tail {
    inner: RwLock<Inner>,
}

impl Tail {
    pub fn new(first: Slot) -> Tail {
        Tail {
            inner: RwLock::new(Inner {
                first,
                ..Inner::default()
            }),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Slots held.
    pub fn len(&self) -> u64 {
        self.read().entries.len() as u64
    }

    /// Bytes of entries held.
    pub fn bytes(&self) -> usize {
        self.read().bytes
    }

    /// The first slot held (or where the next goes).
    pub fn first(&self) -> Slot {
        self.read().first
    }

    /// Appends the entries of slots `first, first + 1, ...`. An empty tail starts at
    /// `first`; a non-empty one must end there (the applied log only grows at its end):
    /// `false`, and nothing appended, if it does not.
    #[must_use]
    pub fn extend(&self, first: Slot, entries: Vec<Vec<u8>>) -> bool {
        if entries.is_empty() {
            return true;
        }
        let mut inner = self.write();
        if inner.entries.is_empty() {
            inner.first = first;
        }
        if inner.first + inner.entries.len() as u64 != first {
            return false;
        }
        for entry in entries {
            inner.bytes += entry.len();
            inner.entries.push_back(entry);
        }
        true
    }

    /// Calls `f(slot, entry)` for the slots of `from..upto` it holds, in order, while `f`
    /// returns true. Returns the slot after the last one visited.
    pub fn visit(&self, from: Slot, upto: Slot, mut f: impl FnMut(Slot, &[u8]) -> bool) -> Slot {
        let inner = self.read();
        if from < inner.first {
            return from; // sealed meanwhile: the caller looks in the segments again
        }
        let mut next = from;
        let end = inner.first + inner.entries.len() as u64;
        while next < upto.min(end) {
            let entry = &inner.entries[(next - inner.first) as usize];
            if !f(next, entry) {
                break;
            }
            next += 1;
        }
        next
    }

    /// Drops every slot below `end` (it is in a durable segment now).
    pub fn remove_below(&self, end: Slot) {
        let mut inner = self.write();
        while inner.first < end {
            match inner.entries.pop_front() {
                Some(entry) => inner.bytes -= entry.len(),
                None => {
                    inner.first = end;
                    break;
                }
            }
            inner.first += 1;
        }
        if inner.entries.capacity() > 4 * inner.entries.len().max(1024) {
            inner.entries.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_visit_and_remove() {
        let tail = Tail::new(10);
        assert!(tail.extend(10, vec![vec![1], vec![2], vec![3]]));
        assert!(!tail.extend(14, vec![vec![4]]), "a gap");
        let mut seen = Vec::new();
        let next = tail.visit(11, 100, |slot, e| {
            seen.push((slot, e[0]));
            true
        });
        assert_eq!((next, seen), (13, vec![(11, 2), (12, 3)]));
        tail.remove_below(12);
        assert_eq!((tail.first(), tail.len(), tail.bytes()), (12, 1, 1));
        assert_eq!(tail.visit(11, 100, |_, _| true), 11, "sealed below first");
        tail.remove_below(20);
        assert_eq!((tail.first(), tail.len()), (20, 0));
        assert!(tail.extend(25, vec![vec![9]]));
        assert_eq!(tail.first(), 25, "an empty tail starts anywhere");
    }
}

//! Client reads of the applied chat log (`ReadLog`): answered at once when entries exist,
//! otherwise parked until the decided prefix passes `from_slot` or the wait runs out (the
//! long poll `paxosctl watch` and `chat` use).
//!
//! Linearizable reads (`ReadIndex`): the core gets a read index confirmed by the leader
//! (`Input::ReadIndex` -> `Ready::reads`); the answer waits here until this replica has
//! applied everything below the index, then the client pages with `ReadLog` as usual.
//!
//! Where entries come from: applied slots below the core's `stored_upto` are read from
//! the store ([`LogRead`]) on a blocking thread, so a reader paging a long log never holds
//! up the core loop; the few applied slots the store does not hold yet come from the
//! core. Neither side holds more than one page per reader.
//!
//! Bounds: an answer holds at most [`READ_LOG_ENTRIES_MAX`] entries and
//! [`READ_LOG_BYTES_MAX`] bytes of values, so it always fits one frame
//! ([`crate::transport::frame::FRAME_BYTES_MAX`]) whatever the message sizes; at most
//! [`PARKED_READS_MAX`] reads wait at once (one more is answered at once, empty); a read
//! waits at most [`READ_LOG_WAIT_MS_MAX`].

use crate::core::{ReadRef, Replica, Slot};
use crate::storage::LogRead;
use crate::transport::frame::FRAME_BYTES_MAX;
use crate::transport::wire::ClientResponse;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Most log entries one ReadLog answer carries.
pub const READ_LOG_ENTRIES_MAX: u32 = 4096;
/// Most value bytes one ReadLog answer carries: half a frame, leaving room for the
/// per-entry encoding (slot, kind, id: under 32 bytes an entry, 4096 entries at most).
pub const READ_LOG_BYTES_MAX: usize = FRAME_BYTES_MAX / 2;
/// Longest a ReadLog may wait for new entries.
pub const READ_LOG_WAIT_MS_MAX: u64 = 30_000;
/// Most reads parked at once (each is one client connection's one request).
pub const PARKED_READS_MAX: usize = 65_536;

/// A ReadLog waiting for the decided prefix to pass `from_slot`.
struct ParkedRead {
    from_slot: Slot,
    max_entries: u32,
    deadline: Instant,
    reply: oneshot::Sender<ClientResponse>,
}

/// The store's applied log, shared with blocking reader threads.
pub(crate) type SharedLog = Arc<dyn LogRead + Send + Sync>;

/// The reads waiting for entries.
pub(crate) struct Reads {
    log: SharedLog,
    parked: Vec<ParkedRead>,
    /// Linearizable reads waiting for the core's read index, by the handle it was given.
    /// Bounded by the client connections (one request each); the core answers every one.
    indexing: HashMap<ReadRef, oneshot::Sender<ClientResponse>>,
    next_read: ReadRef,
    /// Reads with a confirmed index, waiting to apply up to it: (index, reply).
    applying: Vec<(Slot, oneshot::Sender<ClientResponse>)>,
}

impl Reads {
    pub(crate) fn new(log: SharedLog) -> Reads {
        Reads {
            log,
            parked: Vec::new(),
            indexing: HashMap::new(),
            next_read: 0,
            applying: Vec::new(),
        }
    }

    /// Answers a ReadLog now if it has entries (or must not wait), else parks it.
    pub(crate) fn read(
        &mut self,
        replica: &Replica,
        from_slot: Slot,
        max_entries: u32,
        wait_ms: u64,
        reply: oneshot::Sender<ClientResponse>,
    ) {
        let max_entries = max_entries.clamp(1, READ_LOG_ENTRIES_MAX);
        if from_slot < replica.decided_upto()
            || wait_ms == 0
            || self.parked.len() >= PARKED_READS_MAX
        {
            self.answer(replica, from_slot, max_entries, reply);
            return;
        }
        self.parked.push(ParkedRead {
            from_slot,
            max_entries,
            deadline: Instant::now() + Duration::from_millis(wait_ms.min(READ_LOG_WAIT_MS_MAX)),
            reply,
        });
    }

    /// A linearizable read begins: returns the handle to step the core with.
    pub(crate) fn begin_linearizable(&mut self, reply: oneshot::Sender<ClientResponse>) -> ReadRef {
        self.next_read += 1;
        self.indexing.insert(self.next_read, reply);
        self.next_read
    }

    /// The core's answer for a linearizable read: refused, answered now, or waiting to
    /// apply up to the index.
    pub(crate) fn read_index(&mut self, replica: &Replica, read: ReadRef, index: Option<Slot>) {
        let Some(reply) = self.indexing.remove(&read) else {
            return;
        };
        match index {
            None => {
                let _ = reply.send(ClientResponse::Error {
                    reason:
                        "no leader confirmed the read in time (an election may be under way); retry"
                            .into(),
                });
            }
            Some(read_index) if replica.decided_upto() >= read_index => {
                let _ = reply.send(ClientResponse::ReadIndex { read_index });
            }
            Some(read_index) => self.applying.push((read_index, reply)),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.parked.is_empty() && self.applying.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.parked.len() + self.applying.len() + self.indexing.len()
    }

    /// Answers parked reads that have entries now, or whose wait is over, or whose client
    /// went away.
    pub(crate) fn serve_parked(&mut self, replica: &Replica) {
        let now = Instant::now();
        let upto = replica.decided_upto();
        let mut i = 0;
        while i < self.applying.len() {
            if self.applying[i].0 <= upto || self.applying[i].1.is_closed() {
                let (read_index, reply) = self.applying.swap_remove(i);
                let _ = reply.send(ClientResponse::ReadIndex { read_index });
            } else {
                i += 1;
            }
        }
        let mut i = 0;
        while i < self.parked.len() {
            let p = &self.parked[i];
            if p.from_slot < upto || p.deadline <= now || p.reply.is_closed() {
                let p = self.parked.swap_remove(i);
                self.answer(replica, p.from_slot, p.max_entries, p.reply);
            } else {
                i += 1;
            }
        }
    }

    /// One answer: applied entries from `from_slot`, bounded in count and bytes; from the
    /// store (on a blocking thread) below the core's `stored_upto`, else from the core.
    fn answer(
        &self,
        replica: &Replica,
        from_slot: Slot,
        max_entries: u32,
        reply: oneshot::Sender<ClientResponse>,
    ) {
        let decided_upto = replica.decided_upto();
        if from_slot >= replica.stored_upto() {
            let entries = replica.log_page(from_slot, max_entries as usize, READ_LOG_BYTES_MAX);
            let _ = reply.send(ClientResponse::Log {
                entries,
                decided_upto,
            });
            return;
        }
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || {
            let answer = match log.read_log(from_slot, max_entries as usize, READ_LOG_BYTES_MAX) {
                Ok(entries) => ClientResponse::Log {
                    entries,
                    decided_upto,
                },
                Err(e) => {
                    tracing::error!(from_slot, error = %e, "reading the applied log from the store failed");
                    ClientResponse::Error {
                        reason: format!("reading the log from slot {from_slot} failed: {e}"),
                    }
                }
            };
            let _ = reply.send(answer);
        });
    }
}

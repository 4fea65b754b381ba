//! Client sessions: exactly-once with bounded state (the model of the Raft dissertation,
//! §6.3). Per client id, the highest request seq applied and the slot it was applied at.
//!
//! A client sends one request at a time and numbers them `seq = 1, 2, ...`, reusing the
//! seq for a retry (see `crate::client`). Applying the log in slot order, a slot holding
//! request `(client, seq)` is:
//! - a **dup** if the client's session already holds `seq` or a higher one (a retry that
//!   landed twice, or a stale copy of a request the client gave up on);
//! - otherwise the request applies: the session becomes `(seq, slot)`.
//!
//! The table is bounded: past `max` sessions the least recently applied one (lowest
//! slot) is evicted. Eviction is a function of the applied log alone, so every replica
//! evicts the same sessions at the same slot and marks the same slots dup. A client whose
//! session was evicted and that retries an old request gets it applied again (the one
//! case where a retry can double); one sending a new request is unaffected.
//!
//! Memory: about 80 bytes a session (two map entries), so at most `80 * max` bytes.
//! Durability: the driver persists a checkpoint of the table every
//! [`SESSIONS_CHECKPOINT_SLOTS`] applied slots (`Record::SessionsCheckpoint`); a restart
//! replays the applied entries after it (at most that many) to rebuild the table.

use super::types::{LogEntry, LogEntryKind, RequestId, Slot, Value};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Default bound on the session table (see the module doc for the memory it costs).
pub const SESSIONS_MAX: usize = 100_000;

/// The core checkpoints the session table every this many applied slots, which bounds
/// the replay of a restart.
pub const SESSIONS_CHECKPOINT_SLOTS: u64 = 65_536;

/// One client's session, as checkpointed.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub client_id: u64,
    /// The highest seq applied for this client.
    pub seq: u64,
    /// The slot it was applied at.
    pub slot: Slot,
}

/// What the session table says about a request.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SessionLookup {
    /// The request is the client's latest applied one, at `slot`.
    Applied { slot: Slot },
    /// The client has applied a later request (`latest`): this one will never apply.
    Superseded { latest: u64 },
    /// Nothing applied for this request yet (or the session expired).
    Unknown,
}

/// The bounded session table (see the module doc).
#[derive(Clone, Debug)]
pub struct Sessions {
    max: usize,
    by_client: HashMap<u64, (u64, Slot)>,
    /// Sessions by the slot of their latest applied request: eviction order.
    by_slot: BTreeMap<Slot, u64>,
}

impl Sessions {
    pub fn new(max: usize) -> Sessions {
        Sessions {
            max: max.max(1),
            by_client: HashMap::new(),
            by_slot: BTreeMap::new(),
        }
    }

    /// A table rebuilt from a checkpoint (later sessions win a duplicate client id).
    pub fn from_checkpoint(max: usize, sessions: &[Session]) -> Sessions {
        let mut table = Sessions::new(max);
        let mut sorted = sessions.to_vec();
        sorted.sort_by_key(|s| s.slot);
        for s in sorted {
            table.set(s.client_id, s.seq, s.slot);
        }
        table
    }

    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }

    /// Applies decided `value` at `slot` (slots in order): returns whether it is a dup.
    pub fn apply(&mut self, slot: Slot, value: &Value) -> bool {
        let Some(id) = value.request_id() else {
            return false;
        };
        if let Some((seq, _)) = self.by_client.get(&id.client_id) {
            if id.seq <= *seq {
                return true;
            }
        }
        self.set(id.client_id, id.seq, slot);
        false
    }

    /// Replays an applied entry read back from storage (its kind was computed by
    /// [`Sessions::apply`] when it was first applied).
    pub fn replay(&mut self, entry: &LogEntry) {
        if let (LogEntryKind::Msg, Some(id)) = (&entry.kind, entry.id) {
            self.set(id.client_id, id.seq, entry.slot);
        }
    }

    pub fn lookup(&self, id: RequestId) -> SessionLookup {
        match self.by_client.get(&id.client_id) {
            Some((seq, slot)) if *seq == id.seq => SessionLookup::Applied { slot: *slot },
            Some((seq, _)) if *seq > id.seq => SessionLookup::Superseded { latest: *seq },
            _ => SessionLookup::Unknown,
        }
    }

    /// The whole table, for a checkpoint (in eviction order).
    pub fn checkpoint(&self) -> Vec<Session> {
        self.by_slot
            .iter()
            .filter_map(|(slot, client_id)| {
                let (seq, _) = self.by_client.get(client_id)?;
                Some(Session {
                    client_id: *client_id,
                    seq: *seq,
                    slot: *slot,
                })
            })
            .collect()
    }

    fn set(&mut self, client_id: u64, seq: u64, slot: Slot) {
        if let Some((_, old_slot)) = self.by_client.insert(client_id, (seq, slot)) {
            self.by_slot.remove(&old_slot);
        }
        // One request per slot, so slots key sessions uniquely.
        if let Some(other) = self.by_slot.insert(slot, client_id) {
            if other != client_id {
                self.by_client.remove(&other);
            }
        }
        while self.by_client.len() > self.max {
            let Some((_, oldest)) = self.by_slot.pop_first() else {
                break;
            };
            self.by_client.remove(&oldest);
        }
        debug_assert_eq!(self.by_client.len(), self.by_slot.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(client_id: u64, seq: u64) -> Value {
        Value::Msg {
            id: RequestId { client_id, seq },
            body: String::new(),
        }
    }

    #[test]
    fn retries_and_stale_copies_are_dups_new_requests_apply() {
        let mut s = Sessions::new(10);
        assert!(!s.apply(0, &msg(1, 1)));
        assert!(s.apply(1, &msg(1, 1)), "a retry landing twice");
        assert!(!s.apply(2, &msg(1, 2)));
        assert!(s.apply(3, &msg(1, 1)), "a stale copy");
        assert!(!s.apply(4, &Value::Noop));
        assert_eq!(
            s.lookup(RequestId {
                client_id: 1,
                seq: 2
            }),
            SessionLookup::Applied { slot: 2 }
        );
        assert_eq!(
            s.lookup(RequestId {
                client_id: 1,
                seq: 1
            }),
            SessionLookup::Superseded { latest: 2 }
        );
        assert_eq!(
            s.lookup(RequestId {
                client_id: 2,
                seq: 1
            }),
            SessionLookup::Unknown
        );
    }

    #[test]
    fn the_least_recently_applied_session_is_evicted_and_a_checkpoint_rebuilds_the_table() {
        let mut s = Sessions::new(2);
        s.apply(0, &msg(1, 1));
        s.apply(1, &msg(2, 1));
        s.apply(2, &msg(1, 2));
        s.apply(3, &msg(3, 1)); // evicts client 2 (last applied at slot 1)
        assert_eq!(s.len(), 2);
        assert_eq!(
            s.lookup(RequestId {
                client_id: 2,
                seq: 1
            }),
            SessionLookup::Unknown
        );
        assert!(
            !s.apply(4, &msg(2, 1)),
            "after expiry a retry applies again"
        );
        let rebuilt = Sessions::from_checkpoint(2, &s.checkpoint());
        assert_eq!(rebuilt.checkpoint(), s.checkpoint());
    }
}

//! The applied-log rule, written once: decided slots are applied in slot order from 0 and
//! application stops at the first hole; a slot holding a request is `msg` if it is the
//! first slot that request is decided at and `dup` if it is a later copy (a retry that
//! landed twice across a leader change); a no-op is `noop`. The replica's reads
//! ([`crate::core::Replica::log_entries`]) and the offline reader of a stopped store both
//! use it, so a log looks the same whichever way it is read.

use super::types::{LogEntry, RequestId, Slot, Value};
use std::collections::HashMap;

/// The entry for decided `slot` holding `value`, given the first slot its request is
/// decided at (`None` for a no-op, or when unknown, which counts as first).
pub fn applied_entry(slot: Slot, value: &Value, first_slot: Option<Slot>) -> LogEntry {
    let first = match value.request_id() {
        None => true,
        Some(_) => first_slot.is_none_or(|first| first == slot),
    };
    LogEntry::from_decided(slot, value, first)
}

/// Applies decided slots (in slot order) from slot 0, stopping at the first hole.
pub fn applied_log<'a>(decided: impl IntoIterator<Item = (&'a Slot, &'a Value)>) -> Vec<LogEntry> {
    let mut first_slot_of: HashMap<RequestId, Slot> = HashMap::new();
    let mut out = Vec::new();
    for (expected, (slot, value)) in (0..).zip(decided) {
        if *slot != expected {
            break; // a hole: application stops here
        }
        let first = value
            .request_id()
            .map(|id| *first_slot_of.entry(id).or_insert(*slot));
        out.push(applied_entry(*slot, value, first));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{LogEntryKind, RequestId};

    fn msg(client: u64, seq: u64) -> Value {
        Value::Msg {
            id: RequestId {
                client_id: client,
                seq,
            },
            body: format!("m{client}:{seq}"),
        }
    }

    #[test]
    fn later_copies_are_dups_and_a_hole_stops_application() {
        let decided: std::collections::BTreeMap<Slot, Value> = [
            (0, msg(1, 1)),
            (1, Value::Noop),
            (2, msg(1, 1)),
            (3, msg(2, 1)),
            (5, msg(3, 1)),
        ]
        .into_iter()
        .collect();
        let kinds: Vec<LogEntryKind> = applied_log(&decided).into_iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![
                LogEntryKind::Msg,
                LogEntryKind::Noop,
                LogEntryKind::Dup,
                LogEntryKind::Msg
            ]
        );
    }
}

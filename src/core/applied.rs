//! The applied-log rule, written once: decided slots are applied in slot order from 0 and
//! application stops at the first hole; a slot holding a request is `msg` if it applies
//! and `dup` if the client's session already holds that request or a later one (a retry
//! that landed twice across a leader change; see [`crate::core::Sessions`]); a no-op is
//! `noop`. The replica computes it as it applies ([`crate::core::Record::Decided`]
//! carries the result to the store); this function is the same rule for a plain map of
//! decided values (tests, a snapshot restored from a file of values).

use super::sessions::Sessions;
use super::types::{LogEntry, Slot, Value};

/// Applies decided slots (in slot order) from slot 0, stopping at the first hole, with a
/// session table of `sessions_max` sessions.
pub fn applied_log<'a>(
    decided: impl IntoIterator<Item = (&'a Slot, &'a Value)>,
    sessions_max: usize,
) -> Vec<LogEntry> {
    let mut sessions = Sessions::new(sessions_max);
    let mut out = Vec::new();
    for (expected, (slot, value)) in (0..).zip(decided) {
        if *slot != expected {
            break; // a hole: application stops here
        }
        let dup = sessions.apply(*slot, value);
        out.push(LogEntry::from_decided(*slot, value, !dup));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{LogEntryKind, RequestId, SESSIONS_MAX};

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
        let kinds: Vec<LogEntryKind> = applied_log(&decided, SESSIONS_MAX)
            .into_iter()
            .map(|e| e.kind)
            .collect();
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

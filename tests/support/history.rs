//! A history checker for real-cluster tests: what clients did (submits and reads, with
//! the times they began and ended) and what every replica's log finally holds, and the
//! properties the chat log promises over them.
//!
//! Times are microseconds since the test began, on one monotonic clock (the test's);
//! an operation's interval is [invoke, complete], measured by the client, so it contains
//! the instant the cluster really served it.
//!
//! Properties checked by [`check`]:
//! 1. **Agreement**: no slot holds two different values in two final logs.
//! 2. **Durability at the reported slot**: every acknowledged submit is, in every final
//!    log, a `msg` entry with its id at the slot its ack reported.
//! 3. **Exactly once**: no id is a `msg` entry at two slots of one log (later copies
//!    must be `dup`).
//! 4. **Real-time order of appends**: an ack that completed before another submit was
//!    invoked has the lower slot.
//! 5. **Linearizable reads**: a read is a prefix of the final log (slots 0.. in order,
//!    each equal to the final entry), and contains every message acknowledged before the
//!    read was invoked.
//!
//! Not checked: liveness (tests measure it themselves), bodies (the id names a message).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// What fills one slot of a log, as `dump-log --json` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Msg,
    Noop,
    Dup,
}

/// One applied slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub slot: u64,
    pub kind: Kind,
    /// `client_id:seq`; `None` for a no-op.
    pub id: Option<String>,
}

impl Entry {
    pub fn msg(slot: u64, id: &str) -> Entry {
        Entry {
            slot,
            kind: Kind::Msg,
            id: Some(id.to_string()),
        }
    }
    pub fn dup(slot: u64, id: &str) -> Entry {
        Entry {
            slot,
            kind: Kind::Dup,
            id: Some(id.to_string()),
        }
    }
    pub fn noop(slot: u64) -> Entry {
        Entry {
            slot,
            kind: Kind::Noop,
            id: None,
        }
    }

    /// Parses one `paxosctl dump-log --json` line:
    /// `{"slot":N,"kind":"msg"|"noop"|"dup","id":"...","body":"..."}`.
    pub fn from_json_line(line: &str) -> Result<Entry, String> {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("bad dump-log line {line:?}: {e}"))?;
        let slot = v["slot"]
            .as_u64()
            .ok_or_else(|| format!("no slot in {line:?}"))?;
        let kind = match v["kind"].as_str() {
            Some("msg") => Kind::Msg,
            Some("noop") => Kind::Noop,
            Some("dup") => Kind::Dup,
            other => return Err(format!("bad kind {other:?} in {line:?}")),
        };
        let id = match v["id"].as_str() {
            Some("") | None => None,
            Some(id) => Some(id.to_string()),
        };
        Ok(Entry { slot, kind, id })
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Msg => "msg",
            Kind::Noop => "noop",
            Kind::Dup => "dup",
        };
        write!(
            f,
            "[{}] {kind} {}",
            self.slot,
            self.id.as_deref().unwrap_or("-")
        )
    }
}

/// One submit: invoked at `invoke_us`; `ack` is (ack time, reported slot) if it was
/// acknowledged (an unacknowledged submit may or may not be in the log).
#[derive(Clone, Debug)]
pub struct SubmitOp {
    pub id: String,
    pub invoke_us: u64,
    pub ack: Option<(u64, u64)>,
}

/// One completed read of replica `uid`'s log.
#[derive(Clone, Debug)]
pub struct ReadOp {
    pub uid: u32,
    pub invoke_us: u64,
    pub complete_us: u64,
    pub log: Vec<Entry>,
}

#[derive(Clone, Debug, Default)]
pub struct History {
    pub submits: Vec<SubmitOp>,
    pub reads: Vec<ReadOp>,
}

impl History {
    pub fn acked(&self) -> usize {
        self.submits.iter().filter(|s| s.ack.is_some()).count()
    }
}

/// One broken property, with what shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// Property 1: replicas `a` and `b` hold different values in one slot.
    Disagreement {
        slot: u64,
        a: (u32, Entry),
        b: (u32, Entry),
    },
    /// Property 2: acked `id` is not a `msg` at `slot` in `uid`'s final log.
    Lost {
        id: String,
        slot: u64,
        uid: u32,
        found: Option<Entry>,
    },
    /// Property 2: two acked submits reported the same slot.
    SlotTwice { slot: u64, ids: (String, String) },
    /// Property 3: `id` is a `msg` at several slots of `uid`'s final log.
    Duplicated {
        id: String,
        uid: u32,
        slots: Vec<u64>,
    },
    /// Property 4: `earlier` was acked before `later` was invoked, yet has the higher slot.
    RealTime {
        earlier: (String, u64),
        later: (String, u64),
    },
    /// Property 5: read number `read` (of `uid`) misses `id`, acked before it began.
    StaleRead {
        read: usize,
        uid: u32,
        id: String,
        slot: u64,
    },
    /// Property 5: read number `read` differs from the final log at `slot`.
    ReadNotPrefix {
        read: usize,
        uid: u32,
        slot: u64,
        read_entry: Option<Entry>,
        final_entry: Option<Entry>,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Disagreement { slot, a, b } => write!(
                f,
                "disagreement at slot {slot}: replica {} has {}, replica {} has {}",
                a.0, a.1, b.0, b.1
            ),
            Violation::Lost {
                id,
                slot,
                uid,
                found,
            } => write!(
                f,
                "acked {id} (slot {slot}) lost on replica {uid}: slot holds {}",
                found
                    .as_ref()
                    .map_or("nothing".to_string(), |e| e.to_string())
            ),
            Violation::SlotTwice { slot, ids } => {
                write!(f, "slot {slot} reported for two acks: {} and {}", ids.0, ids.1)
            }
            Violation::Duplicated { id, uid, slots } => {
                write!(f, "{id} is a msg at slots {slots:?} on replica {uid}")
            }
            Violation::RealTime { earlier, later } => write!(
                f,
                "real-time order: {} (slot {}) acked before {} was invoked, but {} got slot {}",
                earlier.0, earlier.1, later.0, later.0, later.1
            ),
            Violation::StaleRead { read, uid, id, slot } => write!(
                f,
                "stale read #{read} of replica {uid}: misses {id} (slot {slot}), acked before the read began"
            ),
            Violation::ReadNotPrefix {
                read,
                uid,
                slot,
                read_entry,
                final_entry,
            } => write!(
                f,
                "read #{read} of replica {uid} is not a prefix of the final log at slot {slot}: read {:?}, final {:?}",
                read_entry.as_ref().map(|e| e.to_string()),
                final_entry.as_ref().map(|e| e.to_string())
            ),
        }
    }
}

/// Which optional parts of property 5 to check.
#[derive(Clone, Copy, Debug)]
pub struct Checks {
    /// Reads must contain every message acked before they began (linearizable). Off:
    /// reads need only be prefixes of the final log (what `--stale` promises).
    pub fresh_reads: bool,
}

impl Default for Checks {
    fn default() -> Self {
        Checks { fresh_reads: true }
    }
}

/// Checks properties 1-5 (module doc) of `history` against every replica's final log
/// (`(uid, entries)`); returns every violation found (empty: the history is fine).
pub fn check(history: &History, finals: &[(u32, Vec<Entry>)]) -> Vec<Violation> {
    check_with(history, finals, Checks::default())
}

/// [`check`], with the optional checks chosen by `checks`.
pub fn check_with(
    history: &History,
    finals: &[(u32, Vec<Entry>)],
    checks: Checks,
) -> Vec<Violation> {
    let mut violations = Vec::new();

    // 1. Agreement: the first replica to show a slot fixes it; every other must match.
    let mut reference: BTreeMap<u64, (u32, Entry)> = BTreeMap::new();
    for (uid, log) in finals {
        for entry in log {
            match reference.get(&entry.slot) {
                None => {
                    reference.insert(entry.slot, (*uid, entry.clone()));
                }
                Some((first_uid, first)) => {
                    if first != entry {
                        violations.push(Violation::Disagreement {
                            slot: entry.slot,
                            a: (*first_uid, first.clone()),
                            b: (*uid, entry.clone()),
                        });
                    }
                }
            }
        }
    }

    // 2. Every ack at its slot in every final log; no slot reported twice.
    let acked: Vec<(&SubmitOp, u64, u64)> = history
        .submits
        .iter()
        .filter_map(|s| s.ack.map(|(ack_us, slot)| (s, ack_us, slot)))
        .collect();
    let mut by_slot: HashMap<u64, &str> = HashMap::new();
    for (s, _, slot) in &acked {
        if let Some(other) = by_slot.insert(*slot, &s.id) {
            if other != s.id {
                violations.push(Violation::SlotTwice {
                    slot: *slot,
                    ids: (other.to_string(), s.id.clone()),
                });
            }
        }
    }
    for (uid, log) in finals {
        let at: HashMap<u64, &Entry> = log.iter().map(|e| (e.slot, e)).collect();
        for (s, _, slot) in &acked {
            let found = at.get(slot).copied();
            let ok = found.is_some_and(|e| e.kind == Kind::Msg && e.id.as_deref() == Some(&s.id));
            if !ok {
                violations.push(Violation::Lost {
                    id: s.id.clone(),
                    slot: *slot,
                    uid: *uid,
                    found: found.cloned(),
                });
            }
        }
        // 3. Exactly once as a msg.
        let mut slots_of: HashMap<&str, Vec<u64>> = HashMap::new();
        for e in log.iter().filter(|e| e.kind == Kind::Msg) {
            if let Some(id) = &e.id {
                slots_of.entry(id).or_default().push(e.slot);
            }
        }
        let mut dups: Vec<_> = slots_of.into_iter().filter(|(_, s)| s.len() > 1).collect();
        dups.sort();
        for (id, slots) in dups {
            violations.push(Violation::Duplicated {
                id: id.to_string(),
                uid: *uid,
                slots,
            });
        }
    }

    // 4. Real-time order: sweep submits by invoke time, with every ack completed
    // before it folded into the highest slot seen.
    let mut by_ack: Vec<(u64, u64, &str)> = acked
        .iter()
        .map(|(s, ack_us, slot)| (*ack_us, *slot, s.id.as_str()))
        .collect();
    by_ack.sort();
    let mut by_invoke: Vec<(u64, u64, &str)> = acked
        .iter()
        .map(|(s, _, slot)| (s.invoke_us, *slot, s.id.as_str()))
        .collect();
    by_invoke.sort();
    let mut next = 0;
    let mut highest: Option<(u64, &str)> = None;
    for (invoke_us, slot, id) in &by_invoke {
        while next < by_ack.len() && by_ack[next].0 < *invoke_us {
            let (_, s, i) = by_ack[next];
            if highest.is_none_or(|(h, _)| s > h) {
                highest = Some((s, i));
            }
            next += 1;
        }
        if let Some((h, hid)) = highest {
            if h > *slot {
                violations.push(Violation::RealTime {
                    earlier: (hid.to_string(), h),
                    later: (id.to_string(), *slot),
                });
            }
        }
    }

    // 5. Reads: a prefix of the final log, holding the highest slot acked before it.
    // prefix_max[i]: the highest (slot, id) among the first i acks by ack time.
    let mut prefix_max: Vec<Option<(u64, &str)>> = vec![None];
    for (_, slot, id) in &by_ack {
        let last = *prefix_max.last().unwrap_or(&None);
        prefix_max.push(match last {
            Some((h, _)) if h >= *slot => last,
            _ => Some((*slot, id)),
        });
    }
    for (n, read) in history.reads.iter().enumerate() {
        for (i, entry) in read.log.iter().enumerate() {
            let final_entry = reference.get(&(i as u64)).map(|(_, e)| e.clone());
            if entry.slot != i as u64 || final_entry.as_ref() != Some(entry) {
                violations.push(Violation::ReadNotPrefix {
                    read: n,
                    uid: read.uid,
                    slot: i as u64,
                    read_entry: Some(entry.clone()),
                    final_entry,
                });
                break;
            }
        }
        if !checks.fresh_reads {
            continue;
        }
        let before = by_ack.partition_point(|(ack_us, _, _)| *ack_us < read.invoke_us);
        if let Some((slot, id)) = prefix_max[before] {
            let has = read
                .log
                .iter()
                .any(|e| e.slot == slot && e.id.as_deref() == Some(id));
            if !has {
                violations.push(Violation::StaleRead {
                    read: n,
                    uid: read.uid,
                    id: id.to_string(),
                    slot,
                });
            }
        }
    }
    violations
}

impl Violation {
    /// The property's short name, for counts.
    pub fn kind(&self) -> &'static str {
        match self {
            Violation::Disagreement { .. } => "disagreement",
            Violation::Lost { .. } => "lost",
            Violation::SlotTwice { .. } => "slot-twice",
            Violation::Duplicated { .. } => "duplicated",
            Violation::RealTime { .. } => "real-time",
            Violation::StaleRead { .. } => "stale-read",
            Violation::ReadNotPrefix { .. } => "read-not-prefix",
        }
    }
}

/// Prints at most `max` violations and a count per kind; returns how many there were.
pub fn report(violations: &[Violation], max: usize) -> usize {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in violations {
        *counts.entry(v.kind()).or_default() += 1;
    }
    if !counts.is_empty() {
        println!("violations by kind: {counts:?}");
    }
    for v in violations.iter().take(max) {
        println!("VIOLATION: {v}");
    }
    if violations.len() > max {
        println!("... and {} more violations", violations.len() - max);
    }
    violations.len()
}

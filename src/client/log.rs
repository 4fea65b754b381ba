//! The applied chat log as clients see it: paging through a replica's log over the
//! network (`dump-log --uid`), following it as slots are decided (`watch`, `chat`), and
//! reading a stopped replica's store offline (`dump-log --data-dir`). How entries are
//! printed is [`crate::ctl`]'s business.
//!
//! Invariants:
//! 1. A [`LogFollower`] hands out every applied slot once, in order, with no gap: it
//!    tracks the next slot it expects and keeps only entries that continue from it,
//!    whichever replica answered (replicas agree on every decided slot).
//! 2. The offline reader hands out the store's applied log as stored (the kinds are the
//!    ones the core applied), page by page ([`OfflineLog`]), so memory stays bounded
//!    whatever the log length.

use super::{Client, ClientError};
use crate::core::{LogEntry, Slot, Uid};
use crate::storage::sled_store::{open_offline, OfflineStore, StoreMeta};
use crate::storage::LogRead;
use std::path::Path;

/// Entries asked for per `ReadLog` (the replica may send fewer).
pub const READ_ENTRIES_MAX: u32 = 1024;
/// How long one follow long-poll waits for new entries.
pub const FOLLOW_WAIT_MS: u64 = 1000;
/// A follower moves to another replica after this many empty long-polls in a row, in
/// case the one it reads from is cut off from the leader.
pub const FOLLOW_EMPTY_POLLS_MAX: u32 = 5;

/// Entries per page of [`OfflineLog::next_page`].
pub const OFFLINE_PAGE_ENTRIES: usize = 4096;
/// Value bytes per page of [`OfflineLog::next_page`] (past its first entry).
pub const OFFLINE_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// The applied log of a stopped replica's store (its `node-<uid>` directory), read page
/// by page. A running replica's store is locked: the error says so.
pub struct OfflineLog {
    store: OfflineStore,
    next: Slot,
}

impl OfflineLog {
    pub fn open(dir: &Path) -> Result<OfflineLog, ClientError> {
        match open_offline(dir) {
            Ok(store) => Ok(OfflineLog { store, next: 0 }),
            Err(e) => Err(hint_node_dirs(dir, e).into()),
        }
    }

    pub fn meta(&self) -> StoreMeta {
        self.store.meta()
    }

    /// Applied slots in the store.
    pub fn decided_upto(&self) -> Slot {
        self.store.decided_upto()
    }

    /// The next entries in slot order; empty once the whole log was handed out.
    pub fn next_page(&mut self) -> Result<Vec<LogEntry>, ClientError> {
        let page =
            self.store
                .log()
                .read_log(self.next, OFFLINE_PAGE_ENTRIES, OFFLINE_PAGE_BYTES)?;
        Ok(take_contiguous(&mut self.next, page))
    }
}

/// The whole applied log of a stopped replica's store, in memory (tests and small
/// stores; `dump-log --data-dir` streams it with [`OfflineLog`]).
pub fn read_offline_log(dir: &Path) -> Result<(StoreMeta, Vec<LogEntry>), ClientError> {
    let mut log = OfflineLog::open(dir)?;
    let mut out = Vec::new();
    loop {
        let page = log.next_page()?;
        if page.is_empty() {
            return Ok((log.meta(), out));
        }
        out.extend(page);
    }
}

/// When `dir` is a cluster's data directory rather than one replica's store, says which
/// `node-<uid>` directories it holds.
fn hint_node_dirs(dir: &Path, e: crate::Error) -> crate::Error {
    let Ok(read) = std::fs::read_dir(dir) else {
        return e;
    };
    let mut nodes: Vec<String> = read
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("node-"))
        .collect();
    if nodes.is_empty() {
        return e;
    }
    nodes.sort();
    let crate::Error::NotAStore { path, reason } = e else {
        return e;
    };
    crate::Error::NotAStore {
        path,
        reason: format!(
            "{reason}; it holds replica stores, pass one of: {}",
            nodes
                .iter()
                .map(|n| dir.join(n).display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Keeps the entries of `batch` that continue the log at `*next`, in order, and moves
/// `*next` past them. Entries below `*next` (already seen) are dropped; anything after a
/// gap is dropped too and will be asked for again.
pub fn take_contiguous(next: &mut Slot, batch: Vec<LogEntry>) -> Vec<LogEntry> {
    let mut out = Vec::with_capacity(batch.len());
    for entry in batch {
        if entry.slot < *next {
            continue;
        }
        if entry.slot != *next {
            break;
        }
        *next += 1;
        out.push(entry);
    }
    out
}

/// How a network read of the log is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Every message acknowledged before the read began is in it (a read index through
    /// the leader first).
    Linearizable,
    /// The replica's local applied log as it is (`--stale`).
    Stale,
}

/// Pages through replica `uid`'s applied log from slot 0 until it has read up to the
/// replica's decided prefix, handing each entry to `sink` in slot order. Linearizable:
/// first a read index, so the pages hold every message acknowledged before the call.
pub async fn dump_log(
    client: &mut Client,
    uid: Uid,
    consistency: Consistency,
    mut sink: impl FnMut(&LogEntry),
) -> Result<Slot, ClientError> {
    if consistency == Consistency::Linearizable {
        client.read_index(uid).await?;
    }
    let mut next: Slot = 0;
    loop {
        let (batch, decided_upto) = client.read_log(uid, next, READ_ENTRIES_MAX, 0).await?;
        let before = next;
        for entry in take_contiguous(&mut next, batch) {
            sink(&entry);
        }
        if next >= decided_upto || next == before {
            return Ok(next);
        }
    }
}

/// Follows the chat log as slots are decided, from any reachable replica: long-polls
/// one replica, and moves to the next on an error, when that replica is behind what was
/// already seen, or after [`FOLLOW_EMPTY_POLLS_MAX`] empty polls. See invariant 1.
pub struct LogFollower {
    client: Client,
    next_slot: Slot,
    uid: Uid,
    empty_polls: u32,
    /// Linearizable first page: ask a read index of the replica before the first read,
    /// so the first pages hold every message acknowledged before following began.
    index_first: bool,
    /// The next slot when a poll first read up to the answering replica's decided
    /// prefix, and that replica (`None`: not yet): the first pages ended there.
    caught_up_at: Option<(Slot, Uid)>,
}

impl LogFollower {
    /// Follows from `from_slot`, starting with replica `uid`.
    pub fn new(client: Client, from_slot: Slot, uid: Uid) -> LogFollower {
        let replicas = client.config().replicas().max(1) as Uid;
        LogFollower {
            client,
            next_slot: from_slot,
            uid: uid % replicas,
            empty_polls: 0,
            index_first: false,
            caught_up_at: None,
        }
    }

    /// Makes the first read linearizable (as `dump-log`): before it, a read index from
    /// the replica read, which answers once it has applied everything acknowledged
    /// before the call; every later page continues in slot order from there.
    pub fn linearizable(mut self) -> LogFollower {
        self.index_first = true;
        self
    }

    /// The next slot this follower will hand out.
    pub fn next_slot(&self) -> Slot {
        self.next_slot
    }

    /// Where the first pages ended: the next slot when a poll first read up to the
    /// decided prefix of the replica that answered, and that replica (`None` until
    /// then). With [`LogFollower::linearizable`] every message acknowledged before
    /// following began lies below that slot.
    pub fn caught_up_at(&self) -> Option<(Slot, Uid)> {
        self.caught_up_at
    }

    /// The replica currently read from.
    pub fn uid(&self) -> Uid {
        self.uid
    }

    fn rotate(&mut self) {
        let replicas = self.client.config().replicas().max(1) as Uid;
        self.uid = (self.uid + 1) % replicas;
        self.empty_polls = 0;
    }

    /// The next entries in slot order (possibly none, after a quiet `wait_ms`). Tries
    /// every replica once before failing with [`ClientError::Unreachable`], which names
    /// what each said; the caller may retry.
    pub async fn poll(&mut self, wait_ms: u64) -> Result<Vec<LogEntry>, ClientError> {
        let replicas = self.client.config().replicas().max(1);
        let mut failures = Vec::new();
        for _ in 0..replicas {
            if self.index_first {
                match self.client.read_index(self.uid).await {
                    Ok(_) => self.index_first = false,
                    Err(e) => {
                        failures.push(e.to_string());
                        self.rotate();
                        continue;
                    }
                }
            }
            match self
                .client
                .read_log(self.uid, self.next_slot, READ_ENTRIES_MAX, wait_ms)
                .await
            {
                Ok((batch, decided_upto)) => {
                    let entries = take_contiguous(&mut self.next_slot, batch);
                    if self.caught_up_at.is_none() && self.next_slot >= decided_upto {
                        self.caught_up_at = Some((self.next_slot, self.uid));
                    }
                    if entries.is_empty() {
                        self.empty_polls += 1;
                        if decided_upto < self.next_slot
                            || self.empty_polls >= FOLLOW_EMPTY_POLLS_MAX
                        {
                            self.rotate();
                        }
                    } else {
                        self.empty_polls = 0;
                    }
                    return Ok(entries);
                }
                Err(e) => {
                    failures.push(e.to_string());
                    self.rotate();
                }
            }
        }
        Err(ClientError::Unreachable {
            tried: failures.join("; "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{RequestId, Value};

    fn id(client_id: u64, seq: u64) -> RequestId {
        RequestId { client_id, seq }
    }

    fn msg(client_id: u64, seq: u64, body: &str) -> Value {
        Value::Msg {
            id: id(client_id, seq),
            body: body.to_string(),
        }
    }

    #[test]
    fn offline_log_of_a_real_store() {
        use crate::core::Record;
        use crate::storage::sled_store::SledStorage;
        use crate::storage::Storage;
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("node-0");
        {
            let mut store = SledStorage::open(&node, 0, 42).unwrap();
            let records = vec![
                Record::Decided {
                    slot: 0,
                    value: msg(7, 1, "hello"),
                    dup: false,
                },
                Record::Decided {
                    slot: 1,
                    value: Value::Noop,
                    dup: false,
                },
                Record::Decided {
                    slot: 2,
                    value: msg(7, 1, "hello"),
                    dup: true,
                },
            ];
            store.persist(&records).unwrap();
        }
        let (meta, log) = read_offline_log(&node).unwrap();
        assert_eq!(meta.uid, 0);
        assert_eq!(
            log,
            vec![
                LogEntry::from_decided(0, &msg(7, 1, "hello"), true),
                LogEntry::from_decided(1, &Value::Noop, true),
                LogEntry::from_decided(2, &msg(7, 1, "hello"), false),
            ]
        );
        // The cluster's data dir instead of the replica's: the error points to node-0.
        let err = read_offline_log(dir.path()).unwrap_err();
        assert!(
            matches!(&err, ClientError::Paxos(crate::Error::NotAStore { reason, .. }) if reason.contains("node-0")),
            "{err}"
        );
        let text = err.to_string();
        assert_eq!(text.matches("no paxos store").count(), 1, "{text}");
        let err = read_offline_log(&dir.path().join("nope")).unwrap_err();
        assert!(
            matches!(&err, ClientError::Paxos(crate::Error::NotAStore { reason, .. }) if reason.contains("does not exist")),
            "{err}"
        );
    }

    #[test]
    fn contiguous_entries_only() {
        let e = |slot| LogEntry::from_decided(slot, &Value::Noop, true);
        let mut next = 5;
        let got = take_contiguous(&mut next, vec![e(3), e(4), e(5), e(6), e(8), e(9)]);
        assert_eq!(got.iter().map(|e| e.slot).collect::<Vec<_>>(), vec![5, 6]);
        assert_eq!(next, 7);
        assert!(take_contiguous(&mut next, vec![e(8)]).is_empty());
        assert_eq!(next, 7);
    }
}

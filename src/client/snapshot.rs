//! Backups of the chat log, the network side (`paxosctl snapshot save`): the file format
//! and the restore into a store are [`crate::storage::snapshot`]; the command's
//! arguments and printing are `crate::ctl::snapshot`.
//!
//! `save` pages one live replica's decided log over the client protocol (`ReadLog`, no
//! waiting) from slot 0 to the replica's decided prefix at the start of the save, the end
//! of the snapshot. Decided slots never change, so the pages form a consistent copy even
//! while the cluster keeps deciding; memory stays bounded by one page and one chunk.
//! Without `--uid` the reachable replica with the highest decided prefix is used.
//!
//! Deliberately not here: saving from a stopped replica's store (use `dump-log
//! --data-dir` to inspect one), or from several replicas at once.

use super::{Client, ClientError};
use crate::core::{LogEntry, LogEntryKind, Slot, Uid, Value};
use crate::storage::snapshot::SnapshotWriter;
use std::path::Path;
use std::time::{Duration, Instant};

/// Entries asked for per page (halved down to 1 while a page is too large to answer).
const PAGE_ENTRIES_MAX: u32 = 4096;
/// Consecutive failed pages before a save gives up.
const PAGE_ATTEMPTS_MAX: u32 = 8;

/// What `save` wrote.
#[derive(Clone, Debug)]
pub struct SaveReport {
    pub uid: Uid,
    pub end_slot: Slot,
    pub bytes: u64,
    pub elapsed: Duration,
}

/// The value a decided slot holds, from its applied entry (a duplicate holds its message).
fn value_of(entry: &LogEntry) -> Option<Value> {
    match entry.kind {
        LogEntryKind::Noop => Some(Value::Noop),
        LogEntryKind::Msg | LogEntryKind::Dup => Some(Value::Msg {
            id: entry.id?,
            body: entry.body.clone(),
        }),
    }
}

/// The reachable replica with the highest decided prefix.
async fn best_replica(client: &mut Client) -> Result<Uid, ClientError> {
    let mut best: Option<(Slot, Uid)> = None;
    let mut tried = Vec::new();
    for uid in 0..client.config().replicas() as Uid {
        match client.status(uid).await {
            Ok(report) => {
                let upto = report.status.decided_upto;
                if best.is_none_or(|(b, _)| upto > b) {
                    best = Some((upto, uid));
                }
            }
            Err(e) => tried.push(e.to_string()),
        }
    }
    best.map(|(_, uid)| uid).ok_or(ClientError::Unreachable {
        tried: tried.join("; "),
    })
}

/// One page from `uid`, retried with smaller pages (an answer too large for a frame) and
/// a pause, up to [`PAGE_ATTEMPTS_MAX`] times.
async fn page(
    client: &mut Client,
    uid: Uid,
    from: Slot,
    size: &mut u32,
) -> Result<(Vec<LogEntry>, Slot), ClientError> {
    let mut attempt = 0;
    loop {
        match client.read_log(uid, from, *size, 0).await {
            Ok(answer) => return Ok(answer),
            Err(e) => {
                attempt += 1;
                if attempt >= PAGE_ATTEMPTS_MAX {
                    return Err(e);
                }
                *size = (*size / 2).max(1);
                tokio::time::sleep(Duration::from_millis(50 << attempt.min(5))).await;
            }
        }
    }
}

/// Saves replica `uid`'s (or the best replica's) decided log to `path`; `progress` is
/// told `(slots written, end slot)` after each page.
pub async fn save(
    client: &mut Client,
    uid: Option<Uid>,
    path: &Path,
    mut progress: impl FnMut(Slot, Slot),
) -> Result<SaveReport, ClientError> {
    let started = Instant::now();
    let uid = match uid {
        Some(uid) => uid,
        None => best_replica(client).await?,
    };
    let mut size = PAGE_ENTRIES_MAX;
    let (mut entries, end) = page(client, uid, 0, &mut size).await?;
    let cluster_id = client.config().cluster_id();
    let mut writer = SnapshotWriter::create(path, Some(cluster_id), 0, end)?;
    loop {
        let next = writer.next_slot();
        for entry in entries.iter().filter(|e| e.slot >= next && e.slot < end) {
            let value = value_of(entry).ok_or_else(|| ClientError::Replica {
                uid,
                addr: String::new(),
                reason: format!("slot {}: a message without a request id", entry.slot),
            })?;
            writer
                .push(entry.slot, &value)
                .map_err(|e| ClientError::Replica {
                    uid,
                    addr: String::new(),
                    reason: format!("answered an entry out of order: {e}"),
                })?;
        }
        progress(writer.next_slot(), end);
        if writer.next_slot() >= end {
            break;
        }
        let before = writer.next_slot();
        (entries, _) = page(client, uid, before, &mut size).await?;
        if entries.is_empty() {
            return Err(ClientError::Replica {
                uid,
                addr: String::new(),
                reason: format!("no entries from slot {before}, below its decided prefix {end}"),
            });
        }
    }
    let bytes = writer.finish()?;
    Ok(SaveReport {
        uid,
        end_slot: end,
        bytes,
        elapsed: started.elapsed(),
    })
}

//! `paxosctl snapshot save|restore|status`: backups of the chat log (the file format and
//! the restore into a store are [`crate::storage::snapshot`]; this file is the network
//! side and the command's arguments and printing).
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
use crate::config::Config;
use crate::core::{LogEntry, LogEntryKind, Slot, Uid, Value};
use crate::storage::snapshot::{self, SnapshotSummary, SnapshotWriter};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Entries asked for per page (halved down to 1 while a page is too large to answer).
const PAGE_ENTRIES_MAX: u32 = 4096;
/// Consecutive failed pages before a save gives up.
const PAGE_ATTEMPTS_MAX: u32 = 8;

/// `paxosctl snapshot ...`
#[derive(Debug, clap::Subcommand)]
pub enum SnapshotCommand {
    /// Save a consistent copy of the chat log from a live replica to FILE
    #[command(
        after_help = "Examples:\n  paxosctl snapshot save room.snap\n  paxosctl --config /etc/paxos/config.toml snapshot save --uid 1 room.snap\n\nThe snapshot ends at the replica's decided prefix when the save starts. It is\nwritten to FILE.tmp and renamed to FILE once complete and synced."
    )]
    Save {
        file: PathBuf,
        /// Read from this replica [default: the reachable one with the highest decided prefix]
        #[arg(long, value_name = "UID")]
        uid: Option<Uid>,
    },
    /// Seed a fresh store for replica UID of the config's cluster from FILE
    #[command(
        after_help = "Examples:\n  paxosctl --config new.toml snapshot restore room.snap --data-dir data/node-0 --uid 0\n\nRestore every replica of the new cluster from the same file, then start them:\nthey hold the log as decided and elect a leader as after a restart. DIR must be\nmissing or empty; nothing is written unless the whole file checks out."
    )]
    Restore {
        file: PathBuf,
        /// The store directory to create (e.g. data/node-0)
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// The replica the store is for
        #[arg(long, value_name = "UID")]
        uid: Uid,
    },
    /// Check FILE and print what is in it
    #[command(
        after_help = "Examples:\n  paxosctl snapshot status room.snap\n  paxosctl snapshot status -w json room.snap\n\nExits non-zero, naming the byte offset and the chunk, if any check fails."
    )]
    Status {
        file: PathBuf,
        /// Output format: table or json (--json is the same as -w json)
        #[arg(
            short = 'w',
            long = "write-out",
            value_name = "FORMAT",
            default_value = "table"
        )]
        write_out: String,
    },
}

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

/// The `snapshot status` table.
pub fn status_table(path: &Path, s: &SnapshotSummary) -> String {
    let h = &s.header;
    format!(
        "file        {} ({} bytes)\nformat      version {}\ncluster id  {}\nslots       {}..{} ({} entries: {} messages incl. duplicates, {} no-ops)\nchunks      {}\nchecksums   ok\n",
        path.display(),
        s.file_bytes,
        h.version,
        h.cluster_id.map_or_else(|| "-".to_string(), |c| c.to_string()),
        h.first_slot,
        h.end_slot,
        h.count,
        s.messages,
        s.noops,
        s.chunks
    )
}

/// The `snapshot status -w json` line (the cluster id as a string: it is a full u64).
pub fn status_json(path: &Path, s: &SnapshotSummary) -> String {
    let h = &s.header;
    serde_json::json!({
        "file": path.display().to_string(),
        "version": h.version,
        "cluster_id": h.cluster_id.map(|c| c.to_string()),
        "first_slot": h.first_slot,
        "end_slot": h.end_slot,
        "entries": h.count,
        "messages": s.messages,
        "noops": s.noops,
        "chunks": s.chunks,
        "bytes": s.file_bytes,
        "ok": true,
    })
    .to_string()
}

impl SnapshotCommand {
    /// `save` and `restore` need the cluster config; `status` reads the file only.
    pub fn needs_config(&self) -> bool {
        !matches!(self, SnapshotCommand::Status { .. })
    }
}

/// Runs one `snapshot` subcommand with the cluster config (`Some` when
/// [`SnapshotCommand::needs_config`]). Prints results to stdout and progress to stderr.
pub async fn run(
    command: &SnapshotCommand,
    config: Option<Config>,
    json: bool,
) -> Result<(), ClientError> {
    let config = || config.ok_or_else(|| crate::Error::config("--config", "needed here"));
    match command {
        SnapshotCommand::Save { file, uid } => {
            let config = config()?;
            if let Some(uid) = uid {
                config.replica_addr(*uid)?;
            }
            let mut client = Client::new(config);
            let mut last = Instant::now();
            let report = save(&mut client, *uid, file, |done, end| {
                if last.elapsed() >= Duration::from_secs(1) {
                    last = Instant::now();
                    eprintln!("saved {done} of {end} slots");
                }
            })
            .await?;
            let line = if json {
                serde_json::json!({
                    "file": file.display().to_string(),
                    "uid": report.uid,
                    "end_slot": report.end_slot,
                    "bytes": report.bytes,
                    "seconds": report.elapsed.as_secs_f64(),
                })
                .to_string()
            } else {
                format!(
                    "saved slots 0..{} from replica {} to {} ({} bytes, {:.2} s)",
                    report.end_slot,
                    report.uid,
                    file.display(),
                    report.bytes,
                    report.elapsed.as_secs_f64()
                )
            };
            println!("{line}");
        }
        SnapshotCommand::Restore {
            file,
            data_dir,
            uid,
        } => {
            let config = config()?;
            config.replica_addr(*uid)?;
            let summary = snapshot::restore(file, data_dir, *uid, config.cluster_id())?;
            println!(
                "restored slots 0..{} into {} for replica {uid} of cluster {}",
                summary.header.end_slot,
                data_dir.display(),
                config.cluster_id()
            );
        }
        SnapshotCommand::Status { file, write_out } => {
            let json = match (json, write_out.as_str()) {
                (true, _) | (_, "json") => true,
                (false, "table") => false,
                (false, other) => {
                    return Err(crate::Error::config(
                        "-w",
                        format!("unknown format {other:?}: table or json"),
                    )
                    .into())
                }
            };
            let summary = snapshot::verify(file)?;
            if json {
                println!("{}", status_json(file, &summary));
            } else {
                print!("{}", status_table(file, &summary));
            }
        }
    }
    Ok(())
}

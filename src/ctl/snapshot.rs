//! `paxosctl snapshot save|restore|status`: the command's arguments and printing; the
//! network side of a save is [`crate::client::snapshot`], the file format and the restore
//! into a store [`crate::storage::snapshot`].

use super::{out, out_raw, CtlError, Format};
use crate::client::snapshot::save;
use crate::client::Client;
use crate::config::Config;
use crate::core::Uid;
use crate::storage::snapshot::{self, SnapshotSummary};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
    Status { file: PathBuf },
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

/// `paxosctl snapshot ...` with the global options.
pub async fn run_with(command: &SnapshotCommand, globals: &super::Globals) -> Result<(), CtlError> {
    let config = if command.needs_config() {
        Some(globals.load_config()?)
    } else {
        None
    };
    let formats = match command {
        SnapshotCommand::Status { .. } => [Format::Table, Format::Json],
        _ => [Format::Simple, Format::Json],
    };
    let json = globals.format("snapshot", &formats, formats[0])? == Format::Json;
    run(command, config, json).await
}

/// Runs one `snapshot` subcommand with the cluster config (`Some` when
/// [`SnapshotCommand::needs_config`]). Prints results to stdout and progress to stderr.
pub async fn run(
    command: &SnapshotCommand,
    config: Option<Config>,
    json: bool,
) -> Result<(), CtlError> {
    let config = || config.ok_or_else(|| CtlError::Usage("a cluster config is needed here".into()));
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
            out(&line)?;
        }
        SnapshotCommand::Restore {
            file,
            data_dir,
            uid,
        } => {
            let config = config()?;
            config.replica_addr(*uid)?;
            let summary = snapshot::restore(file, data_dir, *uid, config.cluster_id())?;
            out(&format!(
                "restored slots 0..{} into {} for replica {uid} of cluster {}",
                summary.header.end_slot,
                data_dir.display(),
                config.cluster_id()
            ))?;
        }
        SnapshotCommand::Status { file } => {
            let summary = snapshot::verify(file)?;
            if json {
                out(&status_json(file, &summary))?;
            } else {
                out_raw(status_table(file, &summary).as_bytes())?;
            }
        }
    }
    Ok(())
}

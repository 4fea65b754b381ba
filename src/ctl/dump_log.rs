//! `paxosctl dump-log`: a replica's applied chat log, over the network or from a stopped
//! replica's store, and the line formats of a log entry (`--json` and plain).

use super::{out, CtlError, Format, Globals};
use crate::client::log::{dump_log, Consistency, OfflineLog};
use crate::client::Client;
use crate::core::{LogEntry, LogEntryKind, Slot, Uid};
use serde::Serialize;
use std::path::PathBuf;

/// Print a replica's chat log, over the network or from a stopped replica's store
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  paxosctl dump-log --uid 2\n  paxosctl dump-log --uid 0 --json     # {\"slot\":N,\"kind\":\"msg\"|\"noop\"|\"dup\",\"id\":\"..\",\"body\":\"..\"}\n  paxosctl dump-log --data-dir data/node-1   # offline; the replica must be stopped"
)]
pub struct DumpLog {
    /// Ask replica UID over the network
    #[arg(long, value_name = "UID", required_unless_present = "data_dir")]
    pub uid: Option<Uid>,
    /// Read a stopped replica's store directory (e.g. data/node-0)
    #[arg(long, value_name = "DIR", conflicts_with = "uid")]
    pub data_dir: Option<PathBuf>,
    /// Serve the replica's local applied log without a round trip through the leader
    /// (by default a read holds every message acknowledged before it began)
    #[arg(long, conflicts_with = "data_dir")]
    pub stale: bool,
}

impl DumpLog {
    pub async fn run(&self, globals: &Globals) -> Result<(), CtlError> {
        let json = globals.format("dump-log", &[Format::Simple, Format::Json], Format::Simple)?
            == Format::Json;
        let line = |entry: &LogEntry| {
            if json {
                entry_json(entry)
            } else {
                entry_plain(entry)
            }
        };
        match (self.uid, &self.data_dir) {
            (_, Some(dir)) => {
                // Page by page: memory stays bounded whatever the log length.
                let mut log = OfflineLog::open(dir)?;
                eprintln!(
                    "{}: {}, {} applied slots",
                    dir.display(),
                    log.meta(),
                    log.decided_upto()
                );
                loop {
                    let page = log.next_page()?;
                    if page.is_empty() {
                        return Ok(());
                    }
                    for entry in &page {
                        out(&line(entry))?;
                    }
                }
            }
            (Some(uid), None) => {
                let config = globals.load_config()?;
                config.check_uid(uid)?;
                let mut client = Client::new(config);
                let mut failed = None;
                let consistency = if self.stale {
                    Consistency::Stale
                } else {
                    Consistency::Linearizable
                };
                dump_log(&mut client, uid, consistency, |entry| {
                    if failed.is_none() {
                        failed = out(&line(entry)).err();
                    }
                })
                .await?;
                failed.map_or(Ok(()), Err)
            }
            (None, None) => Err(CtlError::Usage("give --uid N or --data-dir DIR".into())),
        }
    }
}

/// One `--json` line of `dump-log` and `watch`:
/// `{"slot":N,"kind":"msg"|"noop"|"dup","id":"...","body":"..."}` (fields in this order;
/// a no-op has empty `id` and `body`).
#[derive(Debug, Serialize)]
struct EntryJson<'a> {
    slot: Slot,
    kind: &'static str,
    id: String,
    body: &'a str,
}

/// `msg`, `noop` or `dup`.
pub fn kind_name(kind: &LogEntryKind) -> &'static str {
    match kind {
        LogEntryKind::Msg => "msg",
        LogEntryKind::Noop => "noop",
        LogEntryKind::Dup => "dup",
    }
}

/// The `--json` line of one entry (no trailing newline).
pub fn entry_json(entry: &LogEntry) -> String {
    let line = EntryJson {
        slot: entry.slot,
        kind: kind_name(&entry.kind),
        id: entry.id.map(|id| id.to_string()).unwrap_or_default(),
        body: &entry.body,
    };
    // Serializing plain strings and integers cannot fail.
    serde_json::to_string(&line).unwrap_or_default()
}

/// The plain `dump-log` line of one entry: slot, kind, request id, body (quoted, so
/// that spaces and control characters stay visible).
pub fn entry_plain(entry: &LogEntry) -> String {
    let id = entry
        .id
        .map_or_else(|| "-".to_string(), |id| id.to_string());
    match entry.kind {
        LogEntryKind::Noop => format!("{:>8}  noop", entry.slot),
        _ => format!(
            "{:>8}  {:<4}  {id}  {:?}",
            entry.slot,
            kind_name(&entry.kind),
            entry.body
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{RequestId, Value};

    fn msg(client_id: u64, seq: u64, body: &str) -> Value {
        Value::Msg {
            id: RequestId { client_id, seq },
            body: body.to_string(),
        }
    }

    #[test]
    fn json_lines_have_the_documented_shape() {
        let entry = LogEntry::from_decided(17, &msg(5, 2, "bob: \"hi\"\n"), true);
        assert_eq!(
            entry_json(&entry),
            r#"{"slot":17,"kind":"msg","id":"5:2","body":"bob: \"hi\"\n"}"#
        );
        let noop = LogEntry::from_decided(3, &Value::Noop, true);
        assert_eq!(
            entry_json(&noop),
            r#"{"slot":3,"kind":"noop","id":"","body":""}"#
        );
        let dup = LogEntry::from_decided(4, &msg(5, 2, "x"), false);
        assert_eq!(
            entry_json(&dup),
            r#"{"slot":4,"kind":"dup","id":"5:2","body":"x"}"#
        );
    }

    #[test]
    fn plain_lines() {
        let entry = LogEntry::from_decided(17, &msg(5, 2, "alice: hi"), true);
        assert_eq!(entry_plain(&entry), "      17  msg   5:2  \"alice: hi\"");
        let noop = LogEntry::from_decided(1, &Value::Noop, true);
        assert_eq!(entry_plain(&noop), "       1  noop");
    }
}

//! `paxosctl chat`: type lines, see the room (the seed's `-manual`). Every committed
//! message is shown as `[slot] body`; a line typed while no quorum answers is kept and
//! re-sent with the same request id, so it lands once.

use super::{follow, out, CtlError, Globals};
use crate::client::log::LogFollower;
use crate::client::{Client, ClientError};
use crate::config::Config;
use crate::core::{LogEntry, LogEntryKind, Uid};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Type lines, see the room
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  paxosctl chat --name alice\n  echo 'hello' | paxosctl chat\n\nEach line is sent as \"NAME: line\"; every committed message is shown as\n\"[slot] body\". When no quorum answers, the line is kept and re-sent (with the\nsame request id, so it lands once)."
)]
pub struct Chat {
    /// Shown before each line [default: $USER, else anon]
    #[arg(long)]
    pub name: Option<String>,
    /// Messages of history shown on start
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub history: u64,
}

impl Chat {
    pub async fn run(&self, globals: &Globals) -> Result<(), CtlError> {
        let config = globals.load_config()?;
        let name = self
            .name
            .clone()
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| "anon".to_string());
        chat(config, name, self.history).await
    }
}

/// The chat view of one entry, `[slot] body`; `None` for no-ops and duplicates, which
/// a reader of the room does not see.
pub fn chat_line(entry: &LogEntry) -> Option<String> {
    match entry.kind {
        LogEntryKind::Msg => Some(format!("[{}] {}", entry.slot, entry.body)),
        LogEntryKind::Noop | LogEntryKind::Dup => None,
    }
}

async fn chat(config: Config, name: String, history: u64) -> Result<(), CtlError> {
    // Where to start showing the room: the last `history` slots of any replica.
    let mut probe = Client::new(config.clone());
    let mut from = 0;
    for uid in 0..config.replicas() as Uid {
        if let Ok((_, decided_upto)) = probe.read_log(uid, 0, 1, 0).await {
            from = decided_upto.saturating_sub(history);
            break;
        }
    }
    eprintln!(
        "chatting as {name:?} with {} replicas; type a line and press Enter, Ctrl-D to quit",
        config.replicas()
    );
    let shown = Arc::new(AtomicU64::new(from));
    let follower = {
        let shown = shown.clone();
        let mut follower = LogFollower::new(Client::new(config.clone()), from, 0);
        tokio::spawn(async move {
            follow(
                &mut follower,
                |note| eprintln!("{note}"),
                |entry| {
                    if let Some(line) = chat_line(entry) {
                        out(&line)?;
                    }
                    shown.store(entry.slot + 1, Ordering::Relaxed);
                    Ok(())
                },
            )
            .await
        })
    };

    let mut client = Client::new(config);
    let mut lines = stdin_lines();
    let mut last_slot = None;
    while let Some(line) = lines.recv().await {
        let line = line.map_err(|e| CtlError::io("reading stdin", e))?;
        if line.trim().is_empty() {
            continue;
        }
        let body = format!("{name}: {line}");
        let id = client.next_request_id();
        loop {
            match client.submit_with_id(id, &body).await {
                Ok(slot) => {
                    last_slot = Some(slot);
                    break;
                }
                Err(ClientError::Rejected { reason, .. }) => {
                    eprintln!("chat: not sent, the cluster refused it: {reason}");
                    break;
                }
                Err(e) => {
                    eprintln!("chat: {e}");
                    eprintln!(
                        "chat: kept your line {line:?}; re-sending it in 2s (Ctrl-C to give up)"
                    );
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    }
    // Stdin closed: give the room a moment to show our last message.
    if let Some(slot) = last_slot {
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        while shown.load(Ordering::Relaxed) <= slot && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    follower.abort();
    Ok(())
}

/// Lines of stdin, read on a thread of their own (a bounded queue: typing ahead of a
/// slow cluster waits).
fn stdin_lines() -> tokio::sync::mpsc::Receiver<std::io::Result<String>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let failed = line.is_err();
            if tx.blocking_send(line).is_err() || failed {
                break;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{RequestId, Value};

    #[test]
    fn chat_lines() {
        let msg = Value::Msg {
            id: RequestId {
                client_id: 5,
                seq: 2,
            },
            body: "alice: hi".into(),
        };
        let entry = LogEntry::from_decided(17, &msg, true);
        assert_eq!(chat_line(&entry).as_deref(), Some("[17] alice: hi"));
        assert_eq!(
            chat_line(&LogEntry::from_decided(1, &Value::Noop, true)),
            None
        );
        assert_eq!(chat_line(&LogEntry::from_decided(2, &msg, false)), None);
    }
}

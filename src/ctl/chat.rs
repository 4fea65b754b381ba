//! `paxosctl chat`: type lines, see the room (the seed's `-manual`). Every committed
//! message is shown as `[slot] body` (escaped: a body cannot move the cursor or break
//! the line); a line typed while no quorum answers is kept and re-sent with the same
//! request id, so it lands once.
//!
//! At a terminal the line editor is rustyline: a `name> ` prompt, history (Up/Down),
//! incoming messages printed above the line being typed (its external printer), which
//! is redrawn as it was; Ctrl-C clears the line (twice in a row quits), Ctrl-D on an
//! empty line quits. When stdin is not a terminal, lines are read plainly one by one
//! and the room goes to stdout (scripts and the tests use this mode).

use super::{escape, follow, out, CtlError, Format, Globals};
use crate::client::log::LogFollower;
use crate::client::{Client, ClientError};
use crate::config::Config;
use crate::core::{LogEntry, LogEntryKind, Uid};
use rustyline::error::ReadlineError;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Lines typed ahead of a slow cluster wait in a queue this long.
const TYPED_AHEAD_MAX: usize = 64;
/// History lines kept by the editor.
const HISTORY_MAX: usize = 1000;

/// Type lines, see the room
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  paxosctl chat --name alice\n  echo 'hello' | paxosctl chat\n\nEach line is sent as \"NAME: line\"; every committed message is shown as\n\"[slot] body\". When no quorum answers, the line is kept and re-sent (with the\nsame request id, so it lands once). At a terminal: Up/Down for history, Ctrl-C\nclears the line (twice quits), Ctrl-D quits."
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
        globals.format("chat", &[Format::Simple], Format::Simple)?;
        let config = globals.load_config()?;
        let name = self
            .name
            .clone()
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| "anon".to_string());
        if name.trim().is_empty() || name.chars().any(char::is_control) {
            return Err(CtlError::Usage(format!(
                "--name {}: must be non-empty, without control characters",
                escape(&name)
            )));
        }
        chat(config, globals, name, self.history).await
    }
}

/// The chat view of one entry, `[slot] body` with the body escaped; `None` for no-ops
/// and duplicates, which a reader of the room does not see.
pub fn chat_line(entry: &LogEntry) -> Option<String> {
    match entry.kind {
        LogEntryKind::Msg => Some(format!("[{}] {}", entry.slot, escape(&entry.body))),
        LogEntryKind::Noop | LogEntryKind::Dup => None,
    }
}

/// Where the room and notes go: stdout/stderr, or above the line being edited.
#[derive(Clone)]
enum Screen {
    Plain,
    Editor(Arc<Mutex<Box<dyn rustyline::ExternalPrinter + Send>>>),
}

impl Screen {
    /// A line of the room.
    fn show(&self, line: String) -> Result<(), CtlError> {
        match self {
            Screen::Plain => out(&line),
            Screen::Editor(printer) => print_above(printer, line),
        }
    }

    /// A note about the session (errors, reconnects): stderr, or above the line.
    fn note(&self, line: String) {
        match self {
            Screen::Plain => eprintln!("{line}"),
            Screen::Editor(printer) => {
                let _ = print_above(printer, format!("-- {line}"));
            }
        }
    }
}

fn print_above(
    printer: &Mutex<Box<dyn rustyline::ExternalPrinter + Send>>,
    line: String,
) -> Result<(), CtlError> {
    let mut printer = printer
        .lock()
        .map_err(|_| CtlError::Failed("the terminal printer failed".into()))?;
    printer
        .print(format!("{line}\n"))
        .map_err(|e| CtlError::Failed(format!("printing to the terminal: {e}")))
}

/// What the keyboard (or stdin) says.
enum Typed {
    Line(String),
    Quit,
}

async fn chat(
    config: Config,
    globals: &Globals,
    name: String,
    history: u64,
) -> Result<(), CtlError> {
    let options = globals.client_options(&config);
    // Where to start showing the room: the last `history` slots of any replica.
    let mut probe = Client::with_options(config.clone(), options.clone());
    let mut from = 0;
    for uid in 0..config.replicas() as Uid {
        if let Ok((_, decided_upto)) = probe.read_log(uid, 0, 1, 0).await {
            from = decided_upto.saturating_sub(history);
            break;
        }
    }
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let (screen, mut typed) = if interactive {
        editor_lines(&name)?
    } else {
        (Screen::Plain, stdin_lines())
    };
    screen.note(format!(
        "chatting as {:?} with {} replicas; type a line and press Enter, Ctrl-D to quit",
        escape(&name),
        config.replicas()
    ));
    let shown = Arc::new(AtomicU64::new(from));
    let follower = {
        let shown = shown.clone();
        let screen = screen.clone();
        let client = Client::with_options(config.clone(), options.clone());
        let mut follower = LogFollower::new(client, from, 0);
        tokio::spawn(async move {
            let notes = screen.clone();
            follow(
                &mut follower,
                |note| notes.note(note),
                |_, _| {},
                |entry| {
                    if let Some(line) = chat_line(entry) {
                        screen.show(line)?;
                    }
                    shown.store(entry.slot + 1, Ordering::Relaxed);
                    Ok(())
                },
            )
            .await
        })
    };

    let mut client = Client::with_options(config, options);
    let mut last_slot = None;
    while let Some(typed) = typed.recv().await {
        let line = match typed {
            Typed::Line(line) => line,
            Typed::Quit => break,
        };
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
                    screen.note(format!(
                        "not sent, the cluster refused it: {}",
                        escape(&reason)
                    ));
                    break;
                }
                Err(e) => {
                    screen.note(escape(&e.to_string()).into_owned());
                    screen.note(format!(
                        "kept your line {:?}; re-sending it in 2s (Ctrl-C to give up)",
                        escape(&line)
                    ));
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    }
    // Input closed: give the room a moment to show our last message.
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
/// slow cluster waits). A read error ends the input like end of file, with a note.
fn stdin_lines() -> mpsc::Receiver<Typed> {
    let (tx, rx) = mpsc::channel(TYPED_AHEAD_MAX);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            match line {
                Ok(line) => {
                    if tx.blocking_send(Typed::Line(line)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    eprintln!("chat: reading stdin: {e}");
                    break;
                }
            }
        }
        let _ = tx.blocking_send(Typed::Quit);
    });
    rx
}

/// The line editor on a thread of its own, and the printer that writes above it.
fn editor_lines(name: &str) -> Result<(Screen, mpsc::Receiver<Typed>), CtlError> {
    let failed = |e: ReadlineError| CtlError::Failed(format!("cannot start the line editor: {e}"));
    let config = rustyline::Config::builder()
        .max_history_size(HISTORY_MAX)
        .map_err(failed)?
        .auto_add_history(true)
        .build();
    let mut editor: rustyline::DefaultEditor =
        rustyline::Editor::with_config(config).map_err(failed)?;
    let printer = editor.create_external_printer().map_err(failed)?;
    let printer: Box<dyn rustyline::ExternalPrinter + Send> = Box::new(printer);
    let screen = Screen::Editor(Arc::new(Mutex::new(printer)));
    let prompt = format!("{}> ", escape(name));
    let (tx, rx) = mpsc::channel(TYPED_AHEAD_MAX);
    std::thread::spawn(move || {
        let mut interrupted = false;
        loop {
            let typed = match editor.readline(&prompt) {
                Ok(line) => {
                    interrupted = false;
                    Typed::Line(line)
                }
                // Ctrl-C: the line is dropped; a second one in a row quits.
                Err(ReadlineError::Interrupted) if !interrupted => {
                    interrupted = true;
                    eprintln!("(line cleared; Ctrl-C again or Ctrl-D to quit)");
                    continue;
                }
                Err(ReadlineError::Interrupted | ReadlineError::Eof) => Typed::Quit,
                Err(e) => {
                    eprintln!("chat: line editor: {e}");
                    Typed::Quit
                }
            };
            let quit = matches!(typed, Typed::Quit);
            if tx.blocking_send(typed).is_err() || quit {
                return;
            }
        }
    });
    Ok((screen, rx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{RequestId, Value};

    fn msg(body: &str) -> Value {
        Value::Msg {
            id: RequestId {
                client_id: 5,
                seq: 2,
            },
            body: body.into(),
        }
    }

    #[test]
    fn chat_lines_are_escaped() {
        let entry = LogEntry::from_decided(17, &msg("alice: hi"), true);
        assert_eq!(chat_line(&entry).as_deref(), Some("[17] alice: hi"));
        let hostile = LogEntry::from_decided(18, &msg("\u{1b}[31mred\nx"), true);
        assert_eq!(
            chat_line(&hostile).as_deref(),
            Some("[18] \\u{1b}[31mred\\nx")
        );
        assert_eq!(
            chat_line(&LogEntry::from_decided(1, &Value::Noop, true)),
            None
        );
        assert_eq!(
            chat_line(&LogEntry::from_decided(2, &msg("x"), false)),
            None
        );
    }
}

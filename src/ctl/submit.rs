//! `paxosctl submit`: append one message to the chat log and print its slot once chosen.
//! The message is the argument, stdin (`-`) or a file (`--file`); an empty one is
//! refused before anything is sent.

use super::{out, seconds, CtlError, Format, Globals};
use crate::client::Client;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Longest message read from stdin or a file (the cluster refuses bodies over 64 KiB
/// itself, with its own message).
pub const INPUT_BYTES_MAX: u64 = 1 << 20;

/// Append a message to the chat log; prints its slot once chosen
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  paxosctl submit \"hello\"            # prints e.g. 17\n  paxosctl submit --json \"hi\"        # {\"id\":\"<client_id>:<seq>\",\"slot\":17}\n  echo hello | paxosctl submit -     # the message from stdin\n  paxosctl submit --file note.txt\n\nOne trailing newline of stdin or a file is dropped. Exits 3, saying which replicas\nanswered what, if no quorum commits the message in time (10 s, or --timeout /\n--command-timeout); at once if every replica refuses the connection."
)]
pub struct Submit {
    /// The message; `-` reads it from stdin
    #[arg(
        allow_hyphen_values = true,
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    pub body: Option<String>,
    /// Read the message from this file
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Give up after this many seconds [default: 10, or --command-timeout]
    #[arg(long, value_name = "S")]
    pub timeout: Option<f64>,
}

impl Submit {
    pub async fn run(&self, globals: &Globals) -> Result<(), CtlError> {
        let format = globals.format("submit", &[Format::Simple, Format::Json], Format::Simple)?;
        let body = self.body()?;
        let config = globals.load_config()?;
        let mut options = globals.client_options(&config);
        if let Some(timeout) = self.timeout {
            options.deadline = seconds(timeout, "--timeout")?;
        }
        let mut client = Client::with_options(config, options);
        let (id, slot) = client.submit(&body).await?;
        match format {
            Format::Json => {
                out(&serde_json::json!({ "id": id.to_string(), "slot": slot }).to_string())
            }
            _ => out(&slot.to_string()),
        }
    }

    /// The message: the argument, stdin for `-`, or `--file`; never empty.
    fn body(&self) -> Result<String, CtlError> {
        let body = match (&self.body, &self.file) {
            (_, Some(path)) => read_message(path)?,
            (Some(dash), None) if dash == "-" => read_message(Path::new("-"))?,
            (Some(body), None) => body.clone(),
            (None, None) => return Err(CtlError::Usage("give a message, `-` or --file".into())),
        };
        if body.trim().is_empty() {
            return Err(CtlError::Usage(
                "the message is empty; nothing was sent".into(),
            ));
        }
        Ok(body)
    }
}

/// Reads a message from `path` (`-`: stdin), at most [`INPUT_BYTES_MAX`], UTF-8, with
/// one trailing newline (`\n` or `\r\n`) dropped.
fn read_message(path: &Path) -> Result<String, CtlError> {
    let (name, reader): (String, Box<dyn Read>) = if path == Path::new("-") {
        ("stdin".into(), Box::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(path)
            .map_err(|e| CtlError::io(format!("opening {}", path.display()), e))?;
        (path.display().to_string(), Box::new(file))
    };
    let mut bytes = Vec::new();
    reader
        .take(INPUT_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| CtlError::io(format!("reading {name}"), e))?;
    if bytes.len() as u64 > INPUT_BYTES_MAX {
        return Err(CtlError::Usage(format!(
            "{name}: the message is over {INPUT_BYTES_MAX} bytes"
        )));
    }
    let mut text = String::from_utf8(bytes)
        .map_err(|e| CtlError::Usage(format!("{name}: the message is not UTF-8 ({e})")))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_lose_one_trailing_newline_and_must_be_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.txt");
        std::fs::write(&path, "two\nlines\n\n").unwrap();
        assert_eq!(read_message(&path).unwrap(), "two\nlines\n");
        std::fs::write(&path, "crlf\r\n").unwrap();
        assert_eq!(read_message(&path).unwrap(), "crlf");
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert_eq!(read_message(&path).unwrap_err().exit_code(), 2);
        let missing = read_message(&dir.path().join("nope")).unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }

    #[test]
    fn empty_messages_are_refused() {
        for body in ["", "  ", "\n"] {
            let submit = Submit {
                body: Some(body.into()),
                file: None,
                timeout: None,
            };
            assert_eq!(submit.body().unwrap_err().exit_code(), 2, "{body:?}");
        }
    }
}

//! `paxosctl`'s commands, one file per subcommand (mini-redis's `cmd/`): each file holds
//! the command's clap arguments, what it does with the client library
//! ([`crate::client`]) and how it renders the result (tables, JSON lines, plain lines,
//! the SVG plot). `src/bin/paxosctl.rs` only parses and dispatches.
//!
//! What every command shares lives here: the global options ([`Globals`]), which
//! configuration is used ([`select_config`]), writing to stdout ([`out`]) and the error
//! type with its exit code ([`CtlError`]).
//!
//! Layering: `ctl` uses `client`, `config`, `core` and `storage` types; nothing below
//! uses `ctl`.

pub mod bench;
pub mod chat;
pub mod completions;
pub mod dump_log;
pub mod gen_config;
pub mod local;
pub mod run;
pub mod snapshot;
pub mod status;
pub mod submit;
pub mod watch;

use crate::client::log::{LogFollower, FOLLOW_WAIT_MS};
use crate::client::ClientError;
use crate::config::Config;
use crate::core::LogEntry;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Options every command accepts (before or after the subcommand).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Globals {
    /// Cluster configuration file [default: ./config.toml if present, else built-in]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Machine-readable output: one JSON object a line
    #[arg(long, global = true)]
    pub json: bool,
}

impl Globals {
    /// The configuration this command uses (see [`select_config`]).
    pub fn load_config(&self) -> Result<Config, CtlError> {
        let cwd = std::env::current_dir()
            .map_err(|e| CtlError::io("reading the working directory", e))?;
        let (config, source) = select_config(self.config.as_deref(), &cwd)?;
        tracing::debug!(%source, "config");
        Ok(config)
    }
}

/// Errors of a command. [`CtlError::exit_code`] maps them onto the exit codes the README
/// documents.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// A bad flag or argument; exit code 2.
    #[error("{0}")]
    Usage(String),
    /// The client library failed (no quorum, unreachable, rejected, bad config).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A config, store or IO error from below.
    #[error(transparent)]
    Paxos(#[from] crate::Error),
    /// Writing output or reading input failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The command ran and reports failure (its output says why).
    #[error("{0}")]
    Failed(String),
}

impl CtlError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> CtlError {
        CtlError::Io {
            context: context.into(),
            source,
        }
    }

    /// True for a write to a closed stdout (`paxosctl ... | head`): not an error to report.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CtlError::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }

    /// 2 for a usage or config error, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Usage(_) => 2,
            CtlError::Paxos(crate::Error::Config { .. }) => 2,
            CtlError::Client(ClientError::Paxos(crate::Error::Config { .. })) => 2,
            _ => 1,
        }
    }
}

/// Where the configuration came from (see [`select_config`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// `--config FILE`.
    Explicit(PathBuf),
    /// `config.toml` in the working directory.
    WorkingDir(PathBuf),
    /// [`Config::embedded_default`]: 3 replicas on 127.0.0.1:7101..=7103.
    Embedded,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::Explicit(path) | ConfigSource::WorkingDir(path) => {
                write!(f, "{}", path.display())
            }
            ConfigSource::Embedded => write!(f, "the embedded default (127.0.0.1:7101..)"),
        }
    }
}

/// The configuration a command uses: `explicit` if given, else `config.toml` in `cwd` if
/// it exists, else the embedded default. A file that exists but is invalid is an error
/// naming the field, never silently replaced by the default.
pub fn select_config(
    explicit: Option<&Path>,
    cwd: &Path,
) -> Result<(Config, ConfigSource), CtlError> {
    if let Some(path) = explicit {
        return Ok((
            Config::load(path)?,
            ConfigSource::Explicit(path.to_path_buf()),
        ));
    }
    let local = cwd.join("config.toml");
    if local.is_file() {
        return Ok((Config::load(&local)?, ConfigSource::WorkingDir(local)));
    }
    Ok((Config::embedded_default(), ConfigSource::Embedded))
}

/// Writes one line to stdout and flushes (an error, e.g. a closed pipe, stops the
/// command).
pub fn out(line: &str) -> Result<(), CtlError> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .map_err(|e| CtlError::io("writing to stdout", e))
}

/// Writes `text` as it is to stdout and flushes.
pub fn out_raw(text: &[u8]) -> Result<(), CtlError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text)
        .and_then(|()| stdout.flush())
        .map_err(|e| CtlError::io("writing to stdout", e))
}

/// `s` seconds as a duration; an error naming `flag` unless positive and finite.
pub fn seconds(s: f64, flag: &str) -> Result<Duration, CtlError> {
    if !(s.is_finite() && s > 0.0) {
        return Err(CtlError::Usage(format!(
            "{flag} {s}: must be a positive number of seconds"
        )));
    }
    Ok(Duration::from_secs_f64(s))
}

/// Hands every entry to `sink`, forever, reporting unreachability (once) through `note`.
pub async fn follow(
    follower: &mut LogFollower,
    mut note: impl FnMut(String),
    mut sink: impl FnMut(&LogEntry) -> Result<(), CtlError>,
) -> Result<(), CtlError> {
    let mut down = false;
    loop {
        match follower.poll(FOLLOW_WAIT_MS).await {
            Ok(entries) => {
                if down {
                    note(format!(
                        "reading the log from replica {} again",
                        follower.uid()
                    ));
                    down = false;
                }
                for entry in &entries {
                    sink(entry)?;
                }
            }
            Err(e) => {
                if !down {
                    note(format!("{e}; retrying"));
                    down = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_selection_order() {
        let dir = tempfile::tempdir().unwrap();
        let (config, source) = select_config(None, dir.path()).unwrap();
        assert_eq!(source, ConfigSource::Embedded);
        assert_eq!(config, Config::embedded_default());

        let local = dir.path().join("config.toml");
        std::fs::write(&local, Config::generate(2, 0.0, 500, 9000).to_toml_string()).unwrap();
        let (config, source) = select_config(None, dir.path()).unwrap();
        assert_eq!(source, ConfigSource::WorkingDir(local.clone()));
        assert_eq!(config.replicas(), 5);

        let other = dir.path().join("other.toml");
        std::fs::write(&other, Config::generate(0, 0.0, 500, 9100).to_toml_string()).unwrap();
        let (config, source) = select_config(Some(&other), dir.path()).unwrap();
        assert_eq!(source, ConfigSource::Explicit(other));
        assert_eq!(config.replicas(), 1);

        // An invalid local file is an error naming the field, not the default.
        std::fs::write(&local, "f = 1\ntimeout_ms = \"x\"\n").unwrap();
        let err = select_config(None, dir.path()).unwrap_err().to_string();
        assert!(err.contains("timeout_ms"), "{err}");
        let err = select_config(Some(&dir.path().join("missing.toml")), dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.toml"), "{err}");
    }
}

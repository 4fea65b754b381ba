//! `paxosctl`'s commands, one file per subcommand (mini-redis's `cmd/`): each file holds
//! the command's clap arguments, what it does with the client library
//! ([`crate::client`]) and how it renders the result (tables, JSON lines, plain lines,
//! the SVG plot). `src/bin/paxosctl.rs` only parses and dispatches.
//!
//! What every command shares lives here: the global options ([`Globals`]: config or
//! endpoints, output format, timeouts), which configuration is used
//! ([`select_config`]), writing to stdout ([`out`]), escaping what a terminal would
//! interpret ([`escape`]) and the error type with its exit code ([`CtlError`]).
//!
//! Conventions (etcdctl's, where it has one):
//! 1. `-w table|json|simple` picks the output; `--json` is the same as `-w json`. A
//!    command without an output a format applies to refuses it (exit 2), never ignores it.
//! 2. Human-readable output never carries a raw control character: message bodies,
//!    addresses and reasons go through [`escape`]. JSON output is exact (serde_json).
//! 3. A closed stdout (`paxosctl ... | head`) ends the command quietly with exit 0.
//! 4. Exit codes: 0 success; 1 the command failed; 2 bad usage or config; 3 the cluster
//!    is unavailable (no quorum, no replica reachable).
//!
//! Layering: `ctl` uses `client`, `config`, `core` and `storage` types; nothing below
//! uses `ctl`.

pub mod bench;
pub mod certs;
pub mod chat;
pub mod completions;
pub mod dump_log;
pub mod gen_config;
pub mod health;
pub mod local;
pub mod run;
pub mod snapshot;
pub mod status;
pub mod submit;
pub mod version;
pub mod watch;

use crate::client::log::{LogFollower, FOLLOW_WAIT_MS};
use crate::client::{ClientError, ClientOptions};
use crate::config::Config;
use crate::core::{LogEntry, Slot, Uid};
use std::borrow::Cow;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variable naming the config file (like `--config`).
pub const ENV_CONFIG: &str = "PAXOSCTL_CONFIG";
/// Environment variable listing the replicas' addresses (like `--endpoints`).
pub const ENV_ENDPOINTS: &str = "PAXOSCTL_ENDPOINTS";

/// Options every command accepts (before or after the subcommand).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Globals {
    /// Cluster configuration file [env: PAXOSCTL_CONFIG] [default: ./config.toml if
    /// present, else built-in]
    #[arg(long, global = true, value_name = "FILE", conflicts_with = "endpoints")]
    pub config: Option<PathBuf>,
    /// The replicas' client addresses in uid order, instead of a config file [env:
    /// PAXOSCTL_ENDPOINTS]
    #[arg(long, global = true, value_name = "ADDR,..", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// Output format
    #[arg(
        short = 'w',
        long = "write-out",
        global = true,
        value_enum,
        value_name = "FORMAT"
    )]
    pub write_out: Option<Format>,
    /// Machine-readable output: one JSON object a line (same as -w json)
    #[arg(long, global = true)]
    pub json: bool,
    /// Longest a connection to one replica may take to open (e.g. 500ms, 2s)
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub dial_timeout: Option<Duration>,
    /// Longest a whole request may take, retries included (e.g. 5s) [default: 10s]
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub command_timeout: Option<Duration>,
}

/// An output format (`-w`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// An aligned table with a header
    Table,
    /// One JSON object a line
    Json,
    /// Plain lines, one value or record a line
    Simple,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Table => "table",
            Format::Json => "json",
            Format::Simple => "simple",
        })
    }
}

impl Globals {
    /// The configuration this command uses (see [`select_config`]). Says on stderr when
    /// it is the embedded default, so a missing file is never silent.
    pub fn load_config(&self) -> Result<Config, CtlError> {
        let (config, source) = self.load_config_and_source()?;
        if source == ConfigSource::Embedded {
            eprintln!(
                "paxosctl: no --config, --endpoints, ${ENV_CONFIG}, ${ENV_ENDPOINTS} or \
                 ./config.toml: using {source}"
            );
        }
        Ok(config)
    }

    /// [`Globals::load_config`] and where the config came from, silently.
    pub fn load_config_and_source(&self) -> Result<(Config, ConfigSource), CtlError> {
        let cwd = std::env::current_dir()
            .map_err(|e| CtlError::io("reading the working directory", e))?;
        let env = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        let selection = Selection {
            config: self.config.clone(),
            endpoints: self.endpoints.clone(),
            env_config: env(ENV_CONFIG).map(PathBuf::from),
            env_endpoints: env(ENV_ENDPOINTS)
                .map(|v| v.to_string_lossy().split(',').map(str::to_string).collect()),
        };
        let (config, source) = select_config(&selection, &cwd)?;
        tracing::debug!(%source, "config");
        Ok((config, source))
    }

    /// The format to print in: `-w`, or `--json`, or `default`; a usage error if the
    /// command (`name`) does not support it.
    pub fn format(
        &self,
        name: &str,
        supported: &[Format],
        default: Format,
    ) -> Result<Format, CtlError> {
        let format = match (self.write_out, self.json) {
            (Some(w), true) if w != Format::Json => {
                return Err(CtlError::Usage(format!("--json contradicts -w {w}")));
            }
            (_, true) => Format::Json,
            (Some(w), false) => w,
            (None, false) => default,
        };
        if !supported.contains(&format) {
            let list: Vec<String> = supported.iter().map(Format::to_string).collect();
            return Err(CtlError::Usage(format!(
                "`paxosctl {name}` has no {format} output (it supports: {})",
                list.join(", ")
            )));
        }
        Ok(format)
    }

    /// Client timeouts for `config`, with `--dial-timeout` and `--command-timeout`.
    pub fn client_options(&self, config: &Config) -> ClientOptions {
        let mut options = ClientOptions::from_config(config);
        if let Some(dial) = self.dial_timeout {
            options.connect_timeout = dial;
        }
        if let Some(deadline) = self.command_timeout {
            options.deadline = deadline;
        }
        options
    }
}

/// `500ms`, `2s`, `1.5s`, `1m`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 500ms, 2s, 1m)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (use ms, s or m)")),
    };
    if !(seconds.is_finite() && seconds > 0.0 && seconds < 86_400.0) {
        return Err(format!("{text:?}: must be positive and under a day"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// True for a character [`escape`] rewrites: control characters (C0, DEL, C1) and the
/// bidirectional-override characters that reorder what a terminal shows.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every control and bidi-override character written as an escape (`\n`,
/// `\t`, `\r`, `\u{1b}`), so that printing it cannot move the cursor, change colours
/// or break a line apart. Other text, Unicode included, is unchanged.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if is_unsafe(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
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
    /// The cluster is unavailable: no quorum, no replica reachable; exit code 3.
    #[error("{0}")]
    Unavailable(String),
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

    /// The exit code (module doc, convention 4): 2 for a usage or config error, 3 when
    /// the cluster is unavailable, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Usage(_) => 2,
            CtlError::Paxos(crate::Error::Config { .. }) => 2,
            CtlError::Client(ClientError::Paxos(crate::Error::Config { .. })) => 2,
            CtlError::Unavailable(_) => 3,
            CtlError::Client(
                ClientError::NoQuorum { .. }
                | ClientError::Refused { .. }
                | ClientError::Unreachable { .. },
            ) => 3,
            _ => 1,
        }
    }
}

/// Where the configuration came from (see [`select_config`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// `--config FILE`.
    Explicit(PathBuf),
    /// `--endpoints` or `$PAXOSCTL_ENDPOINTS`: addresses in uid order, defaults otherwise.
    Endpoints(Vec<String>),
    /// `$PAXOSCTL_CONFIG`.
    Env(PathBuf),
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
            ConfigSource::Env(path) => write!(f, "{} (from ${ENV_CONFIG})", path.display()),
            ConfigSource::Endpoints(addrs) => write!(f, "endpoints {}", addrs.join(",")),
            ConfigSource::Embedded => write!(
                f,
                "the embedded default (3 replicas on 127.0.0.1:7101-7103)"
            ),
        }
    }
}

/// What [`select_config`] chooses from: the flags and the environment.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub config: Option<PathBuf>,
    pub endpoints: Vec<String>,
    pub env_config: Option<PathBuf>,
    pub env_endpoints: Option<Vec<String>>,
}

/// The configuration a command uses, the first given of: `--config`, `--endpoints`,
/// `$PAXOSCTL_CONFIG`, `$PAXOSCTL_ENDPOINTS`, `config.toml` in `cwd`, the embedded
/// default. A file that exists but is invalid is an error naming the field, never
/// silently replaced by the default.
pub fn select_config(
    selection: &Selection,
    cwd: &Path,
) -> Result<(Config, ConfigSource), CtlError> {
    if let Some(path) = &selection.config {
        return Ok((Config::load(path)?, ConfigSource::Explicit(path.clone())));
    }
    if !selection.endpoints.is_empty() {
        return endpoints_config(&selection.endpoints, "--endpoints");
    }
    if let Some(path) = &selection.env_config {
        return Ok((Config::load(path)?, ConfigSource::Env(path.clone())));
    }
    if let Some(addrs) = &selection.env_endpoints {
        return endpoints_config(addrs, ENV_ENDPOINTS);
    }
    let local = cwd.join("config.toml");
    if local.is_file() {
        return Ok((Config::load(&local)?, ConfigSource::WorkingDir(local)));
    }
    Ok((Config::embedded_default(), ConfigSource::Embedded))
}

/// A client's config from the replicas' addresses alone (uid order, `2f + 1` of them),
/// default timers otherwise. The cluster id is the same as the cluster's own config's.
fn endpoints_config(addrs: &[String], origin: &str) -> Result<(Config, ConfigSource), CtlError> {
    let addrs: Vec<String> = addrs
        .iter()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    if addrs.len().is_multiple_of(2) {
        return Err(CtlError::Usage(format!(
            "{origin}: {} addresses given; a cluster has an odd number (2f+1), in uid order",
            addrs.len()
        )));
    }
    let mut config = Config::generate(addrs.len() / 2, 0.0, crate::config::TIMEOUT_MS_DEFAULT, 1);
    for (replica, addr) in config.replica.iter_mut().zip(&addrs) {
        replica.addr = addr.clone();
    }
    config
        .validate()
        .map_err(|e| CtlError::Usage(format!("{origin}: {e}")))?;
    Ok((config, ConfigSource::Endpoints(addrs)))
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

/// Hands every entry to `sink`, forever, reporting unreachability (once) through `note`,
/// and calling `caught_up` once with [`LogFollower::caught_up_at`] after the entries of
/// the poll that first read up to a replica's decided prefix.
pub async fn follow(
    follower: &mut LogFollower,
    mut note: impl FnMut(String),
    mut caught_up: impl FnMut(Slot, Uid),
    mut sink: impl FnMut(&LogEntry) -> Result<(), CtlError>,
) -> Result<(), CtlError> {
    let mut down = false;
    let mut announced = false;
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
                if let (false, Some((slot, uid))) = (announced, follower.caught_up_at()) {
                    announced = true;
                    caught_up(slot, uid);
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

    fn explicit(path: &Path) -> Selection {
        Selection {
            config: Some(path.to_path_buf()),
            ..Selection::default()
        }
    }

    #[test]
    fn config_selection_order() {
        let dir = tempfile::tempdir().unwrap();
        let none = Selection::default();
        let (config, source) = select_config(&none, dir.path()).unwrap();
        assert_eq!(source, ConfigSource::Embedded);
        assert_eq!(config, Config::embedded_default());

        let local = dir.path().join("config.toml");
        std::fs::write(&local, Config::generate(2, 0.0, 500, 9000).to_toml_string()).unwrap();
        let (config, source) = select_config(&none, dir.path()).unwrap();
        assert_eq!(source, ConfigSource::WorkingDir(local.clone()));
        assert_eq!(config.replicas(), 5);

        let other = dir.path().join("other.toml");
        std::fs::write(&other, Config::generate(0, 0.0, 500, 9100).to_toml_string()).unwrap();
        let (config, source) = select_config(&explicit(&other), dir.path()).unwrap();
        assert_eq!(source, ConfigSource::Explicit(other.clone()));
        assert_eq!(config.replicas(), 1);

        // The environment comes after the flags, before ./config.toml.
        let env = Selection {
            env_config: Some(other.clone()),
            ..Selection::default()
        };
        let (config, source) = select_config(&env, dir.path()).unwrap();
        assert_eq!(source, ConfigSource::Env(other.clone()));
        assert_eq!(config.replicas(), 1);
        let addrs: Vec<String> = ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"]
            .map(String::from)
            .to_vec();
        let flags_first = Selection {
            endpoints: addrs.clone(),
            env_config: Some(other.clone()),
            ..Selection::default()
        };
        let (config, source) = select_config(&flags_first, dir.path()).unwrap();
        assert_eq!(source, ConfigSource::Endpoints(addrs.clone()));
        assert_eq!(config.replica[2].addr, "127.0.0.1:9003");
        // The same addresses make the same cluster id as the cluster's own config.
        let mut real = Config::generate(1, 0.0, 500, 9001);
        real.data_dir = "/srv".into();
        assert_eq!(config.cluster_id(), real.cluster_id());
        let even = Selection {
            env_endpoints: Some(addrs[..2].to_vec()),
            ..Selection::default()
        };
        let err = select_config(&even, dir.path()).unwrap_err();
        assert!(err.to_string().contains("PAXOSCTL_ENDPOINTS"), "{err}");
        assert_eq!(err.exit_code(), 2);

        // An invalid local file is an error naming the field, not the default.
        std::fs::write(&local, "f = 1\ntimeout_ms = \"x\"\n").unwrap();
        let err = select_config(&none, dir.path()).unwrap_err().to_string();
        assert!(err.contains("timeout_ms"), "{err}");
        let err = select_config(&explicit(&dir.path().join("missing.toml")), dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.toml"), "{err}");
    }

    #[test]
    fn escape_keeps_text_and_defuses_control_characters() {
        assert_eq!(escape("plain text, ünïcödé ✓"), "plain text, ünïcödé ✓");
        assert_eq!(escape("\u{1b}[31mred\nx"), "\\u{1b}[31mred\\nx");
        assert_eq!(escape("a\tb\r\u{7f}\u{9b}"), "a\\tb\\r\\u{7f}\\u{9b}");
        assert_eq!(escape("\u{202e}evil"), "\\u{202e}evil");
        assert!(!escape("\u{0}\u{7}\u{8}").chars().any(char::is_control));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        for bad in ["", "0s", "-1s", "2h", "fast", "inf"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_are_chosen_and_refused_clearly() {
        let both = [Format::Simple, Format::Json];
        let plain = Globals::default();
        assert_eq!(
            plain.format("x", &both, Format::Simple).unwrap(),
            Format::Simple
        );
        let json = Globals {
            json: true,
            ..Globals::default()
        };
        assert_eq!(
            json.format("x", &both, Format::Simple).unwrap(),
            Format::Json
        );
        let err = json
            .format("gen-config", &[Format::Simple], Format::Simple)
            .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("gen-config"), "{err}");
        let contradiction = Globals {
            json: true,
            write_out: Some(Format::Table),
            ..Globals::default()
        };
        assert!(contradiction.format("x", &both, Format::Simple).is_err());
    }
}

//! `config.toml`: the cluster's shape (`f`, one `[[replica]]` address per uid), timers,
//! simulated message loss and where data and logs live.
//!
//! This module owns parsing, defaults, validation and rendering of the configuration.
//! Every error is an [`Error::Config`] whose `field` names the offending field the way a
//! person would find it in the file (`timeout_ms`, `replica[1].addr`), and whose reason
//! quotes the line for syntax and type errors.
//!
//! Invariants of a [`Config`] that passed [`Config::validate`] (which [`Config::load`]
//! always runs):
//! 1. `replica.len() == 2f + 1`; the index of a `[[replica]]` table is its uid.
//! 2. Every `replica[i].addr` parses as a `SocketAddr` with a non-zero port, and no two
//!    are equal.
//! 3. `1 <= heartbeat_ms < timeout_ms`.
//! 4. `0 <= loss < 1` (a loss of 1 would make progress impossible).
//!
//! Files: this one (the `Config` type, defaults, validation, rendering) and
//! `toml_path.rs` (mapping a TOML error's byte span to the field path and line a person
//! looks for).
//!
//! The cluster identity ([`Config::cluster_id`]) is a hash of the ordered replica address
//! list: changing the member list makes a different cluster, whose replicas refuse to talk
//! to the old one (and whose stores refuse the old data).

pub mod tls;

use crate::core::Uid;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod toml_path;

/// Default failure-detection timeout (ms).
pub const TIMEOUT_MS_DEFAULT: u64 = 500;
/// Default leader heartbeat period (ms).
pub const HEARTBEAT_MS_DEFAULT: u64 = 100;
/// Default first port of [`Config::embedded_default`] (uid `i` listens on port + i).
pub const BASE_PORT_DEFAULT: u16 = 7101;
/// Largest `f` accepted (2f+1 = 129 replicas is already far beyond what Paxos is used for).
pub const F_MAX: usize = 64;

/// The whole configuration, as read from `config.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Failures tolerated: the cluster has `2f + 1` replicas and needs `f + 1` to progress.
    pub f: usize,
    /// A follower that hears no leader for this long starts an election; also the
    /// retransmission period of unanswered requests.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// The leader's heartbeat period; must be below `timeout_ms`.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// Probability that each outbound peer message is dropped (testing only); 0: none.
    #[serde(default)]
    pub loss: f64,
    /// Root of the replicas' stores: replica `uid` keeps its data in `<data_dir>/node-<uid>`.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Where rolling log files are written; `None`: `<data_dir>/logs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_dir: Option<PathBuf>,
    /// One entry per replica; the index is the uid.
    pub replica: Vec<ReplicaAddr>,
    /// The `[tls]` section ([`tls::TlsConfig`]); `None`: plaintext, loopback only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<tls::TlsConfig>,
}

/// One `[[replica]]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaAddr {
    /// `ip:port` the replica listens on, for peers and clients alike.
    pub addr: String,
    /// `ip:port` where the replica serves Prometheus metrics (`GET /metrics`); `None`: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_addr: Option<String>,
}

fn default_timeout_ms() -> u64 {
    TIMEOUT_MS_DEFAULT
}

fn default_heartbeat_ms() -> u64 {
    HEARTBEAT_MS_DEFAULT
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

impl Config {
    /// Reads, parses and validates `path`. Errors name the field (or the file, when it
    /// cannot be read or is not TOML) and quote the offending line.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(
                path.display().to_string(),
                format!("cannot read config file: {e}"),
            )
        })?;
        let mut config = Config::parse(&text, &path.display().to_string())?;
        if let Some(tls) = config.tls.as_mut() {
            tls.base_dir = Some(path.parent().unwrap_or(Path::new("")).to_path_buf());
        }
        Ok(config)
    }

    /// Parses and validates TOML `text`; `origin` (a file name) is quoted in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config> {
        let config: Config =
            toml::from_str(text).map_err(|e| toml_path::toml_error_to_config(text, origin, &e))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the invariants listed in the module doc; the error names the first bad field.
    pub fn validate(&self) -> Result<()> {
        if self.f > F_MAX {
            return Err(Error::config(
                "f",
                format!("{} is too large (at most {F_MAX})", self.f),
            ));
        }
        let expected = 2 * self.f + 1;
        if self.replica.len() != expected {
            return Err(Error::config(
                "replica",
                format!(
                    "f = {} needs exactly 2f+1 = {expected} [[replica]] entries, found {}",
                    self.f,
                    self.replica.len()
                ),
            ));
        }
        let mut seen: Vec<SocketAddr> = Vec::with_capacity(self.replica.len());
        for (uid, replica) in self.replica.iter().enumerate() {
            let field = format!("replica[{uid}].addr");
            let addr: SocketAddr = replica.addr.trim().parse().map_err(|e| {
                Error::config(
                    &field,
                    format!(
                        "{:?} is not an ip:port socket address ({e}); \
                         host names are not resolved",
                        replica.addr
                    ),
                )
            })?;
            if addr.port() == 0 {
                return Err(Error::config(
                    &field,
                    format!("{:?}: port 0 is not a fixed address", replica.addr),
                ));
            }
            if let Some(first) = seen.iter().position(|a| *a == addr) {
                return Err(Error::config(
                    &field,
                    format!("{addr} is already the address of replica[{first}]"),
                ));
            }
            seen.push(addr);
            self.metrics_addr(uid as Uid)?;
        }
        if self.heartbeat_ms < 1 {
            return Err(Error::config("heartbeat_ms", "must be at least 1"));
        }
        if self.heartbeat_ms >= self.timeout_ms {
            return Err(Error::config(
                "heartbeat_ms",
                format!(
                    "{} must be less than timeout_ms ({})",
                    self.heartbeat_ms, self.timeout_ms
                ),
            ));
        }
        if !(self.loss >= 0.0 && self.loss < 1.0) {
            return Err(Error::config(
                "loss",
                format!("{} must be in [0, 1)", self.loss),
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(Error::config("data_dir", "must not be empty"));
        }
        if matches!(&self.log_dir, Some(dir) if dir.as_os_str().is_empty()) {
            return Err(Error::config(
                "log_dir",
                "must not be empty (omit it for <data_dir>/logs)",
            ));
        }
        if let Some(tls) = &self.tls {
            tls.validate()?;
        }
        Ok(())
    }

    /// The configuration used when no file is given: 3 replicas (f = 1) on
    /// 127.0.0.1:7101..=7103, data under `data/`. The root `config.toml` matches it.
    pub fn embedded_default() -> Config {
        Config::generate(1, 0.0, TIMEOUT_MS_DEFAULT, BASE_PORT_DEFAULT)
    }

    /// A local cluster of `2f + 1` replicas on 127.0.0.1, ports `base_port..`, with
    /// `heartbeat_ms` = min(100, timeout_ms / 5) (at least 1). Not validated: a port past
    /// 65535 or a bad `loss` is reported by [`Config::validate`].
    pub fn generate(f: usize, loss: f64, timeout_ms: u64, base_port: u16) -> Config {
        let replica = (0..2 * f + 1)
            .map(|i| ReplicaAddr {
                metrics_addr: None,
                addr: format!("127.0.0.1:{}", u64::from(base_port) + i as u64),
            })
            .collect();
        Config {
            f,
            timeout_ms,
            heartbeat_ms: (timeout_ms / 5).clamp(1, HEARTBEAT_MS_DEFAULT),
            loss,
            data_dir: default_data_dir(),
            log_dir: None,
            replica,
            tls: None,
        }
    }

    /// Renders the configuration as commented TOML (what `paxosctl gen-config` writes).
    /// [`Config::parse`] of the result gives back an equal `Config`.
    pub fn to_toml_string(&self) -> String {
        let n = self.replica.len();
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "# paxos cluster configuration: {n} replicas, tolerates f = {} failures.\n\
             # Every replica and client of one cluster must use the same file: the\n\
             # cluster id is a hash of the [[replica]] address list, so changing the\n\
             # member list (or its order) makes a different cluster.\n\
             # `paxosctl gen-config -f F` writes a file like this one for other shapes.\n\
             \n\
             # Failures tolerated; there must be exactly 2f+1 [[replica]] tables below.\n\
             f = {}\n\
             \n\
             # A follower that hears no leader for timeout_ms starts an election;\n\
             # unanswered requests are resent after timeout_ms.\n\
             timeout_ms = {}\n\
             \n\
             # The leader sends a heartbeat every heartbeat_ms (must be < timeout_ms).\n\
             heartbeat_ms = {}\n\
             \n\
             # Probability in [0, 1) of dropping each outbound peer message (testing).\n\
             loss = {}\n\
             \n\
             # Replica <uid> stores its data in <data_dir>/node-<uid>. A relative path is\n\
             # relative to the working directory of paxosd.\n\
             data_dir = {}",
            self.f,
            self.f,
            self.timeout_ms,
            self.heartbeat_ms,
            toml::Value::Float(self.loss),
            toml_string(&self.data_dir),
        );
        out.push('\n');
        match &self.log_dir {
            Some(dir) => {
                let _ = writeln!(
                    out,
                    "# Rolling log files are written here.\nlog_dir = {}",
                    toml_string(dir)
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "# Rolling log files go to <data_dir>/logs unless log_dir is set:\n\
                     # log_dir = \"/var/log/paxos\""
                );
            }
        }
        let _ = writeln!(
            out,
            "\n# One table per replica, in uid order (the first is uid 0, the initial leader).\n\
             # addr is an ip:port the replica listens on for peers and clients."
        );
        for (uid, replica) in self.replica.iter().enumerate() {
            let _ = writeln!(
                out,
                "\n[[replica]] # uid {uid}\naddr = {}",
                toml::Value::String(replica.addr.clone())
            );
            if let Some(metrics_addr) = &replica.metrics_addr {
                let _ = writeln!(
                    out,
                    "metrics_addr = {}",
                    toml::Value::String(metrics_addr.clone())
                );
            }
        }
        if let Some(tls) = &self.tls {
            out.push_str(&tls.to_toml_string());
        }
        out
    }

    /// A stable 64-bit id of the cluster: FNV-1a over the ordered replica addresses
    /// (normalized when they parse as socket addresses). The same on every run and
    /// platform; a different member list (or order) is a different cluster.
    pub fn cluster_id(&self) -> u64 {
        const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
        let mut hash = FNV_OFFSET;
        let mut eat = |bytes: &[u8]| {
            for byte in bytes {
                hash ^= u64::from(*byte);
                hash = hash.wrapping_mul(FNV_PRIME);
            }
        };
        eat(b"paxos-cluster-v1");
        eat(&(self.replica.len() as u64).to_be_bytes());
        for replica in &self.replica {
            let addr = match replica.addr.trim().parse::<SocketAddr>() {
                Ok(addr) => addr.to_string(),
                Err(_) => replica.addr.clone(),
            };
            eat(addr.as_bytes());
            eat(&[0]);
        }
        hash
    }

    /// Number of replicas (`2f + 1` once validated).
    pub fn replicas(&self) -> usize {
        self.replica.len()
    }

    /// The store directory of replica `uid`: `<data_dir>/node-<uid>`.
    pub fn node_data_dir(&self, uid: Uid) -> PathBuf {
        self.data_dir.join(format!("node-{uid}"))
    }

    /// Where rolling log files go: `log_dir`, or `<data_dir>/logs` when unset.
    pub fn effective_log_dir(&self) -> PathBuf {
        match &self.log_dir {
            Some(dir) => dir.clone(),
            None => self.data_dir.join("logs"),
        }
    }

    /// Checks that `uid` names a replica of this config: the one check every caller
    /// (`paxosd --uid`, `Node::open`, `paxosctl dump-log --uid`) uses, so all say the same:
    /// `uid 5 is out of range: the config has 3 replicas (uids 0..=2)`.
    pub fn check_uid(&self, uid: Uid) -> Result<()> {
        let n = self.replica.len();
        if (uid as usize) < n {
            return Ok(());
        }
        let range = match n {
            0 => "none".to_string(),
            1 => "uid 0 only".to_string(),
            n => format!("uids 0..={}", n - 1),
        };
        Err(Error::config(
            "uid",
            format!("uid {uid} is out of range: the config has {n} replicas ({range})"),
        ))
    }

    /// Where replica `uid` serves metrics (`None`: off); an error names
    /// `replica[uid].metrics_addr` when it does not parse or has port 0.
    pub fn metrics_addr(&self, uid: Uid) -> Result<Option<SocketAddr>> {
        let Some(text) = self
            .replica
            .get(uid as usize)
            .and_then(|r| r.metrics_addr.as_ref())
        else {
            return Ok(None);
        };
        let field = format!("replica[{uid}].metrics_addr");
        let addr: SocketAddr = text.trim().parse().map_err(|e| {
            Error::config(
                &field,
                format!("{text:?} is not an ip:port socket address ({e})"),
            )
        })?;
        if addr.port() == 0 {
            return Err(Error::config(
                &field,
                format!("{text:?}: port 0 is not a fixed address"),
            ));
        }
        Ok(Some(addr))
    }

    /// The socket address of replica `uid`; an error names `uid` when it is out of range
    /// ([`Config::check_uid`]) and `replica[uid].addr` when it does not parse.
    pub fn replica_addr(&self, uid: Uid) -> Result<SocketAddr> {
        self.check_uid(uid)?;
        let replica = &self.replica[uid as usize];
        replica.addr.trim().parse().map_err(|e| {
            Error::config(
                format!("replica[{uid}].addr"),
                format!("{:?} is not an ip:port socket address ({e})", replica.addr),
            )
        })
    }
}

/// A path as a quoted TOML string (lossy for non-UTF-8 paths).
fn toml_string(path: &Path) -> toml::Value {
    toml::Value::String(path.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of<T: std::fmt::Debug>(result: Result<T>) -> String {
        match result {
            Err(Error::Config { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, "test.toml")
    }

    const MINIMAL: &str = "f = 1\n\
        [[replica]]\naddr = \"127.0.0.1:7101\"\n\
        [[replica]]\naddr = \"127.0.0.1:7102\"\n\
        [[replica]]\naddr = \"127.0.0.1:7103\"\n";

    #[test]
    fn defaults() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.timeout_ms, 500);
        assert_eq!(config.heartbeat_ms, 100);
        assert_eq!(config.loss, 0.0);
        assert_eq!(config.data_dir, PathBuf::from("data"));
        assert_eq!(config.log_dir, None);
        assert_eq!(config.effective_log_dir(), PathBuf::from("data/logs"));
        assert_eq!(config.node_data_dir(2), PathBuf::from("data/node-2"));
        assert_eq!(config.replicas(), 3);
        assert_eq!(config, Config::embedded_default());
        assert_eq!(
            config.replica_addr(1).unwrap(),
            "127.0.0.1:7102".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(field_of(config.replica_addr(3)), "uid");
    }

    #[test]
    fn embedded_default_is_valid() {
        let config = Config::embedded_default();
        config.validate().unwrap();
        assert_eq!(config.f, 1);
        assert_eq!(config.replica[0].addr, "127.0.0.1:7101");
        assert_eq!(config.replica[2].addr, "127.0.0.1:7103");
    }

    #[test]
    fn root_config_toml_is_what_gen_config_writes_for_the_default_cluster() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
        let config = Config::load(&path).unwrap();
        assert_eq!(config, Config::embedded_default());
        // Byte for byte: values and comments (`paxosctl gen-config -f 1` prints this).
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            Config::embedded_default().to_toml_string(),
            "regenerate it: cargo run --bin paxosctl -- gen-config -f 1 -o config.toml --force"
        );
    }

    #[test]
    fn check_uid_says_the_range_once_for_everyone() {
        let config = Config::embedded_default();
        for uid in 0..3 {
            config.check_uid(uid).unwrap();
        }
        let error = config.check_uid(5).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid config: uid: uid 5 is out of range: the config has 3 replicas (uids 0..=2)"
        );
        assert_eq!(field_of(config.replica_addr(3)), "uid");
        let single = Config::generate(0, 0.0, 500, 7000);
        assert!(single
            .check_uid(1)
            .unwrap_err()
            .to_string()
            .ends_with("(uid 0 only)"));
    }

    #[test]
    fn to_toml_string_roundtrips() {
        let mut configs = vec![
            Config::embedded_default(),
            Config::generate(2, 0.25, 1000, 9000),
            Config::generate(0, 0.0, 2, 8000),
        ];
        let mut odd = Config::embedded_default();
        odd.data_dir = PathBuf::from("/tmp/a \"quoted\" \\ dir");
        odd.log_dir = Some(PathBuf::from("/var/log/paxos"));
        odd.replica[1].metrics_addr = Some("127.0.0.1:9101".into());
        configs.push(odd);
        let mut with_tls = Config::embedded_default();
        with_tls.tls = Some(tls::TlsConfig::default());
        configs.push(with_tls.clone());
        with_tls.tls = Some(tls::TlsConfig {
            enabled: false,
            key: "credential:tls-key".into(),
            ..tls::TlsConfig::default()
        });
        configs.push(with_tls);
        for config in configs {
            let text = config.to_toml_string();
            assert!(text.contains("# "), "comments for a human:\n{text}");
            let back = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(back, config, "{text}");
        }
    }

    #[test]
    fn generate_shapes_the_cluster() {
        let config = Config::generate(2, 0.1, 300, 9100);
        assert_eq!(config.replicas(), 5);
        assert_eq!(config.replica[4].addr, "127.0.0.1:9104");
        assert_eq!(config.heartbeat_ms, 60);
        config.validate().unwrap();
        let config = Config::generate(1, 0.0, 5000, 9100);
        assert_eq!(config.heartbeat_ms, 100);
        let config = Config::generate(1, 0.0, 500, 65535);
        assert_eq!(field_of(config.validate()), "replica[1].addr");
    }

    #[test]
    fn cluster_id_is_stable_and_depends_on_members() {
        let a = Config::embedded_default();
        // Pinned: a change here changes every existing cluster's identity.
        assert_eq!(a.cluster_id(), a.clone().cluster_id());
        assert_eq!(a.cluster_id(), 0xb064_e79d_9b8f_4427_u64);
        let mut b = a.clone();
        b.timeout_ms = 900;
        b.loss = 0.5;
        assert_eq!(a.cluster_id(), b.cluster_id());
        let mut c = a.clone();
        c.replica.swap(0, 1);
        assert_ne!(a.cluster_id(), c.cluster_id());
        let d = Config::generate(1, 0.0, 500, 7102);
        assert_ne!(a.cluster_id(), d.cluster_id());
    }

    #[test]
    fn each_validation_error_names_its_field() {
        let base = Config::embedded_default();
        type Change = Box<dyn Fn(&mut Config)>;
        let cases: Vec<(&str, Change)> = vec![
            ("replica", Box::new(|c| c.f = 2)),
            ("replica", Box::new(|c| c.replica.truncate(2))),
            ("f", Box::new(|c| c.f = F_MAX + 1)),
            (
                "replica[1].addr",
                Box::new(|c| c.replica[1].addr = "nope".into()),
            ),
            (
                "replica[2].addr",
                Box::new(|c| c.replica[2].addr = "localhost:7000".into()),
            ),
            (
                "replica[2].addr",
                Box::new(|c| c.replica[2].addr = "127.0.0.1:7101".into()),
            ),
            (
                "replica[0].addr",
                Box::new(|c| c.replica[0].addr = "127.0.0.1:0".into()),
            ),
            (
                "replica[1].metrics_addr",
                Box::new(|c| c.replica[1].metrics_addr = Some("nope".into())),
            ),
            (
                "replica[0].metrics_addr",
                Box::new(|c| c.replica[0].metrics_addr = Some("127.0.0.1:0".into())),
            ),
            ("heartbeat_ms", Box::new(|c| c.heartbeat_ms = 0)),
            ("heartbeat_ms", Box::new(|c| c.heartbeat_ms = 500)),
            ("heartbeat_ms", Box::new(|c| c.timeout_ms = 50)),
            ("loss", Box::new(|c| c.loss = 1.0)),
            ("loss", Box::new(|c| c.loss = -0.1)),
            ("loss", Box::new(|c| c.loss = f64::NAN)),
            ("data_dir", Box::new(|c| c.data_dir = PathBuf::new())),
            ("log_dir", Box::new(|c| c.log_dir = Some(PathBuf::new()))),
            (
                "tls.ca",
                Box::new(|c| {
                    c.tls = Some(tls::TlsConfig {
                        ca: " ".into(),
                        ..Default::default()
                    })
                }),
            ),
            (
                "tls.key",
                Box::new(|c| {
                    c.tls = Some(tls::TlsConfig {
                        key: "credential:../x".into(),
                        ..Default::default()
                    })
                }),
            ),
        ];
        for (field, change) in cases {
            let mut config = base.clone();
            change(&mut config);
            assert_eq!(field_of(config.validate()), field, "{config:?}");
        }
        let single = Config::generate(0, 0.0, 500, 7000);
        single.validate().unwrap();
    }

    #[test]
    fn parse_errors_name_the_field_and_line() {
        let cases = [
            ("timeout_ms = \"x\"\n", "timeout_ms"),
            ("timeout_ms = -5\n", "timeout_ms"),
            ("loss = \"high\"\n", "loss"),
            ("bogus = 1\n", "bogus"),
        ];
        for (line, field) in cases {
            let text = format!("{line}{MINIMAL}");
            let error = parse(&text).unwrap_err();
            let Error::Config { field: got, reason } = &error else {
                panic!("{error:?}");
            };
            assert_eq!(got, field, "{error}");
            assert!(reason.contains("line 1"), "{error}");
            assert!(reason.contains(line.trim()), "{error}");
        }
        let replica_cases = [
            ("addr = 5", "replica[1].addr"),
            ("addr = \"127.0.0.1:1\"\nport = 3", "replica[1].port"),
            ("adr = \"127.0.0.1:1\"", "replica[1].adr"),
        ];
        for (body, field) in replica_cases {
            let text = format!(
                "f = 1\n[[replica]]\naddr = \"127.0.0.1:7101\"\n\
                 [[replica]]\n{body}\n[[replica]]\naddr = \"127.0.0.1:7103\"\n"
            );
            let error = parse(&text).unwrap_err();
            assert_eq!(field_of::<()>(Err(error)), field, "{text}");
        }
        let text = "f = 1\n[[replica]]\naddr = \"127.0.0.1:7101\"\n\
                    [[replica]]\n[[replica]]\naddr = \"127.0.0.1:7103\"\n";
        assert_eq!(field_of(parse(text)), "replica[1].addr");
        let text = "[[replica]]\naddr = \"127.0.0.1:7101\"\n";
        assert_eq!(field_of(parse(text)), "f");
        let text = MINIMAL.replace("f = 1", "f = -1");
        assert_eq!(field_of(parse(&text)), "f");
        assert_eq!(field_of(parse("f = 0\n")), "replica");
        // A syntax error names the file and the line.
        let error = parse("f = 1\ntimeout_ms = = 3\n").unwrap_err();
        assert!(error.to_string().contains("test.toml"), "{error}");
        assert!(error.to_string().contains("line 2"), "{error}");
    }

    #[test]
    fn load_of_a_missing_file_names_it() {
        let error = Config::load(Path::new("/nonexistent/paxos.toml")).unwrap_err();
        assert_eq!(field_of::<()>(Err(error)), "/nonexistent/paxos.toml");
    }
}

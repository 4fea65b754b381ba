//! `paxosctl run`: a local cluster of `2f + 1` `paxosd` child processes in one run
//! directory, plus the seed's automatic clients.
//!
//! The run directory holds `config.toml` (data under the run directory itself, so replica
//! `uid` stores in `<run>/node-<uid>`), and one `paxosd-<uid>.log` per child with its
//! stdout and stderr.
//!
//! Invariant: nothing is left running. [`LocalCluster::stop`] sends SIGTERM to every
//! child still running, waits up to a grace period, then SIGKILLs and reaps the rest;
//! `Drop` does the same, so an error or a panic in `paxosctl` stops the children too.
//! Children run in their own process group, so a terminal's Ctrl-C reaches `paxosctl`
//! only, which then stops them in order.

use crate::client::{Client, ClientError};
use crate::config::{Config, BASE_PORT_DEFAULT};
use crate::core::{Slot, Uid};
use rand::seq::SliceRandom;
use rand::Rng;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long children get to exit after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// What to start.
#[derive(Clone, Debug)]
pub struct LocalClusterOptions {
    pub f: usize,
    pub loss: f64,
    pub timeout_ms: u64,
    /// Passed to uid 0 as `--skip-slots`.
    pub skip_slots: Vec<Slot>,
    /// First port (uid `i` listens on `base_port + i`); `None`: 7101 if free, else a
    /// free random range.
    pub base_port: Option<u16>,
    /// `None`: a fresh directory under the system's temp dir.
    pub run_dir: Option<PathBuf>,
    /// `None`: `paxosd` next to the current executable, else from `PATH`.
    pub paxosd: Option<PathBuf>,
}

struct ChildProc {
    uid: Uid,
    child: Child,
    log_path: PathBuf,
    /// Set once reaped.
    exit: Option<ExitStatus>,
}

/// A running local cluster. See the module doc for the no-orphans invariant.
pub struct LocalCluster {
    run_dir: PathBuf,
    config_path: PathBuf,
    config: Config,
    children: Vec<ChildProc>,
}

impl LocalCluster {
    /// Writes the config and starts every replica. On any failure the replicas already
    /// started are stopped before the error returns.
    pub fn start(options: &LocalClusterOptions) -> Result<LocalCluster, ClientError> {
        let run_dir = match &options.run_dir {
            Some(dir) => dir.clone(),
            None => fresh_run_dir(),
        };
        std::fs::create_dir_all(&run_dir)
            .map_err(|e| io_error(format!("creating {}", run_dir.display()), e))?;
        let run_dir = run_dir
            .canonicalize()
            .map_err(|e| io_error(format!("resolving {}", run_dir.display()), e))?;
        let replicas = 2 * options.f + 1;
        let base_port = match options.base_port {
            Some(port) => port,
            None => free_base_port(replicas)?,
        };
        let mut config = Config::generate(options.f, options.loss, options.timeout_ms, base_port);
        config.data_dir = run_dir.clone();
        config.validate()?;
        let config_path = run_dir.join("config.toml");
        crate::transport::certs::setup_new_cluster(&mut config, &config_path)?;
        std::fs::write(&config_path, config.to_toml_string())
            .map_err(|e| io_error(format!("writing {}", config_path.display()), e))?;
        let paxosd = match &options.paxosd {
            Some(path) => path.clone(),
            None => find_paxosd(),
        };
        let mut cluster = LocalCluster {
            run_dir,
            config_path,
            config,
            children: Vec::new(),
        };
        for uid in 0..replicas as Uid {
            let log_path = cluster.run_dir.join(format!("paxosd-{uid}.log"));
            let log = File::create(&log_path)
                .map_err(|e| io_error(format!("creating {}", log_path.display()), e))?;
            let log_err = log
                .try_clone()
                .map_err(|e| io_error(format!("opening {}", log_path.display()), e))?;
            let mut command = Command::new(&paxosd);
            command
                .arg("--config")
                .arg(&cluster.config_path)
                .arg("--uid")
                .arg(uid.to_string())
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log_err)
                .process_group(0);
            if uid == 0 && !options.skip_slots.is_empty() {
                let slots: Vec<String> = options.skip_slots.iter().map(|s| s.to_string()).collect();
                command.arg("--skip-slots").arg(slots.join(","));
            }
            let child = command.spawn().map_err(|e| {
                io_error(
                    format!(
                        "starting {} (build it with `cargo build --bin paxosd`, or put it \
                         on PATH)",
                        paxosd.display()
                    ),
                    e,
                )
            })?;
            cluster.children.push(ChildProc {
                uid,
                child,
                log_path,
                exit: None,
            });
        }
        Ok(cluster)
    }

    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// `(uid, log file)` of every child.
    pub fn logs(&self) -> Vec<(Uid, PathBuf)> {
        self.children
            .iter()
            .map(|c| (c.uid, c.log_path.clone()))
            .collect()
    }

    /// Children that exited since the last call, with their status.
    pub fn reap_exited(&mut self) -> Vec<(Uid, ExitStatus)> {
        let mut exited = Vec::new();
        for proc in &mut self.children {
            if proc.exit.is_none() {
                if let Ok(Some(status)) = proc.child.try_wait() {
                    proc.exit = Some(status);
                    exited.push((proc.uid, status));
                }
            }
        }
        exited
    }

    /// Number of children not yet reaped.
    pub fn running(&mut self) -> usize {
        self.reap_exited();
        self.children.iter().filter(|c| c.exit.is_none()).count()
    }

    /// SIGTERM to every running child, up to `grace` for them to exit, then SIGKILL and
    /// reap. Returns the uids that had to be killed. Blocks (at most `grace` + a little).
    pub fn stop(&mut self, grace: Duration) -> Vec<Uid> {
        self.reap_exited();
        for proc in &self.children {
            if proc.exit.is_none() {
                signal(&proc.child, libc::SIGTERM);
            }
        }
        let until = Instant::now() + grace;
        while self.running() > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut killed = Vec::new();
        for proc in &mut self.children {
            if proc.exit.is_none() {
                // Not reaped yet, so the pid is still ours: kill cannot hit another process.
                let _ = proc.child.kill();
                proc.exit = proc.child.wait().ok();
                killed.push(proc.uid);
            }
        }
        killed
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if self.children.iter().any(|c| c.exit.is_none()) {
            self.stop(STOP_GRACE);
        }
    }
}

/// Sends `sig` to a child that has not been reaped (so its pid cannot have been reused).
fn signal(child: &Child, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill(2) has no memory effects; the pid belongs to our unreaped child.
    unsafe {
        libc::kill(pid, sig);
    }
}

fn io_error(context: String, e: std::io::Error) -> ClientError {
    ClientError::Paxos(crate::Error::io(context, e))
}

/// `<tmp>/paxos-run-<pid>-<unix seconds>`.
fn fresh_run_dir() -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    std::env::temp_dir().join(format!("paxos-run-{}-{secs}", std::process::id()))
}

/// `paxosd` next to the running executable (cargo puts both in `target/<profile>/`),
/// else the one on `PATH`.
pub fn find_paxosd() -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            let candidate = dir.join("paxosd");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from("paxosd")
}

/// True if every port of `base..base + count` can be bound on 127.0.0.1 right now.
fn ports_free(base: u16, count: usize) -> bool {
    (0..count).all(|i| {
        u16::try_from(u64::from(base) + i as u64)
            .ok()
            .is_some_and(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
    })
}

/// 7101.. when free (so the embedded default config reaches the cluster), else a free
/// random range.
fn free_base_port(count: usize) -> Result<u16, ClientError> {
    if ports_free(BASE_PORT_DEFAULT, count) {
        return Ok(BASE_PORT_DEFAULT);
    }
    let mut rng = rand::thread_rng();
    for _ in 0..50 {
        let base = rng.gen_range(20_000..60_000);
        if ports_free(base, count) {
            return Ok(base);
        }
    }
    Err(ClientError::Paxos(crate::Error::config(
        "base_port",
        "found no free range of ports on 127.0.0.1; pass --base-port",
    )))
}

const WORDS: &[&str] = &[
    "paxos", "ballot", "quorum", "leader", "slot", "accept", "promise", "chosen", "hello",
    "coffee", "lunch", "deploy", "tuesday", "rain", "sunny", "meeting", "ship", "it",
];

/// A random chat message from automatic client `n`.
pub fn random_message(n: usize, seq: u64) -> String {
    let mut rng = rand::thread_rng();
    let words: Vec<&str> = (0..rng.gen_range(2..6))
        .filter_map(|_| WORDS.choose(&mut rng).copied())
        .collect();
    format!("client {n} #{seq}: {}", words.join(" "))
}

/// What an automatic client did with one message.
#[derive(Clone, Debug)]
pub enum AutoEvent {
    Committed { body: String, slot: Slot },
    Failed { body: String, error: String },
}

/// One automatic client of `paxosctl run` (number `n`): submits random messages one
/// after another and reports each outcome through `report`. Runs until the task is
/// dropped; after a failed submit it waits 500 ms, after each message `pause`.
pub async fn auto_client(
    n: usize,
    config: Config,
    pause: Duration,
    report: impl Fn(AutoEvent) + Send,
) {
    let mut client = Client::new(config);
    let mut count = 0;
    loop {
        count += 1;
        let body = random_message(n, count);
        match client.submit(&body).await {
            Ok((_, slot)) => report(AutoEvent::Committed { body, slot }),
            Err(e) => {
                report(AutoEvent::Failed {
                    body,
                    error: e.to_string(),
                });
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_their_client() {
        let m = random_message(3, 7);
        assert!(m.starts_with("client 3 #7: "), "{m}");
    }

    #[test]
    fn a_missing_paxosd_is_a_clear_error_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let options = LocalClusterOptions {
            f: 1,
            loss: 0.0,
            timeout_ms: 500,
            skip_slots: vec![],
            base_port: Some(47_101),
            run_dir: Some(dir.path().join("run")),
            paxosd: Some(dir.path().join("no-such-paxosd")),
        };
        let err = LocalCluster::start(&options).err().unwrap().to_string();
        assert!(err.contains("no-such-paxosd"), "{err}");
        // The config was written before the children were started.
        let config = Config::load(&dir.path().join("run/config.toml")).unwrap();
        assert_eq!(config.replicas(), 3);
        assert_eq!(config.replica[0].addr, "127.0.0.1:47101");
    }

    #[test]
    fn stop_terminates_children() {
        // `sleep` stands in for paxosd: it exits on SIGTERM.
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("fake-paxosd");
        std::fs::write(&fake, "#!/bin/sh\nexec sleep 30\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let options = LocalClusterOptions {
            f: 1,
            loss: 0.0,
            timeout_ms: 500,
            skip_slots: vec![1, 2],
            base_port: Some(47_201),
            run_dir: Some(dir.path().join("run")),
            paxosd: Some(fake),
        };
        let mut cluster = LocalCluster::start(&options).unwrap();
        assert_eq!(cluster.running(), 3);
        let started = Instant::now();
        let killed = cluster.stop(STOP_GRACE);
        assert!(killed.is_empty(), "SIGTERM should have been enough");
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(cluster.running(), 0);
    }
}

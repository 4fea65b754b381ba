//! Test support, one harness for every test binary: [`core_net`] steps cores by hand
//! (message constructors, a `Ready` printer, a scripted network); this file runs a real
//! cluster of `paxosd` processes on free loopback ports, each with its own temp store,
//! killed by PID when the cluster is dropped (also when a test panics); [`netns`] runs
//! one in network namespaces with injected faults, judged by [`history`]'s checker.
#![allow(dead_code)]

pub mod core_net;
pub mod history;
pub mod netns;

use paxos::config::Config;
use paxos::core::{LogEntry, RequestId, Slot, SubmitReply, Uid};
use paxos::transport::client::ClientLink;
use paxos::transport::wire::{ClientRequest, ClientResponse, StatusReport};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TIMEOUT_MS: u64 = 400;
pub const HEARTBEAT_MS: u64 = 50;

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub config: Config,
    pub config_path: PathBuf,
    children: Vec<Option<Child>>,
}

/// Picks `n` distinct free loopback ports (bound and released at once).
fn free_ports(n: usize) -> Vec<u16> {
    let sockets: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    sockets
        .iter()
        .map(|s| s.local_addr().expect("local addr").port())
        .collect()
}

impl Cluster {
    /// Writes a config for 2f+1 replicas (nothing started yet).
    pub fn new(f: usize, loss: f64) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = free_ports(2 * f + 1);
        let mut config = Config::generate(f, loss, TIMEOUT_MS, ports[0]);
        for (replica, port) in config.replica.iter_mut().zip(&ports) {
            replica.addr = format!("127.0.0.1:{port}");
        }
        config.heartbeat_ms = HEARTBEAT_MS;
        config.data_dir = dir.path().join("data");
        config.validate().expect("valid test config");
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, config.to_toml_string()).expect("write config");
        Cluster {
            dir,
            children: (0..config.replicas()).map(|_| None).collect(),
            config,
            config_path,
        }
    }

    /// Like [`Cluster::new`], with every replica serving metrics on a free loopback port.
    pub fn with_metrics(f: usize, loss: f64) -> Cluster {
        let mut cluster = Cluster::new(f, loss);
        let ports = free_ports(cluster.replicas());
        for (replica, port) in cluster.config.replica.iter_mut().zip(&ports) {
            replica.metrics_addr = Some(format!("127.0.0.1:{port}"));
        }
        cluster.config.validate().expect("valid test config");
        std::fs::write(&cluster.config_path, cluster.config.to_toml_string())
            .expect("write config");
        cluster
    }

    /// Like [`Cluster::with_metrics`], with mutual TLS: a new CA and every certificate
    /// under `tls/` beside the config (as `paxosctl gen-config` makes them). The
    /// plaintext helpers ([`Cluster::status`], [`TestClient`]) do not work on it.
    pub fn with_metrics_tls(f: usize) -> Cluster {
        let mut cluster = Cluster::with_metrics(f, 0.0);
        paxos::transport::certs::setup_new_cluster(&mut cluster.config, &cluster.config_path)
            .expect("issue certificates");
        std::fs::write(&cluster.config_path, cluster.config.to_toml_string())
            .expect("write config");
        cluster.config = Config::load(&cluster.config_path).expect("reload config");
        cluster
    }

    /// Where replica `uid` serves metrics (a cluster made by [`Cluster::with_metrics`]).
    pub fn metrics_addr(&self, uid: Uid) -> std::net::SocketAddr {
        self.config
            .metrics_addr(uid)
            .expect("metrics addr")
            .expect("metrics on")
    }

    pub fn replicas(&self) -> usize {
        self.config.replicas()
    }

    /// Starts every replica, uid 0 first.
    pub fn start_all(&mut self) {
        for uid in 0..self.replicas() as Uid {
            self.start(uid, &[]);
        }
    }

    pub fn start(&mut self, uid: Uid, extra: &[&str]) {
        assert!(
            self.children[uid as usize].is_none(),
            "replica {uid} already running"
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("paxosd-{uid}.stderr")))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_paxosd"))
            .arg("--config")
            .arg(&self.config_path)
            .arg("--uid")
            .arg(uid.to_string())
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn paxosd");
        self.children[uid as usize] = Some(child);
    }

    /// `kill -9`, then reap.
    pub fn kill9(&mut self, uid: Uid) {
        if let Some(mut child) = self.children[uid as usize].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for a clean exit (exit code 0).
    pub fn terminate(&mut self, uid: Uid) -> std::process::ExitStatus {
        let mut child = self.children[uid as usize].take().expect("replica running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("replica {uid} did not stop within 10s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The PID of replica `uid`, if it runs.
    pub fn pid(&self, uid: Uid) -> Option<u32> {
        self.children[uid as usize].as_ref().map(|c| c.id())
    }

    /// Waits for replica `uid` to exit on its own (after a signal sent elsewhere).
    pub fn wait_exit(&mut self, uid: Uid, within: Duration) -> std::process::ExitStatus {
        let mut child = self.children[uid as usize].take().expect("replica running");
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("replica {uid} did not exit within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Replica `uid`'s store directory.
    pub fn store_dir(&self, uid: Uid) -> PathBuf {
        self.config.data_dir.join(format!("node-{uid}"))
    }

    pub fn is_running(&mut self, uid: Uid) -> bool {
        match self.children[uid as usize].as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn addr(&self, uid: Uid) -> std::net::SocketAddr {
        self.config.replica_addr(uid).expect("addr")
    }

    pub fn stderr_of(&self, uid: Uid) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("paxosd-{uid}.stderr")))
            .unwrap_or_default()
    }

    pub async fn status(&self, uid: Uid) -> Option<StatusReport> {
        let mut link = ClientLink::connect(self.addr(uid), Duration::from_millis(300))
            .await
            .ok()?;
        match tokio::time::timeout(Duration::from_secs(2), link.call(&ClientRequest::Status)).await
        {
            Ok(Ok(ClientResponse::Status(s))) => Some(s),
            _ => None,
        }
    }

    /// Waits until some running replica reports itself leader; returns its uid.
    pub async fn wait_leader(&self, within: Duration) -> Uid {
        let deadline = Instant::now() + within;
        loop {
            for uid in 0..self.replicas() as Uid {
                if let Some(s) = self.status(uid).await {
                    if s.status.role == paxos::core::Role::Leader {
                        return uid;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no leader within {within:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every running replica is a voter (a fresh store has registered with a
    /// majority of the others) and one of them leads; returns the leader. A test that
    /// stops or pauses a replica right after the start needs this: a fresh store whose
    /// first `Register` was sent before its peer listened registers only on the
    /// retransmission, `timeout_ms` later, and a replica paused before answering it
    /// leaves that store unable to vote.
    pub async fn wait_ready(&self, within: Duration) -> Uid {
        let deadline = Instant::now() + within;
        let running: Vec<Uid> = (0..self.replicas() as Uid)
            .filter(|uid| self.children[*uid as usize].is_some())
            .collect();
        loop {
            let mut voters = 0;
            for uid in &running {
                if let Some(s) = self.status(*uid).await {
                    if s.status.standing == paxos::core::Standing::Voter {
                        voters += 1;
                    }
                }
            }
            if voters == running.len() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not every running replica is a voter within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.wait_leader(deadline.saturating_duration_since(Instant::now()))
            .await
    }

    /// The applied chat log of `uid`, paged until its decided prefix.
    pub async fn log(&self, uid: Uid) -> Vec<LogEntry> {
        match self.try_log(uid).await {
            Some(log) => log,
            None => panic!("cannot read the log of replica {uid}"),
        }
    }

    /// The applied chat log of `uid`, or `None` if it cannot be reached now.
    pub async fn try_log(&self, uid: Uid) -> Option<Vec<LogEntry>> {
        let mut link = ClientLink::connect(self.addr(uid), Duration::from_secs(1))
            .await
            .ok()?;
        let mut entries: Vec<LogEntry> = Vec::new();
        loop {
            let from_slot = entries.last().map_or(0, |e| e.slot + 1);
            let request = ClientRequest::ReadLog {
                from_slot,
                max_entries: 1000,
                wait_ms: 0,
            };
            match tokio::time::timeout(Duration::from_secs(5), link.call(&request)).await {
                Ok(Ok(ClientResponse::Log {
                    entries: chunk,
                    decided_upto,
                })) => {
                    let done =
                        chunk.is_empty() || chunk.last().is_none_or(|e| e.slot + 1 >= decided_upto);
                    entries.extend(chunk);
                    if done {
                        return Some(entries);
                    }
                }
                _ => return None,
            }
        }
    }

    /// Waits until every listed replica's applied log is identical and at least
    /// `min_len` long; returns it.
    pub async fn converged_log(
        &self,
        uids: &[Uid],
        min_len: usize,
        within: Duration,
    ) -> Vec<LogEntry> {
        let deadline = Instant::now() + within;
        loop {
            let mut logs = Vec::new();
            for uid in uids {
                logs.push(self.try_log(*uid).await.unwrap_or_default());
            }
            if logs[0].len() >= min_len && logs.iter().all(|l| l == &logs[0]) {
                return logs.swap_remove(0);
            }
            if Instant::now() > deadline {
                let lens: Vec<_> = logs.iter().map(|l| l.len()).collect();
                panic!(
                    "logs of {uids:?} did not converge to >= {min_len} entries: lengths {lens:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            for uid in 0..self.children.len() as Uid {
                let text = self.stderr_of(uid);
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                eprintln!("---- paxosd {uid} stderr (last lines, newest first) ----");
                for line in tail {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// A minimal client: one (client_id, seq) per message, retried across replicas with the
/// same id until committed.
pub struct TestClient {
    pub client_id: u64,
    seq: u64,
    leader: Uid,
    link: Option<ClientLink>,
    addrs: Vec<std::net::SocketAddr>,
}

impl TestClient {
    pub fn new(cluster: &Cluster, client_id: u64) -> TestClient {
        TestClient {
            client_id,
            seq: 0,
            leader: 0,
            link: None,
            addrs: (0..cluster.replicas() as Uid)
                .map(|u| cluster.addr(u))
                .collect(),
        }
    }

    /// Submits `body`; returns its id and slot once committed, or an error after `within`.
    pub async fn submit(
        &mut self,
        body: &str,
        within: Duration,
    ) -> Result<(RequestId, Slot), String> {
        self.seq += 1;
        let id = RequestId {
            client_id: self.client_id,
            seq: self.seq,
        };
        let deadline = Instant::now() + within;
        let request = ClientRequest::Submit {
            id,
            body: body.to_string(),
        };
        let mut last_error = String::new();
        while Instant::now() < deadline {
            let target = self.leader;
            if self.link.as_ref().map(|l| l.addr()) != Some(self.addrs[target as usize]) {
                self.link =
                    ClientLink::connect(self.addrs[target as usize], Duration::from_millis(300))
                        .await
                        .ok();
            }
            let Some(link) = self.link.as_mut() else {
                self.leader = (target + 1) % self.addrs.len() as Uid;
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            match tokio::time::timeout(Duration::from_millis(4 * TIMEOUT_MS), link.call(&request))
                .await
            {
                Ok(Ok(ClientResponse::Submit(SubmitReply::Committed { id: got, slot })))
                    if got == id =>
                {
                    return Ok((id, slot));
                }
                Ok(Ok(ClientResponse::Submit(SubmitReply::NotLeader { leader, .. }))) => {
                    self.leader = match leader {
                        Some(l) if l != target => l,
                        _ => (target + 1) % self.addrs.len() as Uid,
                    };
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(Ok(ClientResponse::Submit(SubmitReply::Rejected { reason, .. }))) => {
                    return Err(format!("rejected: {reason}"));
                }
                other => {
                    last_error = format!("{other:?}");
                    self.link = None;
                    self.leader = (target + 1) % self.addrs.len() as Uid;
                }
            }
        }
        Err(format!(
            "{id} not committed within {within:?}: {last_error}"
        ))
    }
}

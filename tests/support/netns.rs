//! A multi-host test bed on one machine: every `paxosd` in its own network namespace with
//! its own address, as on separate machines, and faults injected between them.
//!
//! Layout of one bed (index `I`, 1..=250, unique on the machine by a lock file):
//! ```text
//!   pxnI-<pid>-br   bridge br0, no address        (the "switch")
//!   pxnI-<pid>-rU   eth0 = 10.77.I.(10+U)/24       (replica U, paxosd listens on :7100)
//!   pxnI-<pid>-cl   eth0 = 10.77.I.100/24          (clients: the test thread itself)
//! ```
//! Each namespace's eth0 is one end of a veth pair whose other end is a port of br0.
//! No namespace has a default route, nothing is attached to the machine's interfaces, and
//! the root namespace is not touched: traffic never leaves these namespaces.
//!
//! The test thread moves into the client namespace when the bed is built (so its sockets,
//! and the `paxosctl` it spawns, speak from 10.77.I.100) and moves back when it drops.
//!
//! Faults:
//! - links: a cut `(from, to)` drops the packets of `from`'s connections to `to`'s peer
//!   port (nftables in both namespaces: `from`'s output and `to`'s input). Every replica
//!   sends only on connections it dialed itself, so a cut is a one-way link failure;
//!   both directions make a partition. Clients are never cut.
//! - processes: SIGSTOP/SIGCONT (a pause), `kill -9`, restart, wipe of a data dir.
//!
//! Cleanup: dropping the bed (also on panic) kills every paxosd by PID and deletes every
//! namespace by name. A run that died without that (SIGKILL of the test) leaves
//! `pxnI-*` behind: the next bed that takes lock `I` kills the processes in them and
//! deletes them first. Beds of one test binary run one at a time (a process-wide lock):
//! five daemons per test are enough for a 2-core machine.
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables); installs the last two with apt-get
//! when missing. [`NetBed::new`] returns `None`, with a message, when not root.
#![allow(dead_code)]

use paxos::core::{RequestId, Slot, SubmitReply, Uid};
use paxos::transport::client::ClientLink;
use paxos::transport::wire::{ClientRequest, ClientResponse, StatusReport};
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::history::Entry;

/// The port every replica listens on, in its own namespace.
pub const PEER_PORT: u16 = 7100;
/// Longest a single `ip`/`nft` command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
/// One client attempt at one replica.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1000);

/// True while a bed of this process exists (beds run one at a time).
static BUSY: Mutex<bool> = Mutex::new(false);
static BUSY_FREED: Condvar = Condvar::new();

/// Holds [`BUSY`] for one bed (a `MutexGuard` would not be `Send`).
struct Serial;

impl Serial {
    fn take() -> Serial {
        let mut busy = BUSY.lock().unwrap_or_else(|e| e.into_inner());
        while *busy {
            busy = BUSY_FREED.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        *busy = true;
        Serial
    }
}

impl Drop for Serial {
    fn drop(&mut self) {
        *BUSY.lock().unwrap_or_else(|e| e.into_inner()) = false;
        BUSY_FREED.notify_one();
    }
}

/// Options of one bed.
#[derive(Clone, Debug)]
pub struct BedOptions {
    pub replicas: usize,
    pub timeout_ms: u64,
    pub heartbeat_ms: u64,
}

impl Default for BedOptions {
    fn default() -> Self {
        BedOptions {
            replicas: 5,
            timeout_ms: 500,
            heartbeat_ms: 100,
        }
    }
}

pub struct NetBed {
    pub options: BedOptions,
    pub index: u32,
    pub prefix: String,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    /// When the bed was built: the zero of every time the tests record.
    pub t0: Instant,
    children: Mutex<Vec<Option<Child>>>,
    paused: Mutex<Vec<bool>>,
    cuts: Mutex<BTreeSet<(Uid, Uid)>>,
    namespaces: Vec<String>,
    root_ns: Option<File>,
    _lock: File,
    _serial: Serial,
}

/// True when running as root; otherwise prints why `test` is skipped.
pub fn is_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped {test}: network namespaces need root (CI runs it as root)");
    }
    root
}

/// Runs `cmd` to completion within [`COMMAND_TIMEOUT`]; returns its stdout, or an error
/// with its stderr.
fn run(cmd: &mut Command, stdin: Option<&str>) -> Result<String, String> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    if let Some(text) = stdin {
        if let Some(mut pipe) = child.stdin.take() {
            pipe.write_all(text.as_bytes())
                .map_err(|e| format!("{what}: stdin: {e}"))?;
        }
    }
    // Drain both pipes while waiting: a child blocked on a full pipe never exits.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{what}: timed out after {COMMAND_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if status.success() {
        Ok(String::from_utf8_lossy(&stdout).into_owned())
    } else {
        Err(format!(
            "{what}: {status}: {}",
            String::from_utf8_lossy(&stderr).trim()
        ))
    }
}

fn sh(args: &[&str]) -> Result<String, String> {
    run(Command::new(args[0]).args(&args[1..]), None)
}

fn has(tool: &str) -> bool {
    Command::new(tool)
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Installs iproute2 and nftables with apt-get if `ip` or `nft` is missing (idempotent,
/// serialized by a lock file across processes).
pub fn ensure_tools() {
    if has("ip") && has("nft") {
        return;
    }
    let lock = File::create("/tmp/paxos-netns-apt.lock").expect("apt lock file");
    // SAFETY: flock on an open descriptor.
    unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    if has("ip") && has("nft") {
        return;
    }
    eprintln!("netns: installing iproute2 and nftables with apt-get");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "iproute2", "nftables"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    if !matches!(install(), Ok(s) if s.success()) {
        let _ = Command::new("apt-get")
            .args(["update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
        let status = install();
        assert!(
            matches!(status, Ok(s) if s.success()),
            "apt-get install iproute2 nftables failed: {status:?}"
        );
    }
    assert!(
        has("ip") && has("nft"),
        "ip or nft still missing after apt-get"
    );
}

/// Takes the first free bed index (a lock file per index, released when the file closes,
/// also when the process dies).
fn take_index() -> (u32, File) {
    for index in 1..=250u32 {
        let file = File::create(format!("/tmp/paxos-netns-{index}.lock")).expect("lock file");
        // SAFETY: flock on an open descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return (index, file);
        }
    }
    panic!("all 250 netns bed indexes are in use");
}

/// Removes the namespaces of every bed whose test process is gone (`pxnI-<pid>-*` with
/// no process `<pid>`): leftovers of a run killed before it could clean up.
pub fn remove_dead_runs() {
    let list = sh(&["ip", "netns", "list"]).unwrap_or_default();
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let mut parts = name.splitn(3, '-');
        let (Some(head), Some(pid)) = (parts.next(), parts.next()) else {
            continue;
        };
        let ours = head.len() > 3
            && head.starts_with("pxn")
            && head[3..].chars().all(|c| c.is_ascii_digit());
        if ours && pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
            kill_in_namespace(name);
            let _ = sh(&["ip", "netns", "del", name]);
        }
    }
}

/// Kills every process in, and deletes, each namespace whose name starts with `prefix`.
fn remove_namespaces(prefix: &str) {
    let list = sh(&["ip", "netns", "list"]).unwrap_or_default();
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if !name.starts_with(prefix) {
            continue;
        }
        kill_in_namespace(name);
        let _ = sh(&["ip", "netns", "del", name]);
    }
}

fn kill_in_namespace(name: &str) {
    let pids = sh(&["ip", "netns", "pids", name]).unwrap_or_default();
    for pid in pids
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        // SAFETY: signalling a PID that `ip netns pids` listed in our own namespace.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// Moves the calling thread into the network namespace at `path`.
fn enter_namespace(path: &Path) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // SAFETY: setns on an open namespace descriptor; affects the calling thread only.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!(
            "setns {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// The TOML of the bed's cluster (the one place that writes it: a config switch such as
/// an explicit TLS-off goes here).
fn write_config(path: &Path, addrs: &[String], options: &BedOptions, data_dir: &Path) {
    let mut text = String::new();
    text.push_str("# netns test bed: one replica per network namespace\n");
    text.push_str(&format!("f = {}\n", (addrs.len() - 1) / 2));
    text.push_str(&format!("timeout_ms = {}\n", options.timeout_ms));
    text.push_str(&format!("heartbeat_ms = {}\n", options.heartbeat_ms));
    text.push_str("loss = 0.0\n");
    text.push_str(&format!(
        "data_dir = {:?}\n",
        data_dir.display().to_string()
    ));
    text.push_str(&format!(
        "log_dir = {:?}\n",
        data_dir.join("logs").display().to_string()
    ));
    // The bed's own isolated namespaces; TLS is tested elsewhere (tests/tls.rs).
    text.push_str("\n[tls]\nenabled = false\n");
    for addr in addrs {
        text.push_str(&format!("\n[[replica]]\naddr = \"{addr}\"\n"));
    }
    std::fs::write(path, text).expect("write config");
}

impl NetBed {
    /// Builds the namespaces and writes the config (no replica started yet); moves the
    /// calling thread into the client namespace. `None` (with a message) when not root.
    pub fn new(test: &str, options: BedOptions) -> Option<NetBed> {
        if !is_root(test) {
            return None;
        }
        assert!(options.replicas % 2 == 1 && options.replicas <= 9);
        ensure_tools();
        let serial = Serial::take();
        let (index, lock) = take_index();
        // Holding lock `index`: anything named pxn<index>- is a dead run's leftover.
        remove_namespaces(&format!("pxn{index}-"));
        remove_dead_runs();
        let prefix = format!("pxn{index}-{}", std::process::id());
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("config.toml");
        let mut bed = NetBed {
            index,
            prefix,
            config_path,
            t0: Instant::now(),
            children: Mutex::new((0..options.replicas).map(|_| None).collect()),
            paused: Mutex::new(vec![false; options.replicas]),
            cuts: Mutex::new(BTreeSet::new()),
            namespaces: Vec::new(),
            root_ns: None,
            options,
            dir,
            _lock: lock,
            _serial: serial,
        };
        if let Err(e) = bed.build() {
            panic!("netns bed {}: {e}", bed.prefix);
        }
        let addrs: Vec<String> = (0..bed.replicas() as Uid)
            .map(|u| bed.addr(u).to_string())
            .collect();
        write_config(
            &bed.config_path,
            &addrs,
            &bed.options,
            &bed.dir.path().join("data"),
        );
        bed.root_ns = Some(File::open("/proc/thread-self/ns/net").expect("own netns"));
        enter_namespace(&PathBuf::from(format!("/run/netns/{}", bed.ns_client())))
            .expect("enter the client namespace");
        bed.t0 = Instant::now();
        Some(bed)
    }

    fn build(&mut self) -> Result<(), String> {
        let bridge = self.ns_bridge();
        let mut members: Vec<(String, String, String)> = (0..self.replicas() as Uid)
            .map(|u| {
                (
                    self.ns_replica(u),
                    format!("r{u}"),
                    format!("{}/24", self.ip(u)),
                )
            })
            .collect();
        members.push((
            self.ns_client(),
            "cl".to_string(),
            format!("{}/24", self.client_ip()),
        ));
        for ns in std::iter::once(&bridge).chain(members.iter().map(|m| &m.0)) {
            sh(&["ip", "netns", "add", ns])?;
            self.namespaces.push(ns.clone());
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        sh(&["ip", "-n", &bridge, "link", "add", "br0", "type", "bridge"])?;
        sh(&["ip", "-n", &bridge, "link", "set", "br0", "up"])?;
        for (ns, port, addr) in &members {
            sh(&[
                "ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port,
                "netns", &bridge,
            ])?;
            sh(&["ip", "-n", &bridge, "link", "set", port, "master", "br0"])?;
            sh(&["ip", "-n", &bridge, "link", "set", port, "up"])?;
            sh(&["ip", "-n", ns, "addr", "add", addr, "dev", "eth0"])?;
            sh(&["ip", "-n", ns, "link", "set", "eth0", "up"])?;
        }
        for u in 0..self.replicas() as Uid {
            self.write_rules(u, &BTreeSet::new())?;
        }
        Ok(())
    }

    pub fn replicas(&self) -> usize {
        self.options.replicas
    }
    pub fn majority(&self) -> usize {
        self.replicas() / 2 + 1
    }
    pub fn ns_bridge(&self) -> String {
        format!("{}-br", self.prefix)
    }
    pub fn ns_client(&self) -> String {
        format!("{}-cl", self.prefix)
    }
    pub fn ns_replica(&self, uid: Uid) -> String {
        format!("{}-r{uid}", self.prefix)
    }
    pub fn ip(&self, uid: Uid) -> String {
        format!("10.77.{}.{}", self.index, 10 + uid)
    }
    pub fn client_ip(&self) -> String {
        format!("10.77.{}.100", self.index)
    }
    pub fn addr(&self, uid: Uid) -> SocketAddr {
        format!("{}:{PEER_PORT}", self.ip(uid))
            .parse()
            .expect("socket address")
    }
    pub fn addrs(&self) -> Vec<SocketAddr> {
        (0..self.replicas() as Uid).map(|u| self.addr(u)).collect()
    }
    pub fn data_dir(&self, uid: Uid) -> PathBuf {
        self.dir.path().join("data").join(format!("node-{uid}"))
    }
    /// Microseconds since the bed was built.
    pub fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    // ---- processes ----

    /// Starts replica `uid` in its namespace (it must not be running).
    pub fn start(&self, uid: Uid) {
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        assert!(
            children[uid as usize].is_none(),
            "replica {uid} already running"
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("paxosd-{uid}.stderr")))
            .expect("log file");
        // `ip netns exec` execs paxosd after setns: the child's PID is paxosd's.
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns_replica(uid)])
            .arg(env!("CARGO_BIN_EXE_paxosd"))
            .arg("--config")
            .arg(&self.config_path)
            .arg("--uid")
            .arg(uid.to_string())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn paxosd");
        children[uid as usize] = Some(child);
        self.paused.lock().unwrap_or_else(|e| e.into_inner())[uid as usize] = false;
    }

    pub fn start_all(&self) {
        for uid in 0..self.replicas() as Uid {
            self.start(uid);
        }
    }

    pub fn pid(&self, uid: Uid) -> Option<i32> {
        let children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        children[uid as usize].as_ref().map(|c| c.id() as i32)
    }

    pub fn is_running(&self, uid: Uid) -> bool {
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        match children[uid as usize].as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// `kill -9` by PID, then reap. A no-op if it is not running.
    pub fn kill9(&self, uid: Uid) {
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut child) = children[uid as usize].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused.lock().unwrap_or_else(|e| e.into_inner())[uid as usize] = false;
    }

    /// SIGTERM, then wait (at most 10 s, then `kill -9`).
    pub fn stop(&self, uid: Uid) {
        let Some(pid) = self.pid(uid) else { return };
        self.resume(uid);
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.is_running(uid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9(uid);
    }

    pub fn stop_all(&self) {
        for uid in 0..self.replicas() as Uid {
            self.stop(uid);
        }
    }

    /// SIGSTOP: the replica freezes as in a long GC pause or a stuck VM.
    pub fn pause(&self, uid: Uid) {
        if let Some(pid) = self.pid(uid) {
            // SAFETY: signalling our own child by PID.
            unsafe { libc::kill(pid, libc::SIGSTOP) };
            self.paused.lock().unwrap_or_else(|e| e.into_inner())[uid as usize] = true;
        }
    }

    /// SIGCONT after [`NetBed::pause`].
    pub fn resume(&self, uid: Uid) {
        if let Some(pid) = self.pid(uid) {
            // SAFETY: signalling our own child by PID.
            unsafe { libc::kill(pid, libc::SIGCONT) };
        }
        self.paused.lock().unwrap_or_else(|e| e.into_inner())[uid as usize] = false;
    }

    pub fn is_paused(&self, uid: Uid) -> bool {
        self.paused.lock().unwrap_or_else(|e| e.into_inner())[uid as usize]
    }

    /// Deletes replica `uid`'s data dir (it must be stopped): a lost disk.
    pub fn wipe(&self, uid: Uid) {
        assert!(!self.is_running(uid), "wipe of running replica {uid}");
        let dir = self.data_dir(uid);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("wipe data dir");
        }
    }

    pub fn stderr_of(&self, uid: Uid) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("paxosd-{uid}.stderr")))
            .unwrap_or_default()
    }

    // ---- links ----

    /// Rewrites replica `uid`'s nftables table for `cuts` in one transaction.
    fn write_rules(&self, uid: Uid, cuts: &BTreeSet<(Uid, Uid)>) -> Result<(), String> {
        let mut output = String::new();
        let mut input = String::new();
        for (from, to) in cuts {
            if *from == uid {
                output.push_str(&format!(
                    "        ip daddr {} tcp dport {PEER_PORT} drop\n",
                    self.ip(*to)
                ));
            }
            if *to == uid {
                input.push_str(&format!(
                    "        ip saddr {} tcp dport {PEER_PORT} drop\n",
                    self.ip(*from)
                ));
            }
        }
        let script = format!(
            "add table inet pxfault\ndelete table inet pxfault\ntable inet pxfault {{\n    \
             chain output {{\n        type filter hook output priority 0; policy accept;\n{output}    }}\n    \
             chain input {{\n        type filter hook input priority 0; policy accept;\n{input}    }}\n}}\n"
        );
        run(
            Command::new("ip").args(["netns", "exec", &self.ns_replica(uid), "nft", "-f", "-"]),
            Some(&script),
        )
        .map(|_| ())
    }

    /// Makes exactly `cuts` the set of one-way link failures: `(a, b)` means `a`'s
    /// messages to `b` are dropped.
    pub fn set_cuts(&self, cuts: BTreeSet<(Uid, Uid)>) {
        let mut current = self.cuts.lock().unwrap_or_else(|e| e.into_inner());
        for uid in 0..self.replicas() as Uid {
            let touches = |set: &BTreeSet<(Uid, Uid)>| -> Vec<(Uid, Uid)> {
                set.iter()
                    .filter(|(a, b)| *a == uid || *b == uid)
                    .copied()
                    .collect()
            };
            if touches(&current) != touches(&cuts) {
                self.write_rules(uid, &cuts).expect("nft rules");
            }
        }
        *current = cuts;
    }

    pub fn cuts(&self) -> BTreeSet<(Uid, Uid)> {
        self.cuts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Adds the one-way cut `from` → `to`.
    pub fn cut_one_way(&self, from: Uid, to: Uid) {
        let mut cuts = self.cuts();
        cuts.insert((from, to));
        self.set_cuts(cuts);
    }

    /// Adds cuts both ways between `a` and `b`.
    pub fn cut_both(&self, a: Uid, b: Uid) {
        let mut cuts = self.cuts();
        cuts.insert((a, b));
        cuts.insert((b, a));
        self.set_cuts(cuts);
    }

    /// Replaces every cut by a partition into `groups` (a replica in no group is cut
    /// from everyone).
    pub fn partition(&self, groups: &[&[Uid]]) {
        let group_of = |u: Uid| groups.iter().position(|g| g.contains(&u));
        let mut cuts = BTreeSet::new();
        for a in 0..self.replicas() as Uid {
            for b in 0..self.replicas() as Uid {
                if a != b && (group_of(a).is_none() || group_of(a) != group_of(b)) {
                    cuts.insert((a, b));
                }
            }
        }
        self.set_cuts(cuts);
    }

    /// Only the listed pairs stay connected (both ways); every other pair is cut.
    pub fn only_links(&self, links: &[(Uid, Uid)]) {
        let mut cuts = BTreeSet::new();
        for a in 0..self.replicas() as Uid {
            for b in 0..self.replicas() as Uid {
                if a != b && !links.contains(&(a, b)) && !links.contains(&(b, a)) {
                    cuts.insert((a, b));
                }
            }
        }
        self.set_cuts(cuts);
    }

    pub fn heal(&self) {
        self.set_cuts(BTreeSet::new());
    }

    /// True when some majority of running, unpaused replicas is connected pairwise in
    /// both directions (so a correct protocol can commit).
    pub fn connected_majority(&self) -> bool {
        let cuts = self.cuts();
        let up: Vec<Uid> = (0..self.replicas() as Uid)
            .filter(|u| self.is_running(*u) && !self.is_paused(*u))
            .collect();
        let n = up.len();
        (0u32..(1 << n)).any(|mask| {
            let set: Vec<Uid> = (0..n)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| up[i])
                .collect();
            set.len() >= self.majority()
                && set.iter().all(|a| {
                    set.iter()
                        .all(|b| a == b || (!cuts.contains(&(*a, *b)) && !cuts.contains(&(*b, *a))))
                })
        })
    }

    // ---- clients ----

    pub async fn status(&self, uid: Uid) -> Option<StatusReport> {
        let mut link = ClientLink::connect(self.addr(uid), Duration::from_millis(300))
            .await
            .ok()?;
        match tokio::time::timeout(Duration::from_secs(1), link.call(&ClientRequest::Status)).await
        {
            Ok(Ok(ClientResponse::Status(s))) => Some(s),
            _ => None,
        }
    }

    /// Waits until some replica reports itself leader; returns its uid.
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

    /// Waits until every replica reports the same decided prefix, at least `min`.
    pub async fn wait_converged(&self, min: Slot, within: Duration) -> Result<Slot, String> {
        let deadline = Instant::now() + within;
        loop {
            let mut prefixes = Vec::new();
            for uid in 0..self.replicas() as Uid {
                prefixes.push(self.status(uid).await.map(|s| s.status.decided_upto));
            }
            if let Some(Some(first)) = prefixes.first() {
                if *first >= min && prefixes.iter().all(|p| *p == Some(*first)) {
                    return Ok(*first);
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "replicas did not converge to >= {min} within {within:?}: {prefixes:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `paxosctl dump-log --uid U --json` from the client namespace (what an operator's
    /// read is; linearizable once the daemon makes it so). `None` if it fails.
    pub fn read_log(&self, uid: Uid) -> Option<Vec<Entry>> {
        let out = run(
            Command::new(env!("CARGO_BIN_EXE_paxosctl"))
                .arg("--config")
                .arg(&self.config_path)
                .args(["dump-log", "--uid", &uid.to_string(), "--json"]),
            None,
        )
        .ok()?;
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .map(Entry::from_json_line)
            .collect::<Result<Vec<_>, _>>()
            .ok()
    }

    /// `paxosctl dump-log --data-dir` of a stopped replica.
    pub fn offline_log(&self, uid: Uid) -> Result<Vec<Entry>, String> {
        assert!(
            !self.is_running(uid),
            "offline read of running replica {uid}"
        );
        let out = run(
            Command::new(env!("CARGO_BIN_EXE_paxosctl"))
                .args(["dump-log", "--json", "--data-dir"])
                .arg(self.data_dir(uid)),
            None,
        )?;
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .map(Entry::from_json_line)
            .collect()
    }

    /// Heals every link, resumes paused replicas, starts stopped ones, waits for the logs
    /// to converge (at least `min` slots), stops them all and reads every store offline.
    pub async fn final_logs(&self, min: Slot) -> Vec<(u32, Vec<Entry>)> {
        self.heal();
        for uid in 0..self.replicas() as Uid {
            if self.is_paused(uid) {
                self.resume(uid);
            }
            if !self.is_running(uid) {
                self.kill9(uid);
                self.start(uid);
            }
        }
        if let Err(e) = self.wait_converged(min, Duration::from_secs(30)).await {
            println!("final logs: {e}");
        }
        self.stop_all();
        (0..self.replicas() as Uid)
            .map(|uid| (uid, self.offline_log(uid).expect("offline dump-log")))
            .collect()
    }
}

impl Drop for NetBed {
    fn drop(&mut self) {
        if let Some(root) = self.root_ns.take() {
            // SAFETY: setns back to the descriptor of the namespace we came from.
            unsafe { libc::setns(root.as_raw_fd(), libc::CLONE_NEWNET) };
        }
        let panicking = std::thread::panicking();
        {
            let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
            for child in children.iter_mut().flatten() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        for ns in self.namespaces.iter().rev() {
            kill_in_namespace(ns);
            let _ = sh(&["ip", "netns", "del", ns]);
        }
        if panicking {
            for uid in 0..self.replicas() as Uid {
                let text = self.stderr_of(uid);
                let tail: Vec<&str> = text.lines().rev().take(25).collect();
                eprintln!("---- paxosd {uid} stderr (last lines, newest first) ----");
                for line in tail {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// A client in the client namespace: one (client_id, seq) per message, retried with the
/// same id across replicas (leader hint first) until committed or out of time.
pub struct NetClient {
    pub client_id: u64,
    seq: u64,
    leader: usize,
    link: Option<ClientLink>,
    addrs: Vec<SocketAddr>,
}

impl NetClient {
    pub fn new(bed: &NetBed, client_id: u64) -> NetClient {
        NetClient {
            client_id,
            seq: 0,
            leader: 0,
            link: None,
            addrs: bed.addrs(),
        }
    }

    pub fn next_id(&mut self) -> RequestId {
        self.seq += 1;
        RequestId {
            client_id: self.client_id,
            seq: self.seq,
        }
    }

    /// Submits `body` under `id`; its slot once committed, or an error after `within`.
    pub async fn submit(
        &mut self,
        id: RequestId,
        body: &str,
        within: Duration,
    ) -> Result<Slot, String> {
        let deadline = Instant::now() + within;
        let request = ClientRequest::Submit {
            id,
            body: body.to_string(),
        };
        let n = self.addrs.len();
        let mut last_error = String::from("no attempt");
        while Instant::now() < deadline {
            let target = self.leader;
            if self.link.as_ref().map(|l| l.addr()) != Some(self.addrs[target]) {
                self.link = ClientLink::connect(self.addrs[target], Duration::from_millis(300))
                    .await
                    .ok();
            }
            let Some(link) = self.link.as_mut() else {
                self.leader = (target + 1) % n;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(ATTEMPT_TIMEOUT.min(left), link.call(&request)).await {
                Ok(Ok(ClientResponse::Submit(SubmitReply::Committed { id: got, slot })))
                    if got == id =>
                {
                    return Ok(slot);
                }
                Ok(Ok(ClientResponse::Submit(SubmitReply::NotLeader { leader, .. }))) => {
                    self.leader = match leader {
                        Some(l) if (l as usize) != target && (l as usize) < n => l as usize,
                        _ => (target + 1) % n,
                    };
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(Ok(ClientResponse::Submit(SubmitReply::Rejected { reason, .. }))) => {
                    return Err(format!("rejected: {reason}"));
                }
                other => {
                    last_error = format!("replica {target}: {other:?}");
                    self.link = None;
                    self.leader = (target + 1) % n;
                }
            }
        }
        Err(format!(
            "{id} not committed within {within:?}: {last_error}"
        ))
    }
}

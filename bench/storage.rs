//! Storage benchmark (`cargo bench --bench storage`):
//! 1. durable records/s through `SledStorage::persist` at batch sizes 1, 10, 100, 1000
//!    (Accepted records, 100-byte body, each call flushed and `sync_data`ed);
//! 2. for a log of N slots of 100-byte messages (default 1M), per store configuration
//!    (segment compression) and message body kind: disk bytes per message and against
//!    the payload (body + 24 bytes of id), the time to reopen (`open` + `load`, in a fresh
//!    process), a sequential `read_log` scan of the whole log (entries/s, pages of 4096),
//!    random reads (`read_log(slot, 64)` at random slots, reads/s) and the reader's peak
//!    RSS.
//!
//! Body kinds: `random` (100 random alphanumeric characters a message: the worst case for
//! compression), `chat` (words of a small vocabulary: what a chat room looks like),
//! `bench` (what `paxosctl bench --size 100` sends: one random body per client, 256
//! clients, reused for every message).
//!
//! Stores are built, reopened and read by child processes (this binary re-executed with
//! `PAXOS_BENCH_CHILD` set), like a restarted daemon. Prints a table and one JSON line.
//!
//! Environment: `PAXOS_BENCH_SECS` (seconds per batch size, default 2; 0 skips part 1),
//! `PAXOS_BENCH_SLOTS` (slots of each log store, comma-separated, default `1000000`),
//! `PAXOS_BENCH_LOGS` (configurations, comma-separated `zstd|none:random|chat|bench`,
//! default `zstd:random,none:random,zstd:chat,none:chat,zstd:bench`),
//! `PAXOS_BENCH_SEGMENT_SLOTS` and `PAXOS_BENCH_SLED_CACHE` (override the store's
//! defaults).

use paxos::core::{Ballot, Record, RequestId, Session, Value};
use paxos::storage::sled_store::{Compression, SledStorage, StoreOptions, SEGMENT_DIR};
use paxos::storage::{LogRead, Storage};
use rand::distributions::Alphanumeric;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "PAXOS_BENCH_CHILD";
const DIR_ENV: &str = "PAXOS_BENCH_DIR";
const SLOTS_ENV: &str = "PAXOS_BENCH_BUILD_SLOTS";
const CONFIG_ENV: &str = "PAXOS_BENCH_CONFIG";
const BODY_BYTES: usize = 100;
const CLIENTS: u64 = 256;
const REOPEN_RUNS: usize = 3;
const RANDOM_READS: usize = 2000;

fn value(seq: u64) -> Value {
    Value::Msg {
        id: RequestId {
            client_id: 0x5eed,
            seq,
        },
        body: "b".repeat(BODY_BYTES),
    }
}

fn accepted(slot: u64) -> Record {
    Record::Accepted {
        slot,
        ballot: Ballot::new(1, 0),
        value: value(slot),
    }
}

struct Throughput {
    batch: usize,
    records: u64,
    secs: f64,
}

fn throughput(batch: usize, run_for: Duration) -> Throughput {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut storage = SledStorage::open(dir.path(), 0, 1).expect("open");
    let mut slot = 0u64;
    let mut records = Vec::with_capacity(batch);
    for _ in 0..3 {
        records.clear();
        records.extend((0..batch as u64).map(|i| accepted(1 << 40 | i)));
        storage.persist(&records).expect("persist");
    }
    let started = Instant::now();
    while started.elapsed() < run_for {
        records.clear();
        records.extend((slot..slot + batch as u64).map(accepted));
        storage.persist(&records).expect("persist");
        slot += batch as u64;
    }
    Throughput {
        batch,
        records: slot,
        secs: started.elapsed().as_secs_f64(),
    }
}

/// A store configuration and a body kind, as `zstd:chat`.
#[derive(Clone, Debug)]
struct LogConfig {
    compression: Compression,
    body: String,
}

impl LogConfig {
    fn parse(s: &str) -> LogConfig {
        let (c, body) = s.split_once(':').expect("config as compression:body");
        let compression = match c {
            "zstd" => Compression::Zstd(3),
            "none" => Compression::None,
            other => panic!("unknown compression {other}"),
        };
        assert!(["random", "chat", "bench"].contains(&body), "body {body}");
        LogConfig {
            compression,
            body: body.to_string(),
        }
    }

    fn options(&self) -> StoreOptions {
        let defaults = StoreOptions::default();
        StoreOptions {
            compression: self.compression,
            segment_slots: env_or("PAXOS_BENCH_SEGMENT_SLOTS", defaults.segment_slots),
            sled_cache_bytes: env_or("PAXOS_BENCH_SLED_CACHE", defaults.sled_cache_bytes),
            ..defaults
        }
    }
}

const WORDS: &[&str] = &[
    "the", "a", "to", "and", "of", "is", "in", "it", "you", "that", "for", "on", "this", "with",
    "we", "have", "be", "are", "not", "but", "what", "just", "so", "can", "do", "was", "if", "all",
    "my", "me", "at", "get", "like", "about", "now", "know", "good", "think", "time", "out", "up",
    "one", "will", "there", "yes", "no", "ok", "build", "deploy", "merge", "review", "lunch",
    "today", "tomorrow", "meeting", "broken", "fixed", "release", "paxos", "leader", "replica",
    "slot", "ballot", "latency", "coffee", "weekend", "thanks", "great", "sure", "maybe", "later",
    "please", "check", "logs", "error", "server", "disk", "memory", "test", "green", "red", "ship",
    "it!",
];

/// Message bodies of one kind, deterministic.
struct Bodies {
    kind: String,
    rng: rand::rngs::StdRng,
    per_client: Vec<String>,
}

impl Bodies {
    fn new(kind: &str) -> Bodies {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let per_client = (0..CLIENTS)
            .map(|_| random_text(&mut rng, BODY_BYTES))
            .collect();
        Bodies {
            kind: kind.to_string(),
            rng,
            per_client,
        }
    }

    fn body(&mut self, slot: u64) -> String {
        match self.kind.as_str() {
            "random" => random_text(&mut self.rng, BODY_BYTES),
            "chat" => {
                let names = ["alice", "bob", "carol", "dave", "erin", "frank"];
                let mut s = format!("{}: ", names[(slot % names.len() as u64) as usize]);
                while s.len() < BODY_BYTES {
                    s.push_str(WORDS[self.rng.gen_range(0..WORDS.len())]);
                    s.push(' ');
                }
                s.truncate(BODY_BYTES);
                s
            }
            _ => self.per_client[(slot % CLIENTS) as usize].clone(),
        }
    }
}

fn random_text(rng: &mut impl Rng, n: usize) -> String {
    rng.sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

fn client_id(slot: u64) -> u64 {
    // Random-looking 64-bit ids, like clients pick.
    (slot % CLIENTS).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1 << 63
}

fn log_value(bodies: &mut Bodies, slot: u64) -> Value {
    Value::Msg {
        id: RequestId {
            client_id: client_id(slot),
            seq: slot / CLIENTS + 1,
        },
        body: bodies.body(slot),
    }
}

/// Child: writes `slots` slots like a replica (each persist: the accepts of a chunk and
/// the decisions of the chunk before), a session checkpoint every 65,536 slots.
fn build(dir: &Path, slots: u64, config: &LogConfig) {
    let mut storage = SledStorage::open_with(dir, 0, 1, config.options()).expect("open");
    let mut bodies = Bodies::new(&config.body);
    let chunk: u64 = env_or("PAXOS_BENCH_CHUNK", 2_000);
    storage
        .persist(&[Record::Promise(Ballot::new(1, 0))])
        .expect("persist");
    let mut pending: Vec<(u64, Value)> = Vec::new();
    let mut start = 0;
    let mut next_checkpoint = paxos::core::SESSIONS_CHECKPOINT_SLOTS;
    let mut records = Vec::new();
    while start < slots || !pending.is_empty() {
        records.clear();
        let end = (start + chunk).min(slots);
        let fresh: Vec<(u64, Value)> = (start..end)
            .map(|s| (s, log_value(&mut bodies, s)))
            .collect();
        for (slot, value) in &fresh {
            records.push(Record::Accepted {
                slot: *slot,
                ballot: Ballot::new(1, 0),
                value: value.clone(),
            });
        }
        for (slot, value) in pending.drain(..) {
            records.push(Record::Decided {
                slot,
                value,
                dup: false,
            });
        }
        // Every slot below `start` is decided by this persist.
        if start >= next_checkpoint {
            let upto = start;
            records.push(Record::SessionsCheckpoint {
                upto,
                sessions: (0..CLIENTS)
                    .map(|c| Session {
                        client_id: client_id(c),
                        seq: upto / CLIENTS,
                        slot: upto - CLIENTS + c,
                    })
                    .collect(),
            });
            next_checkpoint += paxos::core::SESSIONS_CHECKPOINT_SLOTS;
        }
        storage.persist(&records).expect("persist");
        pending = fresh;
        if end / 250_000 != start / 250_000 {
            eprintln!("build: {end} slots, RSS {} MiB", rss_kib() / 1024);
        }
        start = end;
    }
    assert_eq!(storage.decided_upto(), slots);
    let waited = Instant::now();
    let segments_end = storage.wait_segments();
    println!("{segments_end} {}", waited.elapsed().as_secs_f64() * 1e3);
}

/// Child: times open and load, prints `open_ms load_ms tail accepted`.
fn reopen(dir: &Path) {
    let started = Instant::now();
    let storage = SledStorage::open(dir, 0, 1).expect("open");
    let opened = started.elapsed();
    let state = storage.load().expect("load");
    let loaded = started.elapsed() - opened;
    println!(
        "{} {} {} {}",
        opened.as_secs_f64() * 1e3,
        loaded.as_secs_f64() * 1e3,
        state.tail.len(),
        state.accepted.len()
    );
}

fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Child: a sequential scan and random reads, prints
/// `entries scan_s random_reads random_s peak_rss_kib`.
fn scan(dir: &Path) {
    let storage = SledStorage::open(dir, 0, 1).expect("open");
    let log = storage.log_reader();
    let end = log.decided_upto();
    let started = Instant::now();
    let mut next = 0;
    let mut bytes = 0usize;
    while next < end {
        let page = log.read_log(next, 4096, 4 << 20).expect("read_log");
        assert_eq!(page.first().map(|e| e.slot), Some(next));
        next += page.len() as u64;
        bytes += page.iter().map(|e| e.body.len()).sum::<usize>();
    }
    let scan_s = started.elapsed().as_secs_f64();
    assert!(bytes > 0);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let started = Instant::now();
    for _ in 0..RANDOM_READS {
        let from = rng.gen_range(0..end);
        let page = log.read_log(from, 64, 1 << 20).expect("read_log");
        assert_eq!(page[0].slot, from);
    }
    let random_s = started.elapsed().as_secs_f64();
    println!(
        "{next} {scan_s} {RANDOM_READS} {random_s} {}",
        peak_rss_kib()
    );
}

fn child(mode: &str, extra: &[(&str, String)]) -> String {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.env(CHILD_ENV, mode);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("spawn child");
    assert!(
        out.status.success(),
        "child {mode} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

fn dir_size_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        total += if meta.is_dir() {
            dir_size_bytes(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if let Ok(mode) = std::env::var(CHILD_ENV) {
        let dir = std::env::var(DIR_ENV).expect("PAXOS_BENCH_DIR");
        let dir = Path::new(&dir);
        match mode.as_str() {
            "build" => build(
                dir,
                env_or(SLOTS_ENV, 1_000_000),
                &LogConfig::parse(&std::env::var(CONFIG_ENV).expect("config")),
            ),
            "reopen" => reopen(dir),
            "scan" => scan(dir),
            other => panic!("unknown child mode {other}"),
        }
        return;
    }

    let secs: f64 = env_or("PAXOS_BENCH_SECS", 2.0);
    let slot_counts: Vec<u64> = std::env::var("PAXOS_BENCH_SLOTS")
        .unwrap_or_else(|_| "1000000".to_string())
        .split(',')
        .map(|n| n.trim().parse().expect("PAXOS_BENCH_SLOTS: numbers"))
        .collect();
    let configs: Vec<String> = std::env::var("PAXOS_BENCH_LOGS")
        .unwrap_or_else(|_| "zstd:random,none:random,zstd:chat,none:chat,zstd:bench".to_string())
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();

    let mut rows = Vec::new();
    if secs > 0.0 {
        println!(
            "durable throughput (Accepted, {BODY_BYTES}-byte body, flush + sync_data per call)"
        );
        println!(
            "{:>6} {:>14} {:>12} {:>14}",
            "batch", "records/s", "flushes/s", "ms/persist"
        );
        for batch in [1, 10, 100, 1000] {
            let t = throughput(batch, Duration::from_secs_f64(secs));
            let flushes = t.records as f64 / t.batch as f64;
            println!(
                "{:>6} {:>14.0} {:>12.0} {:>14.3}",
                t.batch,
                t.records as f64 / t.secs,
                flushes / t.secs,
                t.secs * 1e3 / flushes
            );
            rows.push(t);
        }
    }
    let mut logs = Vec::new();
    for &slots in &slot_counts {
        for config in &configs {
            logs.push(log_bench(slots, config));
        }
    }

    let json = serde_json::json!({
        "bench": "storage",
        "body_bytes": BODY_BYTES,
        "throughput": rows.iter().map(|t| serde_json::json!({
            "batch": t.batch,
            "records_per_s": (t.records as f64 / t.secs).round(),
        })).collect::<Vec<_>>(),
        "logs": logs,
    });
    println!("{json}");
}

fn numbers(out: &str) -> Vec<f64> {
    out.split_whitespace()
        .map(|x| x.parse().expect("number"))
        .collect()
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Builds a log of `slots` slots in a child, then reopens and reads it in fresh children.
fn log_bench(slots: u64, config: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir_str = dir.path().to_string_lossy().into_owned();
    let build_started = Instant::now();
    let built = numbers(&child(
        "build",
        &[
            (DIR_ENV, dir_str.clone()),
            (SLOTS_ENV, slots.to_string()),
            (CONFIG_ENV, config.to_string()),
        ],
    ));
    let build_secs = build_started.elapsed().as_secs_f64();
    let segments_end = built[0] as u64;
    let disk_bytes = dir_size_bytes(dir.path());
    let segment_bytes = dir_size_bytes(&dir.path().join(SEGMENT_DIR));
    let payload = slots as f64 * (BODY_BYTES + 24) as f64;
    let mut runs = Vec::new();
    for _ in 0..REOPEN_RUNS {
        let f = numbers(&child("reopen", &[(DIR_ENV, dir_str.clone())]));
        runs.push((f[0], f[1], f[2]));
    }
    runs.sort_by(|a, b| (a.0 + a.1).total_cmp(&(b.0 + b.1)));
    let (open_ms, load_ms, tail) = runs[runs.len() / 2];
    let s = numbers(&child("scan", &[(DIR_ENV, dir_str.clone())]));
    let (entries, scan_s, reads, random_s, rss_kib) = (s[0], s[1], s[2], s[3], s[4]);
    println!();
    println!(
        "log {config}, {slots} slots: built in {build_secs:.1} s; disk {:.1} MiB = {:.1} bytes/msg = {:.2}x payload (segments {:.1} MiB, sled {:.1} MiB; slots 0..{segments_end} in segments)",
        disk_bytes as f64 / (1 << 20) as f64,
        disk_bytes as f64 / slots as f64,
        disk_bytes as f64 / payload,
        segment_bytes as f64 / (1 << 20) as f64,
        (disk_bytes - segment_bytes) as f64 / (1 << 20) as f64,
    );
    println!(
        "  reopen (median of {REOPEN_RUNS}): open {open_ms:.1} ms + load {load_ms:.1} ms ({tail} tail entries); scan {:.0} entries/s; random read_log(.., 64) {:.0} reads/s; reader peak RSS {:.0} MiB",
        entries / scan_s,
        reads / random_s,
        rss_kib / 1024.0
    );
    serde_json::json!({
        "config": config,
        "slots": slots,
        "disk_bytes": disk_bytes,
        "segment_bytes": segment_bytes,
        "bytes_per_msg": round1(disk_bytes as f64 / slots as f64),
        "x_payload": (disk_bytes as f64 / payload * 100.0).round() / 100.0,
        "open_ms": round1(open_ms),
        "load_ms": round1(load_ms),
        "tail_entries": tail,
        "scan_entries_per_s": (entries / scan_s).round(),
        "random_reads_per_s": (reads / random_s).round(),
        "reader_peak_rss_mib": round1(rss_kib / 1024.0),
        "build_s": round1(build_secs),
    })
}

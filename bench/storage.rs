//! Storage benchmark (`cargo bench --bench storage`): durable records/s through
//! `SledStorage::persist` at batch sizes 1, 10, 100 and 1000 (Accepted records with a
//! 100-byte body, each call flushed and `sync_data`ed), and the time to reopen
//! (`open` + `load`) a store holding 1M log slots (and 500k).
//!
//! The reopen path reads the checkpoint segments (flat files caching the decided log) and
//! then only the sled tail. The build child waits for the background segment writer
//! (`SledStorage::wait_checkpoints`) before it exits, so every reopen measured sees all
//! the segments the store will have; a full sled scan (`load_full`, the pre-segment path)
//! and a raw sled walk are measured once per store for comparison.
//!
//! The big store is built and reopened by child processes (this binary re-executed with
//! `PAXOS_BENCH_CHILD` set), so every reopen starts in a fresh process with sled's file
//! lock released, like a restarted daemon. Prints a table and one JSON line.
//!
//! Environment: `PAXOS_BENCH_SECS` (seconds per batch size, default 2),
//! `PAXOS_BENCH_SLOTS` (slots of each reopen store, comma-separated, default
//! `1000000,500000`).

use paxos::core::{Ballot, Record, RequestId, Value};
use paxos::storage::sled_store::SledStorage;
use paxos::storage::Storage;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "PAXOS_BENCH_CHILD";
const DIR_ENV: &str = "PAXOS_BENCH_DIR";
const BODY_BYTES: usize = 100;
const REOPEN_RUNS: usize = 3;

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
    // Warm up (tree creation, first segments).
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

/// Child: writes `slots` slots, each an Accepted and a Decided record, like a replica's log.
fn build(dir: &Path, slots: u64) {
    let mut storage = SledStorage::open(dir, 0, 1).expect("open");
    let chunk = 5_000u64;
    let mut records = Vec::with_capacity(2 * chunk as usize);
    let mut start = 0;
    storage
        .persist(&[Record::Promise(Ballot::new(1, 0))])
        .expect("persist");
    while start < slots {
        let end = (start + chunk).min(slots);
        records.clear();
        for slot in start..end {
            records.push(accepted(slot));
            records.push(Record::Decided {
                slot,
                value: value(slot),
            });
        }
        storage.persist(&records).expect("persist");
        start = end;
    }
    let waited = Instant::now();
    let segments_end = storage.wait_checkpoints();
    println!("{segments_end} {}", waited.elapsed().as_secs_f64() * 1e3);
}

/// Child: times open and a full sled scan (no segments), prints `open_ms load_ms`.
fn full(dir: &Path) {
    let started = Instant::now();
    let storage = SledStorage::open(dir, 0, 1).expect("open");
    let opened = started.elapsed();
    let state = storage.load_full().expect("load_full");
    let loaded = started.elapsed() - opened;
    assert!(!state.decided.is_empty());
    println!(
        "{} {}",
        opened.as_secs_f64() * 1e3,
        loaded.as_secs_f64() * 1e3
    );
}

/// Child: times open and load, prints `open_ms load_ms accepted decided`.
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
        state.accepted.len(),
        state.decided.len()
    );
}

/// Child: opens sled directly and only walks the two slot trees (no crc, no decode),
/// prints `open_ms scan_ms`: the floor under `load`.
fn scan(dir: &Path) {
    let started = Instant::now();
    let db = sled::Config::new().path(dir).open().expect("open");
    let opened = started.elapsed();
    let mut bytes = 0usize;
    for name in ["accepted", "decided"] {
        let tree = db.open_tree(name).expect("tree");
        for kv in tree.iter() {
            let (k, v) = kv.expect("kv");
            bytes += k.len() + v.len();
        }
    }
    let scanned = started.elapsed() - opened;
    assert!(bytes > 0);
    println!(
        "{} {}",
        opened.as_secs_f64() * 1e3,
        scanned.as_secs_f64() * 1e3
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
        match mode.as_str() {
            "build" => build(
                Path::new(&dir),
                env_or("PAXOS_BENCH_BUILD_SLOTS", 1_000_000),
            ),
            "reopen" => reopen(Path::new(&dir)),
            "full" => full(Path::new(&dir)),
            "scan" => scan(Path::new(&dir)),
            other => panic!("unknown child mode {other}"),
        }
        return;
    }

    let secs: f64 = env_or("PAXOS_BENCH_SECS", 2.0);
    let slot_counts: Vec<u64> = std::env::var("PAXOS_BENCH_SLOTS")
        .unwrap_or_else(|_| "1000000,500000".to_string())
        .split(',')
        .map(|n| n.trim().parse().expect("PAXOS_BENCH_SLOTS: numbers"))
        .collect();

    println!("durable throughput (Accepted, {BODY_BYTES}-byte body, flush + sync_data per call)");
    println!(
        "{:>6} {:>14} {:>12} {:>14}",
        "batch", "records/s", "flushes/s", "ms/persist"
    );
    let mut rows = Vec::new();
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
    let reopens: Vec<serde_json::Value> = slot_counts.iter().map(|&n| reopen_bench(n)).collect();

    let json = serde_json::json!({
        "bench": "storage",
        "body_bytes": BODY_BYTES,
        "throughput": rows.iter().map(|t| serde_json::json!({
            "batch": t.batch,
            "records_per_s": (t.records as f64 / t.secs).round(),
        })).collect::<Vec<_>>(),
        "reopen": reopens,
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

/// Builds a store of `slots` slots in a child, then reopens it in fresh children.
fn reopen_bench(slots: u64) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir_str = dir.path().to_string_lossy().into_owned();
    let build_started = Instant::now();
    let built = numbers(&child(
        "build",
        &[
            (DIR_ENV, dir_str.clone()),
            ("PAXOS_BENCH_BUILD_SLOTS", slots.to_string()),
        ],
    ));
    let build_secs = build_started.elapsed().as_secs_f64();
    let (segments_end, writer_wait_ms) = (built[0] as u64, built[1]);
    let disk_bytes = dir_size_bytes(dir.path());
    let segment_bytes =
        dir_size_bytes(&dir.path().join(paxos::storage::sled_store::CHECKPOINT_DIR));
    let mut runs = Vec::new();
    for _ in 0..REOPEN_RUNS {
        let f = numbers(&child("reopen", &[(DIR_ENV, dir_str.clone())]));
        assert_eq!(f[3] as u64, slots, "decided entries after reopen");
        assert_eq!(
            f[2] as u64,
            slots - segments_end + u64::from(segments_end > 0),
            "accepted entries after reopen (those of checkpointed slots are dropped, but the \
             one at meta/accepted_max, slot 0)"
        );
        runs.push((f[0], f[1]));
    }
    let full_ms = numbers(&child("full", &[(DIR_ENV, dir_str.clone())]));
    let scan_ms = numbers(&child("scan", &[(DIR_ENV, dir_str.clone())]));
    runs.sort_by(|a, b| (a.0 + a.1).total_cmp(&(b.0 + b.1)));
    let (open_ms, load_ms) = runs[runs.len() / 2];
    println!();
    println!(
        "reopen: {slots} slots ({slots} accepted + {slots} decided entries), built in {build_secs:.1} s, {:.0} MiB on disk ({:.0} MiB of segments)",
        disk_bytes as f64 / (1 << 20) as f64,
        segment_bytes as f64 / (1 << 20) as f64
    );
    println!(
        "waited {writer_wait_ms:.0} ms for the background segment writer before measuring: slots 0..{segments_end} are in segments, {} in the sled tail",
        slots - segments_end
    );
    println!(
        "{:>5} {:>10} {:>10} {:>10}",
        "run", "open ms", "load ms", "total ms"
    );
    for (i, (o, l)) in runs.iter().enumerate() {
        println!("{:>5} {:>10.1} {:>10.1} {:>10.1}", i, o, l, o + l);
    }
    println!(
        "full sled scan (load_full, no segments): open {:.1} ms + load {:.1} ms = {:.1} ms",
        full_ms[0],
        full_ms[1],
        full_ms[0] + full_ms[1]
    );
    println!(
        "floor of a sled scan (raw sled open + iterate both trees, no crc/decode): open {:.1} ms + scan {:.1} ms",
        scan_ms[0], scan_ms[1]
    );
    println!(
        "median: open {open_ms:.1} ms + load {load_ms:.1} ms = {:.1} ms",
        open_ms + load_ms
    );
    serde_json::json!({
        "slots": slots,
        "entries": 2 * slots,
        "segments_end": segments_end,
        "open_ms": round1(open_ms),
        "load_ms": round1(load_ms),
        "total_ms": round1(open_ms + load_ms),
        "full_scan_total_ms": round1(full_ms[0] + full_ms[1]),
        "disk_bytes": disk_bytes,
        "segment_bytes": segment_bytes,
        "raw_scan_ms": round1(scan_ms[1]),
    })
}

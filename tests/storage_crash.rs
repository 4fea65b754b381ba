//! `kill -9` against the sled backend: a child process announces each batch id before it
//! calls `persist` (`BEGIN id`) and acknowledges it once `persist` has returned (`ACK id`);
//! the parent SIGKILLs it at random instants, reopens the store and checks that every
//! acknowledged record is there and intact, that nothing beyond the highest batch ever
//! begun appeared, that the applied log reads back as slots `0..decided_upto` exactly
//! once each with the value and kind written (no slot lost, doubled or changed), and that
//! the promise never went backwards.
//!
//! The child seals a segment every `SEGMENT_SLOTS` slots (a few batches), so the segment
//! writer (read sled, write `.tmp`, fsync, rename, fsync dir, register, delete from sled)
//! and the compaction of sled (accepts deleted by decisions, sealed slots deleted) run all
//! the time. In every other trial the writer also sleeps `PAUSE_MS` between its steps, so
//! the kill lands inside it; the parent counts kills that left a `.tmp` behind and
//! requires some.
//!
//! A batch that was begun but not acknowledged may or may not be in the store (a crash
//! inside `persist` keeps any prefix of it). The child resumes after what its store holds.
//!
//! The child is this very test binary, re-executed with `CHILD_ENV` set and told to run
//! only `crash_child` (works under `cargo test` and nextest). Replay a run with
//! `PAXOS_CRASH_SEED=<seed>`.

use paxos::core::{Ballot, LogEntry, LogEntryKind, Record, RequestId, Session, Slot, Uid, Value};
use paxos::storage::sled_store::{
    open_offline, Compression, SledStorage, StoreMeta, StoreOptions, SEGMENT_DIR,
};
use paxos::storage::{LogRead, PersistentState, Storage};
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "PAXOS_STORAGE_CRASH_CHILD_DIR";
const PAUSE_ENV: &str = "PAXOS_STORAGE_CRASH_PAUSE_MS";
const UID: Uid = 1;
const CLUSTER_ID: u64 = 7;
const SLOTS_PER_BATCH: u64 = 8;
const TRIALS: usize = 24;
const SEGMENT_SLOTS: u64 = 32;
const PAUSE_MS: u64 = 15;
/// A session checkpoint every this many batches.
const CHECKPOINT_EVERY: u64 = 3;

fn options(pause_ms: u64) -> StoreOptions {
    StoreOptions {
        segment_slots: SEGMENT_SLOTS,
        block_slots: 5,
        compression: Compression::Zstd(1),
        segment_pause_ms: pause_ms,
        ..StoreOptions::default()
    }
}

fn ballot_of(batch: u64) -> Ballot {
    Ballot::new(batch / 4 + 1, UID)
}

fn is_noop(slot: Slot) -> bool {
    slot % 13 == 5
}

/// Every tenth slot repeats the request of the slot before (a retry applied twice).
fn dup_of(slot: Slot) -> bool {
    !is_noop(slot) && slot % 10 == 9
}

fn value_of(slot: Slot) -> Value {
    if is_noop(slot) {
        return Value::Noop;
    }
    let seq = if slot % 10 == 9 { slot } else { slot + 1 };
    Value::Msg {
        id: RequestId { client_id: 1, seq },
        body: format!("message {seq} {}", "x".repeat((seq % 64) as usize)),
    }
}

/// The session table the child checkpoints at `upto` (a function of `upto` alone).
fn sessions_at(upto: Slot) -> Vec<Session> {
    vec![Session {
        client_id: 1,
        seq: upto,
        slot: upto.saturating_sub(1),
    }]
}

/// Batch `id`: a promise (rising every 4 batches), the accepts of its own slots, the
/// decisions for the previous batch's slots and, every few batches, a session
/// checkpoint at the end of those decisions.
fn batch_records(id: u64) -> Vec<Record> {
    let mut records = vec![Record::Promise(ballot_of(id))];
    for slot in id * SLOTS_PER_BATCH..(id + 1) * SLOTS_PER_BATCH {
        records.push(Record::Accepted {
            slot,
            ballot: ballot_of(id),
            value: value_of(slot),
        });
    }
    if id > 0 {
        for slot in (id - 1) * SLOTS_PER_BATCH..id * SLOTS_PER_BATCH {
            records.push(Record::Decided {
                slot,
                value: value_of(slot),
                dup: dup_of(slot),
            });
        }
        if id.is_multiple_of(CHECKPOINT_EVERY) {
            let upto = id * SLOTS_PER_BATCH;
            records.push(Record::SessionsCheckpoint {
                upto,
                sessions: sessions_at(upto),
            });
        }
    }
    records
}

/// The child: resumes after what the store holds and writes until killed, announcing
/// each batch before persisting it and acknowledging it after.
fn run_child(dir: &Path, pause_ms: u64) {
    let mut storage =
        SledStorage::open_with(dir, UID, CLUSTER_ID, options(pause_ms)).expect("child: open");
    let state = storage.load().expect("child: load");
    let decided = state.decided_upto;
    let mut id = match state.accepted.keys().next_back() {
        Some(slot) => slot / SLOTS_PER_BATCH + 1,
        None => decided / SLOTS_PER_BATCH,
    };
    // Like a recovering replica, decide what was accepted but left undecided below the
    // next batch's decisions, so the applied log stays contiguous.
    let below = id.saturating_sub(1) * SLOTS_PER_BATCH;
    let catch_up: Vec<Record> = (decided..below)
        .map(|slot| {
            assert!(
                state.accepted.contains_key(&slot),
                "child: no accept at {slot}"
            );
            Record::Decided {
                slot,
                value: value_of(slot),
                dup: dup_of(slot),
            }
        })
        .collect();
    storage.persist(&catch_up).expect("child: persist");
    let mut out = std::io::stdout().lock();
    loop {
        writeln!(out, "BEGIN {id}").expect("child: stdout");
        out.flush().expect("child: stdout");
        storage.persist(&batch_records(id)).expect("child: persist");
        writeln!(out, "ACK {id}").expect("child: stdout");
        out.flush().expect("child: stdout");
        id += 1;
    }
}

/// Runs only as the re-executed child (a no-op in a normal test run).
#[test]
fn crash_child() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        let pause = std::env::var(PAUSE_ENV)
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        run_child(Path::new(&dir), pause);
    }
}

/// What the child said on stdout.
enum Said {
    Begin(u64),
    Ack(u64),
}

/// Reads the whole applied log in pages of random sizes.
fn read_whole(log: &impl LogRead, rng: &mut impl Rng) -> Vec<LogEntry> {
    let mut out: Vec<LogEntry> = Vec::new();
    loop {
        let page = log
            .read_log(out.len() as u64, rng.gen_range(1..300), usize::MAX)
            .unwrap();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// Checks the reopened store against everything acknowledged so far and the highest batch
/// ever begun (`None`: none).
fn verify(
    state: &PersistentState,
    log: &[LogEntry],
    acked: &BTreeSet<u64>,
    begun: Option<u64>,
    trial: usize,
) {
    let decided = state.decided_upto;
    for &id in acked {
        assert!(
            state.promised >= Some(ballot_of(id)),
            "trial {trial}: promise {:?} is below acknowledged batch {id}'s {}",
            state.promised,
            ballot_of(id)
        );
        for slot in id * SLOTS_PER_BATCH..(id + 1) * SLOTS_PER_BATCH {
            assert!(
                slot < decided || state.accepted.contains_key(&slot),
                "trial {trial}: acknowledged accept at slot {slot} (batch {id}) is missing"
            );
        }
        assert!(
            id * SLOTS_PER_BATCH <= decided,
            "trial {trial}: acknowledged decisions of batch {id} are missing (decided_upto {decided})"
        );
    }
    assert!(
        decided <= begun.map_or(0, |b| b * SLOTS_PER_BATCH),
        "trial {trial}: decided_upto {decided} is beyond what the highest batch begun, {begun:?}, decides"
    );
    for (slot, (ballot, value)) in &state.accepted {
        let batch = slot / SLOTS_PER_BATCH;
        assert!(
            *slot >= decided,
            "trial {trial}: accept of applied slot {slot} loaded"
        );
        assert!(
            begun.is_some_and(|b| batch <= b),
            "trial {trial}: slot {slot} (batch {batch}) is beyond the highest batch begun, {begun:?}"
        );
        assert_eq!(
            *ballot,
            ballot_of(batch),
            "trial {trial}: ballot at slot {slot}"
        );
        assert_eq!(
            *value,
            value_of(*slot),
            "trial {trial}: accepted value at slot {slot}"
        );
    }
    // The applied log: every slot once, in order, as written.
    assert_eq!(log.len() as u64, decided, "trial {trial}: log length");
    for (i, entry) in log.iter().enumerate() {
        let slot = i as u64;
        assert_eq!(entry.slot, slot, "trial {trial}: slot order");
        assert_eq!(
            entry.value(),
            value_of(slot),
            "trial {trial}: value at slot {slot}"
        );
        let kind = if is_noop(slot) {
            LogEntryKind::Noop
        } else if dup_of(slot) {
            LogEntryKind::Dup
        } else {
            LogEntryKind::Msg
        };
        assert_eq!(entry.kind, kind, "trial {trial}: kind at slot {slot}");
    }
    // The session checkpoint, and the tail after it.
    let at = state.sessions_upto;
    assert!(
        at <= decided,
        "trial {trial}: checkpoint {at} past {decided}"
    );
    if at > 0 {
        assert_eq!(
            state.sessions,
            sessions_at(at),
            "trial {trial}: sessions at {at}"
        );
        assert_eq!(
            at % (SLOTS_PER_BATCH * CHECKPOINT_EVERY),
            0,
            "trial {trial}: {at}"
        );
    }
    // The tail is for the session replay: loaded without bodies.
    let expected_tail: Vec<LogEntry> = log[at as usize..]
        .iter()
        .map(|e| LogEntry {
            body: String::new(),
            ..e.clone()
        })
        .collect();
    assert_eq!(
        state.tail, expected_tail,
        "trial {trial}: tail after the checkpoint"
    );
    if let Some(p) = state.promised {
        assert!(
            begun.is_some_and(|b| p <= ballot_of(b)),
            "trial {trial}: promise {p} from the future (highest batch begun: {begun:?})"
        );
    }
}

/// sled releases its file lock only once its background threads let go of a dropped store;
/// wait for that so the next child does not race this process for the lock.
fn wait_until_unlocked(dir: &Path) {
    let file = std::fs::File::open(dir.join("db")).unwrap();
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => {
                file.unlock().unwrap();
                return;
            }
            Err(_) if started.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("store still locked 10 s after the check: {e}"),
        }
    }
}

fn files_ending(dir: &Path, suffix: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn kill_9_loses_no_acknowledged_record() {
    let seed: u64 = std::env::var("PAXOS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("storage_crash seed: {seed} (replay with PAXOS_CRASH_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let segments = dir.path().join(SEGMENT_DIR);
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();

    let mut acked: BTreeSet<u64> = BTreeSet::new();
    let mut begun: Option<u64> = None;
    let mut last_promised: Option<Ballot> = None;
    let mut kills_after_acks = 0;
    let mut kills_mid_segment = 0;
    for trial in 0..TRIALS {
        let pause_ms = if trial % 2 == 1 { PAUSE_MS } else { 0 };
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_ENV, dir.path())
            .env(PAUSE_ENV, pause_ms.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<Said>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // The test harness prints "test crash_child ... " without a newline
                // before the child's first line: find the word, not a line prefix.
                let after = |word: &str| {
                    line.find(word)
                        .map(|at| line[at + word.len()..].trim().parse::<u64>().unwrap())
                };
                let said = if let Some(id) = after("ACK ") {
                    Said::Ack(id)
                } else if let Some(id) = after("BEGIN ") {
                    Said::Begin(id)
                } else {
                    continue;
                };
                if tx.send(said).is_err() {
                    break;
                }
            }
        });
        // Random instants: some during startup and recovery (timed from the spawn), most
        // mid-stream (timed from the first acknowledgement).
        let mut said = Vec::new();
        let when = if rng.gen_bool(0.15) {
            let delay_ms = rng.gen_range(0..40);
            std::thread::sleep(Duration::from_millis(delay_ms));
            format!("{delay_ms} ms after spawn")
        } else {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(Said::Ack(id)) => {
                        said.push(Said::Ack(id));
                        break;
                    }
                    Ok(begin) => said.push(begin),
                    Err(e) => panic!("trial {trial}: no acknowledgement from the child: {e}"),
                }
            }
            let delay_ms = rng.gen_range(0..250);
            std::thread::sleep(Duration::from_millis(delay_ms));
            format!("{delay_ms} ms after the first ack")
        };
        if let Ok(Some(status)) = child.try_wait() {
            panic!("trial {trial}: child exited on its own: {status}");
        }
        child.kill().unwrap(); // SIGKILL on unix
        child.wait().unwrap();
        reader.join().unwrap();
        said.extend(rx.try_iter());
        let tmp_files = files_ending(&segments, ".tmp");
        if tmp_files > 0 {
            kills_mid_segment += 1;
        }
        let mut ids = Vec::new();
        for s in said {
            match s {
                Said::Begin(id) => begun = begun.max(Some(id)),
                Said::Ack(id) => ids.push(id),
            }
        }
        if !ids.is_empty() {
            kills_after_acks += 1;
        }
        acked.extend(ids.iter().copied());

        // Reopen the way the daemon does, or the way `paxosctl dump-log` does.
        let (state, log) = if trial % 3 != 2 {
            let storage = SledStorage::open_with(dir.path(), UID, CLUSTER_ID, options(0)).unwrap();
            let state = storage.load().unwrap();
            let log = read_whole(&storage.log_reader(), &mut rng);
            (state, log)
        } else {
            let store = open_offline(dir.path()).unwrap();
            assert_eq!(
                store.meta(),
                StoreMeta {
                    uid: UID,
                    cluster_id: CLUSTER_ID
                }
            );
            let state = store.load().unwrap();
            let log = read_whole(&store.log(), &mut rng);
            (state, log)
        };
        verify(&state, &log, &acked, begun, trial);
        assert!(
            state.promised >= last_promised,
            "trial {trial}: promise went backwards from {last_promised:?} to {:?}",
            state.promised
        );
        last_promised = state.promised;
        wait_until_unlocked(dir.path());
        eprintln!(
            "trial {trial}: killed {when} (segment pause {pause_ms} ms), {} batches acknowledged this run, {} in total, {} applied slots, {} segments, {tmp_files} .tmp left by the kill",
            ids.len(),
            acked.len(),
            state.decided_upto,
            files_ending(&segments, ".seg"),
        );
    }
    assert!(
        kills_after_acks >= TRIALS / 2,
        "only {kills_after_acks} of {TRIALS} children acknowledged anything before the kill"
    );
    assert!(
        kills_mid_segment >= 1,
        "no kill landed while a segment was being written"
    );
    assert!(
        files_ending(&segments, ".seg") >= 4,
        "too few segments sealed to exercise them"
    );
    eprintln!(
        "storage_crash: {TRIALS} kills, {} batches acknowledged, {kills_mid_segment} kills inside a segment write, {:.1} s",
        acked.len(),
        started.elapsed().as_secs_f64()
    );
}

// ---- The bulk path: long runs of applied entries written straight into segments --------

const BULK_CHILD_ENV: &str = "PAXOS_STORAGE_CRASH_BULK_CHILD_DIR";
const BULK_SEGMENT_SLOTS: u64 = 96;
const BULK_MIN: usize = 24;

fn bulk_options(pause_ms: u64) -> StoreOptions {
    StoreOptions {
        segment_slots: BULK_SEGMENT_SLOTS,
        block_slots: 5,
        compression: Compression::Zstd(1),
        bulk_min_entries: BULK_MIN,
        segment_pause_ms: pause_ms,
        ..StoreOptions::default()
    }
}

/// Applied entries of bulk batch `id`: catch-up chunks (40, opening or extending the open
/// segment), and short runs that end it (3 and 2, below a quarter of `BULK_MIN`) or go to
/// sled (8), so every transition between sled and the bulk path is crossed.
fn bulk_size(id: u64) -> u64 {
    [40, 40, 40, 3, 8, 40, 2, 8, 8][(id % 9) as usize]
}

/// First slot of bulk batch `id`.
fn bulk_start(id: u64) -> Slot {
    let cycle: u64 = (0..9).map(bulk_size).sum();
    (id / 9) * cycle + (0..id % 9).map(bulk_size).sum::<u64>()
}

/// Bulk batch `id`: the Decided records of its slots, a promise, and every third batch a
/// session checkpoint at its end (so sled is written after the bulk append).
fn bulk_records(id: u64) -> Vec<Record> {
    let (from, to) = (bulk_start(id), bulk_start(id + 1));
    let mut records = vec![Record::Promise(ballot_of(id))];
    records.extend((from..to).map(|slot| Record::Decided {
        slot,
        value: value_of(slot),
        dup: dup_of(slot),
    }));
    if id.is_multiple_of(CHECKPOINT_EVERY) {
        records.push(Record::SessionsCheckpoint {
            upto: to,
            sessions: sessions_at(to),
        });
    }
    records
}

/// The bulk child: resumes at the batch holding its store's end (a crash may keep part of
/// a batch: the store drops the slots it already holds) and writes until killed.
fn run_bulk_child(dir: &Path, pause_ms: u64) {
    let mut storage =
        SledStorage::open_with(dir, UID, CLUSTER_ID, bulk_options(pause_ms)).expect("child: open");
    let decided = storage.load().expect("child: load").decided_upto;
    let mut id = 0;
    while bulk_start(id + 1) <= decided {
        id += 1;
    }
    let mut out = std::io::stdout().lock();
    loop {
        writeln!(out, "BEGIN {id}").expect("child: stdout");
        out.flush().expect("child: stdout");
        storage.persist(&bulk_records(id)).expect("child: persist");
        writeln!(out, "ACK {id}").expect("child: stdout");
        out.flush().expect("child: stdout");
        id += 1;
    }
}

/// Runs only as the re-executed bulk child (a no-op in a normal test run).
#[test]
fn crash_bulk_child() {
    if let Some(dir) = std::env::var_os(BULK_CHILD_ENV) {
        let pause = std::env::var(PAUSE_ENV)
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        run_bulk_child(Path::new(&dir), pause);
    }
}

/// `kill -9` while catch-up-sized runs go through the bulk path (open segment append,
/// fdatasync, seal into a segment, removal of the open file, the sled tail sealed by
/// `persist` when a run begins): every acknowledged slot is there, once, as written, and
/// nothing beyond the highest batch begun.
#[test]
fn kill_9_during_bulk_writes_loses_no_acknowledged_entry() {
    let seed: u64 = std::env::var("PAXOS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("storage_crash bulk seed: {seed} (replay with PAXOS_CRASH_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let segments = dir.path().join(SEGMENT_DIR);
    let exe = std::env::current_exe().unwrap();
    let mut acked_upto: Slot = 0;
    let mut begun: Option<u64> = None;
    let mut kills_with_open = 0;
    for trial in 0..TRIALS {
        let pause_ms = if trial % 2 == 1 { PAUSE_MS } else { 0 };
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_bulk_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(BULK_CHILD_ENV, dir.path())
            .env(PAUSE_ENV, pause_ms.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<Said>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let after = |word: &str| {
                    line.find(word)
                        .map(|at| line[at + word.len()..].trim().parse::<u64>().unwrap())
                };
                let said = if let Some(id) = after("ACK ") {
                    Said::Ack(id)
                } else if let Some(id) = after("BEGIN ") {
                    Said::Begin(id)
                } else {
                    continue;
                };
                if tx.send(said).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut said = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Said::Ack(id)) => {
                    said.push(Said::Ack(id));
                    break;
                }
                Ok(begin) => said.push(begin),
                Err(e) => panic!("trial {trial}: no acknowledgement from the child: {e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..200)));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        said.extend(rx.try_iter());
        let open_files = files_ending(&segments, ".open") + files_ending(&segments, ".tmp");
        if open_files > 0 {
            kills_with_open += 1;
        }
        for s in said {
            match s {
                Said::Begin(id) => begun = begun.max(Some(id)),
                Said::Ack(id) => acked_upto = acked_upto.max(bulk_start(id + 1)),
            }
        }
        let (state, log) = if trial % 3 != 2 {
            let storage =
                SledStorage::open_with(dir.path(), UID, CLUSTER_ID, bulk_options(0)).unwrap();
            let state = storage.load().unwrap();
            let log = read_whole(&storage.log_reader(), &mut rng);
            (state, log)
        } else {
            let store = open_offline(dir.path()).unwrap();
            let state = store.load().unwrap();
            let log = read_whole(&store.log(), &mut rng);
            (state, log)
        };
        let decided = state.decided_upto;
        assert!(
            decided >= acked_upto,
            "trial {trial}: acknowledged slots below {acked_upto} are missing (decided_upto {decided})"
        );
        let begun_end = begun.map_or(0, |b| bulk_start(b + 1));
        assert!(
            decided <= begun_end,
            "trial {trial}: decided_upto {decided} beyond the highest batch begun (ends at {begun_end})"
        );
        assert_eq!(log.len() as u64, decided, "trial {trial}: log length");
        for (i, entry) in log.iter().enumerate() {
            let slot = i as u64;
            assert_eq!(entry.slot, slot, "trial {trial}: slot order");
            assert_eq!(
                entry.value(),
                value_of(slot),
                "trial {trial}: value at {slot}"
            );
            assert_eq!(
                entry.kind == LogEntryKind::Dup,
                dup_of(slot),
                "trial {trial}: kind at {slot}"
            );
        }
        let at = state.sessions_upto;
        assert!(
            at <= decided,
            "trial {trial}: checkpoint {at} past {decided}"
        );
        if at > 0 {
            assert_eq!(
                state.sessions,
                sessions_at(at),
                "trial {trial}: sessions at {at}"
            );
        }
        assert_eq!(
            state.tail.len() as u64,
            decided - at,
            "trial {trial}: tail after the checkpoint"
        );
        wait_until_unlocked(dir.path());
        eprintln!(
            "trial {trial}: segment pause {pause_ms} ms, {decided} applied slots (acknowledged up to {acked_upto}), {} segments, {open_files} .open/.tmp left by the kill",
            files_ending(&segments, ".seg"),
        );
    }
    assert!(
        kills_with_open >= TRIALS / 4,
        "only {kills_with_open} of {TRIALS} kills left an open segment or a .tmp: the bulk path was not exercised"
    );
    assert!(
        files_ending(&segments, ".seg") >= 4,
        "too few segments sealed to exercise them"
    );
}

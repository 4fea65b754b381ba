//! `kill -9` against the sled backend: a child process announces each batch id before it
//! calls `persist` (`BEGIN id`) and acknowledges it once `persist` has returned (`ACK id`);
//! the parent SIGKILLs it at random instants, reopens the store and checks that every
//! acknowledged record is there and intact, that nothing beyond the highest batch ever
//! begun appeared, and that the promised ballot never went backwards.
//!
//! A batch that was begun but not acknowledged may or may not be in the store (a crash
//! inside `persist` keeps any prefix of it). The child resumes after the highest batch in
//! its store, which can be such an unacknowledged one, so "the batch in flight" is not
//! "the last acknowledged batch + 1": the parent bounds the store by what was begun.
//!
//! The child writes checkpoint segments of `SEGMENT_SLOTS` slots (a few batches each), so
//! kills also land while a segment is being written; the parent checks the checkpointed
//! load (`load`, `read_offline`) against a full sled scan (`load_full`).
//!
//! The child is this very test binary, re-executed with `CHILD_ENV` set and told to run
//! only `crash_child` (works under `cargo test` and nextest). Replay a run with
//! `PAXOS_CRASH_SEED=<seed>`.

use paxos::core::{Ballot, Record, RequestId, Slot, Uid, Value};
use paxos::storage::sled_store::{read_offline, SledStorage, StoreMeta, StoreOptions};
use paxos::storage::{PersistentState, Storage};
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "PAXOS_STORAGE_CRASH_CHILD_DIR";
const UID: Uid = 1;
const CLUSTER_ID: u64 = 7;
const SLOTS_PER_BATCH: u64 = 8;
const TRIALS: usize = 24;
const SEGMENT_SLOTS: u64 = 32;

fn options() -> StoreOptions {
    StoreOptions {
        segment_slots: SEGMENT_SLOTS,
    }
}

fn ballot_of(batch: u64) -> Ballot {
    Ballot::new(batch / 4 + 1, UID)
}

fn value_of(slot: Slot) -> Value {
    Value::Msg {
        id: RequestId {
            client_id: 1,
            seq: slot,
        },
        body: format!(
            "message at slot {slot} {}",
            "x".repeat((slot % 64) as usize)
        ),
    }
}

/// Batch `id`: a promise (rising every 4 batches), the accepts of its own slots and the
/// decisions for the previous batch's slots.
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
            });
        }
    }
    records
}

/// The child: resumes after the highest batch in the store and writes until killed,
/// announcing each batch before persisting it and acknowledging it after.
fn run_child(dir: &Path) {
    let mut storage = SledStorage::open_with(dir, UID, CLUSTER_ID, options()).expect("child: open");
    let state = storage.load().expect("child: load");
    let mut id = state
        .accepted
        .keys()
        .next_back()
        .map_or(0, |slot| slot / SLOTS_PER_BATCH + 1);
    // Like a recovering replica, decide what an interrupted batch accepted but left
    // undecided (a crash can keep a batch's accepts and lose its decisions), so that the
    // decided prefix, and the checkpoint segments with it, keep growing across kills.
    let below = id.saturating_sub(1) * SLOTS_PER_BATCH;
    let catch_up: Vec<Record> = state
        .accepted
        .range(..below)
        .filter(|(slot, _)| !state.decided.contains_key(slot))
        .map(|(slot, _)| Record::Decided {
            slot: *slot,
            value: value_of(*slot),
        })
        .collect();
    storage.persist(&catch_up).expect("child: persist");
    let mut out = std::io::stdout().lock();
    loop {
        // Announced before `persist` starts, so the parent knows every batch that may be
        // in the store (the pipe keeps what was written when the child is killed).
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
        run_child(Path::new(&dir));
    }
}

/// What the child said on stdout.
enum Said {
    /// `persist` of this batch is about to start.
    Begin(u64),
    /// `persist` of this batch returned.
    Ack(u64),
}

/// Checks the reopened store against everything acknowledged so far and the highest batch
/// ever begun (`None`: none). `checkpointed`: the state came through checkpoint segments,
/// which drop accepted entries of decided slots.
fn verify(
    state: &PersistentState,
    acked: &BTreeSet<u64>,
    begun: Option<u64>,
    trial: usize,
    checkpointed: bool,
) {
    for &id in acked {
        assert!(
            state.promised >= Some(ballot_of(id)),
            "trial {trial}: promise {:?} is below acknowledged batch {id}'s {}",
            state.promised,
            ballot_of(id)
        );
        for slot in id * SLOTS_PER_BATCH..(id + 1) * SLOTS_PER_BATCH {
            assert!(
                state.accepted.contains_key(&slot)
                    || (checkpointed && state.decided.contains_key(&slot)),
                "trial {trial}: acknowledged accept at slot {slot} (batch {id}) is missing"
            );
        }
        if id > 0 {
            for slot in (id - 1) * SLOTS_PER_BATCH..id * SLOTS_PER_BATCH {
                assert!(
                    state.decided.contains_key(&slot),
                    "trial {trial}: acknowledged decision at slot {slot} (batch {id}) is missing"
                );
            }
        }
    }
    // Whatever is present is intact, and nothing runs ahead of what the child began.
    for (slot, (ballot, value)) in &state.accepted {
        let batch = slot / SLOTS_PER_BATCH;
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
    for (slot, value) in &state.decided {
        assert!(
            begun.is_some_and(|b| slot / SLOTS_PER_BATCH < b),
            "trial {trial}: decided slot {slot} is beyond what the highest batch begun, {begun:?}, decides"
        );
        assert_eq!(
            *value,
            value_of(*slot),
            "trial {trial}: decided value at slot {slot}"
        );
    }
    if let Some(p) = state.promised {
        assert!(
            begun.is_some_and(|b| p <= ballot_of(b)),
            "trial {trial}: promise {p} from the future (highest batch begun: {begun:?})"
        );
    }
}

/// A checkpointed load equals a full scan except for accepted entries it drops, which are
/// all of decided slots, and it keeps the highest accepted ballot.
fn assert_same_for_the_core(state: &PersistentState, full: &PersistentState, trial: usize) {
    assert_eq!(state.promised, full.promised, "trial {trial}: promise");
    assert_eq!(state.decided, full.decided, "trial {trial}: decided");
    for (slot, entry) in &full.accepted {
        match state.accepted.get(slot) {
            Some(kept) => assert_eq!(kept, entry, "trial {trial}: accepted at slot {slot}"),
            None => assert!(
                state.decided.contains_key(slot),
                "trial {trial}: undecided accept at slot {slot} dropped"
            ),
        }
    }
    assert!(state
        .accepted
        .keys()
        .all(|slot| full.accepted.contains_key(slot)));
    let max = |s: &PersistentState| s.accepted.values().map(|(b, _)| *b).max();
    assert_eq!(
        max(state),
        max(full),
        "trial {trial}: highest accepted ballot"
    );
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
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();

    let mut acked: BTreeSet<u64> = BTreeSet::new();
    let mut begun: Option<u64> = None;
    let mut last_promised: Option<Ballot> = None;
    let mut kills_after_acks = 0;
    let mut past_last_ack_plus_one = 0;
    for trial in 0..TRIALS {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_ENV, dir.path())
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
        // mid-stream (timed from the first acknowledgement, so a slow machine still gets
        // kills while batches are being written).
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
        let mut ids = Vec::new();
        let begun_before = begun;
        let mut first_begun = None;
        for s in said {
            match s {
                Said::Begin(id) => {
                    first_begun.get_or_insert(id);
                    begun = begun.max(Some(id));
                }
                Said::Ack(id) => ids.push(id),
            }
        }
        // The child resumes after the highest batch in its store, which holds every
        // acknowledged batch and nothing beyond what was begun before.
        if let Some(first) = first_begun {
            let (low, high) = (
                acked.last().map_or(0, |b| b + 1),
                begun_before.map_or(0, |b| b + 1),
            );
            assert!(
                (low..=high).contains(&first),
                "trial {trial}: the child resumed at batch {first}, outside {low}..={high}"
            );
        }
        if !ids.is_empty() {
            kills_after_acks += 1;
        }
        acked.extend(ids.iter().copied());

        // Reopen the way the daemon does, or the way `paxosctl dump-log` does.
        let state = if trial % 2 == 0 {
            let storage = SledStorage::open_with(dir.path(), UID, CLUSTER_ID, options()).unwrap();
            let full = storage.load_full().unwrap();
            verify(&full, &acked, begun, trial, false);
            let state = storage.load().unwrap();
            assert_same_for_the_core(&state, &full, trial);
            state
        } else {
            let (meta, state) = read_offline(dir.path()).unwrap();
            assert_eq!(
                meta,
                StoreMeta {
                    uid: UID,
                    cluster_id: CLUSTER_ID
                }
            );
            state
        };
        verify(&state, &acked, begun, trial, true);
        assert!(
            state.promised >= last_promised,
            "trial {trial}: promise went backwards from {last_promised:?} to {:?}",
            state.promised
        );
        last_promised = state.promised;
        wait_until_unlocked(dir.path());
        let segments = std::fs::read_dir(dir.path().join("checkpoints"))
            .map(|d| d.count())
            .unwrap_or(0);
        // The case a bound of "last acknowledged + 1" got wrong: the store holds a batch
        // two or more past the last acknowledged one (the child resumed after a kept but
        // unacknowledged batch and was killed again before acknowledging).
        let stored = state
            .accepted
            .keys()
            .next_back()
            .map(|s| s / SLOTS_PER_BATCH);
        let max_acked = acked.last().copied();
        if stored.is_some_and(|s| max_acked.is_none_or(|a| s > a + 1)) {
            past_last_ack_plus_one += 1;
        }
        eprintln!(
            "trial {trial}: killed {when}, {} batches acknowledged this run, {} in total, store ends at batch {stored:?} (last acknowledged {max_acked:?}, last begun {begun:?}), {} decided slots, {segments} checkpoint files",
            ids.len(),
            acked.len(),
            state.decided.len()
        );
    }
    assert!(
        kills_after_acks >= TRIALS / 2,
        "only {kills_after_acks} of {TRIALS} children acknowledged anything before the kill"
    );
    eprintln!(
        "storage_crash: {TRIALS} kills, {} batches acknowledged, {past_last_ack_plus_one} stores ended 2+ batches past the last acknowledged one, {:.1} s",
        acked.len(),
        started.elapsed().as_secs_f64()
    );
}

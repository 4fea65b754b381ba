//! Real daemons on a real (virtual) network: each replica in its own network namespace
//! (tests/support/netns.rs), faults from nftables, SIGSTOP and `kill -9`, and every run
//! judged by the history checker (tests/support/history.rs).
//!
//! Needs root (skipped with a message otherwise). Each scenario prints the time from the
//! fault to the first commit of a message submitted at the fault ("resume"), and asserts
//! only a generous bound ([`RESUME_BOUND`]); issue 13's goal is 2 s.
//!
//! Tests marked `#[ignore = "needs ..."]` fail on today's core for the reason given; run
//! them with `cargo test --test netns -- --ignored`.

mod support;

use paxos::core::Uid;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::history::{self, History, ReadOp, SubmitOp};
use support::netns::{BedOptions, NetBed, NetClient};

/// A scenario must commit again within this long of its fault.
const RESUME_BOUND: Duration = Duration::from_secs(10);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The submits and reads of one test, shared by its client tasks.
struct Recorder {
    bed: Arc<NetBed>,
    history: Mutex<History>,
    stop: AtomicBool,
}

impl Recorder {
    fn new(bed: &Arc<NetBed>) -> Arc<Recorder> {
        Arc::new(Recorder {
            bed: bed.clone(),
            history: Mutex::new(History::default()),
            stop: AtomicBool::new(false),
        })
    }

    /// One recorded submit through `client`.
    async fn submit(&self, client: &mut NetClient, within: Duration) -> Option<(u64, u64)> {
        let id = client.next_id();
        let invoke_us = self.bed.now_us();
        let result = client.submit(id, &format!("m{id}"), within).await;
        let ack = result.ok().map(|slot| (self.bed.now_us(), slot));
        self.history.lock().unwrap().submits.push(SubmitOp {
            id: id.to_string(),
            invoke_us,
            ack,
        });
        ack
    }

    /// Submits back to back until stopped (bounded by `max`).
    async fn submit_loop(self: Arc<Self>, client_id: u64, max: usize) {
        let mut client = NetClient::new(&self.bed, client_id);
        for _ in 0..max {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            if self
                .submit(&mut client, Duration::from_secs(5))
                .await
                .is_none()
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Reads a random replica's log with `paxosctl dump-log` every ~300 ms until stopped.
    async fn read_loop(self: Arc<Self>, seed: u64, max: usize) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for _ in 0..max {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let uid = rng.gen_range(0..self.bed.replicas() as Uid);
            let invoke_us = self.bed.now_us();
            let bed = self.bed.clone();
            let log = tokio::task::spawn_blocking(move || bed.read_log(uid))
                .await
                .ok()
                .flatten();
            let complete_us = self.bed.now_us();
            if let Some(log) = log {
                self.history.lock().unwrap().reads.push(ReadOp {
                    uid,
                    invoke_us,
                    complete_us,
                    log,
                });
            }
            tokio::time::sleep(Duration::from_millis(rng.gen_range(100..400))).await;
        }
    }

    fn history(&self) -> History {
        self.history.lock().unwrap().clone()
    }
}

/// Submits one fresh message right after a fault and returns how long it took to commit.
async fn measure_resume(rec: &Recorder, client: &mut NetClient, scenario: &str) -> Duration {
    let fault = Instant::now();
    let ack = rec
        .submit(client, RESUME_BOUND + Duration::from_secs(2))
        .await;
    let took = fault.elapsed();
    match ack {
        Some((_, slot)) => println!(
            "RESUME {scenario}: {:.0} ms after the fault (slot {slot})",
            took.as_secs_f64() * 1e3
        ),
        None => println!("RESUME {scenario}: no commit within {took:?}"),
    }
    assert!(
        ack.is_some() && took <= RESUME_BOUND,
        "{scenario}: no commit within {RESUME_BOUND:?} of the fault"
    );
    println!(
        "{scenario}: highest-ballot leader after the fault: {:?}",
        leader_of(&rec.bed).await
    );
    took
}

/// Stops the cluster, reads every store and checks the history; panics on a violation.
async fn check_history(bed: &NetBed, rec: &Recorder, fresh_reads: bool) {
    rec.stop.store(true, Ordering::Relaxed);
    let history = rec.history();
    let min = history
        .submits
        .iter()
        .filter_map(|s| s.ack.map(|(_, slot)| slot + 1))
        .max()
        .unwrap_or(0);
    let finals = bed.final_logs(min).await;
    let violations = history::check_with(&history, &finals, history::Checks { fresh_reads });
    println!(
        "history: {} submits ({} acked), {} reads, final log lengths {:?}, {} violations",
        history.submits.len(),
        history.acked(),
        history.reads.len(),
        finals.iter().map(|(_, l)| l.len()).collect::<Vec<_>>(),
        violations.len()
    );
    let n = history::report(&violations, 20);
    assert_eq!(n, 0, "history violations (see above)");
}

/// Starts 5 replicas, waits for leader 0 and commits a few messages.
async fn warm_up(bed: &NetBed, rec: &Recorder, client: &mut NetClient) {
    bed.start_all();
    let leader = bed.wait_leader(Duration::from_secs(10)).await;
    assert_eq!(leader, 0, "a fresh cluster starts with uid 0 leading");
    for _ in 0..5 {
        assert!(
            rec.submit(client, Duration::from_secs(10)).await.is_some(),
            "warm-up submit"
        );
    }
}

fn scenario(name: &str, body: impl AsyncFnOnce(&Arc<NetBed>, &Arc<Recorder>)) {
    let Some(bed) = NetBed::new(name, BedOptions::default()) else {
        return;
    };
    let bed = Arc::new(bed);
    {
        let rt = runtime();
        let rec = Recorder::new(&bed);
        rt.block_on(body(&bed, &rec));
    }
    drop(bed);
}

/// OmniPaxos (EuroSys'23) **quorum-loss** scenario: every link fails except those of
/// one server C (here uid 2), which stays connected to all. The leader (0) can reach
/// only C, so it has no quorum; C is the only quorum-connected server and the only one
/// that can lead, but it keeps hearing the leader's heartbeats, so a leader that never
/// checks its quorum and followers that stay sticky to it stall the cluster for good.
#[test]
fn quorum_loss() {
    scenario("quorum_loss", async |bed, rec| {
        let mut client = NetClient::new(bed, 1);
        warm_up(bed, rec, &mut client).await;
        bed.only_links(&[(0, 2), (1, 2), (3, 2), (4, 2)]);
        measure_resume(rec, &mut client, "quorum-loss").await;
        check_history(bed, rec, false).await;
    });
}

/// OmniPaxos **constrained-election** scenario: as quorum-loss (C = uid 2 is the only
/// server connected to a majority; 1, 3 and 4 see only C), with the leader (0) cut off
/// from everyone and C's log behind (it was partitioned while the others committed). In
/// Raft, C cannot be elected with an outdated log and nobody else can gather a quorum;
/// in Paxos any replica may lead (phase 1 recovers the chosen values), so C must.
#[test]
fn constrained_election() {
    scenario("constrained_election", async |bed, rec| {
        let mut client = NetClient::new(bed, 1);
        warm_up(bed, rec, &mut client).await;
        bed.partition(&[&[0, 1, 3, 4], &[2]]);
        for _ in 0..20 {
            assert!(rec
                .submit(&mut client, Duration::from_secs(10))
                .await
                .is_some());
        }
        bed.only_links(&[(1, 2), (3, 2), (4, 2)]);
        measure_resume(rec, &mut client, "constrained-election").await;
        check_history(bed, rec, false).await;
    });
}

/// OmniPaxos **chained** scenario: the leader (0) and one follower (1) cannot reach each
/// other, every other link works, so 1 sees the leader only through 2, 3 and 4 (a chain
/// 1 - {2,3,4} - 0). Raft without stickiness livelocks: 1 times out and is elected with
/// a higher term, 0 then times out on 1 and is elected back, and so on. A correct
/// protocol keeps committing through 0 (it still has a quorum) or settles on one leader.
#[test]
fn chained() {
    scenario("chained", async |bed, rec| {
        let mut client = NetClient::new(bed, 1);
        warm_up(bed, rec, &mut client).await;
        bed.cut_both(0, 1);
        measure_resume(rec, &mut client, "chained").await;
        // And it stays live: no leader duel over the next few seconds.
        let until = Instant::now() + Duration::from_secs(4);
        let mut worst = Duration::ZERO;
        while Instant::now() < until {
            let started = Instant::now();
            assert!(rec.submit(&mut client, RESUME_BOUND).await.is_some());
            worst = worst.max(started.elapsed());
        }
        println!(
            "chained: slowest commit over 4 s of the fault: {:.0} ms",
            worst.as_secs_f64() * 1e3
        );
        check_history(bed, rec, false).await;
    });
}

/// A **one-way partition of the leader** (issue 13, bug 2): links 2→0, 3→0 and 4→0 fail,
/// 0's links out still work. Leader 0 hears only 1, so it cannot commit, yet its
/// heartbeats keep 1-4 sticky; 1-4 are a connected majority and must take over.
#[test]
fn one_way_partition_of_leader() {
    scenario("one_way_partition_of_leader", async |bed, rec| {
        let mut client = NetClient::new(bed, 1);
        warm_up(bed, rec, &mut client).await;
        for from in [2, 3, 4] {
            bed.cut_one_way(from, 0);
        }
        measure_resume(rec, &mut client, "one-way-leader").await;
        check_history(bed, rec, false).await;
    });
}

fn lost_disk_options() -> BedOptions {
    BedOptions {
        replicas: 3,
        ..BedOptions::default()
    }
}

/// Lost disk (a), issue 13 bug 1a: leader 0 acks m1, is killed, its data dir wiped, and
/// it restarts before the followers time out (timeout 3 s). With a fresh store it must
/// not lead ballot (0,0) again from slot 0: m1 stays at its slot and no slot is decided
/// twice.
#[test]
fn lost_disk_leader_restarts_fresh() {
    let options = BedOptions {
        replicas: 3,
        timeout_ms: 3000,
        heartbeat_ms: 100,
    };
    let Some(bed) = NetBed::new("lost_disk_leader_restarts_fresh", options) else {
        return;
    };
    let bed = Arc::new(bed);
    {
        let rt = runtime();
        let rec = Recorder::new(&bed);
        rt.block_on(async {
            bed.start_all();
            assert_eq!(bed.wait_leader(Duration::from_secs(10)).await, 0);
            let mut client = NetClient::new(&bed, 1);
            assert!(rec
                .submit(&mut client, Duration::from_secs(10))
                .await
                .is_some());
            bed.kill9(0);
            bed.wipe(0);
            bed.start(0);
            let mut client = NetClient::new(&bed, 2);
            for _ in 0..3 {
                rec.submit(&mut client, Duration::from_secs(15)).await;
            }
            check_history(&bed, &rec, false).await;
        });
    }
    drop(bed);
}

/// Lost disk (b), issue 13 bug 1b: follower 1 is in the accepting majority {0, 1} of an
/// acked m1 (2 is partitioned away), then 1's disk is lost (killed, wiped, restarted) and
/// the leader dies. 1 and 2 must not elect each other and choose m2 in m1's slot: 1 may
/// vote only once rebuilt, so m2 waits until 0 is back, and m1 is never lost.
#[test]
fn lost_disk_follower_in_majority() {
    let Some(bed) = NetBed::new("lost_disk_follower_in_majority", lost_disk_options()) else {
        return;
    };
    let bed = Arc::new(bed);
    {
        let rt = runtime();
        let rec = Recorder::new(&bed);
        rt.block_on(async {
            bed.start_all();
            assert_eq!(bed.wait_leader(Duration::from_secs(10)).await, 0);
            let mut client = NetClient::new(&bed, 1);
            assert!(rec
                .submit(&mut client, Duration::from_secs(10))
                .await
                .is_some());
            bed.partition(&[&[0, 1], &[2]]);
            assert!(
                rec.submit(&mut client, Duration::from_secs(10))
                    .await
                    .is_some(),
                "m1 acked by {{0, 1}}"
            );
            bed.kill9(0);
            bed.kill9(1);
            bed.wipe(1);
            // Dead 0 stays cut off: the kernel still sends what its socket buffers held
            // (m1's Accept to 2), which would undo the schedule.
            bed.partition(&[&[1, 2]]);
            bed.start(1);
            // 1 and 2 alone: a correct cluster does not commit (1 forgot its votes).
            let mut client = NetClient::new(&bed, 2);
            let early = rec.submit(&mut client, Duration::from_secs(4)).await;
            println!("lost-disk (b): m2 with only 1 (wiped) and 2 up: {early:?}");

            bed.heal();
            bed.start(0);
            if early.is_none() {
                assert!(
                    rec.submit(&mut client, Duration::from_secs(15))
                        .await
                        .is_some(),
                    "commits resume once 0 is back"
                );
            }
            check_history(&bed, &rec, false).await;
        });
    }
    drop(bed);
}

/// Which faults a nemesis run injects.
#[derive(Clone, Copy, Debug)]
struct Nemesis {
    one_way: bool,
    partial: bool,
    lost_disk: bool,
    /// Check property 5 fully (reads contain every earlier ack), not only prefixes.
    fresh_reads: bool,
}

/// Random faults under load for `secs` seconds, then the history check. Prints every
/// fault, the violations, and the longest window without commits while a connected
/// majority existed.
fn nemesis(name: &str, secs: u64, mix: Nemesis) {
    let Some(bed) = NetBed::new(name, BedOptions::default()) else {
        return;
    };
    let bed = Arc::new(bed);
    let seed: u64 = std::env::var("NEMESIS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    println!("nemesis {name}: {secs} s, seed {seed}, {mix:?}");
    {
        let rt = runtime();
        let rec = Recorder::new(&bed);
        rt.block_on(async {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            bed.start_all();
            bed.wait_leader(Duration::from_secs(10)).await;
            let mut tasks = Vec::new();
            for c in 0..3u64 {
                tasks.push(tokio::spawn(rec.clone().submit_loop(100 + c, 1_000_000)));
            }
            tasks.push(tokio::spawn(rec.clone().read_loop(seed, 1_000_000)));
            // (time, connected majority?) at every change of the fault state.
            let mut states: Vec<(u64, bool)> = vec![(bed.now_us(), true)];
            let end = Instant::now() + Duration::from_secs(secs);
            let lost_disk_at = Instant::now() + Duration::from_secs(secs / 2);
            let mut lost_disk_done = !mix.lost_disk;
            let n = bed.replicas() as Uid;
            let mut faults = 0;
            while Instant::now() < end {
                let leader = leader_of(&bed).await.unwrap_or(0);
                let choice = rng.gen_range(0..6);
                let action = if !lost_disk_done && Instant::now() > lost_disk_at {
                    lost_disk_done = true;
                    let victim = (leader + rng.gen_range(1..n)) % n;
                    bed.kill9(victim);
                    bed.wipe(victim);
                    bed.start(victim);
                    format!("lost disk of {victim}")
                } else {
                    match choice {
                        0 => {
                            let mut minority = vec![leader];
                            if rng.gen_bool(0.5) {
                                minority.push((leader + rng.gen_range(1..n)) % n);
                            }
                            let rest: Vec<Uid> = (0..n).filter(|u| !minority.contains(u)).collect();
                            bed.partition(&[&minority, &rest]);
                            format!("partition {minority:?} | {rest:?}")
                        }
                        1 if mix.one_way => {
                            let k = rng.gen_range(1..=3);
                            let mut froms: Vec<Uid> = (0..n).filter(|u| *u != leader).collect();
                            froms.shuffle(&mut rng);
                            froms.truncate(k);
                            froms.sort();
                            for f in &froms {
                                bed.cut_one_way(*f, leader);
                            }
                            format!("one-way cuts {froms:?} -> {leader}")
                        }
                        2 if mix.partial => {
                            let a = rng.gen_range(0..n);
                            let b = (a + rng.gen_range(1..n)) % n;
                            if rng.gen_bool(0.5) {
                                bed.cut_both(a, b);
                                format!("partial: {a} and {b} cut, both see the rest")
                            } else {
                                // The quorum-loss shape: only links through `a` remain.
                                let star: Vec<(Uid, Uid)> =
                                    (0..n).filter(|u| *u != a).map(|u| (u, a)).collect();
                                bed.only_links(&star);
                                format!("partial: only links through {a} remain")
                            }
                        }
                        3 => {
                            let victim = rng.gen_range(0..n);
                            bed.pause(victim);
                            format!("pause {victim}")
                        }
                        4 => {
                            let victim = if rng.gen_bool(0.5) {
                                leader
                            } else {
                                rng.gen_range(0..n)
                            };
                            bed.kill9(victim);
                            format!("kill -9 {victim}")
                        }
                        _ => "quiet".to_string(),
                    }
                };
                faults += 1;
                states.push((bed.now_us(), bed.connected_majority()));
                println!("{:>8.3} s  {action}", bed.now_us() as f64 / 1e6);
                tokio::time::sleep(Duration::from_millis(rng.gen_range(1000..4000))).await;
                // Undo: heal, resume, restart.
                bed.heal();
                for u in 0..n {
                    if bed.is_paused(u) {
                        bed.resume(u);
                    }
                    if !bed.is_running(u) {
                        bed.kill9(u);
                        bed.start(u);
                    }
                }
                states.push((bed.now_us(), bed.connected_majority()));
                tokio::time::sleep(Duration::from_millis(rng.gen_range(500..1500))).await;
            }
            rec.stop.store(true, Ordering::Relaxed);
            let end_us = bed.now_us();
            for t in tasks {
                let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
            }
            let history = rec.history();
            let (window_us, at_us) = longest_quiet_window(&history, &states, end_us);
            println!(
                "nemesis {name}: {faults} faults, {} submits ({} acked), {} reads; longest window \
                 without commits while a connected majority existed: {:.0} ms (from {:.3} s)",
                history.submits.len(),
                history.acked(),
                history.reads.len(),
                window_us as f64 / 1e3,
                at_us as f64 / 1e6
            );
            check_history(&bed, &rec, mix.fresh_reads).await;
        });
    }
    drop(bed);
}

/// Every replica that reports itself leader, with its ballot (a cut-off leader without
/// check-quorum still does).
async fn leaders(bed: &NetBed) -> Vec<(Uid, paxos::core::Ballot)> {
    let mut out = Vec::new();
    for uid in 0..bed.replicas() as Uid {
        if let Some(s) = bed.status(uid).await {
            if s.status.role == paxos::core::Role::Leader {
                out.push((uid, s.status.ballot));
            }
        }
    }
    out
}

/// The leader of the highest ballot, if any replica reports itself leader.
async fn leader_of(bed: &NetBed) -> Option<Uid> {
    leaders(bed)
        .await
        .into_iter()
        .max_by_key(|(_, ballot)| *ballot)
        .map(|(uid, _)| uid)
}

/// The longest stretch with a connected majority and no ack: (length, start), both µs.
fn longest_quiet_window(history: &History, states: &[(u64, bool)], end_us: u64) -> (u64, u64) {
    let mut acks: Vec<u64> = history
        .submits
        .iter()
        .filter_map(|s| s.ack.map(|(t, _)| t))
        .collect();
    acks.sort();
    let mut best = (0, 0);
    for (i, (start, ok)) in states.iter().enumerate() {
        if !ok {
            continue;
        }
        let stop = states.get(i + 1).map_or(end_us, |s| s.0);
        let mut last = *start;
        let from = acks.partition_point(|t| *t < *start);
        for t in acks[from..].iter().take_while(|t| **t < stop) {
            if t - last > best.0 {
                best = (t - last, last);
            }
            last = *t;
        }
        if stop - last > best.0 {
            best = (stop - last, last);
        }
    }
    best
}

/// CI's nemesis: 60 s of symmetric partitions (the leader in a minority), pauses and
/// `kill -9`, under load and reads; 0 violations of properties 1-4 and of read prefixes.
#[test]
fn nemesis_short_crashes_and_partitions() {
    let secs = std::env::var("NEMESIS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    nemesis(
        "nemesis_short_crashes_and_partitions",
        secs,
        Nemesis {
            one_way: false,
            partial: false,
            lost_disk: false,
            fresh_reads: false,
        },
    );
}

/// Issue 13's nemesis in short form (60 s): adds one-way and partial partitions, one lost
/// disk and the full linearizable-read check.
#[test]
fn nemesis_short() {
    let secs = std::env::var("NEMESIS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    nemesis("nemesis_short", secs, Nemesis::full());
}

/// The long form run by `bench/nemesis.sh` (default 300 s, `NEMESIS_SECS`).
/// `NEMESIS_LOST_DISK=0` leaves the lost disk out of the schedule (everything else as
/// `Nemesis::full`), for a core without lost-disk safety.
#[test]
#[ignore = "long form: bench/nemesis.sh"]
fn nemesis_long() {
    let secs = std::env::var("NEMESIS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let lost_disk = std::env::var("NEMESIS_LOST_DISK").map_or(true, |v| v != "0");
    nemesis(
        "nemesis_long",
        secs,
        Nemesis {
            lost_disk,
            ..Nemesis::full()
        },
    );
}

impl Nemesis {
    fn full() -> Nemesis {
        Nemesis {
            one_way: true,
            partial: true,
            lost_disk: true,
            fresh_reads: true,
        }
    }
}

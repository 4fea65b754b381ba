//! Real `paxosd` processes on free loopback ports: the seed's test cases and more, with
//! real `kill -9`, restarts from real sled stores, message loss and garbage on the ports.

mod support;

use paxos::core::{LogEntry, LogEntryKind, RequestId, Slot, Uid};
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::{Cluster, TestClient};
use tokio::task::JoinHandle;

const SUBMIT_WITHIN: Duration = Duration::from_secs(20);
const CONVERGE_WITHIN: Duration = Duration::from_secs(20);

/// Every acknowledged message is in `log` exactly once, as a `Msg` at the slot its client
/// was told.
fn assert_acked_once(log: &[LogEntry], acked: &[(RequestId, Slot)]) {
    let mut msgs: HashMap<RequestId, Vec<Slot>> = HashMap::new();
    for e in log {
        if e.kind == LogEntryKind::Msg {
            msgs.entry(e.id.expect("msg has an id"))
                .or_default()
                .push(e.slot);
        }
    }
    for (id, slot) in acked {
        assert_eq!(
            msgs.get(id).map(|v| v.as_slice()),
            Some(&[*slot][..]),
            "acknowledged {id} at slot {slot}"
        );
    }
}

/// `clients` tasks each submitting `per_client` messages one after another.
fn spawn_clients(
    cluster: &Cluster,
    clients: u64,
    per_client: usize,
) -> Vec<JoinHandle<Vec<(RequestId, Slot)>>> {
    (0..clients)
        .map(|c| {
            let mut client = TestClient::new(cluster, 100 + c);
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..per_client {
                    let body = format!("client {c} message {i}");
                    match client.submit(&body, SUBMIT_WITHIN).await {
                        Ok(ack) => acked.push(ack),
                        Err(e) => panic!("client {c}: {e}"),
                    }
                }
                acked
            })
        })
        .collect()
}

/// Clients submitting until `stop` is set; each returns what was acknowledged.
fn spawn_load(
    cluster: &Cluster,
    clients: u64,
    stop: Arc<AtomicBool>,
) -> Vec<JoinHandle<Vec<(RequestId, Slot)>>> {
    (0..clients)
        .map(|c| {
            let mut client = TestClient::new(cluster, 500 + c);
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let body = format!("load {c}/{i}");
                    i += 1;
                    match client.submit(&body, SUBMIT_WITHIN).await {
                        Ok(ack) => acked.push(ack),
                        Err(e) => panic!("load client {c}: {e}"),
                    }
                }
                acked
            })
        })
        .collect()
}

async fn join_all(handles: Vec<JoinHandle<Vec<(RequestId, Slot)>>>) -> Vec<(RequestId, Slot)> {
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("client task"));
    }
    all
}

fn all_uids(cluster: &Cluster) -> Vec<Uid> {
    (0..cluster.replicas() as Uid).collect()
}

async fn normal_operation(f: usize) {
    let mut cluster = Cluster::new(f, 0.0);
    cluster.start_all();
    cluster.wait_ready(Duration::from_secs(10)).await;
    let acked = join_all(spawn_clients(&cluster, 4, 25)).await;
    assert_eq!(acked.len(), 100);
    let log = cluster
        .converged_log(&all_uids(&cluster), 100, CONVERGE_WITHIN)
        .await;
    assert_acked_once(&log, &acked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_operation_f1_concurrent_clients_identical_logs() {
    normal_operation(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_operation_f2_concurrent_clients_identical_logs() {
    normal_operation(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill9_under_load_elects_a_new_leader_and_resumes() {
    let mut cluster = Cluster::new(1, 0.0);
    cluster.start_all();
    let old = cluster.wait_ready(Duration::from_secs(10)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = spawn_load(&cluster, 3, stop.clone());
    tokio::time::sleep(Duration::from_millis(700)).await;
    cluster.kill9(old);
    let new = cluster.wait_leader(Duration::from_secs(10)).await;
    assert_ne!(new, old, "a dead replica cannot lead");
    // Commits resume under the new leader.
    let mut probe = TestClient::new(&cluster, 9);
    probe
        .submit("after the kill", SUBMIT_WITHIN)
        .await
        .expect("commit after kill");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = join_all(load).await;
    cluster.start(old, &[]);
    let log = cluster
        .converged_log(&all_uids(&cluster), acked.len(), CONVERGE_WITHIN)
        .await;
    assert_acked_once(&log, &acked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f2_leader_killed_twice_in_a_row() {
    let mut cluster = Cluster::new(2, 0.0);
    cluster.start_all();
    let mut client = TestClient::new(&cluster, 1);
    let mut acked = Vec::new();
    let mut killed = Vec::new();
    for round in 0..2 {
        let leader = cluster.wait_leader(Duration::from_secs(10)).await;
        for i in 0..5 {
            acked.push(
                client
                    .submit(&format!("round {round} msg {i}"), SUBMIT_WITHIN)
                    .await
                    .expect("commit"),
            );
        }
        cluster.kill9(leader);
        killed.push(leader);
    }
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    assert!(!killed.contains(&leader));
    for i in 0..5 {
        acked.push(
            client
                .submit(&format!("after two kills {i}"), SUBMIT_WITHIN)
                .await
                .expect("commit"),
        );
    }
    let alive: Vec<Uid> = all_uids(&cluster)
        .into_iter()
        .filter(|u| !killed.contains(u))
        .collect();
    let log = cluster
        .converged_log(&alive, acked.len(), CONVERGE_WITHIN)
        .await;
    assert_acked_once(&log, &acked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_slots_become_noops_after_the_initial_leader_dies() {
    let mut cluster = Cluster::new(1, 0.0);
    cluster.start(0, &["--skip-slots", "1,2"]);
    cluster.start(1, &[]);
    cluster.start(2, &[]);
    assert_eq!(cluster.wait_leader(Duration::from_secs(10)).await, 0);
    // These are chosen in slots 0, 3, 4, ... but the holes at 1 and 2 stop the log.
    let load = spawn_clients(&cluster, 2, 3);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before = cluster.log(1).await;
    assert!(
        before.len() <= 1,
        "the log must stop at the hole at slot 1: {before:?}"
    );
    cluster.kill9(0);
    let acked = join_all(load).await;
    let log = cluster.converged_log(&[1, 2], 8, CONVERGE_WITHIN).await;
    for slot in [1, 2] {
        assert_eq!(
            log[slot].kind,
            LogEntryKind::Noop,
            "slot {slot}: {:?}",
            log[slot]
        );
    }
    assert_acked_once(&log, &acked);
    // The log flows again, and the old leader rejoins with the same log.
    let mut client = TestClient::new(&cluster, 7);
    let (_, slot) = client
        .submit("flowing again", SUBMIT_WITHIN)
        .await
        .expect("commit");
    assert!(slot >= 8);
    cluster.start(0, &[]);
    cluster
        .converged_log(&all_uids(&cluster), slot as usize + 1, CONVERGE_WITHIN)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_loss_20_percent_submits_keep_succeeding() {
    let mut cluster = Cluster::new(1, 0.2);
    cluster.start_all();
    cluster.wait_ready(Duration::from_secs(10)).await;
    let acked = join_all(spawn_clients(&cluster, 3, 15)).await;
    assert_eq!(acked.len(), 45);
    let log = cluster
        .converged_log(&all_uids(&cluster), 45, CONVERGE_WITHIN)
        .await;
    assert_acked_once(&log, &acked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_replica_kill9_and_restart_under_load_loses_and_doubles_nothing() {
    let mut cluster = Cluster::new(1, 0.0);
    cluster.start_all();
    cluster.wait_ready(Duration::from_secs(10)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = spawn_load(&cluster, 3, stop.clone());
    for uid in 0..cluster.replicas() as Uid {
        tokio::time::sleep(Duration::from_millis(600)).await;
        cluster.kill9(uid);
        tokio::time::sleep(Duration::from_millis(400)).await;
        cluster.start(uid, &[]);
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = join_all(load).await;
    assert!(acked.len() > 20, "too little got through: {}", acked.len());
    let log = cluster
        .converged_log(&all_uids(&cluster), acked.len(), CONVERGE_WITHIN)
        .await;
    assert_acked_once(&log, &acked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_down_during_300_commits_catches_up() {
    let mut cluster = Cluster::new(1, 0.0);
    cluster.start_all();
    let leader = cluster.wait_ready(Duration::from_secs(10)).await;
    let follower = (leader + 1) % 3;
    cluster.kill9(follower);
    let acked = join_all(spawn_clients(&cluster, 6, 55)).await;
    assert_eq!(acked.len(), 330);
    cluster.start(follower, &[]);
    let log = cluster
        .converged_log(&all_uids(&cluster), 330, CONVERGE_WITHIN)
        .await;
    assert_acked_once(&log, &acked);
}

/// A fresh cluster: every fresh store registers with a majority of the others before it
/// votes (lost-disk safety, DESIGN "Lost disk"), so a brand-new 3-replica cluster serves
/// once all three have started, in any order; after that two of three serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_started_in_reverse_order_form_a_cluster() {
    let mut cluster = Cluster::new(1, 0.0);
    cluster.start(2, &[]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.start(1, &[]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Two fresh stores cannot tell a fresh cluster from a lost disk: nobody leads yet.
    for uid in [1, 2] {
        let status = cluster.status(uid).await.expect("status");
        assert_ne!(status.status.role, paxos::core::Role::Leader, "{status:?}");
        assert_eq!(status.status.standing, paxos::core::Standing::Unregistered);
    }
    cluster.start(0, &[]);
    let mut client = TestClient::new(&cluster, 1);
    let first = client
        .submit("with all three", SUBMIT_WITHIN)
        .await
        .expect("commit");
    // Registered: two of three serve from now on.
    cluster.wait_ready(Duration::from_secs(10)).await;
    cluster.kill9(0);
    let second = client
        .submit("with two of three", SUBMIT_WITHIN)
        .await
        .expect("commit");
    cluster.start(0, &[]);
    let log = cluster
        .converged_log(&all_uids(&cluster), 2, CONVERGE_WITHIN)
        .await;
    assert_acked_once(&log, &[first, second]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_every_port_kills_no_replica() {
    let mut cluster = Cluster::new(1, 0.0);
    cluster.start_all();
    cluster.wait_ready(Duration::from_secs(10)).await;
    let mut client = TestClient::new(&cluster, 1);
    let mut acked = vec![client
        .submit("before garbage", SUBMIT_WITHIN)
        .await
        .expect("commit")];
    let mut oversized = Vec::new();
    oversized.extend_from_slice(&u32::MAX.to_be_bytes());
    oversized.extend_from_slice(&0u32.to_be_bytes());
    oversized.extend_from_slice(&[0u8; 64]);
    let mut seed: u64 = 0x1234_5678;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u8
        })
        .collect();
    let payloads: Vec<Vec<u8>> = vec![
        random,
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        oversized,
    ];
    for uid in 0..cluster.replicas() as Uid {
        for payload in &payloads {
            if let Ok(mut s) = std::net::TcpStream::connect(cluster.addr(uid)) {
                let _ = s.write_all(payload);
                let _ = s.flush();
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for uid in 0..cluster.replicas() as Uid {
        assert!(cluster.is_running(uid), "replica {uid} died on garbage");
    }
    acked.push(
        client
            .submit("after garbage", SUBMIT_WITHIN)
            .await
            .expect("commit"),
    );
    let log = cluster
        .converged_log(&all_uids(&cluster), 2, CONVERGE_WITHIN)
        .await;
    assert_acked_once(&log, &acked);
    for uid in 0..cluster.replicas() as Uid {
        assert!(
            cluster.stderr_of(uid).contains("WARN"),
            "replica {uid} logged no warning"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_and_restart_keeps_the_log() {
    let mut cluster = Cluster::new(1, 0.0);
    cluster.start_all();
    cluster.wait_ready(Duration::from_secs(10)).await;
    let acked = join_all(spawn_clients(&cluster, 2, 10)).await;
    for uid in 0..3 {
        let status = cluster.terminate(uid);
        assert!(status.success(), "replica {uid} exited with {status}");
    }
    cluster.start_all();
    let log = cluster
        .converged_log(&all_uids(&cluster), 20, CONVERGE_WITHIN)
        .await;
    assert_acked_once(&log, &acked);
}

/// Runs `paxosd` with `args`; returns its exit code and stderr.
fn paxosd_exit(args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_paxosd"))
        .args(args)
        .output()
        .expect("run paxosd");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_config_and_flags_exit_2_naming_the_field() {
    let cluster = Cluster::new(1, 0.0);
    let bad = cluster.dir.path().join("bad.toml");
    std::fs::write(&bad, "f = 1\ntimeout_ms = \"soon\"\n").expect("write");
    let bad = bad.to_str().expect("utf8");
    let good = cluster.config_path.to_str().expect("utf8");
    for (args, field) in [
        (vec!["--config", bad, "--uid", "0"], "timeout_ms"),
        (vec!["--config", good, "--uid", "7"], "uid"),
        (
            vec!["--config", good, "--uid", "1", "--skip-slots", "1"],
            "skip-slots",
        ),
        (vec!["--config", good, "--uid", "0", "--bogus"], "--bogus"),
    ] {
        let (code, stderr) = paxosd_exit(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(field),
            "{args:?} must name {field}: {stderr}"
        );
    }
}

/// A log of 64 KiB messages (10 MiB in all, more than one frame's 8 MiB) is read in pages
/// bounded by bytes: one ReadLog of up to 4096 entries answers with a page that fits a
/// frame, paging returns every message, and `paxosctl dump-log` prints them all (before,
/// the answer failed to encode and dump-log retried forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_log_of_64_kib_messages_is_paged_by_bytes() {
    use paxos::transport::client::ClientLink;
    use paxos::transport::wire::{ClientRequest, ClientResponse};
    const BODY_BYTES: usize = 64 * 1024 - 1;
    const MESSAGES: usize = 160;
    let mut cluster = Cluster::new(1, 0.0);
    cluster.start_all();
    cluster.wait_ready(Duration::from_secs(10)).await;
    let mut client = TestClient::new(&cluster, 64);
    for i in 0..MESSAGES {
        let body = format!("{i:04}{}", "x".repeat(BODY_BYTES - 4));
        client.submit(&body, SUBMIT_WITHIN).await.expect("commit");
    }
    let log = cluster
        .converged_log(&all_uids(&cluster), MESSAGES, CONVERGE_WITHIN)
        .await;
    assert_eq!(log.len(), MESSAGES);
    assert!(log.iter().all(|e| e.body.len() == BODY_BYTES));

    let mut link = ClientLink::connect(cluster.addr(1), Duration::from_secs(2))
        .await
        .expect("connect");
    let request = ClientRequest::ReadLog {
        from_slot: 0,
        max_entries: 4096,
        wait_ms: 0,
    };
    let response = tokio::time::timeout(Duration::from_secs(5), link.call(&request))
        .await
        .expect("answered in time")
        .expect("answered");
    let ClientResponse::Log { entries, .. } = response else {
        panic!("not a log page: {response:?}");
    };
    let bytes: usize = entries.iter().map(|e| e.body.len()).sum();
    assert!(
        !entries.is_empty() && entries.len() < MESSAGES,
        "one page of {} entries",
        entries.len()
    );
    assert!(
        bytes <= paxos::node::READ_LOG_BYTES_MAX,
        "{bytes} bytes in one page"
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_paxosctl"))
        .arg("--config")
        .arg(&cluster.config_path)
        .args(["dump-log", "--uid", "2", "--json"])
        .output()
        .expect("run paxosctl");
    assert!(
        out.status.success(),
        "dump-log failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = String::from_utf8_lossy(&out.stdout).lines().count();
    assert_eq!(lines, MESSAGES, "dump-log printed every message");
}

/// A clean stop under load hands off: SIGTERM to every replica at once while clients are
/// submitting, then every store, read offline, holds the same decided log (before, the
/// leader's last decisions never reached the followers: 1-3 slots differed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_leaves_every_store_with_the_same_log() {
    for f in [1usize, 2] {
        let mut cluster = Cluster::new(f, 0.0);
        cluster.start_all();
        cluster.wait_ready(Duration::from_secs(10)).await;
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for c in 0..4u64 {
            let mut client = TestClient::new(&cluster, 700 + c);
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    if client
                        .submit(&format!("m {c}/{i}"), Duration::from_secs(2))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(800)).await;
        // Every replica at once, as `paxosctl run` does on Ctrl-C.
        let pids: Vec<u32> = (0..cluster.replicas() as Uid)
            .filter_map(|u| cluster.pid(u))
            .collect();
        for pid in &pids {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        for uid in 0..cluster.replicas() as Uid {
            assert!(cluster.wait_exit(uid, Duration::from_secs(10)).success());
        }
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        let logs: Vec<Vec<LogEntry>> = (0..cluster.replicas() as Uid)
            .map(|uid| {
                let dir = cluster.store_dir(uid);
                paxos::client::log::read_offline_log(&dir)
                    .expect("read the store")
                    .1
            })
            .collect();
        assert!(logs[0].len() > 10, "the load committed something");
        for (uid, log) in logs.iter().enumerate() {
            assert_eq!(
                log.len(),
                logs[0].len(),
                "f={f}: replica {uid}'s store ends at {} and replica 0's at {}",
                log.len(),
                logs[0].len()
            );
            assert_eq!(log, &logs[0], "f={f}: replica {uid}'s log differs");
        }
    }
}

/// dump-log is linearizable by default: a follower that was paused while a message was
/// acknowledged, read the moment it resumes, still shows the message (it waits for the
/// leader's read index); `--stale` serves what it has, which the test does not check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_log_from_a_lagging_follower_holds_every_acknowledged_message() {
    let mut cluster = Cluster::new(1, 0.0);
    cluster.start_all();
    let leader = cluster.wait_ready(Duration::from_secs(10)).await;
    let follower = (leader + 1) % 3;
    let mut client = TestClient::new(&cluster, 77);
    client
        .submit("before", SUBMIT_WITHIN)
        .await
        .expect("commit");
    let pid = cluster.pid(follower).expect("running");
    let signal = |sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("kill");
    };
    signal("-STOP");
    let (id, slot) = client
        .submit("while paused", SUBMIT_WITHIN)
        .await
        .expect("commit with the other two");
    signal("-CONT");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_paxosctl"))
        .arg("--config")
        .arg(&cluster.config_path)
        .args(["dump-log", "--uid", &follower.to_string(), "--json"])
        .output()
        .expect("run paxosctl");
    assert!(
        out.status.success(),
        "dump-log failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains(&format!("\"slot\":{slot}")) && l.contains(&id.to_string())),
        "the read from replica {follower} misses {id} at slot {slot}:\n{text}"
    );
}

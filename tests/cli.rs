//! `paxosctl` driven as a person would: child processes fed through stdin, their output
//! read back, against real `paxosd` replicas.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Cluster, TestClient};

/// A `paxosctl` child whose stdout and stderr lines are collected by two threads.
struct Cli {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
    notes: Arc<Mutex<Vec<String>>>,
}

/// Collects the lines of `from` into a shared vector, on a thread, until EOF.
fn collect_lines(from: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            match line {
                Ok(line) => sink.lock().expect("lines").push(line),
                Err(_) => break,
            }
        }
    });
    lines
}

impl Cli {
    fn spawn(cluster: &Cluster, args: &[&str]) -> Cli {
        let mut child = Command::new(env!("CARGO_BIN_EXE_paxosctl"))
            .arg("--config")
            .arg(&cluster.config_path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn paxosctl");
        let lines = collect_lines(child.stdout.take().expect("stdout"));
        let notes = collect_lines(child.stderr.take().expect("stderr"));
        Cli {
            stdin: child.stdin.take(),
            child,
            lines,
            notes,
        }
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("type a line");
        stdin.flush().expect("flush stdin");
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    /// Stderr so far.
    fn notes(&self) -> Vec<String> {
        self.notes.lock().expect("notes").clone()
    }

    /// Waits for a stderr line containing `what`; panics with both streams otherwise.
    fn wait_note(&self, what: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(note) = self.notes().into_iter().find(|l| l.contains(what)) {
                return note;
            }
            assert!(
                Instant::now() < deadline,
                "{what:?} not on stderr within {within:?}; stderr: {:#?}; stdout: {:#?}",
                self.notes(),
                self.lines()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `done(lines)` holds, or panics with what was seen.
    fn wait_for(&self, what: &str, within: Duration, done: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            let lines = self.lines();
            if done(&lines) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not seen within {within:?}; output so far: {lines:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_chat_clients_see_each_others_lines_in_the_same_order() {
    let mut cluster = Cluster::new(1, 0.0);
    cluster.start_all();
    cluster.wait_leader(Duration::from_secs(10)).await;
    let mut alice = Cli::spawn(&cluster, &["chat", "--name", "alice"]);
    let mut bob = Cli::spawn(&cluster, &["chat", "--name", "bob"]);
    for i in 0..5 {
        alice.type_line(&format!("hello {i} from alice"));
        bob.type_line(&format!("hi {i} from bob"));
    }
    let all_ten = |lines: &[String]| lines.iter().filter(|l| l.contains(" from ")).count() >= 10;
    alice.wait_for("alice sees all ten lines", Duration::from_secs(20), all_ten);
    bob.wait_for("bob sees all ten lines", Duration::from_secs(20), all_ten);
    let seen_by_alice = alice.lines();
    let seen_by_bob = bob.lines();
    assert_eq!(
        seen_by_alice, seen_by_bob,
        "both see the room in the same order"
    );
    for i in 0..5 {
        assert!(seen_by_alice
            .iter()
            .any(|l| l.ends_with(&format!("bob: hi {i} from bob"))));
        assert!(seen_by_bob
            .iter()
            .any(|l| l.ends_with(&format!("alice: hello {i} from alice"))));
    }
    // Every line is `[slot] name: text`, in increasing slot order.
    let slots: Vec<u64> = seen_by_alice
        .iter()
        .map(|l| {
            l.trim_start_matches('[')
                .split(']')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("not a chat line: {l}"))
        })
        .collect();
    assert!(slots.windows(2).all(|w| w[0] < w[1]), "{slots:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_output_equals_dump_log_after_a_leader_kill() {
    let mut cluster = Cluster::new(1, 0.0);
    cluster.start_all();
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let watch = Cli::spawn(&cluster, &["watch", "--json"]);
    let mut client = TestClient::new(&cluster, 1);
    for i in 0..10 {
        client
            .submit(&format!("before the kill {i}"), Duration::from_secs(20))
            .await
            .expect("commit");
    }
    cluster.kill9(leader);
    for i in 0..10 {
        client
            .submit(&format!("after the kill {i}"), Duration::from_secs(20))
            .await
            .expect("commit");
    }
    let survivor = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let log = cluster
        .converged_log(&[survivor, other], 20, Duration::from_secs(20))
        .await;
    watch.wait_for(
        "watch reaches the end of the log",
        Duration::from_secs(20),
        |lines| lines.len() >= log.len(),
    );
    let dump = Command::new(env!("CARGO_BIN_EXE_paxosctl"))
        .arg("--config")
        .arg(&cluster.config_path)
        .args(["dump-log", "--uid", &survivor.to_string(), "--json"])
        .output()
        .expect("dump-log");
    assert!(dump.status.success());
    let dumped: Vec<String> = String::from_utf8_lossy(&dump.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let watched = watch.lines();
    assert_eq!(
        watched[..dumped.len()],
        dumped[..],
        "watch --json equals dump-log --json, no gap, no repeat"
    );
    assert_eq!(dumped.len(), log.len());
}

/// The slot and replica of watch's note `watch: caught up at slot N on replica U (..)`.
fn caught_up(note: &str) -> (u64, u64) {
    let number_after = |word: &str| {
        note.split(word)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no number after {word:?} in {note:?}"))
    };
    (number_after(" at slot "), number_after(" on replica "))
}

/// watch's first pages are linearizable by default: a message acknowledged just before
/// `watch` starts on a follower lies below where watch says its first pages end. With
/// heartbeats a second apart, the follower learns that the slot is chosen only from the
/// leader's next heartbeat, well after the ack, so a first page served from the
/// follower's applied log as it is would end at the message's slot (three rounds: each
/// one such chance). `--stale` is accepted and starts from what the follower has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_first_page_from_a_follower_holds_every_acknowledged_message() {
    let mut cluster = Cluster::new(1, 0.0);
    cluster.config.heartbeat_ms = 1000;
    cluster.config.timeout_ms = 5000;
    cluster.config.validate().expect("valid config");
    std::fs::write(&cluster.config_path, cluster.config.to_toml_string()).expect("config");
    cluster.start_all();
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let follower = (leader + 1) % 3;
    let mut client = TestClient::new(&cluster, 78);
    client
        .submit("before", Duration::from_secs(20))
        .await
        .expect("commit");
    for round in 0..3 {
        let (id, slot) = client
            .submit(
                &format!("acked before watch {round}"),
                Duration::from_secs(20),
            )
            .await
            .expect("commit");
        let watch = Cli::spawn(
            &cluster,
            &["watch", "--json", "--uid", &follower.to_string()],
        );
        let note = watch.wait_note("caught up at slot", Duration::from_secs(30));
        let (end, uid) = caught_up(&note);
        assert!(note.contains("(linearizable)"), "{note}");
        assert!(
            end > slot,
            "round {round}: watch's first pages from replica {uid} (started on follower \
             {follower}) end at slot {end}, missing {id} acknowledged at slot {slot}"
        );
        let line = format!("\"slot\":{slot},\"kind\":\"msg\",\"id\":\"{id}\"");
        watch.wait_for("the acked message", Duration::from_secs(10), |lines| {
            lines.iter().any(|l| l.contains(&line))
        });
    }
    let stale = Cli::spawn(
        &cluster,
        &["watch", "--json", "--stale", "--uid", &follower.to_string()],
    );
    let note = stale.wait_note("caught up at slot", Duration::from_secs(30));
    assert!(note.contains("(stale)"), "{note}");
    stale.wait_for("the first message", Duration::from_secs(10), |lines| {
        lines.iter().any(|l| l.contains("\"body\":\"before\""))
    });
}

/// `bench --read` reads the log's tail both ways from a follower, every read checked to
/// reach its read index (an error otherwise); bad read flags are usage errors (exit 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_reads_the_tail_both_ways() {
    let mut cluster = Cluster::new(1, 0.0);
    cluster.start_all();
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let follower = (leader + 1) % 3;
    let mut client = TestClient::new(&cluster, 79);
    for i in 0..10 {
        client
            .submit(&format!("m{i}"), Duration::from_secs(20))
            .await
            .expect("commit");
    }
    let bench = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_paxosctl"))
            .arg("--config")
            .arg(&cluster.config_path)
            .arg("bench")
            .args(args)
            .output()
            .expect("run paxosctl bench")
    };
    let uid = follower.to_string();
    for mode in ["linearizable", "stale"] {
        let out = bench(&[
            "--read",
            mode,
            "--uid",
            &uid,
            "--tail",
            "4",
            "--clients",
            "2",
            "--duration",
            "0.5",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{mode}: {stderr}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().last().unwrap_or_default();
        assert!(
            line.starts_with("{\"ops_per_s\":") && line.ends_with("\"errors\":0}"),
            "{mode}: {line}; {stderr}"
        );
    }
    for args in [
        &["--read", "stale", "--tail", "0"][..],
        &["--read", "stale", "--uid", "3"][..],
        &["--read", "sometimes"][..],
        &["--tail", "4"][..],
    ] {
        let out = bench(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

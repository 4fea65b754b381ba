//! `paxosctl` driven as a person would: child processes fed through stdin, their output
//! read back, against real `paxosd` replicas.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Cluster, TestClient};

/// A `paxosctl` child whose stdout lines are collected by a thread.
struct Cli {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Cli {
    fn spawn(cluster: &Cluster, args: &[&str]) -> Cli {
        let mut child = Command::new(env!("CARGO_BIN_EXE_paxosctl"))
            .arg("--config")
            .arg(&cluster.config_path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn paxosctl");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(line) => sink.lock().expect("lines").push(line),
                    Err(_) => break,
                }
            }
        });
        Cli {
            stdin: child.stdin.take(),
            child,
            lines,
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

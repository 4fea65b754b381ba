//! `paxosctl`'s conventions, one test per numbered finding of issue 15 (items 2-12; item
//! 1 is `ctl_chat.rs`), each against real `paxosd` replicas or real closed ports.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Cluster, TestClient};

/// `paxosctl` with a clean environment (no PAXOSCTL_*), in `cwd` if given.
fn paxosctl() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_paxosctl"));
    command
        .env_remove("PAXOSCTL_CONFIG")
        .env_remove("PAXOSCTL_ENDPOINTS")
        .stdin(Stdio::null());
    command
}

/// `paxosctl --config <cluster's> args...`, run to the end.
fn ctl(cluster: &Cluster, args: &[&str]) -> Output {
    paxosctl()
        .arg("--config")
        .arg(&cluster.config_path)
        .args(args)
        .output()
        .expect("run paxosctl")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A long-running `paxosctl` whose stdout lines are collected by a thread.
struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn spawn(cluster: &Cluster, args: &[&str]) -> Running {
        let mut child = paxosctl()
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
        Running { child, lines }
    }

    fn wait_for(&self, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let lines = self.lines.lock().expect("lines").clone();
            if done(&lines) {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not seen; got {lines:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const HOSTILE: &str = "\u{1b}[31mred\nx";

/// Item 2: bodies are escaped in chat and watch; `--json` is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_are_escaped_and_json_is_exact() {
    let mut cluster = Cluster::new(1, 0.0);
    cluster.start_all();
    cluster.wait_leader(Duration::from_secs(10)).await;
    let mut client = TestClient::new(&cluster, 5);
    let (_, slot) = client
        .submit(HOSTILE, Duration::from_secs(20))
        .await
        .expect("commit");
    let expected = format!("[{slot}] \\u{{1b}}[31mred\\nx");
    for args in [&["watch"][..], &["chat", "--name", "eve"][..]] {
        let running = Running::spawn(&cluster, args);
        let lines = running.wait_for("the hostile message", |l| {
            l.iter().any(|l| l.contains("red"))
        });
        let line = lines.iter().find(|l| l.contains("red")).expect("line");
        assert_eq!(line, &expected, "{args:?}");
        assert!(
            !lines.iter().any(|l| l.contains('\u{1b}') || l == "x"),
            "{args:?}: {lines:?}"
        );
    }
    let running = Running::spawn(&cluster, &["watch", "--json"]);
    let lines = running.wait_for("json", |l| l.iter().any(|l| l.contains("red")));
    let line = lines.iter().find(|l| l.contains("red")).expect("line");
    let value: serde_json::Value = serde_json::from_str(line).expect("json");
    assert_eq!(value["body"], HOSTILE);
}

/// Item 3: every replica refusing is an error in well under a second, naming each.
#[test]
fn submit_fails_fast_when_every_replica_refuses() {
    let cluster = Cluster::new(1, 0.0); // never started: every port refuses
    let started = Instant::now();
    let output = ctl(&cluster, &["submit", "hello"]);
    let took = started.elapsed();
    let stderr = text(&output.stderr);
    // Well under a second on an idle machine; the old client waited the 10 s deadline.
    assert!(took < Duration::from_secs(3), "took {took:?}: {stderr}");
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    for uid in 0..3 {
        let addr = cluster.addr(uid);
        assert!(
            stderr.contains(&format!("replica {uid} ({addr}): connection refused")),
            "{stderr}"
        );
    }
}

/// Item 4: bench against no cluster names the cause.
#[test]
fn bench_errors_name_their_cause() {
    let cluster = Cluster::new(1, 0.0);
    let output = ctl(&cluster, &["bench", "--clients", "2", "--duration", "1"]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("connection refused"), "{stderr}");
    assert!(!stderr.contains("cut off"), "{stderr}");
}

/// Item 5 (and issue 14 item 4): status and health exit non-zero without a quorum and say
/// why; status --json has address, lag, leader and the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_health_without_a_quorum() {
    let mut cluster = Cluster::new(1, 0.0);
    cluster.start(0, &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.status(0).await.is_none() {
        assert!(Instant::now() < deadline, "replica 0 never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let output = ctl(&cluster, &["status"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("no quorum: 1 of 3 replicas answered"),
        "{stderr}"
    );
    assert!(stderr.contains("connection refused"), "{stderr}");

    let output = ctl(&cluster, &["status", "--json"]);
    assert_eq!(output.status.code(), Some(3));
    let lines: Vec<serde_json::Value> = text(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 3);
    let up = &lines[0];
    assert_eq!(up["uid"], 0);
    assert_eq!(up["reachable"], true);
    assert_eq!(up["address"], cluster.addr(0).to_string());
    assert_eq!(up["lag"], 0);
    assert!(up["error"].is_null());
    let keys: Vec<&str> = up
        .as_object()
        .expect("object")
        .keys()
        .map(|k| k.as_str())
        .collect();
    for key in [
        "uid",
        "reachable",
        "role",
        "ballot",
        "decided",
        "address",
        "lag",
        "leader",
        "error",
    ] {
        assert!(keys.contains(&key), "{key} missing: {up}");
    }
    assert_eq!(lines[1]["reachable"], false);
    assert_eq!(lines[1]["error"], "connection refused");
    assert_eq!(ctl(&cluster, &["health"]).status.code(), Some(3));

    cluster.start(1, &[]);
    cluster.start(2, &[]);
    cluster.wait_leader(Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health = ctl(&cluster, &["health", "--json"]);
        let value: serde_json::Value =
            serde_json::from_str(text(&health.stdout).trim()).expect("json");
        // Healthy (exit 0) exactly when the line says so; wait until all three answer.
        assert_eq!(health.status.success(), value["healthy"] == true, "{value}");
        if health.status.success() && value["reachable"] == 3 {
            assert!(value["error"].is_null(), "{value}");
            break;
        }
        assert!(Instant::now() < deadline, "{}", text(&health.stdout));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ctl(&cluster, &["status"]).status.success());
}

/// Item 6: `--json` where it means nothing is refused, not ignored.
#[test]
fn json_is_refused_where_it_means_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let target = dir.path().join("c.toml");
    let target = target.to_str().expect("utf-8 path");
    for args in [
        &["gen-config", "-f", "1", "--json"][..],
        &["gen-config", "-f", "1", "-o", target, "-w", "json"][..],
        &["run", "-f", "1", "--duration", "1", "--json"][..],
        &["chat", "--json"][..],
        &["completions", "bash", "--json"][..],
        &["status", "--json", "-w", "table"][..],
    ] {
        let output = paxosctl().args(args).output().expect("run");
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("json"), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    assert!(!dir.path().join("c.toml").exists());
}

/// Item 7: `submit -` and `--file`; empty messages refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_from_stdin_or_a_file_and_never_empty() {
    let mut cluster = Cluster::new(1, 0.0);
    cluster.start_all();
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let submit_stdin = |input: &str, args: &[&str]| {
        let mut child = paxosctl()
            .arg("--config")
            .arg(&cluster.config_path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("wait")
    };
    let output = submit_stdin("hi from stdin\n", &["submit", "-"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let slot: u64 = text(&output.stdout).trim().parse().expect("a slot");
    let file = cluster.dir.path().join("note.txt");
    std::fs::write(&file, "from a file\nwith two lines\n").expect("write");
    let output = ctl(
        &cluster,
        &["submit", "--file", file.to_str().expect("utf-8")],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    for (input, args) in [
        ("", &["submit", "-"][..]),
        ("\n", &["submit", "-"][..]),
        ("", &["submit", ""][..]),
    ] {
        let output = submit_stdin(input, args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            text(&output.stderr).contains("empty"),
            "{}",
            text(&output.stderr)
        );
    }
    let log = cluster.log(leader).await;
    let bodies: Vec<&str> = log.iter().map(|e| e.body.as_str()).collect();
    assert_eq!(
        log.iter().find(|e| e.slot == slot).map(|e| e.body.as_str()),
        Some("hi from stdin")
    );
    assert!(
        bodies.contains(&"from a file\nwith two lines"),
        "{bodies:?}"
    );
    assert!(!bodies.contains(&"-"), "{bodies:?}");
    assert_eq!(
        bodies.iter().filter(|b| b.trim().is_empty()).count(),
        0,
        "{bodies:?}"
    );
    // DESIGN's interface stays: the argument is the message.
    let output = ctl(&cluster, &["submit", "--json", "plain"]);
    let value: serde_json::Value = serde_json::from_str(text(&output.stdout).trim()).expect("json");
    assert!(value["slot"].is_u64() && value["id"].is_string(), "{value}");
}

/// Item 8: a closed stdout is never a panic (exit 0 or 141).
#[test]
fn a_closed_stdout_is_quiet() {
    for args in [
        &["completions", "zsh"][..],
        &["completions", "bash"][..],
        &["gen-config", "-f", "2"][..],
        &["version"][..],
        &["--help"][..],
    ] {
        // The read end is closed before the child starts: every write fails with EPIPE.
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let output = paxosctl()
            .args(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("run");
        let stderr = text(&output.stderr);
        let code = output.status.code();
        assert!(
            code == Some(0) || code == Some(141) || code.is_none(),
            "{args:?}: {:?} {stderr}",
            output.status
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    let output = paxosctl().args(["version"]).output().expect("run");
    assert_eq!(
        text(&output.stdout).trim(),
        format!("paxosctl {}", env!("CARGO_PKG_VERSION"))
    );
}

/// Item 9: gen-config never overwrites without --force; and the root config.toml is what
/// it writes for the default cluster (issue 9 item 6).
#[test]
fn gen_config_refuses_to_overwrite() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "keep me\n").expect("write");
    let p = path.to_str().expect("utf-8");
    let output = paxosctl()
        .args(["gen-config", "-f", "1", "-o", p])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("--force"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "keep me\n");
    let output = paxosctl()
        .args(["gen-config", "-f", "2", "-o", p, "--force"])
        .output()
        .expect("run");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let config = paxos::config::Config::load(&path).expect("a valid config");
    assert_eq!(config.replicas(), 5);

    // The root config.toml is the plaintext loopback sample: gen-config's output
    // without TLS (with TLS, gen-config writes certificates and a [tls] section).
    let output = paxosctl()
        .args(["gen-config", "-f", "1", "--no-tls"])
        .output()
        .expect("run");
    let root = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"))
        .expect("root config.toml");
    assert_eq!(text(&output.stdout), root);
}

/// Item 10: run shows its header first and last, and a progress line per client rather
/// than a line per commit.
#[test]
fn run_header_first_and_last_and_compact_progress() {
    let dir = tempfile::tempdir().expect("tmp");
    let run_dir = dir.path().join("run");
    let output = paxosctl()
        .args([
            "run",
            "-f",
            "1",
            "--clients",
            "2",
            "--duration",
            "4",
            "--data-dir",
        ])
        .arg(&run_dir)
        .output()
        .expect("run");
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.starts_with("run directory: "), "{stderr}");
    assert_eq!(stderr.matches("run directory: ").count(), 2, "{stderr}");
    assert!(stderr.contains("press Ctrl-C to stop"), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() <= 20, "{} lines: {stdout}", lines.len());
    let last_commits = |n: usize| -> u64 {
        lines
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix(&format!("client {n}: ")))
            .and_then(|rest| rest.split(' ').next())
            .and_then(|count| count.parse().ok())
            .unwrap_or_else(|| panic!("no progress line for client {n}: {stdout}"))
    };
    // Many commits, few lines.
    assert!(
        last_commits(0) + last_commits(1) > lines.len() as u64,
        "{stdout}"
    );
}

/// Item 11: the config used is said when it is the embedded default; the environment
/// selects one (a file, or bare endpoints).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_from_the_environment_and_never_silent() {
    let empty = tempfile::tempdir().expect("tmp");
    let output = paxosctl()
        .current_dir(empty.path())
        .args(["status"])
        .output()
        .expect("run");
    let stderr = text(&output.stderr);
    assert!(stderr.contains("using the embedded default"), "{stderr}");

    let mut cluster = Cluster::new(1, 0.0);
    cluster.start_all();
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let output = paxosctl()
        .current_dir(empty.path())
        .env("PAXOSCTL_CONFIG", &cluster.config_path)
        .args(["submit", "via the env"])
        .output()
        .expect("run");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(!text(&output.stderr).contains("embedded"));
    let endpoints: Vec<String> = (0..3).map(|u| cluster.addr(u).to_string()).collect();
    let output = paxosctl()
        .current_dir(empty.path())
        .env("PAXOSCTL_ENDPOINTS", endpoints.join(","))
        .args(["status", "-w", "json"])
        .output()
        .expect("run");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains(&endpoints[2]));
    let output = paxosctl()
        .current_dir(empty.path())
        .args([
            "--endpoints",
            &endpoints.join(","),
            "dump-log",
            "--json",
            "--uid",
        ])
        .arg(leader.to_string())
        .output()
        .expect("run");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("via the env"));
}

/// Item 12: with the first replicas down, a fresh client does not wait on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_replicas_first_in_the_config_cost_no_backoff() {
    let mut cluster = Cluster::new(2, 0.0);
    cluster.start_all();
    cluster.wait_leader(Duration::from_secs(10)).await;
    cluster.kill9(0);
    cluster.kill9(1);
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    assert!(leader >= 2);
    // A first commit through the new leader, so it is settled.
    ctl(&cluster, &["submit", "warm up"]);
    let fastest = |endpoints: &[String]| {
        let mut fastest = Duration::MAX;
        for i in 0..5 {
            let started = Instant::now();
            let output = paxosctl()
                .args([
                    "--endpoints",
                    &endpoints.join(","),
                    "submit",
                    &format!("fast {i}"),
                ])
                .output()
                .expect("run");
            fastest = fastest.min(started.elapsed());
            assert!(output.status.success(), "{}", text(&output.stderr));
        }
        fastest
    };
    // The real order, dead replicas first ...
    let in_uid_order: Vec<String> = (0..5).map(|u| cluster.addr(u).to_string()).collect();
    let dead_first = fastest(&in_uid_order);
    // ... against a client that reaches the leader first (the client sends no cluster
    // id, so the order of its endpoints only decides whom it asks first).
    let mut leader_first = in_uid_order.clone();
    leader_first.swap(0, leader as usize);
    let baseline = fastest(&leader_first);
    // The old client slept at least 20 + 40 ms of backoff after the two refusals.
    assert!(
        dead_first < baseline + Duration::from_millis(40),
        "dead replicas first: {dead_first:?}; leader first: {baseline:?}"
    );
}

//! A real Prometheus scrapes a real 3-replica cluster: the committed total rises under
//! load, `paxos_is_leader` moves to the new leader after the leader is `kill -9`ed, and
//! the killed replica's `up` goes to 0 and back to 1 after a restart. All checks go
//! through Prometheus's HTTP API (`/api/v1/query`), as an operator's dashboard would.
//!
//! Needs Debian's `prometheus` package: installed with apt-get when missing (root only;
//! `apt-get update` first only if the plain install fails). Skipped, with a message on
//! stderr, when not root or when the package cannot be installed.

mod support;

use paxos::core::Uid;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{Cluster, TestClient};

const PROMETHEUS: &str = "/usr/bin/prometheus";

/// Runs `cmd` with a time bound; true if it exited 0.
fn run_bounded(cmd: &str, args: &[&str], seconds: u64) -> bool {
    Command::new("timeout")
        .arg(seconds.to_string())
        .arg(cmd)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Makes sure Prometheus is installed; `Err` says why the test is skipped.
fn ensure_prometheus() -> Result<(), String> {
    if Path::new(PROMETHEUS).exists() {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root: cannot apt-get install prometheus".into());
    }
    let install = ["install", "-y", "--no-install-recommends", "prometheus"];
    if run_bounded("apt-get", &install, 300) && Path::new(PROMETHEUS).exists() {
        return Ok(());
    }
    if run_bounded("apt-get", &["update"], 180)
        && run_bounded("apt-get", &install, 300)
        && Path::new(PROMETHEUS).exists()
    {
        return Ok(());
    }
    Err("apt-get install prometheus failed".into())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local addr")
        .port()
}

/// A Prometheus server with its own temp dir, killed by PID when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// One job `paxos` scraping `targets` over plain HTTP.
    fn start(targets: &[SocketAddr]) -> Prometheus {
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        Prometheus::with_jobs(&format!(
            "  - job_name: paxos\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        ))
    }

    /// Scrapes every second with the given `scrape_configs` entries (YAML, indented).
    fn with_jobs(jobs: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n\
             scrape_configs:\n{jobs}"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        Prometheus { child, addr, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The result vector of an instant query, or `None` when Prometheus does not answer.
    fn query(&self, promql: &str) -> Option<Vec<Value>> {
        let path = format!("/api/v1/query?query={}", percent_encode(promql));
        let (status, body) = http_get(self.addr, &path)?;
        if status != 200 {
            return None;
        }
        let json: Value = serde_json::from_str(&body).ok()?;
        json["data"]["result"].as_array().cloned()
    }

    /// Polls `promql` until `check` accepts its result; panics after `within`.
    fn wait_for(
        &self,
        what: &str,
        promql: &str,
        within: Duration,
        check: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + within;
        let mut last = None;
        while Instant::now() < deadline {
            if let Some(result) = self.query(promql) {
                if check(&result) {
                    return result;
                }
                last = Some(result);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "{what}: `{promql}` never matched within {within:?}; last result {last:?}\n\
             prometheus log:\n{}",
            self.log()
        );
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One HTTP/1.0 GET on loopback: (status, body), or `None` on any failure.
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = Vec::new();
    stream.take(16 << 20).read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// The sample value of one result of an instant query.
fn value_of(result: &Value) -> f64 {
    result["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn label_of<'a>(result: &'a Value, label: &str) -> &'a str {
    result["metric"][label].as_str().unwrap_or_default()
}

/// The one series with value 1 of `paxos_is_leader`, as a uid.
fn leader_of(result: &[Value]) -> Option<Uid> {
    match result {
        [one] => label_of(one, "uid").parse().ok(),
        _ => None,
    }
}

async fn submit_some(client: &mut TestClient, prefix: &str, n: usize) {
    for i in 0..n {
        client
            .submit(&format!("{prefix}-{i}"), Duration::from_secs(10))
            .await
            .expect("submit committed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_cluster_through_a_leader_kill() {
    if let Err(why) = ensure_prometheus() {
        eprintln!("SKIPPED prometheus_scrapes_a_cluster_through_a_leader_kill: {why}");
        return;
    }
    let started = Instant::now();
    let mut cluster = Cluster::with_metrics(1, 0.0);
    cluster.start_all();
    let targets: Vec<SocketAddr> = (0..3).map(|u| cluster.metrics_addr(u)).collect();
    let prometheus = Prometheus::start(&targets);
    let old_leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let mut client = TestClient::new(&cluster, 7);
    submit_some(&mut client, "before", 50).await;

    // Every replica is scraped and the leader is the one the cluster reports.
    prometheus.wait_for("all up", "up == 1", Duration::from_secs(15), |r| {
        r.len() == 3
    });
    prometheus.wait_for(
        "leader metric",
        "paxos_is_leader == 1",
        Duration::from_secs(10),
        |r| leader_of(r) == Some(old_leader),
    );
    let committed_before = prometheus.wait_for(
        "committed total",
        &format!("paxos_proposals_committed_total{{uid!=\"{old_leader}\"}}"),
        Duration::from_secs(10),
        |r| r.len() == 2 && r.iter().all(|s| value_of(s) >= 50.0),
    );

    // kill -9 the leader: its target goes down and leadership moves.
    cluster.kill9(old_leader);
    let killed = targets[old_leader as usize];
    let new_leader = cluster.wait_leader(Duration::from_secs(10)).await;
    assert_ne!(new_leader, old_leader);
    submit_some(&mut client, "after", 50).await;
    prometheus.wait_for(
        "killed replica down",
        &format!("up{{instance=\"{killed}\"}}"),
        Duration::from_secs(10),
        |r| r.len() == 1 && value_of(&r[0]) == 0.0,
    );
    prometheus.wait_for(
        "leader metric moved",
        "paxos_is_leader == 1",
        Duration::from_secs(10),
        |r| leader_of(r) == Some(new_leader),
    );
    let before_on_new: f64 = committed_before
        .iter()
        .find(|s| label_of(s, "uid") == new_leader.to_string())
        .map(value_of)
        .expect("new leader's committed total before the kill");
    prometheus.wait_for(
        "committed total rose",
        &format!("paxos_proposals_committed_total{{uid=\"{new_leader}\"}}"),
        Duration::from_secs(10),
        |r| r.len() == 1 && value_of(&r[0]) >= before_on_new + 50.0,
    );
    prometheus.wait_for(
        "an election was won",
        &format!("paxos_elections_won_total{{uid=\"{new_leader}\"}}"),
        Duration::from_secs(10),
        |r| r.len() == 1 && value_of(&r[0]) >= 1.0,
    );

    // Restarted, the replica is scraped again.
    cluster.start(old_leader, &[]);
    prometheus.wait_for(
        "restarted replica up",
        &format!("up{{instance=\"{killed}\"}}"),
        Duration::from_secs(15),
        |r| r.len() == 1 && value_of(&r[0]) == 1.0,
    );
    // Every query of the Grafana dashboard is PromQL that Prometheus accepts.
    let dashboard = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/grafana-dashboard.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(dashboard).unwrap()).unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap().replace("$job", ".*");
            let result = prometheus.query(&expr);
            assert!(
                result.is_some(),
                "dashboard panel {:?}: Prometheus refused `{expr}`",
                panel["title"]
            );
        }
    }
    eprintln!("prometheus test took {:?}", started.elapsed());
}

/// A TLS cluster scraped over HTTPS with only the CA, in the two forms the README gives:
/// one job per replica with `tls_config.server_name` (the name in its certificate), and
/// one job for all by IP (the certificate also names the replica's listen IP, which the
/// metrics address shares here). A job scraping the same targets over plain HTTP stays
/// down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_tls_cluster_over_https() {
    if let Err(why) = ensure_prometheus() {
        eprintln!("SKIPPED prometheus_scrapes_a_tls_cluster_over_https: {why}");
        return;
    }
    let started = Instant::now();
    let mut cluster = Cluster::with_metrics_tls(1);
    cluster.start_all();
    let tls = cluster.config.tls.as_ref().expect("TLS on");
    let ca = tls.resolve(&tls.ca);
    let cluster_id = cluster.config.cluster_id();
    let targets: Vec<SocketAddr> = (0..3).map(|u| cluster.metrics_addr(u)).collect();
    let all: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    let all = all.join(", ");
    let mut jobs = String::new();
    for (uid, target) in targets.iter().enumerate() {
        jobs.push_str(&format!(
            "  - job_name: paxos-{uid}\n    scheme: https\n    tls_config:\n      \
             ca_file: '{}'\n      server_name: 'replica-{uid}.{cluster_id:016x}.paxos'\n    \
             static_configs:\n      - targets: ['{target}']\n",
            ca.display()
        ));
    }
    jobs.push_str(&format!(
        "  - job_name: paxos-by-ip\n    scheme: https\n    tls_config:\n      ca_file: '{}'\n    \
         static_configs:\n      - targets: [{all}]\n",
        ca.display()
    ));
    jobs.push_str(&format!(
        "  - job_name: paxos-plain\n    static_configs:\n      - targets: [{all}]\n"
    ));
    let prometheus = Prometheus::with_jobs(&jobs);

    prometheus.wait_for(
        "every replica up over https, both ways",
        "up{job!=\"paxos-plain\"} == 1",
        Duration::from_secs(15),
        |r| r.len() == 6,
    );
    prometheus.wait_for(
        "one leader, seen over https",
        "paxos_is_leader{job=\"paxos-by-ip\"} == 1",
        Duration::from_secs(10),
        |r| leader_of(r).is_some(),
    );
    prometheus.wait_for(
        "bytes received from peers, seen over https",
        "paxos_peer_received_bytes_total{job=~\"paxos-[0-9]\"} > 0",
        Duration::from_secs(10),
        |r| r.len() >= 4,
    );
    prometheus.wait_for(
        "plain http gets nothing",
        "up{job=\"paxos-plain\"} == 0",
        Duration::from_secs(10),
        |r| r.len() == 3,
    );
    eprintln!("prometheus TLS test took {:?}", started.elapsed());
}

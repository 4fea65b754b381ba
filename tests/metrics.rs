//! The metrics endpoint of real `paxosd` processes: HTTPS with the replica's certificate
//! when the cluster uses TLS (a scraper needs only the CA; plaintext gets no metrics), the
//! byte counters per peer and for clients, and a busy `metrics_addr` failing the start
//! (exit code 2, the field named, no `READY=1` to systemd, the store untouched).
//!
//! Every daemon runs on free loopback ports in a temp dir and is killed by PID when the
//! test ends (also on panic).

mod support;

use paxos::core::Uid;
use paxos::transport::tls::{TlsContext, TlsPem};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::Cluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(15);

/// A scraper that trusts the cluster's CA and presents no certificate (as Prometheus with
/// `tls_config: { ca_file }`).
fn scraper(cluster: &Cluster) -> TlsContext {
    let tls = cluster.config.tls.as_ref().expect("a TLS cluster");
    let ca = std::fs::read(tls.resolve(&tls.ca)).expect("read the CA");
    TlsContext::from_pem(
        cluster.config.cluster_id(),
        cluster.replicas(),
        TlsPem {
            ca: &ca,
            identity: None,
            serve: false,
        },
    )
    .expect("scraper TLS context")
}

/// `GET /metrics` over HTTPS at `addr`, checking that the server's certificate names
/// replica `name_uid`: (status, body).
async fn https_get(
    tls: &TlsContext,
    addr: SocketAddr,
    name_uid: Uid,
) -> std::io::Result<(u16, String)> {
    let stream = TcpStream::connect(addr).await?;
    let mut stream = tls.connect(stream, name_uid).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: paxos\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = Vec::new();
    let read = stream.read_to_end(&mut response).await;
    // The server closes with close_notify; tolerate a bare close after a full response.
    if let Err(e) = read {
        if response.is_empty() {
            return Err(e);
        }
    }
    parse_response(&response)
}

fn parse_response(response: &[u8]) -> std::io::Result<(u16, String)> {
    let text = String::from_utf8_lossy(response);
    let bad = || std::io::Error::other(format!("not an HTTP response: {text:?}"));
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, body.to_string()))
}

/// A plaintext `GET /metrics`: (status, body), or the error that ended it.
fn plain_get(addr: SocketAddr) -> std::io::Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n")?;
    let mut response = Vec::new();
    stream.take(1 << 20).read_to_end(&mut response)?;
    parse_response(&response)
}

/// The samples of an exposition text, by series (name and labels) as written.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn sample(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

/// Scrapes replica `uid` over HTTPS until `check` accepts its samples; panics after
/// [`WAIT`] with the last answer.
async fn scrape_until(
    cluster: &Cluster,
    tls: &TlsContext,
    uid: Uid,
    what: &str,
    check: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + WAIT;
    let mut last = String::new();
    while Instant::now() < deadline {
        match https_get(tls, cluster.metrics_addr(uid), uid).await {
            Ok((200, body)) => {
                let parsed = samples(&body);
                if check(&parsed) {
                    return parsed;
                }
                last = body;
            }
            Ok((status, body)) => last = format!("status {status}: {body}"),
            Err(e) => last = format!("error: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("replica {uid}: {what} not seen within {WAIT:?}; last answer:\n{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_replica_serves_metrics_over_https_with_its_certificate() {
    let mut cluster = Cluster::with_metrics_tls(1);
    cluster.start_all();
    let tls = scraper(&cluster);

    // Every replica answers over HTTPS, with no client certificate, and its links are up.
    let mut leader = None;
    for uid in 0..3 as Uid {
        let got = scrape_until(&cluster, &tls, uid, "both peer links up", |s| {
            (0..3 as Uid).filter(|p| *p != uid).all(|p| {
                sample(
                    s,
                    &format!("paxos_peer_link_up{{uid=\"{uid}\",peer=\"{p}\"}}"),
                ) == 1.0
            })
        })
        .await;
        if sample(&got, &format!("paxos_is_leader{{uid=\"{uid}\"}}")) == 1.0 {
            leader = Some(uid);
        }
    }
    let leader = leader.expect("one replica reports itself leader");

    // Bytes in per peer: the leader hears from both followers (acks), each follower from
    // the leader (heartbeats), counted frame by frame where they are read: the counts
    // keep growing past the hello.
    let mut links = vec![(leader, (leader + 1) % 3), (leader, (leader + 2) % 3)];
    links.extend((0..3 as Uid).filter(|u| *u != leader).map(|f| (f, leader)));
    for (uid, peer) in links {
        let series = format!("paxos_peer_received_bytes_total{{uid=\"{uid}\",peer=\"{peer}\"}}");
        let first = scrape_until(&cluster, &tls, uid, "bytes from a peer", |s| {
            sample(s, &series) > 0.0
        })
        .await;
        let first = sample(&first, &series);
        scrape_until(&cluster, &tls, uid, "bytes from a peer growing", |s| {
            sample(s, &series) >= first + 100.0
        })
        .await;
    }

    // Client bytes both ways, after a submit through paxosctl (mutual TLS as a client).
    let before = scrape_until(&cluster, &tls, leader, "client counters", |_| true).await;
    let received = format!("paxos_client_received_bytes_total{{uid=\"{leader}\"}}");
    let sent = format!("paxos_client_sent_bytes_total{{uid=\"{leader}\"}}");
    let out = Command::new(env!("CARGO_BIN_EXE_paxosctl"))
        .arg("--config")
        .arg(&cluster.config_path)
        .args(["submit", "hello over tls"])
        .stdin(Stdio::null())
        .output()
        .expect("run paxosctl");
    assert!(
        out.status.success(),
        "paxosctl submit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    scrape_until(&cluster, &tls, leader, "client bytes in and out", |s| {
        sample(s, &received) > sample(&before, &received) + "hello over tls".len() as f64
            && sample(s, &sent) > sample(&before, &sent)
    })
    .await;

    // The certificate is the replica's own: a scraper expecting another name refuses it.
    let other = (leader + 1) % 3;
    let wrong = https_get(&tls, cluster.metrics_addr(leader), other).await;
    assert!(
        wrong.is_err(),
        "replica {leader}'s endpoint passed as replica {other}: {wrong:?}"
    );

    // Plaintext gets no metrics, but a 400 that says why.
    let (status, body) = plain_get(cluster.metrics_addr(leader)).expect("a plaintext answer");
    assert_eq!(status, 400, "plaintext GET answered: {body}");
    assert!(body.contains("HTTPS"), "{body}");
    assert!(!body.contains("paxos_"), "metrics over plaintext: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_cluster_serves_plain_http() {
    let mut cluster = Cluster::with_metrics(1, 0.0);
    cluster.start(0, &[]);
    let deadline = Instant::now() + WAIT;
    loop {
        match plain_get(cluster.metrics_addr(0)) {
            Ok((200, body)) if body.contains("paxos_is_leader{uid=\"0\"}") => break,
            other => assert!(
                Instant::now() < deadline,
                "no metrics over HTTP within {WAIT:?}: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `paxosd --uid 0` with `$NOTIFY_SOCKET` set to a socket of ours; returns its
/// exit status (waiting at most `within`, else kills it and returns `None`) and the
/// notifications received.
fn run_with_notify(cluster: &Cluster, within: Duration) -> (Option<i32>, Vec<String>) {
    let socket_path = cluster.dir.path().join("notify.sock");
    let _ = std::fs::remove_file(&socket_path);
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let log = std::fs::File::create(cluster.dir.path().join("paxosd-0.stderr")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_paxosd"))
        .arg("--config")
        .arg(&cluster.config_path)
        .args(["--uid", "0"])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn paxosd");
    let mut notes = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    let code = loop {
        if let Ok(n) = socket.recv(&mut buf) {
            notes.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        if let Ok(Some(status)) = child.try_wait() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
    };
    (code, notes)
}

#[test]
fn a_busy_metrics_addr_fails_the_start_before_ready() {
    let cluster = Cluster::with_metrics(1, 0.0);
    // Control: with the port free the replica announces READY=1 (and keeps running).
    let (code, notes) = run_with_notify(&cluster, Duration::from_secs(3));
    assert_eq!(code, None, "replica exited: {}", cluster.stderr_of(0));
    assert!(notes.iter().any(|n| n.contains("READY=1")), "{notes:?}");
    std::fs::remove_dir_all(cluster.store_dir(0)).unwrap();

    // Someone else holds the metrics port: the start fails, naming the field.
    let busy = std::net::TcpListener::bind(cluster.metrics_addr(0)).expect("hold the port");
    let (code, notes) = run_with_notify(&cluster, Duration::from_secs(10));
    let stderr = cluster.stderr_of(0);
    assert_eq!(code, Some(2), "exit code; stderr:\n{stderr}");
    assert!(
        stderr.contains("replica[0].metrics_addr") && stderr.contains("cannot listen"),
        "stderr:\n{stderr}"
    );
    assert!(
        !notes.iter().any(|n| n.contains("READY=1")),
        "READY=1 sent before failing: {notes:?}"
    );
    // Bound before the store is opened: a fresh store stays fresh (uid 0 keeps its
    // initial leadership for the next start).
    assert!(
        !cluster.store_dir(0).exists(),
        "the store was created by a start that failed"
    );
    drop(busy);
}

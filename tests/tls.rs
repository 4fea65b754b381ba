//! Mutual TLS with real daemons: a cluster from `paxosctl gen-config` (TLS on by default),
//! attacked and misused on loopback the way issue 12 describes.
//!
//! Each test starts its own `paxosd` processes on free loopback ports in a temp dir and
//! kills them by PID when it ends (also on panic).

use paxos::client::Client;
use paxos::config::Config;
use paxos::core::{Ballot, PeerMessage, RequestId, Uid, Value};
use paxos::transport::certs::{Ca, Validity};
use paxos::transport::tls::{TlsContext, TlsPem};
use paxos::transport::wire::{ClientRequest, ClientResponse, Hello};
use paxos::transport::{encode_frame, ClientLink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FORGED: &str = "forged by an attacker";

struct Daemons {
    dir: tempfile::TempDir,
    config_path: PathBuf,
    config: Config,
    children: Vec<Option<Child>>,
}

/// `n` consecutive free loopback ports (gen-config numbers them from a base port).
fn free_base_port(n: u16) -> u16 {
    for _ in 0..200 {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = probe.local_addr().unwrap().port();
        drop(probe);
        if base > 65000 {
            continue;
        }
        let all: Vec<_> = (0..n)
            .map(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)))
            .collect();
        if all.iter().all(|l| l.is_ok()) {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

fn paxosctl(args: &[&str], cwd: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_paxosctl"))
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("run paxosctl")
}

impl Daemons {
    /// `paxosctl gen-config -f 1 -o DIR/config.toml` (`extra` appended), nothing started.
    fn gen_config(extra: &[&str]) -> Daemons {
        let dir = tempfile::tempdir().unwrap();
        let base = free_base_port(3).to_string();
        let mut args = vec![
            "gen-config",
            "-f",
            "1",
            "--timeout-ms",
            "400",
            "--base-port",
            &base,
            "-o",
            "config.toml",
        ];
        args.extend_from_slice(extra);
        let out = paxosctl(&args, dir.path());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config_path = dir.path().join("config.toml");
        let config = Config::load(&config_path).unwrap();
        Daemons {
            dir,
            config_path,
            children: (0..config.replicas()).map(|_| None).collect(),
            config,
        }
    }

    fn reload(&mut self) {
        self.config = Config::load(&self.config_path).unwrap();
    }

    fn stderr_path(&self, uid: Uid) -> PathBuf {
        self.dir.path().join(format!("paxosd-{uid}.stderr"))
    }

    fn stderr_of(&self, uid: Uid) -> String {
        std::fs::read_to_string(self.stderr_path(uid)).unwrap_or_default()
    }

    fn start(&mut self, uid: Uid) {
        assert!(self.children[uid as usize].is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path(uid))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_paxosd"))
            .arg("--config")
            .arg(&self.config_path)
            .arg("--uid")
            .arg(uid.to_string())
            .current_dir(self.dir.path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children[uid as usize] = Some(child);
    }

    fn start_all(&mut self) {
        for uid in 0..self.config.replicas() as Uid {
            self.start(uid);
        }
    }

    /// SIGTERM and wait (a rolling restart stops replicas cleanly).
    fn stop(&mut self, uid: Uid) {
        let mut child = self.children[uid as usize].take().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("replica {uid} did not stop within 10 s of SIGTERM");
    }

    fn addr(&self, uid: Uid) -> std::net::SocketAddr {
        self.config.replica_addr(uid).unwrap()
    }

    fn file(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join("tls").join(name)).unwrap()
    }

    /// A TLS context of this cluster presenting `cert`/`key` (files under tls/).
    fn context(&self, ca: &[u8], identity: Option<(&[u8], &[u8])>) -> TlsContext {
        TlsContext::from_pem(
            self.config.cluster_id(),
            self.config.replicas(),
            TlsPem {
                ca,
                identity,
                serve: false,
            },
        )
        .unwrap()
    }

    /// Waits until some replica's status says it is the leader and others follow it.
    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut client = Client::new(self.config.clone());
        while Instant::now() < deadline {
            if client.submit("ready?").await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("cluster not ready: {}", self.stderr_of(0));
    }

    /// Replica `uid`'s applied log (bodies), over TLS with the client certificate.
    async fn bodies(&self, uid: Uid) -> Vec<String> {
        match self.try_bodies(uid).await {
            Ok(bodies) => bodies,
            Err(e) => panic!("reading replica {uid}'s log: {e}"),
        }
    }

    async fn try_bodies(&self, uid: Uid) -> Result<Vec<String>, String> {
        let mut client = Client::new(self.config.clone());
        let mut out = Vec::new();
        let mut from = 0;
        loop {
            match client.read_log(uid, from, 1000, 0).await {
                Ok((entries, _)) if entries.is_empty() => return Ok(out),
                Ok((entries, _)) => {
                    from = entries.last().unwrap().slot + 1;
                    out.extend(entries.into_iter().map(|e| e.body));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The attack of issue 12: a peer hello claiming uid 0, then an Accept with a high ballot
/// that commits a forged message at slot 0.
fn forged_frames(cluster_id: u64) -> Vec<u8> {
    let mut bytes = encode_frame(&Hello::Peer { uid: 0, cluster_id }).unwrap();
    let accept = PeerMessage::Accept {
        ballot: Ballot::new(1_000, 0),
        first_slot: 0,
        values: vec![Value::Msg {
            id: RequestId {
                client_id: 666,
                seq: 1,
            },
            body: FORGED.to_string(),
        }],
        decided_upto: 1,
        decided_above: vec![],
    };
    bytes.extend(encode_frame(&accept).unwrap());
    bytes
}

/// Whether the other end closes (or breaks) the connection within `within`.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    match tokio::time::timeout(within, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => true, // an alert or bytes: the listener answered and closes
        Err(_) => false,
    }
}

async fn wait_log(d: &Daemons, uid: Uid, needle: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if d.stderr_of(uid).contains(needle) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn assert_not_forged(d: &Daemons) {
    // A real message after the attack: anything the attack did is in the logs by then.
    let mut client = Client::new(d.config.clone());
    client.submit("after the attack").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for uid in 0..3 {
        let bodies = d.bodies(uid).await;
        assert!(
            !bodies.iter().any(|b| b == FORGED),
            "replica {uid} took the forged message: {bodies:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_accept_over_plaintext_fails_against_the_default_config() {
    let mut d = Daemons::gen_config(&[]);
    assert!(d.config.tls.is_some(), "gen-config turns TLS on by default");
    d.start_all();
    d.wait_ready().await;
    let mut attacker = TcpStream::connect(d.addr(1)).await.unwrap();
    attacker
        .write_all(&forged_frames(d.config.cluster_id()))
        .await
        .unwrap();
    assert!(
        closed_within(&mut attacker, Duration::from_secs(3)).await,
        "replica 1 kept a plaintext connection open"
    );
    assert!(
        wait_log(
            &d,
            1,
            "closing connection: TLS refused",
            Duration::from_secs(3)
        )
        .await,
        "refused at the TLS layer: {}",
        d.stderr_of(1)
    );
    assert_not_forged(&d).await;
}

/// The control: the same script against a plaintext cluster does put the forged message
/// into the log (so the test above fails if TLS is not in the way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_accept_succeeds_against_plaintext_so_the_attack_script_is_real() {
    let mut d = Daemons::gen_config(&["--no-tls"]);
    assert!(d.config.tls.is_none());
    d.start_all();
    d.wait_ready().await;
    let mut attacker = TcpStream::connect(d.addr(1)).await.unwrap();
    attacker
        .write_all(&forged_frames(d.config.cluster_id()))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if d.bodies(1).await.iter().any(|b| b == FORGED) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the plaintext attack did not land: {}",
            d.stderr_of(1)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        d.stderr_of(1).contains("plaintext on loopback"),
        "one warning at start"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_another_ca_is_refused() {
    let mut d = Daemons::gen_config(&[]);
    d.start_all();
    d.wait_ready().await;
    let cluster_id = d.config.cluster_id();
    let other = Ca::generate(cluster_id, Validity::Years(1)).unwrap();
    let fake = other
        .issue_replica(cluster_id, 0, d.addr(0), Validity::Years(1))
        .unwrap();
    let ca = d.file("ca.pem");
    let context = d.context(
        &ca,
        Some((fake.cert_pem.as_bytes(), fake.key_pem.as_bytes())),
    );
    let tcp = TcpStream::connect(d.addr(1)).await.unwrap();
    // TLS 1.3: the dialer's handshake completes; the listener refuses its certificate.
    if let Ok(mut tls) = context.connect(tcp, 1).await {
        let _ = tls.write_all(&forged_frames(cluster_id)).await;
        let _ = tls.flush().await;
        assert!(closed_within(&mut tls, Duration::from_secs(3)).await);
    }
    assert!(
        wait_log(&d, 1, "TLS refused", Duration::from_secs(3)).await,
        "{}",
        d.stderr_of(1)
    );
    assert!(
        d.stderr_of(1).contains("invalid peer certificate"),
        "{}",
        d.stderr_of(1)
    );
    assert_not_forged(&d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_certificate_claiming_another_uid_is_refused() {
    let mut d = Daemons::gen_config(&[]);
    d.start_all();
    d.wait_ready().await;
    let cluster_id = d.config.cluster_id();
    let (ca, cert, key) = (
        d.file("ca.pem"),
        d.file("replica-1.pem"),
        d.file("replica-1.key"),
    );
    let context = d.context(&ca, Some((&cert, &key)));
    let tcp = TcpStream::connect(d.addr(2)).await.unwrap();
    let mut tls = context.connect(tcp, 2).await.unwrap();
    tls.write_all(&forged_frames(cluster_id)).await.unwrap();
    tls.flush().await.unwrap();
    assert!(closed_within(&mut tls, Duration::from_secs(3)).await);
    assert!(
        wait_log(
            &d,
            2,
            "certificate does not name this uid",
            Duration::from_secs(3)
        )
        .await,
        "{}",
        d.stderr_of(2)
    );
    assert_not_forged(&d).await;
    // The same certificate with its own uid opens a peer link (the real replica 1 then
    // supersedes it).
    let tcp = TcpStream::connect(d.addr(2)).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let mut tls = context.connect(tcp, 2).await.unwrap();
    let hello = encode_frame(&Hello::Peer { uid: 1, cluster_id }).unwrap();
    tls.write_all(&hello).await.unwrap();
    tls.flush().await.unwrap();
    let accepted = format!("peer connected peer={local} uid=1");
    assert!(
        wait_log(&d, 2, &accepted, Duration::from_secs(3)).await,
        "{}",
        d.stderr_of(2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_cannot_open_a_peer_link() {
    let mut d = Daemons::gen_config(&[]);
    d.start_all();
    d.wait_ready().await;
    let cluster_id = d.config.cluster_id();
    let (ca, cert, key) = (d.file("ca.pem"), d.file("client.pem"), d.file("client.key"));
    let context = d.context(&ca, Some((&cert, &key)));
    let tcp = TcpStream::connect(d.addr(1)).await.unwrap();
    let mut tls = context.connect(tcp, 1).await.unwrap();
    tls.write_all(&forged_frames(cluster_id)).await.unwrap();
    tls.flush().await.unwrap();
    assert!(closed_within(&mut tls, Duration::from_secs(3)).await);
    assert!(
        wait_log(
            &d,
            1,
            "certificate does not name this uid",
            Duration::from_secs(3)
        )
        .await,
        "{}",
        d.stderr_of(1)
    );
    assert_not_forged(&d).await;
    // The client certificate does work as a client.
    let mut link = ClientLink::connect_to(d.addr(1), Duration::from_secs(2), Some((&context, 1)))
        .await
        .unwrap();
    let answer = link.call(&ClientRequest::Status).await.unwrap();
    assert!(matches!(answer, ClientResponse::Status(_)), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_certificate_gets_an_error_naming_tls() {
    let mut d = Daemons::gen_config(&[]);
    d.start(0);
    let ca = d.file("ca.pem");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(d.addr(0)).await.is_err() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // TLS, but no certificate.
    let context = d.context(&ca, None);
    let error = match ClientLink::connect_to(d.addr(0), Duration::from_secs(2), Some((&context, 0))).await {
        Ok(mut link) => link.call(&ClientRequest::Status).await.unwrap_err(),
        Err(e) => e,
    }
    .to_string();
    assert!(error.contains("TLS"), "{error}");
    // Usually the listener's alert ("CertificateRequired"); a reset if it closed before
    // the client's write.
    assert!(
        error.contains("CertificateRequired") || error.contains("reset") || error.contains("pipe"),
        "{error}"
    );
    // No TLS at all (a config without [tls]).
    let mut link = ClientLink::connect(d.addr(0), Duration::from_secs(2))
        .await
        .unwrap();
    let error = link
        .call(&ClientRequest::Status)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("TLS"), "{error}");
    // paxosctl with the config but the client key gone: the error names the field.
    std::fs::remove_file(d.dir.path().join("tls/client.key")).unwrap();
    let out = paxosctl(
        &["--config", "config.toml", "submit", "x", "--timeout", "2"],
        d.dir.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("tls.client_key"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_with_an_expired_certificate_logs_why_it_cannot_connect() {
    let mut d = Daemons::gen_config(&[]);
    // A brand-new cluster registers every store once (lost-disk safety): start it whole,
    // then give replica 2 an expired certificate and restart it.
    d.start_all();
    d.wait_ready().await;
    d.stop(2);
    let out = paxosctl(
        &[
            "--config",
            "config.toml",
            "certs",
            "--uid",
            "2",
            "--expired",
        ],
        d.dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.start(2);
    assert!(
        wait_log(&d, 2, "outside its validity period", Duration::from_secs(5)).await,
        "{}",
        d.stderr_of(2)
    );
    assert!(d.stderr_of(2).contains("expired"), "{}", d.stderr_of(2));
    // Its peers refuse it and say why...
    assert!(
        wait_log(&d, 0, "CertificateExpired", Duration::from_secs(5)).await
            || wait_log(&d, 0, "certificate expired", Duration::from_secs(1)).await,
        "{}",
        d.stderr_of(0)
    );
    // ...and its own links say why they fail.
    assert!(
        wait_log(&d, 2, "CertificateExpired", Duration::from_secs(5)).await,
        "{}",
        d.stderr_of(2)
    );
    // The two others still make progress.
    d.wait_ready().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_one_certificate_with_a_rolling_restart_loses_nothing() {
    let mut d = Daemons::gen_config(&[]);
    d.start_all();
    d.wait_ready().await;
    let before = d.file("replica-1.pem");
    let mut client = Client::new(d.config.clone());
    let mut sent = Vec::new();
    for i in 0..10 {
        let body = format!("before rotation {i}");
        client.submit(&body).await.unwrap();
        sent.push(body);
    }
    let out = paxosctl(
        &["--config", "config.toml", "certs", "--uid", "1"],
        d.dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(before, d.file("replica-1.pem"), "a new certificate");
    d.reload();
    // Rolling restart: one replica at a time, messages in between.
    for uid in [1, 2, 0] {
        d.stop(uid);
        for i in 0..5 {
            let body = format!("while {uid} restarts {i}");
            client.submit(&body).await.unwrap();
            sent.push(body);
        }
        d.start(uid);
        d.wait_ready().await;
    }
    // With 2 stopped, a quorum needs 1 with its new certificate.
    d.stop(2);
    for i in 0..5 {
        let body = format!("needs the rotated replica {i}");
        client.submit(&body).await.unwrap();
        sent.push(body);
    }
    d.start(2);
    let deadline = Instant::now() + Duration::from_secs(15);
    for uid in 0..3 {
        loop {
            // A replica just started may not listen yet: retry until the deadline.
            let bodies = d.try_bodies(uid).await.unwrap_or_default();
            let missing: Vec<_> = sent
                .iter()
                .filter(|s| bodies.iter().filter(|b| b == s).count() != 1)
                .collect();
            if missing.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "replica {uid} lacks {missing:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[test]
fn plaintext_on_a_non_loopback_address_is_refused_unless_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let write = |extra: &str| {
        let text =
            format!("f = 0\ndata_dir = \"data\"\n[[replica]]\naddr = \"192.0.2.1:7101\"\n{extra}");
        std::fs::write(dir.path().join("config.toml"), text).unwrap();
    };
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_paxosd"))
            .args(["--config", "config.toml", "--uid", "0"])
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    write("");
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("tls"), "{stderr}");
    assert!(stderr.contains("loopback"), "{stderr}");
    // Turned off explicitly: past the TLS rule (it then fails to bind a TEST-NET address
    // this host does not have, without sending anything).
    write("[tls]\nenabled = false\n");
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("loopback only"), "{stderr}");
    assert!(stderr.contains("TLS is turned off"), "{stderr}");
    // A bad [tls] names its field.
    write("[tls]\nca = \"\"\n");
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("tls.ca"), "{stderr}");
}

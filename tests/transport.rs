//! Transport over real loopback sockets: peer links deliver, bad connections are closed
//! one by one while the listener keeps accepting, clients are handed to the node, and
//! the configured loss drops what it should.

use paxos::core::{Ballot, PeerMessage, ReplicaStatus, Role, Uid};
use paxos::transport::{
    accept_loop, encode_frame, ClientConn, ClientLink, ClientRequest, ClientResponse, Hello,
    ListenerConfig, ListenerCounters, PeerLinks, StatusReport, FRAME_BYTES_MAX,
};
use rand::{RngCore, SeedableRng};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

const CLUSTER: u64 = 0xc1u64;
const MY_UID: Uid = 0;
const REPLICAS: usize = 3;
const HELLO_TIMEOUT: Duration = Duration::from_millis(300);
const WAIT: Duration = Duration::from_secs(5);

struct Server {
    addr: SocketAddr,
    peer_rx: mpsc::Receiver<(Uid, PeerMessage)>,
    client_rx: mpsc::Receiver<ClientConn>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    /// The listener's byte counts (what the metrics report).
    counters: std::sync::Arc<ListenerCounters>,
}

async fn start_on(addr: SocketAddr) -> Server {
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (peer_tx, peer_rx) = mpsc::channel(1024);
    let (client_tx, client_rx) = mpsc::channel(16);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut config = ListenerConfig::new(MY_UID, CLUSTER, REPLICAS);
    config.hello_timeout = HELLO_TIMEOUT;
    let counters = config.counters.clone();
    let task = tokio::spawn(accept_loop(
        listener,
        config,
        peer_tx,
        client_tx,
        shutdown_rx,
    ));
    Server {
        addr,
        peer_rx,
        client_rx,
        shutdown,
        task,
        counters,
    }
}

async fn start() -> Server {
    start_on("127.0.0.1:0".parse().unwrap()).await
}

fn heartbeat(decided_upto: u64) -> PeerMessage {
    PeerMessage::Heartbeat {
        beat: 1,
        ballot: Ballot::new(1, 1),
        decided_upto,
        decided_above: vec![],
    }
}

/// A loopback address nothing listens on (bound once, then released).
async fn dead_addr() -> SocketAddr {
    let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
    probe.local_addr().unwrap()
}

fn links(from: Uid, to: SocketAddr, loss: f64) -> (PeerLinks, watch::Sender<bool>) {
    let (tx, rx) = watch::channel(false);
    (
        PeerLinks::spawn(from, CLUSTER, vec![(MY_UID, to)], loss, rx),
        tx,
    )
}

/// Receives `count` messages, checking sender and order.
async fn expect_heartbeats(server: &mut Server, from: Uid, commits: std::ops::Range<u64>) {
    for commit in commits {
        let got = tokio::time::timeout(WAIT, server.peer_rx.recv())
            .await
            .expect("message in time")
            .expect("channel open");
        assert_eq!(got, (from, heartbeat(commit)));
    }
}

/// Sends `bytes` on a fresh connection and asserts the server closes it.
async fn assert_closed(addr: SocketAddr, bytes: &[u8], what: &str) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The server may close (and reset) before everything is written: that is fine.
    let _ = stream.write_all(bytes).await;
    let mut buf = [0u8; 1024];
    let started = Instant::now();
    match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
        Err(_) => panic!("{what}: connection still open after {WAIT:?}"),
        Ok(Ok(0)) | Ok(Err(_)) => {}
        // Peer connections are one-way: the server never writes.
        Ok(Ok(n)) => panic!("{what}: server wrote {n} bytes"),
    }
    eprintln!("{what}: closed after {:?}", started.elapsed());
}

fn frame_with_bad_crc<T: serde::Serialize>(msg: &T) -> Vec<u8> {
    let mut frame = encode_frame(msg).unwrap();
    frame[4] ^= 0xff;
    frame
}

#[tokio::test]
async fn peer_links_deliver_in_order() {
    let mut server = start().await;
    let (links, _stop) = links(1, server.addr, 0.0);
    for commit in 0..2000 {
        links.send(MY_UID, heartbeat(commit));
    }
    expect_heartbeats(&mut server, 1, 0..2000).await;
    assert_eq!(links.dropped(), (0, 0));
    // Every message written left the byte count (else the link would fill and drop).
    assert_eq!(links.link_states()[0].queued_bytes, 0);
    // Every byte the link wrote (hello included) was counted as received from uid 1.
    let sent = links.link_states()[0].sent_bytes;
    assert!(sent > 2000 * 8, "sent {sent} bytes");
    assert_eq!(
        server.counters.peer_received_bytes(),
        vec![(0, 0), (1, sent), (2, 0)]
    );
    // Messages to self or to an unknown uid are dropped, not panicked on.
    links.send(1, heartbeat(0));
    links.send(7, heartbeat(0));
}

#[tokio::test]
async fn bad_connections_are_closed_and_the_listener_keeps_accepting() {
    let mut server = start().await;
    let addr = server.addr;

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for size in [1, 7, 8, 100, 4096] {
        let mut bytes = vec![0u8; size];
        rng.fill_bytes(&mut bytes);
        assert_closed(addr, &bytes, &format!("{size} random bytes")).await;
    }
    assert_closed(
        addr,
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8.0\r\n\r\n",
        "HTTP GET",
    )
    .await;
    let mut oversized = ((FRAME_BYTES_MAX + 1) as u32).to_be_bytes().to_vec();
    oversized.extend_from_slice(&[0u8; 4]);
    assert_closed(addr, &oversized, "oversized length").await;
    assert_closed(addr, &[0xff; 8], "length u32::MAX").await;
    let hello = Hello::Peer {
        uid: 1,
        cluster_id: CLUSTER,
    };
    assert_closed(addr, &frame_with_bad_crc(&hello), "hello with a bad crc").await;
    // A length that promises more than is ever sent: closed by the hello timeout.
    let mut short = 1000u32.to_be_bytes().to_vec();
    short.extend_from_slice(&[0u8; 10]);
    assert_closed(addr, &short, "truncated hello").await;
    assert_closed(addr, b"", "silent connection").await;
    let wrong_cluster = Hello::Peer {
        uid: 1,
        cluster_id: CLUSTER + 1,
    };
    assert_closed(
        addr,
        &encode_frame(&wrong_cluster).unwrap(),
        "wrong cluster",
    )
    .await;
    for uid in [MY_UID, REPLICAS as Uid, Uid::MAX] {
        let hello = Hello::Peer {
            uid,
            cluster_id: CLUSTER,
        };
        let what = format!("peer uid {uid}");
        assert_closed(addr, &encode_frame(&hello).unwrap(), &what).await;
    }
    // A good hello followed by a bad frame, and by an undecodable one.
    let mut bytes = encode_frame(&hello).unwrap();
    bytes.extend_from_slice(&frame_with_bad_crc(&heartbeat(1)));
    assert_closed(addr, &bytes, "peer frame with a bad crc").await;
    let mut bytes = encode_frame(&hello).unwrap();
    let garbage = [0xffu8; 16];
    bytes.extend_from_slice(&(garbage.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&garbage).to_be_bytes());
    bytes.extend_from_slice(&garbage);
    assert_closed(addr, &bytes, "undecodable peer frame").await;
    assert!(
        server.peer_rx.try_recv().is_err(),
        "nothing was delivered from bad connections"
    );

    // The listener still accepts and delivers.
    let (links, _stop) = links(2, addr, 0.0);
    for commit in 0..10 {
        links.send(MY_UID, heartbeat(commit));
    }
    expect_heartbeats(&mut server, 2, 0..10).await;
    assert!(!server.task.is_finished());
}

#[tokio::test]
async fn a_raw_peer_handshake_delivers() {
    let mut server = start().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let mut bytes = encode_frame(&Hello::Peer {
        uid: 2,
        cluster_id: CLUSTER,
    })
    .unwrap();
    for commit in 0..3 {
        bytes.extend_from_slice(&encode_frame(&heartbeat(commit)).unwrap());
    }
    // Byte by byte: framing must not depend on how TCP splits the stream.
    for byte in bytes {
        stream.write_all(&[byte]).await.unwrap();
    }
    expect_heartbeats(&mut server, 2, 0..3).await;
}

#[tokio::test]
async fn a_newer_peer_connection_supersedes_the_older() {
    let mut server = start().await;
    let hello = encode_frame(&Hello::Peer {
        uid: 1,
        cluster_id: CLUSTER,
    })
    .unwrap();
    let mut old = TcpStream::connect(server.addr).await.unwrap();
    old.write_all(&hello).await.unwrap();
    old.write_all(&encode_frame(&heartbeat(0)).unwrap())
        .await
        .unwrap();
    expect_heartbeats(&mut server, 1, 0..1).await;
    let mut new = TcpStream::connect(server.addr).await.unwrap();
    new.write_all(&hello).await.unwrap();
    new.write_all(&encode_frame(&heartbeat(1)).unwrap())
        .await
        .unwrap();
    expect_heartbeats(&mut server, 1, 1..2).await;
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(WAIT, old.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "old connection closed: {read:?}"
    );
}

#[tokio::test]
async fn client_connections_are_handed_to_the_node() {
    let mut server = start().await;
    let report = StatusReport {
        status: ReplicaStatus {
            uid: MY_UID,
            role: Role::Leader,
            ballot: Ballot::ZERO,
            leader: Some(MY_UID),
            decided_upto: 5,
            standing: paxos::core::Standing::Voter,
        },
        addr: server.addr.to_string(),
        last_slot: Some(4),
    };
    let mut client = ClientLink::connect(server.addr, WAIT).await.unwrap();
    let node_report = report.clone();
    let mut conn = tokio::time::timeout(WAIT, server.client_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(conn.id() >= 1);
    assert_eq!(conn.peer_addr().ip(), server.addr.ip());
    let node = tokio::spawn(async move {
        let mut served = 0;
        while let Some(request) = conn.read_request().await.unwrap() {
            let response = match request {
                ClientRequest::Status => ClientResponse::Status(node_report.clone()),
                other => ClientResponse::Error {
                    reason: format!("unsupported: {other:?}"),
                },
            };
            conn.send_response(&response).await.unwrap();
            served += 1;
        }
        served
    });
    for _ in 0..3 {
        let response = client.call(&ClientRequest::Status).await.unwrap();
        assert_eq!(response, ClientResponse::Status(report.clone()));
    }
    let response = client
        .call(&ClientRequest::ReadLog {
            from_slot: 0,
            max_entries: 10,
            wait_ms: 0,
        })
        .await
        .unwrap();
    assert!(matches!(response, ClientResponse::Error { .. }));
    drop(client);
    assert_eq!(node.await.unwrap(), 4);
    // Frame bytes each way, hello included: what the client metrics count.
    let len = |frame: paxos::Result<Vec<u8>>| frame.unwrap().len() as u64;
    let received = len(encode_frame(&Hello::Client))
        + 3 * len(encode_frame(&ClientRequest::Status))
        + len(encode_frame(&ClientRequest::ReadLog {
            from_slot: 0,
            max_entries: 10,
            wait_ms: 0,
        }));
    let sent =
        3 * len(encode_frame(&ClientResponse::Status(report))) + len(encode_frame(&response));
    assert_eq!(server.counters.client_received_bytes(), received);
    assert_eq!(server.counters.client_sent_bytes(), sent);
    assert_eq!(
        server.counters.peer_received_bytes(),
        vec![(0, 0), (1, 0), (2, 0)]
    );
}

#[tokio::test]
async fn loss_one_drops_everything_and_loss_zero_nothing() {
    let mut server = start().await;
    let (lossy, _stop1) = links(1, server.addr, 1.0);
    for commit in 0..500 {
        lossy.send(MY_UID, heartbeat(commit));
    }
    assert_eq!(lossy.dropped(), (500, 0));
    let (clean, _stop2) = links(2, server.addr, 0.0);
    for commit in 0..500 {
        clean.send(MY_UID, heartbeat(commit));
    }
    // Everything from uid 2 arrives, nothing from uid 1.
    expect_heartbeats(&mut server, 2, 0..500).await;
    let late = tokio::time::timeout(Duration::from_millis(300), server.peer_rx.recv()).await;
    assert!(late.is_err(), "unexpected message: {late:?}");
    assert_eq!(clean.dropped(), (0, 0));
}

#[tokio::test]
async fn a_link_to_a_dead_peer_holds_at_most_its_down_byte_bound_and_then_nothing() {
    use paxos::core::{RequestId, Value};
    use paxos::transport::peer::PEER_QUEUE_DOWN_BYTES_MAX;
    let addr = dead_addr().await;
    let (links, _stop) = links(1, addr, 0.0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let value = Value::Msg {
        id: RequestId {
            client_id: 9,
            seq: 1,
        },
        body: "x".repeat(16 * 1024),
    };
    let accept = PeerMessage::Accept {
        ballot: Ballot::new(1, 1),
        first_slot: 0,
        values: vec![value; 8],
        decided_upto: 0,
        decided_above: vec![],
    };
    let size = accept.size_bytes();
    assert!(size >= 8 * 16 * 1024, "size_bytes {size}");
    assert!(
        encode_frame(&accept).unwrap().len() <= size,
        "size_bytes undercounts"
    );
    // Nothing yields to the link task in between: the queue fills to its byte bound
    // and the rest is dropped (counted as full), however few messages that is.
    let sent = 3 * PEER_QUEUE_DOWN_BYTES_MAX / size;
    for _ in 0..sent {
        links.send(MY_UID, accept.clone());
    }
    let fit = PEER_QUEUE_DOWN_BYTES_MAX / size;
    assert_eq!(links.dropped(), (0, (sent - fit) as u64));
    assert_eq!(links.link_states()[0].queued_bytes, fit * size);
    // The next failed dial discards them.
    let started = Instant::now();
    while links.link_states()[0].queued_bytes > 0 {
        assert!(
            started.elapsed() < WAIT,
            "a dead peer's queue still holds bytes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn links_reconnect_after_the_listener_restarts() {
    // The link starts before anything listens.
    let addr = dead_addr().await;
    let (links, _stop) = links(1, addr, 0.0);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut server = start_on(addr).await;
    let started = Instant::now();
    let mut commit = 0;
    // Messages queued while the peer is down may be discarded: resend until one arrives,
    // the way the core retransmits.
    let first = loop {
        links.send(MY_UID, heartbeat(commit));
        commit += 1;
        match tokio::time::timeout(Duration::from_millis(50), server.peer_rx.recv()).await {
            Ok(got) => break got.unwrap(),
            Err(_) => assert!(started.elapsed() < WAIT, "no delivery after start"),
        }
    };
    assert_eq!(first.0, 1);
    eprintln!("connected after {:?}", started.elapsed());

    // Restart the listener: its connections close, the link notices and redials.
    server.shutdown.send(true).unwrap();
    server.task.await.unwrap();
    let mut server = start_on(addr).await;
    let started = Instant::now();
    loop {
        links.send(MY_UID, heartbeat(commit));
        commit += 1;
        match tokio::time::timeout(Duration::from_millis(50), server.peer_rx.recv()).await {
            Ok(got) => {
                assert_eq!(got.unwrap().0, 1);
                break;
            }
            Err(_) => assert!(started.elapsed() < WAIT, "no delivery after restart"),
        }
    }
    eprintln!("reconnected after {:?}", started.elapsed());
}

/// One TLS context per replica of a cluster with a fresh CA.
fn tls_cluster(addr: SocketAddr) -> Vec<std::sync::Arc<paxos::transport::TlsContext>> {
    use paxos::transport::certs::{Ca, Validity};
    use paxos::transport::tls::{TlsContext, TlsPem};
    let ca = Ca::generate(CLUSTER, Validity::Years(1)).unwrap();
    let ca_pem = ca.cert_pem().unwrap().to_string();
    let mut out = Vec::new();
    for uid in 0..REPLICAS as Uid {
        let issued = ca
            .issue_replica(CLUSTER, uid, addr, Validity::Years(1))
            .unwrap();
        let context = TlsContext::from_pem(
            CLUSTER,
            REPLICAS,
            TlsPem {
                ca: ca_pem.as_bytes(),
                identity: Some((issued.cert_pem.as_bytes(), issued.key_pem.as_bytes())),
                serve: true,
            },
        )
        .unwrap();
        out.push(std::sync::Arc::new(context));
    }
    out
}

async fn start_tls(tls: std::sync::Arc<paxos::transport::TlsContext>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (peer_tx, peer_rx) = mpsc::channel(1024);
    let (client_tx, client_rx) = mpsc::channel(16);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut config = ListenerConfig::new(MY_UID, CLUSTER, REPLICAS).with_tls(Some(tls));
    config.hello_timeout = HELLO_TIMEOUT;
    let counters = config.counters.clone();
    let task = tokio::spawn(accept_loop(
        listener,
        config,
        peer_tx,
        client_tx,
        shutdown_rx,
    ));
    Server {
        addr,
        peer_rx,
        client_rx,
        shutdown,
        task,
        counters,
    }
}

#[tokio::test]
async fn tls_peer_links_deliver_and_a_uid_not_in_the_certificate_is_refused() {
    let contexts = tls_cluster("127.0.0.1:1".parse().unwrap());
    let mut server = start_tls(contexts[0].clone()).await;
    // Replica 1 with its own certificate: delivered, in order.
    let (tx, rx) = watch::channel(false);
    let links = PeerLinks::spawn_with_tls(
        1,
        CLUSTER,
        vec![(MY_UID, server.addr)],
        0.0,
        Some(contexts[1].clone()),
        rx,
    );
    for commit in 0..100 {
        links.send(MY_UID, heartbeat(commit));
    }
    expect_heartbeats(&mut server, 1, 0..100).await;
    drop((links, tx));
    // Replica 2's certificate, saying uid 1: closed before any message is read.
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut tls = contexts[2].connect(tcp, MY_UID).await.unwrap();
    let mut bytes = encode_frame(&Hello::Peer {
        uid: 1,
        cluster_id: CLUSTER,
    })
    .unwrap();
    bytes.extend(encode_frame(&heartbeat(7)).unwrap());
    tls.write_all(&bytes).await.unwrap();
    tls.flush().await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(WAIT, tls.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    let none = tokio::time::timeout(Duration::from_millis(200), server.peer_rx.recv()).await;
    assert!(none.is_err(), "a message got through: {none:?}");
    // Plaintext to a TLS listener: closed at the TLS layer (after an alert at most).
    let mut plain = TcpStream::connect(server.addr).await.unwrap();
    let _ = plain.write_all(&bytes).await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, plain.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "plaintext connection still open");
    assert!(
        rest.len() < 16,
        "the listener answered {} bytes",
        rest.len()
    );
    let none = tokio::time::timeout(Duration::from_millis(200), server.peer_rx.recv()).await;
    assert!(none.is_err(), "a plaintext message got through: {none:?}");
    let _ = server.shutdown.send(true);
    let _ = server.task.await;
}

//! `paxosctl chat` at a real terminal: driven in a pseudo-terminal (rexpect) against
//! real `paxosd` replicas. Issue 15 item 1: a message arriving while a line is half
//! typed is printed above it, and the typed text survives, is redrawn and is sent.

mod support;

use rexpect::session::spawn_command;
use std::process::Command;
use std::time::Duration;
use support::{Cluster, TestClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_arriving_mid_line_leaves_the_typed_text_intact_and_sent() {
    let mut cluster = Cluster::new(1, 0.0);
    cluster.start_all();
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let mut command = Command::new(env!("CARGO_BIN_EXE_paxosctl"));
    command
        .arg("--config")
        .arg(&cluster.config_path)
        .args(["chat", "--name", "alice"])
        .env("TERM", "xterm")
        .env_remove("PAXOSCTL_CONFIG")
        .env_remove("PAXOSCTL_ENDPOINTS");
    let mut alice = spawn_command(command, Some(20_000)).expect("spawn chat in a pty");
    // A prompt with the name.
    alice.exp_string("alice> ").expect("the prompt");
    alice.send("half typ").expect("type");
    alice.flush().expect("flush");
    alice
        .exp_string("half typ")
        .expect("the echo of the typed text");

    // Bob's message arrives while alice's line is half typed.
    let mut bob = TestClient::new(&cluster, 77);
    bob.submit("bob: msg 2", Duration::from_secs(20))
        .await
        .expect("bob's message commits");
    alice
        .exp_regex(r"\[\d+\] bob: msg 2")
        .expect("bob's message is shown");
    // ... and the prompt comes back with the half-typed text redrawn after it.
    alice
        .exp_string("alice> half typ")
        .expect("the typed text is redrawn below the message");

    // Finishing the line sends the whole of it, typed before and after the interruption.
    alice.send("ed\r").expect("finish the line");
    alice.flush().expect("flush");
    alice
        .exp_regex(r"\[\d+\] alice: half typed")
        .expect("alice's line comes back from the room");
    let log = cluster.log(leader).await;
    let bodies: Vec<&str> = log.iter().map(|e| e.body.as_str()).collect();
    assert!(bodies.contains(&"alice: half typed"), "{bodies:?}");
    assert!(bodies.contains(&"bob: msg 2"), "{bodies:?}");

    // Up brings the last line back (history); Ctrl-C clears it; Ctrl-D quits.
    alice.send("\x1b[A").expect("up arrow");
    alice.flush().expect("flush");
    alice
        .exp_string("half typed")
        .expect("history recalls the line");
    alice.send_control('c').expect("ctrl-c");
    alice
        .exp_string("line cleared")
        .expect("ctrl-c clears the line");
    alice.send_control('d').expect("ctrl-d");
    alice.exp_eof().expect("ctrl-d on an empty line quits");
    // Nothing else was sent: Ctrl-C dropped the recalled line.
    let log = cluster.log(leader).await;
    let sent = log.iter().filter(|e| e.body == "alice: half typed").count();
    assert_eq!(sent, 1);
}

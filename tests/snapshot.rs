//! `paxosctl snapshot save|restore|status` against real `paxosd` processes: a cluster
//! seeded from a snapshot (messages, a duplicate, a no-op) serves it and takes new
//! messages; a snapshot saved from it live and restored into a second cluster gives the
//! same log there; damaged and truncated files are refused and restore nothing.

mod support;

use paxos::core::{LogEntryKind, RequestId, Slot, Value};
use paxos::storage::snapshot::{restore, SnapshotWriter};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;
use support::{Cluster, TestClient};

const WITHIN: Duration = Duration::from_secs(20);

fn msg(client_id: u64, seq: u64, body: &str) -> Value {
    Value::Msg {
        id: RequestId { client_id, seq },
        body: body.to_string(),
    }
}

/// 20 slots: slot 2 a no-op, slot 3 a second copy of slot 0's request (a duplicate).
fn seed_entries() -> Vec<(Slot, Value)> {
    (0..20)
        .map(|slot| match slot {
            0 | 3 => (slot, msg(1, 1, "hello")),
            2 => (slot, Value::Noop),
            _ => (slot, msg(2, slot, &format!("seed line {slot}"))),
        })
        .collect()
}

fn write_snapshot(path: &Path, entries: &[(Slot, Value)]) {
    let mut w = SnapshotWriter::create(path, None, 0, entries.len() as Slot).unwrap();
    for (slot, value) in entries {
        w.push(*slot, value).unwrap();
    }
    w.finish().unwrap();
}

fn paxosctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_paxosctl"))
        .args(args)
        .output()
        .expect("run paxosctl")
}

fn store_dir(cluster: &Cluster, uid: u64) -> std::path::PathBuf {
    cluster.config.data_dir.join(format!("node-{uid}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_clusters_elect_serve_the_old_log_and_take_new_messages() {
    let work = tempfile::tempdir().unwrap();
    let seed = work.path().join("seed.snap");
    write_snapshot(&seed, &seed_entries());

    // Cluster A: every store seeded from the hand-written snapshot, through the library.
    let mut a = Cluster::new(1, 0.0);
    for uid in 0..3 {
        restore(
            &seed,
            &store_dir(&a, uid),
            uid as u32,
            a.config.cluster_id(),
        )
        .unwrap();
    }
    a.start_all();
    a.wait_leader(WITHIN).await;
    let log = a.converged_log(&[0, 1, 2], 20, WITHIN).await;
    assert_eq!(log[2].kind, LogEntryKind::Noop);
    assert_eq!(log[3].kind, LogEntryKind::Dup);
    assert_eq!(log[3].id, log[0].id);
    let mut client = TestClient::new(&a, 500);
    for i in 0..5 {
        let (_, slot) = client
            .submit(&format!("after restore {i}"), WITHIN)
            .await
            .unwrap();
        assert_eq!(slot, 20 + i, "new messages continue the restored log");
    }
    let original = a.converged_log(&[0, 1, 2], 25, WITHIN).await;

    // Save from A while it runs, through the CLI.
    let saved = work.path().join("a.snap");
    let config_a = a.config_path.to_str().unwrap().to_string();
    let out = paxosctl(&[
        "--config",
        &config_a,
        "snapshot",
        "save",
        saved.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "save: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!work.path().join("a.snap.tmp").exists());
    let out = paxosctl(&["snapshot", "status", "--json", saved.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["entries"], 25, "{status}");
    assert_eq!(status["noops"], 1, "{status}");
    assert_eq!(
        status["cluster_id"],
        a.config.cluster_id().to_string(),
        "{status}"
    );

    // Cluster B (other ports: another cluster id), restored through the CLI.
    let mut b = Cluster::new(1, 0.0);
    assert_ne!(b.config.cluster_id(), a.config.cluster_id());
    let config_b = b.config_path.to_str().unwrap().to_string();
    for uid in 0..3u64 {
        let dir = store_dir(&b, uid);
        let out = paxosctl(&[
            "--config",
            &config_b,
            "snapshot",
            "restore",
            saved.to_str().unwrap(),
            "--data-dir",
            dir.to_str().unwrap(),
            "--uid",
            &uid.to_string(),
        ]);
        assert!(
            out.status.success(),
            "restore: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A second restore into a seeded store is refused.
    let dir0 = store_dir(&b, 0);
    let out = paxosctl(&[
        "--config",
        &config_b,
        "snapshot",
        "restore",
        saved.to_str().unwrap(),
        "--data-dir",
        dir0.to_str().unwrap(),
        "--uid",
        "0",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not empty"), "{stderr}");

    b.start_all();
    b.wait_leader(WITHIN).await;
    let restored = b.converged_log(&[0, 1, 2], 25, WITHIN).await;
    assert_eq!(restored, original, "B's log is A's");
    let mut client = TestClient::new(&b, 600);
    let (_, slot) = client
        .submit("new room, new message", WITHIN)
        .await
        .unwrap();
    assert_eq!(slot, 25);
    let after = b.converged_log(&[0, 1, 2], 26, WITHIN).await;
    assert_eq!(after[..25], original[..]);
    assert_eq!(after[25].body, "new room, new message");
}

#[test]
fn damaged_or_truncated_snapshots_are_refused_and_restore_nothing() {
    let work = tempfile::tempdir().unwrap();
    let good = work.path().join("good.snap");
    write_snapshot(&good, &seed_entries());
    let bytes = std::fs::read(&good).unwrap();
    let cluster = Cluster::new(1, 0.0);
    let config = cluster.config_path.to_str().unwrap().to_string();

    let flipped = work.path().join("flipped.snap");
    let mut damaged = bytes.clone();
    damaged[100] ^= 0x20; // inside chunk 0's payload
    std::fs::write(&flipped, &damaged).unwrap();
    let truncated = work.path().join("truncated.snap");
    std::fs::write(&truncated, &bytes[..bytes.len() - 10]).unwrap();

    for (file, want) in [
        (&flipped, "chunk 0: crc32 mismatch"),
        (&truncated, "truncated"),
    ] {
        let out = paxosctl(&["snapshot", "status", file.to_str().unwrap()]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{}: {stderr}", file.display());
        assert!(stderr.contains("at byte"), "{stderr}");

        let dir = work.path().join("restored");
        let out = paxosctl(&[
            "--config",
            &config,
            "snapshot",
            "restore",
            file.to_str().unwrap(),
            "--data-dir",
            dir.to_str().unwrap(),
            "--uid",
            "0",
        ]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{stderr}");
        assert!(!dir.exists(), "nothing written for {}", file.display());
    }
    let out = paxosctl(&["snapshot", "status", good.to_str().unwrap()]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("0..20 (20 entries: 19 messages"),
        "{stdout}"
    );
}

//! Corruption and identity checks of the sled backend: a flipped byte inside a stored value
//! must surface as `Error::Corrupt` naming the tree (or segment file) and the slot (never
//! silent data), and a
//! store opened as another replica or cluster must be `Error::WrongStore`.

use paxos::core::{Ballot, Record, RequestId, Value};
use paxos::storage::sled_store::{read_offline, SledStorage, SEGMENT_DIR};
use paxos::storage::{LogRead, Storage};
use paxos::Error;
use std::path::Path;
use std::time::{Duration, Instant};

const UID: u32 = 2;
const CLUSTER_ID: u64 = 99;

fn msg(slot: u64) -> Value {
    Value::Msg {
        id: RequestId {
            client_id: 5,
            seq: slot,
        },
        body: format!("hello from slot {slot}"),
    }
}

fn write_sample(dir: &Path) {
    let mut storage = SledStorage::open(dir, UID, CLUSTER_ID).unwrap();
    let mut records = vec![Record::Promise(Ballot::new(3, UID))];
    // Slots 0..8 applied (their accepts dropped), 8..12 accepted only.
    for slot in 0..12 {
        records.push(Record::Accepted {
            slot,
            ballot: Ballot::new(3, UID),
            value: msg(slot),
        });
    }
    for slot in 0..8 {
        records.push(Record::Decided {
            slot,
            value: msg(slot),
            dup: false,
        });
    }
    storage.persist(&records).unwrap();
    drop(storage);
    // Reopen once: `open` checkpoints (accepts into sled, the applied slots 0..8 sealed
    // into one segment, the write-ahead log emptied), so what the tests below tamper
    // with is the only copy (a logged copy would repair it).
    drop(SledStorage::open(dir, UID, CLUSTER_ID).unwrap());
}

/// Opens the sled db directly, waiting out the lock sled releases shortly after a drop.
fn open_raw(dir: &Path) -> sled::Db {
    let started = Instant::now();
    loop {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(e) if started.elapsed() < Duration::from_secs(2) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("opening sled directly: {e}"),
        }
    }
}

/// Rewrites `tree[key]` through `edit`, bypassing SledStorage.
fn tamper(dir: &Path, tree: &str, key: &[u8], edit: impl FnOnce(&mut Vec<u8>)) {
    let db = open_raw(dir);
    let tree = db.open_tree(tree).unwrap();
    let mut value = tree.get(key).unwrap().expect("key to tamper with").to_vec();
    edit(&mut value);
    tree.insert(key, value).unwrap();
    db.flush().unwrap();
}

fn assert_corrupt(err: Error, want_tree: &str, want_key: &str) {
    match &err {
        Error::Corrupt { tree, key, reason } => {
            assert_eq!(tree, want_tree, "{err}");
            assert_eq!(key, want_key, "{err}");
            assert!(!reason.is_empty());
        }
        other => panic!("expected Error::Corrupt in {want_tree} at {want_key}, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(want_tree) && text.contains(want_key),
        "{text}"
    );
}

#[test]
fn flipped_byte_in_accepted_is_reported_with_tree_and_slot() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path());
    tamper(dir.path(), "accepted", &10u64.to_be_bytes(), |v| {
        let i = v.len() - 3; // inside the message body
        v[i] ^= 0x20;
    });
    let storage = SledStorage::open(dir.path(), UID, CLUSTER_ID).unwrap();
    assert_corrupt(storage.load().unwrap_err(), "accepted", "slot 10");
    drop(storage);
    assert_corrupt(read_offline(dir.path()).unwrap_err(), "accepted", "slot 10");
}

/// The applied log's only segment file of the sample (slots 0..8, one block).
fn segment_file(dir: &Path) -> std::path::PathBuf {
    dir.join(SEGMENT_DIR).join("log-0-8.seg")
}

fn assert_corrupt_segment(err: Error, want_key: &str) {
    match &err {
        Error::Corrupt { tree, key, .. } => {
            assert!(tree.contains("log-0-8.seg"), "{err}");
            assert_eq!(key, want_key, "{err}");
        }
        other => panic!("expected Error::Corrupt in log-0-8.seg at {want_key}, got {other:?}"),
    }
}

#[test]
fn flipped_byte_in_a_segment_is_reported_with_file_and_slot() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path());
    let path = segment_file(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[40] ^= 0x01; // inside the block
    std::fs::write(&path, &bytes).unwrap();
    let storage = SledStorage::open(dir.path(), UID, CLUSTER_ID).unwrap();
    assert_corrupt_segment(storage.load().unwrap_err(), "slot 0");
    assert_corrupt_segment(storage.read_log(2, 10, usize::MAX).unwrap_err(), "slot 0");
}

#[test]
fn truncated_segment_and_value_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path());
    let path = segment_file(dir.path());
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    let storage = SledStorage::open(dir.path(), UID, CLUSTER_ID).unwrap();
    let err = storage.load().unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { tree, .. } if tree.contains("log-0-8.seg")),
        "{err}"
    );
    drop(storage);

    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path());
    tamper(dir.path(), "accepted", &9u64.to_be_bytes(), |v| {
        v.truncate(2)
    });
    let storage = SledStorage::open(dir.path(), UID, CLUSTER_ID).unwrap();
    assert_corrupt(storage.load().unwrap_err(), "accepted", "slot 9");
}

#[test]
fn corrupt_promise_fails_open_naming_the_meta_key() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path());
    tamper(dir.path(), "meta", b"promised", |v| {
        let i = v.len() - 1;
        v[i] ^= 0x04;
    });
    let err = SledStorage::open(dir.path(), UID, CLUSTER_ID).unwrap_err();
    assert_corrupt(err, "meta", "promised");
}

#[test]
fn another_uid_or_cluster_is_wrong_store() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path());
    for (uid, cluster_id) in [(UID + 1, CLUSTER_ID), (UID, CLUSTER_ID + 1)] {
        let err = SledStorage::open(dir.path(), uid, cluster_id).unwrap_err();
        match &err {
            Error::WrongStore {
                path,
                found,
                expected,
            } => {
                assert_eq!(path, dir.path());
                assert!(found.contains(&format!("uid {UID} ")), "{err}");
                assert!(found.contains(&format!("cluster {CLUSTER_ID}")), "{err}");
                assert!(expected.contains(&format!("uid {uid} ")), "{err}");
                assert!(expected.contains(&format!("cluster {cluster_id}")), "{err}");
            }
            other => panic!("expected WrongStore, got {other:?}"),
        }
    }
    // The right identity still opens, with everything intact.
    let storage = SledStorage::open(dir.path(), UID, CLUSTER_ID).unwrap();
    let state = storage.load().unwrap();
    assert_eq!(state.accepted.len(), 4);
    assert_eq!(state.decided_upto, 8);
    assert_eq!(state.promised, Some(Ballot::new(3, UID)));
}

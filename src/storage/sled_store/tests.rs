//! Unit tests of the sled backend (layout, codec, poisoning, checkpoints); compiled only
//! under `#[cfg(test)]` (see `mod tests` in `mod.rs`).

use super::codec::{decode, encode};
use super::*;
use crate::core::RequestId;
use crate::storage::MemStorage;

fn msg(client_id: u64, seq: u64, body: &str) -> Value {
    Value::Msg {
        id: RequestId { client_id, seq },
        body: body.to_string(),
    }
}

fn sample_batches() -> Vec<Vec<Record>> {
    let b = Ballot::new;
    vec![
        vec![Record::Promise(b(0, 0))],
        vec![
            Record::Accepted {
                slot: 0,
                ballot: b(0, 0),
                value: msg(1, 1, "hello"),
            },
            Record::Accepted {
                slot: 1,
                ballot: b(0, 0),
                value: Value::Noop,
            },
            Record::Decided {
                slot: 0,
                value: msg(1, 1, "hello"),
            },
        ],
        vec![
            Record::Promise(b(3, 2)),
            // Lower than the promise of this same call: ignored.
            Record::Promise(b(1, 4)),
            Record::Accepted {
                slot: 1,
                ballot: b(3, 2),
                value: msg(2, 7, "replaced"),
            },
            Record::Accepted {
                slot: u64::MAX,
                ballot: b(3, 2),
                value: msg(2, 8, "ünïcode ✓"),
            },
            Record::Decided {
                slot: 1,
                value: msg(2, 7, "replaced"),
            },
            // A second decision for slot 1 in the same call keeps the first.
            Record::Decided {
                slot: 1,
                value: Value::Noop,
            },
        ],
        vec![
            // Lower than the stored promise: ignored.
            Record::Promise(b(2, 9)),
            Record::Decided {
                slot: 0,
                value: Value::Noop,
            },
            Record::Decided {
                slot: 5,
                value: Value::Noop,
            },
        ],
    ]
}

#[test]
fn roundtrip_matches_memory_backend() {
    let dir = tempfile::tempdir().unwrap();
    let mut mem = MemStorage::new();
    {
        let mut sled = SledStorage::open(dir.path(), 3, 42).unwrap();
        assert_eq!(sled.load().unwrap(), PersistentState::default());
        for batch in sample_batches() {
            sled.persist(&batch).unwrap();
            mem.persist(&batch).unwrap();
            assert_eq!(sled.load().unwrap(), mem.load().unwrap());
        }
        assert_eq!(sled.flushes(), 4);
    }
    let sled = SledStorage::open(dir.path(), 3, 42).unwrap();
    let state = sled.load().unwrap();
    assert_eq!(state, mem.load().unwrap());
    assert_eq!(state.promised, Some(Ballot::new(3, 2)));
    assert_eq!(state.decided.get(&1), Some(&msg(2, 7, "replaced")));

    drop(sled);
    let (meta, offline) = read_offline(dir.path()).unwrap();
    assert_eq!(
        meta,
        StoreMeta {
            uid: 3,
            cluster_id: 42
        }
    );
    assert_eq!(offline, state);
}

#[test]
fn promise_survives_reopen_and_is_never_lowered() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = SledStorage::open(dir.path(), 0, 1).unwrap();
        s.persist(&[Record::Promise(Ballot::new(5, 1))]).unwrap();
    }
    let mut s = SledStorage::open(dir.path(), 0, 1).unwrap();
    s.persist(&[Record::Promise(Ballot::new(4, 9))]).unwrap();
    assert_eq!(s.load().unwrap().promised, Some(Ballot::new(5, 1)));
}

#[test]
fn empty_persist_does_not_flush() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SledStorage::open(dir.path(), 0, 1).unwrap();
    s.persist(&[]).unwrap();
    assert_eq!(s.flushes(), 0);
}

#[test]
fn poisoned_storage_refuses_every_later_persist() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SledStorage::open(dir.path(), 0, 1).unwrap();
    s.poisoned = Some("sync failed".to_string());
    let err = s
        .persist(&[Record::Promise(Ballot::new(1, 0))])
        .unwrap_err();
    assert!(
        matches!(&err, Error::Poisoned { reason, .. } if reason == "sync failed"),
        "{err}"
    );
    assert_eq!(s.load().unwrap().promised, None);
}

#[test]
fn large_values_go_through_blobs_and_survive() {
    let dir = tempfile::tempdir().unwrap();
    let body = "x".repeat(300 * 1024);
    {
        let mut s = SledStorage::open(dir.path(), 0, 1).unwrap();
        s.persist(&[Record::Accepted {
            slot: 9,
            ballot: Ballot::ZERO,
            value: msg(1, 1, &body),
        }])
        .unwrap();
        assert!(
            !s.durability.blobs.synced.is_empty(),
            "the value should be a sled blob"
        );
    }
    let s = SledStorage::open(dir.path(), 0, 1).unwrap();
    let state = s.load().unwrap();
    assert_eq!(
        state.accepted.get(&9),
        Some(&(Ballot::ZERO, msg(1, 1, &body)))
    );
}

#[test]
fn second_open_while_locked_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let _held = SledStorage::open(dir.path(), 0, 1).unwrap();
    let err = read_offline(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Locked { path } if path == dir.path()),
        "{err}"
    );
}

#[test]
fn offline_reader_never_creates_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = read_offline(&missing).unwrap_err();
    assert!(
        matches!(&err, Error::NotAStore { path, reason } if path == &missing && reason.contains("does not exist")),
        "{err}"
    );
    assert!(!missing.exists());
    let err = read_offline(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::NotAStore { reason, .. } if reason.contains("no sled")),
        "{err}"
    );
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn codec_rejects_flipped_bits_and_short_values() {
    let bytes = encode(&(Ballot::new(1, 2), msg(3, 4, "hi"))).unwrap();
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        assert!(matches!(
            decode::<(Ballot, Value)>("accepted", "slot 1", &bad),
            Err(Error::Corrupt { .. })
        ));
    }
    assert!(matches!(
        decode::<Value>("decided", "slot 1", &[1, 2]),
        Err(Error::Corrupt { .. })
    ));
}

#[test]
fn a_newer_format_is_refused_by_open_and_offline() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = SledStorage::open(dir.path(), 0, 1).unwrap();
        s.trees
            .meta
            .insert(KEY_FORMAT, encode(&(FORMAT_VERSION + 1)).unwrap())
            .unwrap();
        s.sync().unwrap();
    }
    let unsupported = |err: &Error| {
        matches!(err, Error::UnsupportedFormat { path, found, supported }
            if path == dir.path() && *found == FORMAT_VERSION + 1 && *supported == FORMAT_VERSION)
    };
    let err = read_offline(dir.path()).unwrap_err();
    assert!(unsupported(&err), "{err}");
    let err = SledStorage::open(dir.path(), 0, 1).unwrap_err();
    assert!(unsupported(&err), "{err}");
}

#[test]
fn storage_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SledStorage>();
}

mod checkpoints {
    use super::*;
    use crate::core::{Replica, ReplicaConfig};
    use std::sync::{Arc, Mutex};

    const SEG: u64 = 16;

    fn opts() -> StoreOptions {
        StoreOptions { segment_slots: SEG }
    }

    fn value(slot: Slot) -> Value {
        if slot % 7 == 3 {
            Value::Noop
        } else {
            msg(9, slot, &format!("line {slot}"))
        }
    }

    /// Accepts and decisions for `slots`, decisions in reverse order (the prefix must
    /// still be tracked).
    fn decide(slots: std::ops::Range<Slot>, ballot: Ballot) -> Vec<Record> {
        let mut records: Vec<Record> = slots
            .clone()
            .map(|slot| Record::Accepted {
                slot,
                ballot,
                value: value(slot),
            })
            .collect();
        records.extend(slots.rev().map(|slot| Record::Decided {
            slot,
            value: value(slot),
        }));
        records
    }

    /// 50 decided slots (3 segments of 16), 5 undecided accepts above, and the highest
    /// accepted ballot at slot 3 (far below the segments' end).
    fn build(dir: &Path) {
        let mut s = SledStorage::open_with(dir, 0, 1, opts()).unwrap();
        s.persist(&[Record::Promise(Ballot::new(1, 0))]).unwrap();
        for start in (0..40).step_by(10) {
            s.persist(&decide(start..start + 10, Ballot::new(1, 0)))
                .unwrap();
        }
        assert_eq!(s.wait_checkpoints(), 32);
        s.persist(&[Record::Accepted {
            slot: 3,
            ballot: Ballot::new(4, 2),
            value: value(3),
        }])
        .unwrap();
        s.persist(&decide(40..50, Ballot::new(1, 0))).unwrap();
        for slot in 50..55 {
            s.persist(&[Record::Accepted {
                slot,
                ballot: Ballot::new(2, 0),
                value: value(slot),
            }])
            .unwrap();
        }
        assert_eq!(s.wait_checkpoints(), 48);
    }

    fn segment(dir: &Path, first: Slot, end: Slot) -> PathBuf {
        dir.join(CHECKPOINT_DIR)
            .join(format!("decided-{first}-{end}.seg"))
    }

    /// `full` with the accepted entries a checkpointed load drops (below `end`, except
    /// the `accepted_max` slot 3) removed.
    fn without_checkpointed(full: &PersistentState, end: Slot) -> PersistentState {
        let mut expected = full.clone();
        expected
            .accepted
            .retain(|slot, _| *slot >= end || *slot == 3);
        expected
    }

    fn replica(state: PersistentState) -> Replica {
        Replica::new(ReplicaConfig::new(0, 3, 100, 500), state, 0)
    }

    /// Runs `f` with warnings and errors captured; returns them as text.
    fn capture_warnings<T>(f: impl FnOnce() -> T) -> (T, String) {
        #[derive(Clone)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf(Arc::default());
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let out = tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        (out, text)
    }

    #[test]
    fn segments_are_written_and_used_and_match_a_full_load() {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path());
        for (first, end) in [(0, 16), (16, 32), (32, 48)] {
            assert!(segment(dir.path(), first, end).is_file());
        }
        assert!(!segment(dir.path(), 48, 64).exists());

        let s = SledStorage::open_with(dir.path(), 0, 1, opts()).unwrap();
        let full = s.load_full().unwrap();
        let (fast, warnings) = capture_warnings(|| s.load().unwrap());
        assert_eq!(warnings, "");
        assert_eq!(full.decided.len(), 50);
        assert_eq!(full.accepted.len(), 55);
        assert_eq!(fast, without_checkpointed(&full, 48));
        assert_eq!(fast.accepted.len(), 8, "slots 48..55 and slot 3");
        assert_eq!(fast.accepted[&3].0, Ballot::new(4, 2));

        // The core rebuilds the same replica from either.
        let (a, b) = (replica(full.clone()), replica(fast.clone()));
        assert_eq!(a.status(), b.status());
        assert_eq!(a.promised(), Ballot::new(4, 2));
        assert_eq!(a.log_entries(0, usize::MAX), b.log_entries(0, usize::MAX));
        assert_eq!(b.log_entries(0, usize::MAX).len(), 50);
        drop(s);

        // The offline reader takes the same path.
        assert_eq!(read_offline(dir.path()).unwrap().1, fast);

        // The prefix learned by load drives the next segment.
        let mut s = SledStorage::open_with(dir.path(), 0, 1, opts()).unwrap();
        s.load().unwrap();
        s.persist(&decide(50..64, Ballot::new(2, 0))).unwrap();
        assert_eq!(s.wait_checkpoints(), 64);
        assert!(segment(dir.path(), 48, 64).is_file());
    }

    #[test]
    fn a_bad_segment_is_a_warning_and_sled_fills_in() {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path());
        let bad = segment(dir.path(), 16, 32);
        let good = fs::read(&bad).unwrap();
        let full = {
            let s = SledStorage::open_with(dir.path(), 0, 1, opts()).unwrap();
            s.load_full().unwrap()
        };
        type Damage = Box<dyn Fn(&mut Vec<u8>)>;
        let damages: Vec<(&str, Damage)> = vec![
            ("flipped byte", Box::new(|b: &mut Vec<u8>| b[200] ^= 0x10)),
            (
                "truncated",
                Box::new(|b: &mut Vec<u8>| b.truncate(b.len() / 2)),
            ),
            ("empty", Box::new(|b: &mut Vec<u8>| b.clear())),
        ];
        for (what, damage) in damages {
            let mut bytes = good.clone();
            damage(&mut bytes);
            fs::write(&bad, &bytes).unwrap();
            let (offline, warnings) = capture_warnings(|| read_offline(dir.path()).unwrap().1);
            assert!(warnings.contains("decided-16-32.seg"), "{what}: {warnings}");
            assert_eq!(offline, without_checkpointed(&full, 16), "{what}");

            // A read-write load also rewrites the segment in the background.
            let s = SledStorage::open_with(dir.path(), 0, 1, opts()).unwrap();
            let (state, warnings) = capture_warnings(|| s.load().unwrap());
            assert!(warnings.contains("decided-16-32.seg"), "{what}: {warnings}");
            assert_eq!(state, without_checkpointed(&full, 16), "{what}");
            assert_eq!(s.wait_checkpoints(), 48, "{what}");
            assert_eq!(fs::read(&bad).unwrap(), good, "{what}: rewritten");
            drop(s);
        }

        // A missing segment cuts the chain: the later ones are out of sequence.
        fs::remove_file(segment(dir.path(), 0, 16)).unwrap();
        let (offline, warnings) = capture_warnings(|| read_offline(dir.path()).unwrap().1);
        assert!(warnings.contains("out of sequence"), "{warnings}");
        assert_eq!(offline, without_checkpointed(&full, 0));
        assert_eq!(offline, full);
    }

    #[test]
    fn stale_temp_files_are_ignored_then_removed() {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path());
        let cp = dir.path().join(CHECKPOINT_DIR);
        let partial = fs::read(segment(dir.path(), 32, 48)).unwrap();
        fs::write(cp.join("decided-48-64.seg.tmp"), &partial[..100]).unwrap();
        fs::write(cp.join("decided-32-48.seg.tmp"), b"garbage").unwrap();
        let full = {
            let s = SledStorage::open_with(dir.path(), 0, 1, opts()).unwrap();
            s.load_full().unwrap()
        };
        // open removed them; put them back for the offline reader.
        assert!(!cp.join("decided-48-64.seg.tmp").exists());
        fs::write(cp.join("decided-48-64.seg.tmp"), &partial[..100]).unwrap();
        let (offline, warnings) = capture_warnings(|| read_offline(dir.path()).unwrap().1);
        assert_eq!(warnings, "");
        assert_eq!(offline, without_checkpointed(&full, 48));
        assert!(
            cp.join("decided-48-64.seg.tmp").exists(),
            "the offline reader changes nothing"
        );
    }

    #[test]
    fn segments_off_writes_none_but_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path());
        let off = StoreOptions { segment_slots: 0 };
        let mut s = SledStorage::open_with(dir.path(), 0, 1, off).unwrap();
        let full = s.load_full().unwrap();
        assert_eq!(s.load().unwrap(), without_checkpointed(&full, 48));
        s.persist(&decide(50..70, Ballot::new(2, 0))).unwrap();
        assert_eq!(s.wait_checkpoints(), 48);
        assert!(!segment(dir.path(), 48, 64).exists());
    }

    #[test]
    fn format_1_store_is_read_whole_offline_and_upgraded_by_open() {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path());
        let full = {
            let mut s = SledStorage::open_with(dir.path(), 0, 1, opts()).unwrap();
            let full = s.load_full().unwrap();
            // What a format 1 store looks like.
            s.trees.meta.remove(KEY_ACCEPTED_MAX).unwrap();
            s.trees
                .meta
                .insert(KEY_FORMAT, encode(&1u32).unwrap())
                .unwrap();
            s.sync().unwrap();
            full
        };
        assert_eq!(read_offline(dir.path()).unwrap().1, full);
        let s = SledStorage::open_with(dir.path(), 0, 1, opts()).unwrap();
        assert_eq!(s.trees.read_format().unwrap(), FORMAT_VERSION);
        assert_eq!(
            s.trees.read_accepted_max().unwrap(),
            Some((Ballot::new(4, 2), 3))
        );
        assert_eq!(s.load().unwrap(), without_checkpointed(&full, 48));
    }
}

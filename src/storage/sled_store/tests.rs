//! Unit tests of the sled backend (layout, codec, poisoning, segments, the reader);
//! compiled only under `#[cfg(test)]` (see `mod tests` in `mod.rs`).

use super::codec::{decode, encode};
use super::*;
use crate::core::{LogEntry, LogEntryKind, RequestId};
use crate::storage::MemStorage;

fn msg(client_id: u64, seq: u64, body: &str) -> Value {
    Value::Msg {
        id: RequestId { client_id, seq },
        body: body.to_string(),
    }
}

fn session(client_id: u64, seq: u64, slot: Slot) -> Session {
    Session {
        client_id,
        seq,
        slot,
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
                dup: false,
            },
        ],
        vec![
            Record::Promise(b(3, 2)),
            // Lower than the promise of this same call: ignored.
            Record::Promise(b(1, 4)),
            Record::Accepted {
                slot: 1,
                ballot: b(3, 2),
                value: msg(1, 1, "hello"),
            },
            Record::Accepted {
                slot: u64::MAX,
                ballot: b(5, 1),
                value: msg(2, 8, "ünïcode ✓"),
            },
            Record::Decided {
                slot: 1,
                value: msg(1, 1, "hello"),
                dup: true,
            },
            // Already stored: dropped.
            Record::Decided {
                slot: 1,
                value: Value::Noop,
                dup: false,
            },
            Record::SessionsCheckpoint {
                upto: 2,
                sessions: vec![session(1, 1, 0)],
            },
        ],
        vec![
            // Lower than the stored promise: ignored.
            Record::Promise(b(2, 9)),
            Record::Decided {
                slot: 0,
                value: Value::Noop,
                dup: false,
            },
            Record::Accepted {
                slot: 2,
                ballot: b(5, 1),
                value: Value::Noop,
            },
            Record::Decided {
                slot: 2,
                value: Value::Noop,
                dup: false,
            },
            Record::Accepted {
                slot: 3,
                ballot: b(5, 1),
                value: msg(3, 1, "three"),
            },
        ],
    ]
}

fn whole_log(log: &impl LogRead) -> Vec<LogEntry> {
    log.read_log(0, usize::MAX, usize::MAX).unwrap()
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
            let (mut a, b) = (sled.load().unwrap(), mem.load().unwrap());
            // The promise folds in the highest accepted ballot.
            assert!(a.promised >= b.promised);
            a.promised = b.promised;
            assert_eq!(a, b);
            assert_eq!(whole_log(&sled), whole_log(&mem));
        }
        assert_eq!(sled.flushes(), 4);
    }
    let sled = SledStorage::open(dir.path(), 3, 42).unwrap();
    let state = sled.load().unwrap();
    assert_eq!(state.promised, Some(Ballot::new(5, 1)), "folded accept");
    assert_eq!(state.decided_upto, 3);
    assert_eq!(state.sessions_upto, 2);
    assert_eq!(state.sessions, vec![session(1, 1, 0)]);
    assert_eq!(state.tail, whole_log(&mem)[2..].to_vec());
    assert_eq!(
        state.accepted.keys().copied().collect::<Vec<_>>(),
        vec![3, u64::MAX],
        "accepts of applied slots are dropped"
    );
    let log = whole_log(&sled);
    assert_eq!(
        log.iter().map(|e| e.kind.clone()).collect::<Vec<_>>(),
        vec![LogEntryKind::Msg, LogEntryKind::Dup, LogEntryKind::Noop]
    );

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
fn a_decided_record_past_the_end_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SledStorage::open(dir.path(), 0, 1).unwrap();
    s.persist(&[Record::Decided {
        slot: 5,
        value: Value::Noop,
        dup: false,
    }])
    .unwrap();
    assert_eq!(s.decided_upto(), 0);
    assert!(whole_log(&s).is_empty());
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
        // The write-ahead log holds it; a checkpoint gives it to sled, which flushes.
        s.checkpoint(None).unwrap();
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
fn other_formats_are_refused_by_open_and_offline_with_a_migration_hint() {
    for format in [1, 2, FORMAT_VERSION + 1] {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStorage::open(dir.path(), 0, 1).unwrap();
            if format == 1 {
                s.trees.meta.remove(KEY_FORMAT).unwrap();
            } else {
                s.trees
                    .meta
                    .insert(KEY_FORMAT, encode(&format).unwrap())
                    .unwrap();
            }
            s.trees.db.flush().unwrap();
        }
        let unsupported = |err: &Error| {
            matches!(err, Error::UnsupportedFormat { path, found, supported }
                if path == dir.path() && *found == format && *supported == FORMAT_VERSION)
        };
        let err = read_offline(dir.path()).unwrap_err();
        assert!(unsupported(&err), "{err}");
        assert!(err.to_string().contains("snapshot restore"), "{err}");
        let err = SledStorage::open(dir.path(), 0, 1).unwrap_err();
        assert!(unsupported(&err), "{err}");
    }
}

#[test]
fn storage_and_reader_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SledStorage>();
    assert_send_sync::<SledLog>();
}

mod segments {
    use super::*;

    const SEG: u64 = 16;

    fn opts(compression: Compression) -> StoreOptions {
        StoreOptions {
            segment_slots: SEG,
            block_slots: 5,
            compression,
            ..StoreOptions::default()
        }
    }

    fn value(slot: Slot) -> Value {
        if slot % 7 == 3 {
            Value::Noop
        } else {
            msg(9, slot / 2, &format!("line {slot}"))
        }
    }

    /// Accepts of `slots` and the decisions of the same slots (odd ones are dups).
    fn decide(slots: std::ops::Range<Slot>, ballot: Ballot) -> Vec<Record> {
        let mut records: Vec<Record> = slots
            .clone()
            .map(|slot| Record::Accepted {
                slot,
                ballot,
                value: value(slot),
            })
            .collect();
        records.extend(slots.map(|slot| Record::Decided {
            slot,
            value: value(slot),
            dup: slot % 2 == 1,
        }));
        records
    }

    /// 50 applied slots, 5 accepts above, a session checkpoint at 40 (a checkpoint: the
    /// tail is sealed there), so segments 0..16, 16..32, 32..40 and 40..50 in the tail
    /// (and the write-ahead log).
    fn build(dir: &Path, compression: Compression) -> MemStorage {
        let mut mem = MemStorage::new();
        let mut s = SledStorage::open_with(dir, 0, 1, opts(compression)).unwrap();
        let mut batches = vec![vec![Record::Promise(Ballot::new(1, 0))]];
        for start in (0..50).step_by(10) {
            batches.push(decide(start..start + 10, Ballot::new(1, 0)));
            if start == 30 {
                batches.push(vec![Record::SessionsCheckpoint {
                    upto: 40,
                    sessions: vec![session(9, 19, 38)],
                }]);
            }
        }
        let mut accepts = vec![Record::Promise(Ballot::new(2, 0))];
        accepts.extend((50..55).map(|slot| Record::Accepted {
            slot,
            ballot: Ballot::new(2, 0),
            value: value(slot),
        }));
        batches.push(accepts);
        for batch in batches {
            s.persist(&batch).unwrap();
            mem.persist(&batch).unwrap();
        }
        assert_eq!(s.wait_segments(), 40);
        assert_eq!(tail_slots(&s), (40..50).collect::<Vec<_>>());
        mem
    }

    fn segment(dir: &Path, first: Slot, end: Slot) -> PathBuf {
        dir.join(SEGMENT_DIR).join(format!("log-{first}-{end}.seg"))
    }

    fn sled_slots(s: &SledStorage) -> Vec<Slot> {
        s.trees
            .decided
            .iter()
            .keys()
            .map(|k| decode_slot(TREE_DECIDED, &k.unwrap()).unwrap())
            .collect()
    }

    fn tail_slots(s: &SledStorage) -> Vec<Slot> {
        (s.tail.first()..s.tail.first() + s.tail.len()).collect()
    }

    /// Every page of every size from every slot equals the memory backend's.
    fn assert_reads_match(log: &impl LogRead, mem: &MemStorage) {
        for from in 0..52 {
            for max in [1, 2, 3, 7, 16, 100] {
                assert_eq!(
                    log.read_log(from, max, usize::MAX).unwrap(),
                    mem.read_log(from, max, usize::MAX).unwrap(),
                    "from {from} max {max}"
                );
            }
            for bytes in [0, 20, 64] {
                assert_eq!(
                    log.read_log(from, 100, bytes).unwrap(),
                    mem.read_log(from, 100, bytes).unwrap(),
                    "from {from} bytes {bytes}"
                );
            }
        }
    }

    #[test]
    fn sealed_slots_read_back_the_same_and_open_seals_the_tail() {
        for compression in [Compression::None, Compression::Zstd(3)] {
            let dir = tempfile::tempdir().unwrap();
            let mem = build(dir.path(), compression);
            for (first, end) in [(0, 16), (16, 32), (32, 40)] {
                assert!(segment(dir.path(), first, end).is_file());
            }
            assert_reads_match(&open_offline(dir.path()).unwrap().log(), &mem);
            let s = SledStorage::open_with(dir.path(), 0, 1, opts(compression)).unwrap();
            assert!(segment(dir.path(), 40, 50).is_file(), "open checkpoints");
            assert!(tail_slots(&s).is_empty());
            assert!(
                sled_slots(&s).is_empty(),
                "applied entries never go to sled"
            );
            assert_eq!(s.log_reader().segments_end(), 50);
            assert_reads_match(&s.log_reader(), &mem);
            let state = s.load().unwrap();
            assert_eq!(state, mem.load().unwrap());
            assert_eq!(state.sessions_upto, 40);
            assert_eq!(state.tail.len(), 10);
            assert_eq!(state.accepted.len(), 5);
            drop(s);
            let offline = open_offline(dir.path()).unwrap();
            assert_reads_match(&offline.log(), &mem);
            assert_eq!(offline.load().unwrap(), mem.load().unwrap());
        }
    }

    #[test]
    fn a_reader_sees_every_durable_slot_while_slots_move_to_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SledStorage::open_with(dir.path(), 0, 1, opts(Compression::Zstd(1))).unwrap();
        let reader = s.log_reader();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let checker = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let upto = reader.decided_upto();
                    let from = upto.saturating_sub(40);
                    let page = reader.read_log(from, 64, usize::MAX).unwrap();
                    assert!(
                        page.len() as u64 >= upto - from,
                        "from {from}: {}",
                        page.len()
                    );
                    for (i, e) in page.iter().enumerate() {
                        assert_eq!(e.slot, from + i as u64);
                        assert_eq!(e.value(), value(e.slot));
                    }
                    reads += 1;
                }
                reads
            })
        };
        for start in (0..2000).step_by(3) {
            s.persist(&decide(start..start + 3, Ballot::new(1, 0)))
                .unwrap();
        }
        assert_eq!(s.wait_segments(), 2001 / SEG * SEG);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(checker.join().unwrap() > 10);
        assert_eq!(whole_log(&s).len(), 2001);
    }

    fn bulk_opts() -> StoreOptions {
        StoreOptions {
            bulk_min_entries: 8,
            ..opts(Compression::Zstd(1))
        }
    }

    fn open_files(dir: &Path) -> usize {
        fs::read_dir(dir.join(SEGMENT_DIR))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".open"))
            .count()
    }

    /// Runs of 10 applied entries go through the bulk path (runs of 1 back to sled): the
    /// open segment, its seal at `SEG` slots or when a short run comes, the sled tail
    /// sealed when a run begins, and an open segment left by a stop, recovered at open.
    #[test]
    fn bulk_runs_read_back_the_same_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut mem = MemStorage::new();
        let mut s = SledStorage::open_with(dir.path(), 0, 1, bulk_opts()).unwrap();
        let b = Ballot::new(1, 0);
        let mut batches = vec![vec![Record::Promise(b)]];
        for range in [0..10, 10..20, 20..30, 30..31, 31..41] {
            batches.push(decide(range, b));
        }
        batches.push(vec![Record::SessionsCheckpoint {
            upto: 40,
            sessions: vec![session(9, 19, 38)],
        }]);
        batches.push(decide(41..50, b));
        let mut accepts = vec![Record::Promise(Ballot::new(2, 0))];
        accepts.extend((50..55).map(|slot| Record::Accepted {
            slot,
            ballot: Ballot::new(2, 0),
            value: value(slot),
        }));
        batches.push(accepts);
        for batch in &batches {
            s.persist(batch).unwrap();
            mem.persist(batch).unwrap();
            assert_reads_match(&s.log_reader(), &mem);
        }
        for (first, end) in [(0, 20), (20, 30), (30, 31), (31, 50)] {
            assert!(segment(dir.path(), first, end).is_file(), "{first}..{end}");
        }
        assert!(sled_slots(&s).is_empty(), "{:?}", sled_slots(&s));
        assert!(tail_slots(&s).is_empty(), "{:?}", tail_slots(&s));
        assert_eq!(open_files(dir.path()), 0);
        assert_eq!(s.load().unwrap(), mem.load().unwrap());
        // A run left open by a stop: recovered and sealed at the next open.
        let run = decide(50..60, Ballot::new(2, 0));
        s.persist(&run).unwrap();
        mem.persist(&run).unwrap();
        assert_eq!(open_files(dir.path()), 1);
        assert_reads_match(&s.log_reader(), &mem);
        drop(s);
        let offline = open_offline(dir.path()).unwrap();
        assert_reads_match(&offline.log(), &mem);
        assert_eq!(offline.load().unwrap(), mem.load().unwrap());
        drop(offline);
        let s = SledStorage::open_with(dir.path(), 0, 1, bulk_opts()).unwrap();
        assert_eq!(open_files(dir.path()), 0);
        assert!(segment(dir.path(), 50, 60).is_file());
        assert_reads_match(&s.log_reader(), &mem);
        assert_eq!(s.load().unwrap(), mem.load().unwrap());
    }

    #[test]
    fn a_torn_open_segment_keeps_its_checked_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SledStorage::open_with(dir.path(), 0, 1, bulk_opts()).unwrap();
        s.persist(&decide(0..10, Ballot::new(1, 0))).unwrap();
        s.persist(&decide(10..15, Ballot::new(1, 0))).unwrap();
        drop(s);
        let open = dir.path().join(SEGMENT_DIR).join("log-0.open");
        let len = fs::metadata(&open).unwrap().len();
        // Cut the last frame (slots 10..15, one block of 5) in half: as a crash mid-append.
        let file = fs::OpenOptions::new().write(true).open(&open).unwrap();
        file.set_len(len - 5).unwrap();
        drop(file);
        let s = SledStorage::open_with(dir.path(), 0, 1, bulk_opts()).unwrap();
        assert_eq!(s.decided_upto(), 10);
        assert!(segment(dir.path(), 0, 10).is_file());
        let log = whole_log(&s);
        assert_eq!(log.len(), 10);
        for (i, e) in log.iter().enumerate() {
            assert_eq!(e.value(), value(i as u64));
        }
    }

    #[test]
    fn a_bad_block_is_corrupt_naming_the_file_and_slot() {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), Compression::Zstd(3));
        let bad = segment(dir.path(), 16, 32);
        let mut bytes = fs::read(&bad).unwrap();
        bytes[60] ^= 0x10; // inside the first block
        fs::write(&bad, &bytes).unwrap();
        let s = SledStorage::open_with(dir.path(), 0, 1, opts(Compression::Zstd(3))).unwrap();
        assert_eq!(s.read_log(0, 16, usize::MAX).unwrap().len(), 16);
        let err = s.read_log(17, 10, usize::MAX).unwrap_err();
        match &err {
            Error::Corrupt { tree, key, .. } => {
                assert!(tree.contains("log-16-32.seg"), "{err}");
                assert_eq!(key, "slot 16", "{err}");
            }
            other => panic!("{other}"),
        }
        // A truncated file fails on its footer.
        fs::write(&bad, &bytes[..bytes.len() - 3]).unwrap();
        let err = s.read_log(20, 10, usize::MAX).unwrap_err();
        assert!(
            matches!(&err, Error::Corrupt { tree, .. } if tree.contains("log-16-32.seg")),
            "{err}"
        );
    }

    #[test]
    fn a_missing_segment_is_corrupt_at_open() {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), Compression::Zstd(3));
        fs::remove_file(segment(dir.path(), 16, 32)).unwrap();
        let err = SledStorage::open_with(dir.path(), 0, 1, opts(Compression::Zstd(3))).unwrap_err();
        assert!(matches!(&err, Error::Corrupt { .. }), "{err}");
        let err = read_offline(dir.path()).unwrap_err();
        assert!(matches!(&err, Error::Corrupt { .. }), "{err}");
        // The last one missing: its slots are nowhere.
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), Compression::Zstd(3));
        fs::remove_file(segment(dir.path(), 32, 40)).unwrap();
        let err = SledStorage::open_with(dir.path(), 0, 1, opts(Compression::Zstd(3))).unwrap_err();
        assert!(
            matches!(&err, Error::Corrupt { key, .. } if key == "slot 32"),
            "{err}"
        );
    }

    #[test]
    fn crash_leftovers_are_read_once_and_removed_by_open() {
        let dir = tempfile::tempdir().unwrap();
        let mem = build(dir.path(), Compression::Zstd(3));
        {
            // As after a crash: sealed slots still in sled (a store from before the tail
            // moved to memory, its deletion not flushed), an accept of an applied slot (its
            // deletion lost), a half-written segment.
            let s = SledStorage::open_with(
                dir.path(),
                0,
                1,
                StoreOptions {
                    segment_slots: 0,
                    ..opts(Compression::Zstd(3))
                },
            )
            .unwrap();
            for slot in 40..48u64 {
                s.trees
                    .decided
                    .insert(slot.to_be_bytes(), encode(&(false, Value::Noop)).unwrap())
                    .unwrap();
            }
            s.trees
                .accepted
                .insert(
                    7u64.to_be_bytes(),
                    encode(&(Ballot::ZERO, Value::Noop)).unwrap(),
                )
                .unwrap();
            s.trees.db.flush().unwrap();
            fs::write(
                dir.path().join(SEGMENT_DIR).join("log-48-64.seg.tmp"),
                b"half",
            )
            .unwrap();
        }
        let offline = open_offline(dir.path()).unwrap();
        assert_reads_match(&offline.log(), &mem);
        assert_eq!(offline.load().unwrap(), mem.load().unwrap());
        drop(offline);
        let s = SledStorage::open_with(dir.path(), 0, 1, opts(Compression::Zstd(3))).unwrap();
        assert!(sled_slots(&s).is_empty());
        assert!(s.trees.accepted.get(7u64.to_be_bytes()).unwrap().is_none());
        assert!(!dir
            .path()
            .join(SEGMENT_DIR)
            .join("log-48-64.seg.tmp")
            .exists());
        assert_reads_match(&s.log_reader(), &mem);
    }

    #[test]
    fn sealing_off_keeps_the_tail_in_memory_and_reads_old_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut mem = build(dir.path(), Compression::Zstd(3));
        let off = StoreOptions {
            segment_slots: 0,
            ..opts(Compression::Zstd(3))
        };
        let mut s = SledStorage::open_with(dir.path(), 0, 1, off).unwrap();
        let more = decide(50..70, Ballot::new(2, 0));
        s.persist(&more).unwrap();
        mem.persist(&more).unwrap();
        // No background sealing; open's checkpoint sealed 40..50 (one segment).
        assert_eq!(s.wait_segments(), 50);
        assert_eq!(tail_slots(&s), (50..70).collect::<Vec<_>>());
        assert_eq!(whole_log(&s), whole_log(&mem));
        assert_eq!(s.load().unwrap(), mem.load().unwrap());
    }
}

/// The write-ahead log (`wal.rs`): records in the log but not in sled (what a `kill -9`
/// leaves) are replayed by `open` and seen by the offline reader; a torn last frame is cut
/// off and never comes back; the log is checkpointed at its bound.
mod write_ahead_log {
    use super::*;

    fn accept(slot: Slot, round: u64, body: &str) -> Record {
        Record::Accepted {
            slot,
            ballot: Ballot::new(round, 1),
            value: msg(9, slot + 1, body),
        }
    }

    fn decided(slot: Slot, body: &str) -> Record {
        Record::Decided {
            slot,
            value: msg(9, slot + 1, body),
            dup: false,
        }
    }

    /// Appends `records` to a closed store's log as one frame, as a persist does just
    /// before a crash: in the log, not in sled.
    fn log_only(dir: &Path, records: &[Record]) {
        let (mut wal, _) = wal::Wal::open(dir).unwrap();
        wal.encode(records).unwrap();
        wal.append_encoded().unwrap();
    }

    #[test]
    fn logged_records_are_replayed_by_open_and_read_offline() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = SledStorage::open(dir.path(), 0, 1).unwrap();
            s.persist(&[accept(0, 1, "a"), accept(1, 1, "b")]).unwrap();
            s.persist(&[decided(0, "a")]).unwrap();
        }
        log_only(
            dir.path(),
            &[
                Record::Promise(Ballot::new(7, 2)),
                accept(2, 7, "c"),
                decided(1, "b"),
            ],
        );
        let (_, offline) = read_offline(dir.path()).unwrap();
        assert_eq!(offline.promised, Some(Ballot::new(7, 2)));
        assert_eq!(offline.decided_upto, 2);
        assert_eq!(
            offline.accepted.keys().copied().collect::<Vec<_>>(),
            vec![2]
        );
        let bodies = |s: &OfflineStore| -> Vec<String> {
            whole_log(&s.log()).into_iter().map(|e| e.body).collect()
        };
        assert_eq!(bodies(&open_offline(dir.path()).unwrap()), ["a", "b"]);
        for _ in 0..2 {
            let s = SledStorage::open(dir.path(), 0, 1).unwrap();
            let state = s.load().unwrap();
            assert_eq!(state, offline, "open replays what the offline reader saw");
            assert_eq!(
                whole_log(&s)
                    .into_iter()
                    .map(|e| e.body)
                    .collect::<Vec<_>>(),
                ["a", "b"]
            );
        }
    }

    #[test]
    fn a_torn_last_frame_is_cut_off_and_never_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = SledStorage::open(dir.path(), 0, 1).unwrap();
            s.persist(&[accept(0, 1, "kept")]).unwrap();
        }
        // Half of a frame after the last whole one: a crash inside its write.
        let (mut wal, frames) = wal::Wal::open(dir.path()).unwrap();
        assert_eq!(frames.len(), 1);
        let end = wal::FILE_HEADER_LEN as u64 + wal.len();
        wal.encode(&[accept(1, 1, "torn")]).unwrap();
        let frame = wal.encoded().to_vec();
        drop(wal);
        {
            use std::os::unix::fs::FileExt;
            let file = fs::OpenOptions::new()
                .write(true)
                .open(dir.path().join(wal::WAL_FILE))
                .unwrap();
            file.write_all_at(&frame[..frame.len() / 2], end).unwrap();
        }
        let accepted =
            |s: &SledStorage| -> Vec<Slot> { s.load().unwrap().accepted.keys().copied().collect() };
        {
            let mut s = SledStorage::open(dir.path(), 0, 1).unwrap();
            assert_eq!(
                accepted(&s),
                vec![0],
                "the torn frame was never acknowledged"
            );
            // A shorter frame after the reset: the torn bytes behind it must not count.
            s.persist(&[Record::Promise(Ballot::new(2, 0))]).unwrap();
        }
        let s = SledStorage::open(dir.path(), 0, 1).unwrap();
        assert_eq!(accepted(&s), vec![0]);
        assert_eq!(s.load().unwrap().promised, Some(Ballot::new(2, 0)));
    }

    #[test]
    fn the_log_is_checkpointed_at_its_bound_and_everything_survives() {
        let dir = tempfile::tempdir().unwrap();
        let body = "x".repeat(16 << 10);
        let mut s = SledStorage::open(dir.path(), 0, 1).unwrap();
        let mut slot = 0;
        while s.checkpoints() < 2 {
            s.persist(&[accept(slot, 1, &body), accept(slot + 1, 1, &body)])
                .unwrap();
            // The next slot's accept stays pending: a checkpoint writes it to sled.
            s.persist(&[decided(slot, &body), decided(slot + 1, &body)])
                .unwrap();
            s.persist(&[accept(slot + 2, 1, &body)]).unwrap();
            slot += 2;
        }
        assert!(s.wal.len() < wal::WAL_CHECKPOINT_BYTES);
        let file_bytes = fs::metadata(dir.path().join(wal::WAL_FILE)).unwrap().len();
        assert!(
            file_bytes
                <= wal::WAL_CHECKPOINT_BYTES
                    + wal::WAL_FRAME_BYTES_MAX as u64
                    + 2 * wal::WAL_GROW_BYTES,
            "the log file stays bounded: {file_bytes} bytes"
        );
        let before = s.load().unwrap();
        assert_eq!(before.decided_upto, slot);
        assert_eq!(
            before.accepted.keys().copied().collect::<Vec<_>>(),
            vec![slot]
        );
        drop(s);
        let s = SledStorage::open(dir.path(), 0, 1).unwrap();
        assert_eq!(s.load().unwrap(), before);
    }

    #[test]
    fn an_idle_checkpoint_empties_the_log_the_tail_and_the_block_cache_and_everything_survives() {
        let dir = tempfile::tempdir().unwrap();
        let body = "y".repeat(100);
        let mut s = SledStorage::open(dir.path(), 0, 1).unwrap();
        assert!(!s.checkpoint_idle().unwrap(), "an empty log: nothing to do");
        for slot in 0..300 {
            s.persist(&[accept(slot, 1, &body)]).unwrap();
            s.persist(&[decided(slot, &body)]).unwrap();
        }
        s.persist(&[accept(300, 1, &body)]).unwrap();
        assert!(s.wal.len() > 0 && s.tail.len() > 0);
        let before = s.load().unwrap();
        let checkpoints = s.checkpoints();
        assert!(s.checkpoint_idle().unwrap());
        assert_eq!(s.checkpoints(), checkpoints + 1);
        assert_eq!((s.wal.len(), s.tail.len()), (0, 0), "log and tail empty");
        assert!(!s.checkpoint_idle().unwrap(), "nothing new: nothing to do");
        assert_eq!(s.load().unwrap(), before);
        let read_before = s.log.entries_read();
        assert_eq!(s.read_log(0, 1000, usize::MAX).unwrap().len(), 300);
        assert_eq!(s.log.entries_read(), read_before + 300);
        assert!(s.log.cache_bytes() > 0, "the segment's blocks are cached");
        assert!(!s.checkpoint_idle().unwrap());
        assert_eq!(
            s.log.cache_bytes(),
            0,
            "an idle checkpoint drops the block cache"
        );
        // Writes go on after it, and a reopen (replaying nothing) has it all.
        s.persist(&[decided(300, &body)]).unwrap();
        let before = s.load().unwrap();
        drop(s);
        let s = SledStorage::open(dir.path(), 0, 1).unwrap();
        assert_eq!(s.load().unwrap(), before);
        assert_eq!(s.read_log(0, 1000, usize::MAX).unwrap().len(), 301);
    }
}

/// A flipped bit in an acknowledged frame with more frames after it is damage, not a
/// torn write: open and the offline reader refuse the store instead of dropping the rest.
#[test]
fn a_damaged_frame_before_whole_ones_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = SledStorage::open(dir.path(), 0, 1).unwrap();
        for slot in 0..3 {
            s.persist(&[Record::Accepted {
                slot,
                ballot: Ballot::new(1, 0),
                value: msg(1, slot + 1, "acknowledged"),
            }])
            .unwrap();
        }
    }
    let path = dir.path().join(wal::WAL_FILE);
    let mut bytes = fs::read(&path).unwrap();
    bytes[wal::FILE_HEADER_LEN + 16 + 3] ^= 0x04; // the first frame's body
    fs::write(&path, &bytes).unwrap();
    for err in [
        read_offline(dir.path()).unwrap_err(),
        SledStorage::open(dir.path(), 0, 1).unwrap_err(),
    ] {
        assert!(
            matches!(&err, Error::Corrupt { tree, .. } if tree.contains(wal::WAL_FILE)),
            "{err}"
        );
    }
}

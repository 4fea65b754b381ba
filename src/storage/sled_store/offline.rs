//! Reading a stopped replica's store without changing it: [`open_offline`] (a handle
//! whose [`OfflineStore::log`] streams the applied log page by page, behind
//! `paxosctl dump-log --data-dir DIR`) and [`read_offline`] (what `load` would return).

use super::bulk;
use super::log::LogShared;
use super::segment::Compression;
use super::tail::Tail;
use super::wal;
use super::SledLog;
use super::{
    check_applied_end, load_state, locate, missing_slots, open_db, read_legacy_tail, Accepts,
    Staged, StoreMeta, Trees, KEY_PROMISED, SEGMENT_DIR, SLED_CACHE_BYTES, SLED_CONF_FILE,
    SLED_DATA_FILE, TREE_META,
};
use crate::core::{Ballot, Record, Slot};
use crate::storage::PersistentState;
use crate::Error;
use std::path::Path;
use std::sync::Arc;

/// A stopped replica's store, opened for reading (it holds sled's lock while it lives).
pub struct OfflineStore {
    meta: StoreMeta,
    trees: Trees,
    log: Arc<LogShared>,
    decided_upto: Slot,
}

impl OfflineStore {
    pub fn meta(&self) -> StoreMeta {
        self.meta
    }

    /// Every slot below this is applied.
    pub fn decided_upto(&self) -> Slot {
        self.decided_upto
    }

    /// A reader of the applied log (bounded pages: see [`crate::storage::LogRead`]).
    pub fn log(&self) -> SledLog {
        SledLog {
            shared: self.log.clone(),
        }
    }

    /// What [`crate::storage::Storage::load`] returns for this store.
    pub fn load(&self) -> Result<PersistentState, Error> {
        load_state(&self.trees, &self.log, self.decided_upto)
    }
}

/// Opens a stopped replica's store without changing what it holds.
///
/// Never creates a store: a missing directory, or one that is not a paxos store, is
/// [`Error::NotAStore`] saying why. A store held by a running `paxosd` is
/// [`Error::Locked`]; another format is [`Error::UnsupportedFormat`]. Removes and repairs
/// nothing (slots a crash left in both sled and a segment are read from the segment); the
/// one change it makes is the replica's next start's first step: records of its
/// write-ahead log are applied to sled (not flushed; the log is kept and replayed again).
pub fn open_offline(dir: &Path) -> Result<OfflineStore, Error> {
    let not_a_store = |reason: String| Error::NotAStore {
        path: dir.to_path_buf(),
        reason,
    };
    if !dir.exists() {
        return Err(not_a_store("the directory does not exist".to_string()));
    }
    if !dir.is_dir() {
        return Err(not_a_store("not a directory".to_string()));
    }
    if !dir.join(SLED_DATA_FILE).is_file() || !dir.join(SLED_CONF_FILE).is_file() {
        return Err(not_a_store(format!(
            "no sled `{SLED_DATA_FILE}`/`{SLED_CONF_FILE}` files"
        )));
    }
    let db = open_db(dir, SLED_CACHE_BYTES)?;
    let has_meta = db
        .tree_names()
        .iter()
        .any(|name| name.as_ref() == TREE_META.as_bytes());
    if !has_meta {
        return Err(not_a_store(format!(
            "a sled store without a `{TREE_META}` tree"
        )));
    }
    let trees = Trees::from_db(dir, db)?;
    let meta = trees
        .read_meta()?
        .ok_or_else(|| not_a_store(format!("no uid/cluster_id in `{TREE_META}`")))?;
    let segment_dir = dir.join(SEGMENT_DIR);
    let (segments, mut decided_upto) = locate(&trees, &segment_dir)?;
    let segments_end = segments.last().map_or(0, |s| s.end);
    // The applied log's tail: in sled for a store from before the write-ahead log, else
    // in the log (below).
    let tail = Arc::new(Tail::new(segments_end));
    read_legacy_tail(&trees, segments_end, decided_upto, &tail)?;
    let log = Arc::new(LogShared::new(tail.clone(), segments, decided_upto));
    // An open bulk segment the replica was writing when it stopped: read in place (its
    // checked prefix), never repaired here. One starting below the sealed chain's end is
    // a leftover of a finished seal (its slots are in the chain).
    for (first, path) in bulk::list_open(&segment_dir)? {
        if first == segments_end && decided_upto == segments_end {
            let open = bulk::recover(&path, first, Compression::Zstd(3))?;
            if open.slots() > 0 {
                decided_upto = open.end;
                log.set_open(open.view());
                log.set_durable_upto(decided_upto);
            }
        }
    }
    // Records the replica had logged but not checkpointed when it stopped (`wal.rs`): the
    // applied entries into the tail in memory, the rest to sled's trees as its next start
    // would (idempotent, crash argument 2); the log itself is left as it is, so that start
    // replays it again.
    let frames = wal::read(dir)?;
    if !frames.is_empty() {
        let mut promised = trees.meta_value::<Ballot>(KEY_PROMISED)?;
        for records in &frames {
            let next = records.iter().find_map(|r| match r {
                Record::Decided { slot, .. } if *slot >= decided_upto => Some(*slot),
                _ => None,
            });
            if let Some(slot) = next.filter(|slot| *slot > decided_upto) {
                return Err(missing_slots(decided_upto, slot));
            }
            let staged = Staged::new(
                &trees,
                promised,
                decided_upto,
                records,
                None,
                Accepts::Sled(None),
            )?;
            let (promise, upto) = (staged.promise, staged.upto);
            staged.apply_sled(&trees, promised, &tail)?;
            (promised, decided_upto) = (promise, upto);
        }
        log.set_durable_upto(decided_upto);
    }
    check_applied_end(&trees, decided_upto)?;
    Ok(OfflineStore {
        meta,
        trees,
        log,
        decided_upto,
    })
}

/// [`open_offline`] and [`OfflineStore::load`]: the store's identity and what a restart
/// would load (small: not the log).
pub fn read_offline(dir: &Path) -> Result<(StoreMeta, PersistentState), Error> {
    let store = open_offline(dir)?;
    Ok((store.meta, store.load()?))
}

//! The sled 0.34 backend of [`Storage`]: what a `paxosd` replica keeps on disk.
//!
//! This module owns the on-disk layout of one replica's store directory:
//! one sled `Db` with three trees,
//! - `meta`: `format` (u32), `uid` ([`Uid`]), `cluster_id` (u64), `promised` ([`Ballot`]),
//!   `accepted_max` (([`Ballot`], slot)): the highest ballot ever accepted and a slot
//!   accepted in it (format 2);
//! - `accepted`: slot -> (ballot, value) of the latest accept at that slot;
//! - `decided`: slot -> decided value;
//!
//! and, next to it, `checkpoints/decided-<first>-<end>.seg`: checkpoint segments, an
//! immutable, checksummed flat-file cache of runs of contiguous decided slots (see
//! [`checkpoint`](self#checkpoint-segments) below).
//!
//! Slot keys are big-endian `u64`, so byte order is slot order. Every value is
//! `crc32 (u32, big-endian) | postcard bytes`; the checksum is verified on every read and a
//! mismatch or decode failure is [`Error::Corrupt`] naming the tree and the key
//! (`slot N`, or the meta key), never silent data.
//!
//! # When data becomes durable
//!
//! [`SledStorage::persist`] applies a call's records to the three trees (one atomic sled
//! batch per tree, in the order meta, accepted, decided), then calls `Db::flush()` once for
//! the whole call (group commit), then `fsync`s any new sled blob file and `sync_data()`s
//! sled's data file `<dir>/db`. sled 0.34's flush is only `sync_file_range`, which survives
//! `kill -9` but not a power loss; the explicit `sync_data` closes that gap. Records are
//! durable exactly when `persist` returns `Ok`. A crash inside `persist` may keep any
//! prefix of the call's work (sled recovers a prefix of its log), which the caller never
//! acknowledged.
//!
//! # Checkpoint segments
//!
//! Walking sled's trees costs about 1 µs an entry (sled pages every node in), so a
//! 1M-slot store took ~1.8 s to load. Segments make the decided log a few sequential
//! file reads instead:
//! - *What*: each file holds the decided values of a fixed run of contiguous slots
//!   (default [`DEFAULT_SEGMENT_SLOTS`], see [`StoreOptions`]): a header (magic, version,
//!   first/end slot, count), postcard `(slot, value)` entries, and a crc32 of it all.
//! - *When*: the backend tracks the contiguous decided prefix (learned by `load`, and on
//!   a fresh store, advanced by the `Decided` records of each successful `persist`). When
//!   it passes the end of the next segment, one background thread (never `persist`)
//!   reads those slots back from the `decided` tree, checking their crcs, and writes the
//!   segment to a temp file, fsyncs it, renames it into place and fsyncs the directory.
//!   A failure there is a `warn!` and means no segment; it never fails nor poisons the
//!   store. [`SledStorage::wait_checkpoints`] waits for the writer (bench, tests).
//! - *Why it is safe*: sled stays the source of truth and nothing is deleted from it
//!   because of a segment. Decided values never change (invariant 2) and only slots made
//!   durable by a returned `persist` (or found by `load`) are written, so a segment can
//!   only repeat what sled durably holds. A segment failing any check is reported with
//!   `warn!` naming the file and ignored from there on (those slots come from sled); a
//!   stale `.tmp` from a killed writer is ignored and removed at the next open.
//!
//! `load` (and [`read_offline`]) reads the chain of segments from slot 0 and then only
//! the sled *tail*: `decided` and `accepted` from the end of the segment chain. A sled
//! record that is read is still checked, and a bad one is still [`Error::Corrupt`].
//! What it returns equals a full scan ([`SledStorage::load_full`]) except that
//! **accepted entries of slots below the segment chain are dropped** (those slots are
//! decided, and the core keeps accepted entries only for undecided slots), with one
//! exception that keeps promise recovery exact: the entry at the slot recorded in
//! `meta/accepted_max` is always returned, so the highest accepted ballot (which the core
//! folds into its promise) is the same as a full scan's. `accepted_max` is written in
//! the same `persist` as the accept that raises it, before it (meta is applied first), so
//! it is never below a durable accept. A crash inside that `persist` can keep it and lose
//! the accept: a read-write `open` then recomputes it with one scan of `accepted`
//! (and [`read_offline`], which writes nothing, scans `accepted` whole instead).
//!
//! # Invariants
//!
//! 1. The stored promise never goes backwards: a lower `Promise` record is ignored.
//! 2. A decided slot never changes: a second `Decided` for a slot keeps the first value
//!    (a different value is a core bug and is logged as an error).
//! 3. A store belongs to one replica of one cluster: `open` with another uid or cluster id
//!    is [`Error::WrongStore`].
//! 4. After any failed write or sync the storage is poisoned: every later `persist` fails
//!    without touching the disk (a failed fsync cannot be retried safely).
//!
//! 5. `meta/accepted_max` is at least the ballot of every durable accept (format 2).
//!
//! Format 1 stores (no `accepted_max`) are upgraded by a read-write `open` (one scan of
//! `accepted`); [`read_offline`] reads their whole `accepted` tree instead.
//!
//! Deliberately not here: `flush_async` (deadlocks in sled 0.34 under concurrent
//! awaiters), compaction of accepted entries below the decided prefix (segments are a
//! cache, not a compaction), a persisted client dedupe table.

mod checkpoint;

pub use checkpoint::{CHECKPOINT_DIR, DEFAULT_SEGMENT_SLOTS};

use super::{PersistentState, Storage};
use crate::core::{Ballot, Record, Slot, Uid, Value};
use crate::Error;
use checkpoint::{Checkpointer, SegmentFile};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use tracing::{debug, error, info, warn};

/// The layout version written in `meta` under `format`. `open` upgrades version 1 (no
/// `accepted_max`) and refuses anything newer.
pub const FORMAT_VERSION: u32 = 2;

const TREE_META: &str = "meta";
const TREE_ACCEPTED: &str = "accepted";
const TREE_DECIDED: &str = "decided";

const KEY_FORMAT: &str = "format";
const KEY_UID: &str = "uid";
const KEY_CLUSTER_ID: &str = "cluster_id";
const KEY_PROMISED: &str = "promised";
const KEY_ACCEPTED_MAX: &str = "accepted_max";

/// sled's data file inside the store directory (the file `sync_data` must reach).
const SLED_DATA_FILE: &str = "db";
/// sled's config file, written at creation: with `db` it marks a directory as a sled store.
const SLED_CONF_FILE: &str = "conf";
/// sled writes values larger than about 128 KiB as separate files here, without fsync.
const SLED_BLOBS_DIR: &str = "blobs";

/// Who a store belongs to, as recorded in its `meta` tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreMeta {
    pub uid: Uid,
    pub cluster_id: u64,
}

impl std::fmt::Display for StoreMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "replica uid {} of cluster {}", self.uid, self.cluster_id)
    }
}

/// Tuning of a read-write store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Decided slots per checkpoint segment; 0 writes none (existing ones are still read).
    pub segment_slots: u64,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            segment_slots: DEFAULT_SEGMENT_SLOTS,
        }
    }
}

/// A replica's durable state in a sled store directory. See the module doc for the layout
/// and for when records become durable.
pub struct SledStorage {
    dir: PathBuf,
    meta: StoreMeta,
    /// Before `trees`: dropping it joins the segment writer, which holds a tree handle.
    checkpoints: Checkpointer,
    trees: Trees,
    /// sled's data file, opened a second time so `persist` can `sync_data` it.
    data_file: File,
    blobs: BlobSync,
    /// The durable promise (mirrors `meta/promised`), so a lower one is never written.
    promised: Option<Ballot>,
    /// Mirrors `meta/accepted_max`: the highest accepted ballot and a slot accepted in it.
    accepted_max: Option<(Ballot, Slot)>,
    /// `Some(reason)` once a write or sync failed: nothing is written after that.
    poisoned: Option<String>,
    /// Number of successful `persist` calls that flushed (one flush each).
    flushes: u64,
}

impl std::fmt::Debug for SledStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStorage")
            .field("dir", &self.dir)
            .field("meta", &self.meta)
            .field("promised", &self.promised)
            .field("accepted_max", &self.accepted_max)
            .field("checkpoints", &self.checkpoints)
            .field("poisoned", &self.poisoned)
            .field("flushes", &self.flushes)
            .finish()
    }
}

impl SledStorage {
    /// Opens (or creates) the store of replica `uid` of cluster `cluster_id` in `dir`.
    ///
    /// A fresh store records `uid`, `cluster_id` and the format version durably before
    /// this returns. A store that belongs to another uid or cluster is
    /// [`Error::WrongStore`]; a store held by a running process is a clear
    /// [`Error::Storage`]. Only the meta tree is read here: [`Storage::load`] reads the rest.
    /// Checkpoint segments hold [`DEFAULT_SEGMENT_SLOTS`] slots (see [`Self::open_with`]).
    pub fn open(dir: &Path, uid: Uid, cluster_id: u64) -> Result<SledStorage, Error> {
        SledStorage::open_with(dir, uid, cluster_id, StoreOptions::default())
    }

    /// [`Self::open`] with explicit [`StoreOptions`].
    pub fn open_with(
        dir: &Path,
        uid: Uid,
        cluster_id: u64,
        options: StoreOptions,
    ) -> Result<SledStorage, Error> {
        fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating store directory {}", dir.display()), e))?;
        let trees = Trees::open(dir)?;
        let checkpoint_dir = dir.join(CHECKPOINT_DIR);
        let segment_slots = match prepare_checkpoint_dir(dir, &checkpoint_dir) {
            Ok(()) => options.segment_slots,
            Err(e) => {
                warn!(dir = %checkpoint_dir.display(), error = %e, "checkpoint directory unusable; no segments will be written");
                0
            }
        };
        let checkpoints = Checkpointer::new(
            checkpoint_dir,
            segment_slots,
            trees.decided.clone(),
            trees.decided.is_empty(),
        );
        let expected = StoreMeta { uid, cluster_id };
        let data_file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join(SLED_DATA_FILE))
            .map_err(|e| Error::io(format!("opening sled data file in {}", dir.display()), e))?;
        let mut storage = SledStorage {
            dir: dir.to_path_buf(),
            meta: expected,
            checkpoints,
            trees,
            data_file,
            blobs: BlobSync::new(dir.join(SLED_BLOBS_DIR)),
            promised: None,
            accepted_max: None,
            poisoned: None,
            flushes: 0,
        };
        match storage.trees.read_meta()? {
            Some(found) if found == expected => {
                storage.promised = storage.trees.read_promised()?;
                if storage.trees.read_format()? < FORMAT_VERSION {
                    storage.upgrade_format()?;
                }
                storage.accepted_max = storage.trees.read_accepted_max()?;
                storage.check_accepted_max()?;
                info!(dir = %dir.display(), uid, cluster_id, promised = ?storage.promised, "store opened");
            }
            Some(found) => {
                return Err(Error::WrongStore {
                    path: dir.to_path_buf(),
                    found: found.to_string(),
                    expected: expected.to_string(),
                })
            }
            None => {
                storage.create_meta()?;
                info!(dir = %dir.display(), uid, cluster_id, "fresh store created");
            }
        }
        Ok(storage)
    }

    /// The replica this store belongs to.
    pub fn meta(&self) -> StoreMeta {
        self.meta
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of `persist` calls that flushed (one flush each), for tests and metrics.
    pub fn flushes(&self) -> u64 {
        self.flushes
    }

    /// Reads the whole state from sled alone, ignoring checkpoint segments: what `load`
    /// returns plus the accepted entries of slots below the segment chain (see the module
    /// doc). Slow on a big store; for tests and checks.
    pub fn load_full(&self) -> Result<PersistentState, Error> {
        self.trees.load_full()
    }

    /// Blocks until the background writer has written every checkpoint segment the durable
    /// decided prefix covers (or gave up after a failure), and returns the end of the
    /// segment chain (every slot below it is in a segment). Nothing in the daemon needs
    /// this; the bench and tests do.
    pub fn wait_checkpoints(&self) -> Slot {
        self.checkpoints.wait()
    }

    /// A crash inside `persist` can keep a raised `accepted_max` and lose the accept it
    /// was written for (meta goes first). Then `load` could not keep the highest accepted
    /// ballot exact without scanning all of `accepted`; fix it here, once, instead.
    fn check_accepted_max(&mut self) -> Result<(), Error> {
        let Some((ballot, slot)) = self.accepted_max else {
            return Ok(());
        };
        if self.trees.accepted_ballot(slot)? == Some(ballot) {
            return Ok(());
        }
        let accepted = read_slots::<(Ballot, Value)>(&self.trees.accepted, TREE_ACCEPTED)?;
        let max = highest_accepted(accepted.iter().map(|(slot, (ballot, _))| (*ballot, *slot)));
        let mut batch = sled::Batch::default();
        match max {
            Some(max) => batch.insert(KEY_ACCEPTED_MAX, encode(&max)?),
            None => batch.remove(KEY_ACCEPTED_MAX),
        }
        self.trees
            .meta
            .apply_batch(batch)
            .map_err(|e| sled_error("repairing meta/accepted_max", e))?;
        self.sync()?;
        info!(dir = %self.dir.display(), was = ?self.accepted_max, now = ?max, "meta/accepted_max recomputed (its accept was lost in a crash)");
        self.accepted_max = max;
        Ok(())
    }

    /// Format 1 had no `accepted_max`: computes it with one scan of `accepted` and
    /// records it with the new format version, durably.
    fn upgrade_format(&mut self) -> Result<(), Error> {
        let accepted = read_slots::<(Ballot, Value)>(&self.trees.accepted, TREE_ACCEPTED)?;
        let max = highest_accepted(accepted.iter().map(|(slot, (ballot, _))| (*ballot, *slot)));
        let mut batch = sled::Batch::default();
        if let Some(max) = max {
            batch.insert(KEY_ACCEPTED_MAX, encode(&max)?);
        }
        batch.insert(KEY_FORMAT, encode(&FORMAT_VERSION)?);
        self.trees
            .meta
            .apply_batch(batch)
            .map_err(|e| sled_error("upgrading the store format", e))?;
        self.sync()?;
        info!(dir = %self.dir.display(), from = 1, to = FORMAT_VERSION, accepted_max = ?max, "store format upgraded");
        Ok(())
    }

    /// Writes uid, cluster id and format version into the meta tree of a fresh store and
    /// makes them durable, including the directory entries sled just created.
    fn create_meta(&mut self) -> Result<(), Error> {
        if !self.trees.accepted.is_empty() || !self.trees.decided.is_empty() {
            return Err(Error::Corrupt {
                tree: TREE_META.to_string(),
                key: KEY_UID.to_string(),
                reason: "missing, but the accepted/decided trees hold entries".to_string(),
            });
        }
        let mut batch = sled::Batch::default();
        batch.insert(KEY_FORMAT, encode(&FORMAT_VERSION)?);
        batch.insert(KEY_UID, encode(&self.meta.uid)?);
        batch.insert(KEY_CLUSTER_ID, encode(&self.meta.cluster_id)?);
        self.trees
            .meta
            .apply_batch(batch)
            .map_err(|e| sled_error("writing meta of a fresh store", e))?;
        self.sync()?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(format!("syncing store directory {}", self.dir.display()), e))
    }

    /// Flushes sled and forces its files to stable storage.
    fn sync(&mut self) -> Result<(), Error> {
        self.trees
            .db
            .flush()
            .map_err(|e| sled_error("flushing sled", e))?;
        self.blobs
            .sync_new()
            .map_err(|e| Error::io("syncing sled blob files", e))?;
        self.data_file
            .sync_data()
            .map_err(|e| Error::io("sync_data on sled data file", e))
    }

    /// Applies `records` and makes them durable; on error the caller poisons the storage.
    fn write(&mut self, records: &[Record]) -> Result<(), Error> {
        let mut promise: Option<Ballot> = None;
        let mut accepted_max = self.accepted_max;
        let mut accepted = sled::Batch::default();
        let mut decided = sled::Batch::default();
        // Decided slots of this call, so that the first value wins within a call too.
        let mut decided_now: HashSet<Slot> = HashSet::new();
        for record in records {
            match record {
                Record::Promise(ballot) => {
                    let highest = promise.max(self.promised);
                    if highest.is_none_or(|p| p < *ballot) {
                        promise = Some(*ballot);
                    } else {
                        debug!(ballot = %ballot, promised = ?highest, "ignoring a promise that is not higher");
                    }
                }
                Record::Accepted {
                    slot,
                    ballot,
                    value,
                } => {
                    let bytes = encode(&(ballot, value))?;
                    debug_assert_eq!(
                        decode::<(Ballot, Value)>(TREE_ACCEPTED, &slot_name(*slot), &bytes).ok(),
                        Some((*ballot, value.clone()))
                    );
                    accepted.insert(&slot.to_be_bytes(), bytes);
                    if accepted_max.is_none_or(|(b, _)| b < *ballot) {
                        accepted_max = Some((*ballot, *slot));
                    }
                }
                Record::Decided { slot, value } => {
                    if !decided_now.insert(*slot) {
                        continue;
                    }
                    let bytes = encode(value)?;
                    let key = slot.to_be_bytes();
                    let existing = self
                        .trees
                        .decided
                        .get(key)
                        .map_err(|e| sled_error("reading a decided slot", e))?;
                    match existing {
                        None => decided.insert(&key, bytes),
                        Some(old) if old.as_ref() == bytes.as_slice() => {}
                        Some(_) => {
                            error!(slot, "decided slot written again with a different value; keeping the first");
                        }
                    }
                }
            }
        }
        // Meta first: `accepted_max` is never behind a durable accept (invariant 5).
        let new_max = accepted_max.filter(|_| accepted_max != self.accepted_max);
        if promise.is_some() || new_max.is_some() {
            let mut meta = sled::Batch::default();
            if let Some(ballot) = promise {
                meta.insert(KEY_PROMISED, encode(&ballot)?);
            }
            if let Some(max) = new_max {
                meta.insert(KEY_ACCEPTED_MAX, encode(&max)?);
            }
            self.trees
                .meta
                .apply_batch(meta)
                .map_err(|e| sled_error("writing the promise", e))?;
        }
        self.trees
            .accepted
            .apply_batch(accepted)
            .map_err(|e| sled_error("writing accepted entries", e))?;
        self.trees
            .decided
            .apply_batch(decided)
            .map_err(|e| sled_error("writing decided entries", e))?;
        self.sync()?;
        if promise.is_some() {
            self.promised = promise;
        }
        self.accepted_max = accepted_max;
        Ok(())
    }
}

impl Storage for SledStorage {
    /// Segments, then the sled tail (see the module doc); also tells the segment writer
    /// what is decided.
    fn load(&self) -> Result<PersistentState, Error> {
        let loaded = self.trees.load_state(self.checkpoints.dir())?;
        self.checkpoints
            .learn(&loaded.state.decided, loaded.segments_end);
        Ok(loaded.state)
    }

    fn persist(&mut self, records: &[Record]) -> Result<(), Error> {
        if let Some(reason) = &self.poisoned {
            return Err(Error::Storage(format!(
                "store at {} is poisoned by an earlier failure ({reason}); restart the replica",
                self.dir.display()
            )));
        }
        if records.is_empty() {
            return Ok(());
        }
        match self.write(records) {
            Ok(()) => {
                self.flushes += 1;
                self.checkpoints
                    .decided(records.iter().filter_map(|r| match r {
                        Record::Decided { slot, .. } => Some(*slot),
                        _ => None,
                    }));
                Ok(())
            }
            Err(e) => {
                error!(dir = %self.dir.display(), error = %e, "storage write failed; poisoning the store");
                self.poisoned = Some(e.to_string());
                Err(e)
            }
        }
    }
}

/// Reads a stopped replica's store without changing what it holds (for
/// `paxosctl dump-log --data-dir DIR`).
///
/// Never creates a store: a missing directory, or one that is not a paxos store, is an
/// error saying so. A store held by a running `paxosd` is an error saying it is locked.
/// Reads checkpoint segments like [`Storage::load`] (and returns the same state), but never
/// writes, removes or repairs one.
pub fn read_offline(dir: &Path) -> Result<(StoreMeta, PersistentState), Error> {
    if !dir.exists() {
        return Err(Error::Storage(format!(
            "no store at {}: the directory does not exist",
            dir.display()
        )));
    }
    if !dir.is_dir() {
        return Err(Error::Storage(format!(
            "no store at {}: not a directory",
            dir.display()
        )));
    }
    if !dir.join(SLED_DATA_FILE).is_file() || !dir.join(SLED_CONF_FILE).is_file() {
        return Err(Error::Storage(format!(
            "{} is not a paxos store (no sled `{SLED_DATA_FILE}`/`{SLED_CONF_FILE}` files)",
            dir.display()
        )));
    }
    let db = open_db(dir)?;
    let has_meta = db
        .tree_names()
        .iter()
        .any(|name| name.as_ref() == TREE_META.as_bytes());
    if !has_meta {
        return Err(Error::Storage(format!(
            "{} is not a paxos store (sled store without a `{TREE_META}` tree)",
            dir.display()
        )));
    }
    let trees = Trees::from_db(db)?;
    let meta = trees.read_meta()?.ok_or_else(|| {
        Error::Storage(format!(
            "{} is not a paxos store (no uid/cluster_id in `{TREE_META}`)",
            dir.display()
        ))
    })?;
    let state = trees.load_state(&dir.join(CHECKPOINT_DIR))?.state;
    Ok((meta, state))
}

/// The sled database and its three trees.
struct Trees {
    db: sled::Db,
    meta: sled::Tree,
    accepted: sled::Tree,
    decided: sled::Tree,
}

impl Trees {
    fn open(dir: &Path) -> Result<Trees, Error> {
        Trees::from_db(open_db(dir)?)
    }

    fn from_db(db: sled::Db) -> Result<Trees, Error> {
        let tree = |name: &str| {
            db.open_tree(name)
                .map_err(|e| sled_error(&format!("opening tree `{name}`"), e))
        };
        Ok(Trees {
            meta: tree(TREE_META)?,
            accepted: tree(TREE_ACCEPTED)?,
            decided: tree(TREE_DECIDED)?,
            db,
        })
    }

    /// Reads one checked value of the meta tree.
    fn meta_value<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let raw = self
            .meta
            .get(key)
            .map_err(|e| sled_error(&format!("reading meta key `{key}`"), e))?;
        raw.map(|bytes| decode(TREE_META, key, &bytes)).transpose()
    }

    /// `None` on a fresh store (no uid and no cluster id recorded).
    fn read_meta(&self) -> Result<Option<StoreMeta>, Error> {
        if let Some(format) = self.meta_value::<u32>(KEY_FORMAT)? {
            if !(1..=FORMAT_VERSION).contains(&format) {
                return Err(Error::Storage(format!(
                    "store format version {format} is not supported (this build reads versions 1 to {FORMAT_VERSION})"
                )));
            }
        }
        let uid = self.meta_value::<Uid>(KEY_UID)?;
        let cluster_id = self.meta_value::<u64>(KEY_CLUSTER_ID)?;
        match (uid, cluster_id) {
            (Some(uid), Some(cluster_id)) => Ok(Some(StoreMeta { uid, cluster_id })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(missing_meta(KEY_CLUSTER_ID)),
            (None, Some(_)) => Err(missing_meta(KEY_UID)),
        }
    }

    fn read_promised(&self) -> Result<Option<Ballot>, Error> {
        self.meta_value(KEY_PROMISED)
    }

    /// The layout version (a store without one predates the `format` key: version 1).
    fn read_format(&self) -> Result<u32, Error> {
        Ok(self.meta_value::<u32>(KEY_FORMAT)?.unwrap_or(1))
    }

    fn read_accepted_max(&self) -> Result<Option<(Ballot, Slot)>, Error> {
        self.meta_value(KEY_ACCEPTED_MAX)
    }

    /// The ballot of the accept stored at `slot` (checked).
    fn accepted_ballot(&self, slot: Slot) -> Result<Option<Ballot>, Error> {
        let bytes = self
            .accepted
            .get(slot.to_be_bytes())
            .map_err(|e| sled_error("reading tree `accepted`", e))?;
        bytes
            .map(|b| decode::<(Ballot, Value)>(TREE_ACCEPTED, &slot_name(slot), &b).map(|e| e.0))
            .transpose()
    }

    /// Reads everything back from sled alone. The two slot trees are walked on two
    /// threads: this is dominated by sled paging leaf nodes in and walking them (about
    /// 1 µs an entry).
    fn load_full(&self) -> Result<PersistentState, Error> {
        let promised = self.read_promised()?;
        let (accepted, decided) = std::thread::scope(|scope| {
            let accepted = std::thread::Builder::new()
                .name("load-accepted".to_string())
                .spawn_scoped(scope, || {
                    read_slots::<(Ballot, Value)>(&self.accepted, TREE_ACCEPTED)
                });
            let decided = read_slots::<Value>(&self.decided, TREE_DECIDED);
            let accepted = match accepted {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                // No thread to spare: read it here.
                Err(_) => read_slots::<(Ballot, Value)>(&self.accepted, TREE_ACCEPTED),
            };
            (accepted, decided)
        });
        let (accepted, decided) = (accepted?, decided?);
        Ok(PersistentState {
            promised,
            accepted,
            decided,
        })
    }

    /// Reads the state through the checkpoint segments in `checkpoint_dir` (see the module
    /// doc): the segment chain, then `decided` and `accepted` from its end, plus the entry
    /// at `meta/accepted_max`'s slot. The segment files and the two sled tails are read by
    /// a small pool of threads (the sled tails first); a bad segment is a warning and its
    /// slots (and everything after it) come from sled.
    fn load_state(&self, checkpoint_dir: &Path) -> Result<Loaded, Error> {
        let promised = self.read_promised()?;
        // Format 1 has no `accepted_max`: its whole `accepted` tree is needed.
        let accepted_max = if self.read_format()? >= 2 {
            Some(self.read_accepted_max()?)
        } else {
            None
        };
        let segments = checkpoint::list_segments(checkpoint_dir);
        let named_end = segments.last().map_or(0, |s| s.end);
        let accepted_from = if accepted_max.is_some() { named_end } else { 0 };

        let mut tasks = vec![LoadTask::AcceptedTail, LoadTask::DecidedTail];
        tasks.extend(segments.iter().map(LoadTask::Segment));
        let run = |task: &LoadTask| match task {
            LoadTask::AcceptedTail => LoadDone::Accepted(read_range::<(Ballot, Value)>(
                &self.accepted,
                TREE_ACCEPTED,
                accepted_from,
                None,
            )),
            LoadTask::DecidedTail => LoadDone::Decided(read_range::<Value>(
                &self.decided,
                TREE_DECIDED,
                named_end,
                None,
            )),
            LoadTask::Segment(segment) => LoadDone::Segment(checkpoint::read_segment(segment)),
        };
        let mut accepted_tail = None;
        let mut decided_tail = None;
        let mut segment_results = Vec::with_capacity(segments.len());
        for done in run_pool(&tasks, run) {
            match done {
                LoadDone::Accepted(r) => accepted_tail = Some(r),
                LoadDone::Decided(r) => decided_tail = Some(r),
                LoadDone::Segment(r) => segment_results.push(r),
            }
        }
        let missing = || Error::Storage("a load task produced no result".to_string());
        let mut accepted_tail = accepted_tail.ok_or_else(missing)??;
        let decided_tail = decided_tail.ok_or_else(missing)??;

        let mut decided = Vec::new();
        let mut segments_end = 0;
        for (segment, result) in segments.iter().zip(segment_results) {
            match result {
                Ok(entries) => {
                    decided.extend(entries);
                    segments_end = segment.end;
                }
                Err(reason) => {
                    warn!(
                        file = %segment.path.display(),
                        %reason,
                        from_slot = segment.first,
                        "checkpoint segment unusable; reading its slots and all later ones from sled"
                    );
                    break;
                }
            }
        }
        let mut accepted_from = accepted_from;
        if segments_end < named_end {
            decided.extend(read_range::<Value>(
                &self.decided,
                TREE_DECIDED,
                segments_end,
                Some(named_end),
            )?);
            if accepted_from > segments_end {
                let mut gap = read_range::<(Ballot, Value)>(
                    &self.accepted,
                    TREE_ACCEPTED,
                    segments_end,
                    Some(accepted_from),
                )?;
                gap.append(&mut accepted_tail);
                accepted_tail = gap;
                accepted_from = segments_end;
            }
        }
        decided.extend(decided_tail);
        let mut accepted: BTreeMap<Slot, (Ballot, Value)> = accepted_tail.into_iter().collect();
        // Keep the highest accepted ballot exact (module doc, invariant 5).
        if let Some(Some((ballot, slot))) = accepted_max {
            let entry = if slot >= accepted_from {
                accepted.get(&slot).cloned()
            } else {
                self.accepted
                    .get(slot.to_be_bytes())
                    .map_err(|e| sled_error("reading tree `accepted`", e))?
                    .map(|bytes| decode::<(Ballot, Value)>(TREE_ACCEPTED, &slot_name(slot), &bytes))
                    .transpose()?
            };
            match entry {
                Some(entry) if entry.0 == ballot => {
                    accepted.insert(slot, entry);
                }
                found => {
                    // Only after a crash inside `persist` (a read-write open repairs it).
                    info!(slot, %ballot, found = ?found.map(|e| e.0), "the entry at meta/accepted_max does not carry its ballot; reading the whole accepted tree");
                    accepted = read_slots(&self.accepted, TREE_ACCEPTED)?;
                }
            }
        }
        Ok(Loaded {
            state: PersistentState {
                promised,
                accepted,
                // In slot order: segments, gap, tail.
                decided: decided.into_iter().collect(),
            },
            segments_end,
        })
    }
}

/// What [`Trees::load_state`] read.
struct Loaded {
    state: PersistentState,
    /// The end of the chain of good segments (every slot below it came from one).
    segments_end: Slot,
}

enum LoadTask<'a> {
    AcceptedTail,
    DecidedTail,
    Segment(&'a SegmentFile),
}

type AcceptedEntries = Vec<(Slot, (Ballot, Value))>;

enum LoadDone {
    Accepted(Result<AcceptedEntries, Error>),
    Decided(Result<Vec<(Slot, Value)>, Error>),
    Segment(Result<Vec<(Slot, Value)>, String>),
}

/// Runs `tasks` on this thread and up to one helper a spare core (tasks are taken in
/// order), returning the results in task order.
fn run_pool<T: Sync, R: Send>(tasks: &[T], run: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || {
        let mut out = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(task) = tasks.get(i) else {
                return out;
            };
            out.push((i, run(task)));
        }
    };
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4)
        .min(tasks.len().max(1));
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads)
            .filter_map(|_| {
                std::thread::Builder::new()
                    .name("load".to_string())
                    .spawn_scoped(scope, work)
                    .ok()
            })
            .collect();
        let mut done = work();
        for helper in helpers {
            done.extend(
                helper
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            );
        }
        done
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// Creates the checkpoint directory (making its entry durable when new) and removes stale
/// temp files a killed writer left.
fn prepare_checkpoint_dir(store: &Path, checkpoints: &Path) -> std::io::Result<()> {
    match fs::create_dir(checkpoints) {
        Ok(()) => File::open(store)?.sync_all()?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    checkpoint::remove_temp_files(checkpoints);
    Ok(())
}

/// The highest ballot among `(ballot, slot)` accepts, with its (first) slot.
fn highest_accepted(accepts: impl Iterator<Item = (Ballot, Slot)>) -> Option<(Ballot, Slot)> {
    accepts.fold(None, |max, (ballot, slot)| match max {
        Some((b, _)) if b >= ballot => max,
        _ => Some((ballot, slot)),
    })
}

/// How long `open_db` keeps retrying a store whose lock is held. sled 0.34 releases its
/// file lock only when its last background thread lets go of the store, shortly after the
/// `Db` is dropped, so a reopen in the same process can briefly see its own old lock.
const LOCK_WAIT_MS: u64 = 1000;
const LOCK_RETRY_MS: u64 = 10;

/// Opens sled in `dir`, turning "another process holds the lock" into a clear error.
fn open_db(dir: &Path) -> Result<sled::Db, Error> {
    let started = std::time::Instant::now();
    loop {
        match sled::Config::new().path(dir).open() {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(io)) if io.to_string().contains("could not acquire lock") => {
                if started.elapsed() < std::time::Duration::from_millis(LOCK_WAIT_MS) {
                    std::thread::sleep(std::time::Duration::from_millis(LOCK_RETRY_MS));
                    continue;
                }
                return Err(Error::Storage(format!(
                    "store at {} is locked by another process (is its paxosd still running? \
                     stop it first, or read the log over the network)",
                    dir.display()
                )));
            }
            Err(other) => {
                return Err(sled_error(
                    &format!("opening sled store at {}", dir.display()),
                    other,
                ))
            }
        }
    }
}

/// Reads every `slot -> T` entry of a slot-keyed tree, checking keys and checksums.
fn read_slots<T: DeserializeOwned>(
    tree: &sled::Tree,
    name: &str,
) -> Result<BTreeMap<Slot, T>, Error> {
    // Keys come in slot order, so collecting a Vec into a BTreeMap builds it in bulk.
    Ok(read_range(tree, name, 0, None)?.into_iter().collect())
}

/// Reads the `slot -> T` entries of slots `from..to` (`to` `None`: to the end), in slot
/// order, checking keys and checksums.
fn read_range<T: DeserializeOwned>(
    tree: &sled::Tree,
    name: &str,
    from: Slot,
    to: Option<Slot>,
) -> Result<Vec<(Slot, T)>, Error> {
    let from = from.to_be_bytes();
    let iter = match to {
        Some(to) => tree.range(from..to.to_be_bytes()),
        None => tree.range(from..),
    };
    let mut out = Vec::new();
    for item in iter {
        let (key, bytes) = item.map_err(|e| sled_error(&format!("reading tree `{name}`"), e))?;
        let slot = decode_slot(name, &key)?;
        let value = decode(name, &slot_name(slot), &bytes)?;
        out.push((slot, value));
    }
    Ok(out)
}

fn decode_slot(tree: &str, key: &[u8]) -> Result<Slot, Error> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| Error::Corrupt {
        tree: tree.to_string(),
        key: format!("key 0x{}", hex(key)),
        reason: format!("a slot key has 8 bytes, this one has {}", key.len()),
    })?;
    Ok(Slot::from_be_bytes(bytes))
}

fn slot_name(slot: Slot) -> String {
    format!("slot {slot}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn missing_meta(key: &str) -> Error {
    Error::Corrupt {
        tree: TREE_META.to_string(),
        key: key.to_string(),
        reason: "missing while the other half of the store identity is present".to_string(),
    }
}

/// `crc32 (u32 BE) | postcard bytes`.
fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    let mut out = postcard::to_extend(value, vec![0u8; 4])
        .map_err(|e| Error::Storage(format!("encoding a record: {e}")))?;
    let crc = crc32fast::hash(&out[4..]);
    out[..4].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// Checks the crc32 of a stored value and returns its postcard bytes; a failure is
/// [`Error::Corrupt`] naming `tree` and `key`.
fn checked_body<'a>(tree: &str, key: &str, bytes: &'a [u8]) -> Result<&'a [u8], Error> {
    let corrupt = |reason: String| Error::Corrupt {
        tree: tree.to_string(),
        key: key.to_string(),
        reason,
    };
    if bytes.len() < 4 {
        return Err(corrupt(format!(
            "value has {} bytes, shorter than its crc32",
            bytes.len()
        )));
    }
    let (crc_bytes, body) = bytes.split_at(4);
    let stored = u32::from_be_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    let actual = crc32fast::hash(body);
    if stored != actual {
        return Err(corrupt(format!(
            "crc32 mismatch: stored {stored:08x}, computed {actual:08x}"
        )));
    }
    Ok(body)
}

/// [`checked_body`] for the value of `slot` in a slot tree.
fn check_crc<'a>(tree: &str, slot: Slot, bytes: &'a [u8]) -> Result<&'a [u8], Error> {
    checked_body(tree, &slot_name(slot), bytes)
}

/// Checks the crc32 and decodes; any failure is [`Error::Corrupt`] naming `tree` and `key`.
fn decode<T: DeserializeOwned>(tree: &str, key: &str, bytes: &[u8]) -> Result<T, Error> {
    let corrupt = |reason: String| Error::Corrupt {
        tree: tree.to_string(),
        key: key.to_string(),
        reason,
    };
    let body = checked_body(tree, key, bytes)?;
    let (value, rest) =
        postcard::take_from_bytes(body).map_err(|e| corrupt(format!("postcard decode: {e}")))?;
    if !rest.is_empty() {
        return Err(corrupt(format!(
            "{} trailing bytes after the record",
            rest.len()
        )));
    }
    Ok(value)
}

fn sled_error(context: &str, e: sled::Error) -> Error {
    match e {
        sled::Error::Io(io) => Error::io(context, io),
        other => Error::Storage(format!("{context}: {other}")),
    }
}

/// Makes sled's blob files durable: sled 0.34 writes values over ~128 KiB to
/// `blobs/<lsn>` without fsync, so each new one is synced once (and the directory with it).
struct BlobSync {
    dir: PathBuf,
    synced: HashSet<OsString>,
}

impl BlobSync {
    fn new(dir: PathBuf) -> BlobSync {
        BlobSync {
            dir,
            synced: HashSet::new(),
        }
    }

    fn sync_new(&mut self) -> std::io::Result<()> {
        let mut present = HashSet::new();
        let mut synced_any = false;
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if !self.synced.contains(&name) {
                match File::open(entry.path()) {
                    Ok(file) => file.sync_data()?,
                    // sled removed it (blob gc) between read_dir and open.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                synced_any = true;
            }
            present.insert(name);
        }
        if synced_any {
            File::open(&self.dir)?.sync_all()?;
        }
        self.synced = present;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
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
        assert!(err.to_string().contains("poisoned"), "{err}");
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
                !s.blobs.synced.is_empty(),
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
        assert!(err.to_string().contains("locked"), "{err}");
    }

    #[test]
    fn offline_reader_never_creates_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = read_offline(&missing).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        assert!(!missing.exists());
        let err = read_offline(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a paxos store"), "{err}");
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
}

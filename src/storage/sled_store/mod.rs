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
//! # Files
//!
//! - `mod.rs` (this file): the layout, [`SledStorage`] (open, identity and format checks,
//!   `persist` and its batch write, poisoning), the meta tree readers.
//! - `codec.rs`: the value codec (crc32 + postcard) and slot keys.
//! - `load.rs`: loading at startup (full scan, or segments + sled tails on a thread pool).
//! - `offline.rs`: [`read_offline`], for a stopped replica's store.
//! - `sync.rs`: making a flush durable (blob files, `sync_data` of sled's data file).
//! - `checkpoint.rs`: checkpoint segments and their background writer.
//!
//! Deliberately not here: `flush_async` (deadlocks in sled 0.34 under concurrent
//! awaiters), compaction of accepted entries below the decided prefix (segments are a
//! cache, not a compaction), a persisted client dedupe table.

mod checkpoint;
mod codec;
mod load;
mod offline;
mod sync;

pub use checkpoint::{CHECKPOINT_DIR, DEFAULT_SEGMENT_SLOTS};
pub use offline::read_offline;

use super::{PersistentState, Storage};
use crate::core::{Ballot, Record, Slot, Uid, Value};
use crate::Error;
use checkpoint::Checkpointer;
use codec::{decode, encode, slot_name};
use load::read_slots;
use serde::de::DeserializeOwned;
use std::collections::HashSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use sync::Durability;
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
    /// What `sync` must reach: sled's data file and its blob files.
    durability: Durability,
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
    /// [`Error::Locked`]. Only the meta tree is read here: [`Storage::load`] reads the rest.
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
        let durability = Durability::open(dir)?;
        let mut storage = SledStorage {
            dir: dir.to_path_buf(),
            meta: expected,
            checkpoints,
            trees,
            durability,
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
        self.durability.sync(&self.trees.db)
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
            return Err(Error::Poisoned {
                path: self.dir.clone(),
                reason: reason.clone(),
            });
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

/// The sled database and its three trees.
struct Trees {
    /// The store directory (for errors).
    dir: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    accepted: sled::Tree,
    decided: sled::Tree,
}

impl Trees {
    fn open(dir: &Path) -> Result<Trees, Error> {
        Trees::from_db(dir, open_db(dir)?)
    }

    fn from_db(dir: &Path, db: sled::Db) -> Result<Trees, Error> {
        let tree = |name: &str| {
            db.open_tree(name)
                .map_err(|e| sled_error(&format!("opening tree `{name}`"), e))
        };
        Ok(Trees {
            meta: tree(TREE_META)?,
            accepted: tree(TREE_ACCEPTED)?,
            decided: tree(TREE_DECIDED)?,
            dir: dir.to_path_buf(),
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
                return Err(Error::UnsupportedFormat {
                    path: self.dir.clone(),
                    found: format,
                    supported: FORMAT_VERSION,
                });
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
                return Err(Error::Locked {
                    path: dir.to_path_buf(),
                });
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

fn missing_meta(key: &str) -> Error {
    Error::Corrupt {
        tree: TREE_META.to_string(),
        key: key.to_string(),
        reason: "missing while the other half of the store identity is present".to_string(),
    }
}

fn sled_error(context: &str, e: sled::Error) -> Error {
    match e {
        sled::Error::Io(io) => Error::io(context, io),
        other => Error::Sled {
            context: context.to_string(),
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests;

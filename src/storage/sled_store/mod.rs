//! The sled 0.34 backend of [`Storage`]: what a `paxosd` replica keeps on disk (format 3).
//!
//! # Layout
//!
//! One store directory holds the write-ahead log `wal.log`, a directory of log segments,
//! and a sled `Db` with three trees for the small state:
//! - `wal.log` (see `wal.rs`): every record persisted since the last *checkpoint*, in
//!   order, crc'd frames; preallocated, at most [`wal::WAL_CHECKPOINT_BYTES`] (8 MiB)
//!   plus one call's frames. The only copy of the applied entries not sealed yet and of
//!   the accepts not checkpointed yet;
//! - `segments/log-<first>-<end>.seg`: the applied log, immutable files chained from slot
//!   0, each value stored once (see `segment.rs` for the file format: blocks of up to
//!   [`DEFAULT_BLOCK_SLOTS`] entries, zstd-compressed, crc32 per block, an index in the
//!   footer). The background writer seals `segment_slots` at a time, a checkpoint seals
//!   whatever the tail holds (so segments of a busy log are about 20-30k slots), the bulk
//!   path seals its runs;
//! - `segments/log-<first>.open`: at most one *open segment*, the bulk path's file (see
//!   `bulk.rs`): slots `first..` of the applied log, after the sealed chain, while a long
//!   run of applied entries (a catch-up) is written;
//! - sled `meta`: `format` (u32, [`FORMAT_VERSION`]), `uid` ([`Uid`]), `cluster_id` (u64),
//!   `promised` ([`Ballot`]: the highest promise, with the highest ballot ever accepted
//!   folded in), `sessions` ((slot, [`Session`] list): the latest session checkpoint),
//!   `identity`, `peer_stores` (store ids), `applied_end` (the applied log's end at the
//!   last checkpoint: `open` refuses a store that holds less, e.g. a lost segment file);
//! - sled `accepted`: slot -> (ballot, value) of accepts still undecided at a checkpoint
//!   (most accepts are decided before one and never reach sled): bounded by the core's
//!   in-flight window;
//! - sled `decided`: empty. A store written before the write-ahead log kept the applied
//!   log's tail there; `open` moves it into a segment.
//!
//! Slot keys are big-endian `u64`. Every sled value is `crc32 (u32 BE) | postcard`,
//! checked on every read; a mismatch is [`Error::Corrupt`] naming the tree (or segment
//! file) and the slot, never silent data.
//!
//! Memory: the *tail* (`tail.rs`: the applied entries after the segments, postcard bytes
//! each) is in memory, at most what was logged since the last checkpoint (8 MiB of
//! records) or `segment_slots`; the pending accepts (accepted, not decided, not
//! checkpointed: the in-flight window); sled's page cache, bounded by `sled_cache_bytes`
//! (default [`SLED_CACHE_BYTES`], 32 MiB, and it only holds the small trees now);
//! readers keep an LRU of decoded blocks ([`log::BLOCK_CACHE_BYTES`]) and one small
//! index record per segment. Nothing is proportional to the log length except that
//! index (tens of bytes a segment, plus about 28 bytes a block of a segment once read).
//! The bulk path holds one call's run twice (postcard and compressed: bounded by what one
//! `persist` is given, at most the core's unstored catch-up window, 32 chunks of at most
//! 1 MiB of values), the open segment's block index (28 bytes a block, at most
//! `segment_slots` + one run of slots), and while sealing it one segment's compressed
//! bytes (as the segment writer does).
//!
//! # When data becomes durable
//!
//! The steady state: [`SledStorage::persist`] appends the call's records (all but a
//! session checkpoint) to the write-ahead log, one `write` at a preallocated offset and
//! one `fdatasync`; records are durable exactly when that returns. Only then are they
//! applied, none flushed: applied entries to the tail, accepts to the pending accepts,
//! a promise or store ids to sled (which writes them out on its own).
//!
//! A *checkpoint* (the log passed 8 MiB, a call carries a session checkpoint, or `open`)
//! seals the tail into a segment (`.tmp`, fsync, rename, fsync the directory), writes the
//! pending accepts, the session checkpoint and `applied_end` to sled, flushes sled and
//! forces it to disk (`Db::flush()`, an `fsync` of any new sled blob file, `sync_data()`
//! of sled's data file: sled's flush alone is `sync_file_range`, which survives `kill -9`
//! but not a power loss), and only then empties the log. A session checkpoint is so never
//! durable before the applied entries below it (they are in the log or a segment).
//!
//! A bulk run (a catch-up) checkpoints first, then goes to the open segment (below), and
//! the rest of its call to sled, flushed.
//!
//! Crash argument: at every instant the durable state is "segments + sled + the log
//! replayed over them". Replaying is idempotent (`wal.rs`, 2): an accept at a slot is
//! replaced by the latest, a promise only rises, an applied entry below the log's end is
//! dropped, the rest is "the latest wins" in log order. The log is emptied only after
//! everything in it is in a segment or a flushed sled.
//!
//! # The bulk path (catch-up at disk speed)
//!
//! A `persist` whose Decided records extend the applied log by at least
//! `bulk_min_entries` ([`BULK_MIN_ENTRIES`], one catch-up chunk) checkpoints (the log and
//! the tail are empty from then on while the open segment exists), creates an open
//! segment at the log's end, and appends the run to it (zstd blocks, one frame a block,
//! one write and one `fdatasync` a call) *before* it applies the rest of the call
//! (promise, session checkpoint, accepts) to sled, and skips sled's flush when nothing
//! else was written. Later calls append to the open segment while their runs stay longer
//! than a quarter of `bulk_min_entries`; it is sealed into an ordinary segment once it
//! holds `segment_slots` slots or when a shorter run arrives (which then goes through the
//! log again, and the segment writer resumes after the sealed chain). Crash safety:
//! `bulk.rs`.
//!
//! # Segments: when and why it is safe
//!
//! One background thread (`writer.rs`) waits until the durable applied prefix passes the
//! end of the next segment, copies those slots from the tail, writes `<name>.tmp`, fsyncs
//! it, renames it into place and fsyncs the directory; then it registers the segment
//! with the readers and only then drops its slots from the tail. A checkpoint does the
//! same for the whole tail, in `persist`. Crash argument: the log still holds the slots
//! (it is emptied only by a checkpoint, after its seal); a stale `.tmp` is removed at the
//! next open. A reader that misses a slot in the tail looks at the index again, where it
//! already is. A write failure is a `warn!` and stops sealing until the next open; the
//! tail stays in memory and the log is not emptied (both grow).
//!
//! # Restart
//!
//! `open` first recovers an open segment a crash or stop left (its checked prefix is
//! sealed; it holds at most `segment_slots` plus one call's run), then lists segment
//! *names* only (the chain must run from slot 0 without a gap: segments are the only
//! copy of their slots, so a gap is [`Error::Corrupt`]), replays the log (at most
//! 8 MiB plus a call; its applied entries must continue the chain, else
//! [`Error::Corrupt`]) and checkpoints. `load` reads `accepted`, the session checkpoint
//! and the applied entries after it (the tail the core replays, at most
//! [`crate::core::SESSIONS_CHECKPOINT_SLOTS`] plus one flush of them). Both are
//! independent of the log length. Segment footers are read on first use.
//!
//! # Invariants
//!
//! 1. The stored promise never goes backwards; it is at least every durable accept's
//!    ballot.
//! 2. The applied log only grows at its end: a `Decided` record for a slot already
//!    stored is dropped; one past the end (a hole) is a core bug, logged and dropped (in
//!    the log at `open`: [`Error::Corrupt`]).
//! 3. A store belongs to one replica of one cluster: `open` with another uid or cluster
//!    id is [`Error::WrongStore`].
//! 4. After any failed write or sync the storage is poisoned: every later `persist` fails
//!    without touching the disk (a failed fsync cannot be retried safely).
//!
//! # Older formats
//!
//! Format 1 and 2 stores (the whole decided log in sled, no applied kinds, no sessions)
//! are refused with [`Error::UnsupportedFormat`], whose message says how to migrate:
//! `paxosctl snapshot save` from the cluster running the old build, then `paxosctl
//! snapshot restore` (which computes the applied kinds and the session checkpoint).
//! Format 3 stores from before the write-ahead log open as they are (their sled tail is
//! moved into a segment at the first open).
//!
//! # Files
//!
//! - `mod.rs` (this file): the layout, [`SledStorage`] (open, identity and format checks,
//!   `load`, `persist`, checkpoints, poisoning), the meta tree readers.
//! - `wal.rs`: the write-ahead log of the commit path (format, append, replay).
//! - `tail.rs`: the applied log's tail in memory.
//! - `log.rs`: [`SledLog`], the reader of the applied log (segments + tail).
//! - `segment.rs`: the segment file format.
//! - `writer.rs`: the background segment writer.
//! - `bulk.rs`: the open segment of the bulk path (format, append, recovery, seal).
//! - `codec.rs`: the value codec (crc32 + postcard) and slot keys.
//! - `offline.rs`: [`open_offline`] / [`read_offline`], for a stopped replica's store.
//! - `sync.rs`: making a flush durable (blob files, `sync_data` of sled's data file).

mod bulk;
mod codec;
mod log;
mod offline;
mod segment;
mod sync;
mod tail;
mod wal;
mod writer;

pub use log::{SledLog, BLOCK_CACHE_BYTES};
pub use offline::{open_offline, read_offline, OfflineStore};
pub use segment::{Compression, SEGMENT_DIR};

use super::{LogRead, PersistentState, Storage};
use crate::core::{Ballot, Record, Session, Slot, Standing, Uid, Value};
use crate::Error;
use codec::{decode, decode_slot, encode, slot_name};
use log::LogShared;
use segment::SegmentName;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use sync::Durability;
use tail::Tail;
use tracing::{debug, error, info, warn};
use writer::{Writer, WriterConfig};

/// The layout version written in `meta` under `format`; `open` refuses any other.
pub const FORMAT_VERSION: u32 = 3;
/// Applied slots per segment unless [`StoreOptions`] says otherwise.
pub const DEFAULT_SEGMENT_SLOTS: u64 = 65_536;
/// Most entries in one segment block unless [`StoreOptions`] says otherwise.
pub const DEFAULT_BLOCK_SLOTS: u32 = 512;
/// The bulk path's threshold unless [`StoreOptions`] says otherwise: one catch-up chunk.
pub const BULK_MIN_ENTRIES: usize = 1024;
/// sled's page cache bound unless [`StoreOptions`] says otherwise.
pub const SLED_CACHE_BYTES: u64 = 32 * 1024 * 1024;

const TREE_META: &str = "meta";
const TREE_ACCEPTED: &str = "accepted";
const TREE_DECIDED: &str = "decided";

const KEY_FORMAT: &str = "format";
const KEY_UID: &str = "uid";
const KEY_CLUSTER_ID: &str = "cluster_id";
const KEY_PROMISED: &str = "promised";
const KEY_SESSIONS: &str = "sessions";
const KEY_IDENTITY: &str = "identity";
const KEY_PEER_STORES: &str = "peer_stores";
/// A checkpoint taking this long is logged at `info` (every commit waits for it).
const CHECKPOINT_SLOW_MS: u64 = 100;
/// While the tail cannot be sealed (a segment write fails) the write-ahead log keeps
/// growing; past this the store gives up (poisoned: the replica stops and says why).
const WAL_GROWTH_MAX_BYTES: u64 = 4 * wal::WAL_CHECKPOINT_BYTES;
/// The end of the applied log at the last checkpoint (every slot below it is in a
/// segment or the write-ahead log): `open` refuses a store that holds less.
const KEY_APPLIED_END: &str = "applied_end";

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
    /// Applied slots per segment sealed in the background; 0 seals none there (segments
    /// are then written only at checkpoints, one for the whole tail).
    pub segment_slots: u64,
    /// Most entries per segment block (a block is also closed at 256 KiB raw).
    pub block_slots: u32,
    pub compression: Compression,
    /// Bound of sled's page cache.
    pub sled_cache_bytes: u64,
    /// A `persist` that extends the applied log by at least this many entries while no
    /// open segment exists starts one (the bulk path, see `bulk.rs`); 0 never does.
    pub bulk_min_entries: usize,
    /// Test hook: the segment writer sleeps this long between the steps of sealing a
    /// segment, so that a `kill -9` lands inside it.
    #[doc(hidden)]
    pub segment_pause_ms: u64,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            segment_slots: DEFAULT_SEGMENT_SLOTS,
            block_slots: DEFAULT_BLOCK_SLOTS,
            compression: Compression::Zstd(3),
            sled_cache_bytes: SLED_CACHE_BYTES,
            bulk_min_entries: BULK_MIN_ENTRIES,
            segment_pause_ms: 0,
        }
    }
}

/// A replica's durable state in a sled store directory. See the module doc for the layout
/// and for when records become durable.
pub struct SledStorage {
    dir: PathBuf,
    meta: StoreMeta,
    /// Before `trees`: dropping it joins the segment writer.
    writer: Writer,
    log: Arc<LogShared>,
    trees: Trees,
    durability: Durability,
    /// The durable promise (mirrors `meta/promised`), so a lower one is never written.
    promised: Option<Ballot>,
    /// Every slot below this is applied and durable (mirrors the stored log's end).
    decided_upto: Slot,
    /// `Some(reason)` once a write or sync failed: nothing is written after that.
    poisoned: Option<String>,
    /// Number of successful `persist` calls that flushed (one flush each).
    flushes: u64,
    options: StoreOptions,
    /// The open bulk segment, if a long run of applied entries is being written.
    open: Option<bulk::OpenSegment>,
    /// The write-ahead log of the commit path (`wal.rs`).
    wal: wal::Wal,
    /// The applied log after the segments, in memory (`tail.rs`), shared with the
    /// readers and the segment writer.
    tail: Arc<Tail>,
    /// Number of times the write-ahead log was folded into a flushed sled.
    checkpoints: u64,
    /// Accepts in the write-ahead log and not in sled yet (slot -> the latest), written
    /// to sled's `accepted` at the next checkpoint. Most are decided before then, and then
    /// never touch sled. Bounded like `accepted`: by the core's in-flight window.
    pending_accepts: BTreeMap<Slot, (Ballot, Value)>,
    /// The slots sled's `accepted` tree holds (same bound), so that a decided slot's
    /// accept is deleted from sled only when it is there.
    sled_accepts: std::collections::BTreeSet<Slot>,
}

impl std::fmt::Debug for SledStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStorage")
            .field("dir", &self.dir)
            .field("meta", &self.meta)
            .field("promised", &self.promised)
            .field("decided_upto", &self.decided_upto)
            .field("writer", &self.writer)
            .field("poisoned", &self.poisoned)
            .field("flushes", &self.flushes)
            .field("wal_bytes", &self.wal.len())
            .field("tail_slots", &self.tail.len())
            .field("tail_bytes", &self.tail.bytes())
            .finish()
    }
}

impl SledStorage {
    /// Opens (or creates) the store of replica `uid` of cluster `cluster_id` in `dir`.
    ///
    /// A fresh store records `uid`, `cluster_id` and the format version durably before
    /// this returns. A store that belongs to another uid or cluster is
    /// [`Error::WrongStore`]; a store held by a running process is a clear
    /// [`Error::Locked`]; another format is [`Error::UnsupportedFormat`]. Reads only the
    /// meta tree, the segment file names and the ends of the sled tail.
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
        let trees = Trees::open(dir, options.sled_cache_bytes)?;
        let expected = StoreMeta { uid, cluster_id };
        let mut durability = Durability::open(dir)?;
        let fresh = match trees.read_meta()? {
            Some(found) if found == expected => false,
            Some(found) => {
                return Err(Error::WrongStore {
                    path: dir.to_path_buf(),
                    found: found.to_string(),
                    expected: expected.to_string(),
                })
            }
            None => {
                trees.create_meta(expected)?;
                durability.sync(&trees.db)?;
                sync_dir(dir)?;
                true
            }
        };
        let segment_dir = dir.join(SEGMENT_DIR);
        match fs::create_dir(&segment_dir) {
            Ok(()) => sync_dir(dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(format!("creating {}", segment_dir.display()), e)),
        }
        segment::remove_temp_files(&segment_dir);
        recover_open_segments(&trees, &segment_dir, options)?;
        let (segments, decided_upto) = locate(&trees, &segment_dir)?;
        let segments_end = segments.last().map_or(0, |s| s.end);
        // Repairs after a crash: slots already in a segment whose deletion from sled was
        // not flushed, and accepts of applied slots whose deletion was lost.
        let leftover = remove_below(&trees.decided, TREE_DECIDED, segments_end)?;
        let stale = remove_below(&trees.accepted, TREE_ACCEPTED, decided_upto)?;
        if leftover + stale > 0 {
            durability.sync(&trees.db)?;
            info!(dir = %dir.display(), leftover, stale, "removed slots left behind by a crash");
        }
        let promised = trees.meta_value::<Ballot>(KEY_PROMISED)?;
        // A store written before the write-ahead log kept the tail in sled's `decided`:
        // read into memory here, sealed by the checkpoint at the end of `open`, then
        // removed from sled.
        let tail = Arc::new(Tail::new(segments_end));
        let legacy_end = read_legacy_tail(&trees, segments_end, decided_upto, &tail)?;
        let log = Arc::new(LogShared::new(tail.clone(), segments, decided_upto));
        let writer = Writer::start(
            WriterConfig {
                dir: segment_dir,
                segment_slots: options.segment_slots,
                block_slots: options.block_slots,
                compression: options.compression,
                pause_ms: options.segment_pause_ms,
            },
            log.clone(),
            tail.clone(),
        );
        if fresh {
            info!(dir = %dir.display(), uid, cluster_id, "fresh store created");
        } else {
            info!(dir = %dir.display(), uid, cluster_id, ?promised, decided_upto, segments_end, "store opened");
        }
        let (wal, frames) = wal::Wal::open(dir)?;
        let sled_accepts = trees
            .accepted
            .iter()
            .keys()
            .map(|k| {
                k.map_err(|e| sled_error("reading tree `accepted`", e))
                    .and_then(|k| decode_slot(TREE_ACCEPTED, &k))
            })
            .collect::<Result<_, Error>>()?;
        let mut storage = SledStorage {
            dir: dir.to_path_buf(),
            meta: expected,
            writer,
            log,
            trees,
            durability,
            promised,
            decided_upto,
            poisoned: None,
            flushes: 0,
            options,
            open: None,
            wal,
            tail,
            checkpoints: 0,
            pending_accepts: BTreeMap::new(),
            sled_accepts,
        };
        // The log's records go where they belong, the tail into segments, and the log
        // starts a new epoch (so no torn bytes after its end ever count: `wal.rs`, 3).
        storage.replay(&frames)?;
        if legacy_end > segments_end && storage.tail.first() >= legacy_end {
            writer::remove_range(&storage.trees.decided, segments_end, legacy_end)?;
            storage.sync()?;
            info!(dir = %storage.dir.display(), slots = legacy_end - segments_end, "moved the applied log's tail from sled into segments");
        }
        Ok(storage)
    }

    /// Applies the write-ahead log's frames (idempotent: `wal.rs`, crash argument 2), then
    /// checkpoints: the tail is sealed, sled flushed and the log emptied.
    fn replay(&mut self, frames: &[Vec<Record>]) -> Result<(), Error> {
        let started = std::time::Instant::now();
        let from = self.decided_upto;
        for records in frames {
            let next = records.iter().find_map(|r| match r {
                Record::Decided { slot, .. } if *slot >= self.decided_upto => Some(*slot),
                _ => None,
            });
            if let Some(slot) = next.filter(|slot| *slot > self.decided_upto) {
                return Err(missing_slots(self.decided_upto, slot));
            }
            self.apply(records, Mode::Logged)?;
        }
        check_applied_end(&self.trees, self.decided_upto)?;
        self.checkpoint(None)?;
        if self.tail.len() > 0 {
            // The log must start a new epoch before anything is appended (`wal.rs`, 3).
            return Err(Error::Sled {
                context: format!("opening the store in {}", self.dir.display()),
                reason: format!(
                    "cannot seal the applied log's tail (slots {}..{}) into a segment: see the warning above",
                    self.tail.first(),
                    self.decided_upto
                ),
            });
        }
        self.log.set_durable_upto(self.decided_upto);
        self.writer.advance(self.decided_upto);
        info!(
            dir = %self.dir.display(),
            frames = frames.len(),
            applied = self.decided_upto - from,
            decided_upto = self.decided_upto,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "replayed the write-ahead log"
        );
        Ok(())
    }

    /// The replica this store belongs to.
    pub fn meta(&self) -> StoreMeta {
        self.meta
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of successful `persist` calls (one `fdatasync` each: of the write-ahead
    /// log, or of sled), for tests and metrics.
    pub fn flushes(&self) -> u64 {
        self.flushes
    }

    /// Number of times the write-ahead log was folded into a flushed sled (it passed
    /// its bound, or a persist skipped it), for tests.
    pub fn checkpoints(&self) -> u64 {
        self.checkpoints
    }

    /// For a replica whose write load has stopped: seals the open bulk segment if a
    /// catch-up left one, then checkpoints (seals the in-memory tail into segments,
    /// writes the pending accepts to sled, empties the write-ahead log), so an idle
    /// replica holds no tail in memory and a restart replays nothing. Does nothing when
    /// all of that is empty already. Always drops the readers' decoded-block cache.
    /// A failure poisons the store, as in `persist`. Returns whether it checkpointed.
    pub fn checkpoint_idle(&mut self) -> Result<bool, Error> {
        if let Some(reason) = &self.poisoned {
            return Err(Error::Poisoned {
                path: self.dir.clone(),
                reason: reason.clone(),
            });
        }
        self.log.drop_cache();
        if self.open.is_none() && self.wal.len() == 0 && self.tail.len() == 0 {
            return Ok(false);
        }
        let result = self.seal_open().and_then(|()| {
            if self.wal.len() > 0 || self.tail.len() > 0 {
                self.checkpoint(None)
            } else {
                Ok(())
            }
        });
        match result {
            Ok(()) => Ok(true),
            Err(e) => {
                error!(dir = %self.dir.display(), error = %e, "idle checkpoint failed; poisoning the store");
                self.poisoned = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Every slot below this is applied and durable.
    pub fn decided_upto(&self) -> Slot {
        self.decided_upto
    }

    /// A reader of the applied log, for any thread (see [`SledLog`]).
    pub fn log_reader(&self) -> SledLog {
        SledLog {
            shared: self.log.clone(),
        }
    }

    /// Blocks until the segment writer has sealed every segment the durable applied
    /// prefix covers (or gave up), and returns the end of the segment chain. Slots in an
    /// open bulk segment are not waited for (it is sealed by `persist` itself). Nothing
    /// in the daemon needs this; the bench and tests do.
    pub fn wait_segments(&self) -> Slot {
        self.writer.wait()
    }

    /// Flushes sled and forces its files to stable storage.
    fn sync(&mut self) -> Result<(), Error> {
        self.durability.sync(&self.trees.db)
    }

    /// Applies `records` and makes them durable; on error the caller poisons the storage.
    /// Returns the new end of the applied log.
    ///
    /// The steady state goes through the write-ahead log (`wal.rs`): the call's records
    /// (but a session checkpoint) as frames, one `fdatasync`; then applied entries go to
    /// the in-memory tail, accepts to the pending accepts, the rest to sled, none flushed.
    /// A session checkpoint, or a log past its bound, then checkpoints. A bulk run (a
    /// catch-up) goes to the open segment instead, with the rest of its call to a flushed
    /// sled, after a checkpoint (so the log and the tail are empty while it is open).
    fn write(&mut self, records: &[Record]) -> Result<Slot, Error> {
        let extends = extends_by(records, self.decided_upto);
        if self.open.is_some() && extends > 0 && extends < self.options.bulk_min_entries as u64 / 4
        {
            // The long run is over: back to the log for the entries at the write rate.
            self.seal_open()?;
        }
        let bulk = self.open.is_some()
            || (self.options.bulk_min_entries > 0
                && extends >= self.options.bulk_min_entries as u64
                && self.options.segment_slots > 0
                && self.writer.usable());
        if bulk {
            if self.wal.len() > 0 || self.tail.len() > 0 {
                self.checkpoint(None)?;
            }
            // Unless that checkpoint found the segment writer broken: then the entries go
            // through the log like any others (never to the tail unlogged).
            if self.open.is_none() && self.writer.usable() && self.wal.len() == 0 {
                self.start_open()?;
            }
            if self.open.is_some() {
                return self.apply(records, Mode::Flushed);
            }
        }
        let sessions = records.iter().rev().find_map(|r| match r {
            Record::SessionsCheckpoint { upto, sessions } => Some((*upto, sessions.as_slice())),
            _ => None,
        });
        let upto = if sessions.is_some() {
            let rest: Vec<Record> = records
                .iter()
                .filter(|r| !matches!(r, Record::SessionsCheckpoint { .. }))
                .cloned()
                .collect();
            self.log_and_apply(&rest)?
        } else {
            self.log_and_apply(records)?
        };
        if let Some((at, table)) = sessions {
            if at > upto {
                error!(
                    at,
                    decided_upto = upto,
                    "session checkpoint past the applied log; dropped"
                );
                self.checkpoint(None)?;
            } else {
                self.checkpoint(Some((at, table)))?;
            }
        } else if self.wal.len() >= wal::WAL_CHECKPOINT_BYTES {
            self.checkpoint(None)?;
        }
        Ok(upto)
    }

    /// Appends `records` to the write-ahead log (durable when this returns) and applies
    /// them without a flush.
    fn log_and_apply(&mut self, records: &[Record]) -> Result<Slot, Error> {
        if records.is_empty() {
            return Ok(self.decided_upto);
        }
        self.wal.append(records)?;
        self.apply(records, Mode::Logged)
    }

    /// Seals the tail into segments, writes the pending accepts (and `sessions`, the
    /// session checkpoint of a call) to sled, makes sled durable, and then, everything
    /// logged being elsewhere now, empties the write-ahead log. If the tail cannot be
    /// sealed (the segment writer failed) the log is kept: it is the tail's only copy.
    fn checkpoint(&mut self, sessions: Option<(Slot, &[Session])>) -> Result<(), Error> {
        let started = std::time::Instant::now();
        let (upto, sealed, wal_bytes) = (self.decided_upto, self.tail.len(), self.wal.len());
        if self.tail.len() > 0 {
            // Tried at every checkpoint, also after a failure (the disk may have room again).
            match self.writer.take_over(&self.log, &self.tail, upto) {
                Ok(()) => self.writer.resume(upto),
                Err(reason) => {
                    if self.wal.len() >= WAL_GROWTH_MAX_BYTES {
                        return Err(Error::Sled {
                            context: format!("sealing the applied log's tail below slot {upto}"),
                            reason: format!("{reason}; the write-ahead log holds {} bytes, past its hard bound: stopping", self.wal.len()),
                        });
                    }
                    warn!(dir = %self.dir.display(), %reason, wal_bytes = self.wal.len(), "cannot seal the log's tail; it stays in memory and in the write-ahead log, retried at the next checkpoint");
                }
            }
        }
        if !self.pending_accepts.is_empty() {
            let mut batches = Batches::default();
            for (slot, entry) in &self.pending_accepts {
                batches.insert(&slot.to_be_bytes(), encode(entry)?);
            }
            batches.apply(&self.trees.accepted, "writing accepted entries")?;
            self.sled_accepts
                .extend(std::mem::take(&mut self.pending_accepts).into_keys());
        }
        if let Some(checkpoint) = sessions {
            self.trees
                .meta
                .insert(KEY_SESSIONS, encode(&checkpoint)?)
                .map_err(|e| sled_error("writing the session checkpoint", e))?;
        }
        self.trees
            .meta
            .insert(KEY_APPLIED_END, encode(&upto)?)
            .map_err(|e| sled_error("writing the applied log's end", e))?;
        self.sync()?;
        if self.tail.len() == 0 {
            self.wal.reset()?;
        }
        self.checkpoints += 1;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        if elapsed_ms >= CHECKPOINT_SLOW_MS {
            info!(
                elapsed_ms,
                sealed, wal_bytes, upto, "slow checkpoint (commits waited for it)"
            );
        } else {
            debug!(elapsed_ms, sealed, wal_bytes, upto, "checkpoint");
        }
        Ok(())
    }

    /// Applies `records`: applied entries to the tail (or, on the bulk path, to the open
    /// segment), the rest to sled; [`Mode::Flushed`] flushes sled when it was written to.
    /// Returns the new end of the applied log (also `self.decided_upto` from now on).
    fn apply(&mut self, records: &[Record], mode: Mode) -> Result<Slot, Error> {
        let extends = extends_by(records, self.decided_upto);
        let bulk = self.open.is_some();
        // Flushed is the bulk path (`write` opened the segment): applied entries go to the
        // open segment, never to the tail without the log.
        if bulk != (mode == Mode::Flushed) {
            return Err(Error::Sled {
                context: "applying a persist".to_string(),
                reason: format!(
                    "internal: mode {mode:?} with the open segment {}",
                    if bulk { "present" } else { "absent" }
                ),
            });
        }
        // Accepts to delete with the applied entries of the bulk run (usually none: an
        // acceptor accepts little above its prefix while it catches up).
        let mut accepts_present: std::collections::HashSet<Slot> = if bulk && extends > 0 {
            let (from, to) = (self.decided_upto, self.decided_upto + extends);
            self.sled_accepts.range(from..to).copied().collect()
        } else {
            Default::default()
        };
        let accepts = match mode {
            Mode::Logged => Accepts::Logged {
                pending: &mut self.pending_accepts,
                in_sled: &mut self.sled_accepts,
            },
            Mode::Flushed => Accepts::Sled(Some(&mut self.sled_accepts)),
        };
        let staged = Staged::new(
            &self.trees,
            self.promised,
            self.decided_upto,
            records,
            bulk.then_some(&mut accepts_present),
            accepts,
        )?;
        // The bulk run first, durable before sled sees anything of this call (sled may
        // flush on its own at any time: bulk.rs, crash argument 2).
        if let Some(open) = &mut self.open {
            if !staged.bulk_sizes.is_empty() {
                let pause_ms = self.options.segment_pause_ms;
                let pause = move || pause_for(pause_ms);
                open.append(
                    &staged.bulk_raw,
                    &staged.bulk_sizes,
                    self.options.block_slots,
                    &pause,
                )?;
                debug_assert_eq!(open.end, staged.upto);
                self.log.set_open(open.view());
            }
        }
        let (promise, upto) = (staged.promise, staged.upto);
        let sled_dirty = staged.apply_sled(&self.trees, self.promised, &self.tail)?;
        if mode == Mode::Flushed && sled_dirty {
            self.sync()?;
        }
        self.promised = promise;
        self.decided_upto = upto;
        if self
            .open
            .as_ref()
            .is_some_and(|o| o.slots() >= self.options.segment_slots)
        {
            self.seal_open()?;
        }
        Ok(upto)
    }

    /// Starts the bulk path at the end of the applied log: the segment writer is paused
    /// and the sled tail sealed (so the open segment starts where the sealed chain ends),
    /// then the open segment file is created durably.
    fn start_open(&mut self) -> Result<(), Error> {
        let upto = self.decided_upto;
        self.writer
            .take_over(&self.log, &self.tail, upto)
            .map_err(|reason| Error::Sled {
                context: format!("sealing the tail below slot {upto} for a bulk write"),
                reason,
            })?;
        let dir = self.dir.join(SEGMENT_DIR);
        self.open = Some(bulk::OpenSegment::create(
            &dir,
            upto,
            self.options.compression,
        )?);
        debug!(first = upto, "bulk segment opened");
        Ok(())
    }

    /// Seals the open bulk segment (if any) into an ordinary segment, switches the
    /// readers to it, removes the open file and resumes the segment writer after it.
    fn seal_open(&mut self) -> Result<(), Error> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        if open.slots() > 0 {
            let pause_ms = self.options.segment_pause_ms;
            let pause = move || pause_for(pause_ms);
            let name = open.seal(&self.dir.join(SEGMENT_DIR), &pause)?;
            info!(file = %name.path.display(), "bulk segment sealed");
            self.log.seal_open(name);
            pause();
        }
        let end = open.end;
        open.remove();
        self.writer.resume(end);
        Ok(())
    }
}

impl Storage for SledStorage {
    /// The promise, the accepts above the applied log, the session checkpoint and the
    /// applied entries after it (module doc, "Restart").
    fn load(&self) -> Result<PersistentState, Error> {
        let mut state = load_state(&self.trees, &self.log, self.decided_upto)?;
        for (slot, entry) in self.pending_accepts.range(self.decided_upto..) {
            state.accepted.insert(*slot, entry.clone());
        }
        Ok(state)
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
        let before = self.decided_upto;
        match self.write(records) {
            Ok(upto) => {
                self.flushes += 1;
                debug_assert_eq!(upto, self.decided_upto);
                if upto != before {
                    self.log.set_durable_upto(upto);
                    self.writer.advance(upto);
                }
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

impl LogRead for SledStorage {
    fn read_log(
        &self,
        from_slot: Slot,
        entries_max: usize,
        bytes_max: usize,
    ) -> Result<Vec<crate::core::LogEntry>, Error> {
        self.log.read(from_slot, entries_max, bytes_max)
    }
}

/// Most operations in one sled batch: sled 0.34's memory grows with the size of the
/// batches it applies (a 4,000-record persist as one batch kept the process near
/// 800 MiB, 200-record ones near 60 MiB), so a persist is applied as several batches.
/// Atomicity is not needed: sled recovers a prefix of its log, which is all the crash
/// argument uses (a prefix of the applied entries is still contiguous).
const BATCH_OPS_MAX: usize = 256;

/// A sequence of sled batches of at most [`BATCH_OPS_MAX`] operations, applied in order.
#[derive(Default)]
struct Batches {
    done: Vec<sled::Batch>,
    current: sled::Batch,
    ops: usize,
}

impl Batches {
    fn is_empty(&self) -> bool {
        self.ops == 0 && self.done.is_empty()
    }

    fn next(&mut self) -> &mut sled::Batch {
        if self.ops == BATCH_OPS_MAX {
            self.done.push(std::mem::take(&mut self.current));
            self.ops = 0;
        }
        self.ops += 1;
        &mut self.current
    }

    fn insert(&mut self, key: &[u8], value: Vec<u8>) {
        self.next().insert(key, value);
    }

    fn remove(&mut self, key: &[u8]) {
        self.next().remove(key);
    }

    fn apply(self, tree: &sled::Tree, context: &str) -> Result<(), Error> {
        if self.is_empty() {
            return Ok(()); // sled logs even an empty batch (a write for its IO threads)
        }
        for batch in self.done.into_iter().chain([self.current]) {
            tree.apply_batch(batch)
                .map_err(|e| sled_error(context, e))?;
        }
        Ok(())
    }
}

/// How a call's records reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// They are in the write-ahead log already: sled is not flushed, accepts wait in
    /// memory for the next checkpoint.
    Logged,
    /// sled is flushed once they are applied.
    Flushed,
}

/// Where a call's accepts go.
enum Accepts<'a> {
    /// Into sled's `accepted` tree (with the set of its slots to keep up to date, if any).
    Sled(Option<&'a mut std::collections::BTreeSet<Slot>>),
    /// Into the pending accepts until the next checkpoint (the call is logged).
    Logged {
        pending: &'a mut BTreeMap<Slot, (Ballot, Value)>,
        in_sled: &'a mut std::collections::BTreeSet<Slot>,
    },
}

/// What one call's records change in sled, staged as batches in memory (plus, on the bulk
/// path, the encoded run for the open segment). [`Staged::apply_sled`] applies it.
struct Staged<'r> {
    /// The promise after these records (with accepted ballots folded in).
    promise: Option<Ballot>,
    /// The end of the applied log after these records.
    upto: Slot,
    accepted: Batches,
    /// The new applied entries for the tail: postcard `(dup, value)` each, from `decided_first`.
    decided: Vec<Vec<u8>>,
    decided_first: Slot,
    sessions: Option<(Slot, &'r [Session])>,
    identity: Option<(u64, Standing)>,
    peer_stores: Option<BTreeMap<Uid, (u64, bool)>>,
    /// On the bulk path: the run's entries, postcard (dup, value) each, and their sizes.
    bulk_raw: Vec<u8>,
    bulk_sizes: Vec<usize>,
}

impl<'r> Staged<'r> {
    /// Stages `records` over a store whose promise is `promised` and whose applied log
    /// ends at `upto`. `bulk`: the applied entries go to the open segment instead of the
    /// `decided` tree, and these are the slots with an accept to delete.
    fn new(
        trees: &Trees,
        promised: Option<Ballot>,
        upto: Slot,
        records: &'r [Record],
        mut bulk: Option<&mut std::collections::HashSet<Slot>>,
        mut accepts: Accepts<'_>,
    ) -> Result<Staged<'r>, Error> {
        let mut staged = Staged {
            promise: promised,
            upto,
            accepted: Batches::default(),
            decided: Vec::new(),
            decided_first: upto,
            sessions: None,
            identity: None,
            peer_stores: None,
            bulk_raw: Vec::new(),
            bulk_sizes: Vec::new(),
        };
        for record in records {
            match record {
                Record::Promise(ballot) => {
                    if staged.promise.is_none_or(|p| p < *ballot) {
                        staged.promise = Some(*ballot);
                    } else {
                        debug!(ballot = %ballot, promised = ?staged.promise, "ignoring a promise that is not higher");
                    }
                }
                Record::Accepted {
                    slot,
                    ballot,
                    value,
                } => {
                    if *slot < staged.upto {
                        debug!(slot, "ignoring an accept of an applied slot");
                        continue;
                    }
                    match &mut accepts {
                        Accepts::Sled(in_sled) => {
                            staged
                                .accepted
                                .insert(&slot.to_be_bytes(), encode(&(ballot, value))?);
                            if let Some(in_sled) = in_sled {
                                in_sled.insert(*slot);
                            }
                        }
                        Accepts::Logged { pending, .. } => {
                            pending.insert(*slot, (*ballot, value.clone()));
                        }
                    }
                    if let Some(present) = bulk.as_deref_mut() {
                        present.insert(*slot);
                    }
                    if staged.promise.is_none_or(|p| p < *ballot) {
                        staged.promise = Some(*ballot);
                    }
                }
                Record::Decided { slot, value, dup } => {
                    if *slot < staged.upto {
                        continue; // already stored
                    }
                    if *slot > staged.upto {
                        error!(
                            slot,
                            decided_upto = staged.upto,
                            "Decided record past the end of the applied log (a hole); dropped"
                        );
                        continue;
                    }
                    if let Some(present) = bulk.as_deref() {
                        let before = staged.bulk_raw.len();
                        staged.bulk_raw = postcard::to_extend(
                            &(*dup, value),
                            std::mem::take(&mut staged.bulk_raw),
                        )
                        .map_err(|e| Error::Encode {
                            what: "applied entry".to_string(),
                            reason: e.to_string(),
                        })?;
                        staged.bulk_sizes.push(staged.bulk_raw.len() - before);
                        if present.contains(slot) {
                            staged.accepted.remove(&slot.to_be_bytes());
                        }
                        if let Accepts::Sled(Some(in_sled)) = &mut accepts {
                            in_sled.remove(slot);
                        }
                    } else {
                        let entry =
                            postcard::to_stdvec(&(*dup, value)).map_err(|e| Error::Encode {
                                what: "applied entry".to_string(),
                                reason: e.to_string(),
                            })?;
                        staged.decided.push(entry);
                        match &mut accepts {
                            Accepts::Sled(in_sled) => {
                                staged.accepted.remove(&slot.to_be_bytes());
                                if let Some(in_sled) = in_sled {
                                    in_sled.remove(slot);
                                }
                            }
                            Accepts::Logged { pending, in_sled } => {
                                pending.remove(slot);
                                if in_sled.remove(slot) {
                                    staged.accepted.remove(&slot.to_be_bytes());
                                }
                            }
                        }
                    }
                    staged.upto += 1;
                }
                Record::SessionsCheckpoint {
                    upto: at,
                    sessions: table,
                } => {
                    if *at > staged.upto {
                        error!(
                            at,
                            decided_upto = staged.upto,
                            "session checkpoint past the applied log; dropped"
                        );
                        continue;
                    }
                    staged.sessions = Some((*at, table));
                }
                Record::Identity { store, standing } => staged.identity = Some((*store, *standing)),
                Record::PeerStore {
                    uid,
                    store,
                    replaced,
                } => {
                    if staged.peer_stores.is_none() {
                        staged.peer_stores = Some(
                            trees
                                .meta_value::<Vec<(Uid, u64, bool)>>(KEY_PEER_STORES)?
                                .unwrap_or_default()
                                .into_iter()
                                .map(|(u, s, r)| (u, (s, r)))
                                .collect(),
                        );
                    }
                    if let Some(map) = staged.peer_stores.as_mut() {
                        map.insert(*uid, (*store, *replaced));
                    }
                }
            }
        }
        Ok(staged)
    }

    /// Applies the staged writes (not the bulk run): the new applied entries to `tail`,
    /// the rest to sled in the crash order of the module doc, without flushing. Returns
    /// whether sled was written to at all.
    fn apply_sled(
        self,
        trees: &Trees,
        promised: Option<Ballot>,
        tail: &Tail,
    ) -> Result<bool, Error> {
        let sled_dirty = self.promise != promised
            || self.sessions.is_some()
            || !self.accepted.is_empty()
            || self.identity.is_some()
            || self.peer_stores.is_some();
        // Store ids go first: a Registered or Promise sent after this flush vouches for
        // them (one meta key each, rewritten whole: a few bytes per replica).
        if let Some(identity) = self.identity {
            trees
                .meta
                .insert(KEY_IDENTITY, encode(&identity)?)
                .map_err(|e| sled_error("writing the store identity", e))?;
        }
        if let Some(map) = self.peer_stores {
            let list: Vec<(Uid, u64, bool)> =
                map.into_iter().map(|(u, (s, r))| (u, s, r)).collect();
            trees
                .meta
                .insert(KEY_PEER_STORES, encode(&list)?)
                .map_err(|e| sled_error("writing peer store ids", e))?;
        }
        // The order is the crash order (module doc).
        if self.promise != promised {
            if let Some(ballot) = self.promise {
                trees
                    .meta
                    .insert(KEY_PROMISED, encode(&ballot)?)
                    .map_err(|e| sled_error("writing the promise", e))?;
            }
        }
        if !tail.extend(self.decided_first, self.decided) {
            return Err(Error::Sled {
                context: "applying a persist".to_string(),
                reason: format!(
                    "internal: applied entries from slot {} do not continue the tail",
                    self.decided_first
                ),
            });
        }
        if let Some(checkpoint) = self.sessions {
            trees
                .meta
                .insert(KEY_SESSIONS, encode(&checkpoint)?)
                .map_err(|e| sled_error("writing the session checkpoint", e))?;
        }
        self.accepted
            .apply(&trees.accepted, "writing accepted entries")?;
        Ok(sled_dirty)
    }
}

/// How many entries `records` append to an applied log that ends at `upto` (Decided
/// records of slots `upto, upto + 1, ...`; others are dropped by `write` anyway).
fn extends_by(records: &[Record], upto: Slot) -> u64 {
    let mut next = upto;
    for record in records {
        if let Record::Decided { slot, .. } = record {
            if *slot == next {
                next += 1;
            }
        }
    }
    next - upto
}

/// The crash tests' pause between the steps of writing a segment.
fn pause_for(ms: u64) {
    if ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Open bulk segments a crash (or a stop) left behind (`bulk.rs`, crash argument 3): one
/// that starts below the end of the sealed chain was sealed already and is removed; one
/// that starts at its end is read back (its checked prefix) and sealed; one past it is a
/// gap.
fn recover_open_segments(
    trees: &Trees,
    segment_dir: &Path,
    options: StoreOptions,
) -> Result<(), Error> {
    let open = bulk::list_open(segment_dir)?;
    if open.is_empty() {
        return Ok(());
    }
    let mut chain_end = segment::list_segments(segment_dir)?
        .last()
        .map_or(0, |s| s.end);
    for (first, path) in open {
        if first < chain_end {
            fs::remove_file(&path)
                .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
            continue;
        }
        if first > chain_end {
            return Err(Error::Corrupt {
                tree: format!("open segment {}", path.display()),
                key: slot_name(chain_end),
                reason: format!(
                    "the sealed segments end at slot {chain_end}, this file starts at {first}"
                ),
            });
        }
        if let Some(item) = trees.decided.range(first.to_be_bytes()..).next() {
            let (key, _) = item.map_err(|e| sled_error("reading tree `decided`", e))?;
            return Err(Error::Corrupt {
                tree: TREE_DECIDED.to_string(),
                key: slot_name(decode_slot(TREE_DECIDED, &key)?),
                reason: format!(
                    "in sled while the open segment {} from slot {first} exists",
                    path.display()
                ),
            });
        }
        let open = bulk::recover(&path, first, options.compression)?;
        if open.slots() > 0 {
            let name = open.seal(segment_dir, &|| {})?;
            info!(file = %name.path.display(), "open bulk segment recovered and sealed");
            chain_end = name.end;
        }
        open.remove();
    }
    Ok(())
}

/// Reads the slots `from..upto` of sled's `decided` tree (a store from before the tail
/// moved to memory; checking every crc) into `tail`; returns `upto`, or `from` if there
/// are none.
fn read_legacy_tail(trees: &Trees, from: Slot, upto: Slot, tail: &Tail) -> Result<Slot, Error> {
    let mut entries = Vec::new();
    let mut next = from;
    for item in trees.decided.range(from.to_be_bytes()..upto.to_be_bytes()) {
        let (key, bytes) = item.map_err(|e| sled_error("reading tree `decided`", e))?;
        let slot = decode_slot(TREE_DECIDED, &key)?;
        if slot != next {
            return Err(Error::Corrupt {
                tree: TREE_DECIDED.to_string(),
                key: slot_name(next),
                reason: format!("missing from the sled tail (next key is slot {slot})"),
            });
        }
        entries.push(codec::check_crc(TREE_DECIDED, slot, &bytes)?.to_vec());
        next += 1;
    }
    if next != upto {
        return Err(Error::Corrupt {
            tree: TREE_DECIDED.to_string(),
            key: slot_name(next),
            reason: format!("the sled tail ends before slot {upto}"),
        });
    }
    // The tail is new and empty here.
    let _ = tail.extend(from, entries);
    Ok(next)
}

/// The applied log, as found, ends at `end`, yet the write-ahead log goes on at `next`.
fn missing_slots(end: Slot, next: Slot) -> Error {
    Error::Corrupt {
        tree: "segments".to_string(),
        key: slot_name(end),
        reason: format!(
            "the applied log ends at slot {end} but the write-ahead log continues it at slot {next} (a segment file missing?)"
        ),
    }
}

/// The applied log, as found (segments, tail and write-ahead log), must reach the end
/// recorded at the last checkpoint.
fn check_applied_end(trees: &Trees, decided_upto: Slot) -> Result<(), Error> {
    match trees.meta_value::<Slot>(KEY_APPLIED_END)? {
        Some(end) if end > decided_upto => Err(Error::Corrupt {
            tree: "segments".to_string(),
            key: slot_name(decided_upto),
            reason: format!(
                "the applied log ends at slot {decided_upto}, the last checkpoint recorded {end} (a segment file missing?)"
            ),
        }),
        _ => Ok(()),
    }
}

/// What `load` returns, for a read-write or an offline store.
fn load_state(
    trees: &Trees,
    log: &LogShared,
    decided_upto: Slot,
) -> Result<PersistentState, Error> {
    let promised = trees.meta_value::<Ballot>(KEY_PROMISED)?;
    let accepted: BTreeMap<Slot, (Ballot, Value)> =
        read_range(&trees.accepted, TREE_ACCEPTED, decided_upto)?
            .into_iter()
            .collect();
    let (sessions_upto, sessions) = trees
        .meta_value::<(Slot, Vec<Session>)>(KEY_SESSIONS)?
        .unwrap_or_default();
    if sessions_upto > decided_upto {
        return Err(Error::Corrupt {
            tree: TREE_META.to_string(),
            key: KEY_SESSIONS.to_string(),
            reason: format!(
                "a checkpoint at slot {sessions_upto}, past the applied log's end {decided_upto}"
            ),
        });
    }
    // The replay needs slot, kind and request id only: bodies are dropped as the tail is
    // read (up to 65,536 entries of up to 64 KiB each would not fit in memory).
    let mut tail: Vec<crate::core::LogEntry> = Vec::new();
    loop {
        let next = sessions_upto + tail.len() as u64;
        let page = log.read(next, 4096, 4 * 1024 * 1024)?;
        if page.is_empty() {
            break;
        }
        tail.extend(page.into_iter().map(|mut e| {
            e.body = String::new();
            e
        }));
    }
    let expected = decided_upto - sessions_upto;
    if tail.len() as u64 != expected {
        return Err(Error::Corrupt {
            tree: TREE_DECIDED.to_string(),
            key: slot_name(sessions_upto + tail.len() as u64),
            reason: format!(
                "read {} applied entries after the session checkpoint, expected {expected}",
                tail.len()
            ),
        });
    }
    let identity = trees.meta_value::<(u64, Standing)>(KEY_IDENTITY)?;
    let peer_stores = trees
        .meta_value::<Vec<(Uid, u64, bool)>>(KEY_PEER_STORES)?
        .unwrap_or_default();
    Ok(PersistentState {
        identity,
        peer_stores,
        promised,
        accepted,
        decided_upto,
        sessions,
        sessions_upto,
        tail,
    })
}

/// The segment chain (by name) and the end of the applied log: the sled tail must start
/// at or below the chain's end.
fn locate(trees: &Trees, segment_dir: &Path) -> Result<(Vec<SegmentName>, Slot), Error> {
    let segments = segment::list_segments(segment_dir)?;
    let segments_end = segments.last().map_or(0, |s| s.end);
    let key = |kv: Option<(sled::IVec, sled::IVec)>| -> Result<Option<Slot>, Error> {
        kv.map(|(k, _)| decode_slot(TREE_DECIDED, &k)).transpose()
    };
    let first = key(trees
        .decided
        .first()
        .map_err(|e| sled_error("reading tree `decided`", e))?)?;
    let last = key(trees
        .decided
        .last()
        .map_err(|e| sled_error("reading tree `decided`", e))?)?;
    let decided_upto = match (first, last) {
        (Some(first), Some(last)) => {
            if first > segments_end {
                return Err(Error::Corrupt {
                    tree: TREE_DECIDED.to_string(),
                    key: slot_name(segments_end),
                    reason: format!(
                        "slots {segments_end}..{first} are neither in a segment nor in sled"
                    ),
                });
            }
            segments_end.max(last + 1)
        }
        _ => segments_end,
    };
    Ok((segments, decided_upto))
}

/// Removes every key of a slot tree below `end`; returns how many.
fn remove_below(tree: &sled::Tree, name: &str, end: Slot) -> Result<usize, Error> {
    let mut batch = sled::Batch::default();
    let mut n = 0;
    for item in tree.range(..end.to_be_bytes()) {
        let (key, _) = item.map_err(|e| sled_error(&format!("reading tree `{name}`"), e))?;
        batch.remove(key);
        n += 1;
    }
    if n > 0 {
        tree.apply_batch(batch)
            .map_err(|e| sled_error(&format!("cleaning tree `{name}`"), e))?;
    }
    Ok(n)
}

/// Reads the `slot -> T` entries of slots `from..`, in slot order, checking keys and
/// checksums.
fn read_range<T: DeserializeOwned>(
    tree: &sled::Tree,
    name: &str,
    from: Slot,
) -> Result<Vec<(Slot, T)>, Error> {
    let mut out = Vec::new();
    for item in tree.range(from.to_be_bytes()..) {
        let (key, bytes) = item.map_err(|e| sled_error(&format!("reading tree `{name}`"), e))?;
        let slot = decode_slot(name, &key)?;
        out.push((slot, decode(name, &slot_name(slot), &bytes)?));
    }
    Ok(out)
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
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
    fn open(dir: &Path, cache_bytes: u64) -> Result<Trees, Error> {
        Trees::from_db(dir, open_db(dir, cache_bytes)?)
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

    /// `None` on a fresh store (no uid and no cluster id recorded). Any format but
    /// [`FORMAT_VERSION`] is refused (a store without a `format` key is version 1).
    fn read_meta(&self) -> Result<Option<StoreMeta>, Error> {
        let uid = self.meta_value::<Uid>(KEY_UID)?;
        let cluster_id = self.meta_value::<u64>(KEY_CLUSTER_ID)?;
        let format = self.meta_value::<u32>(KEY_FORMAT)?;
        if format.is_some() || uid.is_some() || cluster_id.is_some() {
            let found = format.unwrap_or(1);
            if found != FORMAT_VERSION {
                return Err(Error::UnsupportedFormat {
                    path: self.dir.clone(),
                    found,
                    supported: FORMAT_VERSION,
                });
            }
        }
        match (uid, cluster_id) {
            (Some(uid), Some(cluster_id)) => Ok(Some(StoreMeta { uid, cluster_id })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(missing_meta(KEY_CLUSTER_ID)),
            (None, Some(_)) => Err(missing_meta(KEY_UID)),
        }
    }

    /// Writes uid, cluster id and format version into the meta tree of a fresh store.
    fn create_meta(&self, meta: StoreMeta) -> Result<(), Error> {
        if !self.accepted.is_empty() || !self.decided.is_empty() {
            return Err(Error::Corrupt {
                tree: TREE_META.to_string(),
                key: KEY_UID.to_string(),
                reason: "missing, but the accepted/decided trees hold entries".to_string(),
            });
        }
        let mut batch = sled::Batch::default();
        batch.insert(KEY_FORMAT, encode(&FORMAT_VERSION)?);
        batch.insert(KEY_UID, encode(&meta.uid)?);
        batch.insert(KEY_CLUSTER_ID, encode(&meta.cluster_id)?);
        self.meta
            .apply_batch(batch)
            .map_err(|e| sled_error("writing meta of a fresh store", e))
    }
}

/// How long `open_db` keeps retrying a store whose lock is held. sled 0.34 releases its
/// file lock only when its last background thread lets go of the store, shortly after the
/// `Db` is dropped, so a reopen in the same process can briefly see its own old lock.
const LOCK_WAIT_MS: u64 = 1000;
const LOCK_RETRY_MS: u64 = 10;

/// Opens sled in `dir` with a page cache of `cache_bytes`, turning "another process holds
/// the lock" into a clear error.
fn open_db(dir: &Path, cache_bytes: u64) -> Result<sled::Db, Error> {
    let started = std::time::Instant::now();
    loop {
        match sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .open()
        {
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

//! The sled 0.34 backend of [`Storage`]: what a `paxosd` replica keeps on disk.
//!
//! This module owns the on-disk layout of one replica's store directory:
//! one sled `Db` with three trees,
//! - `meta`: `format` (u32), `uid` ([`Uid`]), `cluster_id` (u64), `promised` ([`Ballot`]);
//! - `accepted`: slot -> (ballot, value) of the latest accept at that slot;
//! - `decided`: slot -> decided value.
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
//! Deliberately not here: `flush_async` (deadlocks in sled 0.34 under concurrent
//! awaiters), compaction of accepted entries below the decided prefix, a persisted client
//! dedupe table.

use super::{PersistentState, Storage};
use crate::core::{Ballot, Record, Slot, Uid, Value};
use crate::Error;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use tracing::{debug, error, info};

/// The layout version written in `meta` under `format`; `open` refuses any other.
pub const FORMAT_VERSION: u32 = 1;

const TREE_META: &str = "meta";
const TREE_ACCEPTED: &str = "accepted";
const TREE_DECIDED: &str = "decided";

const KEY_FORMAT: &str = "format";
const KEY_UID: &str = "uid";
const KEY_CLUSTER_ID: &str = "cluster_id";
const KEY_PROMISED: &str = "promised";

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

/// A replica's durable state in a sled store directory. See the module doc for the layout
/// and for when records become durable.
pub struct SledStorage {
    dir: PathBuf,
    meta: StoreMeta,
    trees: Trees,
    /// sled's data file, opened a second time so `persist` can `sync_data` it.
    data_file: File,
    blobs: BlobSync,
    /// The durable promise (mirrors `meta/promised`), so a lower one is never written.
    promised: Option<Ballot>,
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
    pub fn open(dir: &Path, uid: Uid, cluster_id: u64) -> Result<SledStorage, Error> {
        fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating store directory {}", dir.display()), e))?;
        let trees = Trees::open(dir)?;
        let expected = StoreMeta { uid, cluster_id };
        let data_file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join(SLED_DATA_FILE))
            .map_err(|e| Error::io(format!("opening sled data file in {}", dir.display()), e))?;
        let mut storage = SledStorage {
            dir: dir.to_path_buf(),
            meta: expected,
            trees,
            data_file,
            blobs: BlobSync::new(dir.join(SLED_BLOBS_DIR)),
            promised: None,
            poisoned: None,
            flushes: 0,
        };
        match storage.trees.read_meta()? {
            Some(found) if found == expected => {
                storage.promised = storage.trees.read_promised()?;
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
        if let Some(ballot) = promise {
            let mut meta = sled::Batch::default();
            meta.insert(KEY_PROMISED, encode(&ballot)?);
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
        Ok(())
    }
}

impl Storage for SledStorage {
    fn load(&self) -> Result<PersistentState, Error> {
        self.trees.load_state()
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
    let state = trees.load_state()?;
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
            if format != FORMAT_VERSION {
                return Err(Error::Storage(format!(
                    "store format version {format} is not supported (this build reads version {FORMAT_VERSION})"
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

    /// Reads everything back. The two slot trees are walked on two threads: a reopen is
    /// dominated by sled paging leaf nodes in and walking them (about 1 µs an entry).
    fn load_state(&self) -> Result<PersistentState, Error> {
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
    let mut out = Vec::new();
    for item in tree.iter() {
        let (key, bytes) = item.map_err(|e| sled_error(&format!("reading tree `{name}`"), e))?;
        let slot = decode_slot(name, &key)?;
        let value = decode(name, &slot_name(slot), &bytes)?;
        out.push((slot, value));
    }
    Ok(out.into_iter().collect())
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

/// Checks the crc32 and decodes; any failure is [`Error::Corrupt`] naming `tree` and `key`.
fn decode<T: DeserializeOwned>(tree: &str, key: &str, bytes: &[u8]) -> Result<T, Error> {
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
    fn storage_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<SledStorage>();
    }
}

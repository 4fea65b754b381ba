//! Checkpoint segments: an immutable, checksummed flat-file cache of the decided log, so a
//! reopen reads a few large files instead of making sled page in every node of its trees.
//!
//! # What a segment is
//!
//! `<store dir>/checkpoints/decided-<first>-<end>.seg` holds the decided values of the
//! contiguous slots `first..end` (every one of them decided):
//!
//! ```text
//! magic  b"PAXOSSEG"   8 bytes
//! version u32 BE       (SEGMENT_VERSION)
//! first   u64 BE
//! end     u64 BE
//! count   u64 BE       (= end - first)
//! count × postcard (slot, value), slots first, first+1, .., end-1 in order
//! crc32   u32 BE       of every byte before it
//! ```
//!
//! # When segments are written
//!
//! The backend tracks the contiguous decided prefix (learned by `load`, advanced by the
//! `Decided` records of each successful `persist`). Once the prefix passes the end of the
//! next segment, one background thread (never `persist` itself, never more than one)
//! reads those slots back from the sled `decided` tree, checking every crc32, writes
//! `<name>.tmp`, fsyncs it, renames it to `<name>` and fsyncs the directory. Any failure
//! there is a `warn!` and simply means no segment (segment writing stops until the next
//! restart); it never fails nor poisons the store.
//!
//! # Why they are safe
//!
//! sled stays the source of truth: nothing is ever removed from sled because of a segment.
//! A segment caches decided values only, which never change (invariant 2 of the backend),
//! and only slots already made durable by a returned `persist` (or found by `load`) are
//! ever written, so a segment can never hold a value sled could lose or replace. The rename
//! makes a segment appear whole or not at all; a stale `.tmp` is ignored (and removed at the
//! next read-write open). A segment that fails any check (crc, header, name, sequence,
//! decoding) is reported with `warn!` naming the file and ignored from that point on: `load`
//! reads those slots from sled instead.

use super::codec::{check_crc, decode_slot};
use super::{sled_error, TREE_DECIDED};
use crate::core::{Slot, Value};
use crate::Error;
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use tracing::{debug, info, warn};

/// The checkpoint directory inside a store directory.
pub const CHECKPOINT_DIR: &str = "checkpoints";
/// Decided slots per segment unless [`super::StoreOptions`] says otherwise.
pub const DEFAULT_SEGMENT_SLOTS: u64 = 65_536;

const MAGIC: &[u8; 8] = b"PAXOSSEG";
const SEGMENT_VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 8 + 8 + 8;
const CRC_LEN: usize = 4;
const SEGMENT_PREFIX: &str = "decided-";
const SEGMENT_SUFFIX: &str = ".seg";
const TMP_SUFFIX: &str = ".tmp";
/// How often (in entries) the writer checks whether the store is being dropped.
const STOP_CHECK_EVERY: u64 = 1024;

/// One segment file found in the checkpoint directory (named, not yet verified).
#[derive(Clone, Debug)]
pub(super) struct SegmentFile {
    pub first: Slot,
    pub end: Slot,
    pub path: PathBuf,
}

pub(super) fn segment_name(first: Slot, end: Slot) -> String {
    format!("{SEGMENT_PREFIX}{first}-{end}{SEGMENT_SUFFIX}")
}

fn parse_segment_name(name: &str) -> Option<(Slot, Slot)> {
    let range = name
        .strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(SEGMENT_SUFFIX)?;
    let (first, end) = range.split_once('-')?;
    let (first, end) = (first.parse().ok()?, end.parse().ok()?);
    (first < end).then_some((first, end))
}

/// The segment files that chain from slot 0 by their names (`first` of each is the `end`
/// of the one before), in slot order. A missing directory is no segments; anything else
/// unexpected is a warning and cuts the chain there. Temp files are skipped.
pub(super) fn list_segments(dir: &Path) -> Vec<SegmentFile> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            warn!(dir = %dir.display(), error = %e, "cannot list checkpoint segments; reading sled only");
            return Vec::new();
        }
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "cannot list checkpoint segments; reading sled only");
                return Vec::new();
            }
        };
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(TMP_SUFFIX) {
            debug!(file = %entry.path().display(), "ignoring a temporary segment file");
            continue;
        }
        match parse_segment_name(name) {
            Some((first, end)) => found.push(SegmentFile {
                first,
                end,
                path: entry.path(),
            }),
            None => {
                warn!(file = %entry.path().display(), "ignoring an unexpected file in the checkpoint directory")
            }
        }
    }
    found.sort_by_key(|s| (s.first, s.end));
    let mut chain = Vec::new();
    let mut next = 0;
    for segment in found {
        if segment.first < next {
            // An overlapping leftover (segments of another size): a chain is already
            // running past its start, so it is never read.
            debug!(file = %segment.path.display(), "ignoring an overlapping segment");
            continue;
        }
        if segment.first > next {
            warn!(
                file = %segment.path.display(),
                expected_first = next,
                "checkpoint segment out of sequence; it and the segments after it are ignored"
            );
            break;
        }
        next = segment.end;
        chain.push(segment);
    }
    chain
}

/// Reads and fully verifies one segment; `Err` is the reason it is unusable.
pub(super) fn read_segment(segment: &SegmentFile) -> Result<Vec<(Slot, Value)>, String> {
    let bytes = fs::read(&segment.path).map_err(|e| format!("reading it: {e}"))?;
    if bytes.len() < HEADER_LEN + CRC_LEN {
        return Err(format!(
            "{} bytes, shorter than a header and checksum",
            bytes.len()
        ));
    }
    let (body, crc) = bytes.split_at(bytes.len() - CRC_LEN);
    let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let actual = crc32fast::hash(body);
    if stored != actual {
        return Err(format!(
            "crc32 mismatch: stored {stored:08x}, computed {actual:08x}"
        ));
    }
    let (header, mut entries) = body.split_at(HEADER_LEN);
    if &header[..8] != MAGIC {
        return Err("bad magic".to_string());
    }
    let u32_at =
        |i: usize| u32::from_be_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&header[i..i + 8]);
        u64::from_be_bytes(b)
    };
    let (version, first, end, count) = (u32_at(8), u64_at(12), u64_at(20), u64_at(28));
    if version != SEGMENT_VERSION {
        return Err(format!(
            "segment format version {version}, this build reads {SEGMENT_VERSION}"
        ));
    }
    if first != segment.first || end != segment.end || count != end.saturating_sub(first) {
        return Err(format!(
            "header says slots {first}..{end} ({count} entries), the file name {}..{}",
            segment.first, segment.end
        ));
    }
    let capacity = usize::try_from(count)
        .map_err(|_| format!("{count} entries"))?
        .min(entries.len());
    let mut out = Vec::with_capacity(capacity);
    for expected in first..end {
        let ((slot, value), rest): ((Slot, Value), &[u8]) = postcard::take_from_bytes(entries)
            .map_err(|e| format!("decoding slot {expected}: {e}"))?;
        if slot != expected {
            return Err(format!("holds slot {slot} where slot {expected} belongs"));
        }
        out.push((slot, value));
        entries = rest;
    }
    if !entries.is_empty() {
        return Err(format!(
            "{} trailing bytes after the entries",
            entries.len()
        ));
    }
    Ok(out)
}

/// Removes stale `.tmp` files left by a writer that was killed (read-write opens only).
pub(super) fn remove_temp_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.to_str().is_some_and(|p| p.ends_with(TMP_SUFFIX)) {
            match fs::remove_file(&path) {
                Ok(()) => debug!(file = %path.display(), "removed a stale temporary segment"),
                Err(e) => {
                    warn!(file = %path.display(), error = %e, "cannot remove a stale temporary segment")
                }
            }
        }
    }
}

/// Why a segment was not written.
enum WriteError {
    /// The store is being dropped.
    Stopped,
    Failed(String),
}

impl From<Error> for WriteError {
    fn from(e: Error) -> WriteError {
        WriteError::Failed(e.to_string())
    }
}

/// Writes segment `first..end` from the sled `decided` tree: temp file, fsync, rename,
/// directory fsync.
fn write_segment(
    decided: &sled::Tree,
    dir: &Path,
    first: Slot,
    end: Slot,
    stop: &AtomicBool,
) -> Result<PathBuf, WriteError> {
    let mut buf = Vec::with_capacity(HEADER_LEN + 128 * (end - first) as usize);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&SEGMENT_VERSION.to_be_bytes());
    buf.extend_from_slice(&first.to_be_bytes());
    buf.extend_from_slice(&end.to_be_bytes());
    buf.extend_from_slice(&(end - first).to_be_bytes());
    let mut expected = first;
    for item in decided.range(first.to_be_bytes()..end.to_be_bytes()) {
        if (expected - first).is_multiple_of(STOP_CHECK_EVERY) && stop.load(Ordering::Relaxed) {
            return Err(WriteError::Stopped);
        }
        let (key, bytes) = item.map_err(|e| sled_error("reading tree `decided`", e))?;
        let slot = decode_slot(TREE_DECIDED, &key)?;
        if slot != expected {
            return Err(WriteError::Failed(format!(
                "slot {expected} is not decided"
            )));
        }
        // The sled value is `crc32 | postcard(value)`; postcard of `(slot, value)` is
        // postcard(slot) followed by postcard(value), so the checked bytes are reused.
        let body = check_crc(TREE_DECIDED, slot, &bytes)?;
        buf = postcard::to_extend(&slot, buf)
            .map_err(|e| WriteError::Failed(format!("encoding slot {slot}: {e}")))?;
        buf.extend_from_slice(body);
        expected += 1;
    }
    if expected != end {
        return Err(WriteError::Failed(format!(
            "slot {expected} is not decided"
        )));
    }
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_be_bytes());

    let name = segment_name(first, end);
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let written = File::create(&tmp)
        .and_then(|mut file| {
            file.write_all(&buf)?;
            file.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, &path))
        .and_then(|()| File::open(dir)?.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(WriteError::Failed(format!(
            "writing {}: {e}",
            path.display()
        )));
    }
    Ok(path)
}

/// The contiguous decided prefix, as far as this process knows it.
#[derive(Debug, Default)]
struct Prefix {
    /// `false` until `load` (or a fresh store) told us what is decided: records alone
    /// cannot say whether slots below them were decided in an earlier run.
    known: bool,
    /// Every slot below this is durably decided.
    upto: Slot,
    /// Durably decided slots above `upto`.
    above: BTreeSet<Slot>,
}

impl Prefix {
    fn add(&mut self, slot: Slot) {
        if slot < self.upto {
            return;
        }
        if slot > self.upto {
            self.above.insert(slot);
            return;
        }
        self.upto += 1;
        while self.above.first() == Some(&self.upto) {
            self.above.pop_first();
            self.upto += 1;
        }
    }
}

#[derive(Debug, Default)]
struct WriterState {
    /// Segments chain from 0 up to here (verified by `load`, or written since).
    written_end: Slot,
    /// The durable decided prefix: segments ending at or below it may be written.
    target: Slot,
    /// A segment is being written.
    busy: bool,
    /// A write failed: no more segments in this process.
    failed: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<WriterState>,
    changed: Condvar,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, WriterState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Tracks the decided prefix and runs the background segment writer of one read-write
/// store. Dropping it stops the writer (an unfinished segment is abandoned) and joins it.
pub(super) struct Checkpointer {
    dir: PathBuf,
    /// 0: never write segments (existing ones are still read).
    segment_slots: u64,
    decided: sled::Tree,
    prefix: Mutex<Prefix>,
    shared: Arc<Shared>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer")
            .field("dir", &self.dir)
            .field("segment_slots", &self.segment_slots)
            .field("state", &*self.shared.lock())
            .finish()
    }
}

impl Checkpointer {
    /// `dir` must exist unless `segment_slots` is 0. `fresh`: the decided tree is empty, so
    /// the prefix (0) is known without a `load`.
    pub fn new(dir: PathBuf, segment_slots: u64, decided: sled::Tree, fresh: bool) -> Self {
        Checkpointer {
            dir,
            segment_slots,
            decided,
            prefix: Mutex::new(Prefix {
                known: fresh,
                ..Prefix::default()
            }),
            shared: Arc::new(Shared::default()),
            worker: Mutex::new(None),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock_prefix(&self) -> MutexGuard<'_, Prefix> {
        self.prefix.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// After a load: `decided` is the whole decided state, segments chain up to
    /// `segments_end`.
    pub fn learn(&self, decided: &std::collections::BTreeMap<Slot, Value>, segments_end: Slot) {
        let mut prefix = self.lock_prefix();
        let n = decided.len() as u64;
        let all_contiguous = n == 0 || decided.keys().next_back() == Some(&(n - 1));
        let upto = if all_contiguous {
            n
        } else {
            decided
                .keys()
                .zip(0..)
                .take_while(|(slot, i)| **slot == *i)
                .count() as u64
        };
        *prefix = Prefix {
            known: true,
            upto,
            above: decided.range(upto..).map(|(slot, _)| *slot).collect(),
        };
        drop(prefix);
        let mut state = self.shared.lock();
        state.written_end = segments_end;
        state.target = upto;
        debug!(upto, segments_end, "checkpoint: learned the decided prefix");
        drop(state);
        self.kick();
    }

    /// After a successful `persist`: these slots are now durably decided.
    pub fn decided(&self, slots: impl Iterator<Item = Slot>) {
        let upto = {
            let mut prefix = self.lock_prefix();
            if !prefix.known {
                return;
            }
            let before = prefix.upto;
            slots.for_each(|slot| prefix.add(slot));
            if prefix.upto == before {
                return;
            }
            prefix.upto
        };
        self.shared.lock().target = upto;
        self.kick();
    }

    /// Wakes (or starts) the writer if a whole segment is ready.
    fn kick(&self) {
        if self.segment_slots == 0 {
            return;
        }
        {
            let state = self.shared.lock();
            if state.failed || state.written_end.saturating_add(self.segment_slots) > state.target {
                return;
            }
        }
        self.shared.changed.notify_all();
        let mut worker = self.worker.lock().unwrap_or_else(|p| p.into_inner());
        if worker.is_some() {
            return;
        }
        let (shared, decided, dir, slots) = (
            Arc::clone(&self.shared),
            self.decided.clone(),
            self.dir.clone(),
            self.segment_slots,
        );
        match std::thread::Builder::new()
            .name("checkpoint".to_string())
            .spawn(move || run_writer(&shared, &decided, &dir, slots))
        {
            Ok(handle) => *worker = Some(handle),
            Err(e) => {
                warn!(error = %e, "cannot start the checkpoint writer; no segments will be written");
                self.shared.lock().failed = true;
            }
        }
    }

    /// Blocks until the writer has written every segment the durable decided prefix
    /// covers (or gave up). Returns the end of the segment chain.
    pub fn wait(&self) -> Slot {
        // A writer is started (by `kick`, synchronously) whenever a segment is due, so
        // without one there is nothing to wait for.
        let started = self
            .worker
            .lock()
            .map(|w| w.is_some())
            .unwrap_or_else(|p| p.into_inner().is_some());
        let mut state = self.shared.lock();
        while started
            && !state.failed
            && (state.busy || state.written_end.saturating_add(self.segment_slots) <= state.target)
        {
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
        state.written_end
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Taking the lock orders the flag before a waiting writer's next check.
        drop(self.shared.lock());
        self.shared.changed.notify_all();
        let worker = self.worker.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(handle) = worker.take() {
            if handle.join().is_err() {
                warn!("the checkpoint writer panicked");
            }
        }
    }
}

fn run_writer(shared: &Shared, decided: &sled::Tree, dir: &Path, segment_slots: u64) {
    loop {
        let (first, end) = {
            let mut state = shared.lock();
            loop {
                if shared.stop.load(Ordering::Relaxed) || state.failed {
                    return;
                }
                if state.written_end.saturating_add(segment_slots) <= state.target {
                    break;
                }
                state = shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner());
            }
            state.busy = true;
            (state.written_end, state.written_end + segment_slots)
        };
        let result = write_segment(decided, dir, first, end, &shared.stop);
        let mut state = shared.lock();
        state.busy = false;
        match result {
            Ok(path) => {
                info!(file = %path.display(), "checkpoint segment written");
                // A load in between may have moved the chain end (e.g. back to a corrupt
                // segment, to rewrite it): its word wins.
                if state.written_end == first {
                    state.written_end = end;
                }
            }
            Err(WriteError::Stopped) => {
                debug!(
                    first,
                    end, "checkpoint segment abandoned: the store is closing"
                );
            }
            Err(WriteError::Failed(reason)) => {
                warn!(dir = %dir.display(), first, end, %reason, "checkpoint segment not written; no more segments until a restart");
                state.failed = true;
            }
        }
        drop(state);
        shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip_and_reject_junk() {
        assert_eq!(parse_segment_name(&segment_name(0, 16)), Some((0, 16)));
        assert_eq!(parse_segment_name("decided-16-16.seg"), None);
        assert_eq!(parse_segment_name("decided-0-16.seg.tmp"), None);
        assert_eq!(parse_segment_name("decided-x-16.seg"), None);
    }

    #[test]
    fn prefix_tracks_out_of_order_decisions() {
        let mut p = Prefix::default();
        for slot in [1, 3, 0, 0, 5] {
            p.add(slot);
        }
        assert_eq!(p.upto, 2);
        p.add(2);
        assert_eq!(p.upto, 4);
        assert_eq!(p.above.iter().copied().collect::<Vec<_>>(), vec![5]);
    }
}

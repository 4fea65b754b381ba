//! The snapshot file: a checksummed copy of a decided chat log (`paxosctl snapshot`), and
//! seeding a fresh sled store from one ([`restore`]). Pure of network: the writer takes
//! `(slot, value)` entries from whoever pages them in; the reader streams them back.
//!
//! # Format (version 1), all integers big-endian
//!
//! ```text
//! header   magic b"PAXOSNAP" | version u32 | has_cluster_id u8 | cluster_id u64
//!          | first_slot u64 | end_slot u64 | count u64 | crc32 u32 (of the header before it)
//! chunk*   b'C' | entries u32 | payload_len u32 | payload | crc32 u32 (of tag..payload)
//!          payload = `entries` × postcard (slot, Value), slots consecutive
//! trailer  b'T' | chunks u64 | count u64 | crc32 u32 (of every byte of the file before it)
//! ```
//!
//! The snapshot holds every slot of `first_slot..end_slot`, no-ops included (so that the
//! duplicate marking of the applied log, which depends on slots, stays the same), in
//! order: `count = end_slot - first_slot`. Chunks hold at most [`CHUNK_ENTRIES_MAX`]
//! entries and [`CHUNK_BYTES_MAX`] payload bytes, so reading needs bounded memory.
//!
//! Invariants (checked by [`SnapshotReader`] on every read, each failure an
//! [`Error::Snapshot`] naming the file, the byte offset and the chunk):
//! 1. Header, every chunk and the whole file carry a crc32 that matches.
//! 2. Slots run from `first_slot` up by one, with no gap, to `end_slot`.
//! 3. Nothing follows the trailer; the trailer's counts match what was read.
//!
//! [`SnapshotWriter`] writes `FILE.tmp`, fsyncs it, renames it to `FILE` and fsyncs the
//! directory: a crash leaves the old file or the new one, never half of one.
//!
//! [`restore`] reads the file twice: once to check all of it (nothing is written if any
//! check fails), then to write `Decided` records into a fresh store, a chunk per
//! `persist` (group commit), each with its applied kind (`dup`) computed by applying the
//! log to a [`Sessions`] table of [`SESSIONS_MAX`] sessions as the core does, and ends
//! with a `SessionsCheckpoint` of that table at the snapshot's end. The restored store holds a decided prefix, no accepts and a
//! promise of ballot (1, 0): it is not fresh, so no replica of the new cluster leads
//! (0, 0) without phase 1, and a replica started on a fresh store by mistake next to
//! restored ones cannot get its (0, 0) proposals accepted by them. The replicas elect a
//! leader as after any restart.
//!
//! Deliberately not here: snapshots of undecided accepts or promises (a snapshot is the
//! chat log, not a replica's state), compression, incremental snapshots.

use crate::core::{Ballot, Record, Sessions, Slot, Uid, Value, SESSIONS_MAX};
use crate::storage::sled_store::SledStorage;
use crate::storage::Storage;
use crate::Error;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// The version this build writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;
/// Most entries in one chunk.
pub const CHUNK_ENTRIES_MAX: usize = 4096;
/// Most payload bytes of one chunk (a writer closes a chunk once it passes 1 MiB; one
/// value is at most a frame, 8 MiB).
pub const CHUNK_BYTES_MAX: usize = 16 * 1024 * 1024;
/// A writer closes the current chunk once its payload reaches this size.
const CHUNK_BYTES_TARGET: usize = 1024 * 1024;

const MAGIC: &[u8; 8] = b"PAXOSNAP";
const HEADER_LEN: usize = 8 + 4 + 1 + 8 + 8 + 8 + 8 + 4;
const TAG_CHUNK: u8 = b'C';
const TAG_TRAILER: u8 = b'T';
/// The ballot a restored store is promised to (see the module doc).
const RESTORED_PROMISE: Ballot = Ballot { round: 1, uid: 0 };

/// What a snapshot's header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotHeader {
    pub version: u32,
    /// The cluster the log was saved from (`None`: not recorded).
    pub cluster_id: Option<u64>,
    pub first_slot: Slot,
    /// One past the last slot.
    pub end_slot: Slot,
    /// Entries (= `end_slot - first_slot`).
    pub count: u64,
}

/// What a whole, checked snapshot holds (`paxosctl snapshot status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotSummary {
    pub header: SnapshotHeader,
    pub chunks: u64,
    /// Entries that are chat messages (first copies and later duplicates alike).
    pub messages: u64,
    pub noops: u64,
    pub file_bytes: u64,
}

fn snapshot_error(path: &Path, offset: u64, reason: impl Into<String>) -> Error {
    Error::Snapshot {
        path: path.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

/// A `Write` that keeps a running crc32 and byte count of what went through it.
struct Crc<W> {
    inner: W,
    hasher: crc32fast::Hasher,
    bytes: u64,
}

impl<W> Crc<W> {
    fn new(inner: W) -> Self {
        Crc {
            inner,
            hasher: crc32fast::Hasher::new(),
            bytes: 0,
        }
    }
    fn crc(&self) -> u32 {
        self.hasher.clone().finalize()
    }
}

impl<W: Write> Write for Crc<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Crc<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Streams a snapshot to `FILE.tmp`; [`SnapshotWriter::finish`] renames it to `FILE`.
/// Dropped unfinished, it removes the temp file.
pub struct SnapshotWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<Crc<BufWriter<File>>>,
    header: SnapshotHeader,
    next_slot: Slot,
    chunk: Vec<u8>,
    chunk_entries: u32,
    chunks: u64,
}

impl SnapshotWriter {
    /// Starts a snapshot of slots `first_slot..end_slot` at `path`.
    pub fn create(
        path: &Path,
        cluster_id: Option<u64>,
        first_slot: Slot,
        end_slot: Slot,
    ) -> Result<SnapshotWriter, Error> {
        assert!(
            first_slot <= end_slot,
            "snapshot range {first_slot}..{end_slot}"
        );
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let file =
            File::create(&tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        let header = SnapshotHeader {
            version: SNAPSHOT_VERSION,
            cluster_id,
            first_slot,
            end_slot,
            count: end_slot - first_slot,
        };
        let mut writer = SnapshotWriter {
            path: path.to_path_buf(),
            tmp,
            out: Some(Crc::new(BufWriter::with_capacity(1 << 20, file))),
            header,
            next_slot: first_slot,
            chunk: Vec::new(),
            chunk_entries: 0,
            chunks: 0,
        };
        let bytes = encode_header(&header);
        writer.write_all(&bytes)?;
        Ok(writer)
    }

    /// The slot the next [`Self::push`] must carry.
    pub fn next_slot(&self) -> Slot {
        self.next_slot
    }

    /// Appends the entry of the next slot.
    pub fn push(&mut self, slot: Slot, value: &Value) -> Result<(), Error> {
        if slot != self.next_slot || slot >= self.header.end_slot {
            return Err(snapshot_error(
                &self.path,
                self.out.as_ref().map_or(0, |o| o.bytes),
                format!(
                    "slot {slot} does not continue the snapshot (next is {}, end {})",
                    self.next_slot, self.header.end_slot
                ),
            ));
        }
        self.chunk =
            postcard::to_extend(&(slot, value), std::mem::take(&mut self.chunk)).map_err(|e| {
                Error::Encode {
                    what: format!("snapshot entry at slot {slot}"),
                    reason: e.to_string(),
                }
            })?;
        self.chunk_entries += 1;
        self.next_slot += 1;
        if self.chunk_entries as usize >= CHUNK_ENTRIES_MAX
            || self.chunk.len() >= CHUNK_BYTES_TARGET
        {
            self.close_chunk()?;
        }
        Ok(())
    }

    /// Writes the trailer, syncs and renames the file into place; returns its size.
    pub fn finish(mut self) -> Result<u64, Error> {
        if self.next_slot != self.header.end_slot {
            return Err(snapshot_error(
                &self.path,
                0,
                format!(
                    "finished at slot {} before the end of the snapshot, {}",
                    self.next_slot, self.header.end_slot
                ),
            ));
        }
        self.close_chunk()?;
        let mut trailer = vec![TAG_TRAILER];
        trailer.extend_from_slice(&self.chunks.to_be_bytes());
        trailer.extend_from_slice(&self.header.count.to_be_bytes());
        self.write_all(&trailer)?;
        let Some(mut out) = self.out.take() else {
            unreachable!("a writer holds its file until finish");
        };
        let crc = out.crc();
        let io = |e| Error::io(format!("writing {}", self.tmp.display()), e);
        out.write_all(&crc.to_be_bytes()).map_err(io)?;
        let size = out.bytes;
        let file = out
            .inner
            .into_inner()
            .map_err(|e| Error::io(format!("writing {}", self.tmp.display()), e.into_error()))?;
        file.sync_all().map_err(io)?;
        drop(file);
        fs::rename(&self.tmp, &self.path).map_err(|e| {
            Error::io(
                format!("renaming {} to {}", self.tmp.display(), self.path.display()),
                e,
            )
        })?;
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))?;
        Ok(size)
    }

    fn close_chunk(&mut self) -> Result<(), Error> {
        if self.chunk_entries == 0 {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(9 + self.chunk.len() + 4);
        bytes.push(TAG_CHUNK);
        bytes.extend_from_slice(&self.chunk_entries.to_be_bytes());
        bytes.extend_from_slice(&(self.chunk.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&self.chunk);
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_be_bytes());
        self.write_all(&bytes)?;
        self.chunk.clear();
        self.chunk_entries = 0;
        self.chunks += 1;
        Ok(())
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let Some(out) = self.out.as_mut() else {
            unreachable!("a writer holds its file until finish");
        };
        out.write_all(bytes)
            .map_err(|e| Error::io(format!("writing {}", self.tmp.display()), e))
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

fn encode_header(h: &SnapshotHeader) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&h.version.to_be_bytes());
    out.push(u8::from(h.cluster_id.is_some()));
    out.extend_from_slice(&h.cluster_id.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&h.first_slot.to_be_bytes());
    out.extend_from_slice(&h.end_slot.to_be_bytes());
    out.extend_from_slice(&h.count.to_be_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Streams a snapshot back, chunk by chunk, checking everything (module doc).
pub struct SnapshotReader {
    path: PathBuf,
    input: Crc<BufReader<File>>,
    header: SnapshotHeader,
    next_slot: Slot,
    chunks: u64,
    done: bool,
}

impl SnapshotReader {
    /// Opens `path` and checks its header.
    pub fn open(path: &Path) -> Result<SnapshotReader, Error> {
        let file =
            File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let mut input = Crc::new(BufReader::with_capacity(1 << 20, file));
        let mut raw = [0u8; HEADER_LEN];
        read_exact(&mut input, &mut raw, path, 0, "the header")?;
        if &raw[..8] != MAGIC {
            return Err(snapshot_error(path, 0, "not a paxos snapshot (bad magic)"));
        }
        let crc = be_u32(&raw[HEADER_LEN - 4..]);
        if crc != crc32fast::hash(&raw[..HEADER_LEN - 4]) {
            return Err(snapshot_error(path, 0, "header crc32 mismatch"));
        }
        let version = be_u32(&raw[8..]);
        if version != SNAPSHOT_VERSION {
            return Err(snapshot_error(
                path,
                8,
                format!("format version {version} is not supported (this build reads {SNAPSHOT_VERSION})"),
            ));
        }
        let header = SnapshotHeader {
            version,
            cluster_id: (raw[12] != 0).then(|| be_u64(&raw[13..])),
            first_slot: be_u64(&raw[21..]),
            end_slot: be_u64(&raw[29..]),
            count: be_u64(&raw[37..]),
        };
        if header.end_slot < header.first_slot
            || header.count != header.end_slot - header.first_slot
        {
            return Err(snapshot_error(
                path,
                21,
                format!(
                    "header says slots {}..{} but {} entries",
                    header.first_slot, header.end_slot, header.count
                ),
            ));
        }
        Ok(SnapshotReader {
            path: path.to_path_buf(),
            input,
            next_slot: header.first_slot,
            header,
            chunks: 0,
            done: false,
        })
    }

    pub fn header(&self) -> SnapshotHeader {
        self.header
    }

    /// The next chunk's entries, or `None` after the trailer was read and checked.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<(Slot, Value)>>, Error> {
        if self.done {
            return Ok(None);
        }
        let at = self.input.bytes;
        let chunk_no = self.chunks;
        let mut tag = [0u8; 1];
        let what = format!("chunk {chunk_no} or the trailer");
        read_exact(&mut self.input, &mut tag, &self.path, at, &what)?;
        match tag[0] {
            TAG_CHUNK => {}
            TAG_TRAILER => return self.trailer(at).map(|()| None),
            other => {
                return Err(snapshot_error(
                    &self.path,
                    at,
                    format!("chunk {chunk_no}: unknown tag byte 0x{other:02x}"),
                ))
            }
        }
        let what = format!("chunk {chunk_no}");
        let err = |reason: String| snapshot_error(&self.path, at, format!("{what}: {reason}"));
        let mut head = [0u8; 8];
        read_exact(&mut self.input, &mut head, &self.path, at, &what)?;
        let entries = be_u32(&head[..4]) as usize;
        let len = be_u32(&head[4..]) as usize;
        if entries == 0 || entries > CHUNK_ENTRIES_MAX || len > CHUNK_BYTES_MAX {
            return Err(err(format!(
                "{entries} entries, {len} bytes: out of bounds (crc not checked yet: the file is damaged)"
            )));
        }
        let mut payload = vec![0u8; len + 4];
        read_exact(&mut self.input, &mut payload, &self.path, at, &what)?;
        let stored = be_u32(&payload[len..]);
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&tag);
        hasher.update(&head);
        hasher.update(&payload[..len]);
        let actual = hasher.finalize();
        if stored != actual {
            return Err(err(format!(
                "crc32 mismatch: stored {stored:08x}, computed {actual:08x}"
            )));
        }
        let mut rest = &payload[..len];
        let mut out = Vec::with_capacity(entries);
        for i in 0..entries {
            let (entry, more): ((Slot, Value), &[u8]) = postcard::take_from_bytes(rest)
                .map_err(|e| err(format!("entry {i}: postcard decode: {e}")))?;
            if entry.0 != self.next_slot || entry.0 >= self.header.end_slot {
                return Err(err(format!(
                    "entry {i} has slot {}, expected {} (end {})",
                    entry.0, self.next_slot, self.header.end_slot
                )));
            }
            self.next_slot += 1;
            out.push(entry);
            rest = more;
        }
        if !rest.is_empty() {
            return Err(err(format!("{} bytes after its last entry", rest.len())));
        }
        self.chunks += 1;
        Ok(Some(out))
    }

    fn trailer(&mut self, at: u64) -> Result<(), Error> {
        let mut raw = [0u8; 8 + 8];
        read_exact(&mut self.input, &mut raw, &self.path, at, "the trailer")?;
        let crc_through = self.input.crc();
        let mut crc = [0u8; 4];
        read_exact(&mut self.input, &mut crc, &self.path, at, "the trailer")?;
        let err = |reason: String| snapshot_error(&self.path, at, format!("trailer: {reason}"));
        if be_u32(&crc) != crc_through {
            return Err(err(format!(
                "whole-file crc32 mismatch: stored {:08x}, computed {crc_through:08x}",
                be_u32(&crc)
            )));
        }
        let (chunks, count) = (be_u64(&raw[..8]), be_u64(&raw[8..]));
        if chunks != self.chunks || count != self.header.count {
            return Err(err(format!(
                "says {chunks} chunks and {count} entries, read {} and {}",
                self.chunks,
                self.next_slot - self.header.first_slot
            )));
        }
        if self.next_slot != self.header.end_slot {
            return Err(err(format!(
                "ends at slot {}, the header says {}",
                self.next_slot, self.header.end_slot
            )));
        }
        let mut extra = [0u8; 1];
        match self.input.read(&mut extra) {
            Ok(0) => {}
            Ok(_) => {
                return Err(snapshot_error(
                    &self.path,
                    self.input.bytes - 1,
                    "bytes after the trailer",
                ))
            }
            Err(e) => return Err(Error::io(format!("reading {}", self.path.display()), e)),
        }
        self.done = true;
        Ok(())
    }
}

fn read_exact(
    input: &mut impl Read,
    buf: &mut [u8],
    path: &Path,
    at: u64,
    what: &str,
) -> Result<(), Error> {
    input.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            snapshot_error(path, at, format!("{what}: the file ends early (truncated)"))
        } else {
            Error::io(format!("reading {}", path.display()), e)
        }
    })
}

/// Reads and checks the whole snapshot at `path` (bounded memory: one chunk at a time).
pub fn verify(path: &Path) -> Result<SnapshotSummary, Error> {
    let mut reader = SnapshotReader::open(path)?;
    let (mut messages, mut noops) = (0, 0);
    while let Some(chunk) = reader.next_chunk()? {
        for (_, value) in &chunk {
            match value {
                Value::Noop => noops += 1,
                Value::Msg { .. } => messages += 1,
            }
        }
    }
    Ok(SnapshotSummary {
        header: reader.header,
        chunks: reader.chunks,
        messages,
        noops,
        file_bytes: reader.input.bytes,
    })
}

/// Seeds a fresh store for replica `uid` of cluster `cluster_id` in `dir` from the
/// snapshot at `path` (module doc). `dir` must not exist or be empty; nothing is written
/// unless the whole file checks out first. Returns what was restored.
pub fn restore(
    path: &Path,
    dir: &Path,
    uid: Uid,
    cluster_id: u64,
) -> Result<SnapshotSummary, Error> {
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::RestoreTarget {
                    path: dir.to_path_buf(),
                    reason: "the directory is not empty (restore seeds a fresh store only)"
                        .to_string(),
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(Error::RestoreTarget {
                path: dir.to_path_buf(),
                reason: "not a directory".to_string(),
            })
        }
        Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
    }
    let summary = verify(path)?;
    if summary.header.first_slot != 0 {
        return Err(snapshot_error(
            path,
            21,
            format!(
                "starts at slot {}: a store is seeded from slot 0 only",
                summary.header.first_slot
            ),
        ));
    }
    let existed = dir.exists();
    let result = write_store(path, dir, uid, cluster_id);
    if result.is_err() {
        // Leave nothing half-seeded behind.
        if existed {
            if let Ok(entries) = fs::read_dir(dir) {
                for entry in entries.flatten() {
                    let p = entry.path();
                    let _ = if p.is_dir() {
                        fs::remove_dir_all(&p)
                    } else {
                        fs::remove_file(&p)
                    };
                }
            }
        } else {
            let _ = fs::remove_dir_all(dir);
        }
    }
    result.map(|()| summary)
}

fn write_store(path: &Path, dir: &Path, uid: Uid, cluster_id: u64) -> Result<(), Error> {
    let mut reader = SnapshotReader::open(path)?;
    let mut storage = SledStorage::open(dir, uid, cluster_id)?;
    // A restored store has forgotten the promises and accepts its replica gave since the
    // snapshot: it is a lost disk with a head start. It registers under a new store id
    // (store 0: the replica picks one) and rebuilds before it votes again.
    storage.persist(&[
        Record::Promise(RESTORED_PROMISE),
        Record::Identity {
            store: 0,
            standing: crate::core::Standing::Unregistered,
        },
    ])?;
    // The applied kinds and the session table, computed as the core applies the log.
    let mut sessions = Sessions::new(SESSIONS_MAX);
    let mut records = Vec::with_capacity(CHUNK_ENTRIES_MAX);
    let mut end = 0;
    while let Some(chunk) = reader.next_chunk()? {
        records.clear();
        records.extend(chunk.into_iter().map(|(slot, value)| {
            end = slot + 1;
            Record::Decided {
                slot,
                dup: sessions.apply(slot, &value),
                value,
            }
        }));
        storage.persist(&records)?;
    }
    storage.persist(&[Record::SessionsCheckpoint {
        upto: end,
        sessions: sessions.checkpoint(),
    }])?;
    // So that the restored store's log is in segments, not all in the sled tail.
    storage.wait_segments();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::RequestId;
    use crate::storage::sled_store::read_offline;

    fn msg(client_id: u64, seq: u64, body: &str) -> Value {
        Value::Msg {
            id: RequestId { client_id, seq },
            body: body.to_string(),
        }
    }

    /// Slot 2 is a no-op, slot 3 a duplicate of slot 0's request.
    fn sample(n: u64) -> Vec<(Slot, Value)> {
        (0..n)
            .map(|slot| match slot {
                2 => (slot, Value::Noop),
                3 => (slot, msg(1, 1, "first")),
                0 => (slot, msg(1, 1, "first")),
                _ => (
                    slot,
                    msg(
                        2,
                        slot,
                        &format!("line {slot} {}", "x".repeat(slot as usize % 50)),
                    ),
                ),
            })
            .collect()
    }

    fn write(path: &Path, entries: &[(Slot, Value)]) -> u64 {
        let mut w = SnapshotWriter::create(path, Some(77), 0, entries.len() as u64).unwrap();
        for (slot, value) in entries {
            w.push(*slot, value).unwrap();
        }
        w.finish().unwrap()
    }

    fn read_all(path: &Path) -> Result<Vec<(Slot, Value)>, Error> {
        let mut r = SnapshotReader::open(path)?;
        let mut out = Vec::new();
        while let Some(chunk) = r.next_chunk()? {
            out.extend(chunk);
        }
        Ok(out)
    }

    #[test]
    fn round_trip_over_several_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.snap");
        let entries = sample(CHUNK_ENTRIES_MAX as u64 * 2 + 5);
        let size = write(&path, &entries);
        assert_eq!(size, fs::metadata(&path).unwrap().len());
        assert!(!dir.path().join("s.snap.tmp").exists());
        assert_eq!(read_all(&path).unwrap(), entries);
        let summary = verify(&path).unwrap();
        assert_eq!(summary.chunks, 3);
        assert_eq!(summary.noops, 1);
        assert_eq!(summary.messages, entries.len() as u64 - 1);
        assert_eq!(summary.header.cluster_id, Some(77));
        assert_eq!(summary.header.end_slot, entries.len() as u64);
        // An empty log is a valid snapshot too.
        let empty = dir.path().join("e.snap");
        write(&empty, &[]);
        assert_eq!(read_all(&empty).unwrap(), vec![]);
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.snap");
        write(&path, &sample(40));
        let good = fs::read(&path).unwrap();
        let bad = dir.path().join("bad.snap");
        for i in 0..good.len() {
            let mut bytes = good.clone();
            bytes[i] ^= 0x04;
            fs::write(&bad, &bytes).unwrap();
            let err = read_all(&bad).unwrap_err();
            assert!(matches!(err, Error::Snapshot { .. }), "byte {i}: {err}");
        }
        for len in 0..good.len() {
            fs::write(&bad, &good[..len]).unwrap();
            let err = read_all(&bad).unwrap_err();
            assert!(matches!(err, Error::Snapshot { .. }), "length {len}: {err}");
        }
        let mut longer = good.clone();
        longer.push(0);
        fs::write(&bad, &longer).unwrap();
        let err = read_all(&bad).unwrap_err();
        assert!(err.to_string().contains("after the trailer"), "{err}");
    }

    #[test]
    fn a_flipped_payload_byte_names_the_chunk_and_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.snap");
        write(&path, &sample(CHUNK_ENTRIES_MAX as u64 + 10));
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 30; // inside the second chunk's payload
        bytes[last] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        match read_all(&path).unwrap_err() {
            Error::Snapshot { offset, reason, .. } => {
                assert!(reason.starts_with("chunk 1: crc32 mismatch"), "{reason}");
                assert!(
                    offset > HEADER_LEN as u64 && offset < last as u64,
                    "{offset}"
                );
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn restore_seeds_a_store_with_the_same_applied_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.snap");
        let entries = sample(100);
        write(&path, &entries);
        let store = dir.path().join("node-1");
        let summary = restore(&path, &store, 1, 5).unwrap();
        assert_eq!(summary.header.count, 100);
        let (meta, state) = read_offline(&store).unwrap();
        assert_eq!((meta.uid, meta.cluster_id), (1, 5));
        assert_eq!(state.decided_upto, 100);
        assert!(state.accepted.is_empty());
        assert_eq!(state.promised, Some(RESTORED_PROMISE));
        assert!(!state.is_fresh());
        // The session checkpoint is at the end: nothing to replay.
        assert_eq!(state.sessions_upto, 100);
        assert!(state.tail.is_empty());
        let clients: Vec<u64> = state.sessions.iter().map(|s| s.client_id).collect();
        assert_eq!(clients, vec![1, 2]);
        let log = {
            use crate::storage::LogRead;
            crate::storage::sled_store::open_offline(&store)
                .unwrap()
                .log()
                .read_log(0, usize::MAX, usize::MAX)
                .unwrap()
        };
        let values: Vec<(Slot, Value)> = log.iter().map(|e| (e.slot, e.value())).collect();
        assert_eq!(values, entries);
        assert_eq!(log[3].kind, crate::core::LogEntryKind::Dup);
        assert_eq!(log[2].kind, crate::core::LogEntryKind::Noop);
        assert_eq!(log[4].kind, crate::core::LogEntryKind::Msg);

        // A second restore into the same directory is refused and changes nothing.
        let err = restore(&path, &store, 1, 5).unwrap_err();
        assert!(matches!(err, Error::RestoreTarget { .. }), "{err}");
        assert_eq!(read_offline(&store).unwrap().1, state);
    }

    #[test]
    fn a_corrupt_snapshot_restores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.snap");
        write(&path, &sample(CHUNK_ENTRIES_MAX as u64 + 10));
        let mut bytes = fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 30] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let store = dir.path().join("node-0");
        let err = restore(&path, &store, 0, 5).unwrap_err();
        assert!(matches!(err, Error::Snapshot { .. }), "{err}");
        assert!(!store.exists());
        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        restore(&path, &empty, 0, 5).unwrap_err();
        assert_eq!(fs::read_dir(&empty).unwrap().count(), 0);
    }
}

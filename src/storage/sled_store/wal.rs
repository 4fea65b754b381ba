//! The write-ahead log: the commit path's one `fdatasync`. A `persist` (the steady state:
//! accepts, a promise, the decided entries of the last round) appends its records to
//! `wal.log` and `fdatasync`s it, then applies them without any flush (applied entries
//! to the in-memory tail, accepts to the pending accepts, the rest to sled): one `write`
//! and one `fdatasync` a batch, instead of sled's flush (a hand-off to its IO threads and
//! a `sync_file_range`), a scan of its blob directory and a `sync_data` of its data file,
//! and no sled write per slot.
//!
//! # File format (all integers big-endian)
//!
//! ```text
//! header  magic b"PAXOSWAL" | version u32 | epoch u64 | crc32 u32 (of the 20 bytes before)
//! frame*  body_len u32 | epoch u32 (low half) | body_crc u32 | header_crc u32 (of the 12
//!         bytes before it) | body (one or more postcard `Record`s back to back)
//! ```
//!
//! The file is *preallocated*: written with zeros ahead of the frames (in steps of
//! [`WAL_GROW_BYTES`]), so that an append overwrites allocated blocks and its
//! `fdatasync` has no file size or extent to journal (here: 0.12 ms instead of 0.24 ms
//! for a 100-byte append). Emptying the log (`reset`) does not truncate it: it writes
//! the header with the next epoch, and frames of an older epoch (the bytes after the
//! current end) no longer count.
//!
//! # Crash argument (with the backend's module doc)
//!
//! 1. The log holds, in order, every record persisted through it since the last
//!    checkpoint (the tail sealed into a segment, pending accepts written to sled, sled
//!    flushed and synced, then the log emptied). So the durable state is always "the
//!    segments and sled's durable state, then the log replayed".
//! 2. Replaying is idempotent: sled recovers a prefix of what it was given, i.e. the
//!    effect of some prefix of the logged records; applying the whole log again on top
//!    gives the same state as applying it once (a promise only rises, an accept at a slot
//!    is replaced by the latest, a decided entry below the log's end is dropped, identity
//!    and peer store ids are "the latest wins" and the last one in the log is applied
//!    last).
//! 3. An append is acknowledged only after its `fdatasync`, and the next append starts
//!    after that: only the last frame can be torn. [`Wal::open`] keeps the longest prefix
//!    of whole, checked frames of the header's epoch (the rest was never acknowledged, or
//!    is older than the last reset), and the store's `open` then resets the log, so
//!    nothing after that prefix is of the epoch written next (`open` fails if it cannot
//!    checkpoint). A header torn by a crash in `reset` means an empty log (`reset` runs
//!    only once segments and sled hold every logged record, and nothing is appended
//!    before its `fdatasync` returns); the file is then zeroed, so no older frame can
//!    match a later epoch.
//! 4. A `persist` whose records do not all go through the log (a bulk run: its applied
//!    entries go to the open segment, the rest to a flushed sled) first checkpoints
//!    (the log is empty afterwards), so a logged record is never replayed over a later
//!    one that skipped the log, and the log and an open bulk segment never both hold
//!    records. A session checkpoint is never logged: it goes to sled at a checkpoint,
//!    after the applied entries below it are in the log or a segment.
//! 5. Damage: a frame whose header checks but whose body does not, followed by a whole
//!    frame of the same epoch, is not a torn write: [`Error::Corrupt`]. (A damaged frame
//!    *header* in the middle reads as the log's end: undetectable without a scan.)
//!
//! Bound: the log is checkpointed once it passes [`WAL_CHECKPOINT_BYTES`], so it holds at
//! most that plus one frame ([`WAL_FRAME_BYTES_MAX`]); the file never grows past that
//! plus one [`WAL_GROW_BYTES`] step, and replaying it at `open` reads at most that much.

use crate::core::Record;
use crate::Error;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use tracing::warn;

/// The log's file name in the store directory.
pub(super) const WAL_FILE: &str = "wal.log";
/// The log is checkpointed into sled once it holds this many bytes of frames.
pub(super) const WAL_CHECKPOINT_BYTES: u64 = 8 << 20;
/// Most bytes in one frame's body (a persist call's records are split into frames of
/// about half of this; one record is far smaller: values are bounded by the client).
pub(super) const WAL_FRAME_BYTES_MAX: usize = 4 << 20;
/// The file is extended with zeros this much at a time, ahead of the frames.
pub(super) const WAL_GROW_BYTES: u64 = 1 << 20;
const MAGIC: &[u8; 8] = b"PAXOSWAL";
const VERSION: u32 = 1;
pub(super) const FILE_HEADER_LEN: usize = 8 + 4 + 8 + 4;
const FRAME_HEADER_LEN: usize = 16;

/// The open write-ahead log of a read-write store.
pub(super) struct Wal {
    path: PathBuf,
    file: File,
    /// Frames of this epoch count; `reset` moves to the next.
    epoch: u64,
    /// Where the next frame goes (the end of the last whole frame).
    end: u64,
    /// The file's length (zeros after `end`).
    capacity: u64,
    /// The frame being built, header first.
    buf: Vec<u8>,
}

impl Wal {
    /// Opens (or creates) the log in `dir` and returns it with the records of its whole,
    /// checked frames, in order. The caller must [`Wal::reset`] it before the first
    /// append, once sled holds those records durably.
    pub(super) fn open(dir: &Path) -> Result<(Wal, Vec<Vec<Record>>), Error> {
        let path = dir.join(WAL_FILE);
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io(&path, "opening", e))?;
        let bytes = if existed {
            std::fs::read(&path).map_err(|e| io(&path, "reading", e))?
        } else {
            Vec::new()
        };
        let mut capacity = bytes.len() as u64;
        let (epoch, frames, end) = match parse(&bytes, &path)? {
            Some(parsed) => parsed,
            None => {
                if existed && !bytes.is_empty() {
                    warn!(file = %path.display(), "write-ahead log header torn or missing: an empty log (its frames were all checkpointed before the header was written)");
                    // No stale frame may outlive this: start from zeros.
                    file.set_len(0).map_err(|e| io(&path, "truncating", e))?;
                }
                capacity = 0;
                (0, Vec::new(), FILE_HEADER_LEN as u64)
            }
        };
        let mut wal = Wal {
            path,
            file,
            epoch,
            end,
            capacity,
            buf: Vec::new(),
        };
        if wal.capacity < FILE_HEADER_LEN as u64 + WAL_GROW_BYTES {
            wal.grow(FILE_HEADER_LEN as u64 + WAL_GROW_BYTES)?;
        }
        if !existed || capacity == 0 {
            wal.write_header()?;
            wal.file
                .sync_all()
                .map_err(|e| io(&wal.path, "syncing", e))?;
            super::sync_dir(dir)?;
        }
        Ok((wal, frames))
    }

    /// Bytes of frames the log holds.
    pub(super) fn len(&self) -> u64 {
        self.end - FILE_HEADER_LEN as u64
    }

    /// Appends `records` and makes them durable: [`Wal::encode`], then
    /// [`Wal::append_encoded`].
    pub(super) fn append(&mut self, records: &[Record]) -> Result<(), Error> {
        self.encode(records)?;
        self.append_encoded()
    }

    /// Encodes `records` as frames (a new one once a body passes
    /// [`WAL_FRAME_BYTES_MAX`]), ready for [`Wal::append_encoded`].
    pub(super) fn encode(&mut self, records: &[Record]) -> Result<(), Error> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        if records.is_empty() {
            self.buf = buf;
            return Ok(()); // no frame: an empty body would read as a torn one
        }
        let mut frame_start = 0;
        buf.resize(FRAME_HEADER_LEN, 0);
        for (i, record) in records.iter().enumerate() {
            buf = postcard::to_extend(record, buf).map_err(|e| Error::Encode {
                what: "write-ahead log record".to_string(),
                reason: e.to_string(),
            })?;
            if buf.len() - frame_start - FRAME_HEADER_LEN > WAL_FRAME_BYTES_MAX {
                return Err(Error::Encode {
                    what: "write-ahead log record".to_string(),
                    reason: format!("larger than a frame ({WAL_FRAME_BYTES_MAX} bytes)"),
                });
            }
            let last = i + 1 == records.len();
            if last || buf.len() - frame_start - FRAME_HEADER_LEN >= WAL_FRAME_BYTES_MAX / 2 {
                self.seal_frame(&mut buf[frame_start..]);
                if !last {
                    frame_start = buf.len();
                    buf.resize(frame_start + FRAME_HEADER_LEN, 0);
                }
            }
        }
        self.buf = buf;
        Ok(())
    }

    /// Fills in the header of `frame` (its header's room, then its body).
    fn seal_frame(&self, frame: &mut [u8]) {
        let body_len = frame.len() - FRAME_HEADER_LEN;
        debug_assert!(body_len <= WAL_FRAME_BYTES_MAX);
        let body_crc = crc32fast::hash(&frame[FRAME_HEADER_LEN..]);
        frame[0..4].copy_from_slice(&(body_len as u32).to_be_bytes());
        frame[4..8].copy_from_slice(&(self.epoch as u32).to_be_bytes());
        frame[8..12].copy_from_slice(&body_crc.to_be_bytes());
        let header_crc = crc32fast::hash(&frame[0..12]);
        frame[12..16].copy_from_slice(&header_crc.to_be_bytes());
    }

    /// The frame [`Wal::encode`] built (for tests).
    #[cfg(test)]
    pub(super) fn encoded(&self) -> &[u8] {
        &self.buf
    }

    /// Writes the frame [`Wal::encode`] built after the last one and makes it durable
    /// (`fdatasync`).
    pub(super) fn append_encoded(&mut self) -> Result<(), Error> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let frame_end = self.end + self.buf.len() as u64;
        if frame_end > self.capacity {
            self.grow(frame_end + WAL_GROW_BYTES)?;
        }
        self.file
            .write_all_at(&self.buf, self.end)
            .map_err(|e| io(&self.path, "appending to", e))?;
        self.file
            .sync_data()
            .map_err(|e| io(&self.path, "fdatasync of", e))?;
        self.end = frame_end;
        if self.buf.capacity() > 1 << 20 {
            self.buf = Vec::new();
        }
        Ok(())
    }

    /// Empties the log (the next epoch); only once sled holds every logged record durably.
    pub(super) fn reset(&mut self) -> Result<(), Error> {
        self.epoch += 1;
        self.write_header()?;
        self.file
            .sync_data()
            .map_err(|e| io(&self.path, "fdatasync of", e))?;
        self.end = FILE_HEADER_LEN as u64;
        Ok(())
    }

    fn write_header(&self) -> Result<(), Error> {
        let mut header = [0u8; FILE_HEADER_LEN];
        header[0..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&VERSION.to_be_bytes());
        header[12..20].copy_from_slice(&self.epoch.to_be_bytes());
        let crc = crc32fast::hash(&header[0..20]);
        header[20..24].copy_from_slice(&crc.to_be_bytes());
        self.file
            .write_all_at(&header, 0)
            .map_err(|e| io(&self.path, "writing the header of", e))
    }

    /// Extends the file with zeros up to `to` bytes (durable with the next sync).
    fn grow(&mut self, to: u64) -> Result<(), Error> {
        static ZEROS: [u8; 64 << 10] = [0u8; 64 << 10];
        let mut at = self.capacity;
        while at < to {
            let n = (to - at).min(ZEROS.len() as u64) as usize;
            self.file
                .write_all_at(&ZEROS[..n], at)
                .map_err(|e| io(&self.path, "extending", e))?;
            at += n as u64;
        }
        self.capacity = at;
        Ok(())
    }
}

/// Reads a log without changing it (a stopped replica's store): the records of its whole,
/// checked frames, in order. A missing file is an empty log.
pub(super) fn read(dir: &Path) -> Result<Vec<Vec<Record>>, Error> {
    let path = dir.join(WAL_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&path, "reading", e)),
    };
    Ok(parse(&bytes, &path)?
        .map(|(_, frames, _)| frames)
        .unwrap_or_default())
}

/// The header's epoch, the frames of that epoch up to the first that is not whole and
/// checked, and where that prefix ends. `None`: no valid header.
#[allow(clippy::type_complexity)]
fn parse(bytes: &[u8], path: &Path) -> Result<Option<(u64, Vec<Vec<Record>>, u64)>, Error> {
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let Some(header) = bytes.get(..FILE_HEADER_LEN) else {
        return Ok(None);
    };
    if &header[0..8] != MAGIC || be32(&header[20..24]) != crc32fast::hash(&header[0..20]) {
        return Ok(None);
    }
    if be32(&header[8..12]) != VERSION {
        return Err(Error::Corrupt {
            tree: path.display().to_string(),
            key: "header".to_string(),
            reason: format!(
                "write-ahead log version {}, this build reads {VERSION}",
                be32(&header[8..12])
            ),
        });
    }
    let mut epoch_bytes = [0u8; 8];
    epoch_bytes.copy_from_slice(&header[12..20]);
    let epoch = u64::from_be_bytes(epoch_bytes);
    let mut frames = Vec::new();
    let mut at = FILE_HEADER_LEN;
    while bytes.len() - at >= FRAME_HEADER_LEN {
        let header = &bytes[at..at + FRAME_HEADER_LEN];
        if be32(&header[12..16]) != crc32fast::hash(&header[0..12])
            || be32(&header[4..8]) != epoch as u32
        {
            break;
        }
        let body_len = be32(&header[0..4]) as usize;
        if body_len == 0 || body_len > WAL_FRAME_BYTES_MAX {
            return Err(corrupt(
                path,
                at,
                format!("a checked frame header with a body of {body_len} bytes"),
            ));
        }
        let start = at + FRAME_HEADER_LEN;
        let Some(body) = bytes.get(start..start + body_len) else {
            break;
        };
        if crc32fast::hash(body) != be32(&header[8..12]) {
            if whole_frame_at(bytes, start + body_len, epoch) {
                return Err(corrupt(
                    path,
                    at,
                    "the body's crc32 does not match, and whole frames follow".to_string(),
                ));
            }
            break;
        }
        // A frame whose crc checks but does not decode is not a torn write: refuse.
        let mut records = Vec::new();
        let mut rest = body;
        while !rest.is_empty() {
            let (record, after) = postcard::take_from_bytes::<Record>(rest)
                .map_err(|e| corrupt(path, at, format!("postcard decode: {e}")))?;
            records.push(record);
            rest = after;
        }
        frames.push(records);
        at = start + body_len;
    }
    Ok(Some((epoch, frames, at as u64)))
}

/// Whether a whole, checked frame of `epoch` starts at `at`.
fn whole_frame_at(bytes: &[u8], at: usize, epoch: u64) -> bool {
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let Some(header) = bytes.get(at..at + FRAME_HEADER_LEN) else {
        return false;
    };
    if be32(&header[12..16]) != crc32fast::hash(&header[0..12])
        || be32(&header[4..8]) != epoch as u32
    {
        return false;
    }
    let start = at + FRAME_HEADER_LEN;
    let body_len = be32(&header[0..4]) as usize;
    bytes
        .get(start..start + body_len)
        .is_some_and(|body| body_len > 0 && crc32fast::hash(body) == be32(&header[8..12]))
}

fn corrupt(path: &Path, at: usize, reason: String) -> Error {
    Error::Corrupt {
        tree: path.display().to_string(),
        key: format!("frame at byte {at}"),
        reason,
    }
}

fn io(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::io(format!("{what} write-ahead log {}", path.display()), e)
}

//! The bulk path: a long run of applied entries (a catch-up) goes straight into an *open
//! segment* file, `segments/log-<first>.open`, instead of through sled (write, flush,
//! read back, seal, delete: three or four times the work). `persist` appends one frame a
//! block to it and `fdatasync`s it before it touches sled; once it holds `segment_slots`
//! slots (or the run of applied entries ends) it is *sealed*: its blocks are copied, as
//! stored, into an ordinary segment file (`.tmp`, fsync, rename, fsync dir), the readers
//! are switched to that file in one step, and the open file is removed.
//!
//! # File format (all integers big-endian)
//!
//! ```text
//! header  magic b"PAXOSOPN" | version u32 | first u64 | codec u8 | crc32 u32 (of the header
//!         bytes before it)
//! frame*  first_slot u64 | entries u32 | stored_len u32 | raw_len u32 | block_crc u32
//!         | frame_crc u32 (of the 24 bytes before it) | stored bytes (one segment block:
//!         raw or one zstd frame of `entries` × postcard (dup, value); block_crc covers them)
//! ```
//!
//! Frames follow each other without a gap, each starting at the slot the one before
//! ended. Recovery ([`recover`]) keeps the longest prefix of whole, checked frames: an
//! append that a crash cut short was never acknowledged (`persist` returns only after the
//! `fdatasync`), so the prefix holds every acknowledged entry.
//!
//! # Crash argument (with the backend's module doc)
//!
//! 1. An open segment is created only when the sled tail is empty: `persist` first seals
//!    the tail below it itself (the segment writer is paused meanwhile), so the open
//!    segment starts exactly where the sealed chain ends, and sled holds no slot at or
//!    above its first while it is open.
//! 2. The open file and its directory entry are durable (fsync of the file and of the
//!    directory) before its first frame is acknowledged; every append is `fdatasync`ed
//!    before `persist` applies anything to sled (sled may flush on its own at any time, so
//!    no sled record of a persist may reach the disk before the entries it follows).
//! 3. Sealing makes the sealed copy durable (rename + directory fsync) before it removes
//!    the open file, and sled receives slots past the open segment only after that. At
//!    `open`, an open file whose first slot is below the end of the sealed chain is a
//!    leftover of a finished seal and is removed; one that starts at the chain's end is
//!    recovered and sealed; one past it is [`Error::Corrupt`] (a gap).

use super::segment::{self, BlockMeta, Compression, Footer, SegmentBuilder, SegmentName};
use crate::core::Slot;
use crate::Error;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(super) const OPEN_SUFFIX: &str = ".open";
const PREFIX: &str = "log-";
const MAGIC: &[u8; 8] = b"PAXOSOPN";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 8 + 1 + 4;
const FRAME_LEN: usize = 8 + 4 + 4 + 4 + 4 + 4;

pub(super) fn open_name(first: Slot) -> String {
    format!("{PREFIX}{first}{OPEN_SUFFIX}")
}

fn parse_open_name(name: &str) -> Option<Slot> {
    name.strip_prefix(PREFIX)?
        .strip_suffix(OPEN_SUFFIX)?
        .parse()
        .ok()
}

/// The open segment files of a segment directory, by first slot.
pub(super) fn list_open(dir: &Path) -> Result<Vec<(Slot, PathBuf)>, Error> {
    let mut found = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        if let Some(first) = entry.file_name().to_str().and_then(parse_open_name) {
            found.push((first, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

fn corrupt(path: &Path, slot: Slot, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        tree: format!("open segment {}", path.display()),
        key: super::codec::slot_name(slot),
        reason: reason.into(),
    }
}

fn io(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::io(format!("{what} {}", path.display()), e)
}

/// The open segment being appended to (owned by `persist`).
pub(super) struct OpenSegment {
    pub first: Slot,
    /// Every slot below this is in a durable frame.
    pub end: Slot,
    path: PathBuf,
    file: Arc<File>,
    compression: Compression,
    blocks: Vec<BlockMeta>,
    /// The file's length: where the next frame goes.
    len: u64,
}

impl OpenSegment {
    /// Creates `log-<first>.open` durably (file and directory entry) with its header.
    pub fn create(dir: &Path, first: Slot, compression: Compression) -> Result<Self, Error> {
        let path = dir.join(open_name(first));
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_be_bytes());
        header.extend_from_slice(&first.to_be_bytes());
        header.push(compression.codec());
        let crc = crc32fast::hash(&header);
        header.extend_from_slice(&crc.to_be_bytes());
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| io(&path, "creating", e))?;
        file.write_all(&header)
            .and_then(|_| file.sync_all())
            .map_err(|e| io(&path, "writing", e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(dir, "syncing directory", e))?;
        Ok(OpenSegment {
            first,
            end: first,
            path,
            file: Arc::new(file),
            compression,
            blocks: Vec::new(),
            len: HEADER_LEN as u64,
        })
    }

    /// Number of slots it holds.
    pub fn slots(&self) -> u64 {
        self.end - self.first
    }

    /// Appends the entries of slots `self.end..` (the postcard `(dup, value)` bytes of
    /// each, in `raw`, with `sizes` giving each entry's length) as blocks of at most
    /// `block_slots` entries, in one write, and `fdatasync`s: durable when this returns.
    /// `pause` (a test hook) runs between writing and syncing.
    pub fn append(
        &mut self,
        raw: &[u8],
        sizes: &[usize],
        block_slots: u32,
        pause: &dyn Fn(),
    ) -> Result<(), Error> {
        let mut out: Vec<u8> = Vec::new();
        let mut blocks = Vec::new();
        let mut slot = self.end;
        let mut at = 0usize;
        let mut i = 0usize;
        while i < sizes.len() {
            // One block: up to block_slots entries, closed once its raw bytes pass the target.
            let (from, first) = (at, slot);
            let mut n = 0u32;
            while i < sizes.len() && n < block_slots.max(1) && at - from < segment::BLOCK_RAW_TARGET
            {
                at += sizes[i];
                i += 1;
                n += 1;
            }
            let (stored, raw_len, crc) =
                SegmentBuilder::compress_block(self.compression, &raw[from..at])
                    .map_err(|reason| corrupt(&self.path, first, reason))?;
            let mut frame = Vec::with_capacity(FRAME_LEN);
            frame.extend_from_slice(&first.to_be_bytes());
            frame.extend_from_slice(&n.to_be_bytes());
            frame.extend_from_slice(&(stored.len() as u32).to_be_bytes());
            frame.extend_from_slice(&raw_len.to_be_bytes());
            frame.extend_from_slice(&crc.to_be_bytes());
            let frame_crc = crc32fast::hash(&frame);
            frame.extend_from_slice(&frame_crc.to_be_bytes());
            out.extend_from_slice(&frame);
            let offset = self.len + out.len() as u64;
            out.extend_from_slice(&stored);
            blocks.push(BlockMeta {
                first,
                offset,
                stored_len: stored.len() as u32,
                raw_len,
                crc,
            });
            slot += u64::from(n);
        }
        if out.is_empty() {
            return Ok(());
        }
        self.file
            .write_all_at(&out, self.len)
            .map_err(|e| io(&self.path, "appending to", e))?;
        pause();
        self.file
            .sync_data()
            .map_err(|e| io(&self.path, "syncing", e))?;
        self.len += out.len() as u64;
        self.blocks.extend(blocks);
        self.end = slot;
        Ok(())
    }

    /// What readers see of it now.
    pub fn view(&self) -> super::log::Segment {
        super::log::Segment::open_view(
            SegmentName {
                first: self.first,
                end: self.end,
                path: self.path.clone(),
            },
            Footer::new(self.compression, self.blocks.clone()),
            self.file.clone(),
        )
    }

    /// Writes the sealed segment `log-<first>-<end>.seg` durably from its blocks (copied
    /// as stored, each crc checked on the way); the open file stays until [`Self::remove`].
    /// `pause` (a test hook) runs between the steps of writing the file.
    pub fn seal(&self, dir: &Path, pause: &dyn Fn()) -> Result<SegmentName, Error> {
        debug_assert!(self.end > self.first);
        let mut builder = SegmentBuilder::new(self.first, self.end, self.compression, 1);
        for (i, block) in self.blocks.iter().enumerate() {
            let end = self.blocks.get(i + 1).map_or(self.end, |b| b.first);
            let mut stored = vec![0u8; block.stored_len as usize];
            self.file
                .read_exact_at(&mut stored, block.offset)
                .map_err(|e| io(&self.path, "reading", e))?;
            if crc32fast::hash(&stored) != block.crc {
                return Err(corrupt(&self.path, block.first, "block crc32 mismatch"));
            }
            builder
                .push_stored_block(
                    (end - block.first) as u32,
                    &stored,
                    block.raw_len,
                    block.crc,
                )
                .map_err(|reason| corrupt(&self.path, block.first, reason))?;
        }
        let bytes = builder
            .finish()
            .map_err(|reason| corrupt(&self.path, self.first, reason))?;
        let path = segment::write_file(dir, self.first, self.end, &bytes, pause).map_err(|e| {
            io(
                dir,
                &format!("writing segment {}..{} in", self.first, self.end),
                e,
            )
        })?;
        Ok(SegmentName {
            first: self.first,
            end: self.end,
            path,
        })
    }

    /// Removes the open file (after its sealed copy is durable). A leftover is removed at
    /// the next open, so a failure here is only a warning.
    pub fn remove(self) {
        if let Err(e) = fs::remove_file(&self.path) {
            tracing::warn!(file = %self.path.display(), error = %e, "cannot remove a sealed open segment");
        }
    }
}

/// Reads an open segment file back: the longest prefix of whole, checked frames (a torn
/// or unchecked tail was never acknowledged). A bad header is [`Error::Corrupt`].
pub(super) fn recover(
    path: &Path,
    first: Slot,
    compression: Compression,
) -> Result<OpenSegment, Error> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .or_else(|_| File::open(path))
        .map_err(|e| io(path, "opening", e))?;
    let len = file.metadata().map_err(|e| io(path, "reading", e))?.len();
    let mut header = [0u8; HEADER_LEN];
    if len < HEADER_LEN as u64 {
        // Created but its header never made it: it was never acknowledged into.
        return Ok(OpenSegment {
            first,
            end: first,
            path: path.to_path_buf(),
            file: Arc::new(file),
            compression,
            blocks: Vec::new(),
            len: 0,
        });
    }
    file.read_exact_at(&mut header, 0)
        .map_err(|e| io(path, "reading", e))?;
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let be64 = |b: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        u64::from_be_bytes(a)
    };
    if &header[..8] != MAGIC
        || be32(&header[HEADER_LEN - 4..]) != crc32fast::hash(&header[..HEADER_LEN - 4])
    {
        return Err(corrupt(path, first, "bad header (magic or crc32)"));
    }
    if be32(&header[8..]) != VERSION || be64(&header[12..]) != first {
        return Err(corrupt(
            path,
            first,
            format!(
                "header says version {} first slot {}",
                be32(&header[8..]),
                be64(&header[12..])
            ),
        ));
    }
    let codec = header[20];
    let compression = if codec == compression.codec() {
        compression
    } else if codec == Compression::None.codec() {
        Compression::None
    } else {
        Compression::Zstd(3)
    };
    let mut blocks = Vec::new();
    let mut at = HEADER_LEN as u64;
    let mut end = first;
    let mut frame = [0u8; FRAME_LEN];
    while at + FRAME_LEN as u64 <= len {
        if file.read_exact_at(&mut frame, at).is_err() {
            break;
        }
        if be32(&frame[24..]) != crc32fast::hash(&frame[..24]) || be64(&frame) != end {
            break;
        }
        let (n, stored_len, raw_len, crc) = (
            be32(&frame[8..]),
            be32(&frame[12..]),
            be32(&frame[16..]),
            be32(&frame[20..]),
        );
        let offset = at + FRAME_LEN as u64;
        if n == 0 || offset + u64::from(stored_len) > len {
            break;
        }
        let mut stored = vec![0u8; stored_len as usize];
        if file.read_exact_at(&mut stored, offset).is_err() || crc32fast::hash(&stored) != crc {
            break;
        }
        blocks.push(BlockMeta {
            first: end,
            offset,
            stored_len,
            raw_len,
            crc,
        });
        end += u64::from(n);
        at = offset + u64::from(stored_len);
    }
    Ok(OpenSegment {
        first,
        end,
        path: path.to_path_buf(),
        file: Arc::new(file),
        compression,
        blocks,
        len: at,
    })
}

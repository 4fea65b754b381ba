//! Log segments: immutable, checksummed files that hold the applied log below the sled
//! tail (the authority for those slots once written, see the backend's module doc).
//!
//! # File format (segment version 2), all integers big-endian
//!
//! `<store>/segments/log-<first>-<end>.seg` holds the applied entries of slots
//! `first..end`, every one of them:
//!
//! ```text
//! header  magic b"PAXOSLOG" | version u32 | first u64 | end u64 | codec u8 | crc32 u32
//!         (of the header bytes before it)
//! block*  the stored bytes of a run of consecutive entries: raw, or one zstd frame;
//!         decompressed, `n` × postcard (dup: bool, value: Value), slots implicit
//! index   per block: first_slot u64 | offset u64 | stored_len u32 | raw_len u32 | crc32 u32
//!         (of the block's stored bytes)
//! footer  index_offset u64 | blocks u32 | crc32 u32 (of the index and the 12 bytes before
//!         this crc) | magic b"PAXOSEND"
//! ```
//!
//! A block holds at most `block_slots` entries and is closed once its raw bytes pass
//! [`BLOCK_RAW_TARGET`], so reading one slot decompresses at most one block. Opening a
//! segment reads its header and footer only ([`read_footer`]); a block is read and its
//! crc checked when a read needs it ([`read_block`]). Any mismatch is
//! [`Error::Corrupt`] naming the file and the first slot of the block.

use super::codec::slot_name;
use crate::core::{LogEntry, Slot, Value};
use crate::Error;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use tracing::{debug, warn};

/// The segment directory inside a store directory.
pub const SEGMENT_DIR: &str = "segments";

const MAGIC: &[u8; 8] = b"PAXOSLOG";
const END_MAGIC: &[u8; 8] = b"PAXOSEND";
const SEGMENT_VERSION: u32 = 2;
const HEADER_LEN: usize = 8 + 4 + 8 + 8 + 1 + 4;
const INDEX_ENTRY_LEN: usize = 8 + 8 + 4 + 4 + 4;
const FOOTER_LEN: usize = 8 + 4 + 4 + 8;
const PREFIX: &str = "log-";
const SUFFIX: &str = ".seg";
pub(super) const TMP_SUFFIX: &str = ".tmp";
/// A block is closed once its raw (decompressed) bytes reach this.
pub const BLOCK_RAW_TARGET: usize = 256 * 1024;
/// The most raw bytes a block may claim (a target block plus one largest value).
const BLOCK_RAW_MAX: u32 = 64 * 1024 * 1024;

/// How blocks are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Raw postcard bytes.
    None,
    /// One zstd frame a block, at this level (1..=22).
    Zstd(i32),
}

impl Compression {
    pub(super) fn codec(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Zstd(_) => 1,
        }
    }
}

/// One block of a segment, as its index describes it.
#[derive(Clone, Debug)]
pub(super) struct BlockMeta {
    pub first: Slot,
    /// Where the block's stored bytes start in its file.
    pub offset: u64,
    pub stored_len: u32,
    pub raw_len: u32,
    /// crc32 of the stored bytes.
    pub crc: u32,
}

/// What a segment's header and footer say.
#[derive(Debug)]
pub(super) struct Footer {
    pub codec: u8,
    pub blocks: Vec<BlockMeta>,
}

impl Footer {
    /// The index of a file whose blocks are `blocks` (an open bulk segment's, in memory).
    pub fn new(compression: Compression, blocks: Vec<BlockMeta>) -> Footer {
        Footer {
            codec: compression.codec(),
            blocks,
        }
    }

    /// The index of the block holding `slot` (`slot` inside the segment).
    pub fn block_of(&self, slot: Slot) -> usize {
        self.blocks
            .partition_point(|b| b.first <= slot)
            .saturating_sub(1)
    }
}

pub(super) fn segment_name(first: Slot, end: Slot) -> String {
    format!("{PREFIX}{first}-{end}{SUFFIX}")
}

fn parse_name(name: &str) -> Option<(Slot, Slot)> {
    let (first, end) = name
        .strip_prefix(PREFIX)?
        .strip_suffix(SUFFIX)?
        .split_once('-')?;
    let (first, end) = (first.parse().ok()?, end.parse().ok()?);
    (first < end).then_some((first, end))
}

/// A segment file found by name.
#[derive(Clone, Debug)]
pub(super) struct SegmentName {
    pub first: Slot,
    pub end: Slot,
    pub path: PathBuf,
}

fn corrupt(path: &Path, slot: Slot, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        tree: format!("segment {}", path.display()),
        key: slot_name(slot),
        reason: reason.into(),
    }
}

/// The segment files of `dir` by name, chained from slot 0 (each starts where the one
/// before ends), in slot order; file names only, nothing is read. A missing directory
/// is no segments. A gap is [`Error::Corrupt`] (segments are the only copy of their
/// slots); temp files and unknown names are skipped.
pub(super) fn list_segments(dir: &Path) -> Result<Vec<SegmentName>, Error> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(TMP_SUFFIX) || name.ends_with(super::bulk::OPEN_SUFFIX) {
            continue;
        }
        match parse_name(name) {
            Some((first, end)) => found.push(SegmentName {
                first,
                end,
                path: entry.path(),
            }),
            None => {
                warn!(file = %entry.path().display(), "ignoring an unexpected file in the segment directory")
            }
        }
    }
    found.sort_by_key(|s| (s.first, s.end));
    let mut next = 0;
    for segment in &found {
        if segment.first != next {
            return Err(corrupt(
                &segment.path,
                next.min(segment.first),
                format!(
                    "segments are not contiguous: the chain ends at slot {next}, this file starts at {}",
                    segment.first
                ),
            ));
        }
        next = segment.end;
    }
    Ok(found)
}

/// Removes stale `.tmp` files a killed writer left (read-write opens only).
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

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Reads and checks a segment's header and index (two small reads, never the blocks).
pub(super) fn read_footer(segment: &SegmentName) -> Result<Footer, Error> {
    let path = &segment.path;
    let bad = |reason: String| corrupt(path, segment.first, reason);
    let mut file =
        File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
        .len();
    if len < (HEADER_LEN + FOOTER_LEN) as u64 {
        return Err(bad(format!(
            "{len} bytes, shorter than a header and footer"
        )));
    }
    let mut header = [0u8; HEADER_LEN];
    file.read_exact(&mut header)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    if &header[..8] != MAGIC {
        return Err(bad("bad magic".to_string()));
    }
    if be_u32(&header[HEADER_LEN - 4..]) != crc32fast::hash(&header[..HEADER_LEN - 4]) {
        return Err(bad("header crc32 mismatch".to_string()));
    }
    let (version, first, end, codec) = (
        be_u32(&header[8..]),
        be_u64(&header[12..]),
        be_u64(&header[20..]),
        header[28],
    );
    if version != SEGMENT_VERSION {
        return Err(bad(format!(
            "segment version {version}, this build reads {SEGMENT_VERSION}"
        )));
    }
    if first != segment.first || end != segment.end || codec > 1 {
        return Err(bad(format!(
            "header says slots {first}..{end} (codec {codec}), the file name {}..{}",
            segment.first, segment.end
        )));
    }
    let mut footer = [0u8; FOOTER_LEN];
    file.seek(SeekFrom::Start(len - FOOTER_LEN as u64))
        .and_then(|_| file.read_exact(&mut footer))
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    if &footer[16..] != END_MAGIC {
        return Err(bad("bad footer magic (a truncated file?)".to_string()));
    }
    let (index_offset, blocks) = (be_u64(&footer[..8]), be_u32(&footer[8..]) as usize);
    let index_len = blocks as u64 * INDEX_ENTRY_LEN as u64;
    if blocks == 0
        || index_offset < HEADER_LEN as u64
        || index_offset.checked_add(index_len) != Some(len - FOOTER_LEN as u64)
    {
        return Err(bad(format!(
            "footer says {blocks} blocks indexed at byte {index_offset}, the file has {len} bytes"
        )));
    }
    let mut index = vec![0u8; index_len as usize];
    file.seek(SeekFrom::Start(index_offset))
        .and_then(|_| file.read_exact(&mut index))
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&index);
    hasher.update(&footer[..12]);
    if hasher.finalize() != be_u32(&footer[12..]) {
        return Err(bad("index crc32 mismatch".to_string()));
    }
    let mut out: Vec<BlockMeta> = Vec::with_capacity(blocks);
    for raw in index.chunks_exact(INDEX_ENTRY_LEN) {
        let block = BlockMeta {
            first: be_u64(raw),
            offset: be_u64(&raw[8..]),
            stored_len: be_u32(&raw[16..]),
            raw_len: be_u32(&raw[20..]),
            crc: be_u32(&raw[24..]),
        };
        let expected_first = out.last().map_or(first, |b| b.first + 1);
        let ordered = match out.last() {
            None => block.first == first,
            Some(prev) => block.first > prev.first && block.first < end,
        };
        if !ordered
            || block.offset < HEADER_LEN as u64
            || block.offset + u64::from(block.stored_len) > index_offset
            || block.raw_len > BLOCK_RAW_MAX
        {
            return Err(bad(format!(
                "index entry {} (first slot {}, expected at least {expected_first}) is out of bounds",
                out.len(),
                block.first
            )));
        }
        out.push(block);
    }
    Ok(Footer { codec, blocks: out })
}

/// Reads, checks and decodes block `i` of a segment: the entries of slots
/// `blocks[i].first..(next block's first, or end)`.
pub(super) fn read_block(
    file: &File,
    segment: &SegmentName,
    footer: &Footer,
    i: usize,
) -> Result<Vec<LogEntry>, Error> {
    let block = &footer.blocks[i];
    let end = footer.blocks.get(i + 1).map_or(segment.end, |b| b.first);
    let bad = |reason: String| corrupt(&segment.path, block.first, reason);
    let mut stored = vec![0u8; block.stored_len as usize];
    file.read_exact_at(&mut stored, block.offset)
        .map_err(|e| Error::io(format!("reading {}", segment.path.display()), e))?;
    let crc = crc32fast::hash(&stored);
    if crc != block.crc {
        return Err(bad(format!(
            "block crc32 mismatch: stored {:08x}, computed {crc:08x}",
            block.crc
        )));
    }
    let raw = match footer.codec {
        0 => stored,
        _ => zstd::bulk::decompress(&stored, block.raw_len as usize)
            .map_err(|e| bad(format!("zstd: {e}")))?,
    };
    if raw.len() != block.raw_len as usize {
        return Err(bad(format!(
            "block holds {} bytes, its index says {}",
            raw.len(),
            block.raw_len
        )));
    }
    let mut rest = raw.as_slice();
    let mut out = Vec::with_capacity((end - block.first) as usize);
    for slot in block.first..end {
        let ((dup, value), more): ((bool, Value), &[u8]) = postcard::take_from_bytes(rest)
            .map_err(|e| corrupt(&segment.path, slot, format!("postcard decode: {e}")))?;
        out.push(LogEntry::from_decided(slot, &value, !dup));
        rest = more;
    }
    if !rest.is_empty() {
        return Err(bad(format!(
            "{} bytes after the block's last entry",
            rest.len()
        )));
    }
    Ok(out)
}

/// Builds a segment file in memory: entries are appended in slot order as their postcard
/// `(dup, value)` bytes.
pub(super) struct SegmentBuilder {
    first: Slot,
    next: Slot,
    compression: Compression,
    block_slots: u32,
    buf: Vec<u8>,
    index: Vec<u8>,
    blocks: u32,
    block: Vec<u8>,
    block_first: Slot,
    block_entries: u32,
}

impl SegmentBuilder {
    pub fn new(first: Slot, end: Slot, compression: Compression, block_slots: u32) -> Self {
        let mut buf = Vec::with_capacity(1 << 20);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&SEGMENT_VERSION.to_be_bytes());
        buf.extend_from_slice(&first.to_be_bytes());
        buf.extend_from_slice(&end.to_be_bytes());
        buf.push(compression.codec());
        let crc = crc32fast::hash(&buf);
        buf.extend_from_slice(&crc.to_be_bytes());
        SegmentBuilder {
            first,
            next: first,
            compression,
            block_slots: block_slots.max(1),
            buf,
            index: Vec::new(),
            blocks: 0,
            block: Vec::new(),
            block_first: first,
            block_entries: 0,
        }
    }

    /// Appends the next slot's entry, given as the postcard bytes of `(dup, value)`.
    pub fn push(&mut self, entry: &[u8]) -> Result<(), String> {
        if self.block_entries == 0 {
            self.block_first = self.next;
        }
        self.block.extend_from_slice(entry);
        self.block_entries += 1;
        self.next += 1;
        if self.block_entries >= self.block_slots || self.block.len() >= BLOCK_RAW_TARGET {
            self.close_block()?;
        }
        Ok(())
    }

    /// Appends a block already in stored form (compressed as this builder's codec says)
    /// holding the entries of slots `self.next..self.next + entries`: a bulk segment's
    /// blocks are copied into its sealed file without decoding them.
    pub fn push_stored_block(
        &mut self,
        entries: u32,
        stored: &[u8],
        raw_len: u32,
        crc: u32,
    ) -> Result<(), String> {
        self.close_block()?;
        let offset = self.buf.len() as u64;
        self.buf.extend_from_slice(stored);
        self.index.extend_from_slice(&self.next.to_be_bytes());
        self.index.extend_from_slice(&offset.to_be_bytes());
        self.index
            .extend_from_slice(&(stored.len() as u32).to_be_bytes());
        self.index.extend_from_slice(&raw_len.to_be_bytes());
        self.index.extend_from_slice(&crc.to_be_bytes());
        self.blocks += 1;
        self.next += u64::from(entries);
        Ok(())
    }

    /// Compresses `raw` (the postcard `(dup, value)` bytes of some entries) as a block
    /// would be stored: `(stored bytes, raw_len, crc32 of the stored bytes)`.
    pub fn compress_block(
        compression: Compression,
        raw: &[u8],
    ) -> Result<(Vec<u8>, u32, u32), String> {
        let raw_len = u32::try_from(raw.len())
            .ok()
            .filter(|n| *n <= BLOCK_RAW_MAX)
            .ok_or_else(|| format!("a block of {} bytes", raw.len()))?;
        let stored = match compression {
            Compression::None => raw.to_vec(),
            Compression::Zstd(level) => {
                zstd::bulk::compress(raw, level).map_err(|e| format!("zstd: {e}"))?
            }
        };
        let crc = crc32fast::hash(&stored);
        Ok((stored, raw_len, crc))
    }

    fn close_block(&mut self) -> Result<(), String> {
        if self.block_entries == 0 {
            return Ok(());
        }
        let raw_len = u32::try_from(self.block.len())
            .ok()
            .filter(|n| *n <= BLOCK_RAW_MAX)
            .ok_or_else(|| format!("a block of {} bytes", self.block.len()))?;
        let stored = match self.compression {
            Compression::None => std::mem::take(&mut self.block),
            Compression::Zstd(level) => {
                zstd::bulk::compress(&self.block, level).map_err(|e| format!("zstd: {e}"))?
            }
        };
        let offset = self.buf.len() as u64;
        self.buf.extend_from_slice(&stored);
        self.index
            .extend_from_slice(&self.block_first.to_be_bytes());
        self.index.extend_from_slice(&offset.to_be_bytes());
        self.index
            .extend_from_slice(&(stored.len() as u32).to_be_bytes());
        self.index.extend_from_slice(&raw_len.to_be_bytes());
        self.index
            .extend_from_slice(&crc32fast::hash(&stored).to_be_bytes());
        self.blocks += 1;
        self.block.clear();
        self.block_entries = 0;
        Ok(())
    }

    /// The finished file's bytes (index and footer appended).
    pub fn finish(mut self) -> Result<Vec<u8>, String> {
        self.close_block()?;
        debug_assert!(self.next > self.first);
        let index_offset = self.buf.len() as u64;
        let mut tail = Vec::with_capacity(12);
        tail.extend_from_slice(&index_offset.to_be_bytes());
        tail.extend_from_slice(&self.blocks.to_be_bytes());
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&self.index);
        hasher.update(&tail);
        let crc = hasher.finalize();
        self.buf.extend_from_slice(&self.index);
        self.buf.extend_from_slice(&tail);
        self.buf.extend_from_slice(&crc.to_be_bytes());
        self.buf.extend_from_slice(END_MAGIC);
        Ok(self.buf)
    }
}

/// Writes a finished segment durably: `<name>.tmp`, fsync, rename, fsync of the
/// directory. `pause` (a test hook) runs between the steps.
pub(super) fn write_file(
    dir: &Path,
    first: Slot,
    end: Slot,
    bytes: &[u8],
    pause: &dyn Fn(),
) -> std::io::Result<PathBuf> {
    let name = segment_name(first, end);
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let written = (|| {
        let mut file = File::create(&tmp)?;
        let half = bytes.len() / 2;
        file.write_all(&bytes[..half])?;
        pause();
        file.write_all(&bytes[half..])?;
        file.sync_all()?;
        pause();
        fs::rename(&tmp, &path)?;
        pause();
        File::open(dir)?.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip_and_reject_junk() {
        assert_eq!(parse_name(&segment_name(0, 16)), Some((0, 16)));
        assert_eq!(parse_name("log-16-16.seg"), None);
        assert_eq!(parse_name("log-0-16.seg.tmp"), None);
        assert_eq!(parse_name("log-x-16.seg"), None);
    }
}

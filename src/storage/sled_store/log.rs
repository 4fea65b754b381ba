//! Reading the applied log: [`SledLog`], a cheap cloneable `Send + Sync` handle that
//! reads slots from the segments and from the in-memory tail after them (`tail.rs`),
//! while the flusher thread persists and the segment writer moves slots from the tail
//! into segments.
//!
//! Consistency: a reader sees only slots below `durable_upto`, which `persist` raises
//! after its sync returned. The segment writer registers a sealed segment in the index
//! ([`LogShared::register`]) *before* it drops the segment's slots from the tail, so a
//! slot a reader misses in the tail is found in the index when it looks again. The open bulk
//! segment (`bulk.rs`) is in the index after the sealed chain; its view is replaced after
//! every durable append, and sealing swaps it for the sealed file in one step.
//!
//! Memory: the index holds one small record per segment (the parsed footer, about 28
//! bytes a block, once a segment is read); decoded blocks are kept in an LRU of at most
//! [`BLOCK_CACHE_BYTES`] raw bytes, so a catch-up or dump that reads a block in several
//! chunks decodes it once.

use super::codec::slot_name;
use super::segment::{read_block, read_footer, Footer, SegmentName};
use super::tail::Tail;
use super::TREE_DECIDED;
use crate::core::{LogEntry, Slot, Value};
use crate::storage::LogRead;
use crate::Error;
use std::collections::VecDeque;
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

/// Bound of the decoded-block cache (approximate: raw bytes of the cached blocks).
pub const BLOCK_CACHE_BYTES: usize = 2 * 1024 * 1024;

/// A segment in the index; its footer is read on first use.
#[derive(Debug)]
pub(super) struct Segment {
    pub name: SegmentName,
    footer: OnceLock<Arc<Footer>>,
    /// An open bulk segment's file, opened once: readers holding this view keep reading
    /// it after the file is sealed and removed. `None`: open `name.path` per read.
    file: Option<Arc<File>>,
}

impl Segment {
    pub fn new(name: SegmentName) -> Segment {
        Segment {
            name,
            footer: OnceLock::new(),
            file: None,
        }
    }

    /// A view of an open bulk segment: slots `name.first..name.end` in the blocks of
    /// `footer`, read from `file`.
    pub fn open_view(name: SegmentName, footer: Footer, file: Arc<File>) -> Segment {
        Segment {
            name,
            footer: OnceLock::from(Arc::new(footer)),
            file: Some(file),
        }
    }

    fn footer(&self) -> Result<Arc<Footer>, Error> {
        if let Some(f) = self.footer.get() {
            return Ok(f.clone());
        }
        let footer = Arc::new(read_footer(&self.name)?);
        Ok(self.footer.get_or_init(|| footer).clone())
    }
}

type BlockKey = (Slot, usize);

#[derive(Default)]
struct BlockCache {
    blocks: VecDeque<(BlockKey, Arc<Vec<LogEntry>>, usize)>,
    bytes: usize,
}

impl BlockCache {
    fn get(&mut self, key: BlockKey) -> Option<Arc<Vec<LogEntry>>> {
        let at = self.blocks.iter().position(|(k, _, _)| *k == key)?;
        let hit = self.blocks.remove(at)?;
        let block = hit.1.clone();
        self.blocks.push_back(hit);
        Some(block)
    }

    fn put(&mut self, key: BlockKey, block: Arc<Vec<LogEntry>>) {
        let size: usize = block.iter().map(|e| e.body.len() + 48).sum();
        if size > BLOCK_CACHE_BYTES / 2 {
            return;
        }
        self.bytes += size;
        self.blocks.push_back((key, block, size));
        while self.bytes > BLOCK_CACHE_BYTES {
            let Some((_, _, size)) = self.blocks.pop_front() else {
                break;
            };
            self.bytes -= size;
        }
    }
}

/// What the store, its segment writer and every reader share.
pub(super) struct LogShared {
    tail: Arc<Tail>,
    /// Every slot below this is applied and durable (raised after each `persist`).
    durable_upto: AtomicU64,
    /// The segment chain from slot 0, in slot order, and the open bulk segment after it.
    segments: RwLock<Chain>,
    cache: Mutex<BlockCache>,
    /// Entries returned by [`LogShared::read`] since the store opened.
    entries_read: AtomicU64,
}

impl LogShared {
    pub fn new(tail: Arc<Tail>, segments: Vec<SegmentName>, durable_upto: Slot) -> Self {
        LogShared {
            tail,
            durable_upto: AtomicU64::new(durable_upto),
            segments: RwLock::new(Chain {
                sealed: segments
                    .into_iter()
                    .map(|s| Arc::new(Segment::new(s)))
                    .collect(),
                open: None,
            }),
            cache: Mutex::new(BlockCache::default()),
            entries_read: AtomicU64::new(0),
        }
    }

    /// Empties the decoded-block cache and hands its memory back (an idle replica
    /// holds no cache; the next reader refills it).
    pub fn drop_cache(&self) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        *cache = BlockCache::default();
    }

    /// Raw bytes of the blocks in the decoded-block cache.
    #[cfg(test)]
    pub fn cache_bytes(&self) -> usize {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }

    pub fn entries_read(&self) -> u64 {
        self.entries_read.load(Ordering::Relaxed)
    }

    pub fn durable_upto(&self) -> Slot {
        self.durable_upto.load(Ordering::Acquire)
    }

    pub fn set_durable_upto(&self, upto: Slot) {
        self.durable_upto.store(upto, Ordering::Release);
    }

    /// The end of the segment chain: every slot below it is in a segment.
    pub fn segments_end(&self) -> Slot {
        self.read_segments().sealed_end()
    }

    fn read_segments(&self) -> std::sync::RwLockReadGuard<'_, Chain> {
        self.segments.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_segments(&self) -> std::sync::RwLockWriteGuard<'_, Chain> {
        self.segments.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a sealed, durable segment at the end of the chain (before its slots leave
    /// sled: see the module doc).
    pub fn register(&self, name: SegmentName) {
        let mut chain = self.write_segments();
        debug_assert_eq!(chain.sealed_end(), name.first);
        debug_assert!(chain.open.is_none());
        chain.sealed.push(Arc::new(Segment::new(name)));
    }

    /// Shows readers the open bulk segment as it now is (after each durable append).
    pub fn set_open(&self, view: Segment) {
        let mut chain = self.write_segments();
        debug_assert_eq!(chain.sealed_end(), view.name.first);
        chain.open = Some(Arc::new(view));
    }

    /// The open bulk segment became the sealed segment `name` (same slots, same blocks):
    /// one step for readers, so no slot is ever missing from the index.
    pub fn seal_open(&self, name: SegmentName) {
        let mut chain = self.write_segments();
        debug_assert_eq!(chain.sealed_end(), name.first);
        debug_assert_eq!(chain.open.as_ref().map(|o| o.name.end), Some(name.end));
        chain.open = None;
        chain.sealed.push(Arc::new(Segment::new(name)));
    }

    fn segment_of(&self, slot: Slot) -> Option<Arc<Segment>> {
        let chain = self.read_segments();
        let i = chain.sealed.partition_point(|s| s.name.end <= slot);
        chain
            .sealed
            .get(i)
            .or(chain.open.as_ref())
            .filter(|s| s.name.first <= slot && slot < s.name.end)
            .cloned()
    }

    fn block(
        &self,
        segment: &Segment,
        file: &File,
        footer: &Footer,
        i: usize,
    ) -> Result<Arc<Vec<LogEntry>>, Error> {
        let key = (segment.name.first, i);
        if let Some(hit) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
        {
            return Ok(hit);
        }
        let block = Arc::new(read_block(file, &segment.name, footer, i)?);
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(key, block.clone());
        Ok(block)
    }

    /// Reads from `segment` into `page` from `*next` on, up to the segment's end or until
    /// `page` is full.
    fn read_segment(
        &self,
        segment: &Segment,
        next: &mut Slot,
        upto: Slot,
        page: &mut Page,
    ) -> Result<(), Error> {
        let footer = segment.footer()?;
        let opened;
        let file: &File = match &segment.file {
            Some(file) => file,
            None => {
                opened = File::open(&segment.name.path).map_err(|e| {
                    Error::io(format!("opening {}", segment.name.path.display()), e)
                })?;
                &opened
            }
        };
        let mut i = footer.block_of(*next);
        while *next < segment.name.end.min(upto) && !page.full() {
            let block = self.block(segment, file, &footer, i)?;
            let first = footer.blocks[i].first;
            for entry in block.iter().skip((*next - first) as usize) {
                if *next >= upto || !page.push(entry.clone()) {
                    return Ok(());
                }
                *next += 1;
            }
            i += 1;
            if i >= footer.blocks.len() {
                break;
            }
        }
        Ok(())
    }

    /// Reads from the tail into `page` from `*next` on (stops where the tail does not
    /// hold `*next`: sealed meanwhile, the caller looks again).
    fn read_tail(&self, next: &mut Slot, upto: Slot, page: &mut Page) -> Result<(), Error> {
        let mut failed = None;
        *next = self.tail.visit(*next, upto, |slot, bytes| {
            match postcard::from_bytes::<(bool, Value)>(bytes) {
                Ok((dup, value)) => page.push(LogEntry::from_decided(slot, &value, !dup)),
                Err(e) => {
                    failed = Some(Error::Corrupt {
                        tree: "tail".to_string(),
                        key: slot_name(slot),
                        reason: format!("postcard decode: {e}"),
                    });
                    false
                }
            }
        });
        failed.map_or(Ok(()), Err)
    }

    pub fn read(
        &self,
        from_slot: Slot,
        entries_max: usize,
        bytes_max: usize,
    ) -> Result<Vec<LogEntry>, Error> {
        let upto = self.durable_upto();
        let mut page = Page::new(entries_max, bytes_max);
        let mut next = from_slot;
        while next < upto && !page.full() {
            let before = next;
            match self.segment_of(next) {
                Some(segment) => {
                    self.read_segment(&segment, &mut next, upto, &mut page)?;
                    if next == before {
                        break; // full (a block always holds its slots)
                    }
                }
                None => {
                    self.read_tail(&mut next, upto, &mut page)?;
                    if next == before && !page.full() && self.segment_of(next).is_none() {
                        return Err(Error::Corrupt {
                            tree: TREE_DECIDED.to_string(),
                            key: slot_name(next),
                            reason: format!(
                                "applied slot (below {upto}) is neither in the tail nor in a segment"
                            ),
                        });
                    }
                }
            }
        }
        self.entries_read
            .fetch_add(page.entries.len() as u64, Ordering::Relaxed);
        Ok(page.entries)
    }
}

/// The segment index: sealed segments chained from slot 0, then the open bulk segment
/// (if any), which starts where the sealed chain ends.
struct Chain {
    sealed: Vec<Arc<Segment>>,
    open: Option<Arc<Segment>>,
}

impl Chain {
    fn sealed_end(&self) -> Slot {
        self.sealed.last().map_or(0, |s| s.name.end)
    }
}

/// A page of entries under the bounds of [`LogRead::read_log`].
struct Page {
    entries: Vec<LogEntry>,
    bytes: usize,
    entries_max: usize,
    bytes_max: usize,
    /// An entry did not fit.
    stopped: bool,
}

impl Page {
    fn new(entries_max: usize, bytes_max: usize) -> Page {
        Page {
            entries: Vec::with_capacity(entries_max.min(4096)),
            bytes: 0,
            entries_max,
            bytes_max,
            stopped: false,
        }
    }

    fn full(&self) -> bool {
        self.stopped || self.entries.len() >= self.entries_max
    }

    /// Adds `entry` if it fits (the first always does); `false` once the page is full.
    fn push(&mut self, entry: LogEntry) -> bool {
        if self.full() {
            return false;
        }
        let size = match &entry.id {
            Some(_) if entry.kind != crate::core::LogEntryKind::Noop => 24 + entry.body.len(),
            _ => 1,
        };
        if !self.entries.is_empty() && self.bytes.saturating_add(size) > self.bytes_max {
            self.stopped = true;
            return false;
        }
        self.bytes = self.bytes.saturating_add(size);
        self.entries.push(entry);
        true
    }
}

/// A reader of a store's applied log: cheap to clone, `Send + Sync`, valid while the
/// store persists and seals segments (and after it is dropped, for what was durable).
#[derive(Clone)]
pub struct SledLog {
    pub(super) shared: Arc<LogShared>,
}

impl std::fmt::Debug for SledLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledLog")
            .field("durable_upto", &self.shared.durable_upto())
            .field("segments_end", &self.shared.segments_end())
            .finish()
    }
}

impl SledLog {
    /// Every slot below this is applied and durable.
    pub fn decided_upto(&self) -> Slot {
        self.shared.durable_upto()
    }

    /// Every slot below this is in a segment (the rest of the log is in the sled tail).
    pub fn segments_end(&self) -> Slot {
        self.shared.segments_end()
    }
}

impl LogRead for SledLog {
    fn read_log(
        &self,
        from_slot: Slot,
        entries_max: usize,
        bytes_max: usize,
    ) -> Result<Vec<LogEntry>, Error> {
        self.shared.read(from_slot, entries_max, bytes_max)
    }

    fn entries_read(&self) -> u64 {
        self.shared.entries_read()
    }
}

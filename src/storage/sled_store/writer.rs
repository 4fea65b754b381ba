//! The segment writer: one background thread a read-write store that seals the oldest
//! `segment_slots` applied slots of the sled tail into a segment file and then deletes
//! them from sled (see the backend's module doc for why this order is crash-safe).
//!
//! It only ever seals slots below the durable applied prefix (`persist` returned), never
//! runs inside `persist`, and writes one segment at a time. A failure is a `warn!` and
//! stops sealing until the next open: the slots simply stay in sled (nothing is lost; the
//! sled tail grows).

use super::codec::{check_crc, decode_slot};
use super::log::LogShared;
use super::segment::{self, Compression, SegmentBuilder, SegmentName};
use super::{sled_error, TREE_DECIDED};
use crate::core::Slot;
use crate::Error;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;
use tracing::{debug, info, warn};

/// What the writer needs to know.
#[derive(Clone, Debug)]
pub(super) struct WriterConfig {
    pub dir: PathBuf,
    pub segment_slots: u64,
    pub block_slots: u32,
    pub compression: Compression,
    /// Test hook: sleep this long between the steps of writing a segment.
    pub pause_ms: u64,
}

#[derive(Debug, Default)]
struct State {
    /// The durable applied prefix: segments ending at or below it may be sealed.
    target: Slot,
    /// The segment chain ends here.
    written_end: Slot,
    busy: bool,
    failed: bool,
    /// `persist` has taken over (an open bulk segment): seal nothing until it resumes us.
    paused: bool,
}

impl State {
    fn due(&self, segment_slots: u64) -> bool {
        !self.paused && self.written_end.saturating_add(segment_slots) <= self.target
    }
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs the writer thread of one store; dropping it stops and joins the thread (a
/// segment being written is finished first).
pub(super) struct Writer {
    config: WriterConfig,
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("config", &self.config)
            .field("state", &*self.shared.lock())
            .finish()
    }
}

impl Writer {
    pub fn start(config: WriterConfig, log: Arc<LogShared>, decided: sled::Tree) -> Writer {
        let shared = Arc::new(Shared::default());
        {
            let mut state = shared.lock();
            state.written_end = log.segments_end();
            state.target = log.durable_upto();
        }
        let worker = if config.segment_slots == 0 {
            None
        } else {
            let (s, c) = (shared.clone(), config.clone());
            match std::thread::Builder::new()
                .name("segments".to_string())
                .spawn(move || run(&s, &c, &log, &decided))
            {
                Ok(handle) => Some(handle),
                Err(e) => {
                    warn!(error = %e, "cannot start the segment writer; the log stays in sled");
                    shared.lock().failed = true;
                    None
                }
            }
        };
        Writer {
            config,
            shared,
            worker,
        }
    }

    /// After a successful `persist`: every slot below `upto` is applied and durable.
    pub fn advance(&self, upto: Slot) {
        let mut state = self.shared.lock();
        if upto <= state.target {
            return;
        }
        state.target = upto;
        let due = state.due(self.config.segment_slots);
        drop(state);
        if due {
            self.shared.changed.notify_all();
        }
    }

    /// Blocks until every segment the durable prefix covers is sealed (or the writer gave
    /// up); returns the end of the segment chain.
    pub fn wait(&self) -> Slot {
        let mut state = self.shared.lock();
        while self.worker.is_some()
            && !state.failed
            && (state.busy || state.due(self.config.segment_slots))
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

impl Writer {
    /// Whether `persist` may take over (the writer runs and has not failed).
    pub fn usable(&self) -> bool {
        self.worker.is_some() && !self.shared.lock().failed
    }

    /// For the bulk path: waits until no segment is being sealed, stops the writer from
    /// starting another, and seals the sled tail `written_end..upto` itself (durable
    /// `upto` slots of sled, in segments of at most `segment_slots`; registered with the
    /// readers, then deleted from sled). Afterwards the sealed chain ends at `upto`.
    pub fn take_over(
        &self,
        log: &LogShared,
        decided: &sled::Tree,
        upto: Slot,
    ) -> Result<(), String> {
        let mut state = self.shared.lock();
        while state.busy {
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
        state.paused = true;
        let mut first = state.written_end;
        drop(state);
        while first < upto {
            let end = upto.min(first + self.config.segment_slots.max(1));
            seal(&self.config, log, decided, first, end)?;
            first = end;
            self.shared.lock().written_end = end;
        }
        Ok(())
    }

    /// The bulk path sealed everything below `end` (sled holds no slot below it): the
    /// writer seals from `end` on again.
    pub fn resume(&self, end: Slot) {
        let mut state = self.shared.lock();
        state.written_end = end;
        state.paused = false;
        drop(state);
        self.shared.changed.notify_all();
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        drop(self.shared.lock());
        self.shared.changed.notify_all();
        if let Some(handle) = self.worker.take() {
            if handle.join().is_err() {
                warn!("the segment writer panicked");
            }
        }
    }
}

fn run(shared: &Shared, config: &WriterConfig, log: &LogShared, decided: &sled::Tree) {
    loop {
        let first = {
            let mut state = shared.lock();
            loop {
                if shared.stop.load(Ordering::Relaxed) || state.failed {
                    return;
                }
                if state.due(config.segment_slots) {
                    break;
                }
                state = shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner());
            }
            state.busy = true;
            state.written_end
        };
        let end = first + config.segment_slots;
        let result = seal(config, log, decided, first, end);
        let mut state = shared.lock();
        state.busy = false;
        match result {
            Ok(path) => {
                info!(file = %path.display(), "log segment sealed");
                state.written_end = end;
            }
            Err(reason) => {
                warn!(dir = %config.dir.display(), first, end, %reason, "log segment not written; the log stays in sled until a restart");
                state.failed = true;
            }
        }
        drop(state);
        shared.changed.notify_all();
    }
}

/// Seals slots `first..end`: reads them from sled (checking every crc), writes the
/// segment durably, registers it with the readers, then deletes the slots from sled.
fn seal(
    config: &WriterConfig,
    log: &LogShared,
    decided: &sled::Tree,
    first: Slot,
    end: Slot,
) -> Result<PathBuf, String> {
    let pause = || {
        if config.pause_ms > 0 {
            std::thread::sleep(Duration::from_millis(config.pause_ms));
        }
    };
    let mut builder = SegmentBuilder::new(first, end, config.compression, config.block_slots);
    let mut expected = first;
    for item in decided.range(first.to_be_bytes()..end.to_be_bytes()) {
        let (key, bytes) = item.map_err(|e| sled_error("reading tree `decided`", e).to_string())?;
        let slot = decode_slot(TREE_DECIDED, &key).map_err(|e| e.to_string())?;
        if slot != expected {
            return Err(format!("slot {expected} is not in sled"));
        }
        let body = check_crc(TREE_DECIDED, slot, &bytes).map_err(|e: Error| e.to_string())?;
        builder.push(body)?;
        expected += 1;
    }
    if expected != end {
        return Err(format!("slot {expected} is not in sled"));
    }
    let bytes = builder.finish()?;
    let path = segment::write_file(&config.dir, first, end, &bytes, &pause)
        .map_err(|e| format!("writing segment {first}..{end}: {e}"))?;
    log.register(SegmentName {
        first,
        end,
        path: path.clone(),
    });
    pause();
    remove_range(decided, first, end).map_err(|e| e.to_string())?;
    debug!(
        first,
        end,
        bytes = bytes.len(),
        "segment slots removed from sled"
    );
    Ok(path)
}

/// Slots deleted from sled per batch once sealed (smaller batches keep sled's memory
/// down: one batch of a whole segment's deletions grew the process by ~150 MiB).
const REMOVE_BATCH_SLOTS: u64 = 1024;

/// Deletes slots `first..end` from a slot tree, in batches of [`REMOVE_BATCH_SLOTS`] (a
/// crash between them leaves slots that the next open removes).
pub(super) fn remove_range(tree: &sled::Tree, first: Slot, end: Slot) -> Result<(), Error> {
    let mut from = first;
    while from < end {
        let to = end.min(from + REMOVE_BATCH_SLOTS);
        let mut batch = sled::Batch::default();
        for slot in from..to {
            batch.remove(&slot.to_be_bytes());
        }
        tree.apply_batch(batch)
            .map_err(|e| sled_error("removing slots from sled", e))?;
        from = to;
    }
    Ok(())
}

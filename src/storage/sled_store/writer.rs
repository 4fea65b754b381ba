//! The segment writer: one background thread of a read-write store that seals the oldest
//! `segment_slots` applied slots of the in-memory tail (`tail.rs`) into a segment file
//! and then drops them from the tail (see the backend's module doc for why this order is
//! crash-safe). `persist` also seals the whole tail itself at a checkpoint
//! ([`Writer::take_over`]), so that the write-ahead log can be emptied.
//!
//! It only ever seals slots below the durable applied prefix (`persist` returned) and
//! writes one segment at a time. A failure is a `warn!` and stops sealing until the next
//! open: the slots simply stay in the tail and the write-ahead log (nothing is lost; both
//! grow).

use super::log::LogShared;
use super::segment::{self, Compression, SegmentBuilder, SegmentName};
use super::sled_error;
use super::tail::Tail;
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
    pub fn start(config: WriterConfig, log: Arc<LogShared>, tail: Arc<Tail>) -> Writer {
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
                .spawn(move || run(&s, &c, &log, &tail))
            {
                Ok(handle) => Some(handle),
                Err(e) => {
                    warn!(error = %e, "cannot start the segment writer; the log stays in the tail and the write-ahead log");
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

    /// For a checkpoint or the bulk path: waits until no segment is being sealed, stops
    /// the writer from starting another, and seals the tail `written_end..upto` itself (in
    /// segments of at most `segment_slots`; registered with the readers, then dropped
    /// from the tail). Afterwards the sealed chain ends at `upto`; [`Writer::resume`]
    /// lets the writer go on.
    pub fn take_over(&self, log: &LogShared, tail: &Tail, upto: Slot) -> Result<(), String> {
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
            // segment_slots 0 (no background sealing): the whole tail as one segment.
            let most = match self.config.segment_slots {
                0 => u64::MAX,
                n => n,
            };
            let end = upto.min(first.saturating_add(most));
            if let Err(reason) = seal(&self.config, log, tail, first, end) {
                self.shared.lock().failed = true;
                return Err(reason);
            }
            first = end;
            self.shared.lock().written_end = end;
        }
        Ok(())
    }

    /// Everything below `end` is sealed (by [`Writer::take_over`] or the bulk path): the
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

fn run(shared: &Shared, config: &WriterConfig, log: &LogShared, tail: &Tail) {
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
        let result = seal(config, log, tail, first, end);
        let mut state = shared.lock();
        state.busy = false;
        match result {
            Ok(path) => {
                info!(file = %path.display(), "log segment sealed");
                state.written_end = end;
            }
            Err(reason) => {
                warn!(dir = %config.dir.display(), first, end, %reason, "log segment not written; the log stays in memory and in the write-ahead log until a restart");
                state.failed = true;
            }
        }
        drop(state);
        shared.changed.notify_all();
    }
}

/// Seals slots `first..end`: copies them from the tail, writes the segment durably,
/// registers it with the readers, then drops the slots from the tail.
fn seal(
    config: &WriterConfig,
    log: &LogShared,
    tail: &Tail,
    first: Slot,
    end: Slot,
) -> Result<PathBuf, String> {
    let pause = || {
        if config.pause_ms > 0 {
            std::thread::sleep(Duration::from_millis(config.pause_ms));
        }
    };
    let mut builder = SegmentBuilder::new(first, end, config.compression, config.block_slots);
    let mut failed = None;
    let reached = tail.visit(first, end, |_, body| match builder.push(body) {
        Ok(()) => true,
        Err(reason) => {
            failed = Some(reason);
            false
        }
    });
    if let Some(reason) = failed {
        return Err(reason);
    }
    if reached != end {
        return Err(format!("slot {reached} is not in the tail"));
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
    tail.remove_below(end);
    debug!(
        first,
        end,
        bytes = bytes.len(),
        "segment slots dropped from the tail"
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

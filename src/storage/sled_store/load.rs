//! Loading a store back at startup, in parallel: [`Trees::load_full`] walks the two slot
//! trees on two threads; [`Trees::load_state`] reads the checkpoint segment chain and the
//! sled tails above it on a small pool of threads (one a spare core, at most 4) and keeps
//! the highest accepted ballot exact (see the backend's module doc). Also the checked
//! slot-range readers the rest of the backend uses.

use super::checkpoint::{self, SegmentFile};
use super::codec::{decode, decode_slot, slot_name};
use super::{sled_error, Trees, TREE_ACCEPTED, TREE_DECIDED};
use crate::core::{Ballot, Slot, Value};
use crate::storage::PersistentState;
use crate::Error;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::Path;
use tracing::{info, warn};

impl Trees {
    /// Reads everything back from sled alone. The two slot trees are walked on two
    /// threads: this is dominated by sled paging leaf nodes in and walking them (about
    /// 1 µs an entry).
    pub(super) fn load_full(&self) -> Result<PersistentState, Error> {
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

    /// Reads the state through the checkpoint segments in `checkpoint_dir` (see the module
    /// doc): the segment chain, then `decided` and `accepted` from its end, plus the entry
    /// at `meta/accepted_max`'s slot. The segment files and the two sled tails are read by
    /// a small pool of threads (the sled tails first); a bad segment is a warning and its
    /// slots (and everything after it) come from sled.
    pub(super) fn load_state(&self, checkpoint_dir: &Path) -> Result<Loaded, Error> {
        let promised = self.read_promised()?;
        // Format 1 has no `accepted_max`: its whole `accepted` tree is needed.
        let accepted_max = if self.read_format()? >= 2 {
            Some(self.read_accepted_max()?)
        } else {
            None
        };
        let segments = checkpoint::list_segments(checkpoint_dir);
        let named_end = segments.last().map_or(0, |s| s.end);
        let accepted_from = if accepted_max.is_some() { named_end } else { 0 };

        let mut tasks = vec![LoadTask::AcceptedTail, LoadTask::DecidedTail];
        tasks.extend(segments.iter().map(LoadTask::Segment));
        let run = |task: &LoadTask| match task {
            LoadTask::AcceptedTail => LoadDone::Accepted(read_range::<(Ballot, Value)>(
                &self.accepted,
                TREE_ACCEPTED,
                accepted_from,
                None,
            )),
            LoadTask::DecidedTail => LoadDone::Decided(read_range::<Value>(
                &self.decided,
                TREE_DECIDED,
                named_end,
                None,
            )),
            LoadTask::Segment(segment) => LoadDone::Segment(checkpoint::read_segment(segment)),
        };
        let mut accepted_tail = None;
        let mut decided_tail = None;
        let mut segment_results = Vec::with_capacity(segments.len());
        for done in run_pool(&tasks, run) {
            match done {
                LoadDone::Accepted(r) => accepted_tail = Some(r),
                LoadDone::Decided(r) => decided_tail = Some(r),
                LoadDone::Segment(r) => segment_results.push(r),
            }
        }
        // run_pool returns one result a task, and both tail tasks are in the list.
        let missing = "a load task produced no result";
        let mut accepted_tail = accepted_tail.expect(missing)?;
        let decided_tail = decided_tail.expect(missing)?;

        let mut decided = Vec::new();
        let mut segments_end = 0;
        for (segment, result) in segments.iter().zip(segment_results) {
            match result {
                Ok(entries) => {
                    decided.extend(entries);
                    segments_end = segment.end;
                }
                Err(reason) => {
                    warn!(
                        file = %segment.path.display(),
                        %reason,
                        from_slot = segment.first,
                        "checkpoint segment unusable; reading its slots and all later ones from sled"
                    );
                    break;
                }
            }
        }
        let mut accepted_from = accepted_from;
        if segments_end < named_end {
            decided.extend(read_range::<Value>(
                &self.decided,
                TREE_DECIDED,
                segments_end,
                Some(named_end),
            )?);
            if accepted_from > segments_end {
                let mut gap = read_range::<(Ballot, Value)>(
                    &self.accepted,
                    TREE_ACCEPTED,
                    segments_end,
                    Some(accepted_from),
                )?;
                gap.append(&mut accepted_tail);
                accepted_tail = gap;
                accepted_from = segments_end;
            }
        }
        decided.extend(decided_tail);
        let mut accepted: BTreeMap<Slot, (Ballot, Value)> = accepted_tail.into_iter().collect();
        // Keep the highest accepted ballot exact (module doc, invariant 5).
        if let Some(Some((ballot, slot))) = accepted_max {
            let entry = if slot >= accepted_from {
                accepted.get(&slot).cloned()
            } else {
                self.accepted
                    .get(slot.to_be_bytes())
                    .map_err(|e| sled_error("reading tree `accepted`", e))?
                    .map(|bytes| decode::<(Ballot, Value)>(TREE_ACCEPTED, &slot_name(slot), &bytes))
                    .transpose()?
            };
            match entry {
                Some(entry) if entry.0 == ballot => {
                    accepted.insert(slot, entry);
                }
                found => {
                    // Only after a crash inside `persist` (a read-write open repairs it).
                    info!(slot, %ballot, found = ?found.map(|e| e.0), "the entry at meta/accepted_max does not carry its ballot; reading the whole accepted tree");
                    accepted = read_slots(&self.accepted, TREE_ACCEPTED)?;
                }
            }
        }
        Ok(Loaded {
            state: PersistentState {
                promised,
                accepted,
                // In slot order: segments, gap, tail.
                decided: decided.into_iter().collect(),
            },
            segments_end,
        })
    }
}

/// What [`Trees::load_state`] read.
pub(super) struct Loaded {
    pub(super) state: PersistentState,
    /// The end of the chain of good segments (every slot below it came from one).
    pub(super) segments_end: Slot,
}

enum LoadTask<'a> {
    AcceptedTail,
    DecidedTail,
    Segment(&'a SegmentFile),
}

type AcceptedEntries = Vec<(Slot, (Ballot, Value))>;

enum LoadDone {
    Accepted(Result<AcceptedEntries, Error>),
    Decided(Result<Vec<(Slot, Value)>, Error>),
    Segment(Result<Vec<(Slot, Value)>, String>),
}

/// Runs `tasks` on this thread and up to one helper a spare core (tasks are taken in
/// order), returning the results in task order.
fn run_pool<T: Sync, R: Send>(tasks: &[T], run: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || {
        let mut out = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(task) = tasks.get(i) else {
                return out;
            };
            out.push((i, run(task)));
        }
    };
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4)
        .min(tasks.len().max(1));
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads)
            .filter_map(|_| {
                std::thread::Builder::new()
                    .name("load".to_string())
                    .spawn_scoped(scope, work)
                    .ok()
            })
            .collect();
        let mut done = work();
        for helper in helpers {
            done.extend(
                helper
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            );
        }
        done
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// Reads every `slot -> T` entry of a slot-keyed tree, checking keys and checksums.
pub(super) fn read_slots<T: DeserializeOwned>(
    tree: &sled::Tree,
    name: &str,
) -> Result<BTreeMap<Slot, T>, Error> {
    // Keys come in slot order, so collecting a Vec into a BTreeMap builds it in bulk.
    Ok(read_range(tree, name, 0, None)?.into_iter().collect())
}

/// Reads the `slot -> T` entries of slots `from..to` (`to` `None`: to the end), in slot
/// order, checking keys and checksums.
pub(super) fn read_range<T: DeserializeOwned>(
    tree: &sled::Tree,
    name: &str,
    from: Slot,
    to: Option<Slot>,
) -> Result<Vec<(Slot, T)>, Error> {
    let from = from.to_be_bytes();
    let iter = match to {
        Some(to) => tree.range(from..to.to_be_bytes()),
        None => tree.range(from..),
    };
    let mut out = Vec::new();
    for item in iter {
        let (key, bytes) = item.map_err(|e| sled_error(&format!("reading tree `{name}`"), e))?;
        let slot = decode_slot(name, &key)?;
        let value = decode(name, &slot_name(slot), &bytes)?;
        out.push((slot, value));
    }
    Ok(out)
}

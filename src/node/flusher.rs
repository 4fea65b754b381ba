//! The flusher: one dedicated thread that owns the store. It takes every `Outbox` queued
//! by the core loop, persists all their records with one `persist` call (one flush and
//! sync: group commit), only then sends the peer messages that vouch for them (Promise,
//! Accepted), and reports the highest durable `Ready::seq` back to the core loop, which
//! steps `Input::Persisted` (a leader's own accept counts as a vote from then on).
//! Outboxes are handled in order, so a message also waits for every earlier record.
//!
//! An idle outbox ([`Flusher::idle`], sent by the core loop once a busy period ends)
//! checkpoints the store (`SledStorage::checkpoint_idle`: the in-memory tail sealed, the
//! log emptied, the readers' block cache dropped) and then hands malloc's free pages back
//! ([`super::allocator::trim`]), so an idle replica holds none of them.
//!
//! A storage error is fatal: the flusher reports it on the fatal channel, sends nothing
//! from the failed batch (or any later one), and stops. Nothing is acknowledged after it.

use super::allocator;
use super::metrics::Metrics;
use crate::core::{PeerMessage, Record, Uid};
use crate::storage::sled_store::SledStorage;
use crate::storage::Storage;
use crate::transport::peer::PeerLinks;
use crate::{Error, Result};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tracing::{debug, error};

/// Bound of Ready batches queued for the flusher (backpressure on the core loop).
const OUTBOX_QUEUE_MAX: usize = 256;

/// What one `Ready` asks of the flusher, in order: persist, then send, then report `seq`.
pub struct Outbox {
    /// The `Ready::seq` this came from.
    pub seq: u64,
    pub records: Vec<Record>,
    pub messages: Vec<(Uid, PeerMessage)>,
    /// The write load has stopped: checkpoint and trim after this batch.
    pub idle: bool,
}

pub struct Flusher {
    tx: mpsc::Sender<Outbox>,
    thread: std::thread::JoinHandle<()>,
}

impl Flusher {
    pub fn spawn(
        mut storage: SledStorage,
        links: Arc<PeerLinks>,
        fatal: watch::Sender<Option<String>>,
        durable: watch::Sender<u64>,
        metrics: Arc<Metrics>,
    ) -> Result<Flusher> {
        let (tx, mut rx) = mpsc::channel::<Outbox>(OUTBOX_QUEUE_MAX);
        let thread = std::thread::Builder::new()
            .name("paxos-flusher".into())
            .spawn(move || {
                let mut batch: Vec<Outbox> = Vec::new();
                let mut records: Vec<Record> = Vec::new();
                while let Some(first) = rx.blocking_recv() {
                    batch.push(first);
                    while let Ok(more) = rx.try_recv() {
                        batch.push(more);
                    }
                    records.clear();
                    let mut idle = false;
                    for outbox in &mut batch {
                        records.append(&mut outbox.records);
                        idle |= outbox.idle;
                    }
                    if !records.is_empty() {
                        let started = std::time::Instant::now();
                        if let Err(e) = storage.persist(&records) {
                            error!(error = %e, "storage failed: stopping, nothing more is acknowledged");
                            let _ = fatal.send(Some(e.to_string()));
                            return;
                        }
                        metrics.observe_flush(records.len(), started.elapsed());
                    }
                    debug!(
                        batches = batch.len(),
                        records = records.len(),
                        "flushed"
                    );
                    let mut seq = 0;
                    for outbox in batch.drain(..) {
                        seq = seq.max(outbox.seq);
                        for (to, msg) in outbox.messages {
                            links.send(to, msg);
                        }
                    }
                    if seq > 0 {
                        durable.send_replace(seq);
                    }
                    // After this batch's sends: its messages must not wait for the idle work.
                    if idle {
                        let started = std::time::Instant::now();
                        match storage.checkpoint_idle() {
                            Ok(checkpointed) => {
                                let trim = allocator::trim();
                                debug!(
                                    checkpointed,
                                    checkpoint_ms = (started.elapsed() - trim).as_millis() as u64,
                                    trim_us = trim.as_micros() as u64,
                                    "idle: checkpointed and gave malloc's free pages back"
                                );
                            }
                            Err(e) => {
                                error!(error = %e, "storage failed: stopping, nothing more is acknowledged");
                                let _ = fatal.send(Some(e.to_string()));
                                return;
                            }
                        }
                    }
                }
            })
            .map_err(|e| Error::io("spawning the flusher thread", e))?;
        Ok(Flusher { tx, thread })
    }

    /// Asks for an idle checkpoint and trim (see the module doc) after what is queued;
    /// skipped if the queue is full (then the replica is not idle).
    pub fn idle(&self) {
        let _ = self.tx.try_send(Outbox {
            seq: 0,
            records: Vec::new(),
            messages: Vec::new(),
            idle: true,
        });
    }

    /// Queues one outbox; waits if the flusher is far behind.
    pub async fn send(&self, outbox: Outbox) -> std::result::Result<(), ()> {
        self.tx.send(outbox).await.map_err(|_| ())
    }

    /// Stops taking work, lets the thread persist what it holds, and waits for it.
    pub async fn finish(self) {
        drop(self.tx);
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

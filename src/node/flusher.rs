//! The flusher: one dedicated thread that owns the store. It takes every `Outbox` queued
//! by the core loop, persists all their records with one `persist` call (one flush and
//! sync: group commit), only then sends the peer messages that vouch for them (Promise,
//! Accepted), and reports the highest durable `Ready::seq` back to the core loop, which
//! steps `Input::Persisted` (a leader's own accept counts as a vote from then on).
//! Outboxes are handled in order, so a message also waits for every earlier record.
//!
//! A storage error is fatal: the flusher reports it on the fatal channel, sends nothing
//! from the failed batch (or any later one), and stops. Nothing is acknowledged after it.

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
                    for outbox in &mut batch {
                        records.append(&mut outbox.records);
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
                    durable.send_replace(seq);
                }
            })
            .map_err(|e| Error::io("spawning the flusher thread", e))?;
        Ok(Flusher { tx, thread })
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

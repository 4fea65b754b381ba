//! paxos: a replicated, crash-recoverable chat log agreed by Multi-Paxos.
//!
//! Crate map (data flows down, events flow up):
//! - [`core`]: the pure Paxos state machine (`Replica::step` -> `Ready`), no IO.
//! - [`storage`]: durable state in Paxos terms; sled backend and an in-memory one.
//! - [`transport`]: TCP framing (`len | crc32 | postcard`), handshake, peer links.
//! - [`node`]: the tokio driver that batches inputs, steps the core, persists, then sends.
//! - [`client`]: the client library (leader discovery, retries, ids, log follower, cluster status).
//! - [`ctl`]: `paxosctl`'s commands, one file each, with their rendering; above `client`.
//! - [`config`]: `config.toml`, defaults, validation naming the bad field.

pub mod client;
pub mod config;
pub mod core;
pub mod ctl;
pub mod error;
pub mod node;
pub mod storage;
pub mod transport;

pub use error::{Error, Result};

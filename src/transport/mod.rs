//! Transport: TCP frames between replicas, and between clients and replicas.
//!
//! This layer owns sockets and bytes, never protocol state: it moves
//! [`PeerMessage`](crate::core::PeerMessage)s and client requests/responses, and turns
//! every malformed input into a closed connection plus a `warn!`, never a panic.
//!
//! - [`frame`]: `u32 length | u32 crc32 | postcard payload`, at most
//!   [`FRAME_BYTES_MAX`] bytes of payload.
//! - [`wire`]: the [`Hello`] handshake (first frame on every connection, peer or
//!   client) and the client protocol ([`ClientRequest`] / [`ClientResponse`]).
//! - [`peer`]: [`PeerLinks`], outbound links that dial each other replica, reconnect with
//!   backoff, batch writes, and apply the configured `loss`.
//! - [`listener`]: [`accept_loop`], which bounds connections, checks hellos, forwards
//!   inbound peer messages to the node and hands client connections ([`ClientConn`]) to
//!   it.
//! - [`client`]: [`ClientLink`], the dialing side of the client protocol.
//! - [`tls`]: mutual TLS ([`TlsContext`]) and the uid ↔ certificate binding; [`certs`]:
//!   issuing the cluster's CA and certificates (rcgen).
//!
//! With a [`TlsContext`] (from a config with `[tls]`) every connection is TLS 1.3 with
//! certificates on both sides; without one it is plaintext, which replicas allow only on
//! loopback.
//!
//! How a node wires it up:
//! ```no_run
//! # async fn node(config: paxos::config::Config, uid: u32) -> paxos::Result<()> {
//! use paxos::transport::{accept_loop, bind, ListenerConfig, PeerLinks};
//! use tokio::sync::{mpsc, watch};
//!
//! let (shutdown_tx, shutdown) = watch::channel(false);
//! let (peer_tx, mut peer_rx) = mpsc::channel(4096);
//! let (client_tx, mut client_rx) = mpsc::channel(256);
//! let listener = bind(config.replica_addr(uid)?).await?;
//! let accept = ListenerConfig::new(uid, config.cluster_id(), config.replicas());
//! tokio::spawn(accept_loop(listener, accept, peer_tx, client_tx, shutdown.clone()));
//! let mut peers = Vec::new();
//! for other in (0..config.replicas() as u32).filter(|u| *u != uid) {
//!     peers.push((other, config.replica_addr(other)?));
//! }
//! let links = PeerLinks::spawn(uid, config.cluster_id(), peers, config.loss, shutdown);
//! // loop: peer_rx.recv() -> Input::Peer; client_rx.recv() -> a task per ClientConn;
//! // after persisting a Ready: for (to, msg) in ready.messages { links.send(to, msg) }
//! # let _ = (links, shutdown_tx, peer_rx.recv().await, client_rx.recv().await);
//! # Ok(()) }
//! ```

pub mod certs;
pub mod client;
pub mod frame;
pub mod listener;
pub mod peer;
pub mod tls;
pub mod wire;

pub use client::ClientLink;
pub use frame::{encode_frame, read_frame, write_frame, FRAME_BYTES_MAX};
pub use listener::{accept_loop, bind, ClientConn, ListenerConfig, ListenerCounters};
pub use peer::PeerLinks;
pub use tls::TlsContext;
pub use wire::{ClientRequest, ClientResponse, Hello, StatusReport};

//! Replica state machine (stub API; body being written).
use super::message::{ClientRef, PeerMessage, Record, SubmitReply};
use super::types::{Ballot, LogEntry, RequestId, Slot, Uid};
use crate::storage::PersistentState;
use std::collections::BTreeSet;

#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    pub uid: Uid,
    pub replicas: usize,
    pub heartbeat_ms: u64,
    pub timeout_ms: u64,
    pub skip_slots: BTreeSet<Slot>,
}

#[derive(Clone, Debug)]
pub enum Input {
    Tick { now_ms: u64 },
    Peer { from: Uid, msg: PeerMessage },
    Submit { client: ClientRef, id: RequestId, body: String },
}

#[derive(Clone, Debug, Default)]
pub struct Ready {
    pub records: Vec<Record>,
    pub messages: Vec<(Uid, PeerMessage)>,
    pub replies: Vec<(ClientRef, SubmitReply)>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Role { Follower, Candidate, Leader }

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplicaStatus {
    pub uid: Uid,
    pub role: Role,
    pub ballot: Ballot,
    pub leader: Option<Uid>,
    pub decided_upto: Slot,
}

pub struct Replica { _c: ReplicaConfig }

impl Replica {
    pub fn new(config: ReplicaConfig, _state: PersistentState, _now_ms: u64) -> Replica { Replica { _c: config } }
    pub fn step(&mut self, _input: Input) {}
    pub fn take_ready(&mut self) -> Ready { Ready::default() }
    pub fn status(&self) -> ReplicaStatus { unimplemented!() }
    pub fn log_entries(&self, _from: Slot, _max: usize) -> Vec<LogEntry> { Vec::new() }
}

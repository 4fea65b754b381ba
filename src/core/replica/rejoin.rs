//! Lost disks: telling a fresh store from a lost one, and rebuilding a lost one before it
//! votes again (the rules are in the [`crate::core`] module doc, "Lost disks").
//!
//! Every store has an id (the wall clock in microseconds when it was created), and every
//! replica keeps, durably, the newest store id it knows for each peer. A fresh store
//! registers (`Register`) with a majority of the others before it votes: if one of them
//! knew an earlier store of this uid, the disk was lost and the replica is `Rebuilding`:
//! a learner that catches up, then asks the leader for a fence (`FenceRequest`). The
//! leader runs a new phase 1 (begun after the request, completed by a majority of the
//! others) and answers `Fenced` with the end of what it recovered; the replica accepts
//! again from that ballot on and promises once it has decided everything below the end.
//! Candidates count a promise only from the newest store they know of its uid, and views
//! of store ids travel on Prepare and Promise, so a promise given by a store since lost
//! never completes a phase 1 that began after the fence.

use super::{Replica, RoleState};
use crate::core::message::{PeerMessage, Record};
use crate::core::types::{Ballot, Slot, Standing, Uid};

/// Slack over our own wall clock for a peer's store id (see `store_id_max`): a day.
const STORE_ID_SLACK_US: u64 = 86_400 * 1_000_000;

/// What a replica knows of one peer's store.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct PeerStore {
    /// The newest store id known (0: none).
    pub(super) store: u64,
    /// That store replaced an older one (the peer lost a disk, or was restored).
    pub(super) replaced: bool,
}

/// A fresh store's registration in progress.
#[derive(Debug, Default)]
pub(super) struct Registration {
    /// Per uid: the registrar's answer (`known`, `replaced`), once it came.
    pub(super) answers: Vec<Option<(u64, bool)>>,
    pub(super) sent_ms: Option<u64>,
}

impl Replica {
    /// How many others must have recorded a fresh store before it votes: any two such
    /// sets of the others intersect, so a later fresh store of this uid meets one that
    /// remembers this one.
    pub(super) fn registrars_needed(&self) -> usize {
        (self.config.replicas - 1) / 2 + 1
    }

    /// Our view of every replica's store id, ours included (index: uid).
    pub(super) fn stores_view(&self) -> Vec<u64> {
        self.peer_stores.iter().map(|p| p.store).collect()
    }

    /// The highest store id a peer may name: ids are wall-clock microseconds, so one far
    /// in our future is hostile or broken (it would outrank every real store of that uid
    /// for good). Our start's wall clock, plus the time since, plus a day.
    fn store_id_max(&self) -> u64 {
        self.config
            .incarnation
            .max(self.store)
            .saturating_add(self.now_ms.saturating_mul(1000))
            .saturating_add(STORE_ID_SLACK_US)
    }

    /// Learns `store` for `uid` if it is newer than what we know, durably.
    pub(super) fn learn_store(&mut self, uid: Uid, store: u64) {
        if uid == self.config.uid || store == 0 || store > self.store_id_max() {
            return;
        }
        let Some(known) = self.peer_stores.get(uid as usize).copied() else {
            return;
        };
        if store <= known.store {
            return;
        }
        let replaced = known.store != 0 || known.replaced;
        self.peer_stores[uid as usize] = PeerStore { store, replaced };
        self.ready.records.push(Record::PeerStore {
            uid,
            store,
            replaced,
        });
        // A candidate counting a promise of the older store must ask that replica again.
        self.recheck_promise_stores();
    }

    /// Learns a peer's whole view (from a Prepare or a Promise).
    pub(super) fn learn_stores(&mut self, view: &[u64]) {
        for (uid, store) in view.iter().enumerate().take(self.config.replicas) {
            self.learn_store(uid as Uid, *store);
        }
    }

    pub(super) fn set_standing(&mut self, standing: Standing) {
        if self.standing != standing {
            self.standing = standing;
            self.ready.records.push(Record::Identity {
                store: self.store,
                standing,
            });
        }
    }

    /// Whether this replica may promise (vote in phase 1) and campaign.
    pub(super) fn votes(&self) -> bool {
        self.standing == Standing::Voter
    }

    /// Whether this replica may accept (vote in phase 2).
    pub(super) fn accepts(&self) -> bool {
        matches!(self.standing, Standing::Voter | Standing::Fenced { .. })
    }

    /// A registrar: record the new store, durably, then answer with what we knew before.
    pub(super) fn on_register(&mut self, from: Uid, store: u64) {
        let before = self.peer_stores[from as usize];
        self.learn_store(from, store);
        self.send(
            from,
            PeerMessage::Registered {
                store,
                known: before.store,
                replaced: before.replaced,
            },
        );
    }

    /// A fresh store hears a registrar. With enough answers it is a voter (nobody knew
    /// an earlier store of ours) or rebuilding (somebody did).
    pub(super) fn on_registered(&mut self, from: Uid, store: u64, known: u64, replaced: bool) {
        if self.standing != Standing::Unregistered || store != self.store {
            return;
        }
        self.registration.answers[from as usize] = Some((known, replaced));
        let answers: Vec<(u64, bool)> = self
            .registration
            .answers
            .iter()
            .flatten()
            .copied()
            .collect();
        if answers.len() < self.registrars_needed() {
            return;
        }
        let lost = answers.iter().any(|(known, replaced)| {
            (*known != 0 && *known != self.store) || (*known == self.store && *replaced)
        });
        if lost {
            self.set_standing(Standing::Rebuilding);
        } else {
            self.become_voter();
        }
    }

    /// A fresh store that nobody knew an earlier one of: a full member from now on, and
    /// uid 0 leads ballot (0, 0) of a fresh cluster as before.
    fn become_voter(&mut self) {
        self.set_standing(Standing::Voter);
        let fresh = self.promised == Ballot::ZERO
            && self.accepted.is_empty()
            && self.decided_upto == 0
            && self.decided.is_empty();
        if fresh {
            // Marks the store as used, so a restart is told apart from a fresh start.
            self.ready.records.push(Record::Promise(Ballot::ZERO));
            if self.config.uid == 0 && matches!(self.role, RoleState::Follower) {
                self.lead_initial_ballot();
            }
        }
    }

    /// A leader hears that a rebuilding replica is caught up: fence it with a new phase 1
    /// (at most one per `timeout_ms`, so a peer cannot make us campaign without end).
    pub(super) fn on_fence_request(&mut self, from: Uid, store: u64) {
        self.learn_store(from, store);
        let RoleState::Leader(l) = &self.role else {
            return;
        };
        // The new phase 1 must be winnable without the requester: a majority of us and
        // the others heard within `timeout_ms` (a leader with a bare majority that
        // includes the requester would depose itself for good).
        let now = self.now_ms;
        let leader_ballot = l.ballot;
        let heard = self
            .peers()
            .filter(|p| {
                *p != from
                    && now.saturating_sub(l.quorum.heard_ms[*p as usize]) < self.config.timeout_ms
            })
            .count();
        if self.peer_stores[from as usize].store != store {
            return;
        }
        // Already fenced by this leadership (its Fenced was lost): send it again.
        if let Some((done_store, ballot, end)) = self.fences_done[from as usize] {
            if done_store == store && ballot == leader_ballot {
                self.send(from, PeerMessage::Fenced { ballot, end, store });
                return;
            }
        }
        if 1 + heard < self.config.majority() {
            return;
        }
        if self
            .fence_campaign_ms
            .is_some_and(|t| self.now_ms.saturating_sub(t) < self.config.timeout_ms)
        {
            return;
        }
        self.fence_campaign_ms = Some(self.now_ms);
        self.start_campaign();
        if let RoleState::Candidate(c) = &mut self.role {
            c.fencing.push((from, store));
        }
    }

    /// The leader fenced us: accept from `ballot` on; vote once everything below `end` is
    /// decided here.
    pub(super) fn on_fenced(&mut self, from: Uid, ballot: Ballot, end: Slot, store: u64) {
        if self.standing != Standing::Rebuilding
            || store != self.store
            || ballot.uid != from
            || ballot < self.promised
        {
            return;
        }
        self.promise(ballot);
        self.set_standing(Standing::Fenced { end });
        self.maybe_fenced_voter();
    }

    fn maybe_fenced_voter(&mut self) {
        if let Standing::Fenced { end } = self.standing {
            if self.decided_upto >= end {
                self.set_standing(Standing::Voter);
            }
        }
    }

    /// Time, for a store that does not vote yet: registration retransmission, the fence
    /// request once caught up, and the last step to voter.
    pub(super) fn rejoin_tick(&mut self) {
        let now = self.now_ms;
        let timeout = self.config.timeout_ms;
        if self.announce_store {
            // A store from before store ids: tell the peers its id once.
            self.announce_store = false;
            let store = self.store;
            for peer in self.peers() {
                self.send(peer, PeerMessage::Register { store });
            }
        }
        match self.standing {
            Standing::Voter => {}
            Standing::Unregistered => {
                if self.config.replicas == 1 {
                    self.become_voter();
                    return;
                }
                if self
                    .registration
                    .sent_ms
                    .is_none_or(|t| now.saturating_sub(t) >= timeout)
                {
                    self.registration.sent_ms = Some(now);
                    let store = self.store;
                    let unanswered: Vec<Uid> = self
                        .peers()
                        .filter(|p| self.registration.answers[*p as usize].is_none())
                        .collect();
                    for peer in unanswered {
                        self.send(peer, PeerMessage::Register { store });
                    }
                }
            }
            Standing::Rebuilding => {
                let caught_up = self.catch_up.is_none()
                    && self.catch_up_backlog() <= self.config.chunk_entries_max as u64;
                let leader = self.sticky_leader().filter(|l| *l != self.config.uid);
                if let (true, Some(leader)) = (caught_up, leader) {
                    if self
                        .fence_requested_ms
                        .is_none_or(|t| now.saturating_sub(t) >= timeout)
                    {
                        self.fence_requested_ms = Some(now);
                        let store = self.store;
                        self.send(leader, PeerMessage::FenceRequest { store });
                    }
                }
            }
            Standing::Fenced { .. } => self.maybe_fenced_voter(),
        }
    }

    /// A candidate drops every promise from a store older than the newest it knows of
    /// that uid (the promiser lost its disk since; its promise is void) and asks again.
    pub(super) fn recheck_promise_stores(&mut self) {
        let now = self.now_ms;
        let newest: Vec<u64> = self.stores_view();
        let RoleState::Candidate(campaign) = &mut self.role else {
            return;
        };
        let ballot = campaign.ballot;
        let from_slot = campaign.from_slot;
        let mut again = Vec::new();
        for (uid, progress) in campaign.progress.iter_mut().enumerate() {
            let Some(p) = progress else { continue };
            let counted = campaign.promiser_stores[uid];
            if counted != 0 && counted < newest[uid] {
                p.done = false;
                p.from_slot = from_slot;
                p.sent_ms = now;
                campaign.promiser_stores[uid] = 0;
                again.push(uid as Uid);
            }
        }
        for peer in again {
            self.send_prepare(peer, ballot, from_slot);
        }
    }
}

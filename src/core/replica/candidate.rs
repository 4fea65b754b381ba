//! The candidate: phase 1a. A follower that stopped hearing its leader campaigns with a
//! round above any it has seen (`start_campaign`), collects chunked promises
//! (`on_promise`), and with a majority becomes leader (`become_leader`), re-proposing the
//! highest-ballot value of every reported slot and a no-op in each hole. `on_reject`
//! handles refusals (stickiness, a higher promise).

use super::leader::Leadership;
use super::{Replica, RoleState};
use crate::core::message::{PeerMessage, PromiseEntry};
use crate::core::types::{Ballot, Slot, Uid, Value};
use std::collections::BTreeMap;

/// A campaign's progress with one acceptor.
#[derive(Clone, Debug)]
pub(super) struct PromiseProgress {
    /// All chunks received.
    pub(super) done: bool,
    /// The `from_slot` of the Prepare last sent.
    pub(super) from_slot: Slot,
    pub(super) sent_ms: u64,
}

/// Phase 1 in progress.
#[derive(Debug)]
pub(super) struct Campaign {
    pub(super) ballot: Ballot,
    /// Indexed by uid; `None` for self.
    pub(super) progress: Vec<Option<PromiseProgress>>,
    /// Highest-ranked entry reported per slot: `accepted_in == None` (decided) outranks all.
    pub(super) reported: BTreeMap<Slot, (Option<Ballot>, Value)>,
    /// The leader this campaign replaces (the one we stopped hearing), if known.
    pub(super) deposing: Option<Uid>,
    /// The `from_slot` of the first Prepares (our decided prefix then).
    pub(super) from_slot: Slot,
    /// Per uid, the store id whose promise is counted (0: none yet).
    pub(super) promiser_stores: Vec<u64>,
    /// Rebuilding replicas (uid, store) that asked for a fence before this campaign
    /// began: told `Fenced` when it wins.
    pub(super) fencing: Vec<(Uid, u64)>,
    /// Per uid, the store-id view of its counted promise (`None`: not counted).
    pub(super) promiser_views: Vec<Option<Vec<u64>>>,
}

/// Keeps, per slot, the entry with the highest rank: decided (`None`) above any ballot,
/// then the highest ballot.
pub(super) fn rank_entry(
    reported: &mut BTreeMap<Slot, (Option<Ballot>, Value)>,
    slot: Slot,
    accepted_in: Option<Ballot>,
    value: Value,
) {
    let rank = |b: &Option<Ballot>| match b {
        None => (1u8, Ballot::ZERO),
        Some(b) => (0u8, *b),
    };
    match reported.get(&slot) {
        Some((existing, _)) if rank(existing) >= rank(&accepted_in) => {}
        _ => {
            reported.insert(slot, (accepted_in, value));
        }
    }
}

impl Replica {
    /// Starts phase 1 with a round above any seen. The candidate does not promise itself
    /// until a majority of the others has promised: until then it keeps following a live
    /// leader it hears, so a partitioned replica cannot depose a healthy one.
    pub(super) fn start_campaign(&mut self) {
        if !self.votes() {
            // A store that does not vote yet cannot count itself (lost disks).
            return;
        }
        self.release_clients(None);
        // Rounds from peers are at most ROUND_MAX, so this never wraps.
        let ballot = Ballot::new(
            self.max_round_seen
                .max(self.promised.round)
                .saturating_add(1),
            self.config.uid,
        );
        self.max_round_seen = ballot.round;
        let from_slot = self.decided_upto;
        let mut progress = vec![None; self.config.replicas];
        for peer in self.peers() {
            progress[peer as usize] = Some(PromiseProgress {
                done: false,
                from_slot,
                sent_ms: self.now_ms,
            });
            self.send_prepare(peer, ballot, from_slot);
        }
        let deposing = self.leader.filter(|l| *l != self.config.uid);
        self.role = RoleState::Candidate(Campaign {
            ballot,
            progress,
            reported: BTreeMap::new(),
            deposing,
            from_slot,
            promiser_stores: vec![0; self.config.replicas],
            fencing: Vec::new(),
            promiser_views: vec![None; self.config.replicas],
        });
        self.leader = None;
        self.last_heard_ms = self.now_ms;
        self.maybe_win_campaign();
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_promise(
        &mut self,
        from: Uid,
        stores: &[u64],
        ballot: Ballot,
        from_slot: Slot,
        decided_upto: Slot,
        entries: Vec<PromiseEntry>,
        next_slot: Option<Slot>,
    ) {
        self.note_peer_decided(from, decided_upto);
        // A promise's decided prefix tells us how far behind we are: fetch it meanwhile.
        self.maybe_catch_up();
        let now_ms = self.now_ms;
        let RoleState::Candidate(campaign) = &mut self.role else {
            return;
        };
        if campaign.ballot != ballot {
            return;
        }
        let Some(progress) = campaign.progress[from as usize].as_mut() else {
            return;
        };
        if progress.done || progress.from_slot != from_slot {
            return; // a duplicate, or a chunk answering an earlier request
        }
        // Count a promise only from the newest store we know of its replica, and one
        // store per campaign (`learn_stores` above already dropped older ones).
        let store = stores.get(from as usize).copied().unwrap_or(0);
        let counted = &mut campaign.promiser_stores[from as usize];
        if store == 0
            || store < self.peer_stores[from as usize].store
            || (*counted != 0 && *counted != store)
        {
            return;
        }
        *counted = store;
        if campaign.promiser_views[from as usize].is_none() {
            campaign.promiser_views[from as usize] = Some(stores.to_vec());
        }
        let mut ask_next = None;
        match next_slot {
            Some(next) if next > progress.from_slot => {
                progress.from_slot = next;
                progress.sent_ms = now_ms;
                ask_next = Some(next);
            }
            Some(_) => {} // a stale chunk: the retransmission timer asks again
            None => progress.done = true,
        }
        // A decided value is chosen whatever this campaign's outcome: learn it now, so a
        // candidate far behind streams the log into its store instead of holding it.
        let mut decided = Vec::new();
        for entry in entries {
            match entry.accepted_in {
                None => decided.push((entry.slot, entry.value)),
                Some(_) => rank_entry(
                    &mut campaign.reported,
                    entry.slot,
                    entry.accepted_in,
                    entry.value,
                ),
            }
        }
        for (slot, value) in decided {
            self.decide(slot, value);
        }
        // Slots below our own prefix are decided: we need no reports of them, whoever
        // taught us (other promisers, catch-up), so the next chunk starts past them.
        let ask_next = ask_next.map(|next| next.max(self.decided_upto));
        if let (Some(next), RoleState::Candidate(campaign)) = (ask_next, &mut self.role) {
            if let Some(progress) = campaign.progress[from as usize].as_mut() {
                progress.from_slot = next;
            }
        }
        match ask_next {
            Some(from_slot) => self.send_prepare(from, ballot, from_slot),
            None => self.maybe_win_campaign(),
        }
    }

    /// Sends Prepare(`ballot`, `from_slot`) with our current view of store ids.
    pub(super) fn send_prepare(&mut self, peer: Uid, ballot: Ballot, from_slot: Slot) {
        let stores = self.stores_view();
        self.send(
            peer,
            PeerMessage::Prepare {
                ballot,
                from_slot,
                stores,
            },
        );
    }

    pub(super) fn maybe_win_campaign(&mut self) {
        let RoleState::Candidate(campaign) = &self.role else {
            return;
        };
        let promises = 1 + campaign
            .progress
            .iter()
            .flatten()
            .filter(|p| p.done)
            .count();
        if promises < self.config.majority() {
            return;
        }
        let RoleState::Candidate(campaign) = std::mem::replace(&mut self.role, RoleState::Follower)
        else {
            unreachable!("checked above");
        };
        if campaign.ballot < self.promised {
            // Promised a higher candidate meanwhile: this ballot can no longer lead.
            self.become_follower(None);
            return;
        }
        self.become_leader(campaign);
    }

    /// Phase 1 is complete: promise our own ballot, learn the decided values promises
    /// reported, and re-propose, for every other slot from our decided prefix up to the
    /// highest slot anyone reported, the value with the highest ballot, or a no-op. The
    /// re-proposals go out as the pipeline window allows (`fill_recovered`), so a promise
    /// naming a far slot cannot make one Ready unbounded.
    pub(super) fn become_leader(&mut self, mut campaign: Campaign) {
        let ballot = campaign.ballot;
        self.promise(ballot);
        // Promises reported everything from the campaign's prefix on (decided values
        // too, learned as they came), so no slot depends on a peer that may since have
        // died. Every slot below our prefix now is decided.
        let start = self.decided_upto;
        // Our own acceptor state counts as one promise.
        for (slot, (b, v)) in self.accepted.range(start..) {
            rank_entry(&mut campaign.reported, *slot, Some(*b), v.clone());
        }
        for (slot, v) in self.decided.range(start..) {
            rank_entry(&mut campaign.reported, *slot, None, v.clone());
        }
        // Recovery covers every reported slot, and every decided one (learned from the
        // promises as they came, possibly above a hole).
        let decided_end = self.decided.keys().next_back().map(|s| s.saturating_add(1));
        let end = campaign
            .reported
            .keys()
            .next_back()
            .map(|s| s.saturating_add(1))
            .max(decided_end)
            .map_or(start, |end| end.max(start));
        // The promise recorded above is durable once this Ready is.
        let promise_seq = self.ready.seq;
        let mut leadership = Leadership::new(
            ballot,
            start,
            end,
            self.now_ms,
            promise_seq,
            self.config.replicas,
        );
        self.leader = Some(self.config.uid);
        // Decided values reported by promises are chosen: learn them directly.
        for (slot, (accepted_in, value)) in campaign.reported.split_off(&start) {
            if self.is_decided(slot) {
                continue;
            }
            match accepted_in {
                None => self.decide(slot, value),
                Some(_) => {
                    leadership.recovered.insert(slot, value);
                }
            }
        }
        // Rebuilding replicas that asked before this phase 1 began are fenced by it: a
        // majority of the others promised it, and it recovered everything below `end`.
        // Every counted promiser must have known the requester's store when it promised
        // (a promise from before the request, delayed, does not fence it).
        for (uid, store) in std::mem::take(&mut campaign.fencing) {
            let views_know = campaign
                .promiser_views
                .iter()
                .flatten()
                .all(|view| view.get(uid as usize).is_some_and(|s| *s >= store));
            if self.peer_stores[uid as usize].store == store && views_know {
                self.fences_done[uid as usize] = Some((store, ballot, end));
                self.send(uid, PeerMessage::Fenced { ballot, end, store });
            }
        }
        let mut proposed = Vec::new();
        self.fill_recovered(&mut leadership, &mut proposed);
        self.role = RoleState::Leader(leadership);
        self.send_accepts(&proposed, None);
        self.send_heartbeat();
        self.check_chosen(&proposed);
        self.maybe_catch_up();
    }

    pub(super) fn on_reject(&mut self, ballot: Ballot, promised: Ballot, live_leader: Option<Uid>) {
        self.max_round_seen = self.max_round_seen.max(promised.round);
        let me = self.config.uid;
        match &self.role {
            RoleState::Candidate(c) if c.ballot == ballot => {
                let deposing = c.deposing;
                if let Some(live) = live_leader.filter(|l| *l != me) {
                    self.become_follower(Some(live));
                    if deposing == Some(live) {
                        // The acceptor heard the leader we gave up on a moment after we
                        // last did: if it stays silent, try again after two heartbeats
                        // rather than a whole timeout (keeping the rank order).
                        let retry_ms = (2 * self.config.heartbeat_ms).min(self.config.timeout_ms);
                        self.last_heard_ms = self
                            .now_ms
                            .saturating_sub(self.config.timeout_ms - retry_ms);
                    }
                } else if promised > ballot {
                    self.become_follower(None);
                }
            }
            RoleState::Leader(l) if l.ballot == ballot && promised > ballot => {
                if let Some(live) = live_leader.filter(|l| *l != me) {
                    self.become_follower(Some(live));
                } else {
                    // An acceptor promised a stray candidate while we are alive: lead
                    // again under a higher ballot.
                    self.start_campaign();
                }
            }
            _ => {}
        }
    }
}

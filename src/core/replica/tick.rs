//! Time: on every tick, catch-up retransmission, check-quorum, read expiry, heartbeats
//! and Accept retransmission while leading, Prepare retransmission while campaigning,
//! and the failure detector (with its rank stagger) while following.

use super::{Replica, RoleState};
use crate::core::types::Uid;

impl Replica {
    pub(super) fn on_tick(&mut self) {
        let now = self.now_ms;
        let timeout = self.config.timeout_ms;
        self.rejoin_tick();
        // Catch-up retransmission.
        if self
            .catch_up
            .as_ref()
            .is_some_and(|c| now.saturating_sub(c.sent_ms) >= timeout)
        {
            if let Some(c) = self.catch_up.take() {
                self.catch_up_unanswered_ms[c.peer as usize] = Some(now);
            }
            self.maybe_catch_up();
        }
        // Check-quorum: a leader that cannot hear a majority steps down.
        if self.is_leader() {
            self.check_quorum();
        }
        self.expire_reads();
        match &mut self.role {
            RoleState::Leader(l) => {
                let heartbeat_due =
                    now.saturating_sub(l.heartbeat_sent_ms) >= self.config.heartbeat_ms;
                let resend_due = now.saturating_sub(l.resend_scan_ms) >= self.config.heartbeat_ms;
                if heartbeat_due {
                    self.send_heartbeat();
                }
                if resend_due {
                    self.resend_accepts();
                }
            }
            RoleState::Candidate(c) => {
                let ballot = c.ballot;
                let mut resend = Vec::new();
                for (peer, progress) in c.progress.iter_mut().enumerate() {
                    if let Some(p) = progress {
                        if !p.done && now.saturating_sub(p.sent_ms) >= timeout {
                            p.sent_ms = now;
                            resend.push((peer as Uid, p.from_slot));
                        }
                    }
                }
                for (peer, from_slot) in resend {
                    self.send_prepare(peer, ballot, from_slot);
                }
            }
            RoleState::Follower => {
                let leader = self.leader.unwrap_or(self.promised.uid);
                let n = self.config.replicas as u64;
                let rank = (self.config.uid as u64 + n - leader as u64 - 1) % n;
                let mut stagger = rank * timeout / 2;
                // A replica that knows it lags far behind a peer lets the up-to-date ones
                // try first: its phase 1 would fetch many chunks, and two laggards would
                // pre-empt each other. It still campaigns if nobody else does.
                let ahead = self.peer_decided_upto.iter().copied().max().unwrap_or(0);
                if ahead.saturating_sub(self.decided_upto) > self.config.chunk_entries_max as u64 {
                    stagger += n * timeout / 2;
                }
                if !self.shutting_down
                    && now.saturating_sub(self.last_heard_ms) >= timeout + stagger
                {
                    self.start_campaign();
                }
            }
        }
    }
}

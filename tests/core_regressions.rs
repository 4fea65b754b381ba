//! Schedules that once broke the core, each pinned down by a scripted network
//! (found by review; the random simulator had not produced them).

mod support;
use paxos::core::*;
use support::core_net::*;

/// 5 replicas. A leader (L) that learned a slot by catch-up must not advertise it in its
/// commit index: a follower that accepted another value for that slot in L's ballot
/// would decide it, while a higher ballot chose something else.
#[test]

fn leader_learns_via_catchup_then_commits_to_stale_follower() {
    let mut net = Net::new(5);
    assert!(net.r(0).is_leader());
    // slot 0 = m1 chosen by {0,1,2}; only X (4) learns the commit.
    net.submit(0, 1);
    net.deliver(|f, _, m| f == 0 && matches!(m, PeerMessage::Accept { .. }));
    net.deliver(|f, t, m| {
        t == 0 && (f == 1 || f == 2) && matches!(m, PeerMessage::Accepted { .. })
    });
    net.drop_all();
    assert_eq!(net.r(0).decided_upto(), 1);
    net.tick(0, 50);
    net.tick(0, 100);
    net.deliver(|f, t, m| f == 0 && t == 4 && matches!(m, PeerMessage::Heartbeat { .. }));
    net.drop_all();
    assert_eq!(net.r(4).decided_upto(), 1);
    // t=600: L (uid 1) times out and campaigns; F and X promise.
    net.tick(2, 600);
    net.tick(4, 600);
    net.drop_all();
    net.tick(1, 600);
    assert_eq!(net.r(1).status().role, Role::Candidate);
    net.deliver(|f, t, m| f == 1 && (t == 2 || t == 4) && matches!(m, PeerMessage::Prepare { .. }));
    net.deliver(|_, t, m| t == 1 && matches!(m, PeerMessage::Promise { .. }));
    assert!(net.r(1).is_leader(), "L leads");
    // L's heartbeat reaches 0 (deposes it) and F. Its CatchUpRequest to X is lost.
    net.deliver(|f, t, m| {
        f == 1 && (t == 0 || t == 2) && matches!(m, PeerMessage::Heartbeat { .. })
    });
    net.drop_all();
    // Client m2 at L: slot 1, accepted only by F (L+F = 2 of 5: not chosen).
    net.submit(1, 2);
    net.deliver(|f, t, m| f == 1 && t == 2 && matches!(m, PeerMessage::Accept { .. }));
    net.deliver(|f, t, m| f == 2 && t == 1 && matches!(m, PeerMessage::Accepted { .. }));
    net.drop_all();
    // t=1200: M (uid 3) campaigns, 0 and 4 promise (neither has heard a leader within timeout).
    net.tick(0, 1200);
    net.tick(4, 1200);
    net.drop_all();
    net.tick(3, 1200);
    assert_eq!(net.r(3).status().role, Role::Candidate);
    // 0 and 4 may have started campaigns on their own ticks; deliver M's prepare only.
    net.deliver(|f, t, m| f == 3 && (t == 0 || t == 4) && matches!(m, PeerMessage::Prepare { .. }));
    net.deliver(|f, t, m| t == 3 && (f == 0 || f == 4) && matches!(m, PeerMessage::Promise { .. }));
    assert!(net.r(3).is_leader(), "M leads");
    net.drop_all();
    // Client m3 at M: slot 1, chosen by {3,0,4}.
    net.submit(3, 3);
    net.deliver(|f, t, m| f == 3 && (t == 0 || t == 4) && matches!(m, PeerMessage::Accept { .. }));
    net.deliver(|_f, t, m| t == 3 && matches!(m, PeerMessage::Accepted { .. }));
    net.drop_all();
    net.tick(3, 1300);
    net.deliver(|f, t, m| f == 3 && t == 4 && matches!(m, PeerMessage::Heartbeat { .. }));
    net.drop_all();
    // t=1300: L (still leader of b) retransmits its catch-up to X and learns slot 1 = m3.
    net.tick(1, 1310);
    net.drop_where(|f, t, m| {
        !(f == 1 && t == 4 && matches!(m, PeerMessage::CatchUpRequest { .. }))
    });
    net.deliver(|f, t, m| f == 1 && t == 4 && matches!(m, PeerMessage::CatchUpRequest { .. }));
    net.deliver(|f, t, m| f == 4 && t == 1 && matches!(m, PeerMessage::CatchUp { .. }));
    net.drop_all();
    // L's next heartbeat (ballot b, commit 2) reaches F, which accepted slot 1 in b.
    net.tick(1, 1450);
    net.deliver(|f, t, m| f == 1 && t == 2 && matches!(m, PeerMessage::Heartbeat { .. }));
    // F accepted m2 in L's ballot, but L never chose slot 1: F must not decide it from
    // L's commit index (m3 is chosen there).
    assert_ne!(net.r(2).decided().get(&1), Some(&msg(2)));
    assert_agreement(&net);
}

/// 3 replicas. The only promiser that reported a higher decided prefix dies for good
/// right after the new leader won: the new leader never re-proposes the slots below
/// that prefix and catch-up only ever asks the dead reporter.
#[test]
fn reporter_dies_after_phase1() {
    let mut net = Net::new(3);
    net.submit(0, 1);
    net.deliver(|f, t, m| f == 0 && t == 1 && matches!(m, PeerMessage::Accept { .. }));
    net.deliver(|f, t, m| f == 1 && t == 0 && matches!(m, PeerMessage::Accepted { .. }));
    net.drop_all();
    assert_eq!(net.r(0).decided_upto(), 1);
    // 0 restarts (comes back a follower, slot 0 decided in its store).
    net.crash(0);
    net.now = 10;
    net.start(0);
    net.drop_all();
    // 1 campaigns; 0 promises (reporting decided_upto 1), then 0 dies for good.
    for u in [0, 2] {
        net.tick(u, 600);
    }
    net.drop_all();
    net.tick(1, 600);
    net.deliver(|f, t, m| f == 1 && t == 0 && matches!(m, PeerMessage::Prepare { .. }));
    net.deliver(|f, t, m| f == 0 && t == 1 && matches!(m, PeerMessage::Promise { .. }));
    assert!(net.r(1).is_leader());
    net.crash(0);
    net.drop_where(|_, t, _| t == 0);
    // A client submits m2 at the new leader; everything between 1 and 2 is delivered.
    net.submit(1, 2);
    let mut t = 600;
    while t < 60_000 {
        t += 50;
        net.tick(1, t);
        net.tick(2, t);
        net.drop_where(|_, to, _| to == 0);
        while net.deliver(|f, to, _| (f == 1 && to == 2) || (f == 2 && to == 1)) > 0 {}
        net.drop_where(|_, to, _| to == 0);
    }
    assert!(
        net.replies
            .iter()
            .any(|(_, _, r)| matches!(r, SubmitReply::Committed { id, .. } if id.seq == 2)),
        "m2 never answered"
    );
    assert_eq!(net.r(1).decided_upto(), 2);
    assert_agreement(&net);
}

/// A candidate restarts mid-campaign and reuses its ballot; a delayed last chunk of the
/// first incarnation's chunked promise completes the second incarnation's campaign.
#[test]
fn stale_last_chunk_after_candidate_restart() {
    let mut net = Net::with_chunk(3, 1);
    for s in 1..=3 {
        net.submit(0, s);
    }
    net.deliver(|f, t, m| f == 0 && t == 2 && matches!(m, PeerMessage::Accept { .. }));
    net.deliver(|f, t, m| f == 2 && t == 0 && matches!(m, PeerMessage::Accepted { .. }));
    net.drop_all();
    assert_eq!(net.r(0).decided_upto(), 3);
    net.crash(0);
    // C = 1 campaigns; A = 2 answers chunk by chunk.
    net.tick(2, 600);
    net.drop_all();
    net.tick(1, 600);
    let b = net.r(1).status().ballot;
    for _ in 0..2 {
        net.deliver(|f, t, m| f == 1 && t == 2 && matches!(m, PeerMessage::Prepare { .. }));
        net.deliver(|f, t, m| f == 2 && t == 1 && matches!(m, PeerMessage::Promise { .. }));
    }
    net.deliver(|f, t, m| f == 1 && t == 2 && matches!(m, PeerMessage::Prepare { .. }));
    // A's last chunk (slot 2, next_slot None) is delayed in the network.
    let held: Vec<_> = net
        .outbox
        .iter()
        .filter(|(f, t, m)| *f == 2 && *t == 1 && matches!(m, PeerMessage::Promise { .. }))
        .cloned()
        .collect();
    net.drop_all();
    // C crashes (a candidate persisted nothing) and restarts.
    net.crash(1);
    net.now = 700;
    net.start(1);
    net.tick(1, 1400);
    let b2 = net.r(1).status().ballot;
    assert_eq!(
        b, b2,
        "the scenario needs the restarted candidate to reuse its ballot"
    );
    net.drop_all(); // its fresh Prepare(b, 0) is slow
    for (f, t, m) in held {
        net.outbox.push((f, t, m));
    }
    net.deliver(|_, t, _| t == 1);
    net.deliver(|f, t, m| f == 1 && t == 2 && matches!(m, PeerMessage::Accept { .. }));
    net.deliver(|f, t, m| f == 2 && t == 1 && matches!(m, PeerMessage::Accepted { .. }));
    // The stale chunk answered an earlier Prepare: the new campaign must not complete.
    assert_ne!(net.r(1).status().role, Role::Leader);
    assert_agreement(&net);
}

/// Lost disk (a), issue 13: uid 0 leads (0,0) and gets m1 chosen in slot 0 by {0, 1};
/// its disk is wiped and it restarts before the followers time out. On main it led
/// (0,0) again from slot 0 and got m2 chosen there. Now its fresh store registers, a
/// registrar remembers the old store, and it rebuilds instead of leading.
#[test]
fn wiped_uid0_does_not_lead_ballot_zero_again() {
    let mut net = Net::new(3);
    assert!(net.r(0).is_leader());
    net.submit(0, 1);
    net.deliver(|f, t, m| f == 0 && t == 1 && matches!(m, PeerMessage::Accept { .. }));
    net.deliver(|f, t, m| f == 1 && t == 0 && matches!(m, PeerMessage::Accepted { .. }));
    net.drop_all();
    assert_eq!(net.r(0).decided_upto(), 1, "m1 chosen and acked");
    // The disk is lost: kill, wipe, restart at once.
    net.crash(0);
    net.stores[0] = paxos::storage::MemStorage::default();
    net.now = 50;
    net.start(0);
    assert!(
        !net.r(0).is_leader(),
        "a fresh store waits for its registration"
    );
    assert_eq!(net.r(0).standing(), Standing::Unregistered);
    net.register_all();
    assert_eq!(net.r(0).standing(), Standing::Rebuilding);
    assert!(!net.r(0).is_leader());
    // A Fenced meant for another store of uid 0 (delayed past a wipe) fences nothing.
    net.step(
        0,
        Input::Peer {
            from: 1,
            msg: PeerMessage::Fenced {
                ballot: b(5, 1),
                end: 0,
                store: net.r(0).store() - 1,
            },
        },
    );
    assert_eq!(net.r(0).standing(), Standing::Rebuilding);
    // Its clients are sent elsewhere, and nothing new is chosen in slot 0.
    net.submit(0, 2);
    net.deliver(|_, _, _| true);
    assert!(net
        .replies
        .iter()
        .any(|(u, _, r)| *u == 0 && matches!(r, SubmitReply::NotLeader { id, .. } if id.seq == 2)));
    assert_agreement(&net);
    // The followers time out and elect among themselves; 0 rebuilds and rejoins.
    for t in (100..=3000).step_by(50) {
        for u in 0..3 {
            net.tick(u, t);
        }
        net.deliver(|_, _, _| true);
    }
    assert_eq!(net.r(0).standing(), Standing::Voter, "rebuilt and fenced");
    assert_eq!(net.stores[0].log[0].value(), msg(1), "m1 still in slot 0");
    assert_agreement(&net);
}

/// Lost disk (b), issue 13: m1 is chosen in slot 0 by {0, 1} and acked; follower 1 loses
/// its disk and comes back; the leader dies. On main 1 and 2 then chose m2 in m1's
/// slot. Now 1 rebuilds and votes for nothing until fenced, so 1 and 2 cannot elect
/// without 0: the acknowledged m1 stays; once 0 is back, all three agree on it.
#[test]
fn wiped_follower_of_the_acked_majority_cannot_lose_the_ack() {
    let mut net = Net::new(3);
    net.submit(0, 1);
    net.deliver(|f, t, m| f == 0 && t == 1 && matches!(m, PeerMessage::Accept { .. }));
    net.deliver(|f, t, m| f == 1 && t == 0 && matches!(m, PeerMessage::Accepted { .. }));
    net.drop_all();
    assert_eq!(net.r(0).decided_upto(), 1, "m1 chosen and acked");
    net.crash(1);
    net.stores[1] = paxos::storage::MemStorage::default();
    net.crash(0);
    net.now = 50;
    net.start(1);
    // 1 and 2 alone for a long while: 1 registers with 2 only (0 is down), so it cannot
    // even finish registering; 2 cannot get a majority of promises.
    for t in (100..=3000).step_by(50) {
        net.tick(1, t);
        net.tick(2, t);
        net.deliver(|_, _, _| true);
        net.drop_where(|_, to, _| to == 0);
    }
    assert!(!net.r(1).is_leader() && !net.r(2).is_leader());
    assert!(net.r(2).decided().get(&0).is_none_or(|v| *v == msg(1)));
    assert_agreement(&net);
    // 0 is back: 1 finds its old store remembered, rebuilds, and everyone has m1.
    net.start(0);
    for t in (3050..=8000).step_by(50) {
        for u in 0..3 {
            net.tick(u, t);
        }
        net.deliver(|_, _, _| true);
    }
    assert_eq!(net.r(1).standing(), Standing::Voter);
    for u in 0..3 {
        assert_eq!(
            net.stores[u].log.first().map(|e| e.value()),
            Some(msg(1)),
            "replica {u}"
        );
    }
    assert_agreement(&net);
}

/// A rebuilding store follows a leader's heartbeat but confirms nothing: no ack (read
/// index and check-quorum count acks as promises it may have forgotten).
#[test]
fn rebuilding_store_acks_no_heartbeat() {
    let mut net = Net::new(3);
    net.crash(2);
    net.stores[2] = paxos::storage::MemStorage::default();
    net.now = 50;
    net.start(2);
    net.register_all();
    assert_eq!(net.r(2).standing(), Standing::Rebuilding);
    net.drop_all();
    net.step(
        2,
        Input::Peer {
            from: 1,
            msg: heartbeat(b(1, 1), 0),
        },
    );
    assert_eq!(net.r(2).status().leader, Some(1), "it follows the leader");
    assert!(!net
        .outbox
        .iter()
        .any(|(f, _, m)| *f == 2 && matches!(m, PeerMessage::HeartbeatAck { .. })));
}

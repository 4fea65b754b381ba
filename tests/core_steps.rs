//! The core stepped by hand: one protocol rule per test, inputs in, `Ready` checked.

mod support;

use paxos::core::{
    Ballot, Input, LogAnswer, LogEntry, LogEntryKind, PeerMessage, PersistentState, PromiseEntry,
    Ready, Record, Replica, ReplicaConfig, Role, Session, Slot, SubmitReply, Value,
    CATCH_UP_CHUNK_SCALE,
};
use support::core_net::{accept, accepted, all_messages, b, heartbeat, id, msg, prepare, show};

const HB: u64 = 100;
const TIMEOUT: u64 = 500;

fn config(uid: u32) -> ReplicaConfig {
    ReplicaConfig::new(uid, 3, HB, TIMEOUT)
}

/// A replica on a fresh store whose first Ready (marking the store) is durable.
fn fresh(uid: u32) -> Replica {
    let mut r = Replica::new(config(uid), support::core_net::registered_state(), 0);
    let first = r.take_ready();
    assert_eq!(first.records, vec![Record::Promise(Ballot::ZERO)]);
    r.step(Input::Persisted { seq: first.seq });
    r
}

/// Tells `r` that `ready`'s records are durable.
fn persisted(r: &mut Replica, ready: &Ready) {
    r.step(Input::Persisted { seq: ready.seq });
}

/// Lets a fresh follower time out (leader 0 silent) and campaign; returns its ballot.
fn campaign(r: &mut Replica) -> Ballot {
    r.step(Input::Tick { now_ms: TIMEOUT });
    assert_eq!(r.status().role, Role::Candidate);
    let _ = r.take_ready();
    r.status().ballot
}

fn submit(r: &mut Replica, client: u64, seq: u64) {
    r.step(support::core_net::submit_input(client, seq));
}

#[test]
fn fresh_uid0_leads_ballot_zero_without_phase1() {
    let mut r = fresh(0);
    assert_eq!(r.status().role, Role::Leader);
    assert_eq!(r.status().ballot, Ballot::ZERO);
    submit(&mut r, 1, 1);
    let ready = r.take_ready();
    assert_eq!(
        ready.records,
        vec![Record::Accepted {
            slot: 0,
            ballot: Ballot::ZERO,
            value: msg(1)
        }],
        "{}",
        show(&ready)
    );
    assert!(
        ready.replies.is_empty(),
        "no reply before a majority accepted"
    );
    // One follower accepts, the leader's own accept is durable: a majority (2 of 3).
    r.step(Input::Peer {
        from: 1,
        msg: accepted(Ballot::ZERO, 0, 1, 0),
    });
    persisted(&mut r, &ready);
    let ready = r.take_ready();
    assert_eq!(
        ready.replies,
        vec![(1, SubmitReply::Committed { id: id(1), slot: 0 })],
        "{}",
        show(&ready)
    );
    assert_eq!(r.decided_upto(), 1);
}

/// The commit path: the leader's Accepts leave before its own accept is durable; its own
/// vote counts only once it is; the reply does not wait for the (lazy) Decided record.
#[test]
fn one_fsync_round_leader_accepts_in_parallel_and_counts_itself_once_durable() {
    let mut r = fresh(0);
    submit(&mut r, 1, 1);
    let proposal = r.take_ready();
    assert_eq!(proposal.messages_now.len(), 2, "{}", show(&proposal));
    assert!(
        proposal.messages.is_empty(),
        "Accepts wait for nothing: {}",
        show(&proposal)
    );
    // A follower's Accepted alone is not a majority while our accept is not durable.
    r.step(Input::Peer {
        from: 1,
        msg: accepted(Ballot::ZERO, 0, 1, 0),
    });
    let ready = r.take_ready();
    assert!(ready.replies.is_empty(), "{}", show(&ready));
    assert_eq!(r.decided_upto(), 0);
    // Our accept becomes durable: chosen, and the reply goes in the same Ready as the
    // Decided record, which it does not wait for.
    persisted(&mut r, &proposal);
    let ready = r.take_ready();
    assert_eq!(
        ready.records,
        vec![Record::Decided {
            slot: 0,
            value: msg(1),
            dup: false,
        }]
    );
    assert_eq!(
        ready.replies,
        vec![(1, SubmitReply::Committed { id: id(1), slot: 0 })]
    );
    // Durable first, the follower's vote later: chosen on the follower's vote.
    submit(&mut r, 1, 2);
    let proposal = r.take_ready();
    persisted(&mut r, &proposal);
    assert!(r.take_ready().replies.is_empty());
    r.step(Input::Peer {
        from: 2,
        msg: accepted(Ballot::ZERO, 1, 1, 0),
    });
    assert_eq!(
        r.take_ready().replies,
        vec![(1, SubmitReply::Committed { id: id(2), slot: 1 })]
    );
}

/// An acceptor's Accepted and Promise vouch for its records: they wait for the flush.
#[test]
fn acceptor_answers_only_after_its_records_are_durable() {
    let mut r = fresh(1);
    r.step(Input::Peer {
        from: 0,
        msg: support::core_net::accept(Ballot::ZERO, 0, vec![msg(1)], 0),
    });
    let ready = r.take_ready();
    assert_eq!(ready.records.len(), 1);
    assert!(ready.messages_now.is_empty(), "{}", show(&ready));
    assert!(matches!(
        all_messages(&ready).as_slice(),
        [(0, PeerMessage::Accepted { count: 1, .. })]
    ));
}

/// A new leader's first Accepts wait for the promise of its ballot to be durable (its
/// phase-1 majority counted it); once it is, Accepts go at once again.
#[test]
fn new_leader_accepts_wait_for_its_own_promise_once() {
    let mut r = fresh(1);
    let ballot = campaign(&mut r);
    for peer in [0, 2] {
        r.step(Input::Peer {
            from: peer,
            msg: support::core_net::promise(ballot, 0, 0, vec![]),
        });
    }
    assert_eq!(r.status().role, Role::Leader);
    let won = r.take_ready();
    assert_eq!(won.records, vec![Record::Promise(ballot)]);
    submit(&mut r, 1, 1);
    let ready = r.take_ready();
    assert!(
        ready
            .messages_now
            .iter()
            .all(|(_, m)| !matches!(m, PeerMessage::Accept { .. })),
        "an Accept left before the promise is durable: {}",
        show(&ready)
    );
    assert_eq!(all_messages(&ready).len(), 2, "{}", show(&ready));
    persisted(&mut r, &ready);
    let _ = r.take_ready();
    submit(&mut r, 1, 2);
    let ready = r.take_ready();
    assert_eq!(ready.messages_now.len(), 2, "{}", show(&ready));
}

#[test]
fn others_start_as_followers_and_redirect_clients() {
    let mut r = fresh(2);
    assert_eq!(r.status().role, Role::Follower);
    submit(&mut r, 9, 1);
    let ready = r.take_ready();
    assert_eq!(
        ready.replies,
        vec![(
            9,
            SubmitReply::NotLeader {
                id: id(1),
                leader: Some(0)
            }
        )]
    );
}

#[test]
fn acceptor_rejects_accept_below_its_promise() {
    let mut r = fresh(1);
    r.step(Input::Tick { now_ms: 2_000 }); // no leader heard: not sticky
    r.step(Input::Peer {
        from: 2,
        msg: PeerMessage::Prepare {
            ballot: Ballot::new(3, 2),
            from_slot: 0,
            stores: support::core_net::stores3(),
        },
    });
    let ready = r.take_ready();
    assert_eq!(ready.records, vec![Record::Promise(Ballot::new(3, 2))]);
    r.step(Input::Peer {
        from: 0,
        msg: PeerMessage::Accept {
            ballot: Ballot::ZERO,
            first_slot: 0,
            values: vec![msg(1)],
            decided_upto: 0,
            decided_above: vec![],
        },
    });
    let ready = r.take_ready();
    assert!(
        ready.records.is_empty(),
        "nothing accepted below the promise"
    );
    assert!(matches!(
        all_messages(&ready).as_slice(),
        [(0, PeerMessage::Reject { promised, .. })] if *promised == Ballot::new(3, 2)
    ));
}

#[test]
fn sticky_acceptor_refuses_a_candidate_while_the_leader_is_alive() {
    let mut r = fresh(2); // rank 1 after leader 0: its own campaign waits 750 ms
    r.step(Input::Tick { now_ms: 100 });
    r.step(Input::Peer {
        from: 0,
        msg: PeerMessage::Heartbeat {
            beat: 1,
            ballot: Ballot::ZERO,
            decided_upto: 0,
            decided_above: vec![],
        },
    });
    let ready = r.take_ready();
    assert!(
        matches!(
            ready.messages_now.as_slice(),
            [(0, PeerMessage::HeartbeatAck { beat: 1, .. })]
        ) && ready.records.is_empty(),
        "only a heartbeat ack: {}",
        show(&ready)
    );
    r.step(Input::Tick { now_ms: 300 });
    r.step(Input::Peer {
        from: 1,
        msg: PeerMessage::Prepare {
            ballot: Ballot::new(5, 1),
            from_slot: 0,
            stores: support::core_net::stores3(),
        },
    });
    let ready = r.take_ready();
    assert!(ready.records.is_empty());
    assert!(matches!(
        all_messages(&ready).as_slice(),
        [(
            1,
            PeerMessage::Reject {
                live_leader: Some(0),
                ..
            }
        )]
    ));
    // Once the leader is silent for timeout_ms, the same prepare is promised.
    r.step(Input::Tick {
        now_ms: 100 + TIMEOUT,
    });
    r.step(Input::Peer {
        from: 1,
        msg: PeerMessage::Prepare {
            ballot: Ballot::new(5, 1),
            from_slot: 0,
            stores: support::core_net::stores3(),
        },
    });
    let ready = r.take_ready();
    assert_eq!(ready.records, vec![Record::Promise(Ballot::new(5, 1))]);
    assert!(matches!(
        all_messages(&ready).as_slice(),
        [(1, PeerMessage::Promise { .. })]
    ));
}

#[test]
fn follower_campaigns_after_timeout_with_rank_stagger() {
    // Leader 0 is silent: uid 1 (rank 0) campaigns at timeout, uid 2 (rank 1) later.
    let mut one = fresh(1);
    let mut two = fresh(2);
    one.step(Input::Tick { now_ms: TIMEOUT });
    two.step(Input::Tick { now_ms: TIMEOUT });
    assert_eq!(one.status().role, Role::Candidate);
    assert_eq!(two.status().role, Role::Follower);
    let ready = one.take_ready();
    assert!(
        ready.records.is_empty(),
        "a candidate does not promise itself yet"
    );
    assert_eq!(all_messages(&ready).len(), 2);
    two.step(Input::Tick {
        now_ms: TIMEOUT + TIMEOUT / 2,
    });
    assert_eq!(two.status().role, Role::Candidate);
}

#[test]
fn new_leader_reproposes_highest_ballot_value_and_fills_holes_with_noops() {
    let mut r = fresh(1);
    let ballot = campaign(&mut r);
    // Uid 2 promises: slot 0 accepted in (0,0) and slot 2 accepted in (1,0); slot 1 is a
    // hole that nobody accepted.
    r.step(Input::Peer {
        from: 2,
        msg: PeerMessage::Promise {
            ballot,
            stores: support::core_net::stores3(),
            from_slot: 0,
            decided_upto: 0,
            entries: vec![
                PromiseEntry {
                    slot: 0,
                    accepted_in: Some(Ballot::ZERO),
                    value: msg(1),
                },
                PromiseEntry {
                    slot: 2,
                    accepted_in: Some(Ballot::new(1, 0)),
                    value: msg(3),
                },
            ],
            next_slot: None,
        },
    });
    assert_eq!(r.status().role, Role::Leader);
    let ready = r.take_ready();
    assert_eq!(ready.records[0], Record::Promise(ballot));
    let accepted: Vec<_> = ready
        .records
        .iter()
        .filter_map(|rec| match rec {
            Record::Accepted { slot, value, .. } => Some((*slot, value.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(accepted, vec![(0, msg(1)), (1, Value::Noop), (2, msg(3))]);
}

#[test]
fn chunked_promises_are_fetched_until_the_last_chunk() {
    let mut r = fresh(1);
    let ballot = campaign(&mut r);
    r.step(Input::Peer {
        from: 2,
        msg: PeerMessage::Promise {
            ballot,
            stores: support::core_net::stores3(),
            from_slot: 0,
            decided_upto: 0,
            entries: vec![PromiseEntry {
                slot: 0,
                accepted_in: Some(Ballot::ZERO),
                value: msg(1),
            }],
            next_slot: Some(1),
        },
    });
    assert_eq!(
        r.status().role,
        Role::Candidate,
        "not done before the last chunk"
    );
    let ready = r.take_ready();
    assert!(matches!(
        all_messages(&ready).as_slice(),
        [(2, PeerMessage::Prepare { from_slot: 1, .. })]
    ));
}

#[test]
fn restarted_replica_comes_back_as_follower_and_never_resumes_its_ballot() {
    let mut state = PersistentState {
        promised: Some(Ballot::ZERO),
        ..support::core_net::registered_state()
    };
    state.accepted.insert(0, (Ballot::ZERO, msg(1)));
    let mut r = Replica::new(config(0), state, 0);
    assert_eq!(r.status().role, Role::Follower);
    assert!(r.take_ready().records.is_empty());
    // If it must lead, it campaigns with a higher round.
    r.step(Input::Tick {
        now_ms: 10 * TIMEOUT,
    });
    assert_eq!(r.status().role, Role::Candidate);
    assert!(r.status().ballot > Ballot::ZERO);
}

#[test]
fn duplicate_submits_join_or_get_the_original_slot() {
    let mut r = fresh(0);
    submit(&mut r, 1, 1);
    let proposal = r.take_ready();
    persisted(&mut r, &proposal);
    submit(&mut r, 2, 1); // a retry of the same request while in flight
    let ready = r.take_ready();
    assert!(ready.records.is_empty(), "joined, not proposed again");
    r.step(Input::Peer {
        from: 2,
        msg: PeerMessage::Accepted {
            ballot: Ballot::ZERO,
            first_slot: 0,
            count: 1,
            decided_upto: 0,
        },
    });
    let ready = r.take_ready();
    assert_eq!(ready.replies.len(), 2, "both waiting clients are answered");
    submit(&mut r, 3, 1); // a retry after commit
    let ready = r.take_ready();
    assert_eq!(
        ready.replies,
        vec![(3, SubmitReply::Committed { id: id(1), slot: 0 })]
    );
}

#[test]
fn initial_leader_skips_slots_and_applying_marks_duplicates() {
    let mut cfg = config(0);
    cfg.skip_slots = [1, 2].into_iter().collect();
    let mut r = Replica::new(cfg, support::core_net::registered_state(), 0);
    let _ = r.take_ready();
    submit(&mut r, 1, 1);
    submit(&mut r, 1, 2);
    let ready = r.take_ready();
    let slots: Vec<_> = ready
        .records
        .iter()
        .filter_map(|rec| match rec {
            Record::Accepted { slot, .. } => Some(*slot),
            _ => None,
        })
        .collect();
    assert_eq!(slots, vec![0, 3]);
}

/// A follower fed the log [m1, noop, m1] by leader 0.
fn follower_with_a_dup() -> (Replica, Ready) {
    let mut r = fresh(1);
    r.step(Input::Peer {
        from: 0,
        msg: accept(Ballot::ZERO, 0, vec![msg(1), Value::Noop, msg(1)], 0),
    });
    let accepted = r.take_ready();
    persisted(&mut r, &accepted);
    r.step(Input::Peer {
        from: 0,
        msg: heartbeat(Ballot::ZERO, 3),
    });
    let applied = r.take_ready();
    (r, applied)
}

#[test]
fn applying_marks_a_later_copy_dup_in_its_decided_record() {
    let (r, applied) = follower_with_a_dup();
    let decided: Vec<(Slot, bool)> = applied
        .records
        .iter()
        .filter_map(|rec| match rec {
            Record::Decided { slot, dup, .. } => Some((*slot, *dup)),
            _ => None,
        })
        .collect();
    assert_eq!(
        decided,
        vec![(0, false), (1, false), (2, true)],
        "{}",
        show(&applied)
    );
    let kinds: Vec<_> = r.log_entries(0, 10).into_iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![LogEntryKind::Msg, LogEntryKind::Noop, LogEntryKind::Dup]
    );
}

#[test]
fn applied_slots_leave_the_core_once_durable_and_old_answers_come_from_the_store() {
    let (mut r, applied) = follower_with_a_dup();
    // Not durable yet: the core still holds and serves them.
    assert_eq!(r.stored_upto(), 0);
    assert_eq!(r.log_entries(0, 10).len(), 3);
    persisted(&mut r, &applied);
    assert_eq!(r.stored_upto(), 3);
    assert!(
        r.decided().is_empty(),
        "the core dropped what the store holds"
    );
    assert!(
        r.log_entries(0, 10).is_empty(),
        "reads below stored_upto go to the store"
    );
    // A catch-up request and a Prepare for old slots: the driver completes them.
    r.step(Input::Peer {
        from: 2,
        msg: PeerMessage::CatchUpRequest { from_slot: 1 },
    });
    // Leader 0 falls silent; 2 campaigns past our stickiness.
    r.step(Input::Tick {
        now_ms: TIMEOUT + 1,
    });
    r.step(Input::Peer {
        from: 2,
        msg: prepare(b(5, 2), 0),
    });
    let ready = r.take_ready();
    assert_eq!(ready.log_sends.len(), 2, "{}", show(&ready));
    assert!(matches!(
        ready.log_sends[0].answer,
        LogAnswer::CatchUp { decided_upto: 3 }
    ));
    assert_eq!(
        (ready.log_sends[0].from_slot, ready.log_sends[0].upto),
        (1, 3)
    );
    // A CatchUp chunk is CATCH_UP_CHUNK_SCALE Promise chunks (one is in flight at a time).
    let chunk = config(1).chunk_entries_max;
    assert_eq!(ready.log_sends[0].entries_max, chunk * CATCH_UP_CHUNK_SCALE);
    assert_eq!(ready.log_sends[1].entries_max, chunk);
    let LogAnswer::Promise { ballot, .. } = ready.log_sends[1].answer else {
        panic!("expected a promise: {}", show(&ready));
    };
    assert_eq!(ballot, b(5, 2));
    // Completed from what a store returns: the Promise vouches (sent after the flush).
    let store: Vec<LogEntry> = vec![
        LogEntry::from_decided(0, &msg(1), true),
        LogEntry::from_decided(1, &Value::Noop, true),
        LogEntry::from_decided(2, &msg(1), false),
    ];
    let (m, vouches) = ready.log_sends[1].complete(store.clone()).expect("entries");
    assert!(vouches);
    let PeerMessage::Promise {
        entries, next_slot, ..
    } = m
    else {
        panic!("not a promise");
    };
    assert_eq!(entries.len(), 3);
    assert!(entries.iter().all(|e| e.accepted_in.is_none()));
    assert_eq!(entries[2].value, msg(1), "a dup is still the decided value");
    assert_eq!(
        next_slot, None,
        "the core holds nothing above: the last chunk"
    );
    assert!(
        ready.log_sends[0].complete(Vec::new()).is_none(),
        "nothing read: no answer"
    );
}

#[test]
fn a_restart_rebuilds_sessions_from_the_checkpoint_and_the_tail() {
    let mut cfg = config(1);
    cfg.sessions_checkpoint_slots = 2;
    let mut r = Replica::new(cfg.clone(), support::core_net::registered_state(), 0);
    let first = r.take_ready();
    persisted(&mut r, &first);
    r.step(Input::Peer {
        from: 0,
        msg: accept(Ballot::ZERO, 0, vec![msg(1), msg(2), msg(3)], 0),
    });
    let accepted = r.take_ready();
    persisted(&mut r, &accepted);
    r.step(Input::Peer {
        from: 0,
        msg: heartbeat(Ballot::ZERO, 3),
    });
    let applied = r.take_ready();
    let checkpoint = applied.records.iter().find_map(|rec| match rec {
        Record::SessionsCheckpoint { upto, sessions } => Some((*upto, sessions.clone())),
        _ => None,
    });
    let (upto, sessions) = checkpoint.expect("a checkpoint after 2 slots");
    assert_eq!(upto, 2, "taken once 2 slots are applied");
    assert_eq!(sessions.len(), 1, "one client: its latest request");
    assert_eq!((sessions[0].seq, sessions[0].slot), (2, 1));
    // Restart from a store holding the log [m1, m2, m3] with the checkpoint at 2 and the
    // tail [m3]: a retry of m3 is answered from the session, with its slot.
    let state = PersistentState {
        promised: Some(Ballot::ZERO),
        decided_upto: 3,
        sessions: vec![Session {
            client_id: 7,
            seq: 2,
            slot: 1,
        }],
        sessions_upto: 2,
        tail: vec![LogEntry::from_decided(2, &msg(3), true)],
        ..PersistentState::default()
    };
    let mut r = Replica::new(cfg, state, 0);
    assert_eq!(r.decided_upto(), 3);
    submit(&mut r, 9, 3);
    submit(&mut r, 9, 1);
    let ready = r.take_ready();
    assert_eq!(
        ready.replies,
        vec![
            (9, SubmitReply::Committed { id: id(3), slot: 2 }),
            (
                9,
                SubmitReply::Rejected {
                    id: id(1),
                    reason: ready
                        .replies
                        .get(1)
                        .and_then(|(_, r)| match r {
                            SubmitReply::Rejected { reason, .. } => Some(reason.clone()),
                            _ => None,
                        })
                        .unwrap_or_default(),
                }
            )
        ],
        "{}",
        show(&ready)
    );
    assert!(
        matches!(&ready.replies[1].1, SubmitReply::Rejected { reason, .. } if reason.contains("superseded"))
    );
}

#[test]
fn oversized_message_is_refused_with_a_reason() {
    let mut r = fresh(0);
    r.step(Input::Submit {
        client: 1,
        id: id(1),
        body: "x".repeat(70_000),
    });
    let ready = r.take_ready();
    assert!(matches!(
        ready.replies.as_slice(),
        [(1, SubmitReply::Rejected { reason, .. })] if reason.contains("over the limit")
    ));
    assert!(ready.records.is_empty());
}

#[test]
fn reading_the_log_beyond_the_decided_prefix_is_empty_not_a_panic() {
    let r = fresh(1);
    assert!(r.log_entries(0, 10).is_empty());
    assert!(r.log_entries(1_000_000, 10).is_empty());
}

#[test]
fn candidate_refused_for_the_leader_it_deposes_retries_after_two_heartbeats() {
    let mut r = fresh(1);
    let ballot = campaign(&mut r);
    // uid 2 heard leader 0 a moment later than we did: still sticky.
    r.step(Input::Peer {
        from: 2,
        msg: PeerMessage::Reject {
            ballot,
            promised: Ballot::ZERO,
            live_leader: Some(0),
        },
    });
    assert_eq!(r.status().role, Role::Follower);
    r.step(Input::Tick {
        now_ms: TIMEOUT + 2 * HB - 1,
    });
    assert_eq!(r.status().role, Role::Follower);
    r.step(Input::Tick {
        now_ms: TIMEOUT + 2 * HB,
    });
    assert_eq!(
        r.status().role,
        Role::Candidate,
        "retries, not a whole timeout later"
    );
    assert!(r.status().ballot > ballot);
}

#[test]
fn a_deposed_leader_tells_its_waiting_clients_where_to_go() {
    let mut r = fresh(0);
    submit(&mut r, 1, 1);
    let _ = r.take_ready();
    // A higher ballot's leader (uid 2) is heard: the in-flight client is redirected now.
    r.step(Input::Peer {
        from: 2,
        msg: PeerMessage::Heartbeat {
            beat: 1,
            ballot: Ballot::new(4, 2),
            decided_upto: 0,
            decided_above: vec![],
        },
    });
    let ready = r.take_ready();
    assert_eq!(r.status().role, Role::Follower);
    assert_eq!(
        ready.replies,
        vec![(
            1,
            SubmitReply::NotLeader {
                id: id(1),
                leader: Some(2)
            }
        )]
    );
}

// ------------------------------------------------------------ hostile input is bounded

/// An Accept at slot 1,000,000 (within the lookahead, so accepted) must not make the next
/// leader put a million no-op records into one Ready: re-proposals follow the window.
#[test]
fn new_leader_fills_a_far_accept_within_the_pipeline_window() {
    let mut r = fresh(1);
    r.step(Input::Peer {
        from: 0,
        msg: support::core_net::accept(Ballot::ZERO, 1_000_000, vec![msg(1)], 0),
    });
    let _ = r.take_ready();
    r.step(Input::Tick { now_ms: TIMEOUT });
    let _ = r.take_ready();
    let ballot = r.status().ballot;
    for peer in [0, 2] {
        r.step(Input::Peer {
            from: peer,
            msg: support::core_net::promise(ballot, 0, 0, vec![]),
        });
    }
    assert_eq!(r.status().role, Role::Leader);
    let ready = r.take_ready();
    let window = config(1).inflight_slots_max;
    assert!(
        ready.records.len() <= window + 1,
        "{} records in one Ready (window {window})",
        ready.records.len()
    );
}

/// A Promise naming slot 2^40, an Accept at 2^40, a CatchUp entry at 2^40: refused with
/// a warning naming the peer; nothing is recorded or proposed.
#[test]
fn far_slots_from_a_peer_are_refused_with_a_warning() {
    let far = 1u64 << 40;
    let mut r = fresh(1);
    r.step(Input::Peer {
        from: 0,
        msg: support::core_net::accept(Ballot::ZERO, far, vec![msg(1)], 0),
    });
    let ready = r.take_ready();
    assert!(ready.records.is_empty(), "{}", show(&ready));
    assert_eq!(ready.warnings.len(), 1, "{}", show(&ready));
    assert_eq!(ready.warnings[0].0, 0, "names the peer");
    assert!(ready.warnings[0].1.contains("slot"), "{:?}", ready.warnings);

    let ballot = campaign(&mut r);
    r.step(Input::Peer {
        from: 0,
        msg: support::core_net::promise(
            ballot,
            0,
            0,
            vec![support::core_net::reported(far, Some(Ballot::ZERO), msg(2))],
        ),
    });
    r.step(Input::Peer {
        from: 2,
        msg: support::core_net::promise(ballot, 0, 0, vec![]),
    });
    let ready = r.take_ready();
    assert_eq!(ready.warnings.len(), 1, "{}", show(&ready));
    assert!(ready.records.len() <= 1, "{}", show(&ready));

    r.step(Input::Peer {
        from: 2,
        msg: PeerMessage::CatchUp {
            entries: vec![(far, msg(3))],
            decided_upto: far + 1,
        },
    });
    let ready = r.take_ready();
    assert_eq!(ready.warnings.len(), 1, "{}", show(&ready));
    assert!(r.decided().is_empty());
}

/// A ballot round of u64::MAX is refused, and campaigning after the highest round a peer
/// may name does not wrap to 0 (which would end all elections).
#[test]
fn a_round_of_u64_max_is_refused_and_rounds_never_wrap() {
    let mut r = fresh(1);
    r.step(Input::Peer {
        from: 2,
        msg: support::core_net::prepare(Ballot::new(u64::MAX, 2), 0),
    });
    let ready = r.take_ready();
    assert!(ready.records.is_empty(), "{}", show(&ready));
    assert_eq!(ready.warnings.len(), 1, "{}", show(&ready));
    // The highest allowed round is taken; our next campaign goes above it, not to 0.
    r.step(Input::Peer {
        from: 2,
        msg: support::core_net::prepare(Ballot::new(paxos::core::ROUND_MAX, 2), 0),
    });
    let _ = r.take_ready();
    r.step(Input::Tick {
        now_ms: 10 * TIMEOUT,
    });
    let ballot = r.status().ballot;
    assert_eq!(r.status().role, Role::Candidate);
    assert!(ballot.round > paxos::core::ROUND_MAX, "round {ballot}");
}

/// An Accepted with a count of u64::MAX (slots past the end of the slot space) neither
/// panics nor chooses anything it should not.
#[test]
fn a_huge_accepted_count_is_harmless() {
    let mut r = fresh(0);
    submit(&mut r, 1, 1);
    let _ = r.take_ready();
    r.step(Input::Peer {
        from: 1,
        msg: accepted(Ballot::ZERO, 5, u64::MAX, 0),
    });
    let ready = r.take_ready();
    assert!(ready.replies.is_empty(), "{}", show(&ready));
    assert_eq!(r.decided_upto(), 0);
}

// ------------------------------------------------------------ check-quorum, read index

fn ack(ballot: Ballot, beat: u64) -> PeerMessage {
    PeerMessage::HeartbeatAck {
        ballot,
        beat,
        decided_upto: 0,
    }
}

fn beats(ready: &Ready) -> Vec<u64> {
    ready
        .messages_now
        .iter()
        .filter_map(|(_, m)| match m {
            PeerMessage::Heartbeat { beat, .. } => Some(*beat),
            _ => None,
        })
        .collect()
}

/// A leader that hears no majority for `timeout_ms` steps down; one that hears a single
/// follower (a majority of 3 with itself) stays.
#[test]
fn check_quorum_leader_steps_down_when_a_majority_is_silent() {
    let mut r = fresh(0);
    let mut now = 0;
    while now < 3 * TIMEOUT {
        now += HB;
        r.step(Input::Tick { now_ms: now });
        let ready = r.take_ready();
        for beat in beats(&ready) {
            r.step(Input::Peer {
                from: 1,
                msg: ack(Ballot::ZERO, beat),
            });
        }
    }
    assert_eq!(
        r.status().role,
        Role::Leader,
        "follower 1 keeps it a majority"
    );
    // Now nobody answers.
    let silent_from = now;
    while r.status().role == Role::Leader && now < silent_from + 3 * TIMEOUT {
        now += HB;
        r.step(Input::Tick { now_ms: now });
        let _ = r.take_ready();
    }
    assert_eq!(r.status().role, Role::Follower);
    assert!(
        now - silent_from <= TIMEOUT + HB,
        "stepped down after {}ms",
        now - silent_from
    );
}

/// A read at the leader is confirmed only by acks of a heartbeat sent after it arrived:
/// acks of earlier beats (a deposed leader may still collect those) do not count.
#[test]
fn read_index_waits_for_a_majority_to_ack_a_later_beat() {
    let mut r = fresh(0);
    r.step(Input::Tick { now_ms: HB });
    let first = beats(&r.take_ready());
    assert_eq!(first, vec![1, 1]);
    r.step(Input::ReadIndex { read: 7 });
    let ready = r.take_ready();
    assert!(ready.reads.is_empty(), "{}", show(&ready));
    assert_eq!(
        beats(&ready),
        vec![2, 2],
        "a beat goes at once for the read"
    );
    // A late ack of beat 1 does not confirm it.
    r.step(Input::Peer {
        from: 1,
        msg: ack(Ballot::ZERO, 1),
    });
    assert!(r.take_ready().reads.is_empty());
    r.step(Input::Peer {
        from: 2,
        msg: ack(Ballot::ZERO, 2),
    });
    assert_eq!(r.take_ready().reads, vec![(7, Some(0))]);
}

/// A follower forwards a read to its leader and answers with the index the leader sends;
/// with no reply within `timeout_ms`, the read is refused.
#[test]
fn follower_forwards_reads_to_the_leader() {
    let mut r = fresh(1);
    r.step(Input::Peer {
        from: 0,
        msg: support::core_net::heartbeat(Ballot::ZERO, 0),
    });
    let _ = r.take_ready();
    r.step(Input::ReadIndex { read: 2 });
    let ready = r.take_ready();
    let id = match all_messages(&ready).as_slice() {
        [(0, PeerMessage::ReadIndexRequest { id })] => *id,
        other => panic!("expected a ReadIndexRequest to 0: {other:?}"),
    };
    r.step(Input::Peer {
        from: 0,
        msg: PeerMessage::ReadIndexReply {
            id,
            read_index: Some(5),
        },
    });
    assert_eq!(r.take_ready().reads, vec![(2, Some(5))]);
    r.step(Input::ReadIndex { read: 3 });
    let _ = r.take_ready();
    r.step(Input::Tick { now_ms: TIMEOUT });
    let ready = r.take_ready();
    assert!(ready.reads.contains(&(3, None)), "{}", show(&ready));
}

//! The history checker (tests/support/history.rs) on hand-made histories: one that
//! satisfies every property, and one breaking each property in turn. No root needed.

mod support;

use support::history::{check, check_with, Checks, Entry, History, ReadOp, SubmitOp, Violation};

fn submit(id: &str, invoke_us: u64, ack: Option<(u64, u64)>) -> SubmitOp {
    SubmitOp {
        id: id.to_string(),
        invoke_us,
        ack,
    }
}

fn read(uid: u32, invoke_us: u64, complete_us: u64, log: Vec<Entry>) -> ReadOp {
    ReadOp {
        uid,
        invoke_us,
        complete_us,
        log,
    }
}

/// a at slot 0 (acked at 10), b at 1 (acked at 30), a no-op at 2, a duplicate of a at 3,
/// c unacked at 4; reads: one before anything, one after a's ack, one after both.
fn good() -> (History, Vec<(u32, Vec<Entry>)>) {
    let history = History {
        submits: vec![
            submit("1:1", 0, Some((10, 0))),
            submit("2:1", 5, Some((30, 1))),
            submit("3:1", 40, None),
        ],
        reads: vec![
            read(0, 0, 2, vec![]),
            read(1, 11, 12, vec![Entry::msg(0, "1:1")]),
            read(
                2,
                31,
                35,
                vec![Entry::msg(0, "1:1"), Entry::msg(1, "2:1"), Entry::noop(2)],
            ),
        ],
    };
    let log = vec![
        Entry::msg(0, "1:1"),
        Entry::msg(1, "2:1"),
        Entry::noop(2),
        Entry::dup(3, "1:1"),
        Entry::msg(4, "3:1"),
    ];
    let finals = vec![(0, log.clone()), (1, log.clone()), (2, log[..4].to_vec())];
    (history, finals)
}

#[test]
fn a_correct_history_passes() {
    let (history, finals) = good();
    assert_eq!(check(&history, &finals), vec![]);
}

#[test]
fn disagreement_between_replicas_is_found() {
    let (history, mut finals) = good();
    finals[2].1[2] = Entry::msg(2, "9:9");
    let v = check(&history, &finals);
    assert!(
        matches!(&v[..], [Violation::Disagreement { slot: 2, .. }]),
        "{v:?}"
    );
}

#[test]
fn an_acked_message_missing_from_one_replica_is_lost() {
    let (history, mut finals) = good();
    for (_, log) in finals.iter_mut() {
        log[1] = Entry::noop(1);
    }
    let v = check(&history, &finals);
    assert_eq!(
        v.iter()
            .filter(|x| matches!(x, Violation::Lost { slot: 1, .. }))
            .count(),
        3,
        "{v:?}"
    );
}

#[test]
fn an_ack_at_the_wrong_slot_is_lost() {
    let (mut history, finals) = good();
    history.submits[1].ack = Some((30, 2));
    let v = check(&history, &finals);
    assert!(
        v.iter()
            .any(|x| matches!(x, Violation::Lost { slot: 2, .. })),
        "{v:?}"
    );
}

#[test]
fn two_acks_at_one_slot_are_found() {
    let (mut history, finals) = good();
    history.submits[2].ack = Some((50, 1));
    let v = check(&history, &finals);
    assert!(
        v.iter()
            .any(|x| matches!(x, Violation::SlotTwice { slot: 1, .. })),
        "{v:?}"
    );
}

#[test]
fn a_message_applied_twice_is_found() {
    let (history, mut finals) = good();
    for (_, log) in finals.iter_mut() {
        log[3] = Entry::msg(3, "1:1");
    }
    let v = check(&history, &finals);
    assert!(
        v.iter()
            .any(|x| matches!(x, Violation::Duplicated { slots, .. } if slots == &vec![0, 3])),
        "{v:?}"
    );
}

#[test]
fn an_append_ordered_before_an_earlier_ack_is_found() {
    // b was invoked after a's ack completed but got the lower slot.
    let history = History {
        submits: vec![
            submit("1:1", 0, Some((10, 1))),
            submit("2:1", 20, Some((30, 0))),
        ],
        reads: vec![],
    };
    let log = vec![Entry::msg(0, "2:1"), Entry::msg(1, "1:1")];
    let v = check(&history, &[(0, log)]);
    assert!(
        matches!(&v[..], [Violation::RealTime { earlier, later }] if earlier.1 == 1 && later.1 == 0),
        "{v:?}"
    );
    // Concurrent submits may be ordered either way.
    let history = History {
        submits: vec![
            submit("1:1", 0, Some((30, 1))),
            submit("2:1", 20, Some((25, 0))),
        ],
        reads: vec![],
    };
    let log = vec![Entry::msg(0, "2:1"), Entry::msg(1, "1:1")];
    assert_eq!(check(&history, &[(0, log)]), vec![]);
}

#[test]
fn a_stale_read_is_found_unless_stale_reads_are_allowed() {
    let (mut history, finals) = good();
    // Begins after b's ack (30) but shows only a.
    history
        .reads
        .push(read(1, 31, 33, vec![Entry::msg(0, "1:1")]));
    let v = check(&history, &finals);
    assert!(
        matches!(
            &v[..],
            [Violation::StaleRead {
                read: 3,
                slot: 1,
                ..
            }]
        ),
        "{v:?}"
    );
    let relaxed = check_with(&history, &finals, Checks { fresh_reads: false });
    assert_eq!(relaxed, vec![]);
    // A read that began before the ack completed may miss it.
    let (mut history, finals) = good();
    history
        .reads
        .push(read(1, 29, 40, vec![Entry::msg(0, "1:1")]));
    assert_eq!(check(&history, &finals), vec![]);
}

#[test]
fn a_read_that_is_not_a_prefix_is_found() {
    let (mut history, finals) = good();
    // A value the final log does not hold.
    history.reads.push(read(
        0,
        50,
        51,
        vec![Entry::msg(0, "1:1"), Entry::msg(1, "7:7")],
    ));
    // A gap: slot 1 missing.
    history
        .reads
        .push(read(0, 50, 51, vec![Entry::msg(0, "1:1"), Entry::noop(2)]));
    let v = check_with(&history, &finals, Checks { fresh_reads: false });
    assert!(
        matches!(
            &v[..],
            [
                Violation::ReadNotPrefix {
                    read: 3,
                    slot: 1,
                    ..
                },
                Violation::ReadNotPrefix {
                    read: 4,
                    slot: 1,
                    ..
                }
            ]
        ),
        "{v:?}"
    );
}

#[test]
fn dump_log_json_lines_parse() {
    let e = Entry::from_json_line(r#"{"slot":3,"kind":"dup","id":"5:2","body":"hi"}"#).unwrap();
    assert_eq!(e, Entry::dup(3, "5:2"));
    let e = Entry::from_json_line(r#"{"slot":0,"kind":"noop","id":"","body":""}"#).unwrap();
    assert_eq!(e, Entry::noop(0));
    assert!(Entry::from_json_line(r#"{"slot":0,"kind":"what"}"#).is_err());
    assert!(Entry::from_json_line("not json").is_err());
}

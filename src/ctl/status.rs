//! `paxosctl status`: every replica's role, ballot, decided prefix, lag and
//! reachability, as a table (like `etcdctl endpoint status -w table`) or one JSON object
//! a replica.

use super::{escape, out, out_raw, CtlError, Format, Globals};
use crate::client::status::STATUS_CONNECT_TIMEOUT;
use crate::client::status::{cluster_status_within, Health, ReplicaView, STATUS_TIMEOUT};
use crate::core::{ReplicaStatus, Role, Slot, Standing, Uid};
use serde::Serialize;

/// Every replica's role, ballot, decided prefix, lag, reachability
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  paxosctl status\n  paxosctl status --json   # {\"uid\":0,\"reachable\":true,\"role\":\"leader\",\"ballot\":[0,0],\"decided\":42}\n\nLAG is how many slots a replica's decided prefix is behind the most advanced\nreachable replica. Exits 3, saying why, when fewer than a quorum of replicas\nanswer. --json adds \"address\", \"lag\", \"leader\" and \"error\" (why a replica is\nunreachable) to the fields above."
)]
pub struct Status {}

impl Status {
    pub async fn run(&self, globals: &Globals) -> Result<(), CtlError> {
        let format = globals.format(
            "status",
            &[Format::Table, Format::Json, Format::Simple],
            Format::Table,
        )?;
        let config = globals.load_config()?;
        let views = ask(globals, &config).await;
        let health = Health::of(&views);
        match format {
            Format::Json => {
                for view in &views {
                    out(&status_json(view, health.decided_max))?;
                }
            }
            Format::Table => out_raw(status_table(&views).as_bytes())?,
            Format::Simple => {
                for view in &views {
                    out(&status_simple(view, health.decided_max))?;
                }
            }
        }
        if !health.has_quorum() {
            let why = health.problem(&views).unwrap_or_default();
            return Err(CtlError::Unavailable(escape(&why).into_owned()));
        }
        Ok(())
    }
}

/// Every replica's status, with `--dial-timeout` and `--command-timeout` if given.
pub async fn ask(globals: &Globals, config: &crate::config::Config) -> Vec<ReplicaView> {
    cluster_status_within(
        config,
        globals.dial_timeout.unwrap_or(STATUS_CONNECT_TIMEOUT),
        globals.command_timeout.unwrap_or(STATUS_TIMEOUT),
    )
    .await
}

/// `leader`, `follower` or `candidate`.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
    }
}

/// Whether a replica's store votes: `voter`, or why not yet (a fresh store registering
/// with its peers, a lost disk rebuilding or fenced; see README "Lost disks").
pub fn standing_name(standing: Standing) -> &'static str {
    match standing {
        Standing::Voter => "voter",
        Standing::Unregistered => "registering",
        Standing::Rebuilding => "rebuilding",
        Standing::Fenced { .. } => "fenced",
    }
}

/// The role column: the role, and the standing when the store does not vote yet.
fn role_label(s: &ReplicaStatus) -> String {
    match s.standing {
        Standing::Voter => role_name(s.role).to_string(),
        other => format!("{} ({})", role_name(s.role), standing_name(other)),
    }
}

/// One `--json` line: DESIGN's `{"uid":0,"reachable":true,"role":"leader",
/// "ballot":[round,uid],"decided":N}`, then `"address"` (from the config), `"lag"`
/// (slots behind the most advanced reachable replica), `"leader"` (whom the replica
/// follows) and `"error"` (why it is unreachable); nulls where unknown.
#[derive(Debug, Serialize)]
struct StatusJson<'a> {
    uid: Uid,
    reachable: bool,
    role: Option<&'static str>,
    ballot: Option<(u64, Uid)>,
    decided: Option<Slot>,
    address: &'a str,
    lag: Option<Slot>,
    leader: Option<Uid>,
    error: Option<&'a str>,
    /// `voter`, `registering`, `rebuilding` or `fenced` (`standing_name`), last so the
    /// documented prefix of the line is unchanged.
    standing: Option<&'static str>,
}

/// The `--json` line of one replica (no trailing newline); `decided_max` is the highest
/// decided prefix among the reachable replicas.
pub fn status_json(view: &ReplicaView, decided_max: Slot) -> String {
    let line = match &view.report {
        Ok(report) => StatusJson {
            uid: view.uid,
            reachable: true,
            role: Some(role_name(report.status.role)),
            standing: Some(standing_name(report.status.standing)),
            ballot: Some((report.status.ballot.round, report.status.ballot.uid)),
            decided: Some(report.status.decided_upto),
            address: &view.addr,
            lag: Some(decided_max.saturating_sub(report.status.decided_upto)),
            leader: report.status.leader,
            error: None,
        },
        Err(reason) => StatusJson {
            uid: view.uid,
            reachable: false,
            role: None,
            standing: None,
            ballot: None,
            decided: None,
            address: &view.addr,
            lag: None,
            leader: None,
            error: Some(reason),
        },
    };
    // Plain integers, strings and options: cannot fail.
    serde_json::to_string(&line).unwrap_or_default()
}

/// The `-w simple` line of one replica, etcdctl-style comma-separated:
/// `uid, address, role, ballot, decided, lag, leader` or `uid, address, unreachable: why`.
pub fn status_simple(view: &ReplicaView, decided_max: Slot) -> String {
    let addr = escape(&view.addr);
    match &view.report {
        Ok(report) => {
            let s = &report.status;
            format!(
                "{}, {addr}, {}, {}, {}, {}, {}",
                view.uid,
                role_label(s),
                s.ballot,
                s.decided_upto,
                decided_max.saturating_sub(s.decided_upto),
                s.leader.map_or_else(|| "?".to_string(), |l| l.to_string())
            )
        }
        Err(reason) => format!("{}, {addr}, unreachable: {}", view.uid, escape(reason)),
    }
}

/// The plain table: uid, address, role, ballot, decided prefix, lag behind the most
/// advanced reachable replica, reachable (with the reason when not).
pub fn status_table(views: &[ReplicaView]) -> String {
    let max_decided = views
        .iter()
        .filter_map(|v| v.report.as_ref().ok())
        .map(|r| r.status.decided_upto)
        .max()
        .unwrap_or(0);
    let header = [
        "UID",
        "ADDRESS",
        "ROLE",
        "BALLOT",
        "DECIDED",
        "LAG",
        "LEADER",
        "REACHABLE",
    ];
    let mut rows: Vec<Vec<String>> = Vec::new();
    for view in views {
        let row = match &view.report {
            Ok(report) => {
                let s = &report.status;
                vec![
                    view.uid.to_string(),
                    escape(&view.addr).into_owned(),
                    role_label(s),
                    s.ballot.to_string(),
                    s.decided_upto.to_string(),
                    (max_decided - s.decided_upto.min(max_decided)).to_string(),
                    s.leader.map_or_else(|| "?".to_string(), |l| l.to_string()),
                    "true".to_string(),
                ]
            }
            Err(reason) => vec![
                view.uid.to_string(),
                escape(&view.addr).into_owned(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                format!("false ({})", escape(reason)),
            ],
        };
        rows.push(row);
    }
    render_table(&header, &rows)
}

/// An ASCII table in the style of `etcdctl endpoint status -w table`.
fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let rule: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+\n";
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        let mut out = String::new();
        for (cell, width) in cells.zip(&widths) {
            let pad = width - cell.chars().count();
            out.push_str(&format!("| {cell}{} ", " ".repeat(pad)));
        }
        out + "|\n"
    };
    let mut out = rule.clone();
    out.push_str(&line(&mut header.iter().copied()));
    out.push_str(&rule);
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out.push_str(&rule);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Ballot, ReplicaStatus};
    use crate::transport::wire::StatusReport;

    fn up(uid: Uid, role: Role, decided: Slot) -> ReplicaView {
        ReplicaView {
            uid,
            addr: format!("127.0.0.1:710{}", uid + 1),
            report: Ok(StatusReport {
                status: ReplicaStatus {
                    uid,
                    role,
                    ballot: Ballot::new(3, 1),
                    leader: Some(1),
                    decided_upto: decided,
                    standing: crate::core::Standing::Voter,
                },
                addr: format!("127.0.0.1:710{}", uid + 1),
                last_slot: None,
            }),
        }
    }

    fn down(uid: Uid) -> ReplicaView {
        ReplicaView {
            uid,
            addr: "127.0.0.1:7103".into(),
            report: Err("connection refused".into()),
        }
    }

    #[test]
    fn json_lines_have_the_documented_shape() {
        assert_eq!(
            status_json(&up(1, Role::Leader, 12), 15),
            r#"{"uid":1,"reachable":true,"role":"leader","ballot":[3,1],"decided":12,"address":"127.0.0.1:7102","lag":3,"leader":1,"error":null,"standing":"voter"}"#
        );
        assert_eq!(
            status_json(&down(2), 15),
            r#"{"uid":2,"reachable":false,"role":null,"ballot":null,"decided":null,"address":"127.0.0.1:7103","lag":null,"leader":null,"error":"connection refused","standing":null}"#
        );
        assert_eq!(
            status_simple(&up(0, Role::Follower, 9), 12),
            "0, 127.0.0.1:7101, follower, (3,1), 9, 3, 1"
        );
        assert_eq!(
            status_simple(&down(2), 12),
            "2, 127.0.0.1:7103, unreachable: connection refused"
        );
    }

    #[test]
    fn table_shows_lag_and_unreachable() {
        let table = status_table(&[up(0, Role::Follower, 9), up(1, Role::Leader, 12), down(2)]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 7, "{table}");
        assert!(
            lines[1].contains("UID") && lines[1].contains("LAG"),
            "{table}"
        );
        assert!(
            lines[3].contains("follower") && lines[3].contains("| 3 "),
            "{table}"
        );
        assert!(
            lines[4].contains("leader") && lines[4].contains("(3,1)"),
            "{table}"
        );
        assert!(lines[5].contains("false (connection refused)"), "{table}");
        // Every line has the same width.
        assert!(lines.iter().all(|l| l.len() == lines[0].len()), "{table}");
    }
}

//! `paxosctl status`: every replica's role, ballot, decided prefix, lag and
//! reachability, as a table (like `etcdctl endpoint status -w table`) or one JSON object
//! a replica.

use super::{out, out_raw, CtlError, Globals};
use crate::client::status::{cluster_status, ReplicaView};
use crate::core::{Role, Slot, Uid};
use serde::Serialize;

/// Every replica's role, ballot, decided prefix, lag, reachability
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  paxosctl status\n  paxosctl status --json   # {\"uid\":0,\"reachable\":true,\"role\":\"leader\",\"ballot\":[0,0],\"decided\":42}\n\nLAG is how many slots a replica's decided prefix is behind the most advanced\nreachable replica."
)]
pub struct Status {}

impl Status {
    pub async fn run(&self, globals: &Globals) -> Result<(), CtlError> {
        let config = globals.load_config()?;
        let views = cluster_status(&config).await;
        if globals.json {
            for view in &views {
                out(&status_json(view))?;
            }
        } else {
            out_raw(status_table(&views).as_bytes())?;
        }
        if views.iter().all(|v| v.report.is_err()) {
            return Err(CtlError::Failed("no replica is reachable".into()));
        }
        Ok(())
    }
}

/// `leader`, `follower` or `candidate`.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
    }
}

/// One `--json` line: `{"uid":0,"reachable":true,"role":"leader",
/// "ballot":[round,uid],"decided":N}`, with nulls for an unreachable replica.
#[derive(Debug, Serialize)]
struct StatusJson {
    uid: Uid,
    reachable: bool,
    role: Option<&'static str>,
    ballot: Option<(u64, Uid)>,
    decided: Option<Slot>,
}

/// The `--json` line of one replica (no trailing newline).
pub fn status_json(view: &ReplicaView) -> String {
    let line = match &view.report {
        Ok(report) => StatusJson {
            uid: view.uid,
            reachable: true,
            role: Some(role_name(report.status.role)),
            ballot: Some((report.status.ballot.round, report.status.ballot.uid)),
            decided: Some(report.status.decided_upto),
        },
        Err(_) => StatusJson {
            uid: view.uid,
            reachable: false,
            role: None,
            ballot: None,
            decided: None,
        },
    };
    // Plain integers, strings and options: cannot fail.
    serde_json::to_string(&line).unwrap_or_default()
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
                    view.addr.clone(),
                    role_name(s.role).to_string(),
                    s.ballot.to_string(),
                    s.decided_upto.to_string(),
                    (max_decided - s.decided_upto.min(max_decided)).to_string(),
                    s.leader.map_or_else(|| "?".to_string(), |l| l.to_string()),
                    "true".to_string(),
                ]
            }
            Err(reason) => vec![
                view.uid.to_string(),
                view.addr.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                format!("false ({reason})"),
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
            status_json(&up(1, Role::Leader, 12)),
            r#"{"uid":1,"reachable":true,"role":"leader","ballot":[3,1],"decided":12}"#
        );
        assert_eq!(
            status_json(&down(2)),
            r#"{"uid":2,"reachable":false,"role":null,"ballot":null,"decided":null}"#
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

//! `paxosctl status`: every replica's view of itself, asked concurrently with short
//! timeouts so that a down replica costs at most [`STATUS_CONNECT_TIMEOUT`] +
//! [`STATUS_TIMEOUT`], and rendered as a table or one JSON object a replica.

use crate::config::Config;
use crate::core::{Role, Slot, Uid};
use crate::transport::wire::{ClientRequest, ClientResponse, StatusReport};
use crate::transport::ClientLink;
use serde::Serialize;
use std::time::Duration;

/// Connect timeout of a status query (an unreachable replica must come back fast).
pub const STATUS_CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// Bound on a status answer once connected.
pub const STATUS_TIMEOUT: Duration = Duration::from_millis(1000);

/// What one replica said about itself, or why it could not be asked.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaView {
    pub uid: Uid,
    /// The address from the config.
    pub addr: String,
    /// `Err(reason)`: unreachable.
    pub report: Result<StatusReport, String>,
}

/// Asks every replica of `config` for its status, concurrently.
pub async fn cluster_status(config: &Config) -> Vec<ReplicaView> {
    let mut tasks = Vec::new();
    let tls = crate::transport::TlsContext::for_client(config).map_err(|e| e.to_string());
    for (uid, replica) in config.replica.iter().enumerate() {
        let uid = uid as Uid;
        let addr = replica.addr.clone();
        let target = config.replica_addr(uid);
        let tls = tls.clone();
        tasks.push(tokio::spawn(async move {
            let report = match (target, tls) {
                (Ok(target), Ok(tls)) => query(target, tls.as_deref().map(|t| (t, uid))).await,
                (_, Err(e)) => Err(e),
                (Err(e), _) => Err(e.to_string()),
            };
            ReplicaView { uid, addr, report }
        }));
    }
    let mut views = Vec::with_capacity(tasks.len());
    for (uid, task) in tasks.into_iter().enumerate() {
        views.push(task.await.unwrap_or_else(|e| ReplicaView {
            uid: uid as Uid,
            addr: config.replica[uid].addr.clone(),
            report: Err(format!("status task failed: {e}")),
        }));
    }
    views
}

async fn query(
    addr: std::net::SocketAddr,
    tls: Option<(&crate::transport::TlsContext, Uid)>,
) -> Result<StatusReport, String> {
    let mut link = ClientLink::connect_to(addr, STATUS_CONNECT_TIMEOUT, tls)
        .await
        .map_err(|e| match &e {
            crate::Error::Io { source, .. }
                if source.kind() == std::io::ErrorKind::ConnectionRefused =>
            {
                "connection refused".to_string()
            }
            crate::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::TimedOut => {
                "connect timed out".to_string()
            }
            _ => e.to_string(),
        })?;
    match tokio::time::timeout(STATUS_TIMEOUT, link.call(&ClientRequest::Status)).await {
        Ok(Ok(ClientResponse::Status(report))) => Ok(report),
        Ok(Ok(ClientResponse::Error { reason })) => Err(reason),
        Ok(Ok(other)) => Err(format!("unexpected answer: {other:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer in time".to_string()),
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

    #[tokio::test]
    async fn unreachable_replicas_come_back_fast() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let mut config = Config::generate(1, 0.0, 500, 1);
        for (i, replica) in config.replica.iter_mut().enumerate() {
            // Closed ports on loopback addresses.
            replica.addr = format!("127.0.0.{}:{port}", i + 1);
        }
        let started = std::time::Instant::now();
        let views = cluster_status(&config).await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(views.len(), 3);
        assert!(views.iter().all(|v| v.report.is_err()));
    }
}

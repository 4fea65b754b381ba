//! The cluster's status: every replica's view of itself, asked concurrently with short
//! timeouts so that a down replica costs at most [`STATUS_CONNECT_TIMEOUT`] +
//! [`STATUS_TIMEOUT`]. Rendering (table, JSON) is `crate::ctl::status`'s.

use crate::config::Config;
use crate::core::{Role, Slot, Uid};
use crate::transport::wire::{ClientRequest, ClientResponse, StatusReport};
use crate::transport::ClientLink;
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

/// Asks every replica of `config` for its status, concurrently, with the default
/// timeouts.
pub async fn cluster_status(config: &Config) -> Vec<ReplicaView> {
    cluster_status_within(config, STATUS_CONNECT_TIMEOUT, STATUS_TIMEOUT).await
}

/// Asks every replica of `config` for its status, concurrently: a connect may take
/// `connect_timeout`, the answer `answer_timeout`.
pub async fn cluster_status_within(
    config: &Config,
    connect_timeout: Duration,
    answer_timeout: Duration,
) -> Vec<ReplicaView> {
    let mut tasks = Vec::new();
    let tls = crate::transport::TlsContext::for_client(config).map_err(|e| e.to_string());
    for (uid, replica) in config.replica.iter().enumerate() {
        let uid = uid as Uid;
        let addr = replica.addr.clone();
        let target = config.replica_addr(uid);
        let tls = tls.clone();
        tasks.push(tokio::spawn(async move {
            let report = match (target, tls) {
                (Ok(target), Ok(tls)) => {
                    query(
                        target,
                        tls.as_deref().map(|t| (t, uid)),
                        connect_timeout,
                        answer_timeout,
                    )
                    .await
                }
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
    connect_timeout: Duration,
    answer_timeout: Duration,
) -> Result<StatusReport, String> {
    let mut link = ClientLink::connect_to(addr, connect_timeout, tls)
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
    match tokio::time::timeout(answer_timeout, link.call(&ClientRequest::Status)).await {
        Ok(Ok(ClientResponse::Status(report))) => Ok(report),
        Ok(Ok(ClientResponse::Error { reason })) => Err(reason),
        Ok(Ok(other)) => Err(format!("unexpected answer: {other:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer in time".to_string()),
    }
}

/// What the views say about the cluster as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// Replicas in the config.
    pub replicas: usize,
    /// Replicas that answered.
    pub reachable: usize,
    /// `f + 1`: how many must answer for the cluster to make progress.
    pub quorum: usize,
    /// The leader that a reachable replica reports being, or else points to.
    pub leader: Option<Uid>,
    /// The highest decided prefix among the reachable replicas.
    pub decided_max: Slot,
}

impl Health {
    /// Summarizes `views` (one per replica of a config of `views.len()` replicas).
    pub fn of(views: &[ReplicaView]) -> Health {
        let up: Vec<&StatusReport> = views
            .iter()
            .filter_map(|v| v.report.as_ref().ok())
            .collect();
        let leader = up
            .iter()
            .find(|r| r.status.role == Role::Leader)
            .map(|r| r.status.uid)
            .or_else(|| up.iter().find_map(|r| r.status.leader));
        Health {
            replicas: views.len(),
            reachable: up.len(),
            quorum: views.len() / 2 + 1,
            leader,
            decided_max: up.iter().map(|r| r.status.decided_upto).max().unwrap_or(0),
        }
    }

    /// A quorum answered.
    pub fn has_quorum(&self) -> bool {
        self.reachable >= self.quorum
    }

    /// A quorum answered and a leader is known: the cluster can commit.
    pub fn is_healthy(&self) -> bool {
        self.has_quorum() && self.leader.is_some()
    }

    /// Why the cluster is unhealthy, naming each unreachable replica and its reason;
    /// `None` when healthy.
    pub fn problem(&self, views: &[ReplicaView]) -> Option<String> {
        let down: Vec<String> = views
            .iter()
            .filter_map(|v| {
                v.report
                    .as_ref()
                    .err()
                    .map(|reason| format!("replica {} ({}): {reason}", v.uid, v.addr))
            })
            .collect();
        if !self.has_quorum() {
            Some(format!(
                "no quorum: {} of {} replicas answered, a quorum is {}; {}",
                self.reachable,
                self.replicas,
                self.quorum,
                down.join("; ")
            ))
        } else if self.leader.is_none() {
            Some(format!(
                "no leader known: {} of {} replicas answered and none leads or knows a leader",
                self.reachable, self.replicas
            ))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

//! `paxosctl health`: is the cluster able to commit? Like `etcdctl endpoint health`, for
//! scripts, monitoring and systemd's `ExecStartPost`: exit 0 if and only if a quorum of
//! replicas answers and a leader is known; else exit 3, saying why.

use super::status::ask;
use super::{escape, out, CtlError, Format, Globals};
use crate::client::status::Health;
use serde::Serialize;

/// Exit 0 if a quorum answers and a leader is known (for scripts and systemd)
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  paxosctl health              # healthy: 3 of 3 replicas answered (quorum 2), leader 0\n  paxosctl health --json       # {\"healthy\":true,\"replicas\":3,\"reachable\":3,\"quorum\":2,\"leader\":0,\"error\":null}\n  ExecStartPost=/usr/local/bin/paxosctl --config /etc/paxos/config.toml health\n\nExits 0 when healthy, 3 when not (the reason on stderr and in \"error\")."
)]
pub struct HealthCmd {}

/// The `--json` line.
#[derive(Debug, Serialize)]
struct HealthJson<'a> {
    healthy: bool,
    replicas: usize,
    reachable: usize,
    quorum: usize,
    leader: Option<u32>,
    error: Option<&'a str>,
}

impl HealthCmd {
    pub async fn run(&self, globals: &Globals) -> Result<(), CtlError> {
        let format = globals.format("health", &[Format::Simple, Format::Json], Format::Simple)?;
        let config = globals.load_config()?;
        let views = ask(globals, &config).await;
        let health = Health::of(&views);
        let problem = health.problem(&views);
        match format {
            Format::Json => {
                let line = HealthJson {
                    healthy: problem.is_none(),
                    replicas: health.replicas,
                    reachable: health.reachable,
                    quorum: health.quorum,
                    leader: health.leader,
                    error: problem.as_deref(),
                };
                // Integers, booleans and strings: cannot fail.
                out(&serde_json::to_string(&line).unwrap_or_default())?;
            }
            _ => out(&format!(
                "{}: {} of {} replicas answered (quorum {}), leader {}",
                if problem.is_none() {
                    "healthy"
                } else {
                    "unhealthy"
                },
                health.reachable,
                health.replicas,
                health.quorum,
                health
                    .leader
                    .map_or_else(|| "unknown".to_string(), |l| l.to_string())
            ))?,
        }
        match problem {
            None => Ok(()),
            Some(why) => Err(CtlError::Unavailable(escape(&why).into_owned())),
        }
    }
}

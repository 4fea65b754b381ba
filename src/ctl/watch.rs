//! `paxosctl watch`: follow the chat log as it is decided, from any reachable replica.
//! The first pages are linearizable unless `--stale`; once they reach the replica's
//! decided prefix, a note on stderr says where (`caught up at slot N on replica U`), so
//! a script can tell history from live slots.

use super::chat::chat_line;
use super::dump_log::entry_json;
use super::{follow, out, CtlError, Format, Globals};
use crate::client::log::LogFollower;
use crate::client::Client;
use crate::core::{Slot, Uid};

/// Follow the chat log as it is decided
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  paxosctl watch\n  paxosctl watch --from 100 --json\n  paxosctl watch --uid 2 --stale\n\nReads from any reachable replica (replica --uid first) and moves on when one fails,\nwithout gaps or repeats. Plain output shows messages as \"[slot] body\"; --json shows\nevery slot (no-ops and duplicates too) like dump-log --json. Once the log is read up\nto the replica's decided prefix, stderr gets \"watch: caught up at slot N on replica\nU (linearizable|stale); following\"."
)]
pub struct Watch {
    /// First slot to show
    #[arg(long, value_name = "SLOT", default_value_t = 0)]
    pub from: Slot,
    /// Replica to read from first (the next one on failure)
    #[arg(long, value_name = "UID", default_value_t = 0)]
    pub uid: Uid,
    /// Start from the replica's local applied log as it is, without first confirming
    /// with the leader that it holds every acknowledged message (etcd's
    /// --consistency=s); by default the first page is linearizable
    #[arg(long)]
    pub stale: bool,
}

impl Watch {
    pub async fn run(&self, globals: &Globals) -> Result<(), CtlError> {
        let json = globals.format("watch", &[Format::Simple, Format::Json], Format::Simple)?
            == Format::Json;
        let config = globals.load_config()?;
        config.check_uid(self.uid)?;
        let client = Client::with_options(config.clone(), globals.client_options(&config));
        let mut follower = LogFollower::new(client, self.from, self.uid);
        if !self.stale {
            follower = follower.linearizable();
        }
        follow(
            &mut follower,
            |note| eprintln!("{note}"),
            |slot, uid| {
                let how = if self.stale { "stale" } else { "linearizable" };
                eprintln!("watch: caught up at slot {slot} on replica {uid} ({how}); following")
            },
            |entry| {
                if json {
                    out(&entry_json(entry))
                } else if let Some(line) = chat_line(entry) {
                    out(&line)
                } else {
                    Ok(())
                }
            },
        )
        .await
    }
}

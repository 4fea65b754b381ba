//! `paxosctl watch`: follow the chat log as it is decided, from any reachable replica.

use super::chat::chat_line;
use super::dump_log::entry_json;
use super::{follow, out, CtlError, Format, Globals};
use crate::client::log::LogFollower;
use crate::client::Client;
use crate::core::Slot;

/// Follow the chat log as it is decided
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  paxosctl watch\n  paxosctl watch --from 100 --json\n\nReads from any reachable replica and moves on when one fails, without gaps or\nrepeats. Plain output shows messages as \"[slot] body\"; --json shows every slot\n(no-ops and duplicates too) like dump-log --json."
)]
pub struct Watch {
    /// First slot to show
    #[arg(long, value_name = "SLOT", default_value_t = 0)]
    pub from: Slot,
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
        let client = Client::with_options(config.clone(), globals.client_options(&config));
        let mut follower = LogFollower::new(client, self.from, 0);
        if !self.stale {
            follower = follower.linearizable();
        }
        follow(
            &mut follower,
            |note| eprintln!("{note}"),
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

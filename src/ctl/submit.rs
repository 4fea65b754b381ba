//! `paxosctl submit`: append one message to the chat log and print its slot once chosen.

use super::{out, seconds, CtlError, Globals};
use crate::client::{Client, ClientOptions};

/// Append a message to the chat log; prints its slot once chosen
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  paxosctl submit \"hello\"            # prints e.g. 17\n  paxosctl submit --json \"hi\"        # {\"id\":\"<client_id>:<seq>\",\"slot\":17}\n\nExits non-zero, saying which replicas answered what, if no quorum commits the\nmessage within 10 s."
)]
pub struct Submit {
    /// The message
    #[arg(allow_hyphen_values = true)]
    pub body: String,
    /// Give up after this many seconds
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    pub timeout: f64,
}

impl Submit {
    pub async fn run(&self, globals: &Globals) -> Result<(), CtlError> {
        let config = globals.load_config()?;
        let mut options = ClientOptions::from_config(&config);
        options.deadline = seconds(self.timeout, "--timeout")?;
        let mut client = Client::with_options(config, options);
        let (id, slot) = client.submit(&self.body).await?;
        if globals.json {
            out(&serde_json::json!({ "id": id.to_string(), "slot": slot }).to_string())
        } else {
            out(&slot.to_string())
        }
    }
}

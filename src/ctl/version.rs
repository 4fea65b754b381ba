//! `paxosctl version`: the version of this build (as `--version`, also as JSON).

use super::{out, CtlError, Format, Globals};

/// Print the version of paxosctl
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  paxosctl version          # paxosctl 0.1.0\n  paxosctl version --json   # {\"paxosctl\":\"0.1.0\"}"
)]
pub struct Version {}

impl Version {
    pub fn run(&self, globals: &Globals) -> Result<(), CtlError> {
        let version = env!("CARGO_PKG_VERSION");
        match globals.format("version", &[Format::Simple, Format::Json], Format::Simple)? {
            Format::Json => out(&serde_json::json!({ "paxosctl": version }).to_string()),
            _ => out(&format!("paxosctl {version}")),
        }
    }
}

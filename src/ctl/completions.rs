//! `paxosctl completions`: a shell completion script for the whole CLI.

use super::{out_raw, CtlError, Format, Globals};

/// Print a shell completion script
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  paxosctl completions bash > /etc/bash_completion.d/paxosctl\n  paxosctl completions zsh > ~/.zfunc/_paxosctl"
)]
pub struct Completions {
    pub shell: clap_complete::Shell,
}

impl Completions {
    /// `command` is the whole CLI (the binary's clap command). The script is rendered
    /// in memory first, so a closed stdout is an error value, not a panic.
    pub fn run(&self, globals: &Globals, mut command: clap::Command) -> Result<(), CtlError> {
        globals.format("completions", &[Format::Simple], Format::Simple)?;
        let mut script = Vec::new();
        clap_complete::generate(self.shell, &mut command, "paxosctl", &mut script);
        out_raw(&script)
    }
}

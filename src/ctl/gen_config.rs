//! `paxosctl gen-config`: write a commented config for a local cluster of `2f + 1`
//! replicas.

use super::{out_raw, CtlError, Globals};
use crate::config::{Config, BASE_PORT_DEFAULT, TIMEOUT_MS_DEFAULT};
use std::path::PathBuf;

/// Write a config for a local cluster of 2f+1 replicas
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  paxosctl gen-config -f 1 -o config.toml\n  paxosctl gen-config -f 2 --loss 0.1 --timeout-ms 300 --base-port 9001"
)]
pub struct GenConfig {
    /// Failures tolerated (2f+1 replicas)
    #[arg(short = 'f', long = "failures", value_name = "F")]
    pub f: usize,
    /// Probability of dropping each peer message (testing)
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    pub loss: f64,
    /// Failure-detection timeout
    #[arg(long, value_name = "T", default_value_t = TIMEOUT_MS_DEFAULT)]
    pub timeout_ms: u64,
    /// Port of uid 0 (uid i listens on base + i)
    #[arg(long, value_name = "P", default_value_t = BASE_PORT_DEFAULT)]
    pub base_port: u16,
    /// Write here instead of stdout
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

impl GenConfig {
    pub fn run(&self, _globals: &Globals) -> Result<(), CtlError> {
        let config = Config::generate(self.f, self.loss, self.timeout_ms, self.base_port);
        config.validate()?;
        let text = config.to_toml_string();
        match &self.output {
            Some(path) => {
                std::fs::write(path, text)
                    .map_err(|e| CtlError::io(format!("writing {}", path.display()), e))?;
                eprintln!("wrote {}", path.display());
                Ok(())
            }
            None => out_raw(text.as_bytes()),
        }
    }
}

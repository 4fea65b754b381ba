//! `paxosctl gen-config`: write a commented config for a local cluster of `2f + 1`
//! replicas.

use super::{out_raw, CtlError, Format, Globals};
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
    /// Write here instead of stdout, and the certificates under tls/ beside it
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// No [tls] section and no certificates: plaintext, loopback addresses only
    #[arg(long)]
    pub no_tls: bool,
    /// Overwrite the -o file if it exists
    #[arg(long, requires = "output")]
    pub force: bool,
}

impl GenConfig {
    /// Writes the config; refuses to replace an existing file without `--force`.
    pub fn run(&self, globals: &Globals) -> Result<(), CtlError> {
        globals.format("gen-config", &[Format::Simple], Format::Simple)?;
        let mut config = Config::generate(self.f, self.loss, self.timeout_ms, self.base_port);
        config.validate()?;
        match &self.output {
            Some(path) => {
                if path.exists() && !self.force {
                    return Err(CtlError::Usage(format!(
                        "{} exists; not overwriting it (pass --force to replace it)",
                        path.display()
                    )));
                }
                if !self.no_tls {
                    let written = crate::transport::certs::setup_new_cluster(&mut config, path)?;
                    eprintln!(
                        "wrote {} TLS files under {}",
                        written.len(),
                        path.parent()
                            .unwrap_or(std::path::Path::new(""))
                            .join("tls")
                            .display()
                    );
                }
                let text = config.to_toml_string();
                let mut options = std::fs::OpenOptions::new();
                options.write(true);
                if self.force {
                    options.create(true).truncate(true);
                } else {
                    // Atomic: no window between "does it exist" and creating it.
                    options.create_new(true);
                }
                let mut file = options.open(path).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        CtlError::Usage(format!(
                            "{} exists; not overwriting it (pass --force to replace it)",
                            path.display()
                        ))
                    } else {
                        CtlError::io(format!("creating {}", path.display()), e)
                    }
                })?;
                use std::io::Write;
                file.write_all(text.as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| CtlError::io(format!("writing {}", path.display()), e))?;
                eprintln!("wrote {}", path.display());
                Ok(())
            }
            None => {
                if !self.no_tls {
                    config.tls = Some(Default::default());
                    eprintln!("paxosctl: certificates are not written to stdout: save the config, then run `paxosctl --config FILE certs`");
                }
                out_raw(config.to_toml_string().as_bytes())
            }
        }
    }
}

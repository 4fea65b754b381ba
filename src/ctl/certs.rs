//! `paxosctl certs`: (re)issue the TLS certificates of an existing config (the CA is
//! kept unless `--new-ca`; see `crate::transport::certs`).

use super::{CtlError, Format, Globals};
use crate::core::Uid;
use std::path::PathBuf;

/// (Re)issue the TLS certificates of an existing config
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  paxosctl --config dir/config.toml certs            # CA (kept if present), every replica, client\n  paxosctl --config dir/config.toml certs --uid 1    # rotate replica 1's certificate\n  paxosctl --config /etc/paxos/config.toml certs --dir /etc/paxos/tls\n\nA config without [tls] gets one (files under tls/ beside it). The CA key\n(ca.key beside ca.pem) is kept and reused unless --new-ca; a new CA reissues\nevery certificate. Keys are written mode 0600. Restart a replica (one at a time)\nfor it to use its new certificate."
)]
pub struct Certs {
    /// Only this replica's certificate (repeatable)
    #[arg(long, value_name = "UID")]
    pub uid: Vec<Uid>,
    /// With --uid: reissue the client certificate too
    #[arg(long)]
    pub client: bool,
    /// Make a new CA (every certificate is reissued)
    #[arg(long)]
    pub new_ca: bool,
    /// Write ca.pem, replica-<uid>.pem/.key, client.pem/.key into DIR instead of the config's paths
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Issue certificates that are already expired (to test expiry handling)
    #[arg(long, hide = true)]
    pub expired: bool,
}

impl Certs {
    pub fn run(&self, globals: &Globals) -> Result<(), CtlError> {
        globals.format("certs", &[Format::Simple], Format::Simple)?;
        let path = globals
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from("config.toml"));
        let options = crate::transport::certs::CertsOptions {
            new_ca: self.new_ca,
            uids: self.uid.clone(),
            client: self.client,
            dir: self.dir.clone(),
            expired: self.expired,
        };
        let (written, added) = crate::transport::certs::certs_command(&path, &options)?;
        for file in &written {
            eprintln!("wrote {}", file.display());
        }
        if added {
            eprintln!("added a [tls] section to {}", path.display());
        }
        Ok(())
    }
}

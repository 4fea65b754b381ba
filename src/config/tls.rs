//! The `[tls]` section of `config.toml`: where the CA, the replicas' and the client's
//! certificates and keys are, or that TLS is turned off.
//!
//! ```toml
//! [tls]
//! ca = "tls/ca.pem"                  # the cluster's CA certificate
//! cert = "tls/replica-{uid}.pem"     # replica certificate; {uid} is the replica's uid
//! key = "tls/replica-{uid}.key"      # its private key (mode 0600)
//! client_cert = "tls/client.pem"     # what paxosctl presents
//! client_key = "tls/client.key"
//! # enabled = false                  # plaintext on any address: no authentication
//! ```
//!
//! Every field has the default shown, so `[tls]` alone means "the layout `paxosctl
//! gen-config` and `paxosctl certs` write". Relative paths are relative to the directory
//! of the config file. A path `credential:NAME` is `$CREDENTIALS_DIRECTORY/NAME`: what
//! systemd's `LoadCredential=NAME:...` hands a service (`systemd/paxos@.service`).
//!
//! No `[tls]` section at all: plaintext, which a replica accepts only on loopback
//! addresses (see [`crate::transport::tls`]).

use crate::core::Uid;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::PathBuf;

/// Prefix of a path that names a systemd credential.
pub const CREDENTIAL_PREFIX: &str = "credential:";

/// Whether a `[tls]` section turns TLS on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    On,
    /// `enabled = false`: plaintext anywhere, explicitly.
    Off,
}

/// The `[tls]` table.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// `false`: TLS off (plaintext on any address). Default `true`.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// The CA certificate (PEM) every peer's certificate must chain to.
    #[serde(default = "default_ca")]
    pub ca: String,
    /// Replica certificate (PEM); `{uid}` is replaced by the replica's uid.
    #[serde(default = "default_cert")]
    pub cert: String,
    /// Replica private key (PEM); `{uid}` as in `cert`.
    #[serde(default = "default_key")]
    pub key: String,
    /// The certificate clients (`paxosctl`) present.
    #[serde(default = "default_client_cert")]
    pub client_cert: String,
    /// The clients' private key.
    #[serde(default = "default_client_key")]
    pub client_key: String,
    /// Directory relative paths are resolved against (the config file's); set by
    /// [`crate::config::Config::load`], `None`: the working directory.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
}

impl PartialEq for TlsConfig {
    fn eq(&self, other: &Self) -> bool {
        // base_dir says where the file was read from, not what it says.
        (
            self.enabled,
            &self.ca,
            &self.cert,
            &self.key,
            &self.client_cert,
            &self.client_key,
        ) == (
            other.enabled,
            &other.ca,
            &other.cert,
            &other.key,
            &other.client_cert,
            &other.client_key,
        )
    }
}

fn default_enabled() -> bool {
    true
}
fn default_ca() -> String {
    "tls/ca.pem".into()
}
fn default_cert() -> String {
    "tls/replica-{uid}.pem".into()
}
fn default_key() -> String {
    "tls/replica-{uid}.key".into()
}
fn default_client_cert() -> String {
    "tls/client.pem".into()
}
fn default_client_key() -> String {
    "tls/client.key".into()
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            enabled: true,
            ca: default_ca(),
            cert: default_cert(),
            key: default_key(),
            client_cert: default_client_cert(),
            client_key: default_client_key(),
            base_dir: None,
        }
    }
}

impl TlsConfig {
    pub fn mode(&self) -> TlsMode {
        if self.enabled {
            TlsMode::On
        } else {
            TlsMode::Off
        }
    }

    /// Replica `uid`'s certificate path, as written (not resolved).
    pub fn cert_path(&self, uid: Uid) -> String {
        self.cert.replace("{uid}", &uid.to_string())
    }

    /// Replica `uid`'s key path, as written (not resolved).
    pub fn key_path(&self, uid: Uid) -> String {
        self.key.replace("{uid}", &uid.to_string())
    }

    /// Where `path` (one of this section's) is on disk: `credential:NAME` under
    /// `$CREDENTIALS_DIRECTORY`, a relative path under [`base_dir`](Self::base_dir).
    pub fn resolve(&self, path: &str) -> PathBuf {
        if let Some(name) = path.strip_prefix(CREDENTIAL_PREFIX) {
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY").unwrap_or_default();
            return PathBuf::from(dir).join(name);
        }
        let path = PathBuf::from(path);
        match &self.base_dir {
            Some(base) if path.is_relative() => base.join(path),
            _ => path,
        }
    }

    /// Every field non-empty; `credential:` names a plain file name; `enabled = false`
    /// with nothing else. Errors name `tls.<field>`.
    pub fn validate(&self) -> Result<()> {
        let fields = [
            ("tls.ca", &self.ca),
            ("tls.cert", &self.cert),
            ("tls.key", &self.key),
            ("tls.client_cert", &self.client_cert),
            ("tls.client_key", &self.client_key),
        ];
        for (field, value) in fields {
            if value.trim().is_empty() {
                return Err(Error::config(field, "must not be empty"));
            }
            if let Some(name) = value.strip_prefix(CREDENTIAL_PREFIX) {
                if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                    return Err(Error::config(
                        field,
                        format!(
                            "{value:?}: a credential name is a plain file name (credential:NAME)"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The section as commented TOML (for `Config::to_toml_string`).
    pub fn to_toml_string(&self) -> String {
        let s = |v: &str| toml::Value::String(v.to_string());
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n# Mutual TLS between replicas and from clients (see README, Security).\n\
             # Relative paths are relative to this file; credential:NAME is\n\
             # $CREDENTIALS_DIRECTORY/NAME (systemd LoadCredential=). {{uid}} is the\n\
             # replica's uid. enabled = false turns TLS off: plaintext, no authentication.\n\
             [tls]"
        );
        if !self.enabled {
            let _ = writeln!(out, "enabled = false");
        }
        let _ = writeln!(
            out,
            "ca = {}\ncert = {}\nkey = {}\nclient_cert = {}\nclient_key = {}",
            s(&self.ca),
            s(&self.cert),
            s(&self.key),
            s(&self.client_cert),
            s(&self.client_key)
        );
        out
    }
}

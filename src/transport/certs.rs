//! Issuing the cluster's certificates (rcgen, ECDSA P-256): a CA, one certificate per
//! replica naming its uid and address, one client certificate. Used by `paxosctl
//! gen-config`, `paxosctl certs`, `paxosctl run` and `systemd/install.sh`.
//!
//! The names and key usages are those [`super::tls`] checks. The CA's key is kept beside
//! its certificate (`ca.pem` → `ca.key`, mode 0600) so that `paxosctl certs` can reissue
//! one replica's certificate later (rotation) without replacing the CA. Keys are written
//! mode 0600, certificates 0644, each through a temporary file and a rename, so a
//! replica starting meanwhile reads the old file or the new one, never half of one.
//!
//! Not done: intermediate CAs, CRLs, reusing a CA made by another tool (its subject would
//! have to be parsed; issue by hand with that tool instead, see README).

use super::tls::{client_name, replica_name};
use crate::config::tls::{TlsConfig, CREDENTIAL_PREFIX};
use crate::config::Config;
use crate::core::Uid;
use crate::error::{Error, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// How long an issued certificate is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// From the start of this year for this many years.
    Years(i32),
    /// Valid in 2000 only: already expired (tests of expiry handling).
    Expired,
}

/// Default validity of certificates `paxosctl` issues.
pub const VALIDITY_DEFAULT: Validity = Validity::Years(10);

fn current_year() -> i32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    1970 + (secs / 31_556_952) as i32
}

fn set_validity(params: &mut CertificateParams, validity: Validity) {
    match validity {
        Validity::Years(years) => {
            // A day of slack before "now" for clocks a little behind.
            let year = current_year();
            params.not_before = rcgen::date_time_ymd(year - 1, 12, 31);
            params.not_after = rcgen::date_time_ymd(year + years.max(1), 1, 1);
        }
        Validity::Expired => {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2000, 12, 31);
        }
    }
}

fn random_serial(params: &mut CertificateParams) {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    params.serial_number = Some(SerialNumber::from_slice(&bytes));
}

fn tls_error(what: &str, e: rcgen::Error) -> Error {
    Error::config("tls", format!("{what}: {e}"))
}

/// A certificate and its private key, PEM-encoded.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The cluster's certificate authority.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    /// The CA certificate; `None` when loaded from a key (the certificate on disk stays).
    cert_pem: Option<String>,
}

/// The CA's fixed parameters: deterministic, so that a CA loaded from its key issues
/// certificates whose issuer matches the existing `ca.pem`.
fn ca_params(cluster_id: u64) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "paxos");
    name.push(DnType::CommonName, format!("paxos CA {cluster_id:016x}"));
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

impl Ca {
    /// A new CA for cluster `cluster_id`.
    pub fn generate(cluster_id: u64, validity: Validity) -> Result<Ca> {
        let key = KeyPair::generate().map_err(|e| tls_error("generating the CA key", e))?;
        let mut params = ca_params(cluster_id);
        set_validity(&mut params, validity);
        random_serial(&mut params);
        let cert = params
            .self_signed(&key)
            .map_err(|e| tls_error("signing the CA", e))?;
        Ok(Ca {
            params,
            key,
            cert_pem: Some(cert.pem()),
        })
    }

    /// The CA of `cluster_id` from its key (PEM), as written by [`Ca::generate`].
    pub fn from_key_pem(cluster_id: u64, key_pem: &str) -> Result<Ca> {
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| Error::config("tls.ca", format!("cannot read the CA key: {e}")))?;
        Ok(Ca {
            params: ca_params(cluster_id),
            key,
            cert_pem: None,
        })
    }

    /// The CA certificate, if this CA was generated now.
    pub fn cert_pem(&self) -> Option<&str> {
        self.cert_pem.as_deref()
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    fn issue(
        &self,
        common_name: &str,
        sans: Vec<SanType>,
        server: bool,
        validity: Validity,
    ) -> Result<Issued> {
        let key = KeyPair::generate().map_err(|e| tls_error("generating a key", e))?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "paxos");
        name.push(DnType::CommonName, common_name);
        params.distinguished_name = name;
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = if server {
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        set_validity(&mut params, validity);
        random_serial(&mut params);
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| tls_error("signing a certificate", e))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Replica `uid`'s certificate: `replica-<uid>.<cluster>.paxos` and its address.
    pub fn issue_replica(
        &self,
        cluster_id: u64,
        uid: Uid,
        addr: SocketAddr,
        validity: Validity,
    ) -> Result<Issued> {
        let dns = replica_name(cluster_id, uid);
        let dns_san = SanType::DnsName(
            dns.clone()
                .try_into()
                .map_err(|e| tls_error("replica name", e))?,
        );
        self.issue(
            &dns,
            vec![dns_san, SanType::IpAddress(addr.ip())],
            true,
            validity,
        )
    }

    /// The client certificate: `client.<cluster>.paxos`.
    pub fn issue_client(&self, cluster_id: u64, validity: Validity) -> Result<Issued> {
        let dns = client_name(cluster_id);
        let san = SanType::DnsName(
            dns.clone()
                .try_into()
                .map_err(|e| tls_error("client name", e))?,
        );
        self.issue(&dns, vec![san], false, validity)
    }
}

/// What [`issue_for_config`] should (re)issue.
#[derive(Clone, Debug)]
pub struct IssuePlan {
    /// Make a new CA even if one exists (every certificate is then reissued).
    pub new_ca: bool,
    /// Only these replicas (`None`: all) and, if `client`, the client certificate.
    pub replicas: Option<Vec<Uid>>,
    pub client: bool,
    pub validity: Validity,
}

impl Default for IssuePlan {
    fn default() -> Self {
        IssuePlan {
            new_ca: false,
            replicas: None,
            client: true,
            validity: VALIDITY_DEFAULT,
        }
    }
}

/// Where the CA key lives: beside the CA certificate, `.pem` replaced by `.key`.
pub fn ca_key_path(tls: &TlsConfig) -> PathBuf {
    tls.resolve(&tls.ca).with_extension("key")
}

/// Issues the certificates `config`'s `tls` section points at (paths resolved with its
/// `base_dir`), reusing the CA when its key exists unless `plan.new_ca`. A new CA means
/// every certificate is reissued. Returns the files written.
pub fn issue_for_config(
    config: &Config,
    tls: &TlsConfig,
    plan: &IssuePlan,
) -> Result<Vec<PathBuf>> {
    let cluster_id = config.cluster_id();
    let ca_key = ca_key_path(tls);
    let mut written = Vec::new();
    let existing = !plan.new_ca && ca_key.is_file() && tls.resolve(&tls.ca).is_file();
    let (ca, all) = if existing {
        let pem = std::fs::read_to_string(&ca_key).map_err(|e| {
            Error::config("tls.ca", format!("cannot read {}: {e}", ca_key.display()))
        })?;
        (Ca::from_key_pem(cluster_id, &pem)?, false)
    } else {
        let ca = Ca::generate(cluster_id, Validity::Years(20))?;
        write_file(
            &tls.resolve(&tls.ca),
            ca.cert_pem().unwrap_or_default(),
            false,
            "tls.ca",
        )?;
        write_file(&ca_key, &ca.key_pem(), true, "tls.ca")?;
        written.push(tls.resolve(&tls.ca));
        written.push(ca_key);
        (ca, true)
    };
    let uids: Vec<Uid> = match (&plan.replicas, all) {
        (Some(uids), false) => uids.clone(),
        _ => (0..config.replicas() as Uid).collect(),
    };
    for uid in uids {
        let addr = config.replica_addr(uid)?;
        let issued = ca.issue_replica(cluster_id, uid, addr, plan.validity)?;
        let cert = writable(tls, &tls.cert_path(uid), "tls.cert")?;
        let key = writable(tls, &tls.key_path(uid), "tls.key")?;
        write_file(&cert, &issued.cert_pem, false, "tls.cert")?;
        write_file(&key, &issued.key_pem, true, "tls.key")?;
        written.push(cert);
        written.push(key);
    }
    if plan.client || all {
        let issued = ca.issue_client(cluster_id, plan.validity)?;
        let cert = writable(tls, &tls.client_cert, "tls.client_cert")?;
        let key = writable(tls, &tls.client_key, "tls.client_key")?;
        write_file(&cert, &issued.cert_pem, false, "tls.client_cert")?;
        write_file(&key, &issued.key_pem, true, "tls.client_key")?;
        written.push(cert);
        written.push(key);
    }
    Ok(written)
}

fn writable(tls: &TlsConfig, path: &str, field: &str) -> Result<PathBuf> {
    if path.starts_with(CREDENTIAL_PREFIX) {
        return Err(Error::config(
            field,
            format!("{path:?} is a systemd credential, not a file to write: issue into a directory with `paxosctl certs --dir DIR`"),
        ));
    }
    Ok(tls.resolve(path))
}

/// Writes `contents` to `path` through a temporary file and a rename; `secret`: mode
/// 0600, else 0644. Creates the parent directory (mode 0755).
pub fn write_file(path: &Path, contents: &str, secret: bool, field: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let context =
        |e: std::io::Error| Error::config(field, format!("cannot write {}: {e}", path.display()));
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(context)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mode = if secret { 0o600 } else { 0o644 };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(context)?;
    file.write_all(contents.as_bytes()).map_err(context)?;
    // The umask may have narrowed the mode: a certificate must stay readable by the
    // (dynamic) user a replica runs as.
    use std::os::unix::fs::PermissionsExt as _;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(context)?;
    file.sync_all().map_err(context)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(context)
}

/// Gives `config` the default `[tls]` section (files under `tls/` beside `config_path`)
/// and issues a new CA and every certificate there. For `paxosctl gen-config -o` and
/// `paxosctl run`; the caller then writes the config.
pub fn setup_new_cluster(config: &mut Config, config_path: &Path) -> Result<Vec<PathBuf>> {
    let tls = TlsConfig {
        base_dir: Some(config_path.parent().unwrap_or(Path::new("")).to_path_buf()),
        ..TlsConfig::default()
    };
    let plan = IssuePlan {
        new_ca: true,
        ..IssuePlan::default()
    };
    let written = issue_for_config(config, &tls, &plan)?;
    config.tls = Some(tls);
    Ok(written)
}

/// What `paxosctl certs` was asked.
#[derive(Clone, Debug, Default)]
pub struct CertsOptions {
    /// Replace the CA (and so every certificate).
    pub new_ca: bool,
    /// Only these replicas (and no client certificate unless `client`); empty: all.
    pub uids: Vec<Uid>,
    /// Reissue the client certificate (implied when `uids` is empty).
    pub client: bool,
    /// Write the standard layout (ca.pem, replica-<uid>.pem/.key, client.pem/.key) into
    /// this directory instead of the config's paths (e.g. when the config's keys are
    /// systemd credentials).
    pub dir: Option<PathBuf>,
    /// Issue already-expired certificates (tests of expiry handling).
    pub expired: bool,
}

/// `paxosctl certs`: (re)issues the certificates of the config at `config_path`. A config
/// without `[tls]` gets the default section appended (its text is otherwise untouched)
/// unless `dir` is given. Returns the files written and whether the config changed.
pub fn certs_command(config_path: &Path, options: &CertsOptions) -> Result<(Vec<PathBuf>, bool)> {
    let config = Config::load(config_path)?;
    for uid in &options.uids {
        config.replica_addr(*uid)?;
    }
    let (tls, add_section) = match (&options.dir, &config.tls) {
        (Some(dir), _) => {
            let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
            let tls = TlsConfig {
                ca: path("ca.pem"),
                cert: path("replica-{uid}.pem"),
                key: path("replica-{uid}.key"),
                client_cert: path("client.pem"),
                client_key: path("client.key"),
                ..TlsConfig::default()
            };
            (tls, false)
        }
        (None, Some(tls)) => (tls.clone(), false),
        (None, None) => (
            TlsConfig {
                base_dir: Some(config_path.parent().unwrap_or(Path::new("")).to_path_buf()),
                ..TlsConfig::default()
            },
            true,
        ),
    };
    let plan = IssuePlan {
        new_ca: options.new_ca,
        replicas: (!options.uids.is_empty()).then(|| options.uids.clone()),
        client: options.client || options.uids.is_empty(),
        validity: if options.expired {
            Validity::Expired
        } else {
            VALIDITY_DEFAULT
        },
    };
    let written = issue_for_config(&config, &tls, &plan)?;
    if add_section {
        let mut text = std::fs::read_to_string(config_path).map_err(|e| {
            Error::config(
                config_path.display().to_string(),
                format!("cannot read: {e}"),
            )
        })?;
        text.push_str(&tls.to_toml_string());
        write_file(
            config_path,
            &text,
            false,
            &config_path.display().to_string(),
        )?;
    }
    Ok((written, add_section))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::tls::client_certificate_problem;

    #[test]
    fn issued_certificates_verify_and_expired_ones_do_not() {
        let ca = Ca::generate(7, Validity::Years(1)).unwrap();
        let ca_pem = ca.cert_pem().unwrap().to_string();
        let ok = ca.issue_client(7, Validity::Years(1)).unwrap();
        assert_eq!(
            client_certificate_problem(ca_pem.as_bytes(), ok.cert_pem.as_bytes()),
            None
        );
        let old = ca.issue_client(7, Validity::Expired).unwrap();
        let problem = client_certificate_problem(ca_pem.as_bytes(), old.cert_pem.as_bytes());
        assert!(problem.unwrap().to_lowercase().contains("expired"));
        // A CA rebuilt from its key signs certificates the original CA certificate accepts.
        let again = Ca::from_key_pem(7, &ca.key_pem()).unwrap();
        let reissued = again.issue_client(7, Validity::Years(1)).unwrap();
        assert_eq!(
            client_certificate_problem(ca_pem.as_bytes(), reissued.cert_pem.as_bytes()),
            None
        );
        // Another CA's certificate does not verify.
        let other = Ca::generate(7, Validity::Years(1)).unwrap();
        let foreign = other.issue_client(7, Validity::Years(1)).unwrap();
        assert!(
            client_certificate_problem(ca_pem.as_bytes(), foreign.cert_pem.as_bytes()).is_some()
        );
    }
}

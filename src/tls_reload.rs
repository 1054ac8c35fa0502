//! Certificate rotation and revocation without a restart: the hub re-reads its CA bundle, server
//! certificate and key and the CRL when they change, builds a new rustls configuration and hands it
//! to the accept loop, which uses it from the next connection on. Open connections keep the
//! configuration they were made with. A change that does not load (a half-written file, a bad
//! CRL) is logged and the configuration in force is kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::CertificateRevocationListDer;
use rustls::pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::tls::{TlsError, server_config_with_crls};

/// The files the hub's TLS configuration is made of.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// CA bundle client certificates must chain to.
    pub ca: PathBuf,
    /// Server certificate chain.
    pub cert: PathBuf,
    /// Server private key.
    pub key: PathBuf,
    /// Revocation list for client certificates, PEM or DER.
    pub crl: Option<PathBuf>,
}

/// What went wrong loading the TLS files.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The files do not make a configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl TlsFiles {
    fn paths(&self) -> impl Iterator<Item = &Path> {
        [&self.ca, &self.cert, &self.key]
            .into_iter()
            .map(PathBuf::as_path)
            .chain(self.crl.as_deref())
    }

    /// Reads the files and builds the configuration.
    pub fn load(&self) -> Result<Arc<ServerConfig>, ReloadError> {
        self.load_with(server_config_with_crls)
    }

    /// Reads the files and builds the console's configuration (a client certificate requested,
    /// not required: [`crate::tls::console_config_with_crls`]).
    pub fn load_console(&self) -> Result<Arc<ServerConfig>, ReloadError> {
        self.load_with(crate::tls::console_config_with_crls)
    }

    fn load_with(&self, build: BuildConfig) -> Result<Arc<ServerConfig>, ReloadError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| ReloadError::Read {
                path: path.to_owned(),
                source,
            })
        };
        let crls = match &self.crl {
            Some(path) => parse_crls(&read(path)?),
            None => Vec::new(),
        };
        Ok(build(
            &read(&self.ca)?,
            &read(&self.cert)?,
            &read(&self.key)?,
            crls,
        )?)
    }

    /// A digest of the files' contents (missing files count as empty), to notice any change
    /// whatever the file system's timestamp resolution.
    fn digest(&self) -> Vec<u8> {
        let mut hasher = Sha256::new();
        for path in self.paths() {
            hasher.update(std::fs::read(path).unwrap_or_default());
            hasher.update([0]);
        }
        hasher.finalize().to_vec()
    }
}

/// Builds a TLS configuration from CA, certificate and key PEM and CRLs.
type BuildConfig = fn(
    &[u8],
    &[u8],
    &[u8],
    Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<ServerConfig>, TlsError>;

/// CRLs from PEM (`X509 CRL` blocks) or, failing that, one DER CRL.
fn parse_crls(bytes: &[u8]) -> Vec<CertificateRevocationListDer<'static>> {
    let pem: Vec<_> = CertificateRevocationListDer::pem_slice_iter(bytes)
        .filter_map(Result::ok)
        .collect();
    if pem.is_empty() {
        vec![CertificateRevocationListDer::from(bytes.to_vec())]
    } else {
        pem
    }
}

/// Checks the files every `every` and sends a new configuration when they changed and load.
pub fn spawn_reloader(
    files: TlsFiles,
    every: Duration,
    configs: watch::Sender<Arc<ServerConfig>>,
    stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    spawn_reloader_of(files, every, configs, stopped, TlsFiles::load)
}

/// As [`spawn_reloader`], building each configuration with `load` (the console's:
/// [`TlsFiles::load_console`]).
pub fn spawn_reloader_of(
    files: TlsFiles,
    every: Duration,
    configs: watch::Sender<Arc<ServerConfig>>,
    mut stopped: watch::Receiver<bool>,
    load: fn(&TlsFiles) -> Result<Arc<ServerConfig>, ReloadError>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen = files.digest();
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = stopped.changed() => return,
            }
            let digest = files.digest();
            if digest == seen {
                continue;
            }
            match load(&files) {
                Ok(config) => {
                    seen = digest;
                    configs.send_replace(config);
                    tracing::info!(
                        "TLS files changed: new connections use the reloaded CA, certificate and CRL"
                    );
                }
                // Not marked as seen: a half-written file is tried again at the next check.
                Err(error) => {
                    tracing::warn!(%error, "TLS files changed but do not load; keeping the configuration in force");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Agency, AgencyKind, Jurisdiction};
    use crate::pki::{DevCa, Validity};

    fn files_in(dir: &Path, ca: &DevCa) -> TlsFiles {
        let server = ca.issue_server(&["localhost"]).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.cert_pem()).unwrap();
        std::fs::write(dir.join("server.pem"), &server.cert_pem).unwrap();
        std::fs::write(dir.join("server-key.pem"), &server.key_pem).unwrap();
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server-key.pem"),
            crl: Some(dir.join("crl")),
        }
    }

    #[test]
    fn a_crl_loads_as_pem_or_der_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = DevCa::generate("test CA").unwrap();
        let files = files_in(dir.path(), &ca);
        let agency = Agency::new(Jurisdiction::parse("140100").unwrap(), AgencyKind::Hr);
        let revoked = ca.issue_agency(&agency, Validity::default_leaf()).unwrap();
        let pem = ca.revocation_list(&[&revoked.cert_pem], 7).unwrap();
        std::fs::write(dir.path().join("crl"), &pem).unwrap();
        files.load().unwrap();
        let der = CertificateRevocationListDer::from_pem_slice(pem.as_bytes()).unwrap();
        std::fs::write(dir.path().join("crl"), der.as_ref()).unwrap();
        files.load().unwrap();
        std::fs::write(dir.path().join("crl"), b"not a CRL").unwrap();
        assert!(files.load().is_err());
    }

    #[test]
    fn only_tls_1_2_and_1_3_with_ecdhe_and_aead_suites_are_offered() {
        let dir = tempfile::tempdir().unwrap();
        let ca = DevCa::generate("test CA").unwrap();
        let mut files = files_in(dir.path(), &ca);
        files.crl = None;
        let config = files.load().unwrap();
        let suites = &config.crypto_provider().cipher_suites;
        assert!(!suites.is_empty());
        for suite in suites {
            let name = format!("{:?}", suite.suite());
            assert!(
                name.ends_with("_GCM_SHA256")
                    || name.ends_with("_GCM_SHA384")
                    || name.ends_with("_CHACHA20_POLY1305_SHA256"),
                "{name}"
            );
            if suite.version() == &rustls::version::TLS12 {
                assert!(name.starts_with("TLS_ECDHE_"), "{name}");
            } else {
                assert_eq!(suite.version(), &rustls::version::TLS13, "{name}");
            }
        }
    }
}

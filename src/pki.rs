//! Development PKI: a private CA, a server certificate and one client certificate per sample
//! agency, so that the hub and its clients run with mutual TLS from the first `quotahub init`.
//!
//! Agencies are identified only by their certificates (SAN URI `quotahub://agency/{code}/{kind}`,
//! see [`crate::domain::Agency::uri`]); this module is what mints those identities for development
//! and tests. Production deployments bring certificates from their own CA.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::extensions::ParsedExtension;
use x509_parser::x509::X509Name;

use crate::domain::{Agency, AgencyKind, Jurisdiction};

/// File name of the CA certificate, the trust anchor both the hub and clients load.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key, needed only to issue more certificates.
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// File name of the hub's server certificate.
pub const SERVER_CERT_FILE: &str = "server.pem";
/// File name of the hub's server private key.
pub const SERVER_KEY_FILE: &str = "server-key.pem";
/// Common name of the CA that [`init`] generates, so that it is recognisable in tools.
pub const DEV_CA_NAME: &str = "quotahub development CA";
/// Names the development server certificate is valid for: clients dial `localhost` or a loopback
/// address.
pub const DEFAULT_SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// Jurisdictions [`init`] issues agency certificates for: a sample city and one of its districts,
/// enough to exercise level-by-level supervision.
pub const SAMPLE_JURISDICTIONS: [&str; 2] = ["140100", "140105"];

/// How long the development CA is valid: long enough never to get in the way of development.
const CA_VALIDITY_DAYS: u32 = 3650;
/// How long development leaf certificates are valid (the common 825-day ceiling for leaves).
const LEAF_VALIDITY_DAYS: u32 = 825;
/// How far in the past validity starts, so that a peer with a slightly slow clock accepts a
/// certificate minted a moment ago.
const CLOCK_SKEW: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);
/// 9999-12-31T23:59:59Z after the epoch: the last instant an X.509 certificate can name.
const LATEST_X509_TIME: Duration = Duration::from_secs(253_402_300_799);

/// What can go wrong while making or loading the development PKI.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Reading or writing a PKI file failed; the path says which one.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying failure.
        source: std::io::Error,
    },
    /// rcgen could not generate, parse or sign something.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// The CA certificate or key given to [`DevCa::load`] cannot be used to issue certificates.
    #[error("unusable CA: {0}")]
    InvalidCa(String),
    /// Only one of the CA's two files exists, so it can be neither reused nor silently replaced
    /// (that would orphan every certificate it issued).
    #[error(
        "{present} exists but {missing} does not; restore it or regenerate everything with --force"
    )]
    IncompleteCa {
        /// The CA file that exists.
        present: PathBuf,
        /// The CA file that is missing.
        missing: PathBuf,
    },
}

/// A certificate and its private key, both PEM, ready to be written out or handed to rustls.
#[derive(Clone)]
pub struct CertifiedKey {
    /// The certificate, PEM (`CERTIFICATE`).
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8); secret.
    pub key_pem: String,
}

impl std::fmt::Debug for CertifiedKey {
    // Keeps private keys out of logs and test failure output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertifiedKey")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[redacted]")
            .finish()
    }
}

/// When an issued certificate is valid. Tests use it to mint expired or not-yet-valid
/// certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// First instant the certificate is valid.
    pub not_before: SystemTime,
    /// Last instant the certificate is valid.
    pub not_after: SystemTime,
}

impl Validity {
    /// Valid from an hour ago (tolerating clock skew between machines) for `days` days.
    pub fn days_from_now(days: u32) -> Validity {
        let now = SystemTime::now();
        Validity {
            not_before: now - CLOCK_SKEW,
            not_after: now + DAY * days,
        }
    }

    /// The validity [`init`] gives leaf certificates.
    pub fn default_leaf() -> Validity {
        Validity::days_from_now(LEAF_VALIDITY_DAYS)
    }

    fn apply(self, params: &mut CertificateParams) {
        // rcgen takes `time::OffsetDateTime`, which this crate does not depend on; offsetting the
        // epoch rcgen itself builds avoids naming that type. Times are clamped to what X.509 can
        // express from 1970 on, so no input can make the arithmetic overflow.
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        let at = |t: SystemTime| {
            epoch
                + t.duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .min(LATEST_X509_TIME)
        };
        params.not_before = at(self.not_before);
        params.not_after = at(self.not_after);
    }
}

/// A certificate authority that issues the hub's and the agencies' development certificates.
pub struct DevCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for DevCa {
    // The signing key stays out of debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl DevCa {
    /// Generates a fresh self-signed CA (ECDSA P-256) named `common_name`.
    pub fn generate(common_name: &str) -> Result<DevCa, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        // Path length 0: this CA signs leaves only, never intermediates.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        Validity::days_from_now(CA_VALIDITY_DAYS).apply(&mut params);
        let cert = params.self_signed(&key)?;
        Ok(DevCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its certificate and private key (PEM), e.g. the `ca.pem` and `ca-key.pem`
    /// an earlier [`init`] wrote, so that new certificates chain to the same trust anchor.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<DevCa, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| PkiError::InvalidCa(format!("the CA certificate is not PEM: {e}")))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| PkiError::InvalidCa(format!("the CA certificate does not parse: {e}")))?;
        if !cert.is_ca() {
            return Err(PkiError::InvalidCa("the certificate is not a CA".into()));
        }
        if cert.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
            return Err(PkiError::InvalidCa(
                "the private key does not belong to the CA certificate".into(),
            ));
        }

        // rcgen (without its x509-parser feature) cannot read an issuer back, so rebuild what it
        // signs with: the subject name, written into each leaf's issuer field, and the key id.
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(cert.subject())?;
        params.key_identifier_method = cert
            .iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => {
                    Some(KeyIdMethod::PreSpecified(id.0.to_vec()))
                }
                _ => None,
            })
            .unwrap_or(KeyIdMethod::Sha256);

        // Verifiers chain a leaf to its CA by comparing the encoded names byte for byte, so the
        // rebuilt name must encode exactly as the original.
        let probe = params.self_signed(&key)?;
        let (_, probe) = x509_parser::parse_x509_certificate(probe.der())
            .map_err(|e| PkiError::InvalidCa(format!("re-encoded name does not parse: {e}")))?;
        if probe.subject().as_raw() != cert.subject().as_raw() {
            return Err(PkiError::InvalidCa(
                "the CA subject name cannot be reproduced exactly".into(),
            ));
        }

        Ok(DevCa {
            cert_pem: cert_pem.to_owned(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate, PEM: the trust anchor for the server and every client.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PEM (PKCS#8); secret, written only to `ca-key.pem`.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Issues the hub's server certificate (server-auth) for DNS names and IP addresses alike,
    /// e.g. [`DEFAULT_SERVER_NAMES`].
    pub fn issue_server(&self, dns_and_ip_names: &[&str]) -> Result<CertifiedKey, PkiError> {
        let names: Vec<String> = dns_and_ip_names.iter().map(|&n| n.to_owned()).collect();
        // `CertificateParams::new` turns each name into an IP or a DNS SAN as it parses.
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            dns_and_ip_names.first().copied().unwrap_or("quotahub"),
        );
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign_leaf(params, Validity::default_leaf())
    }

    /// Issues an agency's client certificate: client-auth, SAN URI [`Agency::uri`], and a common
    /// name such as `140100 finance` for humans reading logs.
    pub fn issue_agency(
        &self,
        agency: &Agency,
        validity: Validity,
    ) -> Result<CertifiedKey, PkiError> {
        let common_name = format!("{} {}", agency.jurisdiction, agency.kind);
        self.issue_client(&common_name, &[&agency.uri()], validity)
    }

    /// Issues a client certificate carrying arbitrary SAN URIs (possibly none), so tests can
    /// present identities that are foreign, malformed, missing or ambiguous.
    pub fn issue_client_with_uris(
        &self,
        uris: &[&str],
        validity: Validity,
    ) -> Result<CertifiedKey, PkiError> {
        self.issue_client("quotahub test client", uris, validity)
    }

    /// A certificate revocation list (PEM) signed by this CA that revokes the given certificates
    /// (PEM), valid from an hour ago for `days` days; for `tls.crl`.
    pub fn revocation_list(&self, revoked_pem: &[&str], days: u32) -> Result<String, PkiError> {
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut revoked_certs = Vec::with_capacity(revoked_pem.len());
        for pem in revoked_pem {
            let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| {
                PkiError::InvalidCa(format!("a revoked certificate is not PEM: {e}"))
            })?;
            let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| {
                PkiError::InvalidCa(format!("a revoked certificate does not parse: {e}"))
            })?;
            revoked_certs.push(rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from_slice(cert.raw_serial()),
                revocation_time: epoch + now.saturating_sub(CLOCK_SKEW),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            });
        }
        let params = rcgen::CertificateRevocationListParams {
            this_update: epoch + now.saturating_sub(CLOCK_SKEW),
            next_update: epoch + now + DAY * days.max(1),
            crl_number: rcgen::SerialNumber::from(now.as_secs().to_be_bytes().to_vec()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }

    fn issue_client(
        &self,
        common_name: &str,
        uris: &[&str],
        validity: Validity,
    ) -> Result<CertifiedKey, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.subject_alt_names = uris
            .iter()
            .map(|&uri| Ok(SanType::URI(uri.try_into()?)))
            .collect::<Result<_, rcgen::Error>>()?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign_leaf(params, validity)
    }

    fn sign_leaf(
        &self,
        mut params: CertificateParams,
        validity: Validity,
    ) -> Result<CertifiedKey, PkiError> {
        let key = KeyPair::generate()?;
        validity.apply(&mut params);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Rebuilds a subject name as rcgen values, keeping each attribute's ASN.1 string type.
fn distinguished_name(name: &X509Name<'_>) -> Result<DistinguishedName, PkiError> {
    let unsupported = |what: &str| PkiError::InvalidCa(format!("unsupported subject name: {what}"));
    let mut dn = DistinguishedName::new();
    for rdn in name.iter() {
        let mut attributes = rdn.iter();
        let (Some(attribute), None) = (attributes.next(), attributes.next()) else {
            return Err(unsupported("multi-valued or empty RDN"));
        };
        let oid: Vec<u64> = attribute
            .attr_type()
            .iter()
            .ok_or_else(|| unsupported("attribute OID"))?
            .collect();
        let value = attribute.attr_value();
        let text = std::str::from_utf8(value.data).map_err(|_| unsupported("non-UTF-8 value"))?;
        let value = match value.header.tag() {
            Tag::Utf8String => DnValue::Utf8String(text.to_owned()),
            Tag::PrintableString => DnValue::PrintableString(text.try_into()?),
            Tag::Ia5String => DnValue::Ia5String(text.try_into()?),
            tag => return Err(unsupported(&format!("string type {tag}"))),
        };
        dn.push(DnType::from_oid(&oid), value);
    }
    Ok(dn)
}

/// The stem of an agency's certificate files, e.g. `140100-finance`.
pub fn agency_file_stem(agency: &Agency) -> String {
    format!("{}-{}", agency.jurisdiction, agency.kind.slug())
}

/// Where [`init`] puts an agency's certificate and key in `dir`, e.g. `140100-finance.pem` and
/// `140100-finance-key.pem`; clients and tests find them through this.
pub fn agency_files(dir: &Path, agency: &Agency) -> (PathBuf, PathBuf) {
    let stem = agency_file_stem(agency);
    (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}-key.pem")),
    )
}

/// Every agency [`init`] issues a certificate for: each kind in each sample jurisdiction.
pub fn sample_agencies() -> Vec<Agency> {
    SAMPLE_JURISDICTIONS
        .iter()
        .filter_map(|code| Jurisdiction::parse(code).ok())
        .flat_map(|jurisdiction| {
            AgencyKind::ALL
                .into_iter()
                .map(move |kind| Agency::new(jurisdiction.clone(), kind))
        })
        .collect()
}

/// What [`init`] did, so that `quotahub init`/`serve` can tell the operator where the files are.
#[derive(Clone, Debug, Default)]
pub struct PkiReport {
    /// The directory holding the PKI.
    pub dir: PathBuf,
    /// Whether a new CA was generated (every certificate from an earlier CA is then replaced).
    pub ca_generated: bool,
    /// Files written by this run, in the order written.
    pub written: Vec<PathBuf>,
    /// Files that already existed and were kept.
    pub kept: Vec<PathBuf>,
}

/// Makes `dir` and fills it with the development PKI: `ca.pem`, `ca-key.pem`, `server.pem`,
/// `server-key.pem` and `{jurisdiction}-{kind}.pem` / `-key.pem` for [`sample_agencies`].
///
/// Existing files are kept unless `force`: an existing CA is loaded and only missing
/// certificates are issued, so re-running never invalidates certificates already handed out.
/// A newly generated CA replaces every leaf, since the old ones would no longer chain to it.
/// Private keys are written with mode 0600 on unix.
pub fn init(dir: &Path, force: bool) -> Result<PkiReport, PkiError> {
    fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut report = PkiReport {
        dir: dir.to_owned(),
        ..PkiReport::default()
    };

    let ca_cert = dir.join(CA_CERT_FILE);
    let ca_key = dir.join(CA_KEY_FILE);
    let ca = match (force, ca_cert.exists(), ca_key.exists()) {
        (false, true, true) => {
            let ca = DevCa::load(&read(&ca_cert)?, &read(&ca_key)?)?;
            report.kept.extend([ca_cert, ca_key]);
            ca
        }
        (false, true, false) => {
            return Err(PkiError::IncompleteCa {
                present: ca_cert,
                missing: ca_key,
            });
        }
        (false, false, true) => {
            return Err(PkiError::IncompleteCa {
                present: ca_key,
                missing: ca_cert,
            });
        }
        _ => {
            let ca = DevCa::generate(DEV_CA_NAME)?;
            write(&ca_cert, ca.cert_pem(), false)?;
            write(&ca_key, &ca.key_pem(), true)?;
            report.ca_generated = true;
            report.written.extend([ca_cert, ca_key]);
            ca
        }
    };

    let mut leaves: Vec<(PathBuf, PathBuf, Option<Agency>)> =
        vec![(dir.join(SERVER_CERT_FILE), dir.join(SERVER_KEY_FILE), None)];
    for agency in sample_agencies() {
        let (cert, key) = agency_files(dir, &agency);
        leaves.push((cert, key, Some(agency)));
    }
    for (cert_path, key_path, agency) in leaves {
        if !report.ca_generated && cert_path.exists() && key_path.exists() {
            report.kept.extend([cert_path, key_path]);
            continue;
        }
        let issued = match &agency {
            Some(agency) => ca.issue_agency(agency, Validity::default_leaf())?,
            None => ca.issue_server(&DEFAULT_SERVER_NAMES)?,
        };
        write(&cert_path, &issued.cert_pem, false)?;
        write(&key_path, &issued.key_pem, true)?;
        report.written.extend([cert_path, key_path]);
    }
    Ok(report)
}

/// The audit log's private key in the development PKI directory.
pub const LOG_KEY: &str = "audit-log.key";
/// Its public half, for witnesses and `quotahub audit verify`.
pub const LOG_PUBLIC_KEY: &str = "audit-log.pub";
/// The origin (and key name) of a development log.
pub const DEV_LOG_ORIGIN: &str = "quotahub.dev/audit-log";

/// Makes an Ed25519 key for the audit log's checkpoints in `key` (a signed-note private key named
/// `origin`) and its public half beside it (`.pub`), unless `key` exists. Returns the public key
/// (read back when the key was there).
pub fn log_key(key: &Path, origin: &str) -> Result<String, PkiError> {
    let public = key.with_extension("pub");
    if key.exists() {
        let signer = crate::domain::audit::LogSigner::parse(&read(key)?)
            .map_err(|reason| PkiError::InvalidCa(format!("{}: {reason}", key.display())))?;
        return Ok(signer.public_key());
    }
    use ring::rand::SecureRandom;
    use ring::signature::KeyPair;
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut seed)
        .map_err(|_| PkiError::InvalidCa("no randomness for the log key".into()))?;
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed)
        .map_err(|_| PkiError::InvalidCa("bad Ed25519 seed".into()))?;
    let (private, vkey) =
        crate::domain::audit::LogSigner::from_seed(origin, seed, pair.public_key().as_ref())
            .map_err(PkiError::InvalidCa)?;
    if let Some(dir) = key.parent() {
        fs::create_dir_all(dir).map_err(|source| PkiError::Io {
            path: dir.to_owned(),
            source,
        })?;
    }
    write(key, &format!("{private}\n"), true)?;
    write(&public, &format!("{vkey}\n"), false)?;
    Ok(vkey)
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Writes `contents` to `path`, owner-only if `secret` (on unix).
fn write(path: &Path, contents: &str, secret: bool) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    // `mode` applies only to new files; tighten an existing one before the key lands in it.
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io)?;
    }
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::extensions::GeneralName;

    fn finance_140100() -> Agency {
        Agency::from_uri("quotahub://agency/140100/finance").unwrap()
    }

    fn parse_pem(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    fn expected_files() -> Vec<String> {
        let mut files: Vec<String> = [CA_CERT_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE]
            .map(String::from)
            .to_vec();
        for code in SAMPLE_JURISDICTIONS {
            for kind in AgencyKind::ALL {
                files.push(format!("{code}-{}.pem", kind.slug()));
                files.push(format!("{code}-{}-key.pem", kind.slug()));
            }
        }
        files
    }

    #[test]
    fn agency_certificate_carries_uri_client_auth_and_readable_name() {
        let ca = DevCa::generate("test CA").unwrap();
        let issued = ca
            .issue_agency(&finance_140100(), Validity::default_leaf())
            .unwrap();
        let der = parse_pem(&issued.cert_pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();

        let san = cert.subject_alternative_name().unwrap().unwrap();
        let uris: Vec<&str> = san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::URI(uri) => Some(*uri),
                _ => None,
            })
            .collect();
        assert_eq!(uris, ["quotahub://agency/140100/finance"]);
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        let cn = cert.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "140100 finance");
        assert!(!cert.is_ca());
    }

    #[test]
    fn server_certificate_names_localhost_and_loopback_addresses() {
        let ca = DevCa::generate("test CA").unwrap();
        let issued = ca.issue_server(&DEFAULT_SERVER_NAMES).unwrap();
        let der = parse_pem(&issued.cert_pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let names = &san.value.general_names;
        assert!(names.contains(&GeneralName::DNSName("localhost")));
        assert!(names.contains(&GeneralName::IPAddress(&[127, 0, 0, 1])));
        assert!(names.contains(&GeneralName::IPAddress(
            &std::net::Ipv6Addr::LOCALHOST.octets()
        )));
        assert!(
            cert.extended_key_usage()
                .unwrap()
                .unwrap()
                .value
                .server_auth
        );
    }

    #[test]
    fn a_loaded_ca_issues_certificates_naming_it_as_issuer() {
        let original = DevCa::generate("test CA").unwrap();
        let loaded = DevCa::load(original.cert_pem(), &original.key_pem()).unwrap();
        let issued = loaded
            .issue_agency(&finance_140100(), Validity::default_leaf())
            .unwrap();

        let ca_der = parse_pem(original.cert_pem());
        let leaf_der = parse_pem(&issued.cert_pem);
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der).unwrap();
        assert_eq!(leaf.issuer().as_raw(), ca.subject().as_raw());
        // Signatures are checked by the TLS tests, which chain real certificates to the CA.
    }

    #[test]
    fn loading_rejects_a_key_that_is_not_the_cas() {
        let ca = DevCa::generate("test CA").unwrap();
        let other = DevCa::generate("other CA").unwrap();
        let err = DevCa::load(ca.cert_pem(), &other.key_pem()).unwrap_err();
        assert!(matches!(err, PkiError::InvalidCa(_)), "{err}");
    }

    #[test]
    fn init_writes_every_file_then_keeps_them_and_force_replaces_them() {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");

        let first = init(&pki, false).unwrap();
        assert!(first.ca_generated);
        assert!(first.kept.is_empty());
        let mut written: Vec<String> = first
            .written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        let mut expected = expected_files();
        written.sort();
        expected.sort();
        assert_eq!(written, expected);
        assert_eq!(first.dir, pki);
        assert!(pki.join("140105-staffing-office.pem").exists());
        assert!(
            agency_files(&pki, &finance_140100())
                .1
                .ends_with("140100-finance-key.pem")
        );

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for name in expected.iter().filter(|name| name.ends_with("-key.pem")) {
                let mode = fs::metadata(pki.join(name)).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{name}");
            }
        }

        let ca_before = fs::read(pki.join(CA_CERT_FILE)).unwrap();
        let leaf_before = fs::read(pki.join("140100-hr.pem")).unwrap();

        // A second run keeps everything; a deleted leaf is reissued by the same CA.
        fs::remove_file(pki.join("140105-audit.pem")).unwrap();
        let second = init(&pki, false).unwrap();
        assert!(!second.ca_generated);
        assert_eq!(
            second.written,
            [
                pki.join("140105-audit.pem"),
                pki.join("140105-audit-key.pem")
            ]
        );
        assert_eq!(second.kept.len(), expected.len() - 2);
        assert_eq!(fs::read(pki.join(CA_CERT_FILE)).unwrap(), ca_before);
        assert_eq!(fs::read(pki.join("140100-hr.pem")).unwrap(), leaf_before);
        let reissued_der = parse_pem(&read(&pki.join("140105-audit.pem")).unwrap());
        let (_, reissued) = x509_parser::parse_x509_certificate(&reissued_der).unwrap();
        let ca_der = CertificateDer::from_pem_slice(&ca_before).unwrap();
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        assert_eq!(reissued.issuer().as_raw(), ca.subject().as_raw());

        // Forcing regenerates the CA and so every certificate.
        let forced = init(&pki, true).unwrap();
        assert!(forced.ca_generated);
        assert_eq!(forced.written.len(), expected.len());
        assert_ne!(fs::read(pki.join(CA_CERT_FILE)).unwrap(), ca_before);
        assert_ne!(fs::read(pki.join("140100-hr.pem")).unwrap(), leaf_before);
    }

    #[test]
    fn init_refuses_a_ca_without_its_key() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), false).unwrap();
        fs::remove_file(dir.path().join(CA_KEY_FILE)).unwrap();
        let err = init(dir.path(), false).unwrap_err();
        assert!(matches!(err, PkiError::IncompleteCa { .. }), "{err}");
    }
}

//! The server's own keys, created on first start in the data directory (private key files 0600,
//! refused if group or others can read them): the TLS CA and server certificate, the audit signing
//! key and the command signing key.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// Everything key-shaped the server holds.
pub struct Keys {
    /// PEM of the CA certificate (served at `/api/v1/ca.pem` for clients to pin).
    pub ca_cert_pem: String,
    /// Hex SHA-256 of the CA certificate's DER, what operators pin with `--ca-fingerprint`.
    pub ca_fingerprint: String,
    ca_key: KeyPair,
    pub audit_key: SigningKey,
    /// Signs destructive device commands (used from the remote-actions work on).
    pub command_key: SigningKey,
    /// Whether this start created the keys (first start).
    pub created: bool,
}

impl Keys {
    /// Loads the keys from `data_dir`, creating any that are missing.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating data directory {}", data_dir.display()))?;
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", data_dir.display()))?;
        let ca_key_path = data_dir.join("ca.key");
        let ca_cert_path = data_dir.join("ca.crt");
        let created = !ca_key_path.exists();
        let (ca_key, ca_cert_pem) = if created {
            let key = KeyPair::generate().context("generating the CA key")?;
            let cert = ca_params()
                .self_signed(&key)
                .context("self-signing the CA certificate")?;
            write_private(&ca_key_path, key.serialize_pem().as_bytes())?;
            write_public(&ca_cert_path, cert.pem().as_bytes())?;
            (key, cert.pem())
        } else {
            let key = KeyPair::from_pem(&read_private(&ca_key_path)?).context("reading ca.key")?;
            let pem = std::fs::read_to_string(&ca_cert_path)
                .with_context(|| format!("reading {}", ca_cert_path.display()))?;
            (key, pem)
        };
        let ca_fingerprint = fingerprint_pem(&ca_cert_pem)?;
        let audit_key = ed25519_key(&data_dir.join("audit.key"))?;
        write_public(
            &data_dir.join("audit.pub"),
            audit_key
                .verifying_key()
                .to_public_key_pem(LineEnding::LF)
                .context("encoding the audit public key")?
                .as_bytes(),
        )?;
        let command_key = ed25519_key(&data_dir.join("command.key"))?;
        Ok(Self {
            ca_cert_pem,
            ca_fingerprint,
            ca_key,
            audit_key,
            command_key,
            created,
        })
    }

    /// Issues (or reuses) the server's TLS certificate for `names`, returning chain PEM and key PEM.
    /// A new certificate is issued when the names change.
    pub fn server_certificate(&self, data_dir: &Path, names: &[String]) -> anyhow::Result<(String, String)> {
        let cert_path = data_dir.join("server.crt");
        let key_path = data_dir.join("server.key");
        let names_path = data_dir.join("server.names");
        let wanted = names.join("\n");
        if cert_path.exists()
            && key_path.exists()
            && std::fs::read_to_string(&names_path).ok().as_deref() == Some(&wanted)
        {
            let chain = std::fs::read_to_string(&cert_path)
                .with_context(|| format!("reading {}", cert_path.display()))?;
            return Ok((chain, read_private(&key_path)?));
        }
        let key = KeyPair::generate().context("generating the server key")?;
        let mut params = CertificateParams::new(names.to_vec()).context("server certificate names")?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "Ward server");
        let (not_before, not_after) = validity(825);
        params.not_before = not_before;
        params.not_after = not_after;
        let issuer = Issuer::new(ca_params(), &self.ca_key);
        let cert = params
            .signed_by(&key, &issuer)
            .context("signing the server certificate")?;
        let chain = format!("{}{}", cert.pem(), self.ca_cert_pem);
        for path in [&cert_path, &key_path, &names_path] {
            let _ = std::fs::remove_file(path);
        }
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        write_public(&cert_path, chain.as_bytes())?;
        write_public(&names_path, wanted.as_bytes())?;
        Ok((chain, key.serialize_pem()))
    }
}

/// A certificate the CA issued to a device.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    pub pem: String,
    /// Hex SHA-256 of the DER, how the server recognises the certificate on each connection.
    pub fingerprint: String,
    pub not_after_ms: i64,
}

/// How long device certificates are valid; agents renew well before the end.
pub const DEVICE_CERT_DAYS: i64 = 90;

impl Keys {
    /// Signs a device certificate from a PKCS#10 request after checking the request's signature
    /// (proof that the device holds the private key, which never leaves it). Everything but the
    /// public key is decided here: subject CN = device id, client-auth only, 90 days.
    pub fn issue_device_certificate(
        &self,
        csr_pem: &str,
        device_id: &str,
        now_ms: i64,
    ) -> Result<IssuedCertificate, String> {
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).map_err(|err| match err {
            rcgen::Error::InvalidCertificationRequestSignature => {
                "the request's signature does not match its key".to_owned()
            }
            other => format!("not a valid PKCS#10 request: {other}"),
        })?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, device_id);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Ward device");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let start = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000)
            .map_err(|err| format!("clock out of range: {err}"))?;
        params.not_before = start - time::Duration::hours(1);
        params.not_after = start + time::Duration::days(DEVICE_CERT_DAYS);
        let mut serial = [0u8; 16];
        rand::fill(&mut serial);
        serial[0] &= 0x7f;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        csr.params = params;
        let issuer = Issuer::new(ca_params(), &self.ca_key);
        let cert = csr
            .signed_by(&issuer)
            .map_err(|err| format!("signing failed: {err}"))?;
        Ok(IssuedCertificate {
            pem: cert.pem(),
            fingerprint: hex::encode(Sha256::digest(cert.der().as_ref())),
            not_after_ms: now_ms + DEVICE_CERT_DAYS * 86_400_000,
        })
    }
}

/// The CA's parameters. Issuing only needs the subject name and key, so rebuilding these on each
/// start (rather than parsing the stored certificate) signs certificates that chain to it.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "Ward CA");
    params.distinguished_name.push(DnType::OrganizationName, "Ward");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let (not_before, not_after) = validity(3650);
    params.not_before = not_before;
    params.not_after = not_after;
    params
}

#[allow(
    clippy::disallowed_methods,
    reason = "certificate validity is wall-clock time"
)]
fn validity(days: i64) -> (time::OffsetDateTime, time::OffsetDateTime) {
    // Certificate validity is wall-clock by nature; this is the one place keys read the system time.
    let now = time::OffsetDateTime::now_utc();
    (now - time::Duration::days(1), now + time::Duration::days(days))
}

/// Hex SHA-256 of the first certificate in a PEM text.
pub fn fingerprint_pem(pem: &str) -> anyhow::Result<String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).context("parsing the CA certificate")?;
    Ok(hex::encode(Sha256::digest(der.as_ref())))
}

fn ed25519_key(path: &Path) -> anyhow::Result<SigningKey> {
    if path.exists() {
        return SigningKey::from_pkcs8_pem(&read_private(path)?)
            .with_context(|| format!("reading {}", path.display()));
    }
    let mut seed = [0u8; 32];
    rand::fill(&mut seed);
    let key = SigningKey::from_bytes(&seed);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .context("encoding a signing key")?;
    write_private(path, pem.as_bytes())?;
    Ok(key)
}

/// Reads a private key file, refusing one that group or others can read.
pub fn read_private(path: &Path) -> anyhow::Result<String> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "refusing {}: readable by group or others (mode {mode:o}); run chmod 600 on it",
            path.display()
        );
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_file(path, bytes, 0o600)
}

fn write_public(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(path);
    write_file(path, bytes, 0o644)
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("syncing {}", path.display()))?;
    Ok(())
}

/// Path of the audit public key inside a data directory.
pub fn audit_public_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("audit.pub")
}

/// A certificate chain and its private key from PEM text.
pub fn chain_and_key(
    chain_pem: &str,
    key_pem: &str,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .context("parsing the TLS certificate chain")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("parsing the TLS private key")?;
    Ok((chain, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let first = Keys::load_or_create(dir.path()).unwrap();
        assert!(first.created);
        for name in ["ca.key", "audit.key", "command.key"] {
            let mode = std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
        let again = Keys::load_or_create(dir.path()).unwrap();
        assert!(!again.created);
        assert_eq!(again.ca_fingerprint, first.ca_fingerprint);
        assert_eq!(again.audit_key.to_bytes(), first.audit_key.to_bytes());
        assert_eq!(first.ca_fingerprint.len(), 64);
    }

    #[test]
    fn device_certificates_come_only_from_valid_requests() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load_or_create(dir.path()).unwrap();
        let device_key = KeyPair::generate().unwrap();
        let csr = CertificateParams::new(vec![])
            .unwrap()
            .serialize_request(&device_key)
            .unwrap()
            .pem()
            .unwrap();
        let issued = keys
            .issue_device_certificate(&csr, "device-1", 1_790_000_000_000)
            .unwrap();
        assert!(issued.pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(issued.fingerprint.len(), 64);
        for bad in [
            "",
            "garbage",
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        ] {
            assert!(
                keys.issue_device_certificate(bad, "d", 1_790_000_000_000)
                    .is_err(),
                "{bad}"
            );
        }
        // A request whose signature was made by another key.
        let mut der = CertificateParams::new(vec![])
            .unwrap()
            .serialize_request(&device_key)
            .unwrap()
            .der()
            .to_vec();
        let last = der.len() - 1;
        der[last] ^= 0xff;
        let pem = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &der)
        );
        let err = keys
            .issue_device_certificate(&pem, "d", 1_790_000_000_000)
            .unwrap_err();
        assert!(err.contains("signature") || err.contains("valid"), "{err}");
    }

    #[test]
    fn readable_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Keys::load_or_create(dir.path()).unwrap();
        std::fs::set_permissions(
            dir.path().join("audit.key"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let err = Keys::load_or_create(dir.path()).err().unwrap();
        assert!(format!("{err:#}").contains("chmod 600"), "{err:#}");
    }
}

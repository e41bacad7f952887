//! TLS trust for talking to a Ward server: its own CA from PEM, or a pinned CA fingerprint.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

use crate::ClientError;

/// How the client decides to trust the server's certificate on `https://` URLs.
#[derive(Clone, PartialEq, Eq)]
pub enum Trust {
    /// The operating system's trust store, for a server with a publicly trusted certificate.
    System,
    /// PEM text of the Ward server's own CA certificate: the only root trusted.
    CaPem(String),
    /// Hex SHA-256 of the CA certificate's DER (colons, spaces and case ignored). The server must
    /// present that CA in its chain; it then becomes the only root trusted.
    Fingerprint(String),
}

impl std::fmt::Debug for Trust {
    // The PEM is long and uninteresting in logs; the fingerprint is short and useful.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trust::System => f.write_str("System"),
            Trust::CaPem(_) => f.write_str("CaPem(..)"),
            Trust::Fingerprint(pin) => f.debug_tuple("Fingerprint").field(pin).finish(),
        }
    }
}

/// The ring provider, installed as the process default too: reqwest's `rustls-no-provider`
/// feature leaves the choice to us, and the system-trust path looks up the default.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses a fingerprint given by a person (`AB:cd:...` or plain hex) into its 32 bytes.
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], ClientError> {
    let hex_digits: String = text
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let mut pin = [0u8; 32];
    hex::decode_to_slice(&hex_digits, &mut pin).map_err(|_| {
        ClientError::Invalid("the CA fingerprint must be 64 hex digits (a SHA-256), colons allowed".into())
    })?;
    Ok(pin)
}

/// SHA-256 of a DER certificate, the value a fingerprint pins.
pub fn certificate_fingerprint(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// SHA-256 of the first certificate in PEM text: the value `--ca-fingerprint` pins, so a CA saved
/// as PEM can be turned back into the fingerprint a device needs.
pub fn pem_certificate_fingerprint(pem: &str) -> Result<[u8; 32], ClientError> {
    Ok(certificate_fingerprint(&first_certificate(pem)?))
}

/// The first certificate in PEM text, as DER.
pub(crate) fn first_certificate(pem: &str) -> Result<CertificateDer<'static>, ClientError> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|err| ClientError::Invalid(format!("cannot read the CA certificate PEM: {err}")))
}

/// A rustls config that trusts exactly the CA in `pem`.
pub(crate) fn config_for_ca_pem(pem: &str) -> Result<ClientConfig, ClientError> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    roots
        .add(first_certificate(pem)?)
        .map_err(|err| ClientError::Invalid(format!("the CA certificate is not usable: {err}")))?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|err| ClientError::Invalid(format!("the CA certificate is not usable: {err}")))?;
    config_with_verifier(provider, verifier)
}

/// A rustls config that trusts the CA whose SHA-256 is `pin`, found in the server's chain.
pub(crate) fn config_for_fingerprint(pin: [u8; 32]) -> Result<ClientConfig, ClientError> {
    let provider = provider();
    let verifier = Arc::new(PinnedCaVerifier {
        pin,
        algorithms: provider.signature_verification_algorithms,
        provider: provider.clone(),
    });
    config_with_verifier(provider, verifier)
}

fn config_with_verifier(
    provider: Arc<CryptoProvider>,
    verifier: Arc<dyn ServerCertVerifier>,
) -> Result<ClientConfig, ClientError> {
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| ClientError::Invalid(format!("tls setup: {err}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// Trust on first use without a CA file: the operator copies the CA fingerprint the server printed
/// at first start, and this verifier accepts the server only if that exact CA is in its chain and
/// the leaf verifies against it normally (name, validity, signature).
#[derive(Debug)]
struct PinnedCaVerifier {
    pin: [u8; 32],
    algorithms: WebPkiSupportedAlgorithms,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|cert| certificate_fingerprint(cert) == self.pin)
            .ok_or_else(|| {
                rustls::Error::General(
                    "the server did not present a CA certificate matching the pinned fingerprint".into(),
                )
            })?;
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|err| rustls::Error::General(format!("pinned CA certificate is not usable: {err}")))?;
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|err| rustls::Error::General(format!("pinned CA certificate is not usable: {err}")))?;
        verifier.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN: &str = "3fa1c2d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

    #[test]
    fn fingerprint_ignores_colons_case_and_spaces() {
        let plain = parse_fingerprint(PIN).unwrap();
        let colons: String = PIN
            .as_bytes()
            .chunks(2)
            .map(|pair| std::str::from_utf8(pair).unwrap().to_ascii_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(parse_fingerprint(&colons).unwrap(), plain);
        assert_eq!(parse_fingerprint(&format!("  {PIN}\n")).unwrap(), plain);
        assert_eq!(plain[0], 0x3f);
    }

    #[test]
    fn fingerprint_rejects_wrong_length_and_non_hex() {
        assert!(matches!(
            parse_fingerprint(&PIN[..62]),
            Err(ClientError::Invalid(_))
        ));
        assert!(matches!(
            parse_fingerprint(&format!("{PIN}00")),
            Err(ClientError::Invalid(_))
        ));
        assert!(matches!(
            parse_fingerprint(&PIN.replace('3', "g")),
            Err(ClientError::Invalid(_))
        ));
    }

    #[test]
    fn bad_pem_is_invalid_input() {
        assert!(matches!(
            config_for_ca_pem("not a pem"),
            Err(ClientError::Invalid(_))
        ));
        assert!(matches!(
            pem_certificate_fingerprint("not a pem"),
            Err(ClientError::Invalid(_))
        ));
    }

    #[test]
    fn trust_debug_hides_pem() {
        assert_eq!(format!("{:?}", Trust::CaPem("-----BEGIN".into())), "CaPem(..)");
    }
}

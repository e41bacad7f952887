//! `ward-agent enroll`: makes a key pair on the device, sends only a certificate signing request
//! with the enrollment token, and stores the certificate Ward's CA signed.

use std::path::Path;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use ward_client::{Client, Trust};
use ward_proto::EnrollRequest;

use crate::identity::{Enrollment, StateDir};

/// Enrolls this device with the server at `server_url` and saves the identity in `state`.
pub async fn enroll(
    server_url: &str,
    token: &str,
    ca_fingerprint: Option<&str>,
    state: &StateDir,
    hostname: &str,
) -> Result<Enrollment, String> {
    if state.is_enrolled() {
        return Err(format!(
            "{} already holds an enrollment; remove it first to enroll again",
            state.0.display()
        ));
    }
    let url = reqwest_url(server_url)?;
    let host = url
        .host_str()
        .ok_or("the server URL has no host")?
        .trim_matches(['[', ']'])
        .to_owned();
    let port = url.port_or_known_default().ok_or("the server URL has no port")?;
    // Pin the server's CA on first contact when a fingerprint is given; otherwise trust the system.
    let (trust, pinned_ca) = match ca_fingerprint {
        Some(fingerprint) => {
            let ca = ward_client::fetch_ca_pem(server_url, fingerprint)
                .await
                .map_err(|e| e.to_string())?;
            (Trust::CaPem(ca.clone()), Some(ca))
        }
        None => (Trust::System, None),
    };
    let key = KeyPair::generate().map_err(|e| format!("generating the device key: {e}"))?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, hostname);
    let csr = params
        .serialize_request(&key)
        .map_err(|e| e.to_string())?
        .pem()
        .map_err(|e| e.to_string())?;
    let client = Client::new(server_url, &trust).map_err(|e| e.to_string())?;
    let response = client
        .enroll(&EnrollRequest {
            token: token.to_owned(),
            csr_pem: csr,
            hostname: hostname.to_owned(),
        })
        .await
        .map_err(|e| e.to_string())?;
    if let Some(pinned) = pinned_ca
        && pinned.trim() != response.ca_pem.trim()
    {
        return Err("the server's CA changed during enrollment".into());
    }
    let enrollment = Enrollment {
        version: 1,
        device_id: response.device_id,
        server_host: host,
        server_port: port,
        agent_port: response.agent_port,
        command_key: response.command_key.clone(),
        allow_full_wipe: response.allow_full_wipe,
        hostname: hostname.to_owned(),
        not_after_ms: parse_rfc3339_ms(&response.not_after).unwrap_or(0),
    };
    state
        .save(
            &enrollment,
            &key.serialize_pem(),
            &response.certificate_pem,
            &response.ca_pem,
        )
        .map_err(|e| format!("saving to {}: {e}", state.0.display()))?;
    Ok(enrollment)
}

fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let time = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000).ok()
}

fn reqwest_url(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("bad server URL {text:?}: {e}"))?;
    if url.scheme() != "https" {
        return Err("the server URL must be https://".into());
    }
    Ok(url)
}

/// This machine's hostname as the facts collector sees it.
pub fn local_hostname(root: &Path) -> String {
    let facts = crate::facts::collect(
        root,
        &crate::facts::CollectOptions {
            run_commands: false,
            ..Default::default()
        },
    );
    facts.hostname.unwrap_or_else(|| "unknown".into())
}

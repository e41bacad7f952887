//! Enrolling simulated devices through the API, as `ward-agent enroll` does: a key pair made on
//! the device, its CSR sent with an enrollment token, a certificate and the command key back.

use rcgen::{CertificateParams, KeyPair};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::kit::{Kit, Reply};

/// A device's credentials after enrollment.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub id: String,
    /// The device's private key (PEM), made on the device.
    pub key_pem: String,
    /// The certificate the server issued for it (PEM).
    pub cert_pem: String,
    /// The server's command-signing public key (hex), which the device checks commands with.
    pub command_key: String,
}

/// A certificate signing request for `key` (PEM), as the agent makes one.
pub fn csr(key: &KeyPair) -> String {
    CertificateParams::new(vec![])
        .unwrap()
        .serialize_request(key)
        .unwrap()
        .pem()
        .unwrap()
}

/// The sites [`Kit::create_sites`] creates: a hospital with a ward, and another hospital.
pub const SITES: [(&str, &str); 3] = [
    ("st-marys", "St Mary's"),
    ("st-marys/icu", "ICU"),
    ("general", "General"),
];

impl Kit {
    /// Creates the sites in [`SITES`].
    pub async fn create_sites(&self) {
        for (slug, name) in SITES {
            let reply = self
                .admin(Method::POST, "/sites", Some(json!({"slug": slug, "name": name})))
                .await;
            assert_eq!(reply.status, StatusCode::CREATED, "{slug}: {:?}", reply.body);
        }
    }

    /// Creates an enrollment token (`{"site", "class", …}`) and returns its secret.
    pub async fn enroll_token(&self, body: Value) -> String {
        let reply = self.admin(Method::POST, "/enroll-tokens", Some(body)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        reply.body["secret"].as_str().unwrap().to_owned()
    }

    /// Enrolls a device with this token, or returns the server's refusal.
    pub async fn enroll(&self, token: &str, hostname: &str) -> Result<Enrolled, Reply> {
        let key = KeyPair::generate().unwrap();
        let reply = self
            .call(
                Method::POST,
                "/enroll",
                None,
                Some(json!({"token": token, "csr_pem": csr(&key), "hostname": hostname})),
            )
            .await;
        if reply.status != StatusCode::CREATED {
            return Err(reply);
        }
        Ok(Enrolled {
            id: reply.body["device_id"].as_str().unwrap().to_owned(),
            key_pem: key.serialize_pem(),
            cert_pem: reply.body["certificate_pem"].as_str().unwrap().to_owned(),
            command_key: reply.body["command_key"].as_str().unwrap().to_owned(),
        })
    }

    /// Enrolls a device with this token; the enrollment must succeed.
    pub async fn enrolled(&self, token: &str, hostname: &str) -> Enrolled {
        match self.enroll(token, hostname).await {
            Ok(enrolled) => enrolled,
            Err(refused) => panic!("enrolling {hostname} was refused: {:?}", refused.body),
        }
    }

    /// Enrolls one device at `site` of `class` with a single-use token of its own.
    pub async fn enrolled_device(&self, site: &str, class: &str, hostname: &str) -> Enrolled {
        let token = self
            .enroll_token(json!({"site": site, "class": class, "uses": 1}))
            .await;
        self.enrolled(&token, hostname).await
    }
}

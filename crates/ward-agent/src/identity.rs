//! The agent's state directory: its private key (0600, never sent anywhere), its certificate,
//! Ward's CA certificate and where the server is.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What `ward-agent enroll` leaves behind for `ward-agent run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    pub version: u32,
    pub device_id: String,
    /// Host name or IP of the server, as given at enrollment (also the TLS name checked).
    pub server_host: String,
    /// The server's HTTPS port (enrollment, renewal).
    pub server_port: u16,
    /// The agent channel's port.
    pub agent_port: u16,
    /// The server's command public key (Ed25519, hex), pinned at enrollment.
    #[serde(default)]
    pub command_key: String,
    /// Whether the enrollment allowed a full wipe of this device.
    #[serde(default)]
    pub allow_full_wipe: bool,
    /// The hostname the device enrolled with (what an admin types to confirm a full wipe).
    #[serde(default)]
    pub hostname: String,
    /// When the current certificate expires (Unix ms); renewed well before.
    #[serde(default)]
    pub not_after_ms: i64,
}

/// Renew this long before the certificate expires (certificates last 90 days).
pub const RENEW_BEFORE_MS: i64 = 30 * 86_400_000;

/// Whether a certificate expiring at `not_after_ms` should be renewed at `now_ms`.
pub fn needs_renewal(now_ms: i64, not_after_ms: i64) -> bool {
    now_ms >= not_after_ms - RENEW_BEFORE_MS
}

/// Paths of the files in a state directory.
#[derive(Debug, Clone)]
pub struct StateDir(pub PathBuf);

impl StateDir {
    pub fn key(&self) -> PathBuf {
        self.0.join("device.key")
    }
    pub fn cert(&self) -> PathBuf {
        self.0.join("device.crt")
    }
    pub fn ca(&self) -> PathBuf {
        self.0.join("ca.crt")
    }
    pub fn enrollment(&self) -> PathBuf {
        self.0.join("enrollment.toml")
    }

    /// Whether this directory already holds an enrollment.
    pub fn is_enrolled(&self) -> bool {
        self.enrollment().exists()
    }

    /// Writes everything an enrollment produced; the key file is 0600 in a 0700 directory.
    pub fn save(
        &self,
        enrollment: &Enrollment,
        key_pem: &str,
        cert_pem: &str,
        ca_pem: &str,
    ) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.0)?;
        std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o700))?;
        write_atomic(&self.key(), key_pem.as_bytes(), 0o600)?;
        write_atomic(&self.cert(), cert_pem.as_bytes(), 0o644)?;
        write_atomic(&self.ca(), ca_pem.as_bytes(), 0o644)?;
        let text = toml::to_string(enrollment).map_err(std::io::Error::other)?;
        write_atomic(&self.enrollment(), text.as_bytes(), 0o644)
    }

    /// Replaces the key and certificate after a renewal (key first is not safe either way; both
    /// are written to temporary files and renamed, so a crash leaves one complete pair).
    pub fn save_renewal(
        &self,
        enrollment: &Enrollment,
        key_pem: &str,
        cert_pem: &str,
    ) -> std::io::Result<()> {
        write_atomic(&self.key(), key_pem.as_bytes(), 0o600)?;
        write_atomic(&self.cert(), cert_pem.as_bytes(), 0o644)?;
        let text = toml::to_string(enrollment).map_err(std::io::Error::other)?;
        write_atomic(&self.enrollment(), text.as_bytes(), 0o644)
    }

    /// Loads the enrollment, key, certificate and CA, refusing a key others can read.
    pub fn load(&self) -> Result<(Enrollment, String, String, String), String> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|err| format!("reading {}: {err}", path.display()))
        };
        let mode = std::fs::metadata(self.key())
            .map_err(|err| {
                format!(
                    "reading {}: {err} (run `ward-agent enroll` first)",
                    self.key().display()
                )
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "refusing {}: readable by group or others; chmod 600 it",
                self.key().display()
            ));
        }
        let enrollment: Enrollment = toml::from_str(&read(&self.enrollment())?)
            .map_err(|err| format!("{}: {err}", self.enrollment().display()))?;
        Ok((
            enrollment,
            read(&self.key())?,
            read(&self.cert())?,
            read(&self.ca())?,
        ))
    }
}

fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let temp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&temp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_starts_thirty_days_before_expiry() {
        let expiry = 100 * 86_400_000;
        assert!(!needs_renewal(expiry - RENEW_BEFORE_MS - 1, expiry));
        assert!(needs_renewal(expiry - RENEW_BEFORE_MS, expiry));
        assert!(needs_renewal(0, 0), "an unknown expiry renews at once");
    }

    #[test]
    fn state_is_saved_privately_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir(dir.path().join("agent"));
        let enrollment = Enrollment {
            version: 1,
            device_id: "d".into(),
            server_host: "127.0.0.1".into(),
            server_port: 8443,
            agent_port: 8444,
            command_key: String::new(),
            allow_full_wipe: false,
            hostname: "h".into(),
            not_after_ms: 5,
        };
        state.save(&enrollment, "KEY", "CERT", "CA").unwrap();
        let (loaded, key, cert, ca) = state.load().unwrap();
        assert_eq!(
            (loaded, key.as_str(), cert.as_str(), ca.as_str()),
            (enrollment, "KEY", "CERT", "CA")
        );
        std::fs::set_permissions(state.key(), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(state.load().unwrap_err().contains("chmod 600"));
    }
}

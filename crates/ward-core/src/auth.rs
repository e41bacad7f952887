//! Credentials: argon2id passwords, random secrets, TOTP with replay protection, recovery codes,
//! and login throttling per account and per address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use ward_domain::clock::Entropy;

use crate::config::AuthConfig;

/// The operating system's CSPRNG; the one production implementation of [`Entropy`].
#[derive(Debug, Default)]
pub struct SystemEntropy;

impl Entropy for SystemEntropy {
    fn fill(&self, buf: &mut [u8]) {
        rand::fill(buf);
    }
}

/// TOTP parameters (RFC 6238 defaults that every authenticator app supports).
const TOTP_STEP_SECONDS: i64 = 30;
const TOTP_DIGITS: usize = 6;

/// Hashes a password with argon2id (the crate's default parameters: 19 MiB, 2 passes).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|err| anyhow::anyhow!("hashing password: {err}"))
}

/// Checks a password against a stored hash; a malformed hash never verifies.
pub fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// A hash to verify against when the user does not exist, so unknown and known usernames take
/// the same time.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("ward-dummy-password-for-timing").unwrap_or_default())
}

/// `n` random bytes, URL-safe base64.
pub fn random_secret(entropy: &dyn Entropy, n: usize) -> String {
    let mut bytes = vec![0u8; n];
    entropy.fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Characters for generated passwords and recovery codes: no 0/O, 1/l/I.
const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";

fn random_chars(entropy: &dyn Entropy, n: usize) -> String {
    let mut bytes = vec![0u8; n];
    entropy.fill(&mut bytes);
    // 256 is a multiple of the alphabet's 32 characters, so there is no modulo bias.
    bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// A one-time password for a new account: 4 groups of 5 (about 100 bits).
pub fn generate_password(entropy: &dyn Entropy) -> String {
    (0..4)
        .map(|_| random_chars(entropy, 5))
        .collect::<Vec<_>>()
        .join("-")
}

/// Ten recovery codes, returned in the clear (shown once) and as SHA-256 hex (stored).
pub fn recovery_codes(entropy: &dyn Entropy) -> (Vec<String>, Vec<String>) {
    let plain: Vec<String> = (0..10)
        .map(|_| format!("{}-{}", random_chars(entropy, 5), random_chars(entropy, 5)))
        .collect();
    let hashed = plain
        .iter()
        .map(|code| sha256_hex(normalise_code(code).as_bytes()))
        .collect();
    (plain, hashed)
}

/// Recovery codes are compared without dashes, spaces or case.
pub fn normalise_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// A fresh 160-bit TOTP secret.
pub fn totp_secret(entropy: &dyn Entropy) -> Vec<u8> {
    let mut secret = vec![0u8; 20];
    entropy.fill(&mut secret);
    secret
}

/// Base32 (RFC 4648, no padding) as authenticator apps expect.
pub fn base32(secret: &[u8]) -> String {
    totp_rs::Secret::from(secret.to_vec()).to_base32()
}

/// The `otpauth://` URL for enrolling `username` in an authenticator app.
pub fn otpauth_url(username: &str, secret: &[u8]) -> String {
    // Usernames are restricted to [a-z0-9._-], so they need no escaping here.
    format!(
        "otpauth://totp/Ward:{username}?secret={}&issuer=Ward&algorithm=SHA1&digits={TOTP_DIGITS}&period={TOTP_STEP_SECONDS}",
        base32(secret)
    )
}

fn totp_code(secret: &[u8], step: i64) -> Option<String> {
    // Secrets Ward makes are 160 bits, so the non-compliant builder is only used to skip the
    // builder's own secret generation; digits and step are the RFC defaults.
    let totp = totp_rs::Builder::new()
        .with_secret(secret.to_vec())
        .with_digits(TOTP_DIGITS as u8)
        .with_step_duration(TOTP_STEP_SECONDS as u64)
        .build_noncompliant();
    u64::try_from(step * TOTP_STEP_SECONDS)
        .ok()
        .map(|t| totp.generate(t).to_string())
}

/// The code an authenticator shows at `now_ms` (for tests and the simulator).
pub fn totp_now(secret: &[u8], now_ms: i64) -> String {
    totp_code(secret, now_ms / 1000 / TOTP_STEP_SECONDS).unwrap_or_default()
}

/// Checks a TOTP code, allowing one step of clock drift either way. Returns the matched step if it
/// is newer than `last_step`, so each code works once.
pub fn totp_check(secret: &[u8], code: &str, now_ms: i64, last_step: i64) -> Option<i64> {
    let code = code.trim();
    if code.len() != TOTP_DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = now_ms / 1000 / TOTP_STEP_SECONDS;
    (current - 1..=current + 1)
        .filter(|step| *step > last_step)
        .find(|step| {
            totp_code(secret, *step)
                .is_some_and(|expected| constant_time_eq(expected.as_bytes(), code.as_bytes()))
        })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Failed-login counters, per account and per source address, over a sliding window.
///
/// Kept in memory: a restart forgets them, which only ever loosens a lockout. With several server
/// nodes each node counts its own (see ROADMAP; the store can take this over then).
#[derive(Debug, Default)]
pub struct Throttle {
    state: Mutex<ThrottleState>,
}

#[derive(Debug, Default)]
struct ThrottleState {
    accounts: HashMap<String, Vec<i64>>,
    addresses: HashMap<IpAddr, Vec<i64>>,
}

/// Upper bound on remembered keys, so a flood of random usernames cannot exhaust memory.
const MAX_TRACKED: usize = 100_000;

impl Throttle {
    /// Whether a login for `account` from `address` must be refused now.
    pub fn blocked(&self, rules: &AuthConfig, account: &str, address: Option<IpAddr>, now_ms: i64) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let window_start = now_ms - rules.lockout_ms;
        let recent = |times: &mut Vec<i64>| {
            times.retain(|t| *t > window_start);
            times.len()
        };
        let by_account = state.accounts.get_mut(account).map(recent).unwrap_or(0);
        let by_address = address
            .and_then(|a| state.addresses.get_mut(&a).map(recent))
            .unwrap_or(0);
        by_account >= rules.max_failed_logins as usize
            || by_address >= rules.max_failed_logins_per_address as usize
    }

    /// Counts a failed attempt.
    pub fn fail(&self, account: &str, address: Option<IpAddr>, now_ms: i64) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.accounts.len() >= MAX_TRACKED {
            state.accounts.clear();
        }
        if state.addresses.len() >= MAX_TRACKED {
            state.addresses.clear();
        }
        state.accounts.entry(account.to_owned()).or_default().push(now_ms);
        if let Some(address) = address {
            state.addresses.entry(address).or_default().push(now_ms);
        }
    }

    /// Forgets an account's failures after a successful login.
    pub fn succeed(&self, account: &str) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.accounts.remove(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn totp_codes_work_once_and_tolerate_drift() {
        let secret = totp_secret(&SystemEntropy);
        let now = 1_790_000_000_000;
        let code = totp_now(&secret, now);
        let step = totp_check(&secret, &code, now, 0).expect("current code");
        assert_eq!(totp_check(&secret, &code, now, step), None, "replay refused");
        assert!(
            totp_check(&secret, &code, now + 30_000, 0).is_some(),
            "one step of drift"
        );
        assert_eq!(totp_check(&secret, &code, now + 120_000, 0), None, "too old");
        for bad in ["", "12345", "abcdef", "1234567", "123 456"] {
            assert_eq!(totp_check(&secret, bad, now, 0), None, "{bad}");
        }
    }

    #[test]
    fn throttle_locks_then_releases() {
        let rules = AuthConfig {
            max_failed_logins: 2,
            lockout_ms: 1000,
            ..AuthConfig::default()
        };
        let throttle = Throttle::default();
        let addr: Option<IpAddr> = Some([127, 0, 0, 1].into());
        assert!(!throttle.blocked(&rules, "a", addr, 0));
        throttle.fail("a", addr, 0);
        throttle.fail("a", addr, 10);
        assert!(throttle.blocked(&rules, "a", addr, 20));
        assert!(
            !throttle.blocked(&rules, "b", None, 20),
            "other accounts unaffected"
        );
        assert!(!throttle.blocked(&rules, "a", addr, 1011), "window passed");
    }

    #[test]
    fn generated_secrets_look_right() {
        assert_eq!(generate_password(&SystemEntropy).len(), 23);
        let seeded = ward_domain::clock::CountingEntropy::default();
        assert_eq!(
            generate_password(&seeded),
            generate_password(&ward_domain::clock::CountingEntropy::default())
        );
        let (plain, hashed) = recovery_codes(&SystemEntropy);
        assert_eq!(plain.len(), 10);
        assert_eq!(
            hashed[0],
            sha256_hex(normalise_code(&plain[0].to_uppercase()).as_bytes())
        );
        assert!(otpauth_url("alice", &[1; 20]).starts_with("otpauth://totp/Ward:alice?secret="));
    }
}

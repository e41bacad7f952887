//! Operations on the data directory or database directly, without a running server:
//! `ward admin create` and `ward audit verify --data-dir/--database`.

use std::path::Path;

use anyhow::Context;
use ed25519_dalek::VerifyingKey;
use ed25519_dalek::pkcs8::DecodePublicKey;
use ward_domain::access::Role;
use ward_domain::audit::VerifyReport;
use ward_store::verify_log;

use ward_core::config::Config;
use ward_core::state::SystemClock;

/// Reads the audit public key (`audit.pub`, PEM) from a data directory.
pub fn audit_public_key(data_dir: &Path) -> anyhow::Result<VerifyingKey> {
    let path = ward_core::keys::audit_public_key_path(data_dir);
    let pem = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    VerifyingKey::from_public_key_pem(&pem).with_context(|| format!("parsing {}", path.display()))
}

/// Verifies the audit log in `database` (or the data directory's SQLite file) against the data
/// directory's audit public key.
pub async fn verify(data_dir: &Path, database: Option<String>) -> anyhow::Result<VerifyReport> {
    let key = audit_public_key(data_dir)?;
    let mut config = Config::for_data_dir(data_dir);
    config.database = database;
    if config.database.is_none() && !data_dir.join("ward.db").exists() {
        anyhow::bail!("no database at {}", data_dir.join("ward.db").display());
    }
    let store = crate::open_store(&config).await?;
    let report = verify_log(&store, key).await?;
    store.close().await;
    Ok(report)
}

/// Creates an admin account directly in the store; returns the one-time password.
pub async fn admin_create(
    config: &Config,
    username: &str,
    role: Role,
    break_glass: bool,
) -> anyhow::Result<String> {
    let store = crate::open_store(config).await?;
    let actor = format!(
        "system:local-admin({})",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    );
    let (_, password) = crate::create_admin(
        &store,
        &SystemClock,
        &ward_core::auth::SystemEntropy,
        username,
        role,
        break_glass,
        &actor,
    )
    .await?;
    store.close().await;
    Ok(password)
}

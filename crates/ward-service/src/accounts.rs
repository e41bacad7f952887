//! Accounts made outside a request: the first admin on first start, and `ward admin create`.

use anyhow::Context;
use ward_domain::access::{Role, SiteScope};
use ward_domain::audit::{AuditRecord, Outcome};
use ward_domain::clock::{Clock, Entropy};
use ward_store::{Audit, Store, UserRecord};

use ward_core::auth;

/// A new admin account with a generated one-time password, written with its audit entry.
pub async fn create_admin(
    store: &dyn Store,
    clock: &dyn Clock,
    entropy: &dyn Entropy,
    username: &str,
    role: Role,
    break_glass: bool,
    actor: &str,
) -> anyhow::Result<(UserRecord, String)> {
    let username = ward_domain::access::validate_username(username)?;
    let password = auth::generate_password(entropy);
    let user = UserRecord {
        id: uuid::Uuid::new_v4().to_string(),
        username: username.clone(),
        display_name: username.clone(),
        role,
        sites: SiteScope::all(),
        password_hash: auth::hash_password(&password)?,
        must_change_password: true,
        totp_secret: None,
        totp_enabled: false,
        totp_last_step: 0,
        recovery_codes: Vec::new(),
        break_glass,
        disabled: false,
        created_ms: clock.now_ms(),
    };
    let record = AuditRecord::new(
        actor,
        "user.create",
        format!("user:{username}"),
        Outcome::Success,
        serde_json::json!({ "role": role.as_str(), "sites": [], "break_glass": break_glass, "one_time_password": true }),
    );
    store
        .create_user(&user, Audit::one(clock.now_ms(), record))
        .await
        .context("creating the admin account")?;
    Ok((user, password))
}

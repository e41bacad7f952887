//! Decoding rows into records; anything that does not decode is reported as `Corrupt`, never
//! papered over.

use sqlx::Row;
use sqlx::any::AnyRow;
use ward_domain::access::{Role, SiteScope};
use ward_domain::audit::{AuditEntry, AuditRecord, Outcome};
use ward_domain::merkle::Hash;
use ward_domain::site::{Site, SiteSlug};
use ward_store::{ApiTokenRecord, StoreError, StoreResult, TokenScope, UserRecord};

use crate::corrupt;

pub(crate) fn hash_from_hex(text: &str) -> StoreResult<Hash> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text, &mut hash)
        .map_err(|err| StoreError::Corrupt(format!("bad hash {text:?}: {err}")))?;
    Ok(hash)
}

/// Parses a text column into a domain type, reporting bad stored values as `Corrupt`.
pub(crate) fn parse_field<T>(row: &AnyRow, column: &str) -> StoreResult<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let text: String = row.try_get(column).map_err(corrupt)?;
    text.parse()
        .map_err(|err: T::Err| StoreError::Corrupt(format!("{column}: {err}")))
}

pub(crate) fn flag(row: &AnyRow, column: &str) -> StoreResult<bool> {
    Ok(row.try_get::<i64, _>(column).map_err(corrupt)? != 0)
}

fn json_strings(row: &AnyRow, column: &str) -> StoreResult<Vec<String>> {
    let text: String = row.try_get(column).map_err(corrupt)?;
    serde_json::from_str(&text).map_err(|err| StoreError::Corrupt(format!("{column}: {err}")))
}

pub(crate) fn user_from_row(row: &AnyRow) -> StoreResult<UserRecord> {
    let role: String = row.try_get("role").map_err(corrupt)?;
    let sites = json_strings(row, "sites")?
        .iter()
        .map(|s| SiteSlug::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| StoreError::Corrupt(err.to_string()))?;
    Ok(UserRecord {
        id: row.try_get("id").map_err(corrupt)?,
        username: row.try_get("username").map_err(corrupt)?,
        display_name: row.try_get("display_name").map_err(corrupt)?,
        role: role
            .parse::<Role>()
            .map_err(|err| StoreError::Corrupt(err.to_string()))?,
        sites: SiteScope::new(sites),
        password_hash: row.try_get("password_hash").map_err(corrupt)?,
        must_change_password: flag(row, "must_change_password")?,
        totp_secret: row.try_get("totp_secret").map_err(corrupt)?,
        totp_enabled: flag(row, "totp_enabled")?,
        totp_last_step: row.try_get("totp_last_step").map_err(corrupt)?,
        recovery_codes: json_strings(row, "recovery_codes")?,
        break_glass: flag(row, "break_glass")?,
        disabled: flag(row, "disabled")?,
        created_ms: row.try_get("created_ms").map_err(corrupt)?,
    })
}

pub(crate) fn token_from_row(row: &AnyRow) -> StoreResult<ApiTokenRecord> {
    let scope: String = row.try_get("scope").map_err(corrupt)?;
    Ok(ApiTokenRecord {
        id: row.try_get("id").map_err(corrupt)?,
        user_id: row.try_get("user_id").map_err(corrupt)?,
        name: row.try_get("name").map_err(corrupt)?,
        secret_hash: row.try_get("secret_hash").map_err(corrupt)?,
        scope: TokenScope::parse(&scope)
            .ok_or_else(|| StoreError::Corrupt(format!("token scope {scope:?}")))?,
        created_ms: row.try_get("created_ms").map_err(corrupt)?,
        expires_ms: row.try_get("expires_ms").map_err(corrupt)?,
        revoked_ms: row.try_get("revoked_ms").map_err(corrupt)?,
        last_used_ms: row.try_get("last_used_ms").map_err(corrupt)?,
    })
}

pub(crate) fn site_from_row(row: &AnyRow) -> StoreResult<Site> {
    let slug: String = row.try_get("slug").map_err(corrupt)?;
    Ok(Site {
        slug: SiteSlug::parse(&slug).map_err(|err| StoreError::Corrupt(err.to_string()))?,
        name: row.try_get("name").map_err(corrupt)?,
        created_ms: row.try_get("created_ms").map_err(corrupt)?,
    })
}

/// Decodes an audit entry exactly as stored. Fields that cannot be decoded at all are `Corrupt`;
/// fields that decode but were changed are left for the verifier to find.
pub(crate) fn entry_from_row(row: &AnyRow) -> StoreResult<AuditEntry> {
    let outcome: String = row.try_get("outcome").map_err(corrupt)?;
    Ok(AuditEntry {
        seq: row.try_get::<i64, _>("seq").map_err(corrupt)? as u64,
        time_ms: row.try_get("time_ms").map_err(corrupt)?,
        record: AuditRecord {
            actor: row.try_get("actor").map_err(corrupt)?,
            action: row.try_get("action").map_err(corrupt)?,
            target: row.try_get("target").map_err(corrupt)?,
            // An unknown outcome is tampering too: map it to a value whose hash will not match.
            outcome: Outcome::parse(&outcome).unwrap_or(Outcome::Alert),
            details: row.try_get("details").map_err(corrupt)?,
            source: row.try_get("source").map_err(corrupt)?,
        },
        prev_hash: hash_from_hex(&row.try_get::<String, _>("prev_hash").map_err(corrupt)?)?,
        hash: hash_from_hex(&row.try_get::<String, _>("hash").map_err(corrupt)?)?,
    })
}

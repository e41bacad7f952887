//! Conversions from stored records to wire views, shared by the REST API, the console and the
//! breach report.

use ward_domain::audit::AuditEntry;
use ward_domain::site::{Site, SiteKind};
use ward_proto::{AuditEntryView, SiteView, TokenView, UserView};
use ward_store::{ApiTokenRecord, UserRecord};

use ward_domain::audit::{Checkpoint, VerifyReport};
use ward_proto::{CheckpointView, VerifyFailureView, VerifyReportView};

pub fn user_view(user: &UserRecord) -> UserView {
    UserView {
        id: user.id.clone(),
        username: user.username.clone(),
        display_name: user.display_name.clone(),
        role: user.role.as_str().into(),
        sites: user.sites.sites().iter().map(|s| s.to_string()).collect(),
        totp_enabled: user.totp_enabled,
        break_glass: user.break_glass,
        disabled: user.disabled,
        must_change_password: user.must_change_password,
        created_at: rfc3339(user.created_ms),
    }
}

pub fn token_view(token: &ApiTokenRecord, owner: &str) -> TokenView {
    TokenView {
        id: token.id.clone(),
        name: token.name.clone(),
        owner: owner.into(),
        scope: token.scope.as_str().into(),
        created_at: rfc3339(token.created_ms),
        expires_at: rfc3339(token.expires_ms),
        revoked_at: token.revoked_ms.map(rfc3339),
        last_used_at: token.last_used_ms.map(rfc3339),
    }
}

pub fn site_view(site: &Site) -> SiteView {
    SiteView {
        slug: site.slug.to_string(),
        name: site.name.clone(),
        kind: match site.slug.kind() {
            SiteKind::Hospital => "hospital".into(),
            SiteKind::Ward => "ward".into(),
        },
        parent: site.slug.parent().map(|p| p.to_string()),
        created_at: rfc3339(site.created_ms),
    }
}

pub fn entry_view(entry: &AuditEntry) -> AuditEntryView {
    AuditEntryView {
        seq: entry.seq,
        time: rfc3339(entry.time_ms),
        actor: entry.record.actor.clone(),
        action: entry.record.action.clone(),
        target: entry.record.target.clone(),
        outcome: entry.record.outcome.as_str().into(),
        details: entry.record.details.clone(),
        source: entry.record.source.clone(),
        prev_hash: hex::encode(entry.prev_hash),
        hash: hex::encode(entry.hash),
    }
}

/// Converts the domain report to its wire form.
pub fn report_view(report: &VerifyReport) -> VerifyReportView {
    VerifyReportView {
        ok: report.ok(),
        entries_checked: report.entries_checked,
        checkpoints_checked: report.checkpoints_checked,
        root: report.root.clone(),
        failure: report.failure.as_ref().map(|f| VerifyFailureView {
            seq: f.seq,
            kind: serde_json::to_value(f.kind)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            detail: f.detail.clone(),
        }),
    }
}

/// A signed checkpoint's wire form.
pub fn checkpoint_view(checkpoint: &Checkpoint) -> CheckpointView {
    CheckpointView {
        tree_size: checkpoint.tree_size,
        root: hex::encode(checkpoint.root),
        head_hash: hex::encode(checkpoint.head_hash),
        time: rfc3339(checkpoint.time_ms),
        signature: hex::encode(&checkpoint.signature),
    }
}

/// Formats Unix milliseconds as RFC 3339 (UTC, millisecond precision).
pub fn rfc3339(ms: i64) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_format_as_rfc3339() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::rfc3339(1_790_000_000_123), "2026-09-21T14:13:20.123Z");
    }
}

//! Conversions from stored records to wire views.

use ward_domain::audit::AuditEntry;
use ward_domain::site::{Site, SiteKind};
use ward_proto::{AuditEntryView, SiteView, TokenView, UserView};
use ward_store::{ApiTokenRecord, UserRecord};

use crate::state::rfc3339;

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

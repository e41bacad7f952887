//! Reading and verifying the audit log, its signed checkpoints and its public key.

use serde_json::json;
use ward_core::caller::Caller;
use ward_core::error::{ServiceError, ServiceResult};
use ward_core::state::AppState;
use ward_core::views::{checkpoint_view, entry_view};
use ward_domain::access::Permission;
use ward_domain::audit::Outcome;
use ward_proto::{AuditEntryView, AuditKeyView, AuditPage, AuditQuery, CheckpointView, VerifyReportView};
use ward_store::{AuditFilter, verify_log};

fn bound_filter(value: &Option<String>, field: &str) -> ServiceResult<Option<String>> {
    match value {
        Some(text) if text.len() > 512 => Err(ServiceError::invalid(format!("{field}: at most 512 bytes"))),
        other => Ok(other.clone()),
    }
}

/// Page through the log, oldest first, optionally filtered.
pub async fn list(state: &AppState, caller: &Caller, query: AuditQuery) -> ServiceResult<AuditPage> {
    state
        .authorize(caller, Permission::ViewAudit, "audit.list", "audit")
        .await?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ServiceError::invalid("limit: must be between 1 and 1000"));
    }
    let filter = AuditFilter {
        actor: bound_filter(&query.actor, "actor")?,
        action: bound_filter(&query.action, "action")?,
        target: bound_filter(&query.target, "target")?,
        since_ms: None,
    };
    let entries = state
        .store
        .entries(query.after.unwrap_or(0), limit, &filter)
        .await?;
    let next_after = (entries.len() as u32 == limit)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    Ok(AuditPage {
        entries: entries.iter().map(entry_view).collect(),
        next_after,
    })
}

/// Recompute the whole chain and every signed checkpoint; names the first altered entry.
pub async fn verify(state: &AppState, caller: &Caller) -> ServiceResult<VerifyReportView> {
    state
        .authorize(caller, Permission::ViewAudit, "audit.verify", "audit")
        .await?;
    let report = verify_log(state.store.as_ref(), state.keys.audit_key.verifying_key()).await?;
    let outcome = if report.ok() {
        Outcome::Success
    } else {
        Outcome::Alert
    };
    let record = caller.record(
        "audit.verify",
        "audit",
        outcome,
        json!({ "entries_checked": report.entries_checked, "failure": report.failure }),
    );
    state.store.append(state.audit(record)).await?;
    Ok(ward_core::views::report_view(&report))
}

/// The signed checkpoints.
pub async fn checkpoints(state: &AppState, caller: &Caller) -> ServiceResult<Vec<CheckpointView>> {
    state
        .authorize(caller, Permission::ViewAudit, "audit.checkpoints", "audit")
        .await?;
    Ok(state
        .store
        .checkpoints()
        .await?
        .iter()
        .map(checkpoint_view)
        .collect())
}

/// The audit public key (Ed25519, hex) that signs checkpoints.
pub async fn key(state: &AppState, caller: &Caller) -> ServiceResult<AuditKeyView> {
    state
        .authorize(caller, Permission::ViewAudit, "audit.key", "audit")
        .await?;
    Ok(AuditKeyView {
        public_key: hex::encode(state.keys.audit_key.verifying_key().to_bytes()),
    })
}

/// Entries in one page of an export.
pub const EXPORT_PAGE: u32 = 1000;

/// Starts an export of the log after `after`: authorized and audited once, before any page.
pub async fn start_export(state: &AppState, caller: &Caller, after: u64) -> ServiceResult<()> {
    state
        .authorize(caller, Permission::ViewAudit, "audit.export", "audit")
        .await?;
    let record = caller.record(
        "audit.export",
        "audit",
        Outcome::Success,
        json!({ "after": after }),
    );
    state.store.append(state.audit(record)).await?;
    Ok(())
}

/// The next page of an export started with [`start_export`]: up to [`EXPORT_PAGE`] entries after
/// `after`, straight from storage (unfiltered, as verification reads them). Empty at the end.
pub async fn export_page(state: &AppState, after: u64) -> ServiceResult<Vec<AuditEntryView>> {
    let page = state.store.raw_entries(after, EXPORT_PAGE).await?;
    Ok(page.iter().map(entry_view).collect())
}

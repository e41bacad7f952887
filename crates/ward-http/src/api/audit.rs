//! `/audit`: reading, verifying and exporting the audit log.

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use ward_domain::access::Permission;
use ward_domain::audit::Outcome;
use ward_proto::{AuditKeyView, AuditPage, AuditQuery, CheckpointView, VerifyReportView};
use ward_store::{AuditFilter, verify_log};

use crate::api::extract::ApiQuery;
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};
use ward_service::state::AppState;
use ward_service::views::{checkpoint_view, entry_view};

fn bound_filter(value: &Option<String>, field: &str) -> ApiResult<Option<String>> {
    match value {
        Some(text) if text.len() > 512 => Err(ApiError::invalid(format!("{field}: at most 512 bytes"))),
        other => Ok(other.clone()),
    }
}

/// Page through the log, oldest first, optionally filtered.
#[utoipa::path(get, path = "/audit", tag = "audit", params(AuditQuery), responses((status = 200, body = AuditPage)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> ApiResult<axum::Json<AuditPage>> {
    state
        .authorize(&caller, Permission::ViewAudit, "audit.list", "audit")
        .await?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit: must be between 1 and 1000"));
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
    Ok(axum::Json(AuditPage {
        entries: entries.iter().map(entry_view).collect(),
        next_after,
    }))
}

/// Recompute the whole chain and every signed checkpoint; names the first altered entry.
#[utoipa::path(get, path = "/audit/verify", tag = "audit", responses((status = 200, body = VerifyReportView)))]
pub async fn verify(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<VerifyReportView>> {
    state
        .authorize(&caller, Permission::ViewAudit, "audit.verify", "audit")
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
    Ok(axum::Json(ward_service::views::report_view(&report)))
}

/// The signed checkpoints.
#[utoipa::path(get, path = "/audit/checkpoints", tag = "audit", responses((status = 200, body = Vec<CheckpointView>)))]
pub async fn checkpoints(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Vec<CheckpointView>>> {
    state
        .authorize(&caller, Permission::ViewAudit, "audit.checkpoints", "audit")
        .await?;
    Ok(axum::Json(
        state
            .store
            .checkpoints()
            .await?
            .iter()
            .map(checkpoint_view)
            .collect(),
    ))
}

/// The audit public key (Ed25519, hex) that signs checkpoints.
#[utoipa::path(get, path = "/audit/key", tag = "audit", responses((status = 200, body = AuditKeyView)))]
pub async fn key(State(state): State<AppState>, caller: Caller) -> ApiResult<axum::Json<AuditKeyView>> {
    state
        .authorize(&caller, Permission::ViewAudit, "audit.key", "audit")
        .await?;
    Ok(axum::Json(AuditKeyView {
        public_key: hex::encode(state.keys.audit_key.verifying_key().to_bytes()),
    }))
}

/// `GET /audit/export` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// Entries after this sequence number.
    #[serde(default)]
    pub after: u64,
}

/// Export entries as JSON lines, streamed page by page.
#[utoipa::path(get, path = "/audit/export", tag = "audit", params(ExportQuery),
    responses((status = 200, content_type = "application/x-ndjson", body = String)))]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> ApiResult<Response> {
    state
        .authorize(&caller, Permission::ViewAudit, "audit.export", "audit")
        .await?;
    let record = caller.record(
        "audit.export",
        "audit",
        Outcome::Success,
        json!({ "after": query.after }),
    );
    state.store.append(state.audit(record)).await?;
    let store = state.store.clone();
    let stream = futures_util::stream::unfold(Some(query.after), move |after| {
        let store = store.clone();
        async move {
            let after = after?;
            match store.raw_entries(after, 1000).await {
                Ok(page) if page.is_empty() => None,
                Ok(page) => {
                    let next = page.last().map(|e| e.seq);
                    let mut chunk = Vec::new();
                    for entry in &page {
                        if serde_json::to_writer(&mut chunk, &entry_view(entry)).is_ok() {
                            chunk.push(b'\n');
                        }
                    }
                    Some((Ok::<_, std::io::Error>(chunk), next))
                }
                Err(err) => Some((Err(std::io::Error::other(err.to_string())), None)),
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

//! `/audit`: reading, verifying and exporting the audit log.

use crate::api::extract::ApiQuery;
use crate::caller::Caller;
use crate::error::ApiResult;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use ward_core::state::AppState;
use ward_proto::{AuditKeyView, AuditPage, AuditQuery, CheckpointView, VerifyReportView};
use ward_service::audit;

/// Page through the log, oldest first, optionally filtered.
#[utoipa::path(get, path = "/audit", tag = "audit", params(AuditQuery), responses((status = 200, body = AuditPage)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> ApiResult<axum::Json<AuditPage>> {
    Ok(axum::Json(audit::list(&state, &caller, query).await?))
}

/// Recompute the whole chain and every signed checkpoint; names the first altered entry.
#[utoipa::path(get, path = "/audit/verify", tag = "audit", responses((status = 200, body = VerifyReportView)))]
pub async fn verify(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<VerifyReportView>> {
    Ok(axum::Json(audit::verify(&state, &caller).await?))
}

/// The signed checkpoints.
#[utoipa::path(get, path = "/audit/checkpoints", tag = "audit", responses((status = 200, body = Vec<CheckpointView>)))]
pub async fn checkpoints(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Vec<CheckpointView>>> {
    Ok(axum::Json(audit::checkpoints(&state, &caller).await?))
}

/// The audit public key (Ed25519, hex) that signs checkpoints.
#[utoipa::path(get, path = "/audit/key", tag = "audit", responses((status = 200, body = AuditKeyView)))]
pub async fn key(State(state): State<AppState>, caller: Caller) -> ApiResult<axum::Json<AuditKeyView>> {
    Ok(axum::Json(audit::key(&state, &caller).await?))
}

/// Export entries as JSON lines, streamed page by page.
#[utoipa::path(get, path = "/audit/export", tag = "audit", params(ExportQuery),
    responses((status = 200, content_type = "application/x-ndjson", body = String)))]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> ApiResult<Response> {
    audit::start_export(&state, &caller, query.after).await?;
    let stream = futures_util::stream::unfold(Some(query.after), move |after| {
        let state = state.clone();
        async move {
            let after = after?;
            match audit::export_page(&state, after).await {
                Ok(page) if page.is_empty() => None,
                Ok(page) => {
                    let next = page.last().map(|e| e.seq);
                    let mut chunk = Vec::new();
                    for entry in &page {
                        if serde_json::to_writer(&mut chunk, entry).is_ok() {
                            chunk.push(b'\n');
                        }
                    }
                    Some((Ok::<_, std::io::Error>(chunk), next))
                }
                Err(err) => Some((Err(std::io::Error::other(err.message)), None)),
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// `GET /audit/export` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// Entries after this sequence number.
    #[serde(default)]
    pub after: u64,
}

//! The REST API under `/api/v1`, its OpenAPI document (generated from the handlers' annotations)
//! and the cross-cutting middleware: request ids in logs and error bodies, metrics, body limits.

pub(crate) mod audit;
pub(crate) mod auth;
pub(crate) mod commands;
pub mod devices;
pub(crate) mod enroll;
pub(crate) mod extract;
pub(crate) mod incidents;
pub(crate) mod lwm2m;
pub mod policies;
pub(crate) mod sites;
pub(crate) mod tokens;
pub(crate) mod users;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tracing::Instrument;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use ward_proto::{ErrorBody, ErrorDetail, Health};

use crate::error::{ApiError, ErrorMarker};
use ward_core::state::AppState;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(title = "Ward API", description = "Device management and breach containment for healthcare. Errors are `{\"error\": {\"code\", \"message\", \"request_id\"}}` with the stable codes of docs/errors.md."),
    paths(sites::show, sites::update, sites::delete, policies::apply),
    components(schemas(ErrorBody, ErrorDetail, ward_proto::ErrorCode)),
    tags((name = "auth"), (name = "users"), (name = "tokens"), (name = "sites"), (name = "audit"), (name = "enrollment"), (name = "devices"), (name = "commands"), (name = "incidents"), (name = "policies"))
)]
struct ApiDoc;

/// Liveness and which database is behind the server.
#[utoipa::path(get, path = "/health", tag = "auth", responses((status = 200, body = Health)))]
async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        backend: state.store.backend().into(),
    })
}

/// The server's CA certificate, for clients that pin it by fingerprint.
async fn ca_pem(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        state.keys.ca_cert_pem.clone(),
    )
        .into_response()
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such API endpoint; see /api/v1/openapi.json")
}

/// Lists the kinds a command request may name, from the command-kind table, in the OpenAPI
/// document: each with its label, whether it is destructive or needs a clinician on medical
/// devices, and the platforms that can carry it out.
fn document_command_kinds(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{RefOr, Schema};
    // Policy settings are sent by the policy engine only; a request naming them is refused.
    let kinds: Vec<_> = ward_domain::command::KINDS
        .iter()
        .filter(|info| info.kind != ward_domain::command::CommandKind::ApplySettings)
        .collect();
    let mut description = String::from("What the device is asked to do:\n");
    for info in &kinds {
        let platforms: Vec<&str> = info.platforms.iter().map(|p| p.as_str()).collect();
        description.push_str(&format!(
            "- `{}`: {}{}{}; platforms: {}\n",
            info.kind,
            info.label,
            if info.destructive { "; destructive" } else { "" },
            if info.endangers_patients {
                "; needs a clinician's confirmation on medical or life-sustaining devices"
            } else {
                ""
            },
            platforms.join(", ")
        ));
    }
    let names: Vec<serde_json::Value> = kinds.iter().map(|info| info.kind.as_str().into()).collect();
    let Some(components) = openapi.components.as_mut() else {
        return;
    };
    for name in ["CreateCommandRequest", "BulkCommandRequest"] {
        if let Some(RefOr::T(Schema::Object(request))) = components.schemas.get_mut(name)
            && let Some(RefOr::T(Schema::Object(kind))) = request.properties.get_mut("kind")
        {
            kind.enum_values = Some(names.clone());
            kind.description = Some(description.clone());
        }
    }
}

/// The API router and its OpenAPI document.
pub fn api_router() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(auth::login))
        .routes(routes!(auth::cli_login))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::whoami))
        .routes(routes!(auth::change_password))
        .routes(routes!(auth::totp_enrol))
        .routes(routes!(auth::totp_confirm))
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::show, users::update))
        .routes(routes!(users::reset_password))
        .routes(routes!(tokens::list, tokens::create))
        .routes(routes!(tokens::revoke))
        .routes(routes!(sites::list, sites::create))
        .routes(routes!(audit::list))
        .routes(routes!(audit::verify))
        .routes(routes!(audit::checkpoints))
        .routes(routes!(audit::key))
        .routes(routes!(audit::export))
        .routes(routes!(enroll::create_token, enroll::list_tokens))
        .routes(routes!(enroll::revoke_token))
        .routes(routes!(enroll::enroll))
        .routes(routes!(devices::list))
        .routes(routes!(devices::fhir))
        .routes(routes!(devices::show))
        .routes(routes!(devices::revoke))
        .routes(routes!(devices::retire))
        .routes(routes!(commands::create))
        .routes(routes!(commands::list, commands::bulk))
        .routes(routes!(commands::show))
        .routes(routes!(commands::cancel))
        .routes(routes!(incidents::list, incidents::declare))
        .routes(routes!(incidents::show))
        .routes(routes!(incidents::show_preview))
        .routes(routes!(incidents::approve))
        .routes(routes!(incidents::contain))
        .routes(routes!(incidents::show_status))
        .routes(routes!(incidents::events))
        .routes(routes!(incidents::lift))
        .routes(routes!(incidents::close))
        .routes(routes!(incidents::show_report))
        .routes(routes!(policies::list))
        .routes(routes!(policies::show))
        .routes(routes!(policies::history))
        .routes(routes!(policies::diff))
        .routes(routes!(policies::device_compliance))
        .routes(routes!(policies::summary))
        .routes(routes!(policies::list_groups))
        .routes(routes!(policies::put_group, policies::delete_group))
        .routes(routes!(lwm2m::list, lwm2m::provision))
        .split_for_parts();
    let mut openapi = openapi;
    document_command_kinds(&mut openapi);
    // Site slugs contain a '/', so their routes are a wildcard; documented above as `{slug}`.
    let router = router
        .route(
            "/sites/{*slug}",
            get(sites::show).patch(sites::update).delete(sites::delete),
        )
        .route("/ca.pem", get(ca_pem))
        // Policy sets may be larger than other requests; documented above.
        .route(
            "/policies/apply",
            axum::routing::post(policies::apply)
                .layer(DefaultBodyLimit::max(ward_service::policy_admin::MAX_APPLY_BYTES)),
        );
    (router, openapi)
}

/// Gives each request an id (logged, returned as `x-request-id`, put into error bodies) and
/// counts requests by route and status.
pub(crate) async fn request_context(request: Request, next: Next) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let method = request.method().clone();
    let span =
        tracing::info_span!("request", id = %request_id, method = %method, path = %request.uri().path());
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.in_scope(|| tracing::info!(status = status.as_u16(), "handled"));
    metrics::counter!("ward_http_requests_total", "method" => method.to_string(), "status" => status.as_u16().to_string())
        .increment(1);

    if let Some(ErrorMarker(code, message)) = response.extensions().get::<ErrorMarker>().cloned() {
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message,
                request_id: Some(request_id.clone()),
            },
        };
        let headers = response.headers().clone();
        response = (status, Json(body)).into_response();
        for (name, value) in headers.iter() {
            if name != header::CONTENT_LENGTH && name != header::CONTENT_TYPE {
                response.headers_mut().append(name, value.clone());
            }
        }
    } else if status == StatusCode::PAYLOAD_TOO_LARGE || status == StatusCode::METHOD_NOT_ALLOWED {
        // Rejections produced outside our handlers (body limit, method router) get the same shape.
        let (code, message) = if status == StatusCode::PAYLOAD_TOO_LARGE {
            (
                ward_proto::ErrorCode::PayloadTooLarge,
                "the request body is larger than 64 KiB",
            )
        } else {
            (
                ward_proto::ErrorCode::NotFound,
                "method not allowed on this endpoint",
            )
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message: message.into(),
                request_id: Some(request_id.clone()),
            },
        };
        response = (status, Json(body)).into_response();
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

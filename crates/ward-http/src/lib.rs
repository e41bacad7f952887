//! Ward's HTTP face: the REST API under `/api/v1` with its OpenAPI document, the server-rendered
//! web console, and serving both over TLS. Thin by design: a handler parses the request, calls
//! the service (`ward-service`) with the caller, and renders the answer; errors become one stable
//! code and status in `error.rs`.

mod api;
mod caller;
mod console;
mod error;
pub mod serve;

use std::sync::OnceLock;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use ward_core::state::AppState;
use ward_proto::API_PREFIX;

pub use api::MAX_BODY_BYTES;
pub use console::CSP;

/// The global Prometheus recorder (installed once per process), rendered at `/metrics`.
pub fn metrics_handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .as_ref()
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    let (api, openapi) = api::api_router();
    let openapi_json = openapi.to_pretty_json().unwrap_or_else(|_| "{}".into());
    let api = api.route(
        "/openapi.json",
        get(move || {
            let body = openapi_json.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        }),
    );
    Router::new()
        .nest(API_PREFIX, api.fallback(api::not_found))
        .route("/metrics", get(metrics))
        .merge(crate::console::router())
        .fallback(api::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(api::request_context))
        .with_state(state)
}

/// Prometheus metrics.
async fn metrics() -> Response {
    match metrics_handle() {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

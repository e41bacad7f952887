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

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub use api::{MAX_BODY_BYTES, app};
pub use console::CSP;

/// The global Prometheus recorder (installed once per process), rendered at `/metrics`.
pub fn metrics_handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .as_ref()
}

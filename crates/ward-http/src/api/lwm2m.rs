//! `/lwm2m/endpoints`: provisioning constrained devices for the LwM2M gateway (the service's
//! [`ward_core::lwm2m`]).

use axum::extract::State;
use axum::http::StatusCode;
use ward_core::lwm2m;
use ward_core::state::AppState;
use ward_proto::{Lwm2mEndpointView, ProvisionLwm2mRequest, ProvisionedLwm2mEndpoint};

use crate::api::extract::ApiJson;
use crate::caller::Caller;
use crate::error::ApiResult;

/// Provision an LwM2M endpoint: creates the device and generates its pre-shared key (shown once).
#[utoipa::path(post, path = "/lwm2m/endpoints", tag = "enrollment", request_body = ProvisionLwm2mRequest,
    responses((status = 201, body = ProvisionedLwm2mEndpoint), (status = 403, body = ward_proto::ErrorBody),
              (status = 409, body = ward_proto::ErrorBody), (status = 422, body = ward_proto::ErrorBody)))]
pub async fn provision(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<ProvisionLwm2mRequest>,
) -> ApiResult<(StatusCode, axum::Json<ProvisionedLwm2mEndpoint>)> {
    let provisioned = lwm2m::provision(&state, &caller, request).await?;
    Ok((StatusCode::CREATED, axum::Json(provisioned)))
}

/// List provisioned LwM2M endpoints in this account's sites (never their keys).
#[utoipa::path(get, path = "/lwm2m/endpoints", tag = "enrollment",
    responses((status = 200, body = Vec<Lwm2mEndpointView>), (status = 403, body = ward_proto::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Vec<Lwm2mEndpointView>>> {
    Ok(axum::Json(lwm2m::list(&state, &caller).await?))
}

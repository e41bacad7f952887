//! `/sites`: hospitals and wards. Site-scoped accounts see and change only their own sites.

use crate::api::extract::ApiJson;
use crate::caller::Caller;
use crate::error::ApiResult;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ward_core::state::AppState;
use ward_proto::{CreateSiteRequest, SiteView, UpdateSiteRequest};
use ward_service::sites;

/// List the sites this account may see.
#[utoipa::path(get, path = "/sites", tag = "sites", responses((status = 200, body = Vec<SiteView>)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<axum::Json<Vec<SiteView>>> {
    Ok(axum::Json(sites::list(&state, &caller).await?))
}

/// Create a hospital (`st-marys`) or a ward under one (`st-marys/icu`).
#[utoipa::path(post, path = "/sites", tag = "sites", request_body = CreateSiteRequest,
    responses((status = 201, body = SiteView), (status = 403, body = ward_proto::ErrorBody), (status = 409, body = ward_proto::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<CreateSiteRequest>,
) -> ApiResult<(StatusCode, axum::Json<SiteView>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(sites::create(&state, &caller, request).await?),
    ))
}

/// Show a site. The slug may contain one `/` (`st-marys/icu`).
#[utoipa::path(get, path = "/sites/{slug}", tag = "sites", params(("slug" = String, Path, description = "hospital or hospital/ward")),
    responses((status = 200, body = SiteView), (status = 404, body = ward_proto::ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> ApiResult<axum::Json<SiteView>> {
    Ok(axum::Json(sites::show(&state, &caller, slug).await?))
}

/// Rename a site.
#[utoipa::path(patch, path = "/sites/{slug}", tag = "sites", params(("slug" = String, Path)), request_body = UpdateSiteRequest,
    responses((status = 200, body = SiteView), (status = 404, body = ward_proto::ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
    ApiJson(request): ApiJson<UpdateSiteRequest>,
) -> ApiResult<axum::Json<SiteView>> {
    Ok(axum::Json(sites::update(&state, &caller, slug, request).await?))
}

/// Delete a site (a hospital only once its wards are gone).
#[utoipa::path(delete, path = "/sites/{slug}", tag = "sites", params(("slug" = String, Path)),
    responses((status = 204), (status = 409, body = ward_proto::ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> ApiResult<StatusCode> {
    sites::delete(&state, &caller, slug).await?;
    Ok(StatusCode::NO_CONTENT)
}

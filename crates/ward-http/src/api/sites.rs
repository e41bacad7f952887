//! `/sites`: hospitals and wards. Site-scoped accounts see and change only their own sites.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::json;
use ward_domain::access::Permission;
use ward_domain::audit::Outcome;
use ward_domain::site::{Site, SiteSlug, validate_name};
use ward_proto::{CreateSiteRequest, SiteView, UpdateSiteRequest};

use crate::api::extract::ApiJson;
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};
use ward_service::state::AppState;
use ward_service::views::site_view;

/// List the sites this account may see.
#[utoipa::path(get, path = "/sites", tag = "sites", responses((status = 200, body = Vec<SiteView>)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<axum::Json<Vec<SiteView>>> {
    state
        .authorize(&caller, Permission::ViewSites, "site.list", "sites")
        .await?;
    let sites = state.store.list_sites().await?;
    Ok(axum::Json(
        sites
            .iter()
            .filter(|s| caller.user.sites.covers(&s.slug))
            .map(site_view)
            .collect(),
    ))
}

/// Create a hospital (`st-marys`) or a ward under one (`st-marys/icu`).
#[utoipa::path(post, path = "/sites", tag = "sites", request_body = CreateSiteRequest,
    responses((status = 201, body = SiteView), (status = 403, body = ward_proto::ErrorBody), (status = 409, body = ward_proto::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<CreateSiteRequest>,
) -> ApiResult<(StatusCode, axum::Json<SiteView>)> {
    let slug = SiteSlug::parse(&request.slug)?;
    let target = format!("site:{slug}");
    state
        .authorize(&caller, Permission::ManageSites, "site.create", &target)
        .await?;
    state
        .authorize_site(&caller, &slug, "site.create", &target)
        .await?;
    let site = Site {
        slug,
        name: validate_name("name", &request.name)?,
        created_ms: state.now_ms(),
    };
    let record = caller.record(
        "site.create",
        &target,
        Outcome::Success,
        json!({ "name": site.name }),
    );
    state.store.create_site(&site, state.audit(record)).await?;
    Ok((StatusCode::CREATED, axum::Json(site_view(&site))))
}

async fn scoped(
    state: &AppState,
    caller: &Caller,
    slug: &str,
    permission: Permission,
    action: &str,
) -> ApiResult<SiteSlug> {
    let slug = SiteSlug::parse(slug)?;
    let target = format!("site:{slug}");
    state.authorize(caller, permission, action, &target).await?;
    state.authorize_site(caller, &slug, action, &target).await?;
    Ok(slug)
}

/// Show a site. The slug may contain one `/` (`st-marys/icu`).
#[utoipa::path(get, path = "/sites/{slug}", tag = "sites", params(("slug" = String, Path, description = "hospital or hospital/ward")),
    responses((status = 200, body = SiteView), (status = 404, body = ward_proto::ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> ApiResult<axum::Json<SiteView>> {
    let slug = scoped(&state, &caller, &slug, Permission::ViewSites, "site.show").await?;
    let site = state
        .store
        .site(&slug)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("site {slug}")))?;
    Ok(axum::Json(site_view(&site)))
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
    let slug = scoped(&state, &caller, &slug, Permission::ManageSites, "site.update").await?;
    let mut site = state
        .store
        .site(&slug)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("site {slug}")))?;
    site.name = validate_name("name", &request.name)?;
    let record = caller.record(
        "site.update",
        &format!("site:{slug}"),
        Outcome::Success,
        json!({ "name": site.name }),
    );
    state.store.update_site(&site, state.audit(record)).await?;
    Ok(axum::Json(site_view(&site)))
}

/// Delete a site (a hospital only once its wards are gone).
#[utoipa::path(delete, path = "/sites/{slug}", tag = "sites", params(("slug" = String, Path)),
    responses((status = 204), (status = 409, body = ward_proto::ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> ApiResult<StatusCode> {
    let slug = scoped(&state, &caller, &slug, Permission::ManageSites, "site.delete").await?;
    let record = caller.record(
        "site.delete",
        &format!("site:{slug}"),
        Outcome::Success,
        json!({}),
    );
    state.store.delete_site(&slug, state.audit(record)).await?;
    Ok(StatusCode::NO_CONTENT)
}

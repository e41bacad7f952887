//! Hospitals and wards. Site-scoped accounts see and change only their own sites.

use serde_json::json;
use ward_core::caller::Caller;
use ward_core::error::{ServiceError, ServiceResult};
use ward_core::state::AppState;
use ward_core::views::site_view;
use ward_domain::access::Permission;
use ward_domain::audit::Outcome;
use ward_domain::site::{Site, SiteSlug, validate_name};
use ward_proto::{CreateSiteRequest, SiteView, UpdateSiteRequest};

/// List the sites this account may see.
pub async fn list(state: &AppState, caller: &Caller) -> ServiceResult<Vec<SiteView>> {
    state
        .authorize(caller, Permission::ViewSites, "site.list", "sites")
        .await?;
    let sites = state.store.list_sites().await?;
    Ok(sites
        .iter()
        .filter(|s| caller.user.sites.covers(&s.slug))
        .map(site_view)
        .collect())
}

/// Create a hospital (`st-marys`) or a ward under one (`st-marys/icu`).
pub async fn create(
    state: &AppState,
    caller: &Caller,
    request: CreateSiteRequest,
) -> ServiceResult<SiteView> {
    let slug = SiteSlug::parse(&request.slug)?;
    let target = format!("site:{slug}");
    state
        .authorize(caller, Permission::ManageSites, "site.create", &target)
        .await?;
    state
        .authorize_site(caller, &slug, "site.create", &target)
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
    Ok(site_view(&site))
}

async fn scoped(
    state: &AppState,
    caller: &Caller,
    slug: &str,
    permission: Permission,
    action: &str,
) -> ServiceResult<SiteSlug> {
    let slug = SiteSlug::parse(slug)?;
    let target = format!("site:{slug}");
    state.authorize(caller, permission, action, &target).await?;
    state.authorize_site(caller, &slug, action, &target).await?;
    Ok(slug)
}

/// Show a site. The slug may contain one `/` (`st-marys/icu`).
pub async fn show(state: &AppState, caller: &Caller, slug: String) -> ServiceResult<SiteView> {
    let slug = scoped(state, caller, &slug, Permission::ViewSites, "site.show").await?;
    let site = state
        .store
        .site(&slug)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("site {slug}")))?;
    Ok(site_view(&site))
}

/// Rename a site.
pub async fn update(
    state: &AppState,
    caller: &Caller,
    slug: String,
    request: UpdateSiteRequest,
) -> ServiceResult<SiteView> {
    let slug = scoped(state, caller, &slug, Permission::ManageSites, "site.update").await?;
    let mut site = state
        .store
        .site(&slug)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("site {slug}")))?;
    site.name = validate_name("name", &request.name)?;
    let record = caller.record(
        "site.update",
        &format!("site:{slug}"),
        Outcome::Success,
        json!({ "name": site.name }),
    );
    state.store.update_site(&site, state.audit(record)).await?;
    Ok(site_view(&site))
}

/// Delete a site (a hospital only once its wards are gone).
pub async fn delete(state: &AppState, caller: &Caller, slug: String) -> ServiceResult<()> {
    let slug = scoped(state, caller, &slug, Permission::ManageSites, "site.delete").await?;
    let record = caller.record(
        "site.delete",
        &format!("site:{slug}"),
        Outcome::Success,
        json!({}),
    );
    state.store.delete_site(&slug, state.audit(record)).await?;
    Ok(())
}

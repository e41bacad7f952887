//! LwM2M endpoints on SQL: the device row and the endpoint row are written together.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;
use ward_store::{Audit, DeviceRecord, Lwm2mEndpointRecord, Lwm2mStore, StoreError, StoreResult};

use crate::devices::insert_device;
use crate::{SqlStore, conflict_or, corrupt, unavailable};

fn endpoint_from_row(row: &AnyRow) -> StoreResult<Lwm2mEndpointRecord> {
    Ok(Lwm2mEndpointRecord {
        endpoint: row.try_get("endpoint").map_err(corrupt)?,
        device_id: row.try_get("device_id").map_err(corrupt)?,
        psk_identity: row.try_get("psk_identity").map_err(corrupt)?,
        psk: row.try_get("psk").map_err(corrupt)?,
        created_ms: row.try_get("created_ms").map_err(corrupt)?,
    })
}

#[async_trait]
impl Lwm2mStore for SqlStore {
    async fn create_lwm2m_endpoint(
        &self,
        device: &DeviceRecord,
        endpoint: &Lwm2mEndpointRecord,
        audit: Audit,
    ) -> StoreResult<()> {
        if endpoint.device_id != device.id {
            return Err(StoreError::Conflict(format!(
                "endpoint {} names device {}, not {}",
                endpoint.endpoint, endpoint.device_id, device.id
            )));
        }
        let device = device.clone();
        let endpoint = endpoint.clone();
        self.audited(&audit, move |conn| {
            Box::pin(async move {
                let site = sqlx::query("SELECT slug FROM sites WHERE slug = $1")
                    .bind(device.site.as_str())
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(unavailable("reading site"))?;
                if site.is_none() {
                    return Err(StoreError::NotFound(format!("site {}", device.site)));
                }
                // The endpoint first: a duplicate name is the likely conflict and should say so.
                let exists = sqlx::query("SELECT endpoint FROM lwm2m_endpoints WHERE endpoint = $1")
                    .bind(endpoint.endpoint.clone())
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(unavailable("reading LwM2M endpoint"))?;
                if exists.is_some() {
                    return Err(StoreError::Conflict(format!(
                        "LwM2M endpoint {} already exists",
                        endpoint.endpoint
                    )));
                }
                insert_device(&mut *conn, &device).await?;
                let name = endpoint.endpoint.clone();
                sqlx::query(
                    "INSERT INTO lwm2m_endpoints (endpoint, device_id, psk_identity, psk, created_ms) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(endpoint.endpoint)
                .bind(endpoint.device_id)
                .bind(endpoint.psk_identity)
                .bind(endpoint.psk)
                .bind(endpoint.created_ms)
                .execute(&mut *conn)
                .await
                .map_err(conflict_or(
                    move || format!("LwM2M endpoint {name} already exists"),
                    "storing LwM2M endpoint",
                ))?;
                Ok(())
            })
        })
        .await
    }

    async fn lwm2m_endpoint(&self, endpoint: &str) -> StoreResult<Option<Lwm2mEndpointRecord>> {
        let row = sqlx::query("SELECT * FROM lwm2m_endpoints WHERE endpoint = $1")
            .bind(endpoint.to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable("reading LwM2M endpoint"))?;
        row.map(|r| endpoint_from_row(&r)).transpose()
    }

    async fn list_lwm2m_endpoints(&self) -> StoreResult<Vec<Lwm2mEndpointRecord>> {
        let rows = sqlx::query("SELECT * FROM lwm2m_endpoints ORDER BY endpoint")
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable("listing LwM2M endpoints"))?;
        rows.iter().map(endpoint_from_row).collect()
    }
}

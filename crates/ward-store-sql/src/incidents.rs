//! Incidents on SQL. A state change is a conditional update on the state the caller read, in the
//! same transaction as the commands it queues and its audit entries.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;
use ward_domain::incident::IncidentState;
use ward_store::{Audit, CommandRecord, IncidentRecord, IncidentStore, StoreError, StoreResult};

use crate::commands::insert_commands;
use crate::rows::parse_field;
use crate::{SqlStore, conflict_or, corrupt, unavailable};

fn incident_from_row(row: &AnyRow) -> StoreResult<IncidentRecord> {
    Ok(IncidentRecord {
        id: row.try_get("id").map_err(corrupt)?,
        title: row.try_get("title").map_err(corrupt)?,
        severity: parse_field(row, "severity")?,
        description: row.try_get("description").map_err(corrupt)?,
        situation: parse_field(row, "situation")?,
        discovered_ms: row.try_get("discovered_ms").map_err(corrupt)?,
        aware_ms: row.try_get("aware_ms").map_err(corrupt)?,
        scope: row.try_get("scope").map_err(corrupt)?,
        plan_name: row.try_get("plan_name").map_err(corrupt)?,
        plan: row.try_get("plan").map_err(corrupt)?,
        state: parse_field(row, "state")?,
        declared_by: row.try_get("declared_by").map_err(corrupt)?,
        declared_by_user: row.try_get("declared_by_user").map_err(corrupt)?,
        approved_by: row.try_get("approved_by").map_err(corrupt)?,
        approved_ms: row.try_get("approved_ms").map_err(corrupt)?,
        clinician: row.try_get("clinician").map_err(corrupt)?,
        contain_ms: row.try_get("contain_ms").map_err(corrupt)?,
        lifted_ms: row.try_get("lifted_ms").map_err(corrupt)?,
        closed_ms: row.try_get("closed_ms").map_err(corrupt)?,
        report: row.try_get("report").map_err(corrupt)?,
        created_ms: row.try_get("created_ms").map_err(corrupt)?,
    })
}

#[async_trait]
impl IncidentStore for SqlStore {
    async fn create_incident(&self, incident: &IncidentRecord, audit: Audit) -> StoreResult<()> {
        let i = incident.clone();
        self.audited(&audit, move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO incidents (id, title, severity, description, situation, discovered_ms, aware_ms, \
                     scope, plan_name, plan, state, declared_by, declared_by_user, approved_by, approved_ms, \
                     clinician, contain_ms, lifted_ms, closed_ms, report, created_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)",
                )
                .bind(i.id.clone())
                .bind(i.title)
                .bind(i.severity.as_str())
                .bind(i.description)
                .bind(i.situation.as_str())
                .bind(i.discovered_ms)
                .bind(i.aware_ms)
                .bind(i.scope)
                .bind(i.plan_name)
                .bind(i.plan)
                .bind(i.state.as_str())
                .bind(i.declared_by)
                .bind(i.declared_by_user)
                .bind(i.approved_by)
                .bind(i.approved_ms)
                .bind(i.clinician)
                .bind(i.contain_ms)
                .bind(i.lifted_ms)
                .bind(i.closed_ms)
                .bind(i.report)
                .bind(i.created_ms)
                .execute(&mut *conn)
                .await
                .map_err(conflict_or(|| format!("incident {} already exists", i.id), "declaring incident"))?;
                Ok(())
            })
        })
        .await
    }

    async fn incident(&self, id: &str) -> StoreResult<Option<IncidentRecord>> {
        let row = sqlx::query("SELECT * FROM incidents WHERE id = $1")
            .bind(id.to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable("reading incident"))?;
        row.map(|r| incident_from_row(&r)).transpose()
    }

    async fn list_incidents(&self) -> StoreResult<Vec<IncidentRecord>> {
        let rows = sqlx::query("SELECT * FROM incidents ORDER BY created_ms DESC, id")
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable("listing incidents"))?;
        rows.iter().map(incident_from_row).collect()
    }

    async fn update_incident(
        &self,
        incident: &IncidentRecord,
        expected: IncidentState,
        commands: &[CommandRecord],
        audit: Audit,
    ) -> StoreResult<()> {
        let i = incident.clone();
        let commands = commands.to_vec();
        self.audited(&audit, move |conn| {
            Box::pin(async move {
                let updated = sqlx::query(
                    "UPDATE incidents SET title = $1, severity = $2, description = $3, state = $4, approved_by = $5, \
                     approved_ms = $6, clinician = $7, contain_ms = $8, lifted_ms = $9, closed_ms = $10, report = $11 \
                     WHERE id = $12 AND state = $13",
                )
                .bind(i.title)
                .bind(i.severity.as_str())
                .bind(i.description)
                .bind(i.state.as_str())
                .bind(i.approved_by)
                .bind(i.approved_ms)
                .bind(i.clinician)
                .bind(i.contain_ms)
                .bind(i.lifted_ms)
                .bind(i.closed_ms)
                .bind(i.report)
                .bind(i.id.clone())
                .bind(expected.as_str())
                .execute(&mut *conn)
                .await
                .map_err(unavailable("updating incident"))?;
                if updated.rows_affected() == 0 {
                    let exists = sqlx::query("SELECT state FROM incidents WHERE id = $1")
                        .bind(i.id.clone())
                        .fetch_optional(&mut *conn)
                        .await
                        .map_err(unavailable("reading incident"))?;
                    return Err(match exists {
                        None => StoreError::NotFound(format!("incident {}", i.id)),
                        Some(row) => {
                            let state: String = row.try_get("state").map_err(corrupt)?;
                            StoreError::Conflict(format!("incident {} is {state}, not {expected}", i.id))
                        }
                    });
                }
                insert_commands(conn, &commands).await?;
                Ok(())
            })
        })
        .await
    }
}

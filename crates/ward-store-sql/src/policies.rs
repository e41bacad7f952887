//! Policies, compliance results, remediations, settings sent and groups on SQL.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;
use ward_store::{
    Audit, CommandRecord, ComplianceKey, ComplianceRecord, GroupRecord, PolicyStore, PolicyVersionRecord,
    RemediationRecord, StoreError, StoreResult,
};

use crate::commands::insert_commands;
use crate::rows::{flag, parse_field};
use crate::{SqlStore, bool_int, conflict_or, corrupt, unavailable};

fn version_from_row(row: &AnyRow) -> StoreResult<PolicyVersionRecord> {
    Ok(PolicyVersionRecord {
        name: row.try_get("name").map_err(corrupt)?,
        version: row.try_get("version").map_err(corrupt)?,
        source: row.try_get("source").map_err(corrupt)?,
        spec: row.try_get("spec").map_err(corrupt)?,
        removed: flag(row, "removed")?,
        created_ms: row.try_get("created_ms").map_err(corrupt)?,
        created_by: row.try_get("created_by").map_err(corrupt)?,
    })
}

fn compliance_from_row(row: &AnyRow) -> StoreResult<ComplianceRecord> {
    Ok(ComplianceRecord {
        device_id: row.try_get("device_id").map_err(corrupt)?,
        policy: row.try_get("policy").map_err(corrupt)?,
        check_id: row.try_get("check_id").map_err(corrupt)?,
        status: parse_field(row, "status")?,
        since_ms: row.try_get("since_ms").map_err(corrupt)?,
        evaluated_ms: row.try_get("evaluated_ms").map_err(corrupt)?,
        policy_version: row.try_get("policy_version").map_err(corrupt)?,
    })
}

fn remediation_from_row(row: &AnyRow) -> StoreResult<RemediationRecord> {
    Ok(RemediationRecord {
        device_id: row.try_get("device_id").map_err(corrupt)?,
        policy: row.try_get("policy").map_err(corrupt)?,
        failing_since_ms: row.try_get("failing_since_ms").map_err(corrupt)?,
        action: parse_field(row, "action")?,
        command_id: row.try_get("command_id").map_err(corrupt)?,
        time_ms: row.try_get("time_ms").map_err(corrupt)?,
    })
}

fn group_from_row(row: &AnyRow) -> StoreResult<GroupRecord> {
    Ok(GroupRecord {
        name: row.try_get("name").map_err(corrupt)?,
        selector: row.try_get("selector").map_err(corrupt)?,
        description: row.try_get("description").map_err(corrupt)?,
        created_ms: row.try_get("created_ms").map_err(corrupt)?,
        updated_ms: row.try_get("updated_ms").map_err(corrupt)?,
    })
}

#[async_trait]
impl PolicyStore for SqlStore {
    async fn apply_policies(&self, versions: &[PolicyVersionRecord], audit: Audit) -> StoreResult<()> {
        let versions = versions.to_vec();
        self.audited(&audit, move |conn| {
            Box::pin(async move {
                for v in versions {
                    let what = format!("policy {} version {} already exists", v.name, v.version);
                    sqlx::query(
                        "INSERT INTO policy_versions (name, version, source, spec, removed, created_ms, created_by) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(v.name)
                    .bind(v.version)
                    .bind(v.source)
                    .bind(v.spec)
                    .bind(bool_int(v.removed))
                    .bind(v.created_ms)
                    .bind(v.created_by)
                    .execute(&mut *conn)
                    .await
                    .map_err(conflict_or(move || what, "storing a policy version"))?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn policy_versions(&self, name: Option<&str>) -> StoreResult<Vec<PolicyVersionRecord>> {
        let rows = match name {
            Some(name) => {
                sqlx::query("SELECT * FROM policy_versions WHERE name = $1 ORDER BY version")
                    .bind(name.to_owned())
                    .fetch_all(&self.pool)
                    .await
            }
            None => {
                sqlx::query("SELECT * FROM policy_versions ORDER BY name, version")
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(unavailable("reading policy versions"))?;
        rows.iter().map(version_from_row).collect()
    }

    async fn current_policies(&self) -> StoreResult<Vec<PolicyVersionRecord>> {
        let rows = sqlx::query(
            "SELECT p.* FROM policy_versions p \
             JOIN (SELECT name, MAX(version) AS version FROM policy_versions GROUP BY name) latest \
               ON latest.name = p.name AND latest.version = p.version \
             WHERE p.removed = 0 ORDER BY p.name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable("reading policies"))?;
        rows.iter().map(version_from_row).collect()
    }

    async fn compliance(&self, device_id: Option<&str>) -> StoreResult<Vec<ComplianceRecord>> {
        let rows = match device_id {
            Some(id) => {
                sqlx::query("SELECT * FROM compliance_results WHERE device_id = $1 ORDER BY policy, check_id")
                    .bind(id.to_owned())
                    .fetch_all(&self.pool)
                    .await
            }
            None => {
                sqlx::query("SELECT * FROM compliance_results ORDER BY device_id, policy, check_id")
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(unavailable("reading compliance"))?;
        rows.iter().map(compliance_from_row).collect()
    }

    async fn record_compliance(
        &self,
        upserts: &[ComplianceRecord],
        removals: &[ComplianceKey],
    ) -> StoreResult<()> {
        if upserts.is_empty() && removals.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for chunk in upserts.chunks(crate::ROWS_PER_INSERT) {
            let mut sql = crate::multi_row_insert(
                self.dialect,
                "INSERT INTO compliance_results (device_id, policy, check_id, status, since_ms, evaluated_ms, \
                 policy_version) VALUES ",
                7,
                chunk.len(),
            );
            sql.push_str(
                " ON CONFLICT (device_id, policy, check_id) DO UPDATE SET status = excluded.status, \
                 since_ms = excluded.since_ms, evaluated_ms = excluded.evaluated_ms, \
                 policy_version = excluded.policy_version",
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for r in chunk {
                query = query
                    .bind(r.device_id.clone())
                    .bind(r.policy.clone())
                    .bind(r.check_id.clone())
                    .bind(r.status.as_str())
                    .bind(r.since_ms)
                    .bind(r.evaluated_ms)
                    .bind(r.policy_version);
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(unavailable("storing compliance"))?;
        }
        for key in removals {
            sqlx::query(
                "DELETE FROM compliance_results WHERE device_id = $1 AND policy = $2 AND check_id = $3",
            )
            .bind(key.device_id.clone())
            .bind(key.policy.clone())
            .bind(key.check_id.clone())
            .execute(&mut *tx)
            .await
            .map_err(unavailable("removing compliance"))?;
        }
        tx.commit().await.map_err(unavailable("committing compliance"))
    }

    async fn remediations(&self) -> StoreResult<Vec<RemediationRecord>> {
        let rows = sqlx::query("SELECT * FROM policy_remediations ORDER BY time_ms, device_id, policy")
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable("reading remediations"))?;
        rows.iter().map(remediation_from_row).collect()
    }

    async fn record_remediation(
        &self,
        remediation: &RemediationRecord,
        commands: &[CommandRecord],
        audit: Audit,
    ) -> StoreResult<bool> {
        let r = remediation.clone();
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO policy_remediations (device_id, policy, failing_since_ms, action, command_id, time_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (device_id, policy, failing_since_ms) DO NOTHING",
        )
        .bind(r.device_id)
        .bind(r.policy)
        .bind(r.failing_since_ms)
        .bind(r.action.as_str())
        .bind(r.command_id)
        .bind(r.time_ms)
        .execute(&mut *tx)
        .await
        .map_err(unavailable("recording a remediation"))?
        .rows_affected();
        if inserted == 0 {
            return Ok(false);
        }
        insert_commands(&mut tx, commands).await?;
        self.append_in(&mut tx, &audit).await?;
        tx.commit()
            .await
            .map_err(unavailable("committing a remediation"))?;
        Ok(true)
    }

    async fn device_settings(&self) -> StoreResult<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT device_id, digest FROM device_settings ORDER BY device_id")
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable("reading device settings"))?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("device_id").map_err(corrupt)?,
                    row.try_get("digest").map_err(corrupt)?,
                ))
            })
            .collect()
    }

    async fn record_device_settings(
        &self,
        digests: &[(String, String)],
        commands: &[CommandRecord],
        audit: Audit,
    ) -> StoreResult<()> {
        if digests.len() != commands.len() {
            return Err(StoreError::Conflict("one command per settings digest".into()));
        }
        let mut tx = self.begin().await?;
        insert_commands(&mut tx, commands).await?;
        for chunk in digests
            .iter()
            .zip(commands)
            .collect::<Vec<_>>()
            .chunks(crate::ROWS_PER_INSERT)
        {
            let mut sql = crate::multi_row_insert(
                self.dialect,
                "INSERT INTO device_settings (device_id, digest, command_id, updated_ms) VALUES ",
                4,
                chunk.len(),
            );
            sql.push_str(
                " ON CONFLICT (device_id) DO UPDATE SET digest = excluded.digest, \
                 command_id = excluded.command_id, updated_ms = excluded.updated_ms",
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for ((device_id, digest), command) in chunk {
                query = query
                    .bind(device_id.clone())
                    .bind(digest.clone())
                    .bind(command.id.clone())
                    .bind(audit.time_ms);
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(unavailable("recording device settings"))?;
        }
        self.append_in(&mut tx, &audit).await?;
        tx.commit()
            .await
            .map_err(unavailable("committing device settings"))
    }

    async fn put_group(&self, group: &GroupRecord, audit: Audit) -> StoreResult<()> {
        let g = group.clone();
        self.audited(&audit, move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO device_groups (name, selector, description, created_ms, updated_ms) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO UPDATE SET selector = excluded.selector, \
                     description = excluded.description, updated_ms = excluded.updated_ms",
                )
                .bind(g.name)
                .bind(g.selector)
                .bind(g.description)
                .bind(g.created_ms)
                .bind(g.updated_ms)
                .execute(&mut *conn)
                .await
                .map_err(unavailable("storing a group"))?;
                Ok(())
            })
        })
        .await
    }

    async fn delete_group(&self, name: &str, audit: Audit) -> StoreResult<()> {
        let name = name.to_owned();
        self.audited(&audit, move |conn| {
            Box::pin(async move {
                let deleted = sqlx::query("DELETE FROM device_groups WHERE name = $1")
                    .bind(name.clone())
                    .execute(&mut *conn)
                    .await
                    .map_err(unavailable("deleting a group"))?
                    .rows_affected();
                if deleted == 0 {
                    return Err(StoreError::NotFound(format!("group {name}")));
                }
                Ok(())
            })
        })
        .await
    }

    async fn groups(&self) -> StoreResult<Vec<GroupRecord>> {
        let rows = sqlx::query("SELECT * FROM device_groups ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable("reading groups"))?;
        rows.iter().map(group_from_row).collect()
    }
}

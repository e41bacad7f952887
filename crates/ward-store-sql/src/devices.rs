//! Enrollment tokens and devices on SQL.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;
use ward_domain::device::DeviceState;
use ward_store::{
    Audit, DeviceRecord, DeviceStore, EnrollTokenRecord, EnrollTokenStore, FactsUpdate, NewEnrollment,
    StoreError, StoreResult,
};

use crate::rows::{flag, parse_field};
use crate::{SqlStore, bool_int, conflict_or, corrupt, unavailable};

/// Inserts a device row inside a transaction.
pub(crate) async fn insert_device(conn: &mut sqlx::AnyConnection, device: &DeviceRecord) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO devices (id, site, class, criticality, phi, hostname, state, cert_fingerprint, \
         cert_not_after_ms, enroll_token_id, enrolled_ms, last_seen_ms, facts, facts_updated_ms, allow_full_wipe) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(device.id.clone())
    .bind(device.site.as_str())
    .bind(device.class.as_str())
    .bind(device.criticality.as_str())
    .bind(bool_int(device.phi))
    .bind(device.hostname.clone())
    .bind(device.state.as_str())
    .bind(device.cert_fingerprint.clone())
    .bind(device.cert_not_after_ms)
    .bind(device.enroll_token_id.clone())
    .bind(device.enrolled_ms)
    .bind(device.last_seen_ms)
    .bind(device.facts.clone())
    .bind(device.facts_updated_ms)
    .bind(bool_int(device.allow_full_wipe))
    .execute(&mut *conn)
    .await
    .map_err(conflict_or(|| format!("device {} already exists", device.id), "enrolling device"))?;
    Ok(())
}

fn token_from_row(row: &AnyRow) -> StoreResult<EnrollTokenRecord> {
    Ok(EnrollTokenRecord {
        id: row.try_get("id").map_err(corrupt)?,
        secret_hash: row.try_get("secret_hash").map_err(corrupt)?,
        site: parse_field(row, "site")?,
        class: parse_field(row, "class")?,
        criticality: parse_field(row, "criticality")?,
        phi: flag(row, "phi")?,
        created_by: row.try_get("created_by").map_err(corrupt)?,
        created_ms: row.try_get("created_ms").map_err(corrupt)?,
        expires_ms: row.try_get("expires_ms").map_err(corrupt)?,
        max_uses: row.try_get::<i64, _>("max_uses").map_err(corrupt)? as u32,
        uses: row.try_get::<i64, _>("uses").map_err(corrupt)? as u32,
        revoked_ms: row.try_get("revoked_ms").map_err(corrupt)?,
        allow_full_wipe: flag(row, "allow_full_wipe")?,
    })
}

fn device_from_row(row: &AnyRow) -> StoreResult<DeviceRecord> {
    Ok(DeviceRecord {
        id: row.try_get("id").map_err(corrupt)?,
        site: parse_field(row, "site")?,
        class: parse_field(row, "class")?,
        criticality: parse_field(row, "criticality")?,
        phi: flag(row, "phi")?,
        hostname: row.try_get("hostname").map_err(corrupt)?,
        state: parse_field(row, "state")?,
        cert_fingerprint: row.try_get("cert_fingerprint").map_err(corrupt)?,
        cert_not_after_ms: row.try_get("cert_not_after_ms").map_err(corrupt)?,
        enroll_token_id: row.try_get("enroll_token_id").map_err(corrupt)?,
        enrolled_ms: row.try_get("enrolled_ms").map_err(corrupt)?,
        last_seen_ms: row.try_get("last_seen_ms").map_err(corrupt)?,
        facts: row.try_get("facts").map_err(corrupt)?,
        facts_updated_ms: row.try_get("facts_updated_ms").map_err(corrupt)?,
        allow_full_wipe: flag(row, "allow_full_wipe")?,
    })
}

#[async_trait]
impl EnrollTokenStore for SqlStore {
    async fn create_enroll_token(&self, token: &EnrollTokenRecord, audit: Audit) -> StoreResult<()> {
        let token = token.clone();
        self.audited(&audit, move |conn| {
            Box::pin(async move {
                let site = sqlx::query("SELECT slug FROM sites WHERE slug = $1")
                    .bind(token.site.as_str())
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(unavailable("reading site"))?;
                if site.is_none() {
                    return Err(StoreError::NotFound(format!("site {}", token.site)));
                }
                sqlx::query(
                    "INSERT INTO enroll_tokens (id, secret_hash, site, class, criticality, phi, created_by, \
                     created_ms, expires_ms, max_uses, uses, revoked_ms, allow_full_wipe) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .bind(token.id.clone())
                .bind(token.secret_hash)
                .bind(token.site.as_str())
                .bind(token.class.as_str())
                .bind(token.criticality.as_str())
                .bind(bool_int(token.phi))
                .bind(token.created_by)
                .bind(token.created_ms)
                .bind(token.expires_ms)
                .bind(i64::from(token.max_uses))
                .bind(i64::from(token.uses))
                .bind(token.revoked_ms)
                .bind(bool_int(token.allow_full_wipe))
                .execute(&mut *conn)
                .await
                .map_err(conflict_or(
                    || format!("enrollment token {} already exists", token.id),
                    "creating token",
                ))?;
                Ok(())
            })
        })
        .await
    }

    async fn enroll_token(&self, id: &str) -> StoreResult<Option<EnrollTokenRecord>> {
        let row = sqlx::query("SELECT * FROM enroll_tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable("reading enrollment token"))?;
        row.map(|r| token_from_row(&r)).transpose()
    }

    async fn list_enroll_tokens(&self) -> StoreResult<Vec<EnrollTokenRecord>> {
        let rows = sqlx::query("SELECT * FROM enroll_tokens ORDER BY created_ms DESC, id")
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable("listing enrollment tokens"))?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_enroll_token(&self, id: &str, audit: Audit) -> StoreResult<()> {
        let id = id.to_owned();
        let now_ms = audit.time_ms;
        self.audited(&audit, move |conn| {
            Box::pin(async move {
                let result = sqlx::query(
                    "UPDATE enroll_tokens SET revoked_ms = COALESCE(revoked_ms, $1) WHERE id = $2",
                )
                .bind(now_ms)
                .bind(id.clone())
                .execute(&mut *conn)
                .await
                .map_err(unavailable("revoking enrollment token"))?;
                if result.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!("enrollment token {id}")));
                }
                Ok(())
            })
        })
        .await
    }
}

#[async_trait]
impl DeviceStore for SqlStore {
    async fn enroll_device(&self, token_id: &str, device: &DeviceRecord, audit: Audit) -> StoreResult<()> {
        let token_id = token_id.to_owned();
        let device = device.clone();
        let now_ms = audit.time_ms;
        self.audited(&audit, move |conn| {
            Box::pin(async move {
                // One conditional update takes the use, so concurrent enrollments cannot overspend.
                let taken = sqlx::query(
                    "UPDATE enroll_tokens SET uses = uses + 1 \
                     WHERE id = $1 AND revoked_ms IS NULL AND expires_ms > $2 AND uses < max_uses",
                )
                .bind(token_id.clone())
                .bind(now_ms)
                .execute(&mut *conn)
                .await
                .map_err(unavailable("using enrollment token"))?;
                if taken.rows_affected() == 0 {
                    return Err(StoreError::Conflict(format!(
                        "enrollment token {token_id} cannot be used"
                    )));
                }
                insert_device(conn, &device).await?;
                Ok(())
            })
        })
        .await
    }

    async fn enroll_devices(&self, batch: &[NewEnrollment]) -> StoreResult<Vec<StoreResult<()>>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let mut results = Vec::with_capacity(batch.len());
        let mut audits = Vec::new();
        for item in batch {
            let taken = sqlx::query(
                "UPDATE enroll_tokens SET uses = uses + 1 \
                 WHERE id = $1 AND revoked_ms IS NULL AND expires_ms > $2 AND uses < max_uses",
            )
            .bind(item.token_id.clone())
            .bind(item.audit.time_ms)
            .execute(&mut *tx)
            .await
            .map_err(unavailable("using enrollment token"))?;
            if taken.rows_affected() == 0 {
                results.push(Err(StoreError::Conflict(format!(
                    "enrollment token {} cannot be used",
                    item.token_id
                ))));
                continue;
            }
            insert_device(&mut tx, &item.device).await?;
            audits.push(&item.audit);
            results.push(Ok(()));
        }
        if !audits.is_empty() {
            self.append_all_in(&mut tx, &audits).await?;
        }
        tx.commit().await.map_err(unavailable("committing enrollments"))?;
        Ok(results)
    }

    async fn device(&self, id: &str) -> StoreResult<Option<DeviceRecord>> {
        let row = sqlx::query("SELECT * FROM devices WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable("reading device"))?;
        row.map(|r| device_from_row(&r)).transpose()
    }

    async fn list_devices(&self, include_retired: bool) -> StoreResult<Vec<DeviceRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM devices WHERE ($1 = 1 OR state <> 'retired') ORDER BY site, hostname, id",
        )
        .bind(bool_int(include_retired))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable("listing devices"))?;
        rows.iter().map(device_from_row).collect()
    }

    async fn set_device_state(&self, id: &str, state: DeviceState, audit: Audit) -> StoreResult<()> {
        let id = id.to_owned();
        self.audited(&audit, move |conn| {
            Box::pin(async move {
                let result = sqlx::query("UPDATE devices SET state = $1 WHERE id = $2")
                    .bind(state.as_str())
                    .bind(id.clone())
                    .execute(&mut *conn)
                    .await
                    .map_err(unavailable("updating device"))?;
                if result.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!("device {id}")));
                }
                Ok(())
            })
        })
        .await
    }

    async fn record_facts(&self, id: &str, facts: &str, change: &str, now_ms: i64) -> StoreResult<()> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(unavailable("starting a transaction"))?;
        let result = sqlx::query(
            "UPDATE devices SET facts = $1, facts_updated_ms = $2, last_seen_ms = $2 WHERE id = $3",
        )
        .bind(facts.to_owned())
        .bind(now_ms)
        .bind(id.to_owned())
        .execute(&mut *tx)
        .await
        .map_err(unavailable("storing facts"))?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("device {id}")));
        }
        sqlx::query("INSERT INTO device_facts_history (device_id, time_ms, change) VALUES ($1, $2, $3)")
            .bind(id.to_owned())
            .bind(now_ms)
            .bind(change.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(unavailable("storing facts history"))?;
        tx.commit().await.map_err(unavailable("committing facts"))
    }

    async fn record_facts_batch(&self, updates: &[FactsUpdate]) -> StoreResult<()> {
        if updates.is_empty() {
            return Ok(());
        }
        // Several reports of one device in one batch: only the last one's facts survive the
        // transaction, so only it is written (a full report is tens of KiB); every change still
        // goes to the history, in order, many rows per statement.
        let mut last: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for (index, update) in updates.iter().enumerate() {
            last.insert(update.device_id.as_str(), index);
        }
        let mut tx = self.begin().await?;
        let mut known: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for (index, update) in updates.iter().enumerate() {
            if last.get(update.device_id.as_str()) != Some(&index) {
                continue;
            }
            let result = sqlx::query(
                "UPDATE devices SET facts = $1, facts_updated_ms = $2, last_seen_ms = $2 WHERE id = $3",
            )
            .bind(update.facts.clone())
            .bind(update.time_ms)
            .bind(update.device_id.clone())
            .execute(&mut *tx)
            .await
            .map_err(unavailable("storing facts"))?;
            if result.rows_affected() > 0 {
                known.insert(update.device_id.as_str());
            }
        }
        let history: Vec<&FactsUpdate> = updates
            .iter()
            .filter(|u| known.contains(u.device_id.as_str()))
            .collect();
        for chunk in history.chunks(crate::ROWS_PER_INSERT) {
            let sql = crate::multi_row_insert(
                self.dialect,
                "INSERT INTO device_facts_history (device_id, time_ms, change) VALUES ",
                3,
                chunk.len(),
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for update in chunk {
                query = query
                    .bind(update.device_id.clone())
                    .bind(update.time_ms)
                    .bind(update.change.clone());
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(unavailable("storing facts history"))?;
        }
        tx.commit().await.map_err(unavailable("committing facts"))
    }

    async fn record_seen(&self, id: &str, now_ms: i64) -> StoreResult<()> {
        sqlx::query("UPDATE devices SET last_seen_ms = $1 WHERE id = $2")
            .bind(now_ms)
            .bind(id.to_owned())
            .execute(&self.pool)
            .await
            .map_err(unavailable("recording presence"))?;
        Ok(())
    }

    async fn record_seen_all(&self, seen: &[(String, i64)]) -> StoreResult<()> {
        if seen.is_empty() {
            return Ok(());
        }
        // One row per device (its newest time): an UPDATE joined to two rows for the same device
        // would use either.
        let mut newest = std::collections::HashMap::<&str, i64>::with_capacity(seen.len());
        for (id, time_ms) in seen {
            let time = newest.entry(id.as_str()).or_insert(*time_ms);
            *time = (*time).max(*time_ms);
        }
        let seen: Vec<(&str, i64)> = newest.into_iter().collect();
        let mut tx = self.begin().await?;
        for chunk in seen.chunks(crate::ROWS_PER_INSERT) {
            let mut sql = crate::multi_row_insert(self.dialect, "WITH v (id, t) AS (VALUES ", 2, chunk.len());
            sql.push_str(
                ") UPDATE devices SET last_seen_ms = v.t FROM v \
                 WHERE devices.id = v.id AND (devices.last_seen_ms IS NULL OR devices.last_seen_ms < v.t)",
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (id, time_ms) in chunk {
                query = query.bind((*id).to_owned()).bind(*time_ms);
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(unavailable("recording presence"))?;
        }
        tx.commit().await.map_err(unavailable("recording presence"))
    }

    async fn facts_history(&self, id: &str, limit: u32) -> StoreResult<Vec<(i64, String)>> {
        let rows = sqlx::query(
            "SELECT time_ms, change FROM device_facts_history WHERE device_id = $1 ORDER BY time_ms DESC LIMIT $2",
        )
        .bind(id.to_owned())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable("reading facts history"))?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("time_ms").map_err(corrupt)?,
                    row.try_get("change").map_err(corrupt)?,
                ))
            })
            .collect()
    }

    async fn renew_certificate(
        &self,
        id: &str,
        fingerprint: &str,
        not_after_ms: i64,
        audit: Audit,
    ) -> StoreResult<()> {
        let (id, fingerprint) = (id.to_owned(), fingerprint.to_owned());
        self.audited(&audit, move |conn| {
            Box::pin(async move {
                let result = sqlx::query(
                    "UPDATE devices SET cert_fingerprint = $1, cert_not_after_ms = $2 WHERE id = $3",
                )
                .bind(fingerprint)
                .bind(not_after_ms)
                .bind(id.clone())
                .execute(&mut *conn)
                .await
                .map_err(unavailable("renewing certificate"))?;
                if result.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!("device {id}")));
                }
                Ok(())
            })
        })
        .await
    }
}

//! The command queue on SQL. Every transition is one conditional `UPDATE ... WHERE state IN (...)`,
//! so concurrent or repeated reports can only move a command forward.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;
use ward_domain::audit::AuditRecord;
use ward_domain::command::{CommandKind, CommandState, device_state_after};
use ward_domain::device::DeviceState;
use ward_store::{
    Audit, CommandEvent, CommandFilter, CommandFinish, CommandQueue, CommandRecord, StoreError, StoreResult,
};

use crate::rows::parse_field;
use crate::{SqlStore, corrupt, unavailable};

/// Every column but the (possibly large) diagnostics output (a macro so queries stay literals).
macro_rules! columns {
    () => {
        "seq, id, device_id, kind, params, not_after_ms, signature, state, batch_id, created_by, \
         created_ms, sent_ms, acked_ms, finished_ms, detail, proof, proof_signature"
    };
}

fn command_from_row(row: &AnyRow, with_output: bool) -> StoreResult<CommandRecord> {
    Ok(CommandRecord {
        seq: row.try_get("seq").map_err(corrupt)?,
        id: row.try_get("id").map_err(corrupt)?,
        device_id: row.try_get("device_id").map_err(corrupt)?,
        kind: parse_field(row, "kind")?,
        params: row.try_get("params").map_err(corrupt)?,
        not_after_ms: row.try_get("not_after_ms").map_err(corrupt)?,
        signature: row.try_get("signature").map_err(corrupt)?,
        state: parse_field(row, "state")?,
        batch_id: row.try_get("batch_id").map_err(corrupt)?,
        created_by: row.try_get("created_by").map_err(corrupt)?,
        created_ms: row.try_get("created_ms").map_err(corrupt)?,
        sent_ms: row.try_get("sent_ms").map_err(corrupt)?,
        acked_ms: row.try_get("acked_ms").map_err(corrupt)?,
        finished_ms: row.try_get("finished_ms").map_err(corrupt)?,
        detail: row.try_get("detail").map_err(corrupt)?,
        proof: row.try_get("proof").map_err(corrupt)?,
        proof_signature: row.try_get("proof_signature").map_err(corrupt)?,
        output: if with_output {
            row.try_get("output").map_err(corrupt)?
        } else {
            None
        },
    })
}

/// Inserts queued commands inside a transaction, many rows per statement. A command whose device
/// does not exist fails the foreign key: `NotFound`.
pub(crate) async fn insert_commands(
    conn: &mut sqlx::AnyConnection,
    commands: &[CommandRecord],
) -> StoreResult<()> {
    for chunk in commands.chunks(crate::ROWS_PER_INSERT) {
        let sql = crate::multi_row_insert(
            crate::Dialect::of(conn),
            "INSERT INTO commands (id, device_id, kind, params, not_after_ms, signature, state, \
             batch_id, created_by, created_ms, detail) VALUES ",
            11,
            chunk.len(),
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for command in chunk {
            query = query
                .bind(command.id.clone())
                .bind(command.device_id.clone())
                .bind(command.kind.as_str())
                .bind(command.params.clone())
                .bind(command.not_after_ms)
                .bind(command.signature.clone())
                .bind(CommandState::Queued.as_str())
                .bind(command.batch_id.clone())
                .bind(command.created_by.clone())
                .bind(command.created_ms)
                .bind(command.detail.clone());
        }
        query.execute(&mut *conn).await.map_err(|err| {
            let text = err.to_string().to_lowercase();
            if text.contains("foreign key") {
                StoreError::NotFound("a command's device does not exist".into())
            } else if text.contains("unique") || text.contains("duplicate") {
                StoreError::Conflict("a command with that id already exists".into())
            } else {
                StoreError::Unavailable(format!("queueing commands: {err}"))
            }
        })?;
    }
    Ok(())
}

#[async_trait]
impl CommandQueue for SqlStore {
    async fn create_commands(&self, commands: &[CommandRecord], audit: Audit) -> StoreResult<()> {
        let commands = commands.to_vec();
        self.audited(&audit, move |conn| {
            Box::pin(async move {
                insert_commands(conn, &commands).await?;
                Ok(())
            })
        })
        .await
    }

    async fn command(&self, id: &str) -> StoreResult<Option<CommandRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            ", output FROM commands WHERE id = $1"
        ))
        .bind(id.to_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable("reading command"))?;
        row.map(|r| command_from_row(&r, true)).transpose()
    }

    async fn list_commands(&self, filter: &CommandFilter) -> StoreResult<Vec<CommandRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM commands \
             WHERE ($1 = '' OR device_id = $1) AND ($2 = '' OR state = $2) AND ($3 = '' OR batch_id = $3) \
             ORDER BY seq DESC LIMIT $4"
        ))
        .bind(filter.device_id.clone().unwrap_or_default())
        .bind(filter.state.map(|s| s.as_str()).unwrap_or_default())
        .bind(filter.batch_id.clone().unwrap_or_default())
        .bind(i64::from(filter.limit.unwrap_or(100)))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable("listing commands"))?;
        rows.iter().map(|r| command_from_row(r, false)).collect()
    }

    async fn pending_commands(&self, device_id: &str) -> StoreResult<Vec<CommandRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM commands \
             WHERE device_id = $1 AND state IN ('queued', 'sent', 'acknowledged') ORDER BY seq"
        ))
        .bind(device_id.to_owned())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable("reading pending commands"))?;
        rows.iter().map(|r| command_from_row(r, false)).collect()
    }

    async fn mark_sent(&self, ids: &[String], now_ms: i64) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for id in ids {
            sqlx::query(
                "UPDATE commands SET state = 'sent', sent_ms = $1 WHERE id = $2 AND state = 'queued'",
            )
            .bind(now_ms)
            .bind(id.clone())
            .execute(&mut *tx)
            .await
            .map_err(unavailable("marking command sent"))?;
        }
        tx.commit().await.map_err(unavailable("committing"))
    }

    async fn mark_acknowledged(&self, id: &str, device_id: &str, now_ms: i64) -> StoreResult<bool> {
        let result = sqlx::query(
            "UPDATE commands SET state = 'acknowledged', acked_ms = $1, sent_ms = COALESCE(sent_ms, $1) \
             WHERE id = $2 AND device_id = $3 AND state IN ('queued', 'sent')",
        )
        .bind(now_ms)
        .bind(id.to_owned())
        .bind(device_id.to_owned())
        .execute(&self.pool)
        .await
        .map_err(unavailable("acknowledging command"))?;
        Ok(result.rows_affected() == 1)
    }

    async fn finish_command(
        &self,
        id: &str,
        device_id: &str,
        finish: &CommandFinish,
        audit: Audit,
    ) -> StoreResult<bool> {
        if !matches!(finish.state, CommandState::Succeeded | CommandState::Failed) {
            return Err(StoreError::Conflict(format!(
                "a device can only report success or failure, not {}",
                finish.state
            )));
        }
        let (id, device_id, finish) = (id.to_owned(), device_id.to_owned(), finish.clone());
        let now_ms = audit.time_ms;
        let result = self
            .audited(&audit, move |conn| {
                Box::pin(async move {
                    let updated = sqlx::query(
                        "UPDATE commands SET state = $1, finished_ms = $2, detail = $3, proof = $4, \
                         proof_signature = $5, output = $6, acked_ms = COALESCE(acked_ms, $2), \
                         sent_ms = COALESCE(sent_ms, $2) \
                         WHERE id = $7 AND device_id = $8 AND state IN ('queued', 'sent', 'acknowledged')",
                    )
                    .bind(finish.state.as_str())
                    .bind(now_ms)
                    .bind(finish.detail)
                    .bind(finish.proof)
                    .bind(finish.proof_signature)
                    .bind(finish.output)
                    .bind(id.clone())
                    .bind(device_id.clone())
                    .execute(&mut *conn)
                    .await
                    .map_err(unavailable("finishing command"))?;
                    if updated.rows_affected() == 0 {
                        // Rolls back: nothing written, not even the audit entry.
                        return Err(StoreError::Conflict(format!("command {id} is not pending")));
                    }
                    if let Some(state) = finish.device_state {
                        sqlx::query(
                            "UPDATE devices SET state = $1 WHERE id = $2 AND state NOT IN ('revoked', 'retired')",
                        )
                        .bind(state.as_str())
                        .bind(device_id)
                        .execute(&mut *conn)
                        .await
                        .map_err(unavailable("updating device state"))?;
                    }
                    Ok(())
                })
            })
            .await;
        match result {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(err) => Err(err),
        }
    }

    async fn cancel_command(&self, id: &str, audit: Audit) -> StoreResult<CommandRecord> {
        let id_owned = id.to_owned();
        let now_ms = audit.time_ms;
        self.audited(&audit, move |conn| {
            Box::pin(async move {
                let updated = sqlx::query(
                    "UPDATE commands SET state = 'cancelled', finished_ms = $1, detail = 'cancelled before delivery' \
                     WHERE id = $2 AND state = 'queued'",
                )
                .bind(now_ms)
                .bind(id_owned.clone())
                .execute(&mut *conn)
                .await
                .map_err(unavailable("cancelling command"))?;
                if updated.rows_affected() == 1 {
                    return Ok(());
                }
                let state = sqlx::query("SELECT state FROM commands WHERE id = $1")
                    .bind(id_owned.clone())
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(unavailable("reading command"))?;
                match state {
                    None => Err(StoreError::NotFound(format!("command {id_owned}"))),
                    Some(row) => {
                        let state: String = row.try_get("state").map_err(corrupt)?;
                        Err(StoreError::Conflict(format!(
                            "command {id_owned} is {state}: only a command not yet delivered can be cancelled"
                        )))
                    }
                }
            })
        })
        .await?;
        self.command(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("command {id}")))
    }

    async fn record_command_events(&self, events: &[CommandEvent]) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        // Sent and acknowledged first, each kind with a few statements for the whole batch (a
        // containment brings thousands, and every statement is a round trip to the database's
        // thread), then results in order. Sent before acknowledged keeps the time a command was
        // sent when both arrive in one batch; a result needs neither first.
        let sent: Vec<(&String, i64)> = events
            .iter()
            .filter_map(|event| match event {
                CommandEvent::Sent { id, time_ms } => Some((id, *time_ms)),
                _ => None,
            })
            .collect();
        let acknowledged: Vec<(&String, &String, i64)> = events
            .iter()
            .filter_map(|event| match event {
                CommandEvent::Acknowledged {
                    id,
                    device_id,
                    time_ms,
                } => Some((id, device_id, *time_ms)),
                _ => None,
            })
            .collect();
        let dialect = self.dialect;
        for chunk in sent.chunks(crate::ROWS_PER_INSERT) {
            let mut sql = crate::multi_row_insert(dialect, "WITH v (id, t) AS (VALUES ", 2, chunk.len());
            sql.push_str(
                ") UPDATE commands SET state = 'sent', sent_ms = v.t FROM v \
                 WHERE commands.id = v.id AND commands.state = 'queued'",
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (id, time_ms) in chunk {
                query = query.bind((*id).clone()).bind(*time_ms);
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(unavailable("marking commands sent"))?;
        }
        for chunk in acknowledged.chunks(crate::ROWS_PER_INSERT) {
            let mut sql =
                crate::multi_row_insert(dialect, "WITH v (id, device_id, t) AS (VALUES ", 3, chunk.len());
            sql.push_str(
                ") UPDATE commands SET state = 'acknowledged', acked_ms = v.t, \
                 sent_ms = COALESCE(commands.sent_ms, v.t) FROM v \
                 WHERE commands.id = v.id AND commands.device_id = v.device_id \
                 AND commands.state IN ('queued', 'sent')",
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (id, device_id, time_ms) in chunk {
                query = query
                    .bind((*id).clone())
                    .bind((*device_id).clone())
                    .bind(*time_ms);
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(unavailable("acknowledging commands"))?;
        }
        // Results: the first result of each command in the batch (a repeat finds it finished, as it
        // would one event later), written a hundred at a time; `RETURNING` says which were still
        // open. Late or repeated results change nothing and record nothing.
        let mut seen = std::collections::HashSet::new();
        let results: Vec<(&String, &String, CommandKind, &CommandFinish, &Audit)> = events
            .iter()
            .filter_map(|event| match event {
                CommandEvent::Finished {
                    id,
                    device_id,
                    kind,
                    finish,
                    audit,
                } if matches!(finish.state, CommandState::Succeeded | CommandState::Failed)
                    && seen.insert((id, device_id)) =>
                {
                    Some((id, device_id, *kind, finish, audit))
                }
                _ => None,
            })
            .collect();
        let mut finished = std::collections::HashSet::new();
        for chunk in results.chunks(crate::ROWS_PER_INSERT) {
            let mut sql = crate::multi_row_insert(
                dialect,
                "WITH v (id, device_id, state, t, detail, proof, proof_signature, output) AS (VALUES ",
                8,
                chunk.len(),
            );
            sql.push_str(
                ") UPDATE commands SET state = v.state, finished_ms = v.t, detail = v.detail, \
                 proof = v.proof, proof_signature = v.proof_signature, output = v.output, \
                 acked_ms = COALESCE(commands.acked_ms, v.t), sent_ms = COALESCE(commands.sent_ms, v.t) \
                 FROM v WHERE commands.id = v.id AND commands.device_id = v.device_id \
                 AND commands.state IN ('queued', 'sent', 'acknowledged') \
                 RETURNING commands.id, commands.device_id",
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (id, device_id, _, finish, audit) in chunk {
                query = query
                    .bind((*id).clone())
                    .bind((*device_id).clone())
                    .bind(finish.state.as_str())
                    .bind(audit.time_ms)
                    .bind(finish.detail.clone())
                    .bind(finish.proof.clone())
                    .bind(finish.proof_signature.clone())
                    .bind(finish.output.clone());
            }
            let rows = query
                .fetch_all(&mut *tx)
                .await
                .map_err(unavailable("finishing commands"))?;
            for row in rows {
                let id: String = row.try_get(0).map_err(corrupt)?;
                let device_id: String = row.try_get(1).map_err(corrupt)?;
                finished.insert((id, device_id));
            }
        }
        let results: Vec<_> = results
            .into_iter()
            .filter(|(id, device_id, ..)| finished.contains(&((*id).clone(), (*device_id).clone())))
            .collect();
        let succeeded: Vec<(&String, CommandKind)> = results
            .iter()
            .filter(|(_, _, _, finish, _)| finish.state == CommandState::Succeeded)
            .map(|(_, device_id, kind, ..)| (*device_id, *kind))
            .collect();
        step_device_states(&mut tx, dialect, &succeeded).await?;
        // The results' audit entries are appended together at the end, in event order.
        let audits: Vec<&Audit> = results.iter().map(|(.., audit)| *audit).collect();
        if !audits.is_empty() {
            self.append_all_in(&mut tx, &audits).await?;
        }
        tx.commit()
            .await
            .map_err(unavailable("committing command events"))
    }

    async fn expire_commands(
        &self,
        now_ms: i64,
        record: &(dyn for<'c> Fn(&'c CommandRecord) -> AuditRecord + Send + Sync),
    ) -> StoreResult<Vec<CommandRecord>> {
        let mut tx = self.begin().await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM commands WHERE state IN ('queued', 'sent') AND not_after_ms < $1 ORDER BY seq LIMIT 1000"
        ))
        .bind(now_ms)
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable("reading expired commands"))?;
        let mut expired = rows
            .iter()
            .map(|r| command_from_row(r, false))
            .collect::<StoreResult<Vec<_>>>()?;
        if expired.is_empty() {
            return Ok(expired);
        }
        for command in &mut expired {
            sqlx::query(
                "UPDATE commands SET state = 'expired', finished_ms = $1, \
                 detail = 'expired before the device acknowledged it' WHERE id = $2",
            )
            .bind(now_ms)
            .bind(command.id.clone())
            .execute(&mut *tx)
            .await
            .map_err(unavailable("expiring command"))?;
            command.state = CommandState::Expired;
            command.finished_ms = Some(now_ms);
        }
        let audit = Audit {
            time_ms: now_ms,
            records: expired.iter().map(record).collect(),
        };
        self.append_in(&mut tx, &audit).await?;
        tx.commit().await.map_err(unavailable("committing"))?;
        Ok(expired)
    }
}

/// A device's lifecycle state follows its succeeded actions in the order they arrived (lock then
/// quarantine ends quarantined): the devices' states are read once, stepped here, and the ones
/// that changed written once.
async fn step_device_states(
    conn: &mut sqlx::AnyConnection,
    dialect: crate::Dialect,
    succeeded: &[(&String, CommandKind)],
) -> StoreResult<()> {
    let mut unique = std::collections::HashSet::new();
    let touched: Vec<&String> = succeeded
        .iter()
        .map(|(device_id, _)| *device_id)
        .filter(|device_id| unique.insert(*device_id))
        .collect();
    let mut states: std::collections::HashMap<String, (DeviceState, bool)> = std::collections::HashMap::new();
    for chunk in touched.chunks(crate::ROWS_PER_INSERT) {
        let mut sql = crate::multi_row_insert(dialect, "WITH v (id) AS (VALUES ", 1, chunk.len());
        sql.push_str(") SELECT devices.id, devices.state FROM devices JOIN v ON devices.id = v.id");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for device_id in chunk {
            query = query.bind((*device_id).clone());
        }
        let rows = query
            .fetch_all(&mut *conn)
            .await
            .map_err(unavailable("reading devices"))?;
        for row in rows {
            let id: String = row.try_get("id").map_err(corrupt)?;
            states.insert(id, (parse_field(&row, "state")?, false));
        }
    }
    for (device_id, kind) in succeeded {
        if let Some((current, changed)) = states.get_mut(*device_id)
            && let Some(next) = device_state_after(*kind, *current)
        {
            *current = next;
            *changed = true;
        }
    }
    let changed: Vec<(&String, DeviceState)> = states
        .iter()
        .filter(|(_, (_, changed))| *changed)
        .map(|(id, (state, _))| (id, *state))
        .collect();
    for chunk in changed.chunks(crate::ROWS_PER_INSERT) {
        let mut sql = crate::multi_row_insert(dialect, "WITH v (id, state) AS (VALUES ", 2, chunk.len());
        sql.push_str(") UPDATE devices SET state = v.state FROM v WHERE devices.id = v.id");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (id, state) in chunk {
            query = query.bind((*id).clone()).bind(state.as_str());
        }
        query
            .execute(&mut *conn)
            .await
            .map_err(unavailable("updating device states"))?;
    }
    Ok(())
}

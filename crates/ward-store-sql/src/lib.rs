//! Ward's SQL storage adapters: SQLite (the embedded default, in WAL mode) and PostgreSQL.
//!
//! Both run the same queries through sqlx's `Any` driver (the SQL is written in the subset both
//! accept, with `$n` placeholders), each with its own migrations under `migrations/`. The few real
//! differences — how a write transaction starts and locks the audit head, connection pragmas — are
//! the [`Dialect`]'s. One implementation means the conformance suite proves both adapters at once.

mod commands;
mod devices;
mod incidents;
mod lwm2m;
mod policies;
mod rows;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, Connection, Executor, Row};
use ward_domain::audit::{AuditEntry, AuditHead, Checkpoint};
use ward_domain::merkle::Frontier;
use ward_domain::site::{Site, SiteSlug};
use ward_store::{
    ApiTokenRecord, Audit, AuditFilter, AuditLog, SessionRecord, SessionStore, SiteStore, Store, StoreError,
    StoreResult, TokenStore, UserRecord, UserStore,
};

use rows::{entry_from_row, hash_from_hex, site_from_row, token_from_row, user_from_row};

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// Picks the dialect from a database URL (`sqlite:` or `postgres:`/`postgresql:`).
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Dialect::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Dialect::Postgres)
        } else {
            Err(StoreError::Unavailable(
                "database URL must start with sqlite: or postgres://".into(),
            ))
        }
    }

    /// The dialect of an open connection (for code handed a connection rather than the store).
    pub(crate) fn of(conn: &AnyConnection) -> Self {
        if conn.backend_name() == "PostgreSQL" {
            Dialect::Postgres
        } else {
            Dialect::Sqlite
        }
    }

    /// Starts a write transaction. SQLite takes the write lock up front (`BEGIN IMMEDIATE`, waiting
    /// out other writers via `busy_timeout`) so that read-then-write never fails to upgrade.
    fn begin_statement(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        }
    }

    /// Reads the audit head, locking it until commit (PostgreSQL serialises appends on this row;
    /// SQLite already holds the database write lock).
    fn select_head(self) -> &'static str {
        match self {
            Dialect::Sqlite => "SELECT size, head_hash, frontier FROM audit_head WHERE id = 1",
            Dialect::Postgres => "SELECT size, head_hash, frontier FROM audit_head WHERE id = 1 FOR UPDATE",
        }
    }
}

/// Connection settings beyond the URL.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// PostgreSQL only: a schema to create and use instead of the connection's default (tests use
    /// one schema each so they can run in parallel against one database).
    pub schema: Option<String>,
    /// Pool size; defaults to 8 (PostgreSQL) or 4 (SQLite).
    pub max_connections: Option<u32>,
}

/// A store on SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pub(crate) pool: AnyPool,
    dialect: Dialect,
}

pub(crate) fn unavailable(context: &str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |err| StoreError::Unavailable(format!("{context}: {err}"))
}

/// A unique-key violation becomes `Conflict` (described by `what`), anything else `Unavailable`.
pub(crate) fn conflict_or<'a>(
    what: impl FnOnce() -> String + 'a,
    context: &'a str,
) -> impl FnOnce(sqlx::Error) -> StoreError + 'a {
    move |err| match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what()),
        _ => StoreError::Unavailable(format!("{context}: {err}")),
    }
}

/// The URL of the embedded SQLite database inside a data directory.
pub fn sqlite_url_for(path: &std::path::Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

impl SqlStore {
    /// Connects and applies pending migrations.
    pub async fn connect(url: &str, options: ConnectOptions) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::from_url(url)?;
        let connect_options = AnyConnectOptions::from_str(url)
            .map_err(|err| StoreError::Unavailable(format!("invalid database URL: {err}")))?;
        let schema = options.schema.clone();
        if let Some(schema) = &schema {
            if dialect != Dialect::Postgres
                || !schema
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(StoreError::Unavailable(
                    "a schema needs PostgreSQL and a name of a-z, 0-9, _".into(),
                ));
            }
            let mut conn = AnyConnection::connect_with(&connect_options)
                .await
                .map_err(unavailable("connecting to the database"))?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}"
            )))
            .execute(&mut conn)
            .await
            .map_err(unavailable("creating schema"))?;
            conn.close().await.ok();
        }
        let max_connections = options.max_connections.unwrap_or(match dialect {
            Dialect::Sqlite => 4,
            Dialect::Postgres => 8,
        });
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                let schema = schema.clone();
                Box::pin(async move {
                    match dialect {
                        Dialect::Sqlite => {
                            // WAL lets readers run beside the writer; NORMAL sync is durable across
                            // application crashes and loses at most the last commits on power loss.
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            // Statement journals (a multi-row statement inside a transaction keeps
                            // one to undo itself) in memory, not in a temporary file: writing that
                            // file costs a containment's fan-out a noticeable share of the server's
                            // time (see BENCHMARKS.md).
                            conn.execute("PRAGMA temp_store = MEMORY").await?;
                            // The server checkpoints the log itself between containments
                            // (`Store::checkpoint_log`, every few seconds); this is the backstop
                            // for anything else that writes (80 MiB of log).
                            conn.execute("PRAGMA wal_autocheckpoint = 20000").await?;
                        }
                        Dialect::Postgres => {
                            if let Some(schema) = schema {
                                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET search_path TO {schema}")))
                                    .execute(&mut *conn)
                                    .await?;
                            }
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(connect_options)
            .await
            .map_err(unavailable("connecting to the database"))?;
        let store = Self { pool, dialect };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> StoreResult<()> {
        let result = match self.dialect {
            Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&self.pool).await,
            Dialect::Postgres => sqlx::migrate!("./migrations/postgres").run(&self.pool).await,
        };
        result.map_err(|err| StoreError::Unavailable(format!("applying migrations: {err}")))
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Runs one raw SQL statement. For tests that play an attacker with database access, and for
    /// dropping a test schema; the server never calls it.
    pub async fn execute_unchecked(&self, sql: &str) -> StoreResult<()> {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&self.pool)
            .await
            .map_err(unavailable("raw statement"))?;
        Ok(())
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) async fn begin(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Any>> {
        self.pool
            .begin_with(self.dialect.begin_statement())
            .await
            .map_err(unavailable("starting a transaction"))
    }

    /// Appends `audit` inside an open transaction and advances the head. Any failure here fails the
    /// caller's whole transaction: that is what makes the audit log fail closed.
    pub(crate) async fn append_in(
        &self,
        conn: &mut AnyConnection,
        audit: &Audit,
    ) -> StoreResult<Vec<AuditEntry>> {
        self.append_all_in(conn, &[audit]).await
    }

    /// [`Self::append_in`] for several audits in order (each keeps its own time), reading and
    /// writing the head once.
    pub(crate) async fn append_all_in(
        &self,
        conn: &mut AnyConnection,
        audits: &[&Audit],
    ) -> StoreResult<Vec<AuditEntry>> {
        let mut head = read_head(conn, self.dialect.select_head()).await?;
        let entries: Vec<AuditEntry> = audits
            .iter()
            .flat_map(|audit| audit.records.iter().map(move |record| (audit.time_ms, record)))
            .map(|(time_ms, record)| head.append(time_ms, record.clone()))
            .collect();
        // Many rows per statement: a containment of thousands of devices writes thousands of
        // entries, and one round trip per row would be most of its time.
        for chunk in entries.chunks(ROWS_PER_INSERT) {
            let sql = multi_row_insert(
                self.dialect,
                "INSERT INTO audit_entries (seq, time_ms, actor, action, target, outcome, details, source, prev_hash, hash) VALUES ",
                10,
                chunk.len(),
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for entry in chunk {
                query = query
                    .bind(entry.seq as i64)
                    .bind(entry.time_ms)
                    .bind(entry.record.actor.clone())
                    .bind(entry.record.action.clone())
                    .bind(entry.record.target.clone())
                    .bind(entry.record.outcome.as_str())
                    .bind(entry.record.details.clone())
                    .bind(entry.record.source.clone())
                    .bind(hex::encode(entry.prev_hash))
                    .bind(hex::encode(entry.hash));
            }
            query
                .execute(&mut *conn)
                .await
                .map_err(unavailable("writing the audit log"))?;
        }
        sqlx::query("UPDATE audit_head SET size = $1, head_hash = $2, frontier = $3 WHERE id = 1")
            .bind(head.size() as i64)
            .bind(hex::encode(head.head_hash))
            .bind(head.frontier.to_bytes())
            .execute(&mut *conn)
            .await
            .map_err(unavailable("writing the audit head"))?;
        Ok(entries)
    }

    /// Runs `change` and the audit append in one transaction.
    pub(crate) async fn audited<F>(&self, audit: &Audit, change: F) -> StoreResult<()>
    where
        F: for<'c> FnOnce(&'c mut AnyConnection) -> futures_core::future::BoxFuture<'c, StoreResult<()>>,
    {
        let mut tx = self.begin().await?;
        change(&mut tx).await?;
        self.append_in(&mut tx, audit).await?;
        tx.commit().await.map_err(unavailable("committing"))
    }
}

async fn read_head(conn: &mut AnyConnection, sql: &'static str) -> StoreResult<AuditHead> {
    let row = sqlx::query(sql)
        .fetch_optional(&mut *conn)
        .await
        .map_err(unavailable("reading the audit head"))?
        .ok_or_else(|| StoreError::Corrupt("the audit head record is missing".into()))?;
    let size: i64 = row.try_get("size").map_err(corrupt)?;
    let head_hash: String = row.try_get("head_hash").map_err(corrupt)?;
    let frontier: Vec<u8> = row.try_get("frontier").map_err(corrupt)?;
    let frontier = Frontier::from_bytes(size as u64, &frontier)
        .ok_or_else(|| StoreError::Corrupt("the audit head's frontier does not match its size".into()))?;
    Ok(AuditHead {
        frontier,
        head_hash: hash_from_hex(&head_hash)?,
    })
}

/// Rows per multi-row INSERT (well under SQLite's and PostgreSQL's bind limits).
pub(crate) const ROWS_PER_INSERT: usize = 100;

/// `prefix` followed by `rows` tuples of `columns` placeholders: numbered for PostgreSQL
/// (`($1, $2), ($3, $4)`), anonymous for SQLite (`(?, ?), (?, ?)`), bound in order either way.
/// SQLite looks each numbered parameter's name up in a list as long as the statement's, once per
/// bound value: quadratic in the row count, which a containment's large inserts would feel
/// (see BENCHMARKS.md). Only placeholders are generated, never values, so the text is safe to
/// build.
pub(crate) fn multi_row_insert(dialect: Dialect, prefix: &str, columns: usize, rows: usize) -> String {
    let mut sql = String::with_capacity(prefix.len() + rows * columns * 5);
    sql.push_str(prefix);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            match dialect {
                Dialect::Sqlite => sql.push('?'),
                Dialect::Postgres => {
                    sql.push('$');
                    sql.push_str(&(row * columns + column + 1).to_string());
                }
            }
        }
        sql.push(')');
    }
    sql
}

pub(crate) fn corrupt(err: sqlx::Error) -> StoreError {
    StoreError::Corrupt(err.to_string())
}

pub(crate) fn bool_int(value: bool) -> i64 {
    i64::from(value)
}

#[async_trait]
impl UserStore for SqlStore {
    async fn create_user(&self, user: &UserRecord, audit: Audit) -> StoreResult<()> {
        let user = user.clone();
        self.audited(&audit, move |conn| {
            Box::pin(async move {
                bind_user(sqlx::query(
                    "INSERT INTO users (id, username, display_name, role, sites, password_hash, must_change_password, \
                     totp_secret, totp_enabled, totp_last_step, recovery_codes, break_glass, disabled, created_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                ), &user)
                .execute(&mut *conn)
                .await
                .map_err(conflict_or(|| format!("user {} already exists", user.username), "creating user"))?;
                Ok(())
            })
        })
        .await
    }

    async fn update_user(&self, user: &UserRecord, audit: Audit) -> StoreResult<()> {
        let user = user.clone();
        self.audited(&audit, move |conn| {
            Box::pin(async move {
                let result = bind_user(sqlx::query(
                    "UPDATE users SET id = $1, username = $2, display_name = $3, role = $4, sites = $5, \
                     password_hash = $6, must_change_password = $7, totp_secret = $8, totp_enabled = $9, \
                     totp_last_step = $10, recovery_codes = $11, break_glass = $12, disabled = $13, created_ms = $14 \
                     WHERE id = $1",
                ), &user)
                .execute(&mut *conn)
                .await
                .map_err(conflict_or(|| format!("user {} already exists", user.username), "updating user"))?;
                if result.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!("user {}", user.username)));
                }
                if user.disabled {
                    sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                        .bind(&user.id)
                        .execute(&mut *conn)
                        .await
                        .map_err(unavailable("ending sessions"))?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn user_by_name(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query("SELECT * FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable("reading user"))?;
        row.map(|r| user_from_row(&r)).transpose()
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable("reading user"))?;
        row.map(|r| user_from_row(&r)).transpose()
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY username")
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable("listing users"))?;
        rows.iter().map(user_from_row).collect()
    }

    async fn count_users(&self) -> StoreResult<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable("counting users"))?;
        Ok(row.try_get::<i64, _>("n").map_err(corrupt)? as u64)
    }
}

fn bind_user<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    user: &UserRecord,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    let sites: Vec<&str> = user.sites.sites().iter().map(|s| s.as_str()).collect();
    query
        .bind(user.id.clone())
        .bind(user.username.clone())
        .bind(user.display_name.clone())
        .bind(user.role.as_str())
        .bind(serde_json::to_string(&sites).unwrap_or_else(|_| "[]".into()))
        .bind(user.password_hash.clone())
        .bind(bool_int(user.must_change_password))
        .bind(user.totp_secret.clone())
        .bind(bool_int(user.totp_enabled))
        .bind(user.totp_last_step)
        .bind(serde_json::to_string(&user.recovery_codes).unwrap_or_else(|_| "[]".into()))
        .bind(bool_int(user.break_glass))
        .bind(bool_int(user.disabled))
        .bind(user.created_ms)
}

#[async_trait]
impl SessionStore for SqlStore {
    async fn create_session(&self, session: &SessionRecord, audit: Audit) -> StoreResult<()> {
        let session = session.clone();
        self.audited(&audit, move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO sessions (token_hash, user_id, created_ms, last_seen_ms, expires_ms, source) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(session.token_hash)
                .bind(session.user_id)
                .bind(session.created_ms)
                .bind(session.last_seen_ms)
                .bind(session.expires_ms)
                .bind(session.source)
                .execute(&mut *conn)
                .await
                .map_err(unavailable("creating session"))?;
                Ok(())
            })
        })
        .await
    }

    async fn session(&self, token_hash: &str) -> StoreResult<Option<SessionRecord>> {
        let row = sqlx::query("SELECT * FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable("reading session"))?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(SessionRecord {
            token_hash: row.try_get("token_hash").map_err(corrupt)?,
            user_id: row.try_get("user_id").map_err(corrupt)?,
            created_ms: row.try_get("created_ms").map_err(corrupt)?,
            last_seen_ms: row.try_get("last_seen_ms").map_err(corrupt)?,
            expires_ms: row.try_get("expires_ms").map_err(corrupt)?,
            source: row.try_get("source").map_err(corrupt)?,
        }))
    }

    async fn touch_session(&self, token_hash: &str, now_ms: i64) -> StoreResult<()> {
        sqlx::query("UPDATE sessions SET last_seen_ms = $1 WHERE token_hash = $2")
            .bind(now_ms)
            .bind(token_hash)
            .execute(&self.pool)
            .await
            .map_err(unavailable("touching session"))?;
        Ok(())
    }

    async fn delete_session(&self, token_hash: &str, audit: Audit) -> StoreResult<()> {
        let token_hash = token_hash.to_owned();
        self.audited(&audit, move |conn| {
            Box::pin(async move {
                sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                    .bind(token_hash)
                    .execute(&mut *conn)
                    .await
                    .map_err(unavailable("deleting session"))?;
                Ok(())
            })
        })
        .await
    }
}

#[async_trait]
impl TokenStore for SqlStore {
    async fn create_token(&self, token: &ApiTokenRecord, audit: Audit) -> StoreResult<()> {
        let token = token.clone();
        self.audited(&audit, move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO api_tokens (id, user_id, name, secret_hash, scope, created_ms, expires_ms, revoked_ms, last_used_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(token.id.clone())
                .bind(token.user_id)
                .bind(token.name)
                .bind(token.secret_hash)
                .bind(token.scope.as_str())
                .bind(token.created_ms)
                .bind(token.expires_ms)
                .bind(token.revoked_ms)
                .bind(token.last_used_ms)
                .execute(&mut *conn)
                .await
                .map_err(conflict_or(|| format!("token {} already exists", token.id), "creating token"))?;
                Ok(())
            })
        })
        .await
    }

    async fn token(&self, id: &str) -> StoreResult<Option<ApiTokenRecord>> {
        let row = sqlx::query("SELECT * FROM api_tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable("reading token"))?;
        row.map(|r| token_from_row(&r)).transpose()
    }

    async fn list_tokens(&self, user_id: Option<&str>) -> StoreResult<Vec<ApiTokenRecord>> {
        let rows = match user_id {
            Some(user_id) => {
                sqlx::query("SELECT * FROM api_tokens WHERE user_id = $1 ORDER BY created_ms DESC, id")
                    .bind(user_id)
                    .fetch_all(&self.pool)
                    .await
            }
            None => {
                sqlx::query("SELECT * FROM api_tokens ORDER BY created_ms DESC, id")
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(unavailable("listing tokens"))?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_token(&self, id: &str, audit: Audit) -> StoreResult<()> {
        let id = id.to_owned();
        let now_ms = audit.time_ms;
        self.audited(&audit, move |conn| {
            Box::pin(async move {
                let result =
                    sqlx::query("UPDATE api_tokens SET revoked_ms = COALESCE(revoked_ms, $1) WHERE id = $2")
                        .bind(now_ms)
                        .bind(id.clone())
                        .execute(&mut *conn)
                        .await
                        .map_err(unavailable("revoking token"))?;
                if result.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!("token {id}")));
                }
                Ok(())
            })
        })
        .await
    }

    async fn touch_token(&self, id: &str, now_ms: i64) -> StoreResult<()> {
        sqlx::query("UPDATE api_tokens SET last_used_ms = $1 WHERE id = $2")
            .bind(now_ms)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(unavailable("touching token"))?;
        Ok(())
    }
}

#[async_trait]
impl SiteStore for SqlStore {
    async fn create_site(&self, site: &Site, audit: Audit) -> StoreResult<()> {
        let site = site.clone();
        self.audited(&audit, move |conn| {
            Box::pin(async move {
                if let Some(parent) = site.slug.parent() {
                    let exists = sqlx::query("SELECT slug FROM sites WHERE slug = $1")
                        .bind(parent.as_str())
                        .fetch_optional(&mut *conn)
                        .await
                        .map_err(unavailable("reading site"))?;
                    if exists.is_none() {
                        return Err(StoreError::NotFound(format!("hospital {parent}")));
                    }
                }
                sqlx::query("INSERT INTO sites (slug, parent, name, created_ms) VALUES ($1, $2, $3, $4)")
                    .bind(site.slug.as_str())
                    .bind(site.slug.parent().map(String::from))
                    .bind(site.name.clone())
                    .bind(site.created_ms)
                    .execute(&mut *conn)
                    .await
                    .map_err(conflict_or(
                        || format!("site {} already exists", site.slug),
                        "creating site",
                    ))?;
                Ok(())
            })
        })
        .await
    }

    async fn update_site(&self, site: &Site, audit: Audit) -> StoreResult<()> {
        let site = site.clone();
        self.audited(&audit, move |conn| {
            Box::pin(async move {
                let result = sqlx::query("UPDATE sites SET name = $1 WHERE slug = $2")
                    .bind(site.name.clone())
                    .bind(site.slug.as_str())
                    .execute(&mut *conn)
                    .await
                    .map_err(unavailable("updating site"))?;
                if result.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!("site {}", site.slug)));
                }
                Ok(())
            })
        })
        .await
    }

    async fn delete_site(&self, slug: &SiteSlug, audit: Audit) -> StoreResult<()> {
        let slug = slug.clone();
        self.audited(&audit, move |conn| {
            Box::pin(async move {
                let child = sqlx::query("SELECT slug FROM sites WHERE parent = $1 LIMIT 1")
                    .bind(slug.as_str())
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(unavailable("reading sites"))?;
                if child.is_some() {
                    return Err(StoreError::Conflict(format!("site {slug} still has wards")));
                }
                let result = sqlx::query("DELETE FROM sites WHERE slug = $1")
                    .bind(slug.as_str())
                    .execute(&mut *conn)
                    .await
                    .map_err(unavailable("deleting site"))?;
                if result.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!("site {slug}")));
                }
                Ok(())
            })
        })
        .await
    }

    async fn site(&self, slug: &SiteSlug) -> StoreResult<Option<Site>> {
        let row = sqlx::query("SELECT slug, name, created_ms FROM sites WHERE slug = $1")
            .bind(slug.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable("reading site"))?;
        row.map(|r| site_from_row(&r)).transpose()
    }

    async fn list_sites(&self) -> StoreResult<Vec<Site>> {
        let rows = sqlx::query("SELECT slug, name, created_ms FROM sites ORDER BY slug")
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable("listing sites"))?;
        rows.iter().map(site_from_row).collect()
    }
}

#[async_trait]
impl AuditLog for SqlStore {
    async fn append(&self, audit: Audit) -> StoreResult<Vec<AuditEntry>> {
        let mut tx = self.begin().await?;
        let entries = self.append_in(&mut tx, &audit).await?;
        tx.commit()
            .await
            .map_err(unavailable("committing audit entries"))?;
        Ok(entries)
    }

    async fn entries(&self, after: u64, limit: u32, filter: &AuditFilter) -> StoreResult<Vec<AuditEntry>> {
        // Every condition is always present and switched off by a NULL parameter, so the statement
        // text is fixed (cached once) and no user text is ever spliced into SQL.
        let action_prefix = filter.action.as_ref().filter(|a| a.ends_with('.')).cloned();
        let action_exact = filter.action.as_ref().filter(|a| !a.ends_with('.')).cloned();
        let rows = sqlx::query(
            "SELECT * FROM audit_entries WHERE seq > $1 \
             AND ($2 IS NULL OR actor = $2) \
             AND ($3 IS NULL OR action = $3) \
             AND ($4 IS NULL OR substr(action, 1, length($4)) = $4) \
             AND ($5 IS NULL OR target = $5) \
             AND ($6 IS NULL OR time_ms >= $6) \
             ORDER BY seq LIMIT $7",
        )
        .bind(after as i64)
        .bind(filter.actor.clone())
        .bind(action_exact)
        .bind(action_prefix)
        .bind(filter.target.clone())
        .bind(filter.since_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable("reading the audit log"))?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn raw_entries(&self, after: u64, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        let rows = sqlx::query("SELECT * FROM audit_entries WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after as i64)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable("reading the audit log"))?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn head(&self) -> StoreResult<AuditHead> {
        let mut conn = self.pool.acquire().await.map_err(unavailable("connecting"))?;
        read_head(&mut conn, Dialect::Sqlite.select_head()).await
    }

    async fn recorded_size(&self) -> StoreResult<Option<u64>> {
        let row = sqlx::query("SELECT size FROM audit_head WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable("reading the audit head"))?;
        row.map(|r| r.try_get::<i64, _>("size").map(|n| n as u64).map_err(corrupt))
            .transpose()
    }

    async fn checkpoint(
        &self,
        sign: &(dyn for<'h> Fn(&'h AuditHead) -> Checkpoint + Send + Sync),
    ) -> StoreResult<Option<Checkpoint>> {
        let mut tx = self.begin().await?;
        let head = read_head(&mut tx, self.dialect.select_head()).await?;
        let last = sqlx::query("SELECT MAX(tree_size) AS n FROM audit_checkpoints")
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable("reading checkpoints"))?;
        let last: Option<i64> = last.try_get("n").map_err(corrupt)?;
        if head.size() == 0 || last.is_some_and(|n| n as u64 >= head.size()) {
            return Ok(None);
        }
        let checkpoint = sign(&head);
        sqlx::query(
            "INSERT INTO audit_checkpoints (tree_size, root, head_hash, time_ms, signature) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(checkpoint.tree_size as i64)
        .bind(hex::encode(checkpoint.root))
        .bind(hex::encode(checkpoint.head_hash))
        .bind(checkpoint.time_ms)
        .bind(checkpoint.signature.clone())
        .execute(&mut *tx)
        .await
        .map_err(unavailable("writing checkpoint"))?;
        tx.commit().await.map_err(unavailable("committing checkpoint"))?;
        Ok(Some(checkpoint))
    }

    async fn checkpoints(&self) -> StoreResult<Vec<Checkpoint>> {
        let rows = sqlx::query("SELECT * FROM audit_checkpoints ORDER BY tree_size")
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable("reading checkpoints"))?;
        rows.iter()
            .map(|row| {
                Ok(Checkpoint {
                    tree_size: row.try_get::<i64, _>("tree_size").map_err(corrupt)? as u64,
                    root: hash_from_hex(&row.try_get::<String, _>("root").map_err(corrupt)?)?,
                    head_hash: hash_from_hex(&row.try_get::<String, _>("head_hash").map_err(corrupt)?)?,
                    time_ms: row.try_get("time_ms").map_err(corrupt)?,
                    signature: row.try_get("signature").map_err(corrupt)?,
                })
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }

    async fn checkpoint_log(&self) -> StoreResult<()> {
        if self.dialect == Dialect::Sqlite {
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable("checkpointing the write-ahead log"))?;
        }
        Ok(())
    }
}

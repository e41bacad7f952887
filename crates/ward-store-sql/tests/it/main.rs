//! Runs the storage conformance suite against SQLite always and PostgreSQL when
//! `WARD_TEST_POSTGRES_URL` is set.

// Test helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;

use async_trait::async_trait;
use ward_store::conformance::{Tamper, run_all};
use ward_store_sql::{ConnectOptions, SqlStore, sqlite_url_for};

struct Raw<'a>(&'a SqlStore);

#[async_trait]
impl Tamper for Raw<'_> {
    async fn exec(&self, sql: &str) {
        self.0
            .execute_unchecked(sql)
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"));
    }
}

#[tokio::test]
async fn conformance_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::connect(
        &sqlite_url_for(&dir.path().join("ward.db")),
        ConnectOptions::default(),
    )
    .await
    .unwrap();
    run_all(&store, &Raw(&store)).await;
}

/// A fresh schema per test run, dropped afterwards.
pub async fn postgres_store() -> Option<(SqlStore, String)> {
    let Ok(url) = std::env::var("WARD_TEST_POSTGRES_URL") else {
        // Straight to stderr: the harness would hide an eprintln! of a passing test.
        std::io::stderr()
            .write_all(b"skipping conformance_postgres: WARD_TEST_POSTGRES_URL is not set\n")
            .unwrap();
        return None;
    };
    let schema = format!("ward_test_{}", uuid::Uuid::new_v4().simple());
    let store = SqlStore::connect(
        &url,
        ConnectOptions {
            schema: Some(schema.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap_or_else(|err| panic!("WARD_TEST_POSTGRES_URL is set but PostgreSQL is not usable: {err}"));
    Some((store, schema))
}

#[tokio::test]
async fn conformance_postgres() {
    let Some((store, schema)) = postgres_store().await else {
        return;
    };
    run_all(&store, &Raw(&store)).await;
    store
        .execute_unchecked(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn reopening_keeps_data_and_refuses_bad_urls() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url_for(&dir.path().join("ward.db"));
    let store = SqlStore::connect(&url, ConnectOptions::default()).await.unwrap();
    use ward_store::AuditLog;
    store
        .append(ward_store::Audit::one(
            1,
            ward_domain::audit::AuditRecord::new(
                "a",
                "b",
                "c",
                ward_domain::audit::Outcome::Success,
                serde_json::json!({}),
            ),
        ))
        .await
        .unwrap();
    store.close().await;
    let again = SqlStore::connect(&url, ConnectOptions::default()).await.unwrap();
    assert_eq!(again.head().await.unwrap().size(), 1);

    for bad in ["mysql://x", "", "file.db"] {
        assert!(
            SqlStore::connect(bad, ConnectOptions::default()).await.is_err(),
            "{bad}"
        );
    }
    let err = SqlStore::connect(
        &url,
        ConnectOptions {
            schema: Some("x; drop".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("schema"), "{err}");
}

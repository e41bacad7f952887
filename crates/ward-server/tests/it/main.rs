//! End-to-end tests of the server through real HTTPS on loopback, on SQLite always and on
//! PostgreSQL when `WARD_TEST_POSTGRES_URL` is set, each starting from `ward_testkit::Kit`; and
//! the HTTP application's error answers driven in-process (`router`).

// Test helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agent;
mod commands;
mod console;
mod flows;
mod incidents;
mod lwm2m;
mod policies;
mod router;

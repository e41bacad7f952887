//! End-to-end tests of the server through real HTTPS on loopback, on SQLite always and on
//! PostgreSQL when `WARD_TEST_POSTGRES_URL` is set.

// Test helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agent;
mod commands;
mod console;
mod flows;
mod incidents;
mod kit;
mod lwm2m;
mod policies;

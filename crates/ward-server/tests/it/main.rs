//! End-to-end tests of the server through real HTTPS on loopback, on SQLite always and on
//! PostgreSQL when `WARD_TEST_POSTGRES_URL` is set.

mod kit;
mod flows;

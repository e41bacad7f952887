//! What every Ward integration test starts from: the real server on port 0 with a temporary data
//! directory and store (SQLite, or PostgreSQL in a schema of its own when `WARD_TEST_POSTGRES_URL`
//! is set), a manual clock, an admin logged in through an HTTPS client that trusts only the test
//! CA, and enrolled simulated devices on the agent channel.
//!
//! ```no_run
//! # async fn example() {
//! use ward_testkit::{Backend, Kit};
//! let kit = Kit::start(&Backend::Sqlite).await;
//! kit.create_sites().await;
//! let device = kit.enrolled_device("general", "workstation", "ws-1").await;
//! let reply = kit.admin(reqwest::Method::GET, &format!("/devices/{}", device.id), None).await;
//! assert_eq!(reply.status, reqwest::StatusCode::OK);
//! kit.finish().await;
//! # }
//! ```

// Test support fails by panicking, with the reason, like the tests that call it: a helper that
// returned errors would only move the unwrap into every test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod agent;
mod enroll;
mod kit;

pub use enroll::{Enrolled, csr};
pub use kit::*;

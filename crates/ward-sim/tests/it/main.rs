//! The simulator against a real server: enrollment of a hospital fleet, and the incident flow
//! over it end to end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod churn;
mod incident;
mod lwm2m;

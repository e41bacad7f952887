//! Ward's service layer: every operation the product has, for every caller. The REST API and the
//! console (`ward-http`), the background jobs and the device platforms (`ward-agent-channel`,
//! `ward-lwm2m-gateway`) all call it; none of them calls another's handlers. It knows no HTTP and
//! no device protocol: operations take the caller and read time from the state's clock, and
//! return domain values or wire views, or one [`ServiceError`].

pub mod accounts;
pub mod actions;
pub mod audit;
pub mod auth;
pub mod baseline;
pub mod caller;
pub mod channels;
pub mod commands;
pub mod config;
pub mod devices;
pub mod enroll_writer;
pub mod enrollment;
pub mod error;
pub mod facts;
pub mod fan_out;
pub mod incident_steps;
pub mod incidents;
pub mod ingest;
pub mod jobs;
pub mod keys;
pub mod lwm2m;
pub mod platforms;
pub mod policies;
pub mod policy_admin;
pub mod policy_engine;
pub mod policy_files;
pub mod presence;
pub mod sessions;
pub mod sites;
pub mod state;
pub mod tokens;
pub mod users;
pub mod views;
pub mod webhooks;

pub use caller::Caller;
pub use config::Config;
pub use error::{ServiceError, ServiceResult};
pub use state::AppState;

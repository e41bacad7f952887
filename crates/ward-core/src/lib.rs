//! The base of Ward's service layer, shared by the operations (`ward-service`) and the device
//! platforms (`ward-agent-channel`, `ward-lwm2m-gateway`): the state every caller shares, callers
//! and audited authorization, the one error type, configuration and keys, the registry of live
//! connections (presence and wake-up), the fact pipeline every platform reports into, the command
//! lifecycle every platform reports outcomes to, the policy engine and the background jobs. No
//! HTTP, no device protocol, no SQL adapter.

pub mod auth;
pub mod caller;
pub mod channels;
pub mod commands;
pub mod config;
pub mod devices;
pub mod enroll_writer;
pub mod error;
pub mod facts;
pub mod ingest;
pub mod jobs;
pub mod keys;
pub mod lwm2m;
pub mod platforms;
pub mod policies;
pub mod policy_engine;
pub mod presence;
pub mod state;
pub mod views;
pub mod webhooks;

pub use caller::Caller;
pub use config::Config;
pub use error::{ServiceError, ServiceResult};
pub use state::AppState;

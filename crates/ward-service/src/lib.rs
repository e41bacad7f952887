//! Ward's service layer: every operation the product has, for every caller. The REST API and the
//! console (`ward-http`) call it; none of them calls another's handlers. It knows no HTTP and no
//! device protocol: operations take the caller and read time from the state's clock, and return
//! domain values or wire views, or one [`ServiceError`]. What the operations stand on — the state,
//! callers and authorization, the fact pipeline, the command lifecycle, live connections, the
//! policy engine and the background jobs — is `ward-core`, which the device platforms use too.

pub mod accounts;
pub mod actions;
pub mod audit;
pub mod baseline;
pub mod enrollment;
pub mod fan_out;
pub mod incident_steps;
pub mod incidents;
pub mod policy_admin;
pub mod policy_files;
pub mod sessions;
pub mod sites;
pub mod tokens;
pub mod users;

pub use ward_core::{AppState, Caller, Config, ServiceError, ServiceResult};

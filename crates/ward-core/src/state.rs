//! The service's state, shared by every caller: store, clock, keys, configuration, the queues to
//! the background writers, the policy engine and the registry of live device connections.

use std::sync::Arc;

use ward_domain::audit::AuditRecord;
use ward_domain::clock::{Clock, Entropy};
use ward_store::{Audit, Store};

use crate::auth::Throttle;
use crate::config::Config;
use crate::keys::Keys;

/// The system clock; the one production implementation of [`Clock`].
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods, reason = "the one production clock")]
    fn now_ms(&self) -> i64 {
        (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
    }
}

/// Everything handlers share.
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

pub struct Inner {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
    pub config: Config,
    pub keys: Arc<Keys>,
    pub throttle: Throttle,
    /// Live agent connections on this node.
    pub channels: Arc<dyn crate::channels::Connections>,
    /// The agent channel's port, told to devices at enrollment.
    pub agent_port: u16,
    /// Queue to the task that stores device facts in batches.
    pub facts_writer: tokio::sync::mpsc::Sender<crate::facts::FactsWork>,
    /// Queue to the task that stores enrollments in batches.
    pub enrollments: tokio::sync::mpsc::Sender<crate::enroll_writer::Submission>,
    /// Queue to the task that stores what devices report about commands, in batches.
    pub command_events: tokio::sync::mpsc::Sender<ward_store::CommandEvent>,
    /// The policy engine (compiled policies, groups, compliance cache).
    pub policy: Arc<crate::policy_engine::Engine>,
    /// Queue to the background policy evaluator.
    pub policy_work: tokio::sync::mpsc::Sender<crate::policy_engine::Work>,
    /// LwM2M pre-shared keys by PSK identity, read by DTLS handshakes.
    pub lwm2m_keys: Arc<ward_lwm2m::dtls::PskTable>,
    /// Held (shared) while a containment's commands are being stored and pushed; the command
    /// event writer takes it (exclusively) before each commit, so the fan-out's chunks never queue
    /// behind the acknowledgements of the chunks already pushed on the database's single writer.
    pub fan_out: Arc<tokio::sync::RwLock<()>>,
    /// Heartbeats waiting to be written in a batch.
    pub presence: crate::presence::Presence,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// One audit record stamped now.
    pub fn audit(&self, record: AuditRecord) -> Audit {
        Audit::one(self.now_ms(), record)
    }
}

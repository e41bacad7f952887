//! Time as a parameter: everything that expires or times out asks a [`Clock`], so tests move time
//! by hand instead of sleeping.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

/// A source of the current time, in Unix milliseconds (UTC).
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// A clock that only moves when told; for tests and simulated time.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start_ms: i64) -> Self {
        Self(AtomicI64::new(start_ms))
    }

    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn set_ms(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Randomness as a parameter, for the same reason as [`Clock`].
pub trait Entropy: Send + Sync {
    fn fill(&self, buf: &mut [u8]);
}

/// Deterministic entropy for tests: a counter-based stream (not secure; never use in production).
#[derive(Debug, Default)]
pub struct CountingEntropy(Mutex<u64>);

impl Entropy for CountingEntropy {
    fn fill(&self, buf: &mut [u8]) {
        let mut counter = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for byte in buf.iter_mut() {
            *counter = counter
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *byte = (*counter >> 33) as u8;
        }
    }
}

//! Heartbeats: when each connected device was last heard from, written in batches.
//!
//! Every connected agent sends a heartbeat every 30 s by default: 333 a second at 10 000 devices.
//! Written one by one, each would be a transaction of its own on SQLite's single writer, and those
//! arriving while a containment stores its commands would queue behind it, hold pool connections
//! while SQLite's busy handler sleeps, and make the containment's next chunk wait for a connection
//! (see BENCHMARKS.md). Heartbeats only move a time that decides "online" against a threshold of
//! three intervals, so they are collected here (the newest per device) and written together every
//! [`INTERVAL`], skipping turns while a containment fans out. A device's first contact after
//! connecting (its hello) is still written at once, so it shows online as soon as it is welcomed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use ward_store::Store;

/// How often collected heartbeats are written.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Heartbeats not yet written: the newest time per device.
#[derive(Default)]
pub struct Presence {
    pending: Mutex<HashMap<String, i64>>,
}

impl Presence {
    /// Notes that `device_id` was heard from at `now_ms`.
    pub fn heard(&self, device_id: &str, now_ms: i64) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        match pending.get_mut(device_id) {
            Some(time) => *time = (*time).max(now_ms),
            None => {
                pending.insert(device_id.to_owned(), now_ms);
            }
        }
    }

    /// Takes everything noted so far.
    fn take(&self) -> Vec<(String, i64)> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *pending).into_iter().collect()
    }

    /// Puts back what could not be written (newer notes since win).
    fn restore(&self, unwritten: Vec<(String, i64)>) {
        for (device_id, time_ms) in unwritten {
            self.heard(&device_id, time_ms);
        }
    }

    /// Writes everything noted so far. On failure what was taken is kept for the next turn.
    pub async fn flush(&self, store: &dyn Store) {
        let seen = self.take();
        if seen.is_empty() {
            return;
        }
        if let Err(err) = store.record_seen_all(&seen).await {
            tracing::warn!(error = %err, devices = seen.len(), "recording heartbeats failed; retrying");
            self.restore(seen);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_time_per_device_is_kept_and_taken_once() {
        let presence = Presence::default();
        presence.heard("a", 5);
        presence.heard("a", 3);
        presence.heard("b", 4);
        let mut taken = presence.take();
        taken.sort();
        assert_eq!(taken, [("a".to_owned(), 5), ("b".to_owned(), 4)]);
        assert!(presence.take().is_empty());
        presence.heard("a", 9);
        presence.restore(vec![("a".to_owned(), 7), ("c".to_owned(), 1)]);
        let mut taken = presence.take();
        taken.sort();
        assert_eq!(taken, [("a".to_owned(), 9), ("c".to_owned(), 1)]);
    }
}

//! The registry of live device connections (agent streams, and LwM2M registrations through the
//! gateway's shared inbox): which device is connected to this node, and a way to close its
//! connection at once (revocation). Kept small so a NATS-backed registry can replace it
//! when there are several server nodes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, watch};
use ward_store::CommandRecord;

/// Live connections on this node.
#[derive(Debug, Default)]
pub struct Channels {
    next_id: AtomicU64,
    live: Mutex<HashMap<String, Live>>,
    /// Recent connection attempts per device, to stop a reconnect flood.
    attempts: Mutex<HashMap<String, Vec<i64>>>,
}

/// One registered connection: its id, and where new commands for it (already stored: the
/// connection only pushes them) and the order to close go.
#[derive(Debug)]
struct Live {
    connection_id: u64,
    route: Route,
}

#[derive(Debug)]
enum Route {
    /// An agent's stream: its own channel and close switch.
    Stream {
        close: watch::Sender<bool>,
        /// Boxed: a channel allocates its slots in blocks of 32, and 32 inline records were
        /// 10 KiB per idle connection.
        commands: mpsc::UnboundedSender<Box<CommandRecord>>,
    },
    /// A device served by a gateway task that serves many (LwM2M): one channel for all of them,
    /// so a registration costs no task and no channel of its own.
    Shared(mpsc::UnboundedSender<Handover>),
}

/// What a shared gateway receives for its devices.
#[derive(Debug)]
pub enum Handover {
    /// A command was created for the device while it is connected.
    Command {
        device_id: String,
        connection_id: u64,
        command: Box<CommandRecord>,
    },
    /// The server wants the connection gone (revoked, retired, replaced).
    Closed { device_id: String, connection_id: u64 },
}

impl Live {
    fn close(&self, device_id: &str) {
        match &self.route {
            Route::Stream { close, .. } => {
                let _ = close.send(true);
            }
            Route::Shared(sink) => {
                let _ = sink.send(Handover::Closed {
                    device_id: device_id.to_owned(),
                    connection_id: self.connection_id,
                });
            }
        }
    }
}

/// Connection attempts one device may make per minute.
pub const MAX_ATTEMPTS_PER_MINUTE: usize = 20;

/// A registered connection; `closed` turns true when the server wants it gone.
pub struct Registration {
    pub connection_id: u64,
    pub closed: watch::Receiver<bool>,
    /// Commands queued for the device while it is connected, in order.
    pub commands: mpsc::UnboundedReceiver<Box<CommandRecord>>,
}

impl Channels {
    /// Registers a device's connection, closing any older connection of the same device (a device
    /// has one stream; a reconnect replaces it).
    pub fn register(&self, device_id: &str) -> Registration {
        let connection_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (close, closed) = watch::channel(false);
        let (sender, commands) = mpsc::unbounded_channel();
        let entry = Live {
            connection_id,
            route: Route::Stream {
                close,
                commands: sender,
            },
        };
        self.insert(device_id, entry);
        Registration {
            connection_id,
            closed,
            commands,
        }
    }

    /// Registers a device served by a gateway that serves many through `sink`; returns the
    /// connection id its handovers carry. Closes any older connection of the device.
    pub fn register_shared(&self, device_id: &str, sink: &mpsc::UnboundedSender<Handover>) -> u64 {
        let connection_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = Live {
            connection_id,
            route: Route::Shared(sink.clone()),
        };
        self.insert(device_id, entry);
        connection_id
    }

    fn insert(&self, device_id: &str, entry: Live) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = live.insert(device_id.to_owned(), entry) {
            old.close(device_id);
        }
    }

    /// Counts a connection attempt; false when the device is reconnecting too fast.
    pub fn allow_attempt(&self, device_id: &str, now_ms: i64) -> bool {
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        if attempts.len() > 100_000 {
            attempts.retain(|_, times| times.last().is_some_and(|t| now_ms - t < 60_000));
        }
        let times = attempts.entry(device_id.to_owned()).or_default();
        times.retain(|t| now_ms - t < 60_000);
        if times.len() >= MAX_ATTEMPTS_PER_MINUTE {
            return false;
        }
        times.push(now_ms);
        true
    }

    /// Forgets a connection that ended (only if it is still the registered one).
    pub fn unregister(&self, device_id: &str, connection_id: u64) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if live
            .get(device_id)
            .is_some_and(|l| l.connection_id == connection_id)
        {
            live.remove(device_id);
        }
    }

    /// Closes the device's live connection, if it has one here.
    pub fn disconnect(&self, device_id: &str) -> bool {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        match live.remove(device_id) {
            Some(old) => {
                old.close(device_id);
                true
            }
            None => false,
        }
    }

    /// Hands a stored command to its device's connection, if it has one here. False when the
    /// device is not connected here (it gets the command from the store when it connects).
    pub fn push(&self, command: &CommandRecord) -> bool {
        match self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&command.device_id)
        {
            Some(Live {
                route: Route::Stream { commands, .. },
                ..
            }) => commands.send(Box::new(command.clone())).is_ok(),
            Some(Live {
                connection_id,
                route: Route::Shared(sink),
            }) => sink
                .send(Handover::Command {
                    device_id: command.device_id.clone(),
                    connection_id: *connection_id,
                    command: Box::new(command.clone()),
                })
                .is_ok(),
            None => false,
        }
    }

    /// Whether the device has a live connection here.
    pub fn is_connected(&self, device_id: &str) -> bool {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(device_id)
    }

    /// Number of live connections.
    pub fn len(&self) -> usize {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_replaces_and_disconnect_closes() {
        let channels = Channels::default();
        let first = channels.register("d1");
        let second = channels.register("d1");
        assert!(*first.closed.borrow(), "the older connection is told to close");
        assert!(!*second.closed.borrow());
        channels.unregister("d1", first.connection_id);
        assert!(
            channels.is_connected("d1"),
            "a stale unregister does not remove the new connection"
        );
        assert!(channels.disconnect("d1"));
        assert!(*second.closed.borrow());
        assert!(!channels.disconnect("d1"));
        assert!(channels.is_empty());
        for _ in 0..MAX_ATTEMPTS_PER_MINUTE {
            assert!(channels.allow_attempt("d1", 0));
        }
        assert!(!channels.allow_attempt("d1", 1), "a reconnect flood is refused");
        assert!(channels.allow_attempt("d2", 1), "other devices are unaffected");
        assert!(channels.allow_attempt("d1", 60_001), "the window passes");
    }
}

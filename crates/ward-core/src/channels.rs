//! Presence and wake-up: which device holds a live connection (agent streams, and LwM2M
//! registrations through the gateway's shared inbox), handing a stored command to that connection,
//! and closing it at once (revocation). [`Connections`] is the seam; [`Channels`] is the in-process
//! registry of one node. With several server nodes a NATS-backed implementation answers the same
//! calls for devices connected to other nodes.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc};
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
    /// An agent's stream: its own mailbox.
    Stream(Arc<Mailbox>),
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

/// What the server has for one agent connection: commands in order, and whether it must close.
/// One small allocation per connection rather than a tokio channel and a watch, which keep
/// allocations of their own (a channel its first block of slots) for every idle connection
/// (see BENCHMARKS.md, idle agents).
#[derive(Debug, Default)]
pub struct Mailbox {
    notify: Notify,
    inbox: Mutex<Inbox>,
}

#[derive(Debug, Default)]
struct Inbox {
    closed: bool,
    /// Boxed: a record is a few hundred bytes and the queue's capacity stays once grown.
    commands: VecDeque<Box<CommandRecord>>,
}

/// What a registration receives next.
#[derive(Debug)]
pub enum Delivery {
    /// The server wants the connection gone.
    Closed,
    /// A command created for the device while it is connected.
    Command(Box<CommandRecord>),
}

impl Mailbox {
    fn inbox(&self) -> std::sync::MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn close(&self) {
        self.inbox().closed = true;
        self.notify.notify_one();
    }

    fn put(&self, command: Box<CommandRecord>) {
        self.inbox().commands.push_back(command);
        self.notify.notify_one();
    }
}

impl Live {
    fn close(&self, device_id: &str) {
        match &self.route {
            Route::Stream(mailbox) => mailbox.close(),
            Route::Shared(sink) => {
                let _ = sink.send(Handover::Closed {
                    device_id: device_id.to_owned(),
                    connection_id: self.connection_id,
                });
            }
        }
    }
}

/// Presence and wake-up, as the service and the device platforms use them. Every method is cheap
/// and never waits on the network: a command is always stored before it is handed over, so a
/// hand-over that does not arrive only delays the command until the device's next connection.
pub trait Connections: Send + Sync {
    /// Registers a device's connection, closing any older connection of the same device.
    fn register(&self, device_id: &str) -> Registration;
    /// Registers a device served by a gateway that serves many through `sink`; returns the
    /// connection id its handovers carry. Closes any older connection of the device.
    fn register_shared(&self, device_id: &str, sink: &mpsc::UnboundedSender<Handover>) -> u64;
    /// Forgets a connection that ended (only if it is still the registered one).
    fn unregister(&self, device_id: &str, connection_id: u64);
    /// Counts a connection attempt; false when the device is reconnecting too fast.
    fn allow_attempt(&self, device_id: &str, now_ms: i64) -> bool;
    /// Closes the device's live connection; false when it has none.
    fn disconnect(&self, device_id: &str) -> bool;
    /// Hands a stored command to its device's live connection; false when it has none (it gets
    /// the command from the store when it connects).
    fn push(&self, command: &CommandRecord) -> bool;
    /// Whether the device has a live connection.
    fn is_connected(&self, device_id: &str) -> bool;
    /// Number of live connections.
    fn len(&self) -> usize;
    /// Whether there is no live connection.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Connection attempts one device may make per minute.
pub const MAX_ATTEMPTS_PER_MINUTE: usize = 20;

/// A registered connection (one reader: its session).
pub struct Registration {
    pub connection_id: u64,
    mailbox: Arc<Mailbox>,
}

impl Registration {
    /// Waits for the order to close or, when `commands` is true, for the next command (the
    /// order to close comes first). Cancel-safe: nothing is taken before it is returned.
    pub async fn next(&self, commands: bool) -> Delivery {
        loop {
            if let Some(delivery) = self.take(commands) {
                return delivery;
            }
            // `notify_one` keeps a permit when nobody waits, so a put between the check above
            // and this wait is not missed.
            self.mailbox.notify.notified().await;
        }
    }

    /// A command already waiting, without waiting for one (`None` when there is none or the
    /// connection is closing): what was put together is pushed together.
    pub fn next_now(&self) -> Option<Box<CommandRecord>> {
        match self.take(true)? {
            Delivery::Command(command) => Some(command),
            Delivery::Closed => None,
        }
    }

    /// What is there now: the order to close first, then (when `commands`) the next command.
    fn take(&self, commands: bool) -> Option<Delivery> {
        let mut inbox = self.mailbox.inbox();
        if inbox.closed {
            return Some(Delivery::Closed);
        }
        commands
            .then(|| inbox.commands.pop_front())
            .flatten()
            .map(Delivery::Command)
    }

    /// Whether the server has asked this connection to close.
    #[cfg(test)]
    fn is_closed(&self) -> bool {
        self.mailbox.inbox().closed
    }
}

impl Channels {
    fn insert(&self, device_id: &str, entry: Live) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = live.insert(device_id.to_owned(), entry) {
            old.close(device_id);
        }
    }
}

impl Connections for Channels {
    /// Registers a device's connection, closing any older connection of the same device (a device
    /// has one stream; a reconnect replaces it).
    fn register(&self, device_id: &str) -> Registration {
        let connection_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mailbox = Arc::new(Mailbox::default());
        let entry = Live {
            connection_id,
            route: Route::Stream(mailbox.clone()),
        };
        self.insert(device_id, entry);
        Registration {
            connection_id,
            mailbox,
        }
    }

    /// Registers a device served by a gateway that serves many through `sink`; returns the
    /// connection id its handovers carry. Closes any older connection of the device.
    fn register_shared(&self, device_id: &str, sink: &mpsc::UnboundedSender<Handover>) -> u64 {
        let connection_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = Live {
            connection_id,
            route: Route::Shared(sink.clone()),
        };
        self.insert(device_id, entry);
        connection_id
    }

    /// Counts a connection attempt; false when the device is reconnecting too fast.
    fn allow_attempt(&self, device_id: &str, now_ms: i64) -> bool {
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
    fn unregister(&self, device_id: &str, connection_id: u64) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if live
            .get(device_id)
            .is_some_and(|l| l.connection_id == connection_id)
        {
            live.remove(device_id);
        }
    }

    /// Closes the device's live connection, if it has one here.
    fn disconnect(&self, device_id: &str) -> bool {
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
    fn push(&self, command: &CommandRecord) -> bool {
        match self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&command.device_id)
        {
            Some(Live {
                route: Route::Stream(mailbox),
                ..
            }) => {
                mailbox.put(Box::new(command.clone()));
                true
            }
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
    fn is_connected(&self, device_id: &str) -> bool {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(device_id)
    }

    /// Number of live connections.
    fn len(&self) -> usize {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).len()
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
        assert!(first.is_closed(), "the older connection is told to close");
        assert!(!second.is_closed());
        channels.unregister("d1", first.connection_id);
        assert!(
            channels.is_connected("d1"),
            "a stale unregister does not remove the new connection"
        );
        assert!(channels.disconnect("d1"));
        assert!(second.is_closed());
        assert!(!channels.disconnect("d1"));
        assert!(channels.is_empty());
        for _ in 0..MAX_ATTEMPTS_PER_MINUTE {
            assert!(channels.allow_attempt("d1", 0));
        }
        assert!(!channels.allow_attempt("d1", 1), "a reconnect flood is refused");
        assert!(channels.allow_attempt("d2", 1), "other devices are unaffected");
        assert!(channels.allow_attempt("d1", 60_001), "the window passes");
    }

    fn record(id: &str) -> CommandRecord {
        ward_store::conformance::sample_command(id, "d1", ward_domain::command::CommandKind::Lock, 0)
    }

    #[tokio::test]
    async fn a_mailbox_delivers_in_order_holds_commands_until_asked_and_closes_first() {
        let channels = Channels::default();
        let registration = channels.register("d1");
        assert!(channels.push(&record("a")));
        assert!(channels.push(&record("b")));
        // Not asking for commands (before the welcome): nothing is taken, the wait goes on.
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(20), registration.next(false));
        assert!(waiting.await.is_err());
        for expected in ["a", "b"] {
            match registration.next(true).await {
                Delivery::Command(command) => assert_eq!(command.id, expected),
                Delivery::Closed => panic!("not closed"),
            }
        }
        // A command put while the session waits wakes it.
        let (delivered, ()) = tokio::join!(registration.next(true), async {
            tokio::task::yield_now().await;
            assert!(channels.push(&record("c")));
        });
        assert!(matches!(delivered, Delivery::Command(c) if c.id == "c"));
        // What is already waiting is taken without waiting, in order; nothing waiting is `None`.
        assert!(registration.next_now().is_none());
        assert!(channels.push(&record("c2")));
        assert!(channels.push(&record("c3")));
        assert_eq!(registration.next_now().map(|c| c.id), Some("c2".to_owned()));
        assert_eq!(registration.next_now().map(|c| c.id), Some("c3".to_owned()));
        assert!(registration.next_now().is_none());
        // Closing wins over queued commands.
        assert!(channels.push(&record("d")));
        assert!(channels.disconnect("d1"));
        assert!(
            registration.next_now().is_none(),
            "closing: nothing more is pushed"
        );
        assert!(matches!(registration.next(true).await, Delivery::Closed));
        assert!(!channels.push(&record("e")), "no connection any more");
    }
}

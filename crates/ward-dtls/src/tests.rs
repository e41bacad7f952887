use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

const KEY: &[u8] = b"0123456789abcdef";

fn peer(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn table() -> Arc<PskTable> {
    let table = Arc::new(PskTable::default());
    table.insert(b"urn:dev:pump-1", KEY).unwrap();
    table.insert(b"urn:dev:pump-2", b"fedcba9876543210").unwrap();
    table
}

/// Moves datagrams both ways until neither side has anything to send.
fn pump(server: &mut DtlsServer, client: &mut DtlsClient, from: SocketAddr, now: Instant) {
    for _ in 0..50 {
        let mut moved = false;
        while let Some(datagram) = client.poll_transmit() {
            server.handle_datagram(from, &datagram, now);
            moved = true;
        }
        while let Some((to, datagram)) = server.poll_transmit() {
            if to == from {
                client.handle_datagram(&datagram, now);
                moved = true;
            }
        }
        if !moved {
            return;
        }
    }
    panic!("the handshake never settled");
}

/// The first datagram a client sends: its ClientHello.
fn client_hello(identity: &[u8], key: &[u8], now: Instant) -> Vec<u8> {
    DtlsClient::new(identity, key, now)
        .unwrap()
        .poll_transmit()
        .unwrap()
}

/// A server with one session, from `pump-1` at `from`, established at `now`.
fn connected(from: SocketAddr, now: Instant) -> (DtlsServer, DtlsClient) {
    let mut server = DtlsServer::new(table(), ServerLimits::default()).unwrap();
    let mut client = DtlsClient::new(b"urn:dev:pump-1", KEY, now).unwrap();
    pump(&mut server, &mut client, from, now);
    (server, client)
}

fn events(server: &mut DtlsServer) -> Vec<ServerEvent> {
    std::iter::from_fn(|| server.poll_event()).collect()
}

#[test]
fn a_client_with_the_right_key_connects_and_carries_data_both_ways() {
    let now = Instant::now();
    let mut server = DtlsServer::new(table(), ServerLimits::default()).unwrap();
    let mut client = DtlsClient::new(b"urn:dev:pump-1", KEY, now).unwrap();
    // Sent before the handshake: held, then delivered.
    client.send(b"register me", now);
    pump(&mut server, &mut client, peer(4000), now);
    assert!(client.is_connected());
    let identity: Arc<[u8]> = Arc::from(&b"urn:dev:pump-1"[..]);
    assert_eq!(
        events(&mut server),
        vec![ServerEvent::Connected {
            peer: peer(4000),
            identity: identity.clone()
        }]
    );
    assert_eq!(server.identity(peer(4000)), Some(&identity));
    assert_eq!(server.handshakes(), 0);
    let received = server.poll_received().expect("the held datagram arrives");
    assert_eq!(received.payload, b"register me");
    assert_eq!(received.identity, identity);

    assert!(server.send(peer(4000), b"read /3/0", now));
    pump(&mut server, &mut client, peer(4000), now);
    assert_eq!(client.poll_received().unwrap(), b"read /3/0");
    // Nothing readable went over the wire.
    client.send(b"plaintext-marker", now);
    let wire = client.poll_transmit().unwrap();
    assert!(!wire.windows(16).any(|w| w == b"plaintext-marker"));
}

#[test]
fn an_established_session_with_nothing_to_resend_asks_for_no_wake_up() {
    let now = Instant::now();
    let (mut server, mut client) = connected(peer(4000), now);
    assert!(server.next_timeout().is_some(), "the handshake's timers run");
    // Past every handshake timer: the session is established and idle.
    let later = now + Duration::from_secs(120);
    server.handle_timeout(later);
    client.handle_timeout(later);
    for n in 0..20u8 {
        client.send(&[n], later);
        assert!(server.send(peer(4000), &[n], later));
        pump(&mut server, &mut client, peer(4000), later);
    }
    assert_eq!(std::iter::from_fn(|| server.poll_received()).count(), 20);
    assert_eq!(server.sessions(), 1);
    assert_eq!(server.next_timeout(), None);
    assert!(server.timers.is_empty(), "{} timers", server.timers.len());
}

#[test]
fn a_wrong_key_or_an_unknown_identity_never_connects() {
    let now = Instant::now();
    let mut server = DtlsServer::new(table(), ServerLimits::default()).unwrap();
    for (port, identity, key) in [
        (4001, &b"urn:dev:pump-1"[..], &b"wrong-key-wrong!"[..]),
        (4002, &b"urn:dev:nobody"[..], KEY),
        // Another device's identity with this device's key.
        (4003, &b"urn:dev:pump-2"[..], KEY),
    ] {
        let mut client = DtlsClient::new(identity, key, now).unwrap();
        client.send(b"hello", now);
        pump(&mut server, &mut client, peer(port), now);
        assert!(!client.is_connected(), "{}", String::from_utf8_lossy(identity));
        assert!(server.identity(peer(port)).is_none());
        assert!(server.poll_received().is_none());
        let closed = events(&mut server);
        assert!(
            closed
                .iter()
                .all(|e| matches!(e, ServerEvent::Closed { identity: None, .. })),
            "{closed:?}"
        );
    }
    assert_eq!(server.sessions(), 0, "failed handshakes leave nothing behind");
    assert_eq!(server.handshakes(), 0);
}

#[test]
fn garbage_and_records_that_do_not_start_a_handshake_create_no_session() {
    let now = Instant::now();
    let mut server = DtlsServer::new(table(), ServerLimits::default()).unwrap();
    for datagram in [
        &b""[..],
        b"\x40\x01\x00\x01",                                            // plain CoAP
        &[23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4],    // application data
        &[22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2],             // a handshake, not a ClientHello
        &[22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 0, 0], // a ClientHello that lies
    ] {
        server.handle_datagram(peer(4100), datagram, now);
        while server.poll_transmit().is_some() {}
    }
    // The lying ClientHello may start a session; it must not connect, and it expires.
    assert!(server.identity(peer(4100)).is_none());
    server.expire(now + Duration::from_secs(31));
    assert_eq!(server.sessions(), 0);
    assert_eq!(server.handshakes(), 0);
}

#[test]
fn a_flood_of_half_open_handshakes_is_bounded_and_does_not_lock_out_a_device() {
    let now = Instant::now();
    let limits = ServerLimits {
        max_handshakes: 8,
        ..ServerLimits::default()
    };
    let mut server = DtlsServer::new(table(), limits).unwrap();
    // Forged ClientHellos from many addresses: each only ever gets a HelloVerifyRequest.
    let hello = client_hello(b"urn:dev:pump-1", KEY, now);
    for port in 0..100 {
        server.handle_datagram(peer(10_000 + port), &hello, now);
    }
    assert!(server.handshakes() <= 8, "{}", server.handshakes());
    assert!(server.sessions() <= 8);
    while server.poll_transmit().is_some() {}
    events(&mut server);
    // A real device still gets in.
    let mut client = DtlsClient::new(b"urn:dev:pump-1", KEY, now).unwrap();
    pump(&mut server, &mut client, peer(4200), now);
    assert!(client.is_connected());
    assert!(server.identity(peer(4200)).is_some());
    assert!(server.handshakes() <= 8);
}

#[test]
fn a_new_handshake_from_an_established_address_replaces_the_session_only_when_it_completes() {
    let now = Instant::now();
    let (mut server, mut first) = connected(peer(4300), now);
    events(&mut server);

    // A forged ClientHello from the device's address: the session survives.
    let forged = client_hello(b"urn:dev:pump-2", b"wrong-key-wrong!", now);
    server.handle_datagram(peer(4300), &forged, now);
    while server.poll_transmit().is_some() {}
    assert!(server.identity(peer(4300)).is_some());
    first.send(b"still here", now);
    pump(&mut server, &mut first, peer(4300), now);
    assert_eq!(server.poll_received().unwrap().payload, b"still here");

    // The device rebooted and handshakes again from the same address: the new session wins.
    server.expire(now + Duration::from_secs(31));
    let later = now + Duration::from_secs(32);
    let mut rebooted = DtlsClient::new(b"urn:dev:pump-1", KEY, later).unwrap();
    pump(&mut server, &mut rebooted, peer(4300), later);
    assert!(rebooted.is_connected());
    let seen = events(&mut server);
    assert!(
        seen.iter().any(|e| matches!(
            e,
            ServerEvent::Closed {
                reason: CloseReason::Replaced,
                ..
            }
        )),
        "{seen:?}"
    );
    rebooted.send(b"after reboot", later);
    pump(&mut server, &mut rebooted, peer(4300), later);
    assert_eq!(server.poll_received().unwrap().payload, b"after reboot");
    assert_eq!(server.handshakes(), 0);
}

#[test]
fn idle_sessions_expire_and_close_ends_a_session() {
    let now = Instant::now();
    let limits = ServerLimits {
        idle_timeout: Duration::from_secs(60),
        ..ServerLimits::default()
    };
    let mut server = DtlsServer::new(table(), limits).unwrap();
    let mut a = DtlsClient::new(b"urn:dev:pump-1", KEY, now).unwrap();
    let mut b = DtlsClient::new(b"urn:dev:pump-2", b"fedcba9876543210", now).unwrap();
    pump(&mut server, &mut a, peer(4400), now);
    pump(&mut server, &mut b, peer(4401), now);
    assert_eq!(server.sessions(), 2);
    server.close_identity(b"urn:dev:pump-2");
    assert_eq!(server.sessions(), 1);
    assert!(!server.send(peer(4401), b"x", now));
    server.expire(now + Duration::from_secs(61));
    assert_eq!(server.sessions(), 0);
    let seen = events(&mut server);
    assert!(seen.iter().any(|e| matches!(
        e,
        ServerEvent::Closed {
            reason: CloseReason::Idle,
            ..
        }
    )));
}

#[test]
fn retransmission_recovers_a_lost_flight() {
    let start = Instant::now();
    let mut server = DtlsServer::new(table(), ServerLimits::default()).unwrap();
    let mut client = DtlsClient::new(b"urn:dev:pump-1", KEY, start).unwrap();
    // The first ClientHello is lost.
    assert!(client.poll_transmit().is_some());
    let mut now = start;
    for _ in 0..20 {
        now += Duration::from_secs(2);
        client.handle_timeout(now);
        server.handle_timeout(now);
        pump(&mut server, &mut client, peer(4500), now);
        if client.is_connected() {
            break;
        }
    }
    assert!(client.is_connected());
}

#[test]
fn keys_and_identities_are_bounded() {
    let table = PskTable::default();
    assert_eq!(table.insert(b"", KEY), Err(DtlsError::Identity));
    assert_eq!(table.insert(&[b'a'; 129], KEY), Err(DtlsError::Identity));
    assert_eq!(table.insert(b"id", b"short"), Err(DtlsError::Key));
    assert_eq!(table.insert(b"id", &[1; 65]), Err(DtlsError::Key));
    assert!(table.is_empty());
    assert!(DtlsClient::new(b"id", b"short", Instant::now()).is_err());
    table.insert(b"id", KEY).unwrap();
    table.remove(b"id");
    assert!(table.get(b"id").is_none());
}

#[test]
fn one_address_may_start_only_so_many_handshakes_a_minute() {
    let now = Instant::now();
    let limits = ServerLimits {
        handshakes_per_address_per_minute: 10,
        ..ServerLimits::default()
    };
    let mut server = DtlsServer::new(table(), limits).unwrap();
    let hello = client_hello(b"urn:dev:pump-1", KEY, now);
    // One host, many source ports.
    for port in 0..100 {
        server.handle_datagram(peer(20_000 + port), &hello, now);
    }
    assert_eq!(server.sessions(), 10);
    while server.poll_transmit().is_some() {}
    // Another address is not affected.
    let other = SocketAddr::from(([127, 0, 0, 9], 4600));
    let mut client = DtlsClient::new(b"urn:dev:pump-1", KEY, now).unwrap();
    pump(&mut server, &mut client, other, now);
    assert!(client.is_connected());
    // A minute later the host may start again.
    let later = now + Duration::from_secs(61);
    server.expire(later);
    server.handle_datagram(peer(30_000), &hello, later);
    assert_eq!(server.handshakes(), 1);
}

#[test]
fn an_established_session_leaves_dimpl_after_its_first_data_and_carries_on_unchanged() {
    let now = Instant::now();
    let from = peer(4700);
    let (mut server, mut client) = connected(from, now);
    events(&mut server);
    assert!(
        !server.is_handed_over(from),
        "the client may still need the server's last flight again"
    );
    // The Register datagram as it was sent, to replay after the hand-over.
    client.send(b"register", now);
    let register = client.poll_transmit().unwrap();
    server.handle_datagram(from, &register, now);
    assert_eq!(server.poll_received().unwrap().payload, b"register");
    assert!(
        server.is_handed_over(from),
        "keys proven both ways, data received"
    );

    // Both ways, many records: dimpl's client opens what this crate's layer seals and the
    // other way round.
    for n in 0..300u16 {
        let text = format!("message {n}");
        client.send(text.as_bytes(), now);
        assert!(server.send(from, text.as_bytes(), now));
        pump(&mut server, &mut client, from, now);
        assert_eq!(server.poll_received().unwrap().payload, text.as_bytes());
        assert_eq!(client.poll_received().unwrap(), text.as_bytes());
    }
    assert!(client.poll_failure().is_none());

    // A replayed datagram, one bent in flight, garbage: dropped, and the session goes on.
    server.handle_datagram(from, &register, now);
    let mut bent = register.clone();
    let last = bent.len() - 1;
    bent[last] ^= 1;
    server.handle_datagram(from, &bent, now);
    server.handle_datagram(from, &[23, 0xfe, 0xfd, 0, 1, 0, 0], now);
    assert!(server.poll_received().is_none());
    assert!(events(&mut server).is_empty());
    assert!(server.send(from, b"still here", now));
    pump(&mut server, &mut client, from, now);
    assert_eq!(client.poll_received().unwrap(), b"still here");

    // Too large for a record: refused, nothing sent, the session stays.
    assert!(!server.send(from, &vec![0; 20_000], now));
    assert!(server.poll_transmit().is_none());

    // The server closes: close_notify under the session's keys reaches the client.
    server.close(from);
    let (to, alert) = server.poll_transmit().unwrap();
    assert_eq!(to, from);
    client.handle_datagram(&alert, now);
    assert_eq!(client.poll_failure(), Some(CloseReason::PeerClosed));
    assert_eq!(server.sessions(), 0);
}

#[test]
fn a_handed_over_session_ends_on_the_clients_close_notify_and_is_replaced_by_a_new_handshake() {
    let now = Instant::now();
    let from = peer(4701);
    let (mut server, mut client) = connected(from, now);
    client.send(b"register", now);
    pump(&mut server, &mut client, from, now);
    assert_eq!(server.poll_received().unwrap().payload, b"register");
    assert!(server.is_handed_over(from));
    events(&mut server);

    // The device handshakes again from the same address (it rebooted): the new session
    // replaces the handed-over one once it completes, and is handed over in its turn.
    let mut rebooted = DtlsClient::new(b"urn:dev:pump-1", KEY, now).unwrap();
    pump(&mut server, &mut rebooted, from, now);
    assert!(rebooted.is_connected());
    assert!(events(&mut server).iter().any(|e| matches!(
        e,
        ServerEvent::Closed {
            reason: CloseReason::Replaced,
            ..
        }
    )));
    rebooted.send(b"register again", now);
    pump(&mut server, &mut rebooted, from, now);
    assert_eq!(server.poll_received().unwrap().payload, b"register again");
    assert!(server.is_handed_over(from));
    assert_eq!(server.handshakes(), 0);

    // A close_notify from the device ends it.
    rebooted.close(now);
    pump(&mut server, &mut rebooted, from, now);
    assert_eq!(server.sessions(), 0);
    assert!(events(&mut server).iter().any(|e| matches!(
        e,
        ServerEvent::Closed {
            reason: CloseReason::PeerClosed,
            ..
        }
    )));
}

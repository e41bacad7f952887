//! The DTLS server on hostile datagrams: a real client's ClientHello opens a session, then the
//! input, cut into datagrams at 0xff bytes, arrives from that address, from another, and from the
//! address of an established session (one real client completed at the start of the run, handed
//! over to the server's own record layer by its first data). It must never panic, its counts
//! must stay within their bounds, and nothing unauthenticated may end the established session.
//! One server for the whole run (as in the gateway: building a DTLS configuration validates the
//! crypto provider, which is slow), with fresh addresses for each input and everything else
//! expired after it.

#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use ward_lwm2m::dtls::{DtlsClient, DtlsServer, PskTable, ServerLimits};

struct Harness {
    server: DtlsServer,
    hello: Vec<Vec<u8>>,
    round: u16,
    clock: Instant,
}

fn harness() -> &'static Mutex<Harness> {
    static HARNESS: OnceLock<Mutex<Harness>> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let table = Arc::new(PskTable::default());
        table.insert(b"urn:dev:fuzz", b"0123456789abcdef").unwrap();
        let limits = ServerLimits {
            max_handshakes: 4,
            // The established session lives for the whole run.
            idle_timeout: Duration::from_secs(100 * 365 * 24 * 3600),
            ..ServerLimits::default()
        };
        let now = Instant::now();
        let mut client = DtlsClient::new(b"urn:dev:fuzz", b"0123456789abcdef", now).unwrap();
        let hello = std::iter::from_fn(|| client.poll_transmit()).collect();
        let mut server = DtlsServer::new(table, limits).unwrap();
        established(&mut server, ESTABLISHED, now);
        Mutex::new(Harness {
            server,
            hello,
            round: 0,
            clock: now,
        })
    })
}

/// The address of the run's established session.
const ESTABLISHED: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3)), 5684);

/// A session from `peer` that carried data (so it runs on the server's own record layer).
fn established(server: &mut DtlsServer, peer: SocketAddr, now: Instant) {
    let mut client = DtlsClient::new(b"urn:dev:fuzz", b"0123456789abcdef", now).unwrap();
    client.send(b"register", now);
    for _ in 0..20 {
        let mut moved = false;
        while let Some(datagram) = client.poll_transmit() {
            server.handle_datagram(peer, &datagram, now);
            moved = true;
        }
        while let Some((to, datagram)) = server.poll_transmit() {
            if to == peer {
                client.handle_datagram(&datagram, now);
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    assert!(server.is_handed_over(peer));
    while server.poll_received().is_some() {}
    while server.poll_event().is_some() {}
}

fuzz_target!(|data: &[u8]| {
    let mut guard = harness().lock().unwrap_or_else(|p| p.into_inner());
    let h = &mut *guard;
    h.round = h.round.wrapping_add(1);
    let a = SocketAddr::from(([127, 0, 0, 1], h.round));
    let b = SocketAddr::from(([127, 0, 0, 2], h.round));
    let c = ESTABLISHED;
    let mut now = h.clock;
    for hello in &h.hello {
        h.server.handle_datagram(a, hello, now);
    }
    for (i, datagram) in data.split(|&byte| byte == 0xff).enumerate() {
        let peer = [a, c, b][i % 3];
        now += Duration::from_millis(700);
        h.server.handle_datagram(peer, datagram, now);
        h.server.handle_timeout(now);
        while h.server.poll_transmit().is_some() {}
        while h.server.poll_received().is_some() {}
        while h.server.poll_event().is_some() {}
    }
    assert!(h.server.handshakes() <= 4);
    now += Duration::from_secs(3600);
    h.server.expire(now);
    h.server.handle_timeout(now);
    while h.server.poll_transmit().is_some() {}
    while h.server.poll_event().is_some() {}
    assert_eq!(h.server.sessions(), 1, "everything half-open expired");
    assert!(
        h.server.is_handed_over(c),
        "the established session is still there"
    );
    assert_eq!(h.server.handshakes(), 0);
    h.clock = now;
});

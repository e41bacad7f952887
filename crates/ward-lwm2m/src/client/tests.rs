//! Sans-IO tests of the client core with a controlled clock.

use super::*;
use crate::registration::RegistrationRequest;
use crate::server::Request;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn server() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5683))
}

fn config() -> ClientConfig {
    ClientConfig {
        lifetime: 60,
        params: TransmissionParams {
            ack_random_factor: 1.0,
            ..TransmissionParams::default()
        },
        ..ClientConfig::new("pump-1")
    }
}

fn store() -> ObjectStore {
    ObjectStore::standard(DeviceInfo {
        manufacturer: "Ward".into(),
        model: "Pump".into(),
        serial: "S1".into(),
        firmware_version: "1.0.0".into(),
    })
}

fn created_for(datagram: &[u8]) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let req = coap::parse(datagram)?;
    Ok(coap::serialize(&registration::created(&req, "loc1", 0))?)
}

fn registered() -> Result<(ClientCore, Instant), Box<dyn std::error::Error>> {
    let t0 = Instant::now();
    let mut c = ClientCore::new(config(), store());
    c.register(t0);
    let reg = c.poll_transmit().ok_or("no register")?;
    c.handle_datagram(server(), &created_for(&reg)?, t0);
    assert_eq!(
        c.poll_event(),
        Some(ClientEvent::Registered {
            location: "loc1".into()
        })
    );
    Ok((c, t0))
}

/// Sends a server request through the core and returns the parsed response.
fn exchange(
    c: &mut ClientCore,
    request: &Request,
    mid: u16,
    now: Instant,
) -> Result<Packet, Box<dyn std::error::Error>> {
    let bytes = coap::serialize(&request.to_packet(mid, vec![mid as u8, 0xAB]))?;
    c.handle_datagram(server(), &bytes, now);
    Ok(coap::parse(&c.poll_transmit().ok_or("no response")?)?)
}

fn code(p: &Packet) -> Option<ResponseType> {
    crate::server::response_code(p)
}

#[test]
fn register_is_retransmitted_when_datagrams_are_lost() -> TestResult {
    let t0 = Instant::now();
    let mut c = ClientCore::new(config(), store());
    c.register(t0);
    let first = c.poll_transmit().ok_or("no register")?;
    let parsed = RegistrationRequest::from_packet(&coap::parse(&first)?)?;
    let RegistrationRequest::Register(reg) = parsed else {
        return Err("not a register".into());
    };
    assert_eq!((reg.endpoint.as_str(), reg.lifetime), ("pump-1", 60));
    assert_eq!(
        link::format(&reg.links),
        "</3>;ver=1.1,</3/0>,</4/0>,</5/0>,</8/0>"
    );
    // The first two copies are "lost": the timer fires at 2 s, then 4 s later.
    assert_eq!(c.next_timeout(), Some(t0 + Duration::from_secs(2)));
    c.handle_timeout(t0 + Duration::from_secs(2));
    assert_eq!(c.poll_transmit().as_ref(), Some(&first));
    assert_eq!(c.next_timeout(), Some(t0 + Duration::from_secs(6)));
    c.handle_timeout(t0 + Duration::from_secs(6));
    let third = c.poll_transmit().ok_or("no second resend")?;
    assert_eq!(third, first, "same message id and token");
    c.handle_datagram(server(), &created_for(&third)?, t0 + Duration::from_secs(7));
    assert_eq!(
        c.poll_event(),
        Some(ClientEvent::Registered {
            location: "loc1".into()
        })
    );
    assert_eq!(
        c.state(),
        &RegistrationState::Registered {
            location: "loc1".into()
        }
    );
    Ok(())
}

#[test]
fn register_gives_up_and_retries_later() {
    let t0 = Instant::now();
    let mut c = ClientCore::new(config(), store());
    c.register(t0);
    let mut sent = 0;
    while c.state() == &RegistrationState::Registering {
        while c.poll_transmit().is_some() {
            sent += 1;
        }
        let Some(at) = c.next_timeout() else { break };
        c.handle_timeout(at);
    }
    assert_eq!(sent, 5);
    assert!(matches!(
        c.poll_event(),
        Some(ClientEvent::RegistrationFailed { .. })
    ));
    assert_eq!(
        c.next_timeout(),
        Some(t0 + Duration::from_secs(2 + 4 + 8 + 16 + 32 + 30))
    );
}

#[test]
fn update_before_lifetime_expiry_and_reregister_on_404() -> TestResult {
    let (mut c, t0) = registered()?;
    let due = c.next_timeout().ok_or("no update scheduled")?;
    assert!(
        due > t0 && due < t0 + Duration::from_secs(60),
        "update due before the 60 s lifetime"
    );
    c.handle_timeout(due);
    let update = coap::parse(&c.poll_transmit().ok_or("no update")?)?;
    let Ok(RegistrationRequest::Update(u)) = RegistrationRequest::from_packet(&update) else {
        return Err("not an update".into());
    };
    assert_eq!(u.location, "loc1");
    let not_found = coap::serialize(&coap::response_to(&update, ResponseType::NotFound, 0))?;
    c.handle_datagram(server(), &not_found, due);
    assert_eq!(c.state(), &RegistrationState::Registering);
    assert!(
        RegistrationRequest::from_packet(&coap::parse(&c.poll_transmit().ok_or("no re-register")?)?)
            .is_ok_and(|r| matches!(r, RegistrationRequest::Register(_)))
    );
    Ok(())
}

#[test]
fn duplicate_message_id_is_answered_from_cache() -> TestResult {
    let (mut c, t0) = registered()?;
    let bytes = coap::serialize(&Request::execute(Path::resource(3, 0, 4), None).to_packet(900, vec![1]))?;
    c.handle_datagram(server(), &bytes, t0);
    let first = c.poll_transmit().ok_or("no response")?;
    assert_eq!(c.poll_event(), Some(ClientEvent::Reboot));
    c.handle_datagram(server(), &bytes, t0 + Duration::from_secs(1));
    assert_eq!(c.poll_transmit(), Some(first), "same bytes again");
    assert_eq!(c.poll_event(), None, "not executed twice");
    Ok(())
}

#[test]
fn error_codes() -> TestResult {
    let (mut c, t0) = registered()?;
    let cases = [
        (Request::read(Path::instance(3, 1), None), ResponseType::NotFound),
        (Request::read(Path::object(42), None), ResponseType::NotFound),
        (
            Request::read(Path::resource(3, 0, 4), None),
            ResponseType::MethodNotAllowed,
        ),
        (
            Request::read(Path::instance(3, 0), Some(ContentFormat::Text)),
            ResponseType::NotAcceptable,
        ),
        (
            Request::execute(Path::resource(3, 0, 9), None),
            ResponseType::MethodNotAllowed,
        ),
        (
            Request::write(Path::resource(3, 0, 0), ContentFormat::Text, b"x".to_vec(), true),
            ResponseType::MethodNotAllowed,
        ),
        (
            Request::write(
                Path::resource(3, 0, 13),
                ContentFormat::Text,
                b"soon".to_vec(),
                true,
            ),
            ResponseType::BadRequest,
        ),
        (
            Request::write(
                Path::resource(3, 0, 13),
                ContentFormat::LinkFormat,
                b"1".to_vec(),
                true,
            ),
            ResponseType::UnsupportedContentFormat,
        ),
        (
            Request::execute(Path::resource(5, 0, 2), None),
            ResponseType::MethodNotAllowed,
        ),
        (
            Request::write_attributes(Path::resource(3, 0, 99), &Attributes::default()),
            ResponseType::NotFound,
        ),
    ];
    for (i, (request, expected)) in cases.into_iter().enumerate() {
        let response = exchange(&mut c, &request, 100 + i as u16, t0)?;
        assert_eq!(code(&response), Some(expected), "case {i}: {request:?}");
    }
    let mut unknown_cf = Request::write(Path::resource(3, 0, 13), ContentFormat::Text, b"1".to_vec(), true)
        .to_packet(200, vec![]);
    unknown_cf.clear_option(CoapOption::ContentFormat);
    coap::add_uint_option(&mut unknown_cf, CoapOption::ContentFormat, 1234);
    c.handle_datagram(server(), &coap::serialize(&unknown_cf)?, t0);
    let response = coap::parse(&c.poll_transmit().ok_or("no response")?)?;
    assert_eq!(code(&response), Some(ResponseType::UnsupportedContentFormat));
    Ok(())
}

#[test]
fn observe_honours_pmin_and_pmax() -> TestResult {
    let (mut c, t0) = registered()?;
    let battery = Path::resource(3, 0, 9);
    let attrs = Attributes {
        pmin: Some(2),
        pmax: Some(10),
        ..Attributes::default()
    };
    assert_eq!(
        code(&exchange(
            &mut c,
            &Request::write_attributes(battery, &attrs),
            1,
            t0
        )?),
        Some(ResponseType::Changed)
    );
    let first = exchange(
        &mut c,
        &Request::observe(battery, Some(ContentFormat::Text)),
        2,
        t0,
    )?;
    assert_eq!(
        (coap::observe(&first), first.payload.as_slice()),
        (Some(0), &b"100"[..])
    );
    assert_eq!(c.observation_count(), 1);
    c.set_value(battery, Value::Integer(90))?;
    assert_eq!(
        c.next_timeout(),
        Some(t0 + Duration::from_secs(2)),
        "held back until pmin"
    );
    c.handle_timeout(t0 + Duration::from_secs(2));
    let n1 = coap::parse(&c.poll_transmit().ok_or("no notification")?)?;
    assert_eq!(
        (coap::observe(&n1), n1.payload.as_slice(), n1.get_token()),
        (Some(1), &b"90"[..], &[2u8, 0xAB][..])
    );
    assert_eq!(
        c.next_timeout(),
        Some(t0 + Duration::from_secs(12)),
        "pmax after the last notification"
    );
    c.handle_timeout(t0 + Duration::from_secs(12));
    let n2 = coap::parse(&c.poll_transmit().ok_or("no pmax notification")?)?;
    assert_eq!(coap::observe(&n2), Some(2));
    // A Reset to a notification cancels the observation.
    c.handle_datagram(
        server(),
        &coap::serialize(&coap::empty(MessageType::Reset, n2.header.message_id))?,
        t0,
    );
    assert_eq!(c.observation_count(), 0);
    Ok(())
}

#[test]
fn firmware_update_flow() -> TestResult {
    let (mut c, t0) = registered()?;
    let uri = Path::resource(5, 0, 1);
    let write = Request::write(
        uri,
        ContentFormat::Text,
        b"coap://127.0.0.1/fw.bin".to_vec(),
        true,
    );
    assert_eq!(
        code(&exchange(&mut c, &write, 1, t0)?),
        Some(ResponseType::Changed)
    );
    assert_eq!(c.poll_event(), Some(ClientEvent::Written { path: uri }));
    assert_eq!(
        c.poll_event(),
        Some(ClientEvent::FirmwareDownload {
            uri: "coap://127.0.0.1/fw.bin".into()
        })
    );
    assert_eq!(c.store().get(&Path::resource(5, 0, 3)), Some(&Value::Integer(1)));
    assert_eq!(
        code(&exchange(&mut c, &write, 2, t0)?),
        Some(ResponseType::BadRequest),
        "already downloading"
    );
    c.firmware_progress(FirmwareProgress::Downloaded)?;
    assert_eq!(
        code(&exchange(
            &mut c,
            &Request::execute(Path::resource(5, 0, 2), None),
            3,
            t0
        )?),
        Some(ResponseType::Changed)
    );
    assert_eq!(
        c.poll_event(),
        Some(ClientEvent::FirmwareUpdate {
            uri: "coap://127.0.0.1/fw.bin".into()
        })
    );
    c.firmware_progress(FirmwareProgress::Updated)?;
    assert_eq!(c.store().get(&Path::resource(5, 0, 5)), Some(&Value::Integer(1)));
    Ok(())
}

#[test]
fn deregister_finishes() -> TestResult {
    let (mut c, t0) = registered()?;
    c.deregister(t0);
    let req = coap::parse(&c.poll_transmit().ok_or("no delete")?)?;
    assert_eq!(req.header.code, MessageClass::Request(RequestType::Delete));
    c.handle_datagram(
        server(),
        &coap::serialize(&coap::response_to(&req, ResponseType::Deleted, 0))?,
        t0,
    );
    assert_eq!(c.state(), &RegistrationState::Deregistered);
    assert_eq!(c.poll_event(), Some(ClientEvent::Deregistered));
    Ok(())
}

#[test]
fn garbage_is_ignored() -> TestResult {
    let (mut c, t0) = registered()?;
    for junk in [&[][..], &[0xFF; 3][..], &[0x40, 0x01][..], &[0x4F, 1, 2, 3][..]] {
        c.handle_datagram(server(), junk, t0);
    }
    assert_eq!(c.poll_transmit(), None);
    Ok(())
}

use super::*;

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn keys() -> Keys {
    Keys::derive(b"0123456789abcdef", &[7; 32], &[1; 32], &[2; 32])
}

fn established() -> Established {
    Established {
        keys: keys(),
        next_write: 3,
        window: Window::default(),
    }
}

/// A record from the client, as a peer with `keys` seals it.
fn from_client(keys: &Keys, content_type: u8, epoch: u16, seq: u64, plaintext: &[u8]) -> Vec<u8> {
    keys.client.seal(content_type, epoch, seq, plaintext)
}

fn received(layer: &mut Established, datagram: &[u8]) -> Vec<Inbound> {
    let mut out = Vec::new();
    layer.receive(datagram, |inbound| out.push(inbound));
    out
}

#[test]
fn the_prf_matches_the_published_tls12_sha256_vector() {
    // The TLS 1.2 PRF test vector for SHA-256 circulated on the IETF TLS list (also checked here
    // against Python's hmac module).
    let mut out = [0u8; 100];
    prf(
        &hex("9bbe436ba940f017b17652849a71db35"),
        b"test label",
        &[&hex("a0ba9f936cda311827a6f796ffd5198c")],
        &mut out,
    );
    assert_eq!(
        out.to_vec(),
        hex(concat!(
            "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a6b301791e90d35c9",
            "c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab4fbc91666e9def9b97fce34f796789ba",
            "a48082d122ee42c5a72e5a5110fff70187347b66"
        ))
    );
    // A seed given in parts is the same seed.
    let mut split = [0u8; 100];
    prf(
        &hex("9bbe436ba940f017b17652849a71db35"),
        b"test label",
        &[&hex("a0ba9f936cda3118"), &hex("27a6f796ffd5198c")],
        &mut split,
    );
    assert_eq!(out, split);
}

#[test]
fn records_are_framed_until_the_first_that_does_not_parse() {
    let a = keys().server.seal(APPLICATION_DATA, 1, 5, b"one");
    let b = keys().server.seal(ALERT, 1, 6, &[1, 0]);
    let mut datagram = [a.clone(), b.clone()].concat();
    let parsed: Vec<_> = records(&datagram).collect();
    assert_eq!(parsed.len(), 2);
    assert_eq!(
        (parsed[0].content_type, parsed[0].epoch, parsed[0].seq),
        (23, 1, 5)
    );
    assert_eq!((parsed[1].content_type, parsed[1].seq), (21, 6));
    assert_eq!(parsed[0].fragment.len(), 8 + 3 + 8);

    // A length running past the end, a header cut short, nothing at all.
    datagram.extend_from_slice(&[23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0xff, 0xff, 1, 2]);
    assert_eq!(records(&datagram).count(), 2);
    assert_eq!(records(&a[..HEADER - 1]).count(), 0);
    assert_eq!(records(&a[..a.len() - 1]).count(), 0);
    assert_eq!(records(&[]).count(), 0);
    // A zero-length record parses (and opens to nothing).
    let empty = [23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0];
    let parsed: Vec<_> = records(&empty).collect();
    assert_eq!(parsed.len(), 1);
    assert!(keys().client.open(&parsed[0]).is_none());
}

#[test]
fn a_sealed_record_opens_only_unchanged_and_with_its_own_keys() {
    let keys = keys();
    let record = keys.server.seal(APPLICATION_DATA, 1, 42, b"</rd/1>;rt=core");
    let parsed = records(&record).next().unwrap();
    assert_eq!(keys.server.open(&parsed).unwrap(), b"</rd/1>;rt=core");
    // The other direction's key, another session's keys.
    assert!(keys.client.open(&parsed).is_none());
    let other = Keys::derive(b"0123456789abcdeX", &[7; 32], &[1; 32], &[2; 32]);
    assert!(other.server.open(&parsed).is_none());
    // Any byte changed: header (authenticated as additional data), nonce, body or tag.
    for i in 0..record.len() {
        if (11..13).contains(&i) {
            continue; // the length frames the record; changing it unframes it
        }
        let mut bent = record.clone();
        bent[i] ^= 0x01;
        let parsed = records(&bent).next().unwrap();
        assert!(keys.server.open(&parsed).is_none(), "byte {i} changed");
    }
}

#[test]
fn an_established_layer_delivers_each_record_once_and_drops_what_does_not_authenticate() {
    let mut layer = established();
    let k = keys();
    let first = from_client(&k, APPLICATION_DATA, 1, 7, b"register");
    assert_eq!(
        received(&mut layer, &first),
        [Inbound::Data(b"register".to_vec())]
    );
    assert!(received(&mut layer, &first).is_empty(), "a replay is dropped");

    // Out of order within the window: delivered; once.
    let late = from_client(&k, APPLICATION_DATA, 1, 5, b"late");
    let two = [from_client(&k, APPLICATION_DATA, 1, 9, b"nine"), late.clone()].concat();
    assert_eq!(
        received(&mut layer, &two),
        [Inbound::Data(b"nine".to_vec()), Inbound::Data(b"late".to_vec())]
    );
    assert!(received(&mut layer, &late).is_empty());

    // Far ahead moves the window; what falls behind it is dropped.
    let ahead = from_client(&k, APPLICATION_DATA, 1, 500, b"ahead");
    assert_eq!(received(&mut layer, &ahead).len(), 1);
    let behind = from_client(&k, APPLICATION_DATA, 1, 400, b"behind");
    assert!(received(&mut layer, &behind).is_empty());

    // Another epoch, the server's own direction, a forgery, garbage, an empty record: nothing,
    // and the session goes on.
    for bad in [
        from_client(&k, APPLICATION_DATA, 0, 501, b"epoch 0"),
        from_client(&k, APPLICATION_DATA, 2, 502, b"epoch 2"),
        k.server.seal(APPLICATION_DATA, 1, 503, b"reflected"),
        Keys::derive(b"another key here", &[7; 32], &[1; 32], &[2; 32])
            .client
            .seal(APPLICATION_DATA, 1, 504, b"forged"),
        vec![23, 0xfe, 0xfd, 0, 1],
        vec![0xff; 64],
        from_client(&k, APPLICATION_DATA, 1, 505, b""),
    ] {
        assert!(received(&mut layer, &bad).is_empty());
    }
    let next = from_client(&k, APPLICATION_DATA, 1, 506, b"still here");
    assert_eq!(received(&mut layer, &next).len(), 1);

    // A late copy of the client's Finished, a warning alert: ignored. close_notify, fatal.
    assert!(received(&mut layer, &from_client(&k, HANDSHAKE, 1, 507, &[20, 0, 0, 12])).is_empty());
    assert!(received(&mut layer, &from_client(&k, ALERT, 1, 508, &[1, 90])).is_empty());
    assert_eq!(
        received(&mut layer, &from_client(&k, ALERT, 1, 509, &[1, 0])),
        [Inbound::Closed]
    );
    assert_eq!(
        received(&mut layer, &from_client(&k, ALERT, 1, 510, &[2, 20])),
        [Inbound::Fatal(20)]
    );
    assert!(received(&mut layer, &from_client(&k, ALERT, 1, 511, &[2])).is_empty());
}

#[test]
fn an_established_layer_seals_in_sequence_and_refuses_what_it_cannot_send() {
    let mut layer = established();
    let k = keys();
    for seq in 3..6 {
        let record = layer.seal_data(b"read /3/0").unwrap();
        let parsed = records(&record).next().unwrap();
        assert_eq!((parsed.epoch, parsed.seq), (1, seq));
        assert_eq!(k.server.open(&parsed).unwrap(), b"read /3/0");
    }
    let close = layer.seal_close().unwrap();
    let parsed = records(&close).next().unwrap();
    assert_eq!(parsed.content_type, ALERT);
    assert_eq!(k.server.open(&parsed).unwrap(), [1, 0]);

    assert!(layer.seal_data(&vec![0; MAX_PLAINTEXT + 1]).is_none());
    assert!(layer.seal_data(&vec![0; MAX_PLAINTEXT]).is_some());
    layer.next_write = MAX_SEQ;
    assert!(layer.seal_data(b"last").is_some());
    assert!(
        layer.seal_data(b"one too many").is_none(),
        "sequence numbers never wrap"
    );
}

#[test]
fn the_replay_window_remembers_the_last_64() {
    let mut window = Window::default();
    assert!(window.is_fresh(0));
    window.mark(0);
    assert!(!window.is_fresh(0));
    window.mark(70);
    assert!(!window.is_fresh(0), "70 behind: too old");
    assert!(!window.is_fresh(70));
    assert!(window.is_fresh(69));
    assert!(!window.is_fresh(6), "64 behind: too old");
    assert!(window.is_fresh(7), "63 behind: still in the window");
    window.mark(69);
    assert!(!window.is_fresh(69));
    window.mark(6);
    assert!(!window.is_fresh(69), "marking a too-old number changes nothing");
}

/// A handshake message with its DTLS header, as one fragment or several.
fn message(msg_type: u8, seq: u16, body: &[u8], pieces: &[(usize, usize)]) -> Vec<u8> {
    let mut out = Vec::new();
    let len = (body.len() as u32).to_be_bytes();
    for &(start, end) in pieces {
        out.push(msg_type);
        out.extend_from_slice(&len[1..]);
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&(start as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&((end - start) as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&body[start..end]);
    }
    out
}

#[test]
fn the_watcher_reassembles_fragments_in_any_order_and_gives_up_on_nonsense() {
    let body: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    let mut messages = Vec::new();
    let mut gave_up = false;
    // Overlapping and repeated fragments, last first.
    let fragments = message(
        CLIENT_HELLO,
        1,
        &body,
        &[(200, 300), (0, 120), (100, 210), (0, 120)],
    );
    Watcher::collect(&mut messages, &mut gave_up, &fragments);
    assert!(!gave_up);
    assert_eq!(messages.len(), 1);
    assert!(messages[0].is_complete());
    assert_eq!(messages[0].body, body);

    // A gap leaves it incomplete.
    let mut messages = Vec::new();
    Watcher::collect(
        &mut messages,
        &mut gave_up,
        &message(SERVER_HELLO, 1, &body, &[(0, 100), (150, 300)]),
    );
    assert!(!gave_up);
    assert!(!messages[0].is_complete());

    // A fragment past the message's end, a message over the bound, the same message with
    // another length, too many half-reassembled messages: give up.
    for nonsense in [
        {
            let mut m = message(CLIENT_HELLO, 1, &body, &[(0, 10)]);
            m[7] = 1;
            m[8] = 40; // offset 296 + 10 > 300
            m
        },
        message(CLIENT_HELLO, 1, &vec![0; MAX_MESSAGE + 1], &[(0, 10)]),
        [
            message(CLIENT_HELLO, 1, &body, &[(0, 10)]),
            message(CLIENT_HELLO, 1, &body[..200], &[(0, 10)]),
        ]
        .concat(),
        (0..=MAX_PARTIAL as u16)
            .flat_map(|seq| message(CLIENT_HELLO, seq, &body, &[(0, 10)]))
            .collect(),
    ] {
        let mut messages = Vec::new();
        let mut gave_up = false;
        Watcher::collect(&mut messages, &mut gave_up, &nonsense);
        assert!(gave_up);
    }

    // A fragment cut short stops the record without giving up (dimpl refuses it too).
    let mut messages = Vec::new();
    let mut gave_up = false;
    let whole = message(CLIENT_HELLO, 1, &body, &[(0, 300)]);
    Watcher::collect(&mut messages, &mut gave_up, &whole[..100]);
    assert!(!gave_up);
    assert!(messages.is_empty());
}

#[test]
fn the_watcher_never_hands_over_keys_it_could_not_prove() {
    // A ClientKeyExchange without the hellos before it: the session stays on dimpl.
    let mut watcher = Watcher::default();
    let cke = message(CLIENT_KEY_EXCHANGE, 2, b"\x00\x03abc", &[(0, 5)]);
    let mut record = vec![HANDSHAKE, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 4];
    record.extend_from_slice(&(cke.len() as u16).to_be_bytes());
    record.extend_from_slice(&cke);
    watcher.inbound(&record, |_| Some(b"0123456789abcdef".to_vec()));
    assert!(watcher.gave_up);
    assert!(watcher.established().is_none());

    // Keys that open nothing are never proven.
    let mut watcher = Watcher {
        keys: Some(keys()),
        ..Watcher::default()
    };
    let other = Keys::derive(b"another key here", &[7; 32], &[1; 32], &[2; 32]);
    watcher.inbound(&other.client.seal(APPLICATION_DATA, 1, 1, b"x"), |_| None);
    watcher.outbound(&other.server.seal(HANDSHAKE, 1, 0, b"finished"));
    assert!(watcher.established().is_none());
    // With the right ones, both ways and application data from the client, it is ready; the
    // next sequence number follows the server's last record.
    watcher.inbound(&keys().client.seal(HANDSHAKE, 1, 0, b"finished"), |_| None);
    watcher.outbound(&keys().server.seal(HANDSHAKE, 1, 0, b"finished"));
    assert!(watcher.established().is_none(), "no application data yet");
    watcher.inbound(&keys().client.seal(APPLICATION_DATA, 1, 1, b"register"), |_| None);
    let layer = watcher.established().unwrap();
    assert_eq!(layer.next_write, 1);
    assert!(
        !layer.window.is_fresh(1),
        "what the client sent before counts as received"
    );
}

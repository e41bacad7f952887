//! The server's record layer for an established session (DTLS 1.2, TLS_PSK_WITH_AES_128_CCM_8),
//! which takes over from `dimpl` once the handshake is over.
//!
//! Why it exists: `dimpl` keeps ~5.5 KiB per session after the handshake (its engine is an enum
//! of client and server for DTLS 1.2 and 1.3, as large as the largest, plus transcript, buffer
//! pool and event queue it never frees) and has no call to release them. A registration must
//! cost at most 4 KiB in all. An established session needs only its traffic keys, its next
//! sequence number and a replay window: about 100 bytes here.
//!
//! How the keys are known: `dimpl` does not export them, so the [`Watcher`] derives them itself
//! from what crosses the wire in the clear during the handshake (the hello randoms and the
//! handshake messages the extended master secret hashes, RFC 7627) and the pre-shared key of the
//! identity the ClientKeyExchange names. They are used only once they are proven: the server's
//! Finished and the client's first application data (both encrypted) must open with them (the
//! client sending data also means it holds the server's Finished and will not ask for the last
//! flight again). A session whose keys cannot be proven stays on `dimpl`, which is correct,
//! only larger.
//!
//! Records that fail authentication, replays and anything not of epoch 1 are dropped silently
//! (RFC 6347 section 4.1.2.7: an off-path sender must not be able to end a session).

use aes::Aes128;
use ccm::aead::{AeadInOut, KeyInit};
use ccm::consts::{U8, U12};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type Aes128Ccm8 = ccm::Ccm<Aes128, U8, U12>;

/// Record header: type, version, epoch, sequence number, length.
pub(super) const HEADER: usize = 13;
/// The explicit part of the CCM nonce carried in each record.
const EXPLICIT_NONCE: usize = 8;
/// CCM_8's tag.
const TAG: usize = 8;
/// Largest plaintext a record may carry (RFC 6347 section 4.1).
pub(super) const MAX_PLAINTEXT: usize = 1 << 14;
/// Largest sequence number of an epoch (48 bits).
const MAX_SEQ: u64 = (1 << 48) - 1;

pub(super) const ALERT: u8 = 21;
pub(super) const HANDSHAKE: u8 = 22;
pub(super) const APPLICATION_DATA: u8 = 23;

const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;
const SERVER_KEY_EXCHANGE: u8 = 12;
const SERVER_HELLO_DONE: u8 = 14;
const CLIENT_KEY_EXCHANGE: u8 = 16;

/// DTLS 1.2 on the wire.
const VERSION: [u8; 2] = [0xfe, 0xfd];

/// One record of a datagram, not yet decrypted.
#[derive(Debug, Clone, Copy)]
pub(super) struct Record<'a> {
    pub content_type: u8,
    pub epoch: u16,
    pub seq: u64,
    version: [u8; 2],
    pub fragment: &'a [u8],
}

/// The records of a datagram, up to the first that does not parse (what follows it cannot be
/// framed either).
pub(super) fn records(datagram: &[u8]) -> impl Iterator<Item = Record<'_>> {
    let mut rest = datagram;
    std::iter::from_fn(move || {
        if rest.len() < HEADER {
            return None;
        }
        let length = usize::from(u16::from_be_bytes([rest[11], rest[12]]));
        let fragment = rest.get(HEADER..HEADER + length)?;
        let mut seq = [0u8; 8];
        seq[2..].copy_from_slice(&rest[5..11]);
        let record = Record {
            content_type: rest[0],
            version: [rest[1], rest[2]],
            epoch: u16::from_be_bytes([rest[3], rest[4]]),
            seq: u64::from_be_bytes(seq),
            fragment,
        };
        rest = &rest[HEADER + length..];
        Some(record)
    })
}

/// The TLS 1.2 pseudo-random function with SHA-256 (RFC 5246 section 5), filling `out`.
pub(super) fn prf(secret: &[u8], label: &[u8], seed: &[&[u8]], out: &mut [u8]) {
    let mac = |parts: &[&[u8]]| {
        // An HMAC takes a key of any length.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes()
    };
    let mut labelled: Vec<&[u8]> = Vec::with_capacity(seed.len() + 1);
    labelled.push(label);
    labelled.extend_from_slice(seed);
    let mut a = mac(&labelled);
    for chunk in out.chunks_mut(32) {
        let mut parts: Vec<&[u8]> = Vec::with_capacity(labelled.len() + 1);
        parts.push(&a);
        parts.extend_from_slice(&labelled);
        let block = mac(&parts);
        chunk.copy_from_slice(&block[..chunk.len()]);
        a = mac(&[&a]);
    }
}

/// One direction's key and implicit nonce part.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Direction {
    key: [u8; 16],
    iv: [u8; 4],
}

impl Direction {
    /// A direction from its parts of the key block (16 bytes of key, 4 of IV).
    fn from_block(key: &[u8], iv: &[u8]) -> Self {
        let mut direction = Self {
            key: [0; 16],
            iv: [0; 4],
        };
        direction.key.copy_from_slice(key);
        direction.iv.copy_from_slice(iv);
        direction
    }

    fn cipher(&self) -> Aes128Ccm8 {
        Aes128Ccm8::new(&self.key.into())
    }

    fn nonce(&self, explicit: &[u8; EXPLICIT_NONCE]) -> [u8; 12] {
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&self.iv);
        nonce[4..].copy_from_slice(explicit);
        nonce
    }

    /// The record's plaintext, if it authenticates.
    fn open(&self, record: &Record<'_>) -> Option<Vec<u8>> {
        let sealed = record.fragment;
        if sealed.len() < EXPLICIT_NONCE + TAG || sealed.len() > MAX_PLAINTEXT + EXPLICIT_NONCE + TAG {
            return None;
        }
        let (explicit, rest) = sealed.split_at(EXPLICIT_NONCE);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG);
        let explicit: [u8; EXPLICIT_NONCE] = explicit.try_into().ok()?;
        let tag: [u8; TAG] = tag.try_into().ok()?;
        let aad = aad(
            record.content_type,
            record.epoch,
            record.seq,
            record.version,
            ciphertext.len(),
        );
        let mut plaintext = ciphertext.to_vec();
        self.cipher()
            .decrypt_inout_detached(
                &self.nonce(&explicit).into(),
                &aad,
                plaintext.as_mut_slice().into(),
                &tag.into(),
            )
            .ok()?;
        Some(plaintext)
    }

    /// A whole record carrying `plaintext`, the sequence number its explicit nonce.
    fn seal(&self, content_type: u8, epoch: u16, seq: u64, plaintext: &[u8]) -> Vec<u8> {
        let sealed_len = EXPLICIT_NONCE + plaintext.len() + TAG;
        let mut record = Vec::with_capacity(HEADER + sealed_len);
        let explicit = sequence(epoch, seq);
        record.push(content_type);
        record.extend_from_slice(&VERSION);
        record.extend_from_slice(&explicit);
        // Bounded by MAX_PLAINTEXT at the callers.
        record.extend_from_slice(&(sealed_len as u16).to_be_bytes());
        record.extend_from_slice(&explicit);
        let start = record.len();
        record.extend_from_slice(plaintext);
        let aad = aad(content_type, epoch, seq, VERSION, plaintext.len());
        let tag = self
            .cipher()
            .encrypt_inout_detached(
                &self.nonce(&explicit).into(),
                &aad,
                record[start..].as_mut().into(),
            )
            .unwrap_or_else(|_| unreachable!("CCM seals any record under 2^24 bytes"));
        record.extend_from_slice(&tag);
        record
    }
}

/// Epoch and sequence number as the 8 bytes records carry.
fn sequence(epoch: u16, seq: u64) -> [u8; 8] {
    let mut out = seq.to_be_bytes();
    out[..2].copy_from_slice(&epoch.to_be_bytes());
    out
}

/// The additional data an AEAD record authenticates (RFC 5246 section 6.2.3.3).
fn aad(content_type: u8, epoch: u16, seq: u64, version: [u8; 2], length: usize) -> [u8; 13] {
    let mut aad = [0u8; 13];
    aad[..8].copy_from_slice(&sequence(epoch, seq));
    aad[8] = content_type;
    aad[9..11].copy_from_slice(&version);
    aad[11..].copy_from_slice(&(length as u16).to_be_bytes());
    aad
}

/// A session's traffic keys.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Keys {
    client: Direction,
    server: Direction,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

impl Keys {
    /// The keys of a PSK session with the extended master secret (RFC 4279 section 2,
    /// RFC 7627 section 4, RFC 5246 section 6.3).
    pub(super) fn derive(
        psk: &[u8],
        session_hash: &[u8],
        client_random: &[u8],
        server_random: &[u8],
    ) -> Self {
        let n = (psk.len() as u16).to_be_bytes();
        let mut pre_master = Vec::with_capacity(4 + 2 * psk.len());
        pre_master.extend_from_slice(&n);
        pre_master.resize(2 + psk.len(), 0);
        pre_master.extend_from_slice(&n);
        pre_master.extend_from_slice(psk);
        let mut master = [0u8; 48];
        prf(
            &pre_master,
            b"extended master secret",
            &[session_hash],
            &mut master,
        );
        let mut block = [0u8; 40];
        prf(
            &master,
            b"key expansion",
            &[server_random, client_random],
            &mut block,
        );
        Self {
            client: Direction::from_block(&block[0..16], &block[32..36]),
            server: Direction::from_block(&block[16..32], &block[36..40]),
        }
    }
}

/// Which records of an epoch were already received (RFC 6347 section 4.1.2.6): the highest
/// sequence number and a bit for each of the 63 before it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Window {
    top: u64,
    /// Bit `i` set: `top - i` was received. Zero: nothing yet.
    bits: u64,
}

impl Window {
    fn is_fresh(&self, seq: u64) -> bool {
        if self.bits == 0 || seq > self.top {
            return true;
        }
        let behind = self.top - seq;
        behind < 64 && self.bits & (1 << behind) == 0
    }

    fn mark(&mut self, seq: u64) {
        if self.bits == 0 {
            *self = Self { top: seq, bits: 1 };
        } else if seq > self.top {
            let ahead = seq - self.top;
            self.bits = if ahead >= 64 { 1 } else { (self.bits << ahead) | 1 };
            self.top = seq;
        } else if self.top - seq < 64 {
            self.bits |= 1 << (self.top - seq);
        }
    }
}

/// What an established session received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Inbound {
    Data(Vec<u8>),
    /// close_notify.
    Closed,
    /// A fatal alert with this description.
    Fatal(u8),
}

/// An established session's record layer (server side, epoch 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Established {
    keys: Keys,
    next_write: u64,
    window: Window,
}

impl Established {
    /// Opens the records of `datagram`; what does not authenticate, repeats or belongs to
    /// another epoch is dropped.
    pub(super) fn receive(&mut self, datagram: &[u8], mut deliver: impl FnMut(Inbound)) {
        for record in records(datagram) {
            if record.epoch != 1 || !self.window.is_fresh(record.seq) {
                continue;
            }
            let Some(plaintext) = self.keys.client.open(&record) else {
                continue;
            };
            self.window.mark(record.seq);
            match record.content_type {
                APPLICATION_DATA if !plaintext.is_empty() => deliver(Inbound::Data(plaintext)),
                ALERT => match plaintext[..] {
                    [_, 0] => deliver(Inbound::Closed),
                    [2, description] => deliver(Inbound::Fatal(description)),
                    _ => {}
                },
                // A late copy of the client's Finished flight, or a renegotiation (not offered).
                _ => {}
            }
        }
    }

    fn seal(&mut self, content_type: u8, plaintext: &[u8]) -> Option<Vec<u8>> {
        if plaintext.len() > MAX_PLAINTEXT || self.next_write > MAX_SEQ {
            return None;
        }
        let seq = self.next_write;
        self.next_write += 1;
        Some(self.keys.server.seal(content_type, 1, seq, plaintext))
    }

    /// A record carrying `plaintext`; none when it is too large or the epoch's sequence
    /// numbers ran out.
    pub(super) fn seal_data(&mut self, plaintext: &[u8]) -> Option<Vec<u8>> {
        self.seal(APPLICATION_DATA, plaintext)
    }

    /// A close_notify alert.
    pub(super) fn seal_close(&mut self) -> Option<Vec<u8>> {
        self.seal(ALERT, &[1, 0])
    }
}

/// Most bytes of one handshake message the watcher reassembles (a PSK handshake's messages are
/// a few hundred bytes; anything larger leaves the session on `dimpl`).
const MAX_MESSAGE: usize = 4096;
/// Most messages being reassembled at once.
const MAX_PARTIAL: usize = 8;

/// A handshake message as the transcript hashes it: header (unfragmented) and body.
#[derive(Debug, Clone)]
struct Message {
    seq: u16,
    body: Vec<u8>,
    /// Bytes of the body received so far, as ranges (fragments may overlap or repeat).
    covered: Vec<(usize, usize)>,
    msg_type: u8,
}

impl Message {
    fn is_complete(&self) -> bool {
        self.covered == [(0, self.body.len())]
    }

    fn cover(&mut self, start: usize, end: usize) {
        self.covered.push((start, end));
        self.covered.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(self.covered.len());
        for &(s, e) in &self.covered {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.covered = merged;
    }

    fn hash_into(&self, hash: &mut Sha256) {
        let len = (self.body.len() as u32).to_be_bytes();
        hash.update([self.msg_type]);
        hash.update(&len[1..]);
        hash.update(self.seq.to_be_bytes());
        hash.update([0, 0, 0]);
        hash.update(&len[1..]);
        hash.update(&self.body);
    }
}

/// Watches a server-side handshake run by `dimpl` to learn and prove the session's keys.
#[derive(Debug, Default)]
pub(super) struct Watcher {
    /// Epoch-0 handshake messages from the client and from the server.
    client: Vec<Message>,
    server: Vec<Message>,
    keys: Option<Keys>,
    /// The keys opened the server's Finished.
    server_proven: bool,
    /// The client's application data opened with the keys (which proves them for its direction,
    /// and that the client finished its handshake).
    client_sent_data: bool,
    window: Window,
    next_write: u64,
    /// Something did not add up: the session stays on `dimpl`.
    gave_up: bool,
}

impl Watcher {
    /// A datagram from the client, after `dimpl` had it. `psk` looks up the key of an identity.
    pub(super) fn inbound(&mut self, datagram: &[u8], psk: impl FnOnce(&[u8]) -> Option<Vec<u8>>) {
        if self.gave_up {
            return;
        }
        for record in records(datagram) {
            if record.epoch == 0 && record.content_type == HANDSHAKE {
                Self::collect(&mut self.client, &mut self.gave_up, record.fragment);
            }
        }
        if self.keys.is_none() && !self.gave_up {
            self.keys = self.derive(psk);
        }
        let Some(keys) = self.keys else {
            return;
        };
        for record in records(datagram).filter(|r| r.epoch == 1) {
            if !self.window.is_fresh(record.seq) {
                continue;
            }
            if keys.client.open(&record).is_some() {
                self.window.mark(record.seq);
                self.client_sent_data |= record.content_type == APPLICATION_DATA;
            }
        }
    }

    /// A datagram `dimpl` sends to the client.
    pub(super) fn outbound(&mut self, datagram: &[u8]) {
        if self.gave_up {
            return;
        }
        for record in records(datagram) {
            match record.epoch {
                0 if record.content_type == HANDSHAKE => {
                    Self::collect(&mut self.server, &mut self.gave_up, record.fragment);
                }
                1 => {
                    self.next_write = self.next_write.max(record.seq + 1);
                    if !self.server_proven
                        && let Some(keys) = self.keys
                    {
                        self.server_proven = keys.server.open(&record).is_some();
                    }
                }
                _ => {}
            }
        }
    }

    /// The record layer to carry on with, once the keys are proven both ways and the client
    /// has finished its handshake.
    pub(super) fn established(&self) -> Option<Established> {
        let keys = self
            .keys
            .filter(|_| !self.gave_up && self.server_proven && self.client_sent_data)?;
        Some(Established {
            keys,
            next_write: self.next_write,
            window: self.window,
        })
    }

    /// Adds a handshake record's messages (one or more fragments) to `messages`.
    fn collect(messages: &mut Vec<Message>, gave_up: &mut bool, mut fragment: &[u8]) {
        while fragment.len() >= 12 {
            let msg_type = fragment[0];
            let length = u32::from_be_bytes([0, fragment[1], fragment[2], fragment[3]]) as usize;
            let seq = u16::from_be_bytes([fragment[4], fragment[5]]);
            let offset = u32::from_be_bytes([0, fragment[6], fragment[7], fragment[8]]) as usize;
            let part = u32::from_be_bytes([0, fragment[9], fragment[10], fragment[11]]) as usize;
            let Some(bytes) = fragment.get(12..12 + part) else {
                return;
            };
            fragment = &fragment[12 + part..];
            if length > MAX_MESSAGE || offset + part > length {
                *gave_up = true;
                return;
            }
            let found = messages
                .iter()
                .position(|m| m.seq == seq && m.msg_type == msg_type);
            let index = match found {
                Some(i) if messages[i].body.len() == length => i,
                // The same message with another length: not a retransmission of it.
                Some(_) => {
                    *gave_up = true;
                    return;
                }
                None if messages.iter().filter(|m| !m.is_complete()).count() >= MAX_PARTIAL => {
                    *gave_up = true;
                    return;
                }
                None => {
                    messages.push(Message {
                        seq,
                        body: vec![0; length],
                        covered: Vec::new(),
                        msg_type,
                    });
                    messages.len() - 1
                }
            };
            let message = &mut messages[index];
            if message.is_complete() {
                continue;
            }
            message.body[offset..offset + part].copy_from_slice(bytes);
            message.cover(offset, offset + part);
        }
    }

    /// The keys, once the ClientKeyExchange is in: its identity's key, and the transcript the
    /// extended master secret hashes (the ClientHello that the ServerHello answered, the
    /// server's first flight, the ClientKeyExchange; RFC 6347 section 4.2.1 leaves the first
    /// ClientHello and the HelloVerifyRequest out).
    fn derive(&mut self, psk: impl FnOnce(&[u8]) -> Option<Vec<u8>>) -> Option<Keys> {
        let complete = |messages: &[Message], msg_type: u8| {
            messages
                .iter()
                .filter(|m| m.msg_type == msg_type && m.is_complete())
                .max_by_key(|m| m.seq)
                .cloned()
        };
        let key_exchange = complete(&self.client, CLIENT_KEY_EXCHANGE)?;
        let hello = complete(&self.client, CLIENT_HELLO);
        let server_hello = complete(&self.server, SERVER_HELLO);
        let done = complete(&self.server, SERVER_HELLO_DONE);
        let (Some(hello), Some(server_hello), Some(done)) = (hello, server_hello, done) else {
            self.gave_up = true;
            return None;
        };
        let server_key_exchange = complete(&self.server, SERVER_KEY_EXCHANGE);
        let identity_len = key_exchange
            .body
            .get(..2)
            .map(|n| usize::from(u16::from_be_bytes([n[0], n[1]])));
        let identity = identity_len.and_then(|n| key_exchange.body.get(2..2 + n));
        let client_random = hello.body.get(2..34);
        let server_random = server_hello.body.get(2..34);
        let (Some(identity), Some(client_random), Some(server_random)) =
            (identity, client_random, server_random)
        else {
            self.gave_up = true;
            return None;
        };
        let Some(key) = psk(identity) else {
            self.gave_up = true;
            return None;
        };
        let mut hash = Sha256::new();
        for message in [
            Some(&hello),
            Some(&server_hello),
            server_key_exchange.as_ref(),
            Some(&done),
            Some(&key_exchange),
        ]
        .into_iter()
        .flatten()
        {
            message.hash_into(&mut hash);
        }
        let session_hash = hash.finalize();
        let keys = Keys::derive(&key, &session_hash, client_random, server_random);
        // The messages are no longer needed.
        self.client = Vec::new();
        self.server = Vec::new();
        Some(keys)
    }
}

#[cfg(test)]
mod tests;

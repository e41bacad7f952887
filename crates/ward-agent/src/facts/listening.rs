//! Listening sockets from proc/net/{tcp,tcp6,udp,udp6}.
//!
//! TCP sockets count when in LISTEN (state `0A`). UDP has no listen state: a socket counts when it
//! is bound to a port and not connected (state `07`, "close"), which is what a UDP server looks
//! like; connected UDP sockets are clients and are left out.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use super::read;
use super::{CollectError, Context};

/// Most sockets reported; a machine listening on more is odd enough that the count is noted.
pub const MAX_LISTENING: usize = 4096;

const TCP_LISTEN: u8 = 0x0A;
const UDP_UNCONNECTED: u8 = 0x07;

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ListeningSocket {
    /// `tcp` or `udp` (IPv4 and IPv6 alike; the address tells them apart).
    pub proto: String,
    /// The local address, e.g. `0.0.0.0`, `127.0.0.1`, `::`.
    pub address: String,
    pub port: u16,
}

/// Reads all four tables; a missing or malformed one is a soft error and the rest still count.
/// Only when none can be read is the collector as a whole failed.
pub fn listening(cx: &mut Context<'_>) -> Result<Vec<ListeningSocket>, CollectError> {
    let mut sockets = BTreeSet::new();
    let mut n_readable = 0;
    let mut failures = Vec::new();
    for (file, proto, wanted_state) in [
        ("tcp", "tcp", TCP_LISTEN),
        ("tcp6", "tcp", TCP_LISTEN),
        ("udp", "udp", UDP_UNCONNECTED),
        ("udp6", "udp", UDP_UNCONNECTED),
    ] {
        let rel = format!("proc/net/{file}");
        let text = match read::read_file(cx.root, &rel) {
            Ok(text) => text,
            Err(error) => {
                failures.push(error.to_string());
                continue;
            }
        };
        n_readable += 1;
        let mut n_malformed = 0;
        // The first line is the column header.
        for line in text.lines().skip(1).filter(|line| !line.trim().is_empty()) {
            match parse_line(line) {
                Some((address, port, state)) if state == wanted_state && port != 0 => {
                    sockets.insert(ListeningSocket {
                        proto: proto.to_owned(),
                        address,
                        port,
                    });
                }
                Some(_) => {}
                None => n_malformed += 1,
            }
        }
        if n_malformed > 0 {
            cx.soft_error(
                "listening",
                format!("{rel}: skipped {n_malformed} malformed line(s)"),
            );
        }
    }
    if n_readable == 0 {
        return Err(CollectError::Missing(failures.join("; ")));
    }
    for failure in failures {
        cx.soft_error("listening", failure);
    }
    let mut sockets: Vec<ListeningSocket> = sockets.into_iter().collect();
    // Ports first reads best in a console: 22/tcp, then 53/udp, ...
    sockets.sort_by(|a, b| (a.port, &a.proto, &a.address).cmp(&(b.port, &b.proto, &b.address)));
    if sockets.len() > MAX_LISTENING {
        cx.soft_error(
            "listening",
            format!("{} sockets, kept {MAX_LISTENING}", sockets.len()),
        );
        sockets.truncate(MAX_LISTENING);
    }
    Ok(sockets)
}

/// `sl local_address rem_address st ...` → (local address, local port, state).
fn parse_line(line: &str) -> Option<(String, u16, u8)> {
    let mut fields = line.split_whitespace();
    let _slot = fields.next()?.strip_suffix(':')?;
    let local = fields.next()?;
    let _remote = fields.next()?;
    let state = u8::from_str_radix(fields.next()?, 16).ok()?;
    let (address_hex, port_hex) = local.split_once(':')?;
    let port = u16::from_str_radix(port_hex, 16).ok()?;
    Some((parse_address(address_hex)?, port, state))
}

/// The kernel prints addresses as the raw in-memory 32-bit words (`%08X` of each `u32`), so each
/// word's bytes are in host order: little-endian on the x86 and ARM machines we run on. The port
/// is already converted to host order and is plain hex.
pub fn parse_address(hex: &str) -> Option<String> {
    let word = |chunk: &str| u32::from_str_radix(chunk, 16).ok().map(u32::to_ne_bytes);
    if !hex.is_ascii() {
        return None;
    }
    match hex.len() {
        8 => Some(Ipv4Addr::from(word(hex)?).to_string()),
        32 => {
            let mut bytes = [0u8; 16];
            for (index, out) in bytes.chunks_exact_mut(4).enumerate() {
                out.copy_from_slice(&word(&hex[index * 8..index * 8 + 8])?);
            }
            Some(Ipv6Addr::from(bytes).to_string())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_decoded_from_host_order_words() {
        assert_eq!(parse_address("0100007F").as_deref(), Some("127.0.0.1"));
        assert_eq!(
            parse_address("00000000000000000000000001000000").as_deref(),
            Some("::1")
        );
        assert_eq!(
            parse_address("000080FE000000000000000001000000").as_deref(),
            Some("fe80::1")
        );
        assert_eq!(
            parse_address("0000000000000000FFFF00000100007F").as_deref(),
            Some("::ffff:127.0.0.1")
        );
        assert_eq!(parse_address("zz"), None);
        assert_eq!(parse_address("0100007G"), None);
    }
}

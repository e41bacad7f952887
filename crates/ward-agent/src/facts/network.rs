//! Network interfaces and their addresses.
//!
//! Interfaces come from sys/class/net, IPv6 addresses from proc/net/if_inet6. The kernel has no
//! proc file listing IPv4 addresses per interface, so:
//! - on the live system, `ip -o -4 addr show` is run (with the command timeout) and parsed;
//! - otherwise, or if that fails, the local addresses are read from proc/net/fib_trie (entries
//!   marked `/32 host LOCAL`) and matched to an interface and prefix length through the directly
//!   connected routes in proc/net/route (longest matching prefix). 127.0.0.0/8 has no such route
//!   and is assigned to `lo`. An address with no connected route (`noprefixroute`) cannot be
//!   placed and is reported as a soft error.
//!
//! [`Network::ipv4_source`] says which path was taken.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use super::read::{self, MAX_NAME_BYTES};
use super::{CollectError, Context, command};

/// Most interfaces reported, and most addresses per family per interface.
pub const MAX_INTERFACES: usize = 1024;
pub const MAX_ADDRESSES_PER_INTERFACE: usize = 64;
const MAX_IP_OUTPUT: u64 = 1024 * 1024;
/// `IFF_UP` in sys/class/net/*/flags: administratively up.
const IFF_UP: u32 = 0x1;
/// `RTF_GATEWAY` in proc/net/route: the route goes through a gateway, so it is not on-link.
const RTF_GATEWAY: u32 = 0x2;

/// Interfaces and where their IPv4 addresses were learnt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// Sorted by name.
    pub interfaces: Vec<Interface>,
    /// `ip` (the `ip -o -4 addr show` command) or `proc` (fib_trie + route).
    pub ipv4_source: String,
}

/// One network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    pub mac_address: Option<String>,
    /// `up`, `down`, `dormant`, `unknown` (loopback and many virtual links say unknown), ...
    pub operstate: Option<String>,
    /// Administratively up (`IFF_UP`); a cable-less interface can be up with operstate down.
    pub up: Option<bool>,
    /// CIDR notation, e.g. `192.0.2.2/24`, sorted.
    pub ipv4: Vec<String>,
    /// CIDR notation, e.g. `fe80::1/64`, sorted.
    pub ipv6: Vec<String>,
}

pub fn network(cx: &mut Context<'_>) -> Result<Network, CollectError> {
    let root = cx.root;
    let mut interfaces: Vec<Interface> = read::list_dir(root, "sys/class/net")?
        .into_iter()
        .take(MAX_INTERFACES)
        .map(|name| {
            let base = format!("sys/class/net/{name}");
            let flags = read::read_optional(root, &format!("{base}/flags"))
                .and_then(|flags| u32::from_str_radix(flags.trim_start_matches("0x"), 16).ok());
            Interface {
                mac_address: read::read_optional(root, &format!("{base}/address")),
                operstate: read::read_optional(root, &format!("{base}/operstate")),
                up: flags.map(|flags| flags & IFF_UP != 0),
                name: read::clean(&name, MAX_NAME_BYTES),
                ipv4: Vec::new(),
                ipv6: Vec::new(),
            }
        })
        .collect();

    match read::read_file(root, "proc/net/if_inet6") {
        Ok(text) => {
            for (name, cidr) in parse_if_inet6(&text) {
                add_address(&mut interfaces, &name, cidr, false);
            }
        }
        // No IPv6 at all (disabled in the kernel) is normal enough to be only a soft error.
        Err(error) => cx.soft_error("network", error.to_string()),
    }

    let from_command = if cx.live && command::find_program("ip").is_some() {
        let args = ["-o", "-4", "addr", "show"];
        match command::run("ip", &args, cx.options.command_timeout, MAX_IP_OUTPUT) {
            Ok(output) => Some(parse_ip_addr_output(&output)),
            Err(error) => {
                cx.soft_error("network", format!("{error}; using proc/net/fib_trie"));
                None
            }
        }
    } else {
        None
    };
    let (ipv4, ipv4_source) = match from_command {
        Some(addresses) => (addresses, "ip"),
        None => (ipv4_from_proc(cx)?, "proc"),
    };
    for (name, cidr) in ipv4 {
        add_address(&mut interfaces, &name, cidr, true);
    }
    // Interfaces met only in address lists were appended; keep the list sorted by name.
    interfaces.sort_by(|a, b| a.name.cmp(&b.name));

    for interface in &mut interfaces {
        for list in [&mut interface.ipv4, &mut interface.ipv6] {
            list.sort();
            list.dedup();
            list.truncate(MAX_ADDRESSES_PER_INTERFACE);
        }
    }
    Ok(Network {
        interfaces,
        ipv4_source: ipv4_source.to_owned(),
    })
}

/// Adds an address to its interface, creating the interface if sysfs did not list it (a race with
/// an interface appearing, or a fixture without sys/class/net entries).
fn add_address(interfaces: &mut Vec<Interface>, name: &str, cidr: String, is_ipv4: bool) {
    let name = read::clean(name, MAX_NAME_BYTES);
    let index = match interfaces.iter().position(|interface| interface.name == name) {
        Some(index) => index,
        None if interfaces.len() < MAX_INTERFACES => {
            interfaces.push(Interface {
                name,
                mac_address: None,
                operstate: None,
                up: None,
                ipv4: Vec::new(),
                ipv6: Vec::new(),
            });
            interfaces.len() - 1
        }
        None => return,
    };
    let Some(interface) = interfaces.get_mut(index) else {
        return;
    };
    let list = if is_ipv4 {
        &mut interface.ipv4
    } else {
        &mut interface.ipv6
    };
    // Bounded while adding, so a hostile file cannot grow a list without limit before the sort.
    if list.len() < MAX_ADDRESSES_PER_INTERFACE * 4 {
        list.push(cidr);
    }
}

/// proc/net/if_inet6: `address(32 hex, network order) ifindex prefix_len scope flags name`.
pub fn parse_if_inet6(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [hex, _index, prefix_len, _scope, _flags, name] = fields.as_slice() else {
                return None;
            };
            let address = Ipv6Addr::from(u128::from_str_radix(hex, 16).ok().filter(|_| hex.len() == 32)?);
            let prefix_len = u8::from_str_radix(prefix_len, 16)
                .ok()
                .filter(|len| *len <= 128)?;
            Some(((*name).to_owned(), format!("{address}/{prefix_len}")))
        })
        .collect()
}

/// `ip -o -4 addr show`: `2: eth0    inet 192.0.2.2/24 brd … scope global eth0\ …`.
pub fn parse_ip_addr_output(output: &str) -> Vec<(String, String)> {
    output
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _index = fields.next()?;
            let name = fields.next()?;
            // Links in another namespace are printed as `veth0@if5`.
            let name = name.split('@').next()?;
            (fields.next()? == "inet").then_some(())?;
            let (address, prefix_len) = fields.next()?.split_once('/')?;
            let address: Ipv4Addr = address.parse().ok()?;
            let prefix_len: u8 = prefix_len.parse().ok().filter(|len| *len <= 32)?;
            Some((name.to_owned(), format!("{address}/{prefix_len}")))
        })
        .collect()
}

/// The file-based IPv4 path: local addresses from fib_trie, placed by the connected routes.
fn ipv4_from_proc(cx: &mut Context<'_>) -> Result<Vec<(String, String)>, CollectError> {
    let trie = read::read_file(cx.root, "proc/net/fib_trie")?;
    let routes = parse_routes(&read::read_file(cx.root, "proc/net/route")?);
    let mut placed = Vec::new();
    for address in parse_fib_trie_local(&trie) {
        let connected = routes
            .iter()
            .filter(|route| u32::from(address) & route.mask == route.destination)
            .max_by_key(|route| route.mask.count_ones());
        match connected {
            Some(route) => placed.push((
                route.interface.clone(),
                format!("{address}/{}", route.mask.count_ones()),
            )),
            None if address.is_loopback() => placed.push(("lo".to_owned(), format!("{address}/8"))),
            None => cx.soft_error(
                "network",
                format!("no connected route for local address {address}"),
            ),
        }
    }
    Ok(placed)
}

/// The addresses marked `/32 host LOCAL` in proc/net/fib_trie (each table lists them; deduplicated).
pub fn parse_fib_trie_local(text: &str) -> BTreeSet<Ipv4Addr> {
    let mut local = BTreeSet::new();
    let mut last_address = None;
    for line in text.lines() {
        let line = line.trim_start_matches(|c: char| c.is_whitespace() || c == '|' || c == '+');
        if let Some(address) = line.strip_prefix("-- ") {
            last_address = address.trim().parse::<Ipv4Addr>().ok();
        } else if line.trim() == "/32 host LOCAL" {
            local.extend(last_address);
        }
    }
    local
}

/// A directly connected route from proc/net/route.
struct Route {
    interface: String,
    destination: u32,
    mask: u32,
}

/// proc/net/route prints destination and mask as host-order hex words, like proc/net/tcp; they
/// are converted to the numeric value of the address so they compare with `u32::from(Ipv4Addr)`.
fn parse_routes(text: &str) -> Vec<Route> {
    let word = |hex: &str| {
        u32::from_str_radix(hex, 16)
            .ok()
            .map(|w| u32::from_be_bytes(w.to_ne_bytes()))
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (interface, destination, flags, mask) =
                (fields.first()?, fields.get(1)?, fields.get(3)?, fields.get(7)?);
            let flags = u32::from_str_radix(flags, 16).ok()?;
            let mask = word(mask)?;
            // Contiguous masks only: anything else is not a prefix length.
            let prefix_ok = mask.leading_ones() + mask.trailing_zeros() == 32;
            let destination = word(destination)? & mask;
            (flags & RTF_GATEWAY == 0 && prefix_ok).then(|| Route {
                interface: (*interface).to_owned(),
                destination,
                mask,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_addr_output_is_parsed() {
        let output = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n\
                      3: veth0@if5    inet 10.0.0.1/30 scope global veth0\n\
                      garbage line\n";
        assert_eq!(
            parse_ip_addr_output(output),
            [
                ("lo".to_owned(), "127.0.0.1/8".to_owned()),
                ("veth0".to_owned(), "10.0.0.1/30".to_owned())
            ]
        );
    }

    #[test]
    fn routes_skip_gateways_and_convert_byte_order() {
        let text = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
                    eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\n\
                    eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n";
        let routes = parse_routes(text);
        assert_eq!(routes.len(), 1);
        assert_eq!(Ipv4Addr::from(routes[0].destination), Ipv4Addr::new(192, 0, 2, 0));
        assert_eq!(routes[0].mask.count_ones(), 24);
    }
}

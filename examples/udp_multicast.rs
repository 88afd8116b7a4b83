//! Multicast on one machine: listeners join a group on the loopback
//! interface, a sender sends to the group, and each listener prints what
//! it receives.
//!
//! ```text
//! cargo run --example udp_multicast -- listen [GROUP:PORT]          # default 239.255.77.77:7777
//! cargo run --example udp_multicast -- send [GROUP:PORT] [COUNT]    # default 3 datagrams
//! ```
//!
//! Several listeners may run at once: each binds the group's address and
//! port with SO_REUSEADDR (Twisted's `listenMultiple=True`) and joins the
//! group on the interface with address 127.0.0.1; the sender picks that
//! interface for its datagrams (`IP_MULTICAST_IF`) and keeps multicast
//! loopback on, so they are delivered on this machine without a network.
//! A listener prints `received N bytes from ADDR: TEXT` on standard output
//! and exits after `COUNT` datagrams if given a third argument.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use twill::{Bytes, DatagramConfig, DatagramProtocol, MulticastInterface, Reactor};

const DEFAULT_GROUP: &str = "239.255.77.77:7777";
const LOOPBACK: MulticastInterface = MulticastInterface::Address(Ipv4Addr::LOCALHOST);

struct Listener {
    left: Option<usize>,
}

impl DatagramProtocol for Listener {
    fn datagram_received(&mut self, data: Bytes, from: SocketAddr) {
        println!(
            "received {} bytes from {from}: {}",
            data.len(),
            String::from_utf8_lossy(&data)
        );
        if let Some(left) = &mut self.left {
            *left -= 1;
            if *left == 0 {
                twill::stop();
            }
        }
    }
}

struct Sender;

impl DatagramProtocol for Sender {
    fn datagram_received(&mut self, _: Bytes, _: SocketAddr) {}
}

fn parse<T: std::str::FromStr>(arg: Option<String>, default: &str) -> io::Result<T>
where
    T::Err: std::fmt::Display,
{
    arg.as_deref()
        .unwrap_or(default)
        .parse()
        .map_err(|e: T::Err| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
}

fn main() -> io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "listen".into());
    let group: SocketAddr = parse(args.next(), DEFAULT_GROUP)?;
    let reactor = Reactor::new()?;
    match mode.as_str() {
        "listen" => {
            let left = match args.next() {
                Some(count) => Some(parse::<usize>(Some(count), "")?),
                None => None,
            };
            let config = DatagramConfig::new().reuse_address(true);
            let port = reactor.listen_udp_with(group, &config, Listener { left })?;
            port.join_group(group.ip(), LOOPBACK)?;
            log::info!("listening on {} (group {group} on 127.0.0.1)", port.host());
        }
        "send" => {
            let count: usize = parse(args.next(), "3")?;
            let bind: SocketAddr = match group.ip() {
                IpAddr::V4(_) => "127.0.0.1:0".parse().expect("an address"),
                IpAddr::V6(_) => "[::1]:0".parse().expect("an address"),
            };
            let port = reactor.listen_udp(bind, Sender)?;
            port.set_outgoing_interface(LOOPBACK)?;
            port.set_loopback_mode(true)?;
            for n in 1..=count {
                port.write(format!("datagram {n} of {count}"), group)?;
            }
            log::info!("sent {count} datagram(s) to {group} from {}", port.host());
            // Stopping closes the port after one last try at anything its
            // send queue still holds.
            reactor.stop();
        }
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unknown mode {other:?}: use listen or send"),
            ))
        }
    }
    reactor.run()
}

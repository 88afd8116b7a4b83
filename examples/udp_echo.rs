//! Echoes every UDP datagram back to its sender.
//!
//! ```text
//! cargo run --example udp_echo [ADDR]   # default 127.0.0.1:8007
//! ```
//!
//! Twisted's `listenUDP(8007, Echo())` with `transport.write(data, addr)`;
//! asyncio's `create_datagram_endpoint` with `transport.sendto`. A reply
//! the kernel cannot take at once waits in the port's send queue; past its
//! cap the reply is refused and counted, and the echo says so at debug
//! level (`RUST_LOG=debug`).

use std::io;
use std::net::SocketAddr;

use twill::{Bytes, DatagramProtocol, DatagramTransport, Reactor};

struct Echo {
    transport: Option<DatagramTransport>,
}

impl DatagramProtocol for Echo {
    fn start_protocol(&mut self, transport: &DatagramTransport) {
        self.transport = Some(transport.clone());
    }

    fn datagram_received(&mut self, data: Bytes, from: SocketAddr) {
        if let Some(transport) = &self.transport {
            if let Err(err) = transport.write(data, from) {
                log::debug!("no echo to {from}: {err}");
            }
        }
    }

    fn error_received(&mut self, error: io::Error) {
        log::warn!("{error}");
    }
}

fn main() -> io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8007".into());
    let reactor = Reactor::new()?;
    let port = reactor.listen_udp(addr.as_str(), Echo { transport: None })?;
    log::info!("listening on {}", port.host());
    reactor.run()
}

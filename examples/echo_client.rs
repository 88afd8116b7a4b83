//! Sends one message to an echo server, prints the echo, and exits.
//!
//! ```text
//! cargo run --example echo_client [ENDPOINT] [MESSAGE]   # default 127.0.0.1:8007 "hello, world"
//! cargo run --example echo_client -- unix:/tmp/echo.sock "hello, world"
//! ```
//!
//! `ENDPOINT` is an address (`127.0.0.1:8007`) or an endpoint string
//! (`tcp:host=127.0.0.1:port=8007:timeout=5`, `unix:/tmp/echo.sock`),
//! connected to with [`Reactor::client_from_string`].

use std::io;

use twill::net::endpoint::parse_client_or_addr;
use twill::{Bytes, ClientFactory, Connector, Factory, Protocol, Reactor, Reason, Transport};

struct EchoClient {
    message: Bytes,
    received: Vec<u8>,
    transport: Option<Transport>,
}

impl Protocol for EchoClient {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write(self.message.clone());
        self.transport = Some(transport.clone());
    }

    fn data_received(&mut self, data: Bytes) {
        self.received.extend_from_slice(&data);
        if self.received.len() >= self.message.len() {
            println!("{}", String::from_utf8_lossy(&self.received));
            if let Some(transport) = &self.transport {
                transport.lose_connection();
            }
        }
    }
}

struct OneShot {
    message: Bytes,
}

impl Factory for OneShot {
    type Protocol = EchoClient;

    fn build_protocol(&mut self, _peer: twill::Address) -> Option<EchoClient> {
        Some(EchoClient {
            message: self.message.clone(),
            received: Vec::new(),
            transport: None,
        })
    }
}

impl ClientFactory for OneShot {
    fn client_connection_failed(&mut self, _connector: &Connector, reason: &io::Error) {
        log::error!("connection failed: {reason}");
        twill::stop();
    }

    fn client_connection_lost(&mut self, _connector: &Connector, reason: &Reason) {
        log::info!("connection closed: {reason}");
        twill::stop();
    }
}

const USAGE: &str = "usage: echo_client [ENDPOINT] [MESSAGE]   (ENDPOINT: an address \
                     (127.0.0.1:8007, the default) or an endpoint string \
                     (tcp:host=127.0.0.1:port=8007, unix:/tmp/echo.sock))";

fn main() -> io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args = std::env::args().skip(1);
    let endpoint = args.next().unwrap_or_else(|| "127.0.0.1:8007".into());
    let message = args.next().unwrap_or_else(|| "hello, world".into());
    if let Err(err) = parse_client_or_addr(&endpoint) {
        eprintln!("echo_client: {err}\n{USAGE}");
        std::process::exit(2);
    }
    let reactor = Reactor::new()?;
    reactor.client_from_string(
        &endpoint,
        OneShot {
            message: Bytes::from(message),
        },
    )?;
    reactor.run()
}

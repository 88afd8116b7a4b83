//! Sends one message to an echo server, prints the echo, and exits.
//!
//! ```text
//! cargo run --example echo_client [ADDR] [MESSAGE]   # default 127.0.0.1:8007 "hello, world"
//! ```

use std::io;

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

fn main() -> io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8007".into());
    let message = args.next().unwrap_or_else(|| "hello, world".into());
    let reactor = Reactor::new()?;
    reactor.connect_tcp(
        addr.as_str(),
        OneShot {
            message: Bytes::from(message),
        },
    )?;
    reactor.run()
}

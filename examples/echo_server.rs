//! Echoes back whatever each client sends.
//!
//! ```text
//! cargo run --example echo_server [ADDR]      # default 127.0.0.1:8007
//! ```

use twill::{Bytes, Protocol, Reactor, Transport};

struct Echo {
    transport: Option<Transport>,
}

impl Protocol for Echo {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
    }

    fn data_received(&mut self, data: Bytes) {
        if let Some(transport) = &self.transport {
            transport.write(data);
        }
    }
}

fn main() -> std::io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8007".into());
    let reactor = Reactor::new()?;
    let port = reactor.listen_tcp(addr.as_str(), |_peer| Echo { transport: None })?;
    log::info!("listening on {}", port.host());
    reactor.run()
}

//! The "Spreader": relays what each client sends to every other client.
//!
//! Each client is welcomed with its number (the count of clients connected
//! now, as in the original); the message `close` ends the sender's
//! connection.
//!
//! ```text
//! cargo run --example broadcast_server [ADDR]   # default 127.0.0.1:8007
//! ```

use std::cell::RefCell;
use std::rc::Rc;

use twill::{Bytes, Protocol, Reactor, Reason, Transport};

/// The connected clients, shared by every protocol.
#[derive(Default)]
struct Clients {
    transports: Vec<Transport>,
}

struct Spreader {
    clients: Rc<RefCell<Clients>>,
    transport: Option<Transport>,
}

impl Protocol for Spreader {
    fn connection_made(&mut self, transport: &Transport) {
        let mut clients = self.clients.borrow_mut();
        clients.transports.push(transport.clone());
        let number = clients.transports.len();
        log::info!("new connect: {number} ({})", transport.peer());
        transport.write(format!(
            "Welcome to Spread Site, you are client user number {number}!\n"
        ));
        self.transport = Some(transport.clone());
    }

    fn data_received(&mut self, data: Bytes) {
        let Some(me) = &self.transport else { return };
        if data.trim_ascii_end() == b"close" {
            me.lose_connection();
            return;
        }
        for other in &self.clients.borrow().transports {
            if !other.same_connection(me) {
                other.write(data.clone());
            }
        }
    }

    fn connection_lost(&mut self, reason: &Reason) {
        let mut clients = self.clients.borrow_mut();
        if let Some(me) = self.transport.take() {
            clients.transports.retain(|t| !t.same_connection(&me));
            log::info!(
                "lost connect: {} ({}: {reason})",
                clients.transports.len(),
                me.peer()
            );
        }
    }
}

fn main() -> std::io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8007".into());
    let reactor = Reactor::new()?;
    let clients = Rc::new(RefCell::new(Clients::default()));
    let port = reactor.listen_tcp(addr.as_str(), move |_peer| Spreader {
        clients: clients.clone(),
        transport: None,
    })?;
    log::info!("listening on {}", port.host());
    reactor.run()
}

//! The "Spreader": relays what each client sends to every other client.
//!
//! Each client is welcomed with its number (the count of clients connected
//! now, as in the original); the message `close` ends the sender's
//! connection.
//!
//! ```text
//! cargo run --example broadcast_server [ENDPOINT]   # default 127.0.0.1:8007
//! cargo run --example broadcast_server -- unix:/tmp/broadcast.sock
//! ```
//!
//! `ENDPOINT` is an address (`127.0.0.1:8007`) or an endpoint string
//! (`tcp:8007:interface=127.0.0.1`, `unix:/tmp/broadcast.sock`), listened on
//! with [`Reactor::server_from_string`].
//!
//! The relaying goes through a [`BroadcastGroup`], which bounds what a
//! client that does not keep up can cost:
//!
//! - While a client is behind (over its high watermark, 64 KiB unsent)
//!   and catching up, the server stops reading from the clients that send
//!   ([`BroadcastGroup::broadcast_from`]): a client that reads at full
//!   speed misses nothing, however fast the others send.
//! - A client not on course to catch up within 2 s (judged every 100 ms
//!   while the senders wait), still behind after 2 s, or that would have
//!   over 4 MiB unsent, is given up on by the policy,
//!   [`SlowClient::DropMessages`], the one a relay of a live stream wants:
//!   from then on it misses the messages sent while it is behind (each one
//!   whole or not at all, counted, and logged when it leaves), and nobody
//!   waits for it again.
//!
//! So a client that never reads costs the server at most 4 MiB and the
//! senders one pause of 100 ms, and one that reads at full speed receives
//! everything.

use twill::broadcast::{BroadcastGroup, SlowClient};
use twill::net::endpoint::parse_server_or_addr;
use twill::{Bytes, Protocol, Reactor, Reason, Transport};

struct Spreader {
    clients: BroadcastGroup,
    transport: Option<Transport>,
}

impl Protocol for Spreader {
    fn connection_made(&mut self, transport: &Transport) {
        self.clients.add(transport);
        let number = self.clients.len();
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
        self.clients.broadcast_from(me, data);
    }

    fn connection_lost(&mut self, reason: &Reason) {
        if let Some(me) = self.transport.take() {
            let skipped = self.clients.dropped(&me).unwrap_or(0);
            self.clients.remove(&me);
            log::info!(
                "lost connect: {} ({}: {reason}; {skipped} messages skipped for it)",
                self.clients.len(),
                me.peer()
            );
        }
    }
}

const USAGE: &str = "usage: broadcast_server [ENDPOINT]   (ENDPOINT: an address \
                     (127.0.0.1:8007, the default) or an endpoint string \
                     (tcp:8007:interface=127.0.0.1, unix:/tmp/broadcast.sock))";

fn main() -> std::io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let endpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8007".into());
    if let Err(err) = parse_server_or_addr(&endpoint) {
        eprintln!("broadcast_server: {err}\n{USAGE}");
        std::process::exit(2);
    }
    let reactor = Reactor::new()?;
    let clients = BroadcastGroup::new(SlowClient::DropMessages);
    let port = reactor.server_from_string(&endpoint, move |_peer| Spreader {
        clients: clients.clone(),
        transport: None,
    })?;
    log::info!("listening on {}", port.host());
    reactor.run()
}

//! Echoes back whatever each client sends, over TLS: the server the TLS
//! benchmarks measure (`benches/`, `tls_bench`).
//!
//! ```text
//! cargo run --release --features tls --example tls_echo_server -- ADDR CERT KEY [--bulk] [--plain]
//! ```
//!
//! `CERT` is a PEM file with the certificate chain (the server's own
//! first), `KEY` one with its private key. The echo is `echo_server`'s
//! protocol unchanged, run inside TLS by
//! [`listen_tls`](twill::Reactor::listen_tls): the protocol neither knows
//! nor cares that its bytes are encrypted.
//!
//! `--bulk` sends instead of echoing: once the handshake completes, each
//! connection is sent 16 KiB writes for as long as it lasts, each an
//! 8-byte big-endian count (0, 1, 2, ...) and 16,376 fixed bytes (byte `j`
//! is `(131 j + j / 256) mod 256`), the next whenever the last has gone
//! to the kernel (`write_complete`), as a file server would send a file.
//! `--plain` runs the same protocols on plain TCP
//! (`CERT` and `KEY` are then not read), to measure what TLS adds.
//!
//! When ready it logs `listening on ADDR`. It runs until killed.

use std::io;

use twill::tls::{config, HandshakeCompleted};
use twill::{Bytes, Event, Protocol, Reactor, Transport};

/// The size of each write of `--bulk`: 16 KiB, a full TLS record.
const CHUNK: usize = 16 * 1024;
/// The count in front of each chunk.
const COUNT: usize = 8;

struct Echo {
    transport: Option<Transport>,
}

impl Protocol for Echo {
    fn connection_made(&mut self, transport: &Transport) {
        transport.set_flow_control(true);
        self.transport = Some(transport.clone());
    }

    fn data_received(&mut self, data: Bytes) {
        if let Some(transport) = &self.transport {
            transport.write(data);
        }
    }
}

/// Sends one chunk at a time, the next once the last is with the kernel: a
/// pull producer ([`write_complete`](Protocol::write_complete)), so at
/// most one chunk waits in the write buffer, and each is one write to
/// the socket, as a `write_all` loop's are.
struct Bulk {
    transport: Option<Transport>,
    body: Bytes,
    next: u64,
    started: bool,
}

impl Bulk {
    fn new(body: Bytes) -> Bulk {
        Bulk {
            transport: None,
            body,
            next: 0,
            started: false,
        }
    }

    fn send_next(&mut self) {
        let Some(transport) = &self.transport else {
            return;
        };
        if !self.started || transport.is_closing() {
            return;
        }
        // The count made in place, the body shared and not copied: under
        // TLS the two are sealed into one record.
        let count = self.next.to_be_bytes();
        transport.write_with_body(|buf| {
            buf.extend_from_slice(&count);
            ((), Some(self.body.clone()))
        });
        self.next += 1;
    }

    fn start(&mut self) {
        self.started = true;
        self.send_next();
    }
}

impl Protocol for Bulk {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
        if transport.tls().is_none() {
            self.start();
        }
    }

    fn data_received(&mut self, _data: Bytes) {}

    fn event_received(&mut self, event: Event) {
        if event.is::<HandshakeCompleted>() {
            self.start();
        }
    }

    fn write_complete(&mut self) {
        self.send_next();
    }
}

/// The 16,376 bytes after each chunk's count.
fn bulk_body() -> Bytes {
    (0..CHUNK - COUNT)
        .map(|j| (j.wrapping_mul(131) + (j >> 8)) as u8)
        .collect::<Vec<u8>>()
        .into()
}

fn usage() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "usage: tls_echo_server ADDR CERT KEY [--bulk] [--plain]",
    )
}

fn main() -> io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().any(|a| a == name);
    let (bulk, plain) = (flag("--bulk"), flag("--plain"));
    if let Some(other) = args
        .iter()
        .find(|a| a.starts_with("--") && !matches!(a.as_str(), "--bulk" | "--plain"))
    {
        log::error!("unknown option {other}");
        return Err(usage());
    }
    let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let [addr, cert, key] = positional[..] else {
        return Err(usage());
    };
    let reactor = Reactor::new()?;
    let body = bulk_body();
    let port = match (plain, bulk) {
        (true, false) => reactor.listen_tcp(addr.as_str(), |_peer| Echo { transport: None })?,
        (true, true) => reactor.listen_tcp(addr.as_str(), move |_peer| Bulk::new(body.clone()))?,
        (false, _) => {
            let tls = config::server_config(
                config::certs_from_pem_file(cert)?,
                config::key_from_pem_file(key)?,
            )?;
            if bulk {
                reactor.listen_tls(addr.as_str(), tls, move |_peer| Bulk::new(body.clone()))?
            } else {
                reactor.listen_tls(addr.as_str(), tls, |_peer| Echo { transport: None })?
            }
        }
    };
    log::info!("listening on {}", port.host());
    reactor.run()
}

//! Echoes back whatever each client sends, over TLS: the server the TLS
//! benchmarks measure (`benches/`, `tls_bench`).
//!
//! ```text
//! cargo run --release --features tls --example tls_echo_server -- ENDPOINT CERT KEY [--bulk] [--plain]
//! cargo run --release --features tls --example tls_echo_server -- unix:/tmp/tls_echo.sock cert.pem key.pem
//! ```
//!
//! `ENDPOINT` is an address (`127.0.0.1:8007`) or an endpoint string
//! (`tcp:8007:interface=127.0.0.1`, `unix:/tmp/tls_echo.sock`), listened on
//! with [`Reactor::server_from_string`]; TLS runs over a Unix socket as
//! over TCP. (A `tls:` endpoint string is refused: TLS comes from `CERT`
//! and `KEY` here.) `CERT` is a PEM file with the certificate chain (the
//! server's own first), `KEY` one with its private key. The echo is
//! `echo_server`'s protocol unchanged, run inside TLS by a [`TlsFactory`],
//! which wraps each protocol the factory makes as
//! [`listen_tls`](twill::Reactor::listen_tls) does: the protocol neither
//! knows nor cares that its bytes are encrypted.
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

use twill::net::endpoint::{parse_server_or_addr, ServerDescription};
use twill::tls::rustls::ServerConfig;
use twill::tls::{config, HandshakeCompleted, TlsFactory};
use twill::{Bytes, Event, Factory, ListeningPort, Protocol, Reactor, Transport};

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
        "usage: tls_echo_server ENDPOINT CERT KEY [--bulk] [--plain]   (ENDPOINT: an address \
         (127.0.0.1:8007) or an endpoint string (tcp:8007:interface=127.0.0.1, \
         unix:/tmp/tls_echo.sock))",
    )
}

/// Listens on `endpoint` with `factory`'s protocols, inside TLS unless
/// `tls` is `None`.
fn listen(
    reactor: &Reactor,
    endpoint: &str,
    tls: Option<ServerConfig>,
    factory: impl Factory,
) -> io::Result<ListeningPort> {
    match tls {
        Some(tls) => reactor.server_from_string(endpoint, TlsFactory::new(tls.into(), factory)),
        None => reactor.server_from_string(endpoint, factory),
    }
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
    let [endpoint, cert, key] = positional[..] else {
        return Err(usage());
    };
    match parse_server_or_addr(endpoint) {
        Ok(ServerDescription::Tls { .. }) => {
            eprintln!("tls_echo_server: {endpoint:?}: TLS comes from CERT and KEY; give a tcp: or unix: endpoint");
            std::process::exit(2);
        }
        Ok(_) => {}
        Err(err) => {
            eprintln!("tls_echo_server: {err}");
            std::process::exit(2);
        }
    }
    let tls = if plain {
        None
    } else {
        Some(config::server_config(
            config::certs_from_pem_file(cert)?,
            config::key_from_pem_file(key)?,
        )?)
    };
    let reactor = Reactor::new()?;
    let port = if bulk {
        let body = bulk_body();
        listen(&reactor, endpoint, tls, move |_peer| {
            Bulk::new(body.clone())
        })?
    } else {
        listen(&reactor, endpoint, tls, |_peer| Echo { transport: None })?
    };
    log::info!("listening on {}", port.host());
    reactor.run()
}

//! Echoes back whatever each client sends.
//!
//! ```text
//! cargo run --example echo_server [ENDPOINT] [THREADS]   # default 127.0.0.1:8007, 1 thread
//! cargo run --example echo_server -- unix:/tmp/echo.sock
//! ```
//!
//! `ENDPOINT` is an address (`127.0.0.1:8007`) or an endpoint string
//! (`tcp:8007:interface=127.0.0.1`, `unix:/tmp/echo.sock`), listened on
//! with [`Reactor::server_from_string`].
//!
//! With several threads, each runs its own reactor listening on the same
//! port (SO_REUSEPORT) and the kernel spreads connections across them: how
//! a twill server uses several cores. A Unix socket has no such sharing,
//! so several threads need a TCP endpoint.
//!
//! A client that sends and never reads its echo does not make the server
//! buffer what it sends: with flow control on, a connection whose replies
//! cannot leave (its write buffer over the 64 KiB high watermark) stops
//! reading until they drain, so the client's data waits in the kernel's
//! buffers and then in the client. Twisted writes this as
//! `transport.registerProducer(transport, True)`; asyncio as
//! `await writer.drain()` after each write.

use std::io;
use std::net::SocketAddr;

use twill::net::endpoint::{parse_server_or_addr, ServerDescription};
use twill::{Bytes, Protocol, Reactor, Transport};

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

const USAGE: &str = "usage: echo_server [ENDPOINT] [THREADS]   (ENDPOINT: an address \
                     (127.0.0.1:8007, the default) or an endpoint string \
                     (tcp:8007:interface=127.0.0.1, unix:/tmp/echo.sock))";

/// Reports a command line that cannot work, as the usage does.
fn bad_command_line(problem: impl std::fmt::Display) -> ! {
    eprintln!("echo_server: {problem}\n{USAGE}");
    std::process::exit(2);
}

fn main() -> io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args = std::env::args().skip(1);
    let endpoint = args.next().unwrap_or_else(|| "127.0.0.1:8007".into());
    let threads: usize = match args.next() {
        Some(n) => n
            .parse()
            .unwrap_or_else(|err| bad_command_line(format!("THREADS {n:?}: {err}"))),
        None => 1,
    };
    let description = parse_server_or_addr(&endpoint).unwrap_or_else(|err| bad_command_line(err));
    let reactor = Reactor::new()?;
    if threads <= 1 {
        let port = reactor.server_from_string(&endpoint, |_peer| Echo { transport: None })?;
        log::info!("listening on {}", port.host());
        return reactor.run();
    }
    let ServerDescription::Tcp {
        interface, port, ..
    } = description
    else {
        bad_command_line(format!(
            "{threads} threads share a port with SO_REUSEPORT, which needs a TCP endpoint, \
             not {endpoint:?}"
        ));
    };
    let port = reactor.listen_tcp_reuse_port(SocketAddr::new(interface, port), |_peer| Echo {
        transport: None,
    })?;
    let bound = port.host().tcp().expect("a TCP port");
    let mut workers = Vec::new();
    for _ in 1..threads {
        let (ready, wait) = std::sync::mpsc::channel();
        workers.push(std::thread::spawn(move || -> io::Result<()> {
            let reactor = Reactor::new()?;
            let listening = reactor.listen_tcp_reuse_port(bound, |_peer| Echo { transport: None });
            let started = listening.as_ref().map(|_| ()).map_err(|e| e.kind());
            let _ = ready.send(started);
            listening?;
            reactor.run()
        }));
        wait.recv()
            .map_err(|_| io::Error::other("a worker thread died"))?
            .map_err(io::Error::from)?;
    }
    log::info!("listening on {bound} with {threads} reactor threads");
    let result = reactor.run();
    for worker in workers {
        worker
            .join()
            .map_err(|_| io::Error::other("a worker thread panicked"))??;
    }
    result
}

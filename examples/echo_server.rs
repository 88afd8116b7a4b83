//! Echoes back whatever each client sends.
//!
//! ```text
//! cargo run --example echo_server [ADDR] [THREADS]   # default 127.0.0.1:8007, 1 thread
//! ```
//!
//! With several threads, each runs its own reactor listening on the same
//! port (SO_REUSEPORT) and the kernel spreads connections across them: how
//! a twill server uses several cores.
//!
//! A client that sends and never reads its echo does not make the server
//! buffer what it sends: with flow control on, a connection whose replies
//! cannot leave (its write buffer over the 64 KiB high watermark) stops
//! reading until they drain, so the client's data waits in the kernel's
//! buffers and then in the client. Twisted writes this as
//! `transport.registerProducer(transport, True)`; asyncio as
//! `await writer.drain()` after each write.

use std::io;

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

fn main() -> io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8007".into());
    let threads: usize = match args.next() {
        Some(n) => n
            .parse()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
        None => 1,
    };
    let reactor = Reactor::new()?;
    if threads <= 1 {
        let port = reactor.listen_tcp(addr.as_str(), |_peer| Echo { transport: None })?;
        log::info!("listening on {}", port.host());
        return reactor.run();
    }
    let port = reactor.listen_tcp_reuse_port(addr.as_str(), |_peer| Echo { transport: None })?;
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

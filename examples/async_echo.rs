//! Echoes back whatever each client sends, written as an `async fn` on
//! streams (asyncio's `start_server`, `reader.read`, `writer.write`,
//! `await writer.drain()`) instead of as a `Protocol`: the starting point
//! for a server that reads as straight-line code, and the server
//! `twill_async` of the echo benchmark (`benches/`, `echo_bench`).
//!
//! ```text
//! cargo run --example async_echo [ENDPOINT]   # default 127.0.0.1:8007
//! nc 127.0.0.1 8007                          # type lines; each comes back
//! cargo run --example async_echo -- unix:/tmp/echo.sock
//! nc -U /tmp/echo.sock
//! ```
//!
//! `ENDPOINT` is an address (`127.0.0.1:8007`) or an endpoint string
//! (`tcp:8007:interface=127.0.0.1`, `unix:/tmp/echo.sock`), listened on
//! with [`Reactor::server_from_string`].
//! [`stream::serve`] makes the handler a factory for it.
//!
//! Each connection gets a task of its own, on the reactor's thread, that
//! reads whatever has arrived (up to 64 KiB) and writes it back. Nothing
//! is copied: `read` splits the bytes off the reader's buffer and `write`
//! queues that same buffer on the connection.
//!
//! Awaiting `drain` after each write is the backpressure: a client that
//! sends and never reads its echo makes the task wait once the
//! connection's write buffer is over 64 KiB, so it stops reading, and the
//! client's data waits in the kernel's buffers and then in the client,
//! not in the server. When the client closes its side, the task sends what
//! is left and returns, and the connection closes.
//!
//! When ready it logs `listening on ADDR`; SIGINT and SIGTERM stop it.

use std::io;

use twill::net::endpoint::parse_server_or_addr;
use twill::stream::{self, StreamReader, StreamWriter};
use twill::Reactor;

/// The most one read takes: what a single read from the socket brings in.
const READ_MAX: usize = 64 * 1024;

async fn echo(mut reader: StreamReader, writer: StreamWriter) {
    loop {
        let data = match reader.read(READ_MAX).await {
            Ok(data) if data.is_empty() => break, // the client closed its side
            Ok(data) => data,
            Err(err) => {
                log::debug!("{}: {err}", writer.peer());
                break;
            }
        };
        writer.write(data);
        if writer.drain().await.is_err() {
            break; // the connection is gone: nothing written can leave
        }
    }
}

const USAGE: &str = "usage: async_echo [ENDPOINT]   (ENDPOINT: an address \
                     (127.0.0.1:8007, the default) or an endpoint string \
                     (tcp:8007:interface=127.0.0.1, unix:/tmp/echo.sock))";

fn main() -> io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let endpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8007".into());
    if let Err(err) = parse_server_or_addr(&endpoint) {
        eprintln!("async_echo: {err}\n{USAGE}");
        std::process::exit(2);
    }
    let reactor = Reactor::new()?;
    let port = reactor.server_from_string(&endpoint, stream::serve(echo))?;
    log::info!("listening on {}", port.host());
    reactor.run()
}

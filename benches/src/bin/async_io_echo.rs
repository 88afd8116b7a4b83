//! `async_io_echo`: a minimal echo server on `async-io` + `async-executor`.
//!
//! ```text
//! async_io_echo [127.0.0.1:0]
//! ```
//!
//! The idiomatic smol design: `async_io::block_on(LocalExecutor::run(..))`
//! on one thread, one task per connection over `Async<TcpStream>`
//! (TCP_NODELAY). Each task waits with `readable().await` and then does one
//! non-blocking `read` into its own 64 KiB buffer — the cheapest read pattern
//! on async-io (one `recv` per message; `AsyncRead` would cost up to three)
//! — and echoes it with `write_all`. This is the baseline a task-per-
//! connection framework on the same crates would get.
//!
//! When ready it prints `listening on ADDR` (the bound address) to stderr.
//! It runs until killed.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::exit;

use async_executor::LocalExecutor;
use async_io::Async;
use futures_lite::AsyncWriteExt;
use twill_bench::{loopback_addr, Args, CliError};

fn main() {
    if let Err(e) = run() {
        eprintln!("async_io_echo: {e}");
        exit(1);
    }
}

fn run() -> Result<(), CliError> {
    let mut args = Args::from_env();
    if args.wants_help() {
        println!("usage: async_io_echo [127.0.0.1:PORT]");
        return Ok(());
    }
    let addr = loopback_addr(&args.positional().unwrap_or_else(|| "127.0.0.1:0".into()))?;
    args.finish()?;

    let ex = LocalExecutor::new();
    async_io::block_on(ex.run(serve(&ex, addr)))?;
    Ok(())
}

/// Accepts connections forever, spawning one echo task for each.
async fn serve(ex: &LocalExecutor<'_>, addr: SocketAddr) -> io::Result<()> {
    let listener = Async::<TcpListener>::bind(addr)?;
    eprintln!("listening on {}", listener.get_ref().local_addr()?);
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(a) => a,
            // e.g. EINTR or ECONNABORTED: keep serving.
            Err(_) => continue,
        };
        stream.get_ref().set_nodelay(true)?;
        ex.spawn(echo(stream)).detach();
    }
}

/// Echoes one connection until EOF or an error.
async fn echo(stream: Async<TcpStream>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        // `Async` put the socket in non-blocking mode.
        let n = match stream.get_ref().read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                continue
            }
            Err(_) => return,
        };
        if (&stream).write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

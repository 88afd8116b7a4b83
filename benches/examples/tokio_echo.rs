//! `tokio_echo`: the echo server a tokio user would write, as a baseline.
//!
//! ```text
//! cargo run --release -p twill-bench --example tokio_echo -- [127.0.0.1:0] [current_thread|multi_thread [WORKERS]]
//! ```
//!
//! One task per connection (TCP_NODELAY), each reading into its own 16 KiB
//! buffer and writing back what it read with `write_all`: the shape of
//! tokio's own echo example, with a buffer large enough that a 4 KiB message
//! does not take several reads. `current_thread` (the default) runs
//! everything on one thread, like twill; `multi_thread` uses tokio's
//! work-stealing runtime with `WORKERS` worker threads, by default one per
//! core (`group_bench` passes the twill group's worker count).
//!
//! When ready it prints `listening on ADDR` to stderr. It runs until killed.

mod runtime;

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BUFFER: usize = 16 * 1024;

async fn echo(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
}

async fn serve(addr: String) -> io::Result<()> {
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = echo(stream).await;
        });
    }
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".into());
    runtime::from_args(&mut args)?.block_on(serve(addr))
}

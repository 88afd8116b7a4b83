//! `tokio_unix_echo`: `tokio_echo` on a Unix stream socket, the baseline
//! for `unix_bench`.
//!
//! ```text
//! cargo run --release -p twill-bench --example tokio_unix_echo -- PATH
//! ```
//!
//! One task per connection on the current-thread runtime, each reading into
//! its own 16 KiB buffer and writing back what it read with `write_all`:
//! `tokio_echo`'s shape, on a `UnixListener` bound at `PATH` (a stale
//! socket file there is removed first). When ready it prints
//! `listening on unix:PATH` to stderr. It runs until killed.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

const BUFFER: usize = 16 * 1024;

async fn echo(mut stream: UnixStream) -> io::Result<()> {
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
}

async fn serve(path: String) -> io::Result<()> {
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(&path)?;
    eprintln!("listening on unix:{path}");
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = echo(stream).await;
        });
    }
}

fn main() -> io::Result<()> {
    let path = std::env::args().nth(1).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "usage: tokio_unix_echo PATH")
    })?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(path))
}

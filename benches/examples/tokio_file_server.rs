//! `tokio_file_server`: sends a file to every client, then closes; the
//! tokio baseline of `sendfile_bench`.
//!
//! ```text
//! cargo run --release -p twill-bench --example tokio_file_server -- ADDR FILE
//! ```
//!
//! One task per connection on the current-thread runtime (one thread, like
//! twill): `tokio::io::copy_buf` from a `tokio::fs::File` read through a
//! 64 KiB `BufReader` (the size twill's `FileSender` reads; `io::copy`'s
//! own 8 KiB buffer would cost eight trips to the blocking pool per 64 KiB)
//! to the `TcpStream`, then a shutdown. When listening it prints `listening on ADDR` to
//! stderr. It runs until killed.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const CHUNK: usize = 64 * 1024;

async fn send(mut stream: TcpStream, path: Arc<PathBuf>) -> io::Result<u64> {
    let file = tokio::fs::File::open(&*path).await?;
    let mut file = BufReader::with_capacity(CHUNK, file);
    let n = tokio::io::copy_buf(&mut file, &mut stream).await?;
    stream.shutdown().await?;
    Ok(n)
}

async fn serve(addr: String, path: Arc<PathBuf>) -> io::Result<()> {
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let path = path.clone();
        tokio::spawn(async move {
            if let Err(err) = send(stream, path).await {
                eprintln!("sending the file failed: {err}");
            }
        });
    }
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(path)) = (args.next(), args.next()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "usage: tokio_file_server ADDR FILE",
        ));
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(addr, Arc::new(PathBuf::from(path))))
}

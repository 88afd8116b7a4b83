//! `tokio_spreader`: the "Spreader" of `examples/broadcast_server.rs`
//! written the way a tokio user would, as the baseline for the fan-out
//! benchmark (`fanout_bench`).
//!
//! ```text
//! cargo run --release -p twill-bench --example tokio_spreader -- [127.0.0.1:0] [current_thread|multi_thread [WORKERS]]
//! ```
//!
//! Same wire behaviour as twill's example: each client is welcomed with
//! `Welcome to Spread Site, you are client user number N!\n` (N = the
//! clients connected now), every chunk a client sends is relayed as it was
//! read to every other client, and a chunk that is `close` (trailing
//! whitespace ignored) closes the sender's connection.
//!
//! The design is the one of tokio's own chat example: the clients are a
//! shared list of unbounded `mpsc` senders of [`Bytes`], and each
//! connection has two tasks. The reader reads into its own 64 KiB buffer,
//! copies the chunk once into a `Bytes` and sends a reference-counted clone
//! to every other client's channel. The writer takes everything queued on
//! its channel at once (`recv_many`) and writes it with a single
//! `write_all` (gathered into one buffer when there are several pieces), so
//! a busy client costs one `write` per wake-up, not one per message.
//! TCP_NODELAY is on.
//!
//! `current_thread` (the default) runs everything on one thread, like
//! twill; `multi_thread` uses tokio's work-stealing runtime with `WORKERS`
//! worker threads, by default one per core (`fanout_bench --workers N`
//! passes N).
//!
//! When ready it prints `listening on ADDR` to stderr. It runs until killed.

mod runtime;

use std::io;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// Bytes read per `read` at most (as twill and Twisted).
const READ_BUFFER: usize = 64 * 1024;
/// Pieces a writer takes off its channel per wake-up at most.
const WRITE_BATCH: usize = 256;

/// The connected clients, in the order they came: an id and the sending
/// side of the client's outgoing channel.
type Clients = Arc<Mutex<Vec<(u64, UnboundedSender<Bytes>)>>>;

async fn client(stream: TcpStream, id: u64, clients: Clients) {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let (tx, rx) = unbounded_channel();
    {
        let mut list = clients.lock().unwrap();
        // Queued before the client can appear in anyone's fan-out, so the
        // welcome is the first thing it receives.
        let number = list.len() + 1;
        let _ = tx.send(Bytes::from(format!(
            "Welcome to Spread Site, you are client user number {number}!\n"
        )));
        list.push((id, tx));
    }
    tokio::spawn(write_loop(writer, rx));
    read_loop(reader, id, &clients).await;
    // Dropping the last sender ends the writer once it has sent what is
    // queued; it then drops its half, which shuts down our sending side.
    clients.lock().unwrap().retain(|(other, _)| *other != id);
}

async fn read_loop(mut reader: OwnedReadHalf, id: u64, clients: &Clients) {
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let data = &buf[..n];
        if data.trim_ascii_end() == b"close" {
            return;
        }
        let chunk = Bytes::copy_from_slice(data);
        for (other, tx) in clients.lock().unwrap().iter() {
            if *other != id {
                let _ = tx.send(chunk.clone());
            }
        }
    }
}

async fn write_loop(mut writer: OwnedWriteHalf, mut rx: UnboundedReceiver<Bytes>) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let mut gathered = Vec::new();
    while rx.recv_many(&mut batch, WRITE_BATCH).await > 0 {
        let result = if let [one] = &batch[..] {
            writer.write_all(one).await
        } else {
            gathered.clear();
            for piece in &batch {
                gathered.extend_from_slice(piece);
            }
            writer.write_all(&gathered).await
        };
        batch.clear();
        if result.is_err() {
            return;
        }
    }
}

async fn serve(addr: String) -> io::Result<()> {
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("listening on {}", listener.local_addr()?);
    let clients = Clients::default();
    for id in 0.. {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(client(stream, id, clients.clone()));
    }
    Ok(())
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".into());
    runtime::from_args(&mut args)?.block_on(serve(addr))
}

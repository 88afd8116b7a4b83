//! `tungstenite_echo`: the WebSocket echo server a tokio-tungstenite user
//! would write, as the baseline for `ws_bench`.
//!
//! ```text
//! cargo run --release -p twill-bench --example tungstenite_echo -- [127.0.0.1:0] [--read-buffer BYTES]
//! ```
//!
//! tokio-tungstenite's `accept_async` (the HTTP/1.1 upgrade handshake) on
//! tokio's current-thread runtime (one thread, like twill's reactor), a
//! task per connection that forwards every binary or text message back,
//! the shape of tokio-tungstenite's own echo-server example: the stream
//! is split and its messages `forward`ed into the sink, which flushes only
//! when no further message is already read, so messages that arrived
//! together leave in one write. Pings are answered and closes completed
//! by tungstenite itself.
//!
//! `--read-buffer BYTES` sets tungstenite's `read_buffer_size` (its
//! default is 128 KiB, which it zero-fills as it reads: with small
//! messages that `memset` is most of the server's time); without it the
//! defaults are kept, as most users would.
//! When bound it prints `listening on ADDR` to stderr. It runs until
//! killed.

use std::io;

use futures_util::{future, StreamExt, TryStreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Error;

async fn echo(stream: TcpStream, config: Option<WebSocketConfig>) -> Result<(), Error> {
    let (write, read) = tokio_tungstenite::accept_async_with_config(stream, config)
        .await?
        .split();
    // tungstenite queues pongs and the closing reply itself; only data
    // messages go back.
    read.try_filter(|message| future::ready(message.is_binary() || message.is_text()))
        .forward(write)
        .await
}

async fn serve(addr: String, config: Option<WebSocketConfig>) -> io::Result<()> {
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            // A client that goes away without a close frame is its own
            // business.
            let _ = echo(stream, config).await;
        });
    }
}

fn main() -> io::Result<()> {
    let mut addr = "127.0.0.1:0".to_string();
    let mut config = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--read-buffer" {
            let size = args
                .next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| io::Error::other("--read-buffer needs a size in bytes"))?;
            config = Some(WebSocketConfig::default().read_buffer_size(size));
        } else {
            addr = arg;
        }
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(addr, config))
}

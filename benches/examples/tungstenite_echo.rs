//! `tungstenite_echo`: the WebSocket echo server a tokio-tungstenite user
//! would write, as the baseline for `ws_bench`.
//!
//! ```text
//! cargo run --release -p twill-bench --example tungstenite_echo -- [127.0.0.1:0]
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
//! When bound it prints `listening on ADDR` to stderr. It runs until
//! killed.

use std::io;

use futures_util::{future, StreamExt, TryStreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Error;

async fn echo(stream: TcpStream) -> Result<(), Error> {
    let (write, read) = tokio_tungstenite::accept_async(stream).await?.split();
    // tungstenite queues pongs and the closing reply itself; only data
    // messages go back.
    read.try_filter(|message| future::ready(message.is_binary() || message.is_text()))
        .forward(write)
        .await
}

async fn serve(addr: String) -> io::Result<()> {
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            // A client that goes away without a close frame is its own
            // business.
            let _ = echo(stream).await;
        });
    }
}

fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(addr))
}

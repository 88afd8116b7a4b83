//! `hyper_hello`: the hello-world HTTP/1.1 server a hyper user would write,
//! as the baseline for `http_bench`.
//!
//! ```text
//! cargo run --release -p twill-bench --example hyper_hello -- [127.0.0.1:0]
//! ```
//!
//! hyper 1.x's HTTP/1 server connection on tokio's current-thread runtime
//! (one thread, like twill's reactor), a task per connection, keep-alive
//! on, and `pipeline_flush(true)` so that the responses to pipelined
//! requests leave in one write, as hyper's documentation allows. Every
//! request gets `200 OK` with the body `Hello, World!`; hyper adds
//! `content-length` and `date`. When bound it prints `listening on ADDR` to
//! stderr. It runs until killed.

use std::convert::Infallible;
use std::io;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The response body every request gets.
const HELLO: &[u8] = b"Hello, World!";

async fn hello(_request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(HELLO))))
}

async fn serve(addr: String) -> io::Result<()> {
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            // A client that goes away mid-request is its own business.
            let _ = http1::Builder::new()
                .keep_alive(true)
                .pipeline_flush(true)
                .serve_connection(TokioIo::new(stream), service_fn(hello))
                .await;
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

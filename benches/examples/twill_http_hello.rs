//! `twill_http_hello`: the hello-world HTTP/1.1 server on twill, the
//! server `http_bench` measures.
//!
//! ```text
//! cargo run --release -p twill-bench --example twill_http_hello -- [127.0.0.1:0]
//! ```
//!
//! `twill_protocols::http::HttpServer` with a handler that answers every
//! request with `200 OK` and the body `Hello, World!`, at once (an already
//! fired Deferred), on one reactor. The server adds `Content-Length`,
//! `Date` and `Server`, keeps connections alive and answers pipelined
//! requests in order. When bound it prints `listening on ADDR` to stderr.
//! It runs until killed.

use http::{Request, Response};
use twill::Bytes;
use twill_protocols::http::{Body, HttpServer};

/// The response body every request gets.
const HELLO: &str = "Hello, World!";

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let server = HttpServer::new(|_request: Request<Bytes>| {
        twill::defer::succeed(Response::new(Body::from(HELLO)))
    });
    let reactor = twill::Reactor::new()?;
    let port = reactor.listen_tcp(addr.as_str(), server)?;
    eprintln!("listening on {}", port.host());
    reactor.run()
}

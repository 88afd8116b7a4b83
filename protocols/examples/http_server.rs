//! A small HTTP/1.1 server on [`HttpServer`]: a greeting, an echo, a
//! streamed body and the files of a folder.
//!
//! ```text
//! cargo run -p twill-protocols --features http --example http_server -- [ADDR] [--root DIR]
//! curl http://127.0.0.1:8080/                     # Hello, World!
//! curl -d 'some data' http://127.0.0.1:8080/echo  # the body back, same type
//! curl http://127.0.0.1:8080/stream?lines=5       # chunked, written as the client reads
//! curl http://127.0.0.1:8080/files/README.md      # a file of DIR (default: .)
//! curl -r 0-99 http://127.0.0.1:8080/files/README.md
//! ```
//!
//! `ADDR` defaults to `127.0.0.1:8080`. Files are served by
//! [`StaticFiles`] (ranges, `If-Modified-Since`, `sendfile(2)` for the
//! bytes). `/stream` writes its lines through a [`BodyWriter`] only while
//! the connection is writable, so a client that reads slowly never makes
//! the server buffer more than the connection's high watermark. SIGINT or
//! SIGTERM stops the server after the answers in progress are written.

use std::rc::Rc;

use http::header::CONTENT_TYPE;
use http::{Method, Request, Response, StatusCode};
use twill::defer::{succeed, Deferred};
use twill::Bytes;
use twill_protocols::http::{Body, BodyWriter, HttpServer, StaticFiles};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut addr = "127.0.0.1:8080".to_string();
    let mut root = ".".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--root" => root = args.next().ok_or("--root needs a folder")?,
            "-h" | "--help" => {
                println!("usage: http_server [ADDR] [--root DIR]");
                return Ok(());
            }
            other => addr = other.to_string(),
        }
    }
    let files = Rc::new(StaticFiles::new(&root)?);
    let server = HttpServer::new(move |request: Request<Bytes>| route(&files, request));
    let reactor = twill::Reactor::new()?;
    let port = reactor.listen_tcp(addr.as_str(), server)?;
    log::info!("serving http://{} (files from {root})", port.host());
    reactor.run()?;
    Ok(())
}

fn route(files: &StaticFiles, request: Request<Bytes>) -> Deferred<Response<Body>> {
    let path = request.uri().path();
    let response = match (request.method(), path) {
        (&Method::GET | &Method::HEAD, "/") => Response::new(Body::from("Hello, World!\n")),
        (&Method::POST, "/echo") => {
            let kind = request.headers().get(CONTENT_TYPE).cloned();
            let mut response = Response::new(Body::Full(request.into_body()));
            if let Some(kind) = kind {
                response.headers_mut().insert(CONTENT_TYPE, kind);
            }
            response
        }
        (&Method::GET | &Method::HEAD, "/stream") => {
            let lines = query_number(&request, "lines").unwrap_or(10);
            Response::new(Body::stream(move |writer| write_lines(writer, 1, lines)))
        }
        (_, path) if path.starts_with("/files/") => {
            files.serve_path(&request, &path["/files".len()..])
        }
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::from("not found\n"))
            .expect("a valid response"),
    };
    succeed(response)
}

/// Writes lines `next..=last`, pausing whenever the connection's buffer is
/// full and going on once it drains.
fn write_lines(writer: BodyWriter, mut next: u64, last: u64) {
    while next <= last {
        if !writer.is_open() {
            return;
        }
        if !writer.is_writable() {
            let again = writer.clone();
            writer.when_writable(move || write_lines(again, next, last));
            return;
        }
        writer.write(format!("line {next}\n"));
        next += 1;
    }
    writer.finish();
}

fn query_number(request: &Request<Bytes>, name: &str) -> Option<u64> {
    request
        .uri()
        .query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| value.parse().ok())
}

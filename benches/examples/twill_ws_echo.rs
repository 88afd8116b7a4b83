//! `twill_ws_echo`: the WebSocket echo server on twill, the server
//! `ws_bench` measures.
//!
//! ```text
//! cargo run --release -p twill-bench --example twill_ws_echo -- [127.0.0.1:0] [--session]
//! ```
//!
//! twill's `HttpServer` takes the opening handshake, and every text or
//! binary message is sent back. Two ways:
//!
//! - by default, the WebSocket API: the handler answers each request with
//!   `websocket::accept(&request, echo)`, where `echo` is a closure
//!   `|ws, message| ws.send(message)` (a
//!   [`WebSocketHandler`](twill_protocols::websocket::WebSocketHandler)); the
//!   [`WebSocketProtocol`](twill_protocols::websocket::WebSocketProtocol)
//!   underneath answers pings, runs the close handshake, and refuses bad
//!   handshakes;
//! - with `--session`, the codec layer by hand: a request that
//!   `websocket::check_request` accepts gets `101 Switching Protocols`
//!   with its `Sec-WebSocket-Accept` and a [`Body::Upgrade`] that hands
//!   the connection to [`SessionEcho`], which reads straight into a
//!   [`WebSocketSession`]'s input ([`Protocol::get_buffer`]), decodes and
//!   writes every message back, the frames one read produced in one
//!   write; any other request gets `400`. What the API's layer costs over
//!   it is the difference between the two.
//!
//! When bound it prints `listening on ADDR` to stderr. It runs until
//! killed.

use http::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, UPGRADE};
use http::{Request, Response, StatusCode};
use twill::{Bytes, BytesMut, Protocol, Transport};
use twill_protocols::http::{Body, HttpServer, Upgrade};
use twill_protocols::websocket::{
    self, check_request, Message, MessageCodec, Received, Role, WebSocket, WebSocketSession,
};

/// The session of one WebSocket connection, sending back what it gets:
/// the codec layer by hand (`--session`).
struct SessionEcho {
    transport: Transport,
    session: WebSocketSession,
    /// Bytes read and not yet decoded.
    input: BytesMut,
    /// Frames to send, written out once per read.
    output: BytesMut,
}

impl SessionEcho {
    fn new(transport: &Transport) -> SessionEcho {
        // A client that sends and never reads stops being read once its
        // echoes fill the write buffer, instead of growing it.
        transport.set_flow_control(true);
        SessionEcho {
            transport: transport.clone(),
            session: WebSocketSession::new(MessageCodec::new(Role::Server)),
            input: BytesMut::with_capacity(16 * 1024),
            output: BytesMut::with_capacity(16 * 1024),
        }
    }

    /// Decodes and answers everything `input` holds.
    fn echo_all(&mut self) {
        let mut done = false;
        loop {
            match self.session.receive(&mut self.input, &mut self.output) {
                Ok(Some(Received::Binary(data))) => self.send(Message::Binary(data)),
                Ok(Some(Received::Text(text))) => self.send(Message::Text(text)),
                Ok(Some(Received::Ping(_) | Received::Pong(_))) => {}
                Ok(Some(Received::Closed(_))) | Err(_) => {
                    done = true;
                    break;
                }
                Ok(None) => break,
            }
        }
        if !self.output.is_empty() {
            self.transport.write(self.output.split().freeze());
        }
        if done {
            // The closing frame (ours or the echo of the peer's) is in
            // the write buffer; the connection ends once it is sent.
            self.transport.lose_connection();
        }
    }

    fn send(&mut self, message: Message) {
        // Only a session that has begun closing refuses, and then the
        // message is dropped, as RFC 6455 has it.
        let _ = self.session.send(message, &mut self.output);
    }
}

impl Protocol for SessionEcho {
    fn data_received(&mut self, data: Bytes) {
        self.input.extend_from_slice(&data);
        self.echo_all();
    }

    fn get_buffer(&mut self) -> Option<&mut BytesMut> {
        Some(&mut self.input)
    }

    fn buffer_updated(&mut self, _appended: usize) {
        self.echo_all();
    }
}

/// The echo on the WebSocket API: every message sent back.
fn echo(ws: &WebSocket, message: Message) {
    // Only a connection that has begun closing refuses; the message is
    // then dropped, as RFC 6455 has it.
    let _ = ws.send(message);
}

/// `--session`: `101` with the handshake's answer and [`SessionEcho`], or
/// `400`.
fn open_session(request: Request<Bytes>) -> Response<Body> {
    let headers: Vec<(&str, &str)> = request
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    match check_request(&headers) {
        Ok(accept) => Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(UPGRADE, "websocket")
            .header(CONNECTION, "Upgrade")
            .header(SEC_WEBSOCKET_ACCEPT, accept)
            .body(Body::Upgrade(Upgrade::new(|transport| {
                Box::new(SessionEcho::new(transport))
            }))),
        Err(err) => Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(Body::from(format!("not a WebSocket handshake: {err}\n"))),
    }
    .expect("a valid response")
}

fn main() -> std::io::Result<()> {
    let mut addr = "127.0.0.1:0".to_string();
    let mut session = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--session" => session = true,
            _ => addr = arg,
        }
    }
    let reactor = twill::Reactor::new()?;
    let port = if session {
        let server = HttpServer::new(|request| twill::defer::succeed(open_session(request)));
        reactor.listen_tcp(addr.as_str(), server)?
    } else {
        let server = HttpServer::new(|request: Request<Bytes>| {
            twill::defer::succeed(websocket::accept(&request, echo))
        });
        reactor.listen_tcp(addr.as_str(), server)?
    };
    eprintln!("listening on {}", port.host());
    reactor.run()
}

//! The WebSocket client and server against peers that misbehave or race,
//! over 127.0.0.1: a connect Deferred cancelled mid-handshake, and both
//! sides closing at once.

#![cfg(feature = "websocket")]

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpListener;
use std::rc::Rc;
use std::time::Duration;

use http::Request;
use twill::{Bytes, Reactor};
use twill_protocols::http::HttpServer;
use twill_protocols::websocket::{accept, Message, WebSocket, WebSocketClient, WebSocketHandler};
use twill_test_support::reactor::{connect, run, serve};

/// Reads from `sock` until the end of a request head.
fn read_head(sock: &mut impl Read) -> Vec<u8> {
    let mut head = Vec::new();
    let mut buf = [0; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = sock.read(&mut buf).unwrap();
        assert!(n > 0, "EOF inside the head");
        head.extend_from_slice(&buf[..n]);
    }
    head
}

/// Whether the peer ended the connection (EOF or reset) before the read
/// timeout.
fn ended(sock: &mut impl Read) -> bool {
    let mut buf = [0; 1024];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(err) => return err.kind() == ErrorKind::ConnectionReset,
        }
    }
}

/// Cancelling the Deferred of a connection still in its handshake must
/// give the connection up, as cancelling Twisted's connect does: else it
/// would open later with nobody holding it (or wait out the handshake
/// timeout for nothing).
#[test]
fn cancelling_the_connect_deferred_mid_handshake_closes_the_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let reactor = Reactor::new().unwrap();
    let handle = reactor.handle();
    let server = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        read_head(&mut sock);
        // Never answers.
        let closed = ended(&mut sock);
        handle.stop();
        closed
    });
    let opened = Rc::new(RefCell::new(false));
    let flag = opened.clone();
    let handler = move |_: &WebSocket, _: Message| {};
    let connected = WebSocketClient::new("127.0.0.1", "/")
        .handshake_timeout(Duration::from_secs(60))
        .connect(addr, handler);
    connected.add_callback(move |ws: WebSocket| {
        *flag.borrow_mut() = true;
        Ok::<_, twill::defer::Failure>(ws)
    });
    twill::call_later(Duration::from_millis(100), move || connected.cancel());
    run(&reactor);
    assert!(
        server.join().unwrap(),
        "the cancelled connection was left waiting for the handshake"
    );
    assert!(!*opened.borrow());
}

/// How a connection ended: `on_close`'s code and reason.
type Ended = Rc<RefCell<Option<(Option<u16>, String)>>>;

/// Records how the connection ended.
struct Ending(Ended);

impl WebSocketHandler for Ending {
    fn on_open(&mut self, ws: &WebSocket) {
        // The server closes at once, while the client's Close is on its way.
        ws.close(1001, "going away").unwrap();
    }
    fn on_message(&mut self, _: &WebSocket, _: Message) {}
    fn on_close(&mut self, code: Option<u16>, reason: &str) {
        *self.0.borrow_mut() = Some((code, reason.to_string()));
        twill::call_later(Duration::ZERO, twill::stop);
    }
}

/// Both sides send a Close at once: each side's Close answers the other's,
/// the server closes the TCP connection, and `on_close` sees a code.
#[test]
fn both_sides_closing_at_once_finishes_the_handshake() {
    let reactor = Reactor::new().unwrap();
    let ending: Ended = Rc::default();
    let slot = ending.clone();
    let server = HttpServer::new(move |request: Request<Bytes>| {
        twill::defer::succeed(accept(&request, Ending(slot.clone())))
    });
    let got = serve(&reactor, server, |addr, _| {
        let mut sock = connect(addr);
        // The handshake and, in the same write, a masked Close 1000.
        let mut out = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            .to_vec();
        out.extend_from_slice(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]);
        sock.write_all(&out).unwrap();
        let mut all = read_head(&mut sock);
        let _ = sock.read_to_end(&mut all);
        let at = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let rest = all.split_off(at);
        (all, rest)
    });
    let (head, rest) = got;
    assert!(head.starts_with(b"HTTP/1.1 101 "));
    // The server's own Close (1001), once: it had sent it before it read
    // the client's, so it does not echo that one; then EOF.
    let mut expected = vec![0x88, 12, 0x03, 0xe9];
    expected.extend_from_slice(b"going away");
    assert_eq!(rest, expected);
    let (code, _) = ending.borrow().clone().expect("on_close ran");
    assert!(matches!(code, Some(1000 | 1001)), "{code:?}");
}

/// A masked client frame with a zero mask (the payload as is).
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut frame = vec![first, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    frame
}

const UPGRADE: &[u8] =
    b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A ping between the fragments of a message is answered at once, and the
/// message arrives whole.
#[test]
fn a_ping_between_fragments_is_answered_and_the_message_is_whole() {
    let reactor = Reactor::new().unwrap();
    let server = HttpServer::new(|request: Request<Bytes>| {
        let echo = |ws: &WebSocket, message: Message| {
            let _ = ws.send(message);
        };
        twill::defer::succeed(accept(&request, echo))
    });
    let rest = serve(&reactor, server, |addr, handle| {
        let mut sock = connect(addr);
        let mut out = UPGRADE.to_vec();
        out.extend(client_frame(0x01, b"Hel")); // text, not FIN
        out.extend(client_frame(0x89, b"p!")); // ping
        out.extend(client_frame(0x80, b"lo")); // continuation, FIN
        out.extend(client_frame(0x88, &[0x03, 0xe8])); // close 1000
        sock.write_all(&out).unwrap();
        let mut all = read_head(&mut sock);
        let _ = sock.read_to_end(&mut all);
        handle.stop();
        let at = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        all.split_off(at)
    });
    let mut expected = vec![0x8a, 2, b'p', b'!'];
    expected.extend_from_slice(&[0x81, 5]);
    expected.extend_from_slice(b"Hello");
    expected.extend_from_slice(&[0x88, 2, 0x03, 0xe8]);
    assert_eq!(rest, expected);
}

/// Timeouts of "forever" (`Duration::MAX`) must not overflow the clock.
#[test]
fn client_timeouts_of_duration_max_are_capped_not_a_panic() {
    let reactor = Reactor::new().unwrap();
    let server = HttpServer::new(|request: Request<Bytes>| {
        twill::defer::succeed(accept(&request, |_: &WebSocket, _: Message| {}))
    });
    let port = reactor.listen_tcp("127.0.0.1:0", server).unwrap();
    let addr = port.host().tcp().unwrap();
    let opened = Rc::new(RefCell::new(None));
    let slot = opened.clone();
    let connected = WebSocketClient::new("127.0.0.1", "/")
        .connect_timeout(Duration::MAX)
        .handshake_timeout(Duration::MAX)
        .connect(addr, |_: &WebSocket, _: Message| {});
    drop(connected.then_both(move |outcome| {
        *slot.borrow_mut() = Some(outcome.map(|_| ()).map_err(|f| f.to_string()));
        twill::stop();
        Ok::<(), twill::defer::Failure>(())
    }));
    run(&reactor);
    assert_eq!(opened.borrow().clone(), Some(Ok(())));
}

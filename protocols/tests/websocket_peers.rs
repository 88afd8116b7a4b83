//! WebSocket connections over 127.0.0.1: twill's client against twill's
//! server, Python's `websockets` against each, hostile peers speaking
//! hand-made frames over raw TCP, and the timers on a hand-moved clock.
//!
//! The Python tests use `$TWILL_TWISTED_PYTHON` if set, else
//! `twisted-venv/bin/python` under `$CARGO_TARGET_DIR` or the workspace's
//! `target` (made by `benches/venv.sh`); the first that can
//! `import websockets` runs
//! `websocket_peer.py`. With neither, they print "skipped: no websockets"
//! and pass.
//!
//! Every test is bounded: socket timeouts on the raw clients, a watchdog
//! on the reactor, a deadline on the Python peer.

#![cfg(feature = "websocket")]

use std::cell::{Cell, RefCell};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use twill::task::Clock;
use twill::testing::StringTransport;
use twill::{Protocol, Reactor, Transport};
use twill_protocols::http::HttpServer;
use twill_protocols::websocket::{
    self, ClientError, Message, Role, WebSocket, WebSocketAcceptor, WebSocketClient,
    WebSocketConfig, WebSocketHandler, WebSocketProtocol,
};
use twill_test_support::events::Log;
use twill_test_support::pressure;
use twill_test_support::reactor::run;

/// The key of the raw clients' handshakes, and its accept value.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

// ------------------------------------------------------------ the server

/// The server's handler: echoes, and obeys a few commands.
///
/// - `close CODE REASON`: begins the close handshake;
/// - `panic`: panics;
/// - `flood`: sends 64 KiB messages while the connection is writable,
///   64 MiB in all, recording the largest write buffer seen;
/// - `blind N`: sends N 64 KiB messages at once, ignoring writability.
struct Server {
    log: Log,
    largest_buffer: Rc<Cell<usize>>,
    stuck: Rc<RefCell<Option<mpsc::Sender<()>>>>,
}

impl WebSocketHandler for Server {
    fn on_open(&mut self, _ws: &WebSocket) {
        self.log.push("open");
    }

    fn on_message(&mut self, ws: &WebSocket, message: Message) {
        let text = match &message {
            Message::Text(text) => text.clone(),
            _ => String::new(),
        };
        if let Some(rest) = text.strip_prefix("close ") {
            let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
            ws.close(code.parse().unwrap(), reason).unwrap();
        } else if text == "panic" {
            panic!("the handler was told to panic");
        } else if text == "flood" {
            flood(ws.clone(), 64 * 1024 * 1024, self.largest_buffer.clone());
            let stuck = self.stuck.clone();
            pressure::when_stuck(ws.transport().clone(), move || {
                if let Some(tell) = stuck.borrow_mut().take() {
                    let _ = tell.send(());
                }
            });
        } else if let Some(count) = text.strip_prefix("blind ") {
            let chunk = Bytes::from(vec![7u8; 64 * 1024]);
            for _ in 0..count.parse::<usize>().unwrap() {
                let _ = ws.send_binary(chunk.clone());
                let size = ws.buffered_amount();
                self.largest_buffer.set(self.largest_buffer.get().max(size));
            }
        } else {
            let _ = ws.send(message);
        }
    }

    fn on_close(&mut self, code: Option<u16>, reason: &str) {
        self.log.push(format!("close {code:?} {reason}"));
    }
}

/// Sends `left` bytes in 64 KiB messages, only while writable.
fn flood(ws: WebSocket, mut left: usize, largest: Rc<Cell<usize>>) {
    let chunk = Bytes::from(vec![1u8; 64 * 1024]);
    while left > 0 && ws.is_writable() {
        if ws.send_binary(chunk.clone()).is_err() {
            return;
        }
        left = left.saturating_sub(chunk.len());
        largest.set(largest.get().max(ws.buffered_amount()));
    }
    if left > 0 && ws.is_open() {
        let again = ws.clone();
        ws.when_writable(move || flood(again, left, largest));
    }
}

/// What a test's server recorded: its handlers' events, and the largest
/// write buffer a flood saw.
#[derive(Clone, Default)]
struct Recorded {
    log: Log,
    largest_buffer: Rc<Cell<usize>>,
    /// Told once a flood's connection stopped draining.
    stuck: Rc<RefCell<Option<mpsc::Sender<()>>>>,
}

/// Listens on 127.0.0.1 with an HTTP server that upgrades every request
/// to a WebSocket connection (subprotocols `chat.v2` and `chat.v1`, that
/// order); returns its address.
fn listen(reactor: &Reactor, config: WebSocketConfig, recorded: &Recorded) -> SocketAddr {
    let recorded = recorded.clone();
    let acceptor = WebSocketAcceptor::new()
        .config(config)
        .protocols(["chat.v2", "chat.v1"]);
    let server = HttpServer::new(move |request: Request<Bytes>| {
        let handler = Server {
            log: recorded.log.clone(),
            largest_buffer: recorded.largest_buffer.clone(),
            stuck: recorded.stuck.clone(),
        };
        twill::defer::succeed(acceptor.accept(&request, handler))
    });
    let port = reactor.listen_tcp("127.0.0.1:0", server).unwrap();
    port.host().tcp().unwrap()
}

/// Runs the server with `config`, `client` on another thread with its
/// address (the reactor stops when the client returns), and returns the
/// client's result and what the server recorded.
fn with_server<R: Send + 'static>(
    config: WebSocketConfig,
    client: impl FnOnce(SocketAddr) -> R + Send + 'static,
) -> (R, Recorded) {
    with_recorded(config, Recorded::default(), client)
}

/// [`with_server`], recording into `recorded`.
fn with_recorded<R: Send + 'static>(
    config: WebSocketConfig,
    recorded: Recorded,
    client: impl FnOnce(SocketAddr) -> R + Send + 'static,
) -> (R, Recorded) {
    let reactor = Reactor::new().unwrap();
    let addr = listen(&reactor, config, &recorded);
    let handle = reactor.handle();
    let client = std::thread::spawn(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| client(addr)));
        handle.stop();
        result
    });
    run(&reactor);
    match client.join().unwrap() {
        Ok(result) => (result, recorded),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// The tests' options: 4 MiB messages, a 300 ms closing timer.
fn config() -> WebSocketConfig {
    WebSocketConfig::builder()
        .max_message_size(4 * 1024 * 1024)
        .closing_timeout(Duration::from_millis(300))
        .build()
        .unwrap()
}

// ------------------------------------------------------- the raw client

/// A raw TCP client that has done the opening handshake.
fn raw_connect(addr: SocketAddr) -> TcpStream {
    let mut stream = pressure::connect(addr);
    handshake(&mut stream);
    stream
}

/// A client's upgrade request, with `extra` header lines.
fn upgrade_request(extra: &str) -> String {
    format!(
        "GET /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Reads a response head, byte by byte so nothing after it is consumed.
fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

fn handshake(stream: &mut TcpStream) {
    stream.write_all(upgrade_request("").as_bytes()).unwrap();
    let head = read_head(stream);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
}

/// A frame's bytes, masked (as a client sends) if `mask`.
fn frame(fin: bool, opcode: u8, payload: &[u8], mask: bool) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    let mask_bit = if mask { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if mask {
        let key = [0x12, 0x34, 0x56, 0x78];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A client's masked frame.
fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(true, opcode, payload, true)
}

/// Reads one unmasked frame: its first byte (FIN, opcode) and payload.
fn read_frame(stream: &mut TcpStream) -> io::Result<(u8, Vec<u8>)> {
    let mut header = [0u8; 2];
    stream.read_exact(&mut header)?;
    assert_eq!(header[1] & 0x80, 0, "a server's frames are not masked");
    let length = match header[1] & 0x7f {
        126 => {
            let mut n = [0u8; 2];
            stream.read_exact(&mut n)?;
            u64::from(u16::from_be_bytes(n))
        }
        127 => {
            let mut n = [0u8; 8];
            stream.read_exact(&mut n)?;
            u64::from_be_bytes(n)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; usize::try_from(length).unwrap()];
    stream.read_exact(&mut payload)?;
    Ok((header[0], payload))
}

/// Reads frames until a Close; returns its code.
fn read_close(stream: &mut TcpStream) -> u16 {
    loop {
        let (first, payload) = read_frame(stream).expect("a Close frame");
        if first & 0x0f == 0x8 {
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

/// Reads until the server closes the connection (EOF or reset); fails if
/// it does not within the read timeout.
fn expect_closed(stream: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset => return,
            Err(err) => panic!("the server did not close the connection: {err}"),
        }
    }
}

/// The close events the server logged.
fn closes(recorded: &Recorded) -> Vec<String> {
    recorded
        .log
        .events()
        .into_iter()
        .filter(|event| event.starts_with("close"))
        .collect()
}

// ------------------------------------------------------- hostile peers

#[test]
fn an_unmasked_client_frame_is_closed_with_1002() {
    let ((), recorded) = with_server(config(), |addr| {
        let mut stream = raw_connect(addr);
        stream.write_all(&frame(true, 0x1, b"hi", false)).unwrap();
        assert_eq!(read_close(&mut stream), 1002);
        expect_closed(&mut stream);
    });
    let closes = closes(&recorded);
    assert_eq!(closes.len(), 1, "{closes:?}");
    assert!(closes[0].starts_with("close Some(1002)"), "{closes:?}");
}

#[test]
fn a_frame_length_over_2_63_is_closed_with_1002() {
    let ((), recorded) = with_server(config(), |addr| {
        let mut stream = raw_connect(addr);
        let mut header = vec![0x82, 0x80 | 127];
        header.extend_from_slice(&(1u64 << 63).to_be_bytes());
        header.extend_from_slice(&[1, 2, 3, 4]);
        stream.write_all(&header).unwrap();
        assert_eq!(read_close(&mut stream), 1002);
        expect_closed(&mut stream);
    });
    assert!(closes(&recorded)[0].starts_with("close Some(1002)"));
}

#[test]
fn oversized_frames_and_messages_are_closed_with_1009_from_their_headers() {
    let config = WebSocketConfig::builder()
        .max_frame_payload(64 * 1024)
        .max_message_size(100 * 1024)
        .build()
        .unwrap();
    let ((), recorded) = with_server(config, |addr| {
        // A 1 MiB frame's header alone: the answer comes before any payload.
        let mut stream = raw_connect(addr);
        let header = &masked(0x2, &vec![0; 1024 * 1024])[..14];
        stream.write_all(header).unwrap();
        assert_eq!(read_close(&mut stream), 1009);
        expect_closed(&mut stream);

        // Two 60 KiB fragments: the second one's header passes 100 KiB.
        let mut stream = raw_connect(addr);
        stream
            .write_all(&frame(false, 0x2, &vec![0; 60 * 1024], true))
            .unwrap();
        let second = frame(true, 0x0, &vec![0; 60 * 1024], true);
        stream.write_all(&second[..8]).unwrap();
        assert_eq!(read_close(&mut stream), 1009);
        expect_closed(&mut stream);
    });
    let closes = closes(&recorded);
    assert_eq!(closes.len(), 2, "{closes:?}");
    assert!(closes.iter().all(|c| c.starts_with("close Some(1009)")));
}

#[test]
fn invalid_utf8_text_is_closed_with_1007() {
    let ((), recorded) = with_server(config(), |addr| {
        let mut stream = raw_connect(addr);
        stream.write_all(&masked(0x1, b"ok \xff\xfe")).unwrap();
        assert_eq!(read_close(&mut stream), 1007);
        expect_closed(&mut stream);
    });
    assert!(closes(&recorded)[0].starts_with("close Some(1007)"));
}

#[test]
fn fragmented_messages_with_pings_between_are_reassembled() {
    let ((), _) = with_server(config(), |addr| {
        let mut stream = raw_connect(addr);
        stream
            .write_all(&frame(false, 0x1, "caf".as_bytes(), true))
            .unwrap();
        // "é" split between two fragments, a ping between them.
        stream.write_all(&frame(false, 0x0, b"\xc3", true)).unwrap();
        stream.write_all(&masked(0x9, b"ping!")).unwrap();
        stream
            .write_all(&frame(true, 0x0, b"\xa9 au lait", true))
            .unwrap();
        assert_eq!(read_frame(&mut stream).unwrap(), (0x8a, b"ping!".to_vec()));
        assert_eq!(
            read_frame(&mut stream).unwrap(),
            (0x81, "café au lait".as_bytes().to_vec())
        );
        stream.write_all(&masked(0x8, b"\x03\xe8bye")).unwrap();
        assert_eq!(read_close(&mut stream), 1000);
        expect_closed(&mut stream);
    });
}

#[test]
fn a_peer_that_never_answers_our_close_is_cut_after_the_closing_timer() {
    let ((), recorded) = with_server(config(), |addr| {
        let mut stream = raw_connect(addr);
        stream.write_all(&masked(0x1, b"close 1000 bye")).unwrap();
        let started = Instant::now();
        assert_eq!(read_close(&mut stream), 1000);
        // No answer: the server gives up after its 300 ms closing timer.
        expect_closed(&mut stream);
        assert!(started.elapsed() >= Duration::from_millis(250));
    });
    assert_eq!(
        closes(&recorded),
        ["close None the close handshake timed out"]
    );
}

#[test]
fn a_peer_that_stops_answering_pings_is_closed_with_1011() {
    let config = WebSocketConfig::builder()
        .ping_interval(Duration::from_millis(50))
        .pong_timeout(Duration::from_millis(100))
        .closing_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let ((), recorded) = with_server(config, |addr| {
        let mut stream = raw_connect(addr);
        // Answer the first ping, then play dead.
        let (first, payload) = read_frame(&mut stream).unwrap();
        assert_eq!(first, 0x89, "a ping");
        stream.write_all(&masked(0xa, &payload)).unwrap();
        assert_eq!(read_close(&mut stream), 1011);
        expect_closed(&mut stream);
    });
    let closes = closes(&recorded);
    assert_eq!(closes, ["close Some(1011) keep-alive ping timed out"]);
}

#[test]
fn a_reset_in_the_middle_of_a_frame_ends_the_connection_once() {
    let ((), recorded) = with_server(config(), |addr| {
        let mut stream = raw_connect(addr);
        let whole = masked(0x2, &[5; 1000]);
        stream.write_all(&whole[..500]).unwrap();
        let socket = socket2::SockRef::from(&stream);
        socket.set_linger(Some(Duration::ZERO)).unwrap();
        drop(stream);
        // The server's echo of a second connection shows it is still up.
        let mut other = raw_connect(addr);
        other.write_all(&masked(0x1, b"still there?")).unwrap();
        assert_eq!(read_frame(&mut other).unwrap().1, b"still there?");
        other.write_all(&masked(0x8, b"\x03\xe8")).unwrap();
        read_close(&mut other);
        expect_closed(&mut other);
    });
    let closes = closes(&recorded);
    assert_eq!(closes.len(), 2, "one on_close per connection: {closes:?}");
    assert!(
        closes
            .iter()
            .any(|c| c.starts_with("close None no close handshake")),
        "{closes:?}"
    );
}

#[test]
fn a_panic_in_on_message_closes_that_connection_with_1011_only() {
    let ((), recorded) = with_server(config(), |addr| {
        let mut bystander = raw_connect(addr);
        let mut stream = raw_connect(addr);
        stream.write_all(&masked(0x1, b"panic")).unwrap();
        assert_eq!(read_close(&mut stream), 1011);
        expect_closed(&mut stream);
        bystander.write_all(&masked(0x1, b"fine")).unwrap();
        assert_eq!(read_frame(&mut bystander).unwrap().1, b"fine");
        let mut newcomer = raw_connect(addr);
        newcomer.write_all(&masked(0x1, b"also fine")).unwrap();
        assert_eq!(read_frame(&mut newcomer).unwrap().1, b"also fine");
    });
    assert!(closes(&recorded)
        .iter()
        .any(|c| c == "close Some(1011) handler panicked in on_message"));
}

/// Panics as soon as the connection opens.
struct PanicOnOpen(Log);

impl WebSocketHandler for PanicOnOpen {
    fn on_open(&mut self, _ws: &WebSocket) {
        panic!("the handler fails at once");
    }

    fn on_message(&mut self, _ws: &WebSocket, _message: Message) {
        self.0.push("message");
    }

    fn on_close(&mut self, code: Option<u16>, reason: &str) {
        self.0.push(format!("close {code:?} {reason}"));
    }
}

#[test]
fn a_panic_in_on_open_closes_with_1011_and_still_reports_on_close() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let recorded = log.clone();
    let server = HttpServer::new(move |request: Request<Bytes>| {
        let handler = PanicOnOpen(recorded.clone());
        twill::defer::succeed(websocket::accept(&request, handler))
    });
    let addr = reactor
        .listen_tcp("127.0.0.1:0", server)
        .unwrap()
        .host()
        .tcp()
        .unwrap();
    let handle = reactor.handle();
    let client = std::thread::spawn(move || {
        let mut stream = raw_connect(addr);
        let code = read_close(&mut stream);
        expect_closed(&mut stream);
        handle.stop();
        code
    });
    run(&reactor);
    assert_eq!(client.join().unwrap(), 1011);
    assert_eq!(
        log.events(),
        ["close Some(1011) handler panicked in on_open"]
    );
}

#[test]
fn a_peer_that_never_reads_holds_the_server_to_its_high_watermark() {
    let recorded = Recorded::default();
    let (tell, stuck) = mpsc::channel();
    *recorded.stuck.borrow_mut() = Some(tell);
    let ((), recorded) = with_recorded(config(), recorded, move |addr| {
        let mut stream = pressure::connect_small(addr, pressure::SMALL_RCVBUF);
        handshake(&mut stream);
        stream.write_all(&masked(0x1, b"flood")).unwrap();
        // Read nothing until the server's writes stop draining; then go.
        stuck
            .recv_timeout(Duration::from_secs(10))
            .expect("the flood fills the buffers");
        let socket = socket2::SockRef::from(&stream);
        socket.set_linger(Some(Duration::ZERO)).unwrap();
    });
    let largest = recorded.largest_buffer.get();
    println!("largest write buffer while flooding a peer that does not read: {largest} bytes");
    // The flood stops at the 64 KiB high watermark; one 64 KiB message
    // (plus its header) can take it past.
    assert!(largest > 0, "the flood started");
    assert!(largest <= 128 * 1024 + 16, "largest write buffer {largest}");
}

#[test]
fn a_sender_that_ignores_writability_is_cut_at_the_write_buffer_cap() {
    let config = WebSocketConfig::builder()
        .write_buffer_max(1024 * 1024)
        .build()
        .unwrap();
    let ((), recorded) = with_server(config, |addr| {
        let mut stream = pressure::connect_small(addr, pressure::SMALL_RCVBUF);
        handshake(&mut stream);
        stream.write_all(&masked(0x1, b"blind 64")).unwrap();
        expect_closed(&mut stream);
    });
    let largest = recorded.largest_buffer.get();
    assert!(largest <= 1024 * 1024, "largest write buffer {largest}");
    let closes = closes(&recorded);
    assert_eq!(closes.len(), 1, "{closes:?}");
    assert!(closes[0].starts_with("close None"), "{closes:?}");
}

#[test]
fn bad_handshakes_get_400_or_426_and_no_upgrade() {
    let ((), recorded) = with_server(config(), |addr| {
        let mut stream = pressure::connect(addr);
        let no_key = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
                      Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
        stream.write_all(no_key.as_bytes()).unwrap();
        let head = read_head(&mut stream);
        assert!(head.starts_with("HTTP/1.1 400"), "{head}");
        let length: usize = head
            .lines()
            .find_map(|line| {
                line.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(|n| n.parse().unwrap())
            })
            .unwrap();
        let mut body = vec![0; length];
        stream.read_exact(&mut body).unwrap();
        assert!(String::from_utf8(body)
            .unwrap()
            .contains("Sec-WebSocket-Key"));

        // The same connection, kept alive: a wrong version.
        let old = upgrade_request("").replace("Version: 13", "Version: 8");
        stream.write_all(old.as_bytes()).unwrap();
        let head = read_head(&mut stream);
        assert!(head.starts_with("HTTP/1.1 426"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("sec-websocket-version: 13"),
            "{head}"
        );

        let mut stream = pressure::connect(addr);
        let post = upgrade_request("").replacen("GET", "POST", 1);
        stream.write_all(post.as_bytes()).unwrap();
        assert!(read_head(&mut stream).starts_with("HTTP/1.1 400"));
    });
    assert!(recorded.log.events().is_empty(), "no handler ran");
}

#[test]
fn frames_right_behind_the_request_reach_the_connection() {
    let ((), recorded) = with_server(config(), |addr| {
        // A good frame in the same write as the request.
        let mut stream = pressure::connect(addr);
        let mut bytes = upgrade_request("").into_bytes();
        bytes.extend(masked(0x1, b"early"));
        stream.write_all(&bytes).unwrap();
        assert!(read_head(&mut stream).starts_with("HTTP/1.1 101"));
        assert_eq!(read_frame(&mut stream).unwrap(), (0x81, b"early".to_vec()));
        stream.write_all(&masked(0x8, b"\x03\xe8")).unwrap();
        assert_eq!(read_close(&mut stream), 1000);
        expect_closed(&mut stream);

        // A bad one: the connection closes while it is being upgraded.
        let mut stream = pressure::connect(addr);
        let mut bytes = upgrade_request("").into_bytes();
        bytes.extend(frame(true, 0x1, b"unmasked", false));
        stream.write_all(&bytes).unwrap();
        assert!(read_head(&mut stream).starts_with("HTTP/1.1 101"));
        assert_eq!(read_close(&mut stream), 1002);
        expect_closed(&mut stream);
    });
    let closes = closes(&recorded);
    assert_eq!(
        closes.len(),
        2,
        "on_close once for each: {:?}",
        recorded.log.events()
    );
    assert!(closes[1].starts_with("close Some(1002)"), "{closes:?}");
}

#[test]
fn the_server_picks_its_preferred_subprotocol_among_those_offered() {
    let ((), _) = with_server(config(), |addr| {
        let mut stream = pressure::connect(addr);
        let offer = upgrade_request("Sec-WebSocket-Protocol: chat.v1, chat.v2\r\n");
        stream.write_all(offer.as_bytes()).unwrap();
        let head = read_head(&mut stream).to_ascii_lowercase();
        assert!(
            head.contains("sec-websocket-protocol: chat.v2\r\n"),
            "{head}"
        );

        let mut stream = pressure::connect(addr);
        let offer = upgrade_request("Sec-WebSocket-Protocol: other\r\n");
        stream.write_all(offer.as_bytes()).unwrap();
        let head = read_head(&mut stream).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert!(!head.contains("sec-websocket-protocol"), "{head}");
    });
}

#[test]
fn a_half_close_without_a_close_frame_ends_the_connection_once() {
    let ((), recorded) = with_server(config(), |addr| {
        let mut stream = raw_connect(addr);
        stream
            .write_all(&frame(false, 0x1, b"unfinished", true))
            .unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        expect_closed(&mut stream);
    });
    let closes = closes(&recorded);
    assert_eq!(closes.len(), 1, "{closes:?}");
    assert!(
        closes[0].starts_with("close None no close handshake"),
        "{closes:?}"
    );
}

/// Records whether flow control is on at its first read.
struct FlowWitness(Rc<Cell<Option<bool>>>, Transport);

impl Protocol for FlowWitness {
    fn data_received(&mut self, _: Bytes) {
        if self.0.get().is_none() {
            self.0.set(Some(self.1.flow_control()));
            twill::stop();
        }
    }
}

/// The memory bound of a WebSocket connection needs flow control, which
/// `WebSocketProtocol` turns on in `connection_made`, inside the
/// upgrade's `make`: the HTTP server must not turn it off afterwards.
#[test]
fn an_upgraded_protocol_keeps_the_flow_control_it_set_up() {
    let reactor = Reactor::new().unwrap();
    let seen = Rc::new(Cell::new(None));
    let witness = seen.clone();
    let server = HttpServer::new(move |_: Request<Bytes>| {
        let witness = witness.clone();
        let upgrade = twill_protocols::http::Upgrade::new(move |transport| {
            transport.set_flow_control(true);
            Box::new(FlowWitness(witness, transport.clone()))
        });
        let mut response = http::Response::new(twill_protocols::http::Body::Upgrade(upgrade));
        *response.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
        twill::defer::succeed(response)
    });
    let addr = reactor
        .listen_tcp("127.0.0.1:0", server)
        .unwrap()
        .host()
        .tcp()
        .unwrap();
    let client = std::thread::spawn(move || {
        let mut stream = pressure::connect(addr);
        stream.write_all(upgrade_request("").as_bytes()).unwrap();
        read_head(&mut stream);
        stream.write_all(b"after the upgrade").unwrap();
        stream
    });
    run(&reactor);
    drop(client.join().unwrap());
    assert_eq!(seen.get(), Some(true), "flow control as `make` left it");
}

// ------------------------------------------------ twill against twill

/// The twill client's side of the conversation: sends each message of
/// `script` once the previous one came back, then closes with 4000.
struct Scripted {
    script: Vec<Message>,
    next: usize,
    log: Log,
}

impl Scripted {
    fn send_next(&mut self, ws: &WebSocket) {
        match self.script.get(self.next) {
            Some(message) => ws.send(message.clone()).unwrap(),
            None => ws.close(4000, "client done").unwrap(),
        }
    }
}

impl WebSocketHandler for Scripted {
    fn on_open(&mut self, ws: &WebSocket) {
        self.log.push("client open");
        self.send_next(ws);
    }

    fn on_message(&mut self, ws: &WebSocket, message: Message) {
        assert_eq!(message, self.script[self.next]);
        self.log.push(format!("client echo {}", self.next));
        self.next += 1;
        self.send_next(ws);
    }

    fn on_close(&mut self, code: Option<u16>, reason: &str) {
        self.log.push(format!("client close {code:?} {reason}"));
        twill::stop();
    }
}

#[test]
fn twill_client_and_server_echo_and_close_with_codes() {
    let reactor = Reactor::new().unwrap();
    let recorded = Recorded::default();
    let addr = listen(&reactor, config(), &recorded);
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let script = vec![
        Message::Text("hello".into()),
        Message::Binary(Bytes::from_static(b"\x00\xff")),
        Message::Text(String::new()),
        Message::Binary(Bytes::from(big)),
        Message::Text("ünïcödé".into()),
    ];
    let client = WebSocketClient::new("127.0.0.1", "/chat").config(config());
    let log = recorded.log.clone();
    let handler = Scripted {
        script,
        next: 0,
        log: log.clone(),
    };
    let connected = client.connect(addr, handler);
    let opened = Rc::new(Cell::new(false));
    let seen = opened.clone();
    connected.add_callback(move |ws: WebSocket| {
        seen.set(true);
        assert_eq!(ws.role(), Role::Client);
        Ok(ws)
    });
    run(&reactor);
    assert!(opened.get());
    let events = log.events();
    assert!(events.contains(&"client echo 4".to_owned()), "{events:?}");
    assert!(
        events.contains(&"client close Some(4000) ".to_owned()),
        "the server echoes the code: {events:?}"
    );
    // The client stops the reactor from its on_close; the server's
    // on_close came first (it closes the TCP connection).
    assert!(
        events.contains(&"close Some(4000) client done".to_owned()),
        "{events:?}"
    );
}

/// A client that asks the server to close, pinging first.
struct AskToClose {
    log: Log,
}

impl WebSocketHandler for AskToClose {
    fn on_open(&mut self, ws: &WebSocket) {
        ws.ping("before").unwrap();
        ws.send_text("close 4001 server done").unwrap();
    }

    fn on_message(&mut self, _ws: &WebSocket, message: Message) {
        self.log.push(format!("client got {message:?}"));
    }

    fn on_close(&mut self, code: Option<u16>, reason: &str) {
        self.log.push(format!("client close {code:?} {reason}"));
        twill::stop();
    }
}

#[test]
fn a_server_initiated_close_reaches_the_twill_client_with_its_code() {
    let reactor = Reactor::new().unwrap();
    let recorded = Recorded::default();
    let keep_alive = WebSocketConfig::builder()
        .ping_interval(Duration::from_millis(10))
        .pong_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let addr = listen(&reactor, keep_alive, &recorded);
    let log = recorded.log.clone();
    drop(websocket::connect(
        addr,
        "127.0.0.1",
        "/",
        AskToClose { log: log.clone() },
    ));
    run(&reactor);
    let events = log.events();
    assert!(
        events.contains(&"client close Some(4001) server done".to_owned()),
        "{events:?}"
    );
    assert!(
        events.contains(&"close Some(4001) ".to_owned()),
        "{events:?}"
    );
    assert!(!events.iter().any(|e| e.starts_with("client got")));
}

/// Stops the reactor when its connection is over.
struct StopOnClose;

impl WebSocketHandler for StopOnClose {
    fn on_message(&mut self, _ws: &WebSocket, _message: Message) {}

    fn on_close(&mut self, _code: Option<u16>, _reason: &str) {
        twill::stop();
    }
}

#[test]
fn keep_alive_pings_answered_keep_the_connection_open() {
    let reactor = Reactor::new().unwrap();
    let recorded = Recorded::default();
    let keep_alive = WebSocketConfig::builder()
        .ping_interval(Duration::from_millis(5))
        .pong_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let addr = listen(&reactor, keep_alive, &recorded);
    let log = recorded.log.clone();
    let connected = websocket::connect(addr, "127.0.0.1", "/", StopOnClose);
    drop(connected.then(move |ws: WebSocket| {
        // Sixty ping intervals (three pong timeouts) later it is still open.
        twill::call_later(Duration::from_millis(300), move || {
            assert!(ws.is_open());
            ws.close(1000, "").unwrap();
        });
        Ok::<(), twill::defer::Failure>(())
    }));
    run(&reactor);
    assert_eq!(
        closes(&recorded),
        ["close Some(1000) "],
        "{:?}",
        log.events()
    );
}

#[test]
fn the_twill_client_gets_the_subprotocol_the_server_picked() {
    let reactor = Reactor::new().unwrap();
    let recorded = Recorded::default();
    let addr = listen(&reactor, config(), &recorded);
    let picked = Rc::new(RefCell::new(Vec::new()));
    for (index, offer) in [vec!["chat.v1", "chat.v2"], vec!["other"]]
        .into_iter()
        .enumerate()
    {
        let picked = picked.clone();
        let connected = WebSocketClient::new("127.0.0.1", "/")
            .protocols(offer)
            .connect(addr, |_: &WebSocket, _: Message| {});
        drop(connected.then(move |ws: WebSocket| {
            let mut picked = picked.borrow_mut();
            picked.push((index, ws.protocol().map(str::to_owned)));
            ws.close(1000, "").unwrap();
            if picked.len() == 2 {
                twill::stop();
            }
            Ok::<(), twill::defer::Failure>(())
        }));
    }
    run(&reactor);
    picked.borrow_mut().sort();
    assert_eq!(
        *picked.borrow(),
        [(0, Some("chat.v2".to_owned())), (1, None)]
    );
}

/// A one-shot server that answers any request with `answer`.
fn canned_server(reactor: &Reactor, answer: &'static str) -> SocketAddr {
    struct Canned(&'static str, Option<Transport>);
    impl Protocol for Canned {
        fn connection_made(&mut self, transport: &Transport) {
            self.1 = Some(transport.clone());
        }
        fn data_received(&mut self, _: Bytes) {
            if !self.0.is_empty() {
                self.1.as_ref().unwrap().write(self.0);
            }
        }
    }
    let port = reactor
        .listen_tcp("127.0.0.1:0", move |_| Canned(answer, None))
        .unwrap();
    port.host().tcp().unwrap()
}

/// Connects `client` to a server that answers any request with `answer`
/// (or to a port where nothing listens), on a reactor of its own; the
/// connection must fail: returns the error's kind and text.
fn failed_connect(client: WebSocketClient, answer: Option<&'static str>) -> String {
    let reactor = Reactor::new().unwrap();
    let addr = match answer {
        Some(answer) => canned_server(&reactor, answer),
        None => {
            let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            closed.local_addr().unwrap()
        }
    };
    let error = Rc::new(RefCell::new(None));
    let slot = error.clone();
    let opened = |_: &WebSocket, _: Message| panic!("no message expected");
    drop(client.connect(addr, opened).then_both(
        move |outcome| -> Result<(), twill::defer::Failure> {
            let failure = outcome.expect_err("the handshake must fail");
            let kind = match failure.downcast_ref::<ClientError>() {
                Some(ClientError::InvalidRequest(_)) => "invalid",
                Some(ClientError::Connect(_)) => "connect",
                Some(ClientError::Status(_)) => "status",
                Some(ClientError::Handshake(_)) => "handshake",
                Some(ClientError::BadResponse(_)) => "bad response",
                Some(ClientError::Timeout(_)) => "timeout",
                Some(ClientError::Closed(_)) => "closed",
                _ => "other",
            };
            *slot.borrow_mut() = Some(format!("{kind}: {failure}"));
            twill::stop();
            Ok(())
        },
    ));
    run(&reactor);
    let text = error.borrow_mut().take().expect("the Deferred failed");
    text
}

#[test]
fn the_client_deferred_fails_on_refusals_and_bad_answers() {
    let client = || WebSocketClient::new("127.0.0.1", "/");

    let error = failed_connect(client(), None);
    assert!(error.starts_with("connect: "), "{error}");

    let not_found = "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
    let error = failed_connect(client(), Some(not_found));
    assert!(
        error.starts_with("status: ") && error.contains("404"),
        "{error}"
    );

    let wrong_key = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    let error = failed_connect(client(), Some(wrong_key));
    assert!(error.starts_with("handshake: "), "{error}");

    let error = failed_connect(client(), Some("SSH-2.0-OpenSSH\r\n\r\n"));
    assert!(error.starts_with("bad response: "), "{error}");

    let patient = client().handshake_timeout(Duration::from_millis(100));
    let error = failed_connect(patient, Some(""));
    assert!(error.starts_with("timeout: "), "{error}");

    let error = failed_connect(WebSocketClient::new("h", "no-slash"), Some(""));
    assert!(error.starts_with("invalid: "), "{error}");
}

// ------------------------------------------------- timers on a Clock

/// A server protocol on a recording transport with a hand-moved clock.
fn on_clock(
    config: websocket::WebSocketConfigBuilder,
) -> (WebSocketProtocol, StringTransport, Clock, Log) {
    let clock = Clock::new();
    let config = config.clock(Rc::new(clock.clone())).build().unwrap();
    let log = Log::default();
    let recorded = log.clone();
    let handler = Server {
        log: recorded,
        largest_buffer: Rc::default(),
        stuck: Rc::default(),
    };
    let mut protocol = WebSocketProtocol::new(Role::Server, config, handler);
    let recorder = StringTransport::new();
    protocol.connection_made(&recorder.transport());
    (protocol, recorder, clock, log)
}

#[test]
fn the_closing_timer_runs_on_the_configured_clock() {
    let builder = WebSocketConfig::builder().closing_timeout(Duration::from_secs(5));
    let (mut protocol, recorder, clock, log) = on_clock(builder);
    protocol.data_received(Bytes::from(masked(0x1, b"close 4000 go")));
    assert_eq!(recorder.value(), b"\x88\x04\x0f\xa0go");
    clock.advance(Duration::from_millis(4999));
    assert!(!recorder.aborted());
    clock.advance(Duration::from_millis(1));
    assert!(recorder.aborted());
    protocol.connection_lost(&twill::Reason::Aborted);
    protocol.connection_lost(&twill::Reason::Aborted);
    assert_eq!(
        log.events(),
        ["open", "close None the close handshake timed out"]
    );
}

#[test]
fn keep_alive_pings_run_on_the_configured_clock() {
    let builder = WebSocketConfig::builder()
        .ping_interval(Duration::from_secs(10))
        .pong_timeout(Duration::from_secs(3));
    let (mut protocol, recorder, clock, log) = on_clock(builder);
    clock.advance(Duration::from_secs(10));
    let ping = recorder.value();
    assert_eq!(&ping[..2], b"\x89\x08", "an 8-byte ping");
    recorder.clear();
    protocol.data_received(Bytes::from(masked(0xa, &ping[2..])));
    clock.advance(Duration::from_secs(5));
    assert!(!recorder.disconnecting(), "answered in time");
    clock.advance(Duration::from_secs(5));
    assert_eq!(&recorder.value()[..2], b"\x89\x08", "the next ping");
    recorder.clear();
    clock.advance(Duration::from_secs(3));
    assert_eq!(&recorder.value()[..4], b"\x88\x1b\x03\xf3", "Close 1011");
    assert!(recorder.disconnecting());
    protocol.connection_lost(&twill::Reason::Done);
    assert_eq!(
        log.events(),
        ["open", "close Some(1011) keep-alive ping timed out"]
    );
}

#[test]
fn a_client_waits_the_closing_timeout_for_the_server_to_close_tcp() {
    let clock = Clock::new();
    let config = WebSocketConfig::builder()
        .closing_timeout(Duration::from_secs(2))
        .clock(Rc::new(clock.clone()))
        .build()
        .unwrap();
    let log = Log::default();
    let recorded = log.clone();
    let handler = move |_: &WebSocket, message: Message| {
        recorded.push(format!("{message:?}"));
    };
    let mut protocol = WebSocketProtocol::new(Role::Client, config, handler);
    let recorder = StringTransport::new();
    protocol.connection_made(&recorder.transport());
    // The server's Close, unmasked.
    protocol.data_received(Bytes::from_static(b"\x88\x02\x03\xe8"));
    let echo = recorder.value();
    assert_eq!(&echo[..2], b"\x88\x82", "the masked echo");
    assert!(!recorder.disconnecting(), "the server closes TCP first");
    clock.advance(Duration::from_millis(1999));
    assert!(!recorder.aborted());
    clock.advance(Duration::from_millis(1));
    assert!(recorder.aborted(), "the server never did");
}

#[test]
fn sends_after_the_close_handshake_began_are_refused() {
    let (mut protocol, recorder, _clock, _log) = on_clock(WebSocketConfig::builder());
    let ws = protocol.websocket().unwrap();
    assert!(ws.is_open());
    ws.close(1001, "going").unwrap();
    assert!(!ws.is_open());
    let err = ws.send_text("late").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotConnected);
    assert_eq!(
        ws.close(1005, "").unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    recorder.clear();
    protocol.data_received(Bytes::from(masked(0x8, b"\x03\xe9")));
    assert!(recorder.value().is_empty(), "no echo of the peer's answer");
    assert!(recorder.disconnecting(), "the server closes TCP first");
}

// ------------------------------------------------------------- Python

/// The first interpreter that can import websockets.
fn python() -> Option<PathBuf> {
    twill_test_support::python::interpreter_with("websockets")
}

/// A running `websocket_peer.py`, killed if the test ends first.
struct Peer {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Peer {
    fn spawn(python: &Path, args: &[&str]) -> Peer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/websocket_peer.py");
        let mut child = Command::new(python)
            .arg(script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start websocket_peer.py");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Peer { child, lines }
    }

    /// The next line the peer printed, within 30 s.
    fn line(&self) -> Option<String> {
        self.lines.recv_timeout(Duration::from_secs(30)).ok()
    }

    /// Every line until the peer exits, and whether it exited cleanly.
    fn finish(mut self) -> (bool, Vec<String>) {
        let lines: Vec<String> = std::iter::from_fn(|| self.line()).collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.success(), lines);
            }
            assert!(
                Instant::now() < deadline,
                "the peer did not exit: {lines:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the Python client in `mode` against the twill server.
fn python_client(mode: &str) -> Option<((bool, Vec<String>), Recorded)> {
    let Some(python) = python() else {
        println!("skipped: no websockets");
        return None;
    };
    let mode = mode.to_owned();
    Some(with_server(config(), move |addr| {
        let port = addr.port().to_string();
        Peer::spawn(&python, &[&mode, &port]).finish()
    }))
}

#[test]
fn python_websockets_client_against_the_twill_server() {
    let Some(((clean, lines), recorded)) = python_client("client") else {
        return;
    };
    assert!(clean, "{lines:?}");
    assert_eq!(
        lines,
        [
            "ok text",
            "ok binary",
            "ok fragmented",
            "ok large",
            "ok pong",
            "closed 4000 "
        ],
        "the server echoes the code, with no reason"
    );
    assert_eq!(closes(&recorded), ["close Some(4000) client done"]);
}

#[test]
fn the_twill_server_closes_a_python_websockets_client_with_its_code() {
    let Some(((clean, lines), recorded)) = python_client("client-closed") else {
        return;
    };
    assert!(clean, "{lines:?}");
    assert_eq!(lines, ["closed 4001 server done"]);
    // websockets echoes the reason too.
    assert_eq!(closes(&recorded), ["close Some(4001) server done"]);
}

/// The twill client's script against the Python server.
struct AgainstPython {
    step: usize,
    log: Log,
}

impl WebSocketHandler for AgainstPython {
    fn on_open(&mut self, ws: &WebSocket) {
        ws.send_text("fragment me").unwrap();
    }

    fn on_message(&mut self, ws: &WebSocket, message: Message) {
        self.log
            .push(format!("{message:?}").chars().take(40).collect::<String>());
        self.step += 1;
        match self.step {
            1 => ws.send_binary(vec![9u8; 1024 * 1024]).unwrap(),
            _ => ws.send_text("close 4002 python done").unwrap(),
        }
    }

    fn on_close(&mut self, code: Option<u16>, reason: &str) {
        self.log.push(format!("close {code:?} {reason}"));
        twill::stop();
    }
}

#[test]
fn the_twill_client_against_a_python_websockets_server() {
    let Some(python) = python() else {
        println!("skipped: no websockets");
        return;
    };
    let peer = Peer::spawn(&python, &["server"]);
    let port: u16 = peer
        .line()
        .and_then(|line| line.strip_prefix("PORT ").map(|p| p.parse().unwrap()))
        .expect("the server's port");
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let handler = AgainstPython {
        step: 0,
        log: log.clone(),
    };
    let failure = Rc::new(RefCell::new(None));
    let slot = failure.clone();
    drop(
        WebSocketClient::new(format!("127.0.0.1:{port}"), "/")
            .config(config())
            .connect(addr, handler)
            .then_both(move |outcome| {
                if let Err(err) = outcome {
                    *slot.borrow_mut() = Some(err.to_string());
                    twill::stop();
                }
                Ok::<(), twill::defer::Failure>(())
            }),
    );
    run(&reactor);
    assert_eq!(failure.borrow().as_deref(), None, "the handshake succeeds");
    let (clean, lines) = peer.finish();
    assert!(clean, "{lines:?}");
    assert_eq!(
        lines,
        ["closed 4002 "],
        "twill echoes the code, with no reason"
    );
    let events = log.events();
    assert_eq!(events[0], "Text(\"fragmented\")");
    assert!(events[1].starts_with("Binary(b\"\\t\\t"), "{events:?}");
    assert_eq!(events[2], "close Some(4002) python done");
}

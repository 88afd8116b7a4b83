//! TLS error paths that are not a hostile peer's doing, over real loopback
//! sockets, with raw Rust clients (a std `TcpStream` and rustls) on
//! another thread or twill on both sides:
//!
//! - how a connection ends: the peer's `close_notify` is `eof_received`
//!   and a clean close (`Reason::Done`), answered with our own; a peer
//!   that closes the socket without one is `Reason::Lost` with
//!   `UnexpectedEof` holding `TlsError::Truncated` (or
//!   `ClosedDuringHandshake` before the handshake completed), never
//!   mistaken for a clean close;
//! - a protocol that panics inside TLS fails its own connection with
//!   `Panicked`, and only that one;
//! - what is written before the handshake completes is sent, encrypted and
//!   in order, right after it; what is written after `lose_connection` is
//!   dropped; `lose_connection` before the handshake completes sends what
//!   was written, then `close_notify`;
//! - STARTTLS: plaintext before, TLS after, on the wire; `start_tls` once
//!   only, and not on a transport that cannot take a layer;
//! - a certificate a twill client refuses (unknown CA, wrong name,
//!   expired), and a client without the certificate a server requires,
//!   fail the handshake with rustls's error naming the problem.
//!
//! `tls_reason` (in `tls_peers`) spells a reason out with the `TlsError`
//! inside: from `Reason::Failed` by downcasting, from `Reason::Lost` by
//! downcasting the `io::Error`'s `get_ref()`.

#![cfg(feature = "tls")]

mod tls_support;

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::rc::Rc;
use std::sync::Arc;

use rcgen::{date_time_ymd, ExtendedKeyUsagePurpose};
use twill::testing::StringTransport;
use twill::tls::rustls::{self, AlertDescription, CertificateError, ClientConfig};
use twill::tls::{config, HandshakeCompleted, StartTls, TlsAcceptor, TlsConnector};
use twill::{Bytes, Event, Protocol, Reactor, Reason, Transport};
use twill_test_support::events::Log;
use twill_test_support::pressure::connect;
use twill_test_support::reactor::run;

use tls_support::*;

// ---------------------------------------------------------------------------
// How a TLS connection ends
// ---------------------------------------------------------------------------

#[test]
fn a_peers_close_notify_is_eof_received_then_a_clean_close_answered_with_close_notify() {
    let pki = Pki::new("close CA");
    let client_config = pki.client_config();
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let rest = serve_tls(
        &reactor,
        pki.server_config(),
        numbered(&log),
        move |addr, handle| {
            let mut tls = tls_connect(addr, &client_config);
            echo(&mut tls, b"and now goodbye");
            let rest = close_cleanly(tls).map_err(|err| err.kind());
            handle.stop();
            rest
        },
    );
    assert_eq!(
        rest,
        Ok(Vec::new()),
        "rustls read the server's close_notify before its FIN"
    );
    assert_eq!(
        log.events(),
        [
            "conn 1: handshake",
            "conn 1: eof_received",
            "conn 1: lost Done"
        ]
    );
}

#[test]
fn a_peer_that_closes_the_socket_without_close_notify_is_lost_with_truncated() {
    let pki = Pki::new("truncation CA");
    let client_config = pki.client_config();
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let closed = serve_tls(
        &reactor,
        pki.server_config(),
        numbered(&log),
        move |addr, handle| {
            let mut tls = tls_connect(addr, &client_config);
            echo(&mut tls, b"and then the cable was cut");
            tls.sock.shutdown(Shutdown::Write).unwrap();
            let closed = read_until_closed(&mut tls.sock);
            handle.stop();
            closed
        },
    );
    assert_eq!(closed.end, Ok(()), "{closed:?}");
    assert_eq!(
        log.events(),
        [
            "conn 1: handshake",
            "conn 1: lost Lost(UnexpectedEof, Truncated)"
        ],
        "no eof_received: the protocol cannot tell the data is all there"
    );
}

#[test]
fn a_peer_that_closes_during_the_handshake_is_lost_with_closed_during_handshake() {
    let pki = Pki::new("halfway CA");
    let hello = client_hello(&pki.client_config());
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let closes = serve_tls(
        &reactor,
        pki.server_config(),
        numbered(&log),
        move |addr, handle| {
            // Before sending a byte.
            let mut silent = connect(addr);
            silent.shutdown(Shutdown::Write).unwrap();
            let silent = read_until_closed(&mut silent);
            // After its hello and the first of the server's answer.
            let mut halfway = connect(addr);
            halfway.write_all(&hello).unwrap();
            halfway.read_exact(&mut [0; 5]).unwrap();
            halfway.shutdown(Shutdown::Write).unwrap();
            let halfway = read_until_closed(&mut halfway);
            handle.stop();
            [silent, halfway]
        },
    );
    for closed in &closes {
        assert_eq!(closed.end, Ok(()), "{closed:?}");
    }
    assert_eq!(
        log.events(),
        [
            "conn 1: lost Lost(UnexpectedEof, ClosedDuringHandshake)",
            "conn 2: lost Lost(UnexpectedEof, ClosedDuringHandshake)",
        ]
    );
}

// ---------------------------------------------------------------------------
// A protocol that panics inside TLS
// ---------------------------------------------------------------------------

/// Echoes, but panics in the callback it is told to (`data_received`
/// only for the data `panic`).
struct Fragile {
    name: String,
    log: Log,
    panic_in: Option<&'static str>,
    transport: Option<Transport>,
}

impl Protocol for Fragile {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
        if self.panic_in == Some("connection_made") {
            panic!("{} cannot start", self.name);
        }
    }
    fn data_received(&mut self, data: Bytes) {
        if &data[..] == b"panic" {
            panic!("{} was asked to panic", self.name);
        }
        self.transport.as_ref().unwrap().write(data);
    }
    fn event_received(&mut self, event: Event) {
        if event.is::<HandshakeCompleted>() && self.panic_in == Some("event_received") {
            panic!("{} cannot take the handshake", self.name);
        }
    }
    fn connection_lost(&mut self, reason: &Reason) {
        self.log
            .push(format!("{}: lost {}", self.name, tls_reason(reason)));
    }
}

#[test]
fn a_panic_in_a_protocol_inside_tls_fails_that_connection_only() {
    let pki = Pki::new("panic CA");
    let client_config = pki.client_config();
    let hello = client_hello(&client_config);
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    let mut accepted = 0;
    // In the order the client connects.
    let plan = [
        None,
        None,
        Some("event_received"),
        Some("connection_made"),
        None,
    ];
    let ends = serve_tls(
        &reactor,
        pki.server_config(),
        move |_| {
            accepted += 1;
            Fragile {
                name: format!("conn {accepted}"),
                log: server_log.clone(),
                panic_in: plan[accepted - 1],
                transport: None,
            }
        },
        move |addr, handle| {
            let mut first = tls_connect(addr, &client_config);
            echo(&mut first, b"before");
            // Conn 2 panics in data_received.
            let mut doomed = tls_connect(addr, &client_config);
            doomed.write_all(b"panic").unwrap();
            let mut rest = Vec::new();
            let data_end = doomed.read_to_end(&mut rest).map_err(|e| e.kind());
            // Conn 3 panics when told the handshake completed.
            let mut at_handshake = tls_connect(addr, &client_config);
            let event_end = at_handshake.read_to_end(&mut rest).map_err(|e| e.kind());
            // Conn 4 panics before anything is read.
            let mut at_start = connect(addr);
            let _ = at_start.write_all(&hello);
            let start_end = read_until_closed(&mut at_start);
            // The others go on.
            echo(&mut first, b"after");
            let mut later = tls_connect(addr, &client_config);
            echo(&mut later, b"later");
            close_cleanly(first).unwrap();
            close_cleanly(later).unwrap();
            handle.stop();
            (data_end, event_end, start_end)
        },
    );
    let (data_end, event_end, start_end) = ends;
    assert_eq!(
        (data_end, event_end),
        (Err(ErrorKind::UnexpectedEof), Err(ErrorKind::UnexpectedEof)),
        "a failed connection ends without close_notify: its peer cannot \
         take it for a complete stream"
    );
    assert_eq!(start_end.end, Ok(()), "{start_end:?}");
    let events = log.events();
    assert_eq!(events.len(), 5, "{events:#?}");
    assert_eq!(
        events[0],
        "conn 2: lost Failed(Panicked: data_received panicked: conn 2 was asked to panic)"
    );
    // The TLS layer hands the protocol `HandshakeCompleted` from inside
    // its own `data_received`; the panic is still named after the
    // protocol's callback.
    assert_eq!(
        events[1],
        "conn 3: lost Failed(Panicked: event_received panicked: conn 3 cannot take the handshake)"
    );
    assert_eq!(
        events[2..],
        [
            "conn 4: lost Failed(Panicked: connection_made panicked: conn 4 cannot start)",
            "conn 1: lost Done",
            "conn 5: lost Done",
        ]
    );
}

// ---------------------------------------------------------------------------
// Writes around the handshake and the close
// ---------------------------------------------------------------------------

/// Writes in every way before the handshake completes, and logs when
/// those bytes are sent.
struct EarlyWriter {
    log: Log,
}

impl Protocol for EarlyWriter {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write("one ");
        transport.write_with(|buf| buf.extend_from_slice(b"two "));
        transport.write_sequence(["three ", "four"]);
        self.log.push(format!(
            "{} bytes buffered before the handshake",
            transport.write_buffer_size()
        ));
        let log = self.log.clone();
        transport.flushed().add_both(move |outcome| {
            log.push(format!("flushed: {}", outcome.is_ok()));
            Ok(())
        });
    }
    fn data_received(&mut self, _: Bytes) {}
    fn event_received(&mut self, event: Event) {
        if event.is::<HandshakeCompleted>() {
            self.log.push("handshake");
        }
    }
    fn connection_lost(&mut self, reason: &Reason) {
        self.log.push(format!("lost {}", tls_reason(reason)));
    }
}

#[test]
fn writes_before_the_handshake_completes_are_sent_encrypted_and_in_order_right_after_it() {
    let pki = Pki::new("early CA");
    let client_config = pki.client_config();
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    let (got, wire) = serve_tls(
        &reactor,
        pki.server_config(),
        move |_| EarlyWriter {
            log: server_log.clone(),
        },
        move |addr, handle| {
            let mut tls = handshake(Tap::new(connect(addr)), &client_config);
            let mut got = vec![0; "one two three four".len()];
            tls.read_exact(&mut got).unwrap();
            let wire = tls.sock.seen.clone();
            close_cleanly(tls).unwrap();
            handle.stop();
            (got, wire)
        },
    );
    assert_eq!(got, b"one two three four");
    assert!(
        !contains(&wire, b"one") && !contains(&wire, b"four"),
        "no plaintext on the wire"
    );
    assert_eq!(
        log.events(),
        [
            "18 bytes buffered before the handshake",
            "handshake",
            "flushed: true",
            "lost Done"
        ]
    );
}

/// Writes `first`, calls `lose_connection`, then writes `after` — in
/// `connection_made` (before the handshake completes) or on the first
/// data (after it).
struct CloseThenWrite {
    before_handshake: bool,
    transport: Option<Transport>,
    log: Log,
}

impl CloseThenWrite {
    fn close(&self, transport: &Transport) {
        transport.write("last words");
        transport.lose_connection();
        transport.write("never sent");
        self.log
            .push(format!("closing: {}", transport.is_closing()));
    }
}

impl Protocol for CloseThenWrite {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
        if self.before_handshake {
            self.close(transport);
        }
    }
    fn data_received(&mut self, _: Bytes) {
        let transport = self.transport.clone().unwrap();
        self.close(&transport);
    }
    fn event_received(&mut self, event: Event) {
        if event.is::<HandshakeCompleted>() {
            self.log.push("handshake");
        }
    }
    fn connection_lost(&mut self, reason: &Reason) {
        self.log.push(format!("lost {}", tls_reason(reason)));
    }
}

/// What a client reads from a `CloseThenWrite` (after sending `go`) up
/// to the end of the stream, as rustls sees it: `Ok` only if the end was
/// a `close_notify`.
fn close_then_write(before_handshake: bool) -> (Result<Vec<u8>, ErrorKind>, Vec<String>) {
    let pki = Pki::new("closing CA");
    let client_config = pki.client_config();
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    let got = serve_tls(
        &reactor,
        pki.server_config(),
        move |_| CloseThenWrite {
            before_handshake,
            transport: None,
            log: server_log.clone(),
        },
        move |addr, handle| {
            let mut tls = tls_connect(addr, &client_config);
            if !before_handshake {
                tls.write_all(b"go").unwrap();
            }
            let mut got = Vec::new();
            let got = tls.read_to_end(&mut got).map(|_| got).map_err(|e| e.kind());
            handle.stop();
            got
        },
    );
    (got, log.events())
}

#[test]
fn writes_after_lose_connection_are_dropped_and_the_close_is_a_close_notify() {
    let (got, events) = close_then_write(false);
    assert_eq!(got, Ok(b"last words".to_vec()));
    assert_eq!(events, ["handshake", "closing: true", "lost Done"]);
}

#[test]
fn lose_connection_before_the_handshake_completes_sends_what_was_written_then_close_notify() {
    let (got, events) = close_then_write(true);
    assert_eq!(got, Ok(b"last words".to_vec()));
    assert_eq!(events, ["closing: true", "handshake", "lost Done"]);
}

// ---------------------------------------------------------------------------
// STARTTLS
// ---------------------------------------------------------------------------

/// Greets in plaintext; on `STARTTLS\r\n` says go ahead (in plaintext),
/// starts TLS, and tries to start it again; echoes once upgraded.
struct StartTlsServer {
    acceptor: TlsAcceptor,
    log: Log,
    transport: Option<Transport>,
    upgraded: bool,
}

impl Protocol for StartTlsServer {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
        transport.write("220 ready\r\n");
    }
    fn data_received(&mut self, data: Bytes) {
        let transport = self.transport.as_ref().unwrap();
        if self.upgraded {
            self.log.push(format!("server got {:?} over TLS", data));
            transport.write(data);
            return;
        }
        self.log.push(format!("server got {:?} in plaintext", data));
        transport.write("220 go ahead\r\n");
        transport.start_tls(self.acceptor.clone()).unwrap();
        self.upgraded = true;
        let again = transport.start_tls(self.acceptor.clone());
        self.log.push(format!(
            "server: start_tls again: {:?}",
            again.map_err(|e| e.kind())
        ));
    }
    fn event_received(&mut self, event: Event) {
        if event.is::<HandshakeCompleted>() {
            self.log.push("server: handshake");
        }
    }
    fn eof_received(&mut self) -> bool {
        self.log.push("server: eof_received");
        false
    }
    fn connection_lost(&mut self, reason: &Reason) {
        self.log
            .push(format!("server: lost {}", tls_reason(reason)));
    }
}

fn starttls_server(pki: &Pki, log: &Log) -> impl FnMut(twill::Address) -> StartTlsServer {
    let (acceptor, log) = (TlsAcceptor::new(pki.server_config()), log.clone());
    move |_| StartTlsServer {
        acceptor: acceptor.clone(),
        log: log.clone(),
        transport: None,
        upgraded: false,
    }
}

#[test]
fn starttls_with_a_raw_client_is_plaintext_on_the_wire_before_and_tls_after() {
    let pki = Pki::new("starttls CA");
    let client_config = pki.client_config();
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let port = reactor
        .listen_tcp("127.0.0.1:0", starttls_server(&pki, &log))
        .unwrap();
    let addr = port.host();
    let handle = reactor.handle();
    let client = std::thread::spawn(move || {
        let mut sock = connect(addr.tcp().unwrap());
        let mut greeting = [0; 11];
        sock.read_exact(&mut greeting).unwrap();
        sock.write_all(b"STARTTLS\r\n").unwrap();
        let mut go_ahead = [0; 14];
        sock.read_exact(&mut go_ahead).unwrap();
        // The client's hello, then the first byte the server sends after
        // the upgrade; rustls takes it from there.
        let mut session = client_session(&client_config);
        while session.wants_write() {
            session.write_tls(&mut sock).unwrap();
        }
        let mut first = [0];
        sock.read_exact(&mut first).unwrap();
        session.read_tls(&mut &first[..]).unwrap();
        let mut tls = finish_handshake(session, Tap::new(sock));
        echo(&mut tls, b"secret words");
        let wire = tls.sock.seen.clone();
        close_cleanly(tls).unwrap();
        handle.stop();
        (greeting, go_ahead, first[0], wire)
    });
    run(&reactor);
    let (greeting, go_ahead, first, wire) = client.join().unwrap();
    assert_eq!(&greeting, b"220 ready\r\n");
    assert_eq!(&go_ahead, b"220 go ahead\r\n");
    assert_eq!(first, 0x16, "a TLS handshake record");
    assert!(
        !contains(&wire, b"secret"),
        "no plaintext after the upgrade"
    );
    assert_eq!(
        log.events(),
        [
            "server got b\"STARTTLS\\r\\n\" in plaintext",
            "server: start_tls again: Err(AlreadyExists)",
            "server: handshake",
            "server got b\"secret words\" over TLS",
            "server: eof_received",
            "server: lost Done",
        ]
    );
}

/// Says STARTTLS when greeted, starts TLS when told to go ahead and
/// writes `ping` at once (sent once the handshake completes); closes when
/// the echo comes back.
struct StartTlsClient {
    connector: TlsConnector,
    log: Log,
    transport: Option<Transport>,
    upgraded: bool,
}

impl Protocol for StartTlsClient {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
    }
    fn data_received(&mut self, data: Bytes) {
        let transport = self.transport.as_ref().unwrap();
        if self.upgraded {
            self.log.push(format!("client got {:?} over TLS", data));
            transport.lose_connection();
        } else if &data[..] == b"220 ready\r\n" {
            transport.write("STARTTLS\r\n");
        } else if &data[..] == b"220 go ahead\r\n" {
            let side = StartTls::client(self.connector.clone(), "localhost").unwrap();
            transport.start_tls(side).unwrap();
            self.upgraded = true;
            transport.write("ping");
        } else {
            self.log.push(format!("client got {:?} in plaintext", data));
        }
    }
    fn event_received(&mut self, event: Event) {
        if event.is::<HandshakeCompleted>() {
            self.log.push("client: handshake");
        }
    }
    fn connection_lost(&mut self, reason: &Reason) {
        self.log
            .push(format!("client: lost {}", tls_reason(reason)));
    }
}

#[test]
fn starttls_between_a_twill_client_and_server_upgrades_both_and_echoes() {
    let pki = Pki::new("starttls CA");
    let reactor = Reactor::new().unwrap();
    let (server_log, client_log) = (Log::default(), Log::default());
    let port = reactor
        .listen_tcp("127.0.0.1:0", starttls_server(&pki, &server_log))
        .unwrap();
    let connector = TlsConnector::new(pki.client_config());
    let log = client_log.clone();
    reactor
        .connect_tcp(port.host(), move |_| StartTlsClient {
            connector: connector.clone(),
            log: log.clone(),
            transport: None,
            upgraded: false,
        })
        .unwrap();
    stop_when_both_ended(&server_log, &client_log);
    run(&reactor);
    assert_eq!(
        client_log.events(),
        [
            "client: handshake",
            "client got b\"ping\" over TLS",
            "client: lost Done",
        ]
    );
    assert_eq!(
        server_log.events(),
        [
            "server got b\"STARTTLS\\r\\n\" in plaintext",
            "server: start_tls again: Err(AlreadyExists)",
            "server: handshake",
            "server got b\"ping\" over TLS",
            "server: eof_received",
            "server: lost Done",
        ]
    );
}

/// Stops the reactor once both logs end with a `lost` event.
fn stop_when_both_ended(a: &Log, b: &Log) {
    let (a, b) = (a.clone(), b.clone());
    let ended = |log: &Log| log.events().iter().any(|e| e.contains(": lost "));
    twill::call_later(std::time::Duration::from_millis(5), move || {
        if ended(&a) && ended(&b) {
            twill::stop();
        } else {
            stop_when_both_ended(&a, &b);
        }
    });
}

/// Starts TLS again on a connection that runs TLS from the start.
struct TlsAgain {
    acceptor: TlsAcceptor,
    log: Log,
}

impl Protocol for TlsAgain {
    fn connection_made(&mut self, transport: &Transport) {
        let again = transport.start_tls(self.acceptor.clone());
        self.log
            .push(format!("start_tls: {:?}", again.map_err(|e| e.kind())));
        transport.lose_connection();
    }
    fn data_received(&mut self, _: Bytes) {}
}

#[test]
fn start_tls_on_a_connection_that_runs_tls_from_the_start_is_already_exists() {
    let pki = Pki::new("again CA");
    let client_config = pki.client_config();
    let acceptor = TlsAcceptor::new(pki.server_config());
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    serve_tls(
        &reactor,
        acceptor.clone(),
        move |_| TlsAgain {
            acceptor: acceptor.clone(),
            log: server_log.clone(),
        },
        move |addr, handle| {
            let mut tls = tls_connect(addr, &client_config);
            let _ = tls.read_to_end(&mut Vec::new());
            handle.stop();
        },
    );
    assert_eq!(log.events(), ["start_tls: Err(AlreadyExists)"]);
}

#[test]
fn start_tls_on_a_string_transport_is_unsupported() {
    let pki = Pki::new("string CA");
    let recorder = StringTransport::new();
    let err = recorder
        .transport()
        .start_tls(TlsAcceptor::new(pki.server_config()))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(recorder.value().is_empty());
}

// ---------------------------------------------------------------------------
// Certificates refused
// ---------------------------------------------------------------------------

/// Logs the handshake (with the count of the peer's certificates) and
/// how the connection ended, keeping the rustls error of a failure. As a
/// client, says hello and closes on the echo; as a server, echoes.
struct Probe {
    name: &'static str,
    client: bool,
    log: Log,
    errors: Rc<RefCell<Vec<(&'static str, rustls::Error)>>>,
    transport: Option<Transport>,
}

impl Protocol for Probe {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
        if self.client {
            transport.write("hello");
        }
    }
    fn data_received(&mut self, data: Bytes) {
        let transport = self.transport.as_ref().unwrap();
        if self.client {
            self.log.push(format!("{}: echoed", self.name));
            transport.lose_connection();
        } else {
            transport.write(data);
        }
    }
    fn event_received(&mut self, event: Event) {
        if let Some(done) = event.downcast_ref::<HandshakeCompleted>() {
            self.log.push(format!(
                "{}: handshake, {} peer certificate(s)",
                self.name,
                done.info.peer_certificates.len()
            ));
        }
    }
    fn connection_lost(&mut self, reason: &Reason) {
        self.log
            .push(format!("{}: lost {}", self.name, tls_reason(reason)));
        if let Some(err) = rustls_error(reason) {
            self.errors.borrow_mut().push((self.name, err.clone()));
        }
    }
}

/// Runs one reactor until `connections` connections, counted on both
/// sides, have ended.
fn run_until_ended(reactor: &Reactor, log: &Log, connections: usize) {
    fn check(log: Log, connections: usize) {
        let ended = log
            .events()
            .iter()
            .filter(|e| e.contains(": lost "))
            .count();
        if ended >= connections {
            twill::stop();
        } else {
            twill::call_later(std::time::Duration::from_millis(5), move || {
                check(log, connections)
            });
        }
    }
    let log = log.clone();
    reactor.call_when_running(move || check(log, connections));
    run(reactor);
}

/// Connects a `Probe` named `name` to `addr` with TLS.
fn probe(
    reactor: &Reactor,
    addr: std::net::SocketAddr,
    server_name: &str,
    config: &Arc<ClientConfig>,
    name: &'static str,
    log: &Log,
    errors: &Rc<RefCell<Vec<(&'static str, rustls::Error)>>>,
) {
    let (log, errors) = (log.clone(), errors.clone());
    reactor
        .connect_tls(addr, server_name, config.clone(), move |_| Probe {
            name,
            client: true,
            log: log.clone(),
            errors: errors.clone(),
            transport: None,
        })
        .unwrap();
}

#[test]
fn a_twill_client_refuses_an_unknown_ca_a_wrong_name_and_an_expired_certificate() {
    let trusted = Pki::new("trusted CA");
    let stranger = Pki::new("stranger CA");
    let (expired_chain, expired_key) = trusted.issue(&["localhost"], |params| {
        params.not_before = date_time_ymd(2000, 1, 1);
        params.not_after = date_time_ymd(2001, 1, 1);
    });
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let errors = Rc::new(RefCell::new(Vec::new()));
    let listen = |config: rustls::ServerConfig, name: &'static str| {
        let (log, errors) = (log.clone(), errors.clone());
        reactor
            .listen_tls("127.0.0.1:0", config, move |_| Probe {
                name,
                client: false,
                log: log.clone(),
                errors: errors.clone(),
                transport: None,
            })
            .unwrap()
            .host()
    };
    let good = listen(trusted.server_config(), "good server");
    let strange = listen(stranger.server_config(), "strange server");
    let expired = listen(
        config::server_config(expired_chain, expired_key).unwrap(),
        "expired server",
    );
    let client_config = trusted.client_config();
    probe(
        &reactor,
        strange.tcp().unwrap(),
        "localhost",
        &client_config,
        "unknown CA",
        &log,
        &errors,
    );
    probe(
        &reactor,
        good.tcp().unwrap(),
        "wrong.example",
        &client_config,
        "wrong name",
        &log,
        &errors,
    );
    probe(
        &reactor,
        expired.tcp().unwrap(),
        "localhost",
        &client_config,
        "expired",
        &log,
        &errors,
    );
    run_until_ended(&reactor, &log, 6);

    let events = log.events();
    let errors = errors.borrow();
    let error_of = |name: &str| {
        errors
            .iter()
            .find(|(who, _)| *who == name)
            .map(|(_, err)| err.clone())
            .unwrap_or_else(|| panic!("{name}: no handshake error in {events:#?}"))
    };
    assert_eq!(errors.len(), 6, "every connection failed: {events:#?}");
    assert!(
        events
            .iter()
            .all(|e| e.contains(": lost Failed(Handshake: ")),
        "{events:#?}"
    );

    // What the client says, and the alert the server got from it.
    let unknown = error_of("unknown CA");
    assert!(
        matches!(
            unknown,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        ),
        "{unknown}"
    );
    assert!(unknown.to_string().contains("UnknownIssuer"), "{unknown}");
    assert_eq!(
        error_of("strange server"),
        rustls::Error::AlertReceived(AlertDescription::UnknownCA)
    );

    let wrong = error_of("wrong name");
    assert!(
        matches!(
            wrong,
            rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })
        ),
        "{wrong}"
    );
    assert!(
        wrong
            .to_string()
            .contains("certificate not valid for name \"wrong.example\""),
        "{wrong}"
    );
    assert_eq!(
        error_of("good server"),
        rustls::Error::AlertReceived(AlertDescription::BadCertificate)
    );

    let old = error_of("expired");
    assert!(
        matches!(
            old,
            rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. })
        ),
        "{old}"
    );
    assert!(old.to_string().contains("certificate expired"), "{old}");
    assert_eq!(
        error_of("expired server"),
        rustls::Error::AlertReceived(AlertDescription::CertificateExpired)
    );
}

#[test]
fn a_server_that_requires_client_certificates_refuses_a_client_without_one() {
    let server_pki = Pki::new("server CA");
    let client_pki = Pki::new("client CA");
    let (chain, key) = server_pki.issue(&["localhost"], |_| {});
    let server_config = Arc::new(
        config::server_config_with_client_auth(chain, key, vec![client_pki.ca_cert()], true)
            .unwrap(),
    );
    let (client_chain, client_key) = client_pki.issue(&["client.example"], |params| {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    });
    let anonymous = Arc::new(config::client_config_trusting(vec![server_pki.ca_cert()]).unwrap());
    let known = Arc::new(
        config::client_config_with_client_auth(
            vec![server_pki.ca_cert()],
            client_chain,
            client_key,
        )
        .unwrap(),
    );
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let errors = Rc::new(RefCell::new(Vec::new()));
    let listen = |name: &'static str| {
        let (log, errors) = (log.clone(), errors.clone());
        reactor
            .listen_tls("127.0.0.1:0", server_config.clone(), move |_| Probe {
                name,
                client: false,
                log: log.clone(),
                errors: errors.clone(),
                transport: None,
            })
            .unwrap()
            .host()
    };
    let (first, second) = (listen("server 1"), listen("server 2"));
    probe(
        &reactor,
        first.tcp().unwrap(),
        "localhost",
        &anonymous,
        "anonymous",
        &log,
        &errors,
    );
    probe(
        &reactor,
        second.tcp().unwrap(),
        "localhost",
        &known,
        "known",
        &log,
        &errors,
    );
    run_until_ended(&reactor, &log, 4);

    let events = log.events();
    let of = |name: &str| -> Vec<String> {
        events
            .iter()
            .filter_map(|e| e.strip_prefix(&format!("{name}: ")))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        of("server 1"),
        ["lost Failed(Handshake: peer sent no certificates)"]
    );
    // In TLS 1.3 a client finishes its side of the handshake before the
    // server has checked it: the refusal comes after, as an alert.
    assert_eq!(
        of("anonymous"),
        [
            "handshake, 2 peer certificate(s)",
            "lost Failed(Protocol: received fatal alert: CertificateRequired)",
        ]
    );
    let errors = errors.borrow();
    assert_eq!(
        *errors,
        [
            ("server 1", rustls::Error::NoCertificatesPresented),
            (
                "anonymous",
                rustls::Error::AlertReceived(AlertDescription::CertificateRequired)
            ),
        ]
    );
    assert_eq!(
        of("server 2"),
        ["handshake, 2 peer certificate(s)", "lost Done"],
        "the client's chain, its own certificate first"
    );
    assert_eq!(
        of("known"),
        ["handshake, 2 peer certificate(s)", "echoed", "lost Done"]
    );
}

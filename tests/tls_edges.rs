//! The TLS layer on its edges, against its documentation and the plain
//! TCP transport's: each test states what they promise, on a path where
//! a layer could easily do otherwise.
//!
//! - a half-closed connection (`write_eof`) whose peer then closes the
//!   socket without `close_notify` must be reported as truncated;
//! - `bytes_written` and `bytes_sent` count "since the connection was
//!   made", so `start_tls` must not send them back to zero;
//! - `when_writable` after `start_tls` must wait for the handshake while
//!   early writes are over the high watermark, as it does on a
//!   `listen_tls` connection (in memory and on a socket);
//! - `write_complete` means the write buffer is empty;
//! - `abort_connection` and `lose_connection` stop reading now: no more
//!   `data_received` after them;
//! - `resume_reading` after `start_tls` must undo a `pause_reading` made
//!   before it;
//! - a protocol that pauses reading during the handshake must still get
//!   the data and the peer's `close_notify` once it resumes (in memory).
//!
//! Then what happens to a ClientHello pipelined behind the STARTTLS
//! command, a protocol that calls its transport from every callback, and
//! `fail` over TLS.
#![cfg(feature = "tls")]

use std::cell::{Cell, RefCell};
use std::io;
use std::net::TcpStream;
use std::rc::Rc;
use std::time::Duration;

use twill::testing::loopback;
use twill::tls::{
    config, CertificateDer, HandshakeCompleted, PrivateKeyDer, StartTls, TlsAcceptor, TlsConnector,
    TlsError, TlsProtocol,
};
use twill::{Bytes, Event, Protocol, Reactor, Reason, Transport};
use twill_test_support::events::{describe, Log};

struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn identity() -> Identity {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    Identity {
        chain: vec![made.cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into()),
    }
}

fn acceptor(id: &Identity) -> TlsAcceptor {
    TlsAcceptor::new(config::server_config(id.chain.clone(), id.key.clone_key()).unwrap())
}

fn connector(id: &Identity) -> TlsConnector {
    TlsConnector::new(config::client_config_trusting(id.chain.clone()).unwrap())
}

fn client_side(id: &Identity) -> StartTls {
    StartTls::client(connector(id), "localhost").unwrap()
}

/// How a connection ended, with the `TlsError` if there is one.
fn ended(reason: &Reason) -> String {
    match TlsError::of(reason) {
        Some(err) => format!("{} ({err:?})", describe(reason)),
        None => describe(reason),
    }
}

type Call = Box<dyn FnMut(&Transport)>;
type OnData = Box<dyn FnMut(&Transport, &Bytes)>;
type OnEof = Box<dyn FnMut(&Transport) -> bool>;

/// Logs every callback as `NAME what`, and runs what the test gave it for
/// each, with its transport.
struct Probe {
    name: &'static str,
    log: Log,
    transport: Option<Transport>,
    made: Option<Call>,
    data: Option<OnData>,
    eof: Option<OnEof>,
    handshake: Option<Call>,
    lost: Option<Call>,
    write_complete: Option<Call>,
    pause_writing: Option<Call>,
}

impl Probe {
    fn new(name: &'static str, log: &Log) -> Probe {
        Probe {
            name,
            log: log.clone(),
            transport: None,
            made: None,
            data: None,
            eof: None,
            handshake: None,
            lost: None,
            write_complete: None,
            pause_writing: None,
        }
    }
    fn on_made(mut self, f: impl FnMut(&Transport) + 'static) -> Probe {
        self.made = Some(Box::new(f));
        self
    }
    fn on_data(mut self, f: impl FnMut(&Transport, &Bytes) + 'static) -> Probe {
        self.data = Some(Box::new(f));
        self
    }
    fn on_eof(mut self, f: impl FnMut(&Transport) -> bool + 'static) -> Probe {
        self.eof = Some(Box::new(f));
        self
    }
    fn on_handshake(mut self, f: impl FnMut(&Transport) + 'static) -> Probe {
        self.handshake = Some(Box::new(f));
        self
    }
    fn on_lost(mut self, f: impl FnMut(&Transport) + 'static) -> Probe {
        self.lost = Some(Box::new(f));
        self
    }
    fn on_write_complete(mut self, f: impl FnMut(&Transport) + 'static) -> Probe {
        self.write_complete = Some(Box::new(f));
        self
    }
    fn on_pause_writing(mut self, f: impl FnMut(&Transport) + 'static) -> Probe {
        self.pause_writing = Some(Box::new(f));
        self
    }
    fn push(&self, what: impl AsRef<str>) {
        self.log.push(format!("{} {}", self.name, what.as_ref()));
    }
    fn run(&mut self, pick: impl FnOnce(&mut Probe) -> Option<&mut Call>) {
        let transport = self.transport.clone().expect("connected");
        if let Some(f) = pick(self) {
            f(&transport);
        }
    }
}

impl Protocol for Probe {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
        self.push("made");
        self.run(|p| p.made.as_mut());
    }
    fn data_received(&mut self, data: Bytes) {
        self.push(format!("got {}", String::from_utf8_lossy(&data)));
        let transport = self.transport.clone().expect("connected");
        if let Some(f) = self.data.as_mut() {
            f(&transport, &data);
        }
    }
    fn eof_received(&mut self) -> bool {
        self.push("eof");
        let transport = self.transport.clone().expect("connected");
        match self.eof.as_mut() {
            Some(f) => f(&transport),
            None => false,
        }
    }
    fn connection_lost(&mut self, reason: &Reason) {
        self.push(ended(reason));
        self.run(|p| p.lost.as_mut());
    }
    fn pause_writing(&mut self) {
        self.push("pause_writing");
        self.run(|p| p.pause_writing.as_mut());
    }
    fn resume_writing(&mut self) {
        self.push("resume_writing");
    }
    fn write_complete(&mut self) {
        self.run(|p| p.write_complete.as_mut());
    }
    fn event_received(&mut self, event: Event) {
        if event.is::<HandshakeCompleted>() {
            self.push("handshake");
            self.run(|p| p.handshake.as_mut());
        }
    }
}

/// The events of `log` that are not about connecting or the handshake.
fn story(log: &Log) -> Vec<String> {
    log.take()
        .into_iter()
        .filter(|e| !e.ends_with(" made") && !e.ends_with(" handshake"))
        .collect()
}

/// Keeps a transport the test wants to use from outside the protocol.
fn keep() -> (Rc<RefCell<Option<Transport>>>, impl FnMut(&Transport)) {
    let cell = Rc::new(RefCell::new(None));
    let kept = cell.clone();
    (cell, move |t: &Transport| {
        *kept.borrow_mut() = Some(t.clone())
    })
}

// ---------------------------------------------------------------------
// Truncation after a half-close.

/// The client half-closes (`write_eof`, a `close_notify`); the server
/// answers in part, then its socket closes without a `close_notify`. What
/// the client read may have been cut short by an attacker: the module
/// documentation promises `Reason::Lost` with `TlsError::Truncated` for "a
/// peer that closes without one", but the client's own `close_notify`
/// makes the layer call it clean.
#[test]
fn write_eof_then_a_peer_that_closes_without_close_notify_is_truncated() {
    let id = identity();
    let log = Log::default();
    let (server, keep_server) = keep();
    let pair = loopback(
        TlsProtocol::server(
            acceptor(&id),
            Probe::new("server", &log)
                .on_made(keep_server)
                .on_eof(|_| true),
        ),
        TlsProtocol::client(
            connector(&id),
            "localhost",
            Probe::new("client", &log).on_made(|t| {
                t.write("question");
                t.write_eof();
            }),
        )
        .unwrap(),
    );
    pair.flush();
    assert_eq!(story(&log), ["server got question", "server eof"]);
    server
        .borrow()
        .as_ref()
        .unwrap()
        .write("the first half of the ans");
    // Below the server's TLS: the socket closes, with no close_notify.
    pair.server().lose_connection();
    pair.flush();
    let seen = story(&log);
    assert_eq!(seen[0], "client got the first half of the ans");
    let client_lost: Vec<_> = seen
        .iter()
        .filter(|e| e.starts_with("client lost"))
        .collect();
    assert_eq!(
        client_lost,
        ["client lost: error UnexpectedEof (Truncated)"],
        "{seen:?}"
    );
}

// ---------------------------------------------------------------------
// Counters across start_tls.

/// `bytes_written` is "bytes accepted since the connection was made" and
/// `bytes_sent` "handed to the kernel since the connection was made";
/// the output meters of the protocol handlers (idle and write timeouts)
/// take differences of them. After `start_tls` both restart from zero,
/// so they go back, and the writes after STARTTLS are invisible to a
/// meter until they pass what was written before.
#[test]
fn bytes_written_and_bytes_sent_do_not_go_back_at_start_tls() {
    let id = identity();
    let log = Log::default();
    let pair = loopback(Probe::new("server", &log), Probe::new("client", &log));
    let server = pair.server();
    server.write("220 ready for TLS\r\n");
    pair.flush();
    assert_eq!((server.bytes_written(), server.bytes_sent()), (19, 19));
    server.start_tls(acceptor(&id)).unwrap();
    let after = (server.bytes_written(), server.bytes_sent());
    pair.client().start_tls(client_side(&id)).unwrap();
    server.write("hello");
    pair.flush();
    let end = (server.bytes_written(), server.bytes_sent());
    assert!(
        after.0 >= 19 && after.1 >= 19,
        "went back at start_tls: {after:?}"
    );
    assert_eq!(end, (24, 24), "19 in plaintext, then 5 over TLS");
}

// ---------------------------------------------------------------------
// when_writable after start_tls.

/// On a `listen_tls` connection `when_writable` waits for the handshake
/// while what was written before it is over the high watermark
/// (`tls_memory`'s test of it). After `start_tls` the loopback's
/// `when_writable` went to the connection below the layer, which is
/// writable, and ran `f` at once although `is_writable` was false.
#[test]
fn when_writable_after_start_tls_waits_while_early_writes_are_over_the_high_watermark_in_memory() {
    let id = identity();
    let log = Log::default();
    let pair = loopback(Probe::new("server", &log), Probe::new("client", &log));
    let client = pair.client();
    client.set_write_buffer_limits(1024, 512);
    client.start_tls(client_side(&id)).unwrap();
    client.write(vec![b'x'; 4096]);
    assert!(!client.is_writable());
    let ran = Rc::new(Cell::new(false));
    let flag = ran.clone();
    client.when_writable(move || flag.set(true));
    assert!(!ran.get(), "ran while is_writable() is false");
}

/// As above, on a socket: `Conn`'s `when_writable` skipped the layer too.
/// The peer connects and says nothing, so the handshake never completes.
#[test]
fn when_writable_after_start_tls_waits_while_early_writes_are_over_the_high_watermark_over_tcp() {
    let id = identity();
    let reactor = Reactor::new().unwrap();
    let outcome = Rc::new(RefCell::new(None::<(bool, bool)>));
    let seen = outcome.clone();
    let tls = acceptor(&id);
    let log = Log::default();
    let handle = reactor.handle();
    let port = reactor
        .listen_tcp("127.0.0.1:0", move |_| {
            let (tls, seen, handle) = (tls.clone(), seen.clone(), handle.clone());
            Probe::new("server", &log).on_made(move |t| {
                t.set_write_buffer_limits(1024, 512);
                t.start_tls(tls.clone()).unwrap();
                t.write(vec![b'x'; 4096]);
                let ran = Rc::new(Cell::new(false));
                let flag = ran.clone();
                t.when_writable(move || flag.set(true));
                *seen.borrow_mut() = Some((t.is_writable(), ran.get()));
                handle.stop();
            })
        })
        .unwrap();
    let peer = TcpStream::connect(port.host()).unwrap();
    twill_test_support::reactor::run_bounded(&reactor, Duration::from_secs(5));
    drop(peer);
    let (writable, ran) = outcome.borrow().unwrap();
    assert!(!writable);
    assert!(!ran, "ran while is_writable() is false");
}

// ---------------------------------------------------------------------
// write_complete.

/// `write_complete`: "everything written so far has been handed to the
/// kernel: the write buffer is empty again". The layer passes on every
/// flush of the connection below, so the protocol hears it when the
/// ClientHello is sent, while its own first write still waits for the
/// handshake (`write_buffer_size` says so).
#[test]
fn write_complete_is_not_called_while_writes_wait_for_the_handshake() {
    let id = identity();
    let log = Log::default();
    let sizes = Rc::new(RefCell::new(Vec::new()));
    let seen = sizes.clone();
    let pair = loopback(
        TlsProtocol::server(acceptor(&id), Probe::new("server", &log)),
        TlsProtocol::client(
            connector(&id),
            "localhost",
            Probe::new("client", &log)
                .on_made(|t| t.write("early"))
                .on_write_complete(move |t| seen.borrow_mut().push(t.write_buffer_size())),
        )
        .unwrap(),
    );
    pair.flush();
    assert!(story(&log).contains(&"server got early".to_string()));
    let sizes = sizes.borrow();
    assert!(!sizes.is_empty());
    assert!(
        sizes.iter().all(|&n| n == 0),
        "write_complete with bytes still buffered: {sizes:?}"
    );
}

// ---------------------------------------------------------------------
// Reading after a close.

/// A client that sends 64 KiB in one go (four records) to a server
/// whose protocol closes (with `close`) on its first `data_received`.
/// Returns the server's story.
fn close_on_first_read(close: fn(&Transport)) -> Vec<String> {
    let id = identity();
    let log = Log::default();
    let pair = loopback(
        TlsProtocol::server(
            acceptor(&id),
            Probe::new("server", &log).on_data(move |t, _| close(t)),
        ),
        TlsProtocol::client(
            connector(&id),
            "localhost",
            Probe::new("client", &log).on_handshake(|t| {
                for _ in 0..4 {
                    t.write(vec![b'x'; 16 * 1024]);
                }
            }),
        )
        .unwrap(),
    );
    pair.flush();
    story(&log)
        .into_iter()
        .filter(|e| e.starts_with("server"))
        .map(|e| {
            if e.starts_with("server got") {
                "server got".to_string()
            } else {
                e
            }
        })
        .collect()
}

/// `abort_connection` "closes the connection at once": the plain
/// transport reads nothing more. The layer goes on handing the protocol
/// the records it had already read.
#[test]
fn no_data_received_after_abort_connection() {
    let seen = close_on_first_read(|t| t.abort_connection());
    assert_eq!(seen, ["server got", "server lost: aborted"]);
}

/// `lose_connection` "stops reading now"; over TLS the protocol still
/// gets the rest of what the layer had read.
#[test]
fn no_data_received_after_lose_connection() {
    let seen = close_on_first_read(|t| t.lose_connection());
    assert_eq!(seen, ["server got", "server lost: done"]);
}

// ---------------------------------------------------------------------
// Reading paused across start_tls.

/// A protocol that paused reading (waiting on something of its own), then
/// starts TLS and resumes: the layer believes reading is on, ignores the
/// `resume_reading`, and the connection below stays paused, so the
/// handshake never completes.
#[test]
fn resume_reading_after_start_tls_undoes_a_pause_made_before_it() {
    let id = identity();
    let log = Log::default();
    let pair = loopback(Probe::new("server", &log), Probe::new("client", &log));
    let (server, client) = (pair.server(), pair.client());
    server.pause_reading();
    server.start_tls(acceptor(&id)).unwrap();
    client.start_tls(client_side(&id)).unwrap();
    client.write("hello");
    pair.flush();
    server.resume_reading();
    pair.flush();
    assert!(client.tls().unwrap().handshake_complete);
    assert!(server.tls().unwrap().handshake_complete);
    assert_eq!(story(&log), ["server got hello"]);
}

// ---------------------------------------------------------------------
// pause_reading during the handshake, with the peer's close.

/// The server pauses reading before the handshake completes; the client
/// writes, then half-closes (`close_notify`, then FIN). The loopback
/// delivers the FIN although the server paused during the delivery that
/// completed its handshake, and the layer, asked about an EOF before it
/// delivered what it holds, closes: the server never gets the data nor
/// the `close_notify`, and ends "cleanly".
#[test]
fn a_server_paused_during_the_handshake_gets_data_and_eof_after_resume_in_memory() {
    let id = identity();
    let log = Log::default();
    let (server, mut keep_server) = keep();
    let pair = loopback(
        TlsProtocol::server(
            acceptor(&id),
            Probe::new("server", &log).on_made(move |t| {
                keep_server(t);
                t.pause_reading();
            }),
        ),
        TlsProtocol::client(
            connector(&id),
            "localhost",
            Probe::new("client", &log).on_made(|t| {
                t.write("data");
                t.write_eof();
            }),
        )
        .unwrap(),
    );
    pair.flush();
    server.borrow().as_ref().unwrap().resume_reading();
    pair.flush();
    let seen = story(&log);
    assert_eq!(&seen[..2], ["server got data", "server eof"], "{seen:?}");
}

// ---------------------------------------------------------------------
// Pipelining, re-entrancy, failure.

/// What happens to a ClientHello pipelined behind the STARTTLS command in
/// the same read: the protocol gets it, in plaintext, with the command,
/// and has no way to hand it to the layer; the handshake then waits for
/// a ClientHello that already came (on a reactor, until the handshake
/// timeout). Waiting for the answer before the ClientHello, as SMTP
/// requires, avoids it.
#[test]
fn a_client_hello_pipelined_behind_starttls_reaches_the_protocol_and_the_handshake_waits() {
    let id = identity();
    let log = Log::default();
    let tls = acceptor(&id);
    let pair = loopback(
        Probe::new("server", &log).on_data(move |t, data| {
            if data.starts_with(b"STARTTLS\r\n") {
                t.start_tls(tls.clone()).unwrap();
                assert!(data.len() > 10, "the ClientHello came with it");
            }
        }),
        Probe::new("client", &log),
    );
    let client = pair.client();
    client.write("STARTTLS\r\n");
    client.start_tls(client_side(&id)).unwrap();
    pair.flush();
    let seen = story(&log);
    assert!(
        seen[0].starts_with("server got STARTTLS\r\n\u{16}"),
        "{seen:?}"
    );
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(!client.tls().unwrap().handshake_complete);
}

/// Every callback of a protocol inside TLS calls its transport: writes,
/// closes, half-closes, pauses and resumes reading, fires events, asks
/// for `flushed` and `when_writable`, tries `start_tls` again. Nothing
/// panics with a borrow error, nothing spins, both ends close once.
#[test]
fn a_protocol_that_calls_its_transport_from_every_callback_does_not_upset_the_layer() {
    fn busy(t: &Transport, id: &Identity) {
        t.write("x");
        let _ = t.write_with(|buf| buf.extend_from_slice(b"y"));
        t.write_sequence(["z"]);
        t.pause_reading();
        t.resume_reading();
        t.fire_event(Event::new(()));
        drop(t.flushed());
        t.when_writable(|| {});
        let _ = (t.is_writable(), t.write_buffer_size(), t.bytes_sent());
        let _ = t.tls();
        assert!(t.start_tls(acceptor(id)).is_err());
    }
    let id = Rc::new(identity());
    let log = Log::default();
    let with = |name, close: fn(&Transport)| {
        let ids: Vec<_> = (0..7).map(|_| id.clone()).collect();
        let mut ids = ids.into_iter();
        let (a, b, c, d, e, f, g) = (
            ids.next().unwrap(),
            ids.next().unwrap(),
            ids.next().unwrap(),
            ids.next().unwrap(),
            ids.next().unwrap(),
            ids.next().unwrap(),
            ids.next().unwrap(),
        );
        let count = Rc::new(Cell::new(0));
        Probe::new(name, &log)
            .on_made(move |t| busy(t, &a))
            .on_handshake(move |t| busy(t, &b))
            .on_data(move |t, _| {
                busy(t, &c);
                count.set(count.get() + 1);
                if count.get() == 3 {
                    close(t);
                }
            })
            .on_eof(move |t| {
                busy(t, &d);
                t.write_eof();
                t.lose_connection();
                true
            })
            .on_write_complete(move |t| {
                let _ = (t.write_buffer_size(), t.is_closing(), &e);
            })
            .on_pause_writing(move |t| busy(t, &f))
            .on_lost(move |t| {
                busy_after_close(t, &g);
            })
    };
    fn busy_after_close(t: &Transport, id: &Identity) {
        t.write("dropped");
        t.lose_connection();
        t.write_eof();
        t.abort_connection();
        t.pause_reading();
        t.resume_reading();
        t.fire_event(Event::new(()));
        drop(t.flushed());
        t.when_writable(|| {});
        assert!(t.start_tls(acceptor(id)).is_err());
    }
    let pair = loopback(
        TlsProtocol::server(acceptor(&id), with("server", |t| t.write_eof())),
        TlsProtocol::client(
            connector(&id),
            "localhost",
            with("client", |t| t.fail(io::Error::other("enough"))),
        )
        .unwrap(),
    );
    pair.flush();
    let seen = log.take();
    let lost: Vec<_> = seen.iter().filter(|e| e.contains("lost")).collect();
    assert_eq!(lost.len(), 2, "{seen:?}");
}

/// `fail` over TLS: `connection_lost` gets `Reason::Failed` with the error,
/// and the peer still gets a `close_notify` (an EOF, then a clean close).
#[test]
fn fail_sends_close_notify_and_reports_failed_with_the_error() {
    let id = identity();
    let log = Log::default();
    let pair = loopback(
        TlsProtocol::server(
            acceptor(&id),
            Probe::new("server", &log).on_data(|t, _| t.fail(io::Error::other("bad request"))),
        ),
        TlsProtocol::client(
            connector(&id),
            "localhost",
            Probe::new("client", &log).on_made(|t| t.write("request")),
        )
        .unwrap(),
    );
    pair.flush();
    let seen = story(&log);
    for expected in [
        "server got request",
        "client eof",
        "server lost: failed bad request",
        "client lost: done",
    ] {
        assert!(seen.contains(&expected.to_string()), "{seen:?}");
    }
}

/// The loopback promises transports that "behave as the reactor's do",
/// whose `lose_connection` "stops reading now"; it goes on delivering
/// what the peer sends to a side that is closing. (Over TLS the layer
/// passes it on: a protocol that called `fail` then hears the peer's
/// `close_notify` as `eof_received`.)
#[test]
fn the_loopback_delivers_nothing_to_a_side_that_called_lose_connection() {
    let log = Log::default();
    let pair = loopback(
        Probe::new("server", &log).on_made(|t| {
            t.write("bye");
            t.lose_connection();
        }),
        Probe::new("client", &log).on_data(|t, _| t.write("too late")),
    );
    pair.flush();
    assert_eq!(
        story(&log),
        ["client got bye", "server lost: done", "client lost: done"]
    );
}

/// Sets its flag when dropped.
struct Dropped(Rc<Cell<bool>>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

/// After `connection_lost`, nothing keeps the protocols alive: not the
/// session (which holds the connection below it), not the transports
/// the protocols keep, not a `when_writable` or `flushed` left waiting
/// for a handshake that never came.
#[test]
fn nothing_outlives_connection_lost_after_start_tls() {
    let id = Rc::new(identity());
    let log = Log::default();
    let flags: Vec<_> = (0..2).map(|_| Rc::new(Cell::new(false))).collect();
    let with = |name, flag: &Rc<Cell<bool>>, side: StartTls| {
        let guard = Dropped(flag.clone());
        Probe::new(name, &log).on_made(move |t| {
            let _ = &guard;
            t.start_tls(side.clone()).unwrap();
            t.set_write_buffer_limits(16, 8);
            t.write(vec![b'x'; 64]);
            let (a, b) = (t.clone(), t.clone());
            t.when_writable(move || drop(a));
            t.flushed().add_both(move |outcome| {
                drop(b);
                outcome
            });
        })
    };
    let pair = loopback(
        with("server", &flags[0], StartTls::from(acceptor(&id))),
        with("client", &flags[1], client_side(&id)),
    );
    // The client goes before the handshake completes.
    pair.client().abort_connection();
    pair.flush();
    assert_eq!(
        log.events().iter().filter(|e| e.contains("lost")).count(),
        2
    );
    assert!(
        flags.iter().all(|f| f.get()),
        "a protocol outlived its connection"
    );
}

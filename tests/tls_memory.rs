//! TLS between two protocols connected in memory (`testing::loopback`),
//! step by step and on a hand-advanced `Clock`: what the wrapped protocol
//! sees, from the `tls` module's documentation.
//!
//! - `connection_made` at connect; writes made before the handshake
//!   completes are sent after it, in order; `HandshakeCompleted` arrives
//!   once, and `Transport::tls` then tells what was negotiated (version,
//!   ALPN, server name, the peer's certificates).
//! - `lose_connection` sends `close_notify` (after what was written, even
//!   before the handshake completes); the peer's `close_notify` is
//!   `eof_received`; `write_eof` is TLS's half-close; a peer that closes
//!   without `close_notify` is `Reason::Lost` with `TlsError::Truncated`.
//! - a failed handshake (wrong name, untrusted certificate, no client
//!   certificate where one is required, a peer that does not speak TLS,
//!   a timeout) ends the connection with `Reason::Failed(TlsError)`.
//! - `pause_reading` holds the peer's data back; `resume_reading` delivers
//!   what waited; the watermarks are those of the encrypted bytes.
#![cfg(feature = "tls")]

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use twill::task::Clock;
use twill::testing::{loopback, Loopback, StringTransport};
use twill::tls::{
    config, CertificateDer, HandshakeCompleted, PrivateKeyDer, StartTls, TlsAcceptor, TlsConnector,
    TlsError, TlsProtocol,
};
use twill::{Bytes, Event, Protocol, Reason, Transport};
use twill_test_support::events::{describe, Log};

struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn identity(name: &str) -> Identity {
    let made = rcgen::generate_simple_self_signed(vec![name.into()]).unwrap();
    Identity {
        chain: vec![made.cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into()),
    }
}

/// `server` and `client` over TLS in memory, the client trusting `id`
/// and asking for `localhost`.
fn localhost_pair(id: &Identity, server: impl Protocol, client: impl Protocol) -> Loopback {
    loopback(
        TlsProtocol::server(acceptor(id), server),
        TlsProtocol::client(connector(id), "localhost", client).unwrap(),
    )
}

fn acceptor(id: &Identity) -> TlsAcceptor {
    TlsAcceptor::new(config::server_config(id.chain.clone(), id.key.clone_key()).unwrap())
}

fn connector(trusting: &Identity) -> TlsConnector {
    TlsConnector::new(config::client_config_trusting(trusting.chain.clone()).unwrap())
}

type OnConnect = Box<dyn FnOnce(&Transport)>;
type OnData = Box<dyn FnMut(&Transport, Bytes)>;

/// Records what it sees as lines in a `Log`; does what `on_data` says
/// with what it reads.
struct Peer {
    name: &'static str,
    log: Log,
    transport: Option<Transport>,
    on_connect: Option<OnConnect>,
    on_data: Option<OnData>,
    keep_open: bool,
}

impl Peer {
    fn new(name: &'static str, log: &Log) -> Peer {
        Peer {
            name,
            log: log.clone(),
            transport: None,
            on_connect: None,
            on_data: None,
            keep_open: false,
        }
    }

    fn on_connect(mut self, f: impl FnOnce(&Transport) + 'static) -> Peer {
        self.on_connect = Some(Box::new(f));
        self
    }

    fn on_data(mut self, f: impl FnMut(&Transport, Bytes) + 'static) -> Peer {
        self.on_data = Some(Box::new(f));
        self
    }

    fn echo(self) -> Peer {
        self.on_data(|t, data| t.write(data))
    }

    fn keep_open(mut self) -> Peer {
        self.keep_open = true;
        self
    }
}

impl Protocol for Peer {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
        self.log.push(format!("{} made", self.name));
        if let Some(f) = self.on_connect.take() {
            f(transport);
        }
    }
    fn data_received(&mut self, data: Bytes) {
        self.log.push(format!(
            "{} got {}",
            self.name,
            String::from_utf8_lossy(&data)
        ));
        if let Some(f) = self.on_data.as_mut() {
            f(self.transport.as_ref().unwrap(), data);
        }
    }
    fn eof_received(&mut self) -> bool {
        self.log.push(format!("{} eof", self.name));
        self.keep_open
    }
    fn connection_lost(&mut self, reason: &Reason) {
        self.log.push(format!("{} {}", self.name, describe(reason)));
    }
    fn pause_writing(&mut self) {
        self.log.push(format!("{} pause_writing", self.name));
    }
    fn resume_writing(&mut self) {
        self.log.push(format!("{} resume_writing", self.name));
    }
    fn event_received(&mut self, event: Event) {
        if let Some(done) = event.downcast_ref::<HandshakeCompleted>() {
            self.log.push(format!(
                "{} handshake {:?}",
                self.name,
                done.info.protocol_version.unwrap()
            ));
        }
    }
}

/// Keeps the reason a protocol's connection ended with.
struct Outcome(Rc<RefCell<Option<String>>>);

impl Protocol for Outcome {
    fn data_received(&mut self, _: Bytes) {}
    fn connection_lost(&mut self, reason: &Reason) {
        *self.0.borrow_mut() = Some(match TlsError::of(reason) {
            Some(err) => format!("{err:?}"),
            None => describe(reason),
        });
    }
}

fn outcome() -> (Outcome, Rc<RefCell<Option<String>>>) {
    let cell = Rc::new(RefCell::new(None));
    (Outcome(cell.clone()), cell)
}

#[test]
fn early_writes_follow_the_handshake_in_order_and_the_handshake_is_reported_once() {
    let id = identity("localhost");
    let log = Log::default();
    let pair = localhost_pair(
        &id,
        Peer::new("server", &log).echo(),
        Peer::new("client", &log).on_connect(|t| {
            t.write("one ");
            t.write_sequence(["two ", "three"]);
        }),
    );
    assert_eq!(log.take(), ["server made", "client made"]);
    pair.flush();
    let seen = log.take();
    assert_eq!(seen.iter().filter(|e| e.contains("handshake")).count(), 2);
    assert!(seen.contains(&"server handshake TLSv1_3".to_string()));
    let server_got: String = seen
        .iter()
        .filter_map(|e| e.strip_prefix("server got "))
        .collect();
    let client_got: String = seen
        .iter()
        .filter_map(|e| e.strip_prefix("client got "))
        .collect();
    assert_eq!(server_got, "one two three");
    assert_eq!(client_got, "one two three");
}

#[test]
fn tls_info_names_version_server_name_alpn_and_peer_certificates() {
    let id = identity("localhost");
    let log = Log::default();
    let infos = Rc::new(RefCell::new(Vec::new()));
    let (a, b) = (infos.clone(), infos.clone());
    let mut server_config = config::server_config(id.chain.clone(), id.key.clone_key()).unwrap();
    server_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut client_config = config::client_config_trusting(id.chain.clone()).unwrap();
    client_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let pair = loopback(
        TlsProtocol::server(
            server_config,
            Peer::new("server", &log).on_data(move |t, data| {
                a.borrow_mut().push(("server", t.tls().unwrap()));
                t.write(data);
            }),
        ),
        TlsProtocol::client(
            client_config,
            "localhost",
            Peer::new("client", &log)
                .on_connect(|t| {
                    assert!(!t.tls().unwrap().handshake_complete);
                    t.write("hi");
                })
                .on_data(move |t, _| b.borrow_mut().push(("client", t.tls().unwrap()))),
        )
        .unwrap(),
    );
    pair.flush();
    let infos = infos.borrow();
    let (side, server) = &infos[0];
    assert_eq!(*side, "server");
    assert!(server.handshake_complete);
    assert_eq!(
        server.protocol_version,
        Some(twill::tls::rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(server.alpn_protocol.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(server.server_name.as_deref(), Some("localhost"));
    assert!(server.peer_certificates.is_empty(), "no client certificate");
    assert!(server.cipher_suite.is_some());
    let (side, client) = &infos[1];
    assert_eq!(*side, "client");
    assert_eq!(client.alpn_protocol.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(client.peer_certificates, id.chain);
}

#[test]
fn lose_connection_before_the_handshake_sends_what_was_written_then_close_notify() {
    let id = identity("localhost");
    let log = Log::default();
    let pair = localhost_pair(
        &id,
        Peer::new("server", &log),
        Peer::new("client", &log).on_connect(|t| {
            t.write("last words");
            t.lose_connection();
            t.write("dropped: after lose_connection");
        }),
    );
    pair.flush();
    let seen: Vec<_> = log
        .take()
        .into_iter()
        .filter(|e| !e.contains("handshake") && !e.ends_with("made"))
        .collect();
    assert_eq!(
        seen,
        [
            "server got last words",
            "server eof",
            "client lost: done",
            "server lost: done"
        ]
    );
}

#[test]
fn a_peer_close_notify_is_eof_received_and_the_connection_closes_cleanly() {
    let id = identity("localhost");
    let log = Log::default();
    let pair = localhost_pair(
        &id,
        Peer::new("server", &log).echo(),
        Peer::new("client", &log)
            .on_connect(|t| t.write("bye"))
            .on_data(|t, _| t.lose_connection()),
    );
    pair.flush();
    let seen: Vec<_> = log
        .take()
        .into_iter()
        .filter(|e| !e.contains("handshake") && !e.ends_with("made"))
        .collect();
    assert_eq!(
        seen,
        [
            "server got bye",
            "client got bye",
            "server eof",
            "client lost: done",
            "server lost: done"
        ]
    );
}

#[test]
fn write_eof_is_a_tls_half_close_and_the_peer_may_answer() {
    let id = identity("localhost");
    let log = Log::default();
    let server = Peer::new("server", &log).keep_open().on_data(|t, data| {
        t.write(data);
    });
    let pair = localhost_pair(
        &id,
        server,
        Peer::new("client", &log).on_connect(|t| {
            t.write("question");
            t.write_eof();
        }),
    );
    pair.flush();
    let seen: Vec<_> = log
        .take()
        .into_iter()
        .filter(|e| !e.contains("handshake") && !e.ends_with("made"))
        .collect();
    // The server reads the question, then EOF, keeps the connection open,
    // and its answer still reaches the half-closed client.
    assert_eq!(
        seen,
        ["server got question", "server eof", "client got question"]
    );
}

#[test]
fn closing_without_close_notify_is_reported_as_truncated() {
    let id = identity("localhost");
    let (server, reason) = outcome();
    let pair = localhost_pair(&id, server, Peer::new("client", &Log::default()));
    pair.flush();
    // Below the client's TLS: the TCP connection closes, no close_notify.
    pair.client().lose_connection();
    pair.flush();
    assert_eq!(reason.borrow().as_deref(), Some("Truncated"));
}

#[test]
fn closing_during_the_handshake_is_reported_as_such() {
    let id = identity("localhost");
    let (server, reason) = outcome();
    let pair = localhost_pair(&id, server, Peer::new("client", &Log::default()));
    // The client's hello reaches the server; then the client goes.
    pair.pump();
    pair.client().lose_connection();
    pair.flush();
    assert_eq!(reason.borrow().as_deref(), Some("ClosedDuringHandshake"));
}

#[test]
fn a_wrong_server_name_fails_the_handshake_on_both_sides() {
    let id = identity("localhost");
    let (server, server_reason) = outcome();
    let (client, client_reason) = outcome();
    let pair = loopback(
        TlsProtocol::server(acceptor(&id), server),
        TlsProtocol::client(connector(&id), "other.example", client).unwrap(),
    );
    pair.flush();
    let client_reason = client_reason.borrow().clone().unwrap();
    assert!(
        client_reason.starts_with("Handshake(") && client_reason.contains("NotValidForName"),
        "{client_reason}"
    );
    let server_reason = server_reason.borrow().clone().unwrap();
    assert!(server_reason.starts_with("Handshake("), "{server_reason}");
}

#[test]
fn an_untrusted_certificate_fails_the_handshake() {
    let id = identity("localhost");
    let stranger = identity("localhost");
    let (client, client_reason) = outcome();
    let pair = loopback(
        TlsProtocol::server(acceptor(&id), Peer::new("server", &Log::default())),
        TlsProtocol::client(connector(&stranger), "localhost", client).unwrap(),
    );
    pair.flush();
    let reason = client_reason.borrow().clone().unwrap();
    assert!(
        reason.contains("UnknownIssuer") || reason.contains("BadSignature"),
        "{reason}"
    );
}

#[test]
fn mutual_tls_shows_the_client_certificate_and_refuses_a_client_without_one() {
    let server_id = identity("localhost");
    let client_id = identity("client.example");
    let server_config = config::server_config_with_client_auth(
        server_id.chain.clone(),
        server_id.key.clone_key(),
        client_id.chain.clone(),
        true,
    )
    .unwrap();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let kept = seen.clone();
    let pair = loopback(
        TlsProtocol::server(
            server_config.clone(),
            Peer::new("server", &Log::default())
                .on_data(move |t, _| kept.borrow_mut().extend(t.tls().unwrap().peer_certificates)),
        ),
        TlsProtocol::client(
            config::client_config_with_client_auth(
                server_id.chain.clone(),
                client_id.chain.clone(),
                client_id.key.clone_key(),
            )
            .unwrap(),
            "localhost",
            Peer::new("client", &Log::default()).on_connect(|t| t.write("me")),
        )
        .unwrap(),
    );
    pair.flush();
    assert_eq!(*seen.borrow(), client_id.chain);

    let (server, reason) = outcome();
    let pair = loopback(
        TlsProtocol::server(server_config, server),
        TlsProtocol::client(
            connector(&server_id),
            "localhost",
            Peer::new("client", &Log::default()),
        )
        .unwrap(),
    );
    pair.flush();
    let reason = reason.borrow().clone().unwrap();
    assert!(reason.contains("NoCertificatesPresented"), "{reason}");
}

#[test]
fn sni_chooses_the_certificate_by_name() {
    let a = identity("a.example");
    let b = identity("b.example");
    let resolver = config::SniResolver::new()
        .add("a.example", a.chain.clone(), a.key.clone_key())
        .unwrap()
        .add("B.Example", b.chain.clone(), b.key.clone_key())
        .unwrap();
    let server_config = config::server_config_with_sni(resolver).unwrap();
    for (name, id) in [("a.example", &a), ("b.example", &b)] {
        let certs = Rc::new(RefCell::new(Vec::new()));
        let kept = certs.clone();
        let pair = loopback(
            TlsProtocol::server(
                server_config.clone(),
                Peer::new("server", &Log::default()).echo(),
            ),
            TlsProtocol::client(
                connector(id),
                name,
                Peer::new("client", &Log::default())
                    .on_connect(|t| t.write("x"))
                    .on_data(move |t, _| {
                        kept.borrow_mut().extend(t.tls().unwrap().peer_certificates)
                    }),
            )
            .unwrap(),
        );
        pair.flush();
        assert_eq!(*certs.borrow(), id.chain, "certificate for {name}");
    }
    // No default: a name it does not know fails the handshake.
    let (client, reason) = outcome();
    let pair = loopback(
        TlsProtocol::server(server_config, Peer::new("server", &Log::default())),
        TlsProtocol::client(connector(&a), "c.example", client).unwrap(),
    );
    pair.flush();
    assert!(reason
        .borrow()
        .as_deref()
        .unwrap()
        .starts_with("Handshake("));
}

#[test]
fn tls12_is_negotiated_when_one_side_offers_only_tls12() {
    let id = identity("localhost");
    let server_config = config::server_builder(&[&twill::tls::rustls::version::TLS12])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(id.chain.clone(), id.key.clone_key())
        .unwrap();
    let log = Log::default();
    let pair = loopback(
        TlsProtocol::server(server_config, Peer::new("server", &log).echo()),
        TlsProtocol::client(
            connector(&id),
            "localhost",
            Peer::new("client", &log).on_connect(|t| t.write("twelve")),
        )
        .unwrap(),
    );
    pair.flush();
    let seen = log.take();
    assert!(
        seen.contains(&"client handshake TLSv1_2".to_string()),
        "{seen:?}"
    );
    assert!(seen.contains(&"client got twelve".to_string()), "{seen:?}");
}

#[test]
fn plaintext_to_a_tls_server_is_not_tls() {
    let id = identity("localhost");
    let (server, reason) = outcome();
    let pair = loopback(
        TlsProtocol::server(acceptor(&id), server),
        Peer::new("client", &Log::default()).on_connect(|t| t.write("GET / HTTP/1.1\r\n\r\n")),
    );
    pair.flush();
    assert_eq!(reason.borrow().as_deref(), Some("NotTls"));
}

#[test]
fn the_handshake_times_out_on_the_clock() {
    let id = identity("localhost");
    let clock = Clock::new();
    let (server, reason) = outcome();
    let pair = loopback(
        TlsProtocol::server(acceptor(&id), server).clock(Rc::new(clock.clone())),
        Peer::new("silent client", &Log::default()),
    );
    pair.flush();
    clock.advance(twill::tls::DEFAULT_HANDSHAKE_TIMEOUT - Duration::from_millis(1));
    pair.flush();
    assert_eq!(*reason.borrow(), None);
    clock.advance(Duration::from_millis(1));
    pair.flush();
    assert_eq!(reason.borrow().as_deref(), Some("HandshakeTimeout(10s)"));
}

#[test]
fn a_completed_handshake_cancels_the_timeout() {
    let id = identity("localhost");
    let clock = Clock::new();
    let log = Log::default();
    let pair = loopback(
        TlsProtocol::server(
            acceptor(&id).handshake_timeout(Duration::from_secs(1)),
            Peer::new("server", &log),
        )
        .clock(Rc::new(clock.clone())),
        TlsProtocol::client(connector(&id), "localhost", Peer::new("client", &log)).unwrap(),
    );
    pair.flush();
    assert!(clock.delayed_calls().is_empty(), "the timer is cancelled");
    clock.advance(Duration::from_secs(5));
    pair.flush();
    assert!(!log.events().iter().any(|e| e.contains("lost")));
}

#[test]
fn pause_reading_holds_the_peer_data_until_resume_reading() {
    let id = identity("localhost");
    let log = Log::default();
    let server_transport = Rc::new(RefCell::new(None::<Transport>));
    let kept = server_transport.clone();
    let pair = loopback(
        TlsProtocol::server(
            acceptor(&id),
            Peer::new("server", &log).on_connect(move |t| *kept.borrow_mut() = Some(t.clone())),
        ),
        TlsProtocol::client(
            connector(&id),
            "localhost",
            Peer::new("client", &log).on_data(|t, data| {
                if &data[..] == b"go" {
                    t.write("first");
                }
            }),
        )
        .unwrap(),
    );
    pair.flush();
    let server = server_transport.borrow().clone().unwrap();
    server.pause_reading();
    server.write("go");
    pair.flush();
    assert!(
        !log.events().iter().any(|e| e == "server got first"),
        "paused: {:?}",
        log.events()
    );
    server.resume_reading();
    pair.flush();
    assert!(
        log.events().iter().any(|e| e == "server got first"),
        "{:?}",
        log.events()
    );
}

#[test]
fn watermarks_count_encrypted_bytes_and_pause_the_writer() {
    let id = identity("localhost");
    let log = Log::default();
    let server_transport = Rc::new(RefCell::new(None::<Transport>));
    let kept = server_transport.clone();
    let client_transport = Rc::new(RefCell::new(None::<Transport>));
    let kept_client = client_transport.clone();
    let pair = loopback(
        TlsProtocol::server(
            acceptor(&id),
            Peer::new("server", &log).on_connect(move |t| *kept.borrow_mut() = Some(t.clone())),
        ),
        TlsProtocol::client(
            connector(&id),
            "localhost",
            Peer::new("client", &log)
                .on_connect(move |t| *kept_client.borrow_mut() = Some(t.clone())),
        )
        .unwrap(),
    );
    pair.flush();
    let server = server_transport.borrow().clone().unwrap();
    let client = client_transport.borrow().clone().unwrap();
    server.set_write_buffer_limits(4096, 1024);
    client.pause_reading();
    server.write(vec![b'x'; 10_000]);
    assert!(server.write_buffer_size() > 10_000, "ciphertext is larger");
    pair.flush();
    assert!(log.events().iter().any(|e| e == "server pause_writing"));
    assert!(!server.is_writable());
    client.resume_reading();
    pair.flush();
    assert!(log.events().iter().any(|e| e == "server resume_writing"));
    assert_eq!(server.bytes_written(), 10_000);
    assert_eq!(server.bytes_sent(), 10_000);
}

#[test]
fn start_tls_is_refused_twice_and_where_a_transport_cannot_take_it() {
    let id = identity("localhost");
    let err = StringTransport::new()
        .transport()
        .start_tls(acceptor(&id))
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::Unsupported);

    let pair = loopback(
        Peer::new("server", &Log::default()),
        Peer::new("client", &Log::default()),
    );
    pair.server().start_tls(acceptor(&id)).unwrap();
    let again = pair.server().start_tls(acceptor(&id)).unwrap_err();
    assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
    let client = pair.client();
    client
        .start_tls(StartTls::client(connector(&id), "localhost").unwrap())
        .unwrap();
    client.write("after");
    pair.flush();
    assert!(client.tls().unwrap().handshake_complete);
}

#[test]
fn when_writable_waits_for_the_handshake_while_early_writes_are_over_the_high_watermark() {
    let id = identity("localhost");
    let ran = Rc::new(RefCell::new(false));
    let flag = ran.clone();
    let client_transport = Rc::new(RefCell::new(None::<Transport>));
    let kept = client_transport.clone();
    let pair = localhost_pair(
        &id,
        Peer::new("server", &Log::default()),
        Peer::new("client", &Log::default()).on_connect(move |t| {
            t.set_write_buffer_limits(1024, 512);
            t.write(vec![b'x'; 4096]);
            assert!(!t.is_writable());
            t.when_writable(Box::new(move || *flag.borrow_mut() = true));
            *kept.borrow_mut() = Some(t.clone());
        }),
    );
    assert!(!*ran.borrow(), "not before the handshake");
    pair.flush();
    assert!(*ran.borrow());
    assert!(client_transport.borrow().as_ref().unwrap().is_writable());
}

#[test]
fn acceptors_and_connectors_may_be_shared_with_reactors_on_other_threads() {
    fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<TlsAcceptor>();
    send_and_sync::<TlsConnector>();
    send_and_sync::<StartTls>();
}

#[test]
fn a_header_and_body_written_together_arrive_in_order_before_and_after_the_handshake() {
    let id = identity("localhost");
    let log = Log::default();
    let body = Bytes::from(vec![b'b'; 20_000]);
    let (early, late) = (body.clone(), body.slice(..100));
    let got = Rc::new(RefCell::new(Vec::new()));
    let kept = got.clone();
    let pair = loopback(
        TlsProtocol::server(
            acceptor(&id),
            Peer::new("server", &log).on_data(move |t, data| {
                kept.borrow_mut().extend_from_slice(&data);
                if kept.borrow().len() == 6 + 20_000 {
                    t.write("ack");
                }
            }),
        ),
        TlsProtocol::client(
            connector(&id),
            "localhost",
            Peer::new("client", &log)
                .on_connect(move |t| {
                    t.write_with_body(|buf| {
                        buf.extend_from_slice(b"early:");
                        ((), Some(early.clone()))
                    });
                })
                .on_data(move |t, _| {
                    t.write_with_body(|buf| {
                        buf.extend_from_slice(b"late:");
                        ((), Some(late.clone()))
                    });
                }),
        )
        .unwrap(),
    );
    pair.flush();
    let mut expected = b"early:".to_vec();
    expected.extend_from_slice(&body);
    expected.extend_from_slice(b"late:");
    expected.extend_from_slice(&body[..100]);
    assert_eq!(got.borrow().len(), expected.len());
    assert_eq!(*got.borrow(), expected);
}

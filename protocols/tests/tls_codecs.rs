//! The codec layer inside TLS, unchanged: a `Framed` line handler wrapped
//! in a `TlsProtocol` talks to a TLS client in memory
//! (`twill::testing::loopback`), and a too-long line is still a typed
//! error that closes that connection (with `close_notify`) and nothing
//! else.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use twill::testing::loopback;
use twill::tls::{config, PrivateKeyDer, TlsAcceptor, TlsConnector, TlsProtocol};
use twill::{Protocol, Reason, Transport};
use twill_protocols::codec::{
    Context, DecodeError, Framed, Handler, LineBasedFrameDecoder, LineEncoder,
};
use twill_test_support::events::{describe, Log};

/// Answers each line with it in capitals; logs decode errors.
struct Shout {
    log: Log,
}

impl Handler for Shout {
    type Message = Bytes;
    type Reply = String;
    fn message_received(&mut self, ctx: &Context<String>, line: Bytes) {
        ctx.write(String::from_utf8_lossy(&line).to_uppercase());
    }
    fn exception_caught(&mut self, ctx: &Context<String>, error: DecodeError) {
        self.log.push(format!("error {error}"));
        ctx.transport().fail(error);
    }
    fn connection_lost(&mut self, _ctx: &Context<String>, reason: &Reason) {
        self.log.push(format!("server {}", describe(reason)));
    }
}

/// Sends `lines` when connected; keeps what comes back.
struct Client {
    lines: &'static [u8],
    got: Rc<RefCell<Vec<u8>>>,
    log: Log,
}

impl Protocol for Client {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write(self.lines);
    }
    fn data_received(&mut self, data: Bytes) {
        self.got.borrow_mut().extend_from_slice(&data);
    }
    fn connection_lost(&mut self, reason: &Reason) {
        self.log.push(format!("client {}", describe(reason)));
    }
}

fn tls_pair() -> (TlsAcceptor, TlsConnector) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let chain = vec![made.cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
    (
        TlsAcceptor::new(config::server_config(chain.clone(), key).unwrap()),
        TlsConnector::new(config::client_config_trusting(chain).unwrap()),
    )
}

fn run(lines: &'static [u8]) -> (Vec<u8>, Vec<String>) {
    let (acceptor, connector) = tls_pair();
    let log = Log::default();
    let got = Rc::new(RefCell::new(Vec::new()));
    let server = Framed::new(
        LineBasedFrameDecoder::new(16),
        LineEncoder::new(),
        Shout { log: log.clone() },
    );
    let client = Client {
        lines,
        got: got.clone(),
        log: log.clone(),
    };
    let pair = loopback(
        TlsProtocol::server(acceptor, server),
        TlsProtocol::client(connector, "localhost", client).unwrap(),
    );
    pair.flush();
    let got = got.borrow().clone();
    (got, log.events())
}

#[test]
fn a_framed_line_handler_runs_inside_tls() {
    let (got, log) = run(b"hello\nover tls\n");
    assert_eq!(got, b"HELLO\nOVER TLS\n");
    assert!(log.is_empty(), "{log:?}");
}

#[test]
fn a_too_long_line_inside_tls_fails_that_connection_after_the_replies_before_it() {
    let (got, log) = run(b"short\nthis line is far too long for sixteen bytes\n");
    assert_eq!(got, b"SHORT\n");
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(log[0].starts_with("error "), "{log:?}");
    assert!(log[1].starts_with("server lost: failed"), "{log:?}");
    // The server closed with close_notify: a clean close for the client.
    assert_eq!(log[2], "client lost: done");
}

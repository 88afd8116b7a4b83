//! [`TlsProtocol`]: the wrapper that runs TLS between a connection and the
//! protocol inside it.

use std::fmt;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use bytes::Bytes;

use super::session::{Fed, ReplaceProtocol, ResumeInput, Session};
use super::{HandshakeCompleted, StartTls, TlsAcceptor, TlsConnector};
use crate::event::Event;
use crate::protocol::{Panicked, Protocol, Reason};
use crate::time::ReactorTime;
use crate::transport::Transport;

/// Runs TLS over the connection it is the protocol of, and hands the
/// plaintext to `P`, which gets a [`Transport`] whose writes are encrypted:
/// Twisted's `TLSMemoryBIOProtocol`. See [the module](super) for what the
/// wrapped protocol sees.
///
/// [`Reactor::listen_tls`](crate::Reactor::listen_tls) and
/// [`connect_tls`](crate::Reactor::connect_tls) wrap each protocol in one;
/// build one yourself to run TLS over a transport of your own, or to test
/// a protocol over TLS in memory
/// ([`testing::loopback`](crate::testing::loopback); the [module](super)
/// has an example).
///
/// A panic in the protocol inside while the layer hands it what it read
/// (its `data_received`, `eof_received`, or the [`HandshakeCompleted`]
/// event) fails the connection with [`Reason::Failed`] holding a
/// [`Panicked`] named after that callback, as a panic does on a plain
/// connection; the protocol then hears only `connection_lost`.
pub struct TlsProtocol<P> {
    side: Option<StartTls>,
    clock: Option<Rc<dyn ReactorTime>>,
    session: Option<Rc<Session>>,
    /// The protocol inside; `None` once `set_protocol` replaced it.
    inner: Option<P>,
    /// What `Transport::set_protocol` put in its place.
    replacement: Option<Box<dyn Protocol>>,
    /// The peer's `close_notify` was passed on as `eof_received`, which
    /// answered this.
    eof_reported: Option<bool>,
    /// The protocol inside panicked: it is told nothing more but
    /// `connection_lost`.
    panicked: bool,
}

impl<P: Protocol> TlsProtocol<P> {
    /// The server side: accepts a handshake, then runs `inner`.
    pub fn server(acceptor: impl Into<TlsAcceptor>, inner: P) -> TlsProtocol<P> {
        TlsProtocol::new(StartTls::Server(acceptor.into()), inner)
    }

    /// The client side: starts a handshake with the server named
    /// `server_name` (checked against its certificate and sent as SNI),
    /// then runs `inner`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `server_name` is neither a DNS name nor an IP
    /// address.
    pub fn client(
        connector: impl Into<TlsConnector>,
        server_name: &str,
        inner: P,
    ) -> io::Result<TlsProtocol<P>> {
        Ok(TlsProtocol::new(
            StartTls::client(connector, server_name)?,
            inner,
        ))
    }

    /// Takes the `side` of the handshake, then runs `inner`.
    pub fn new(side: StartTls, inner: P) -> TlsProtocol<P> {
        TlsProtocol {
            side: Some(side),
            clock: None,
            session: None,
            inner: Some(inner),
            replacement: None,
            eof_reported: None,
            panicked: false,
        }
    }

    /// Over a session already started (`Transport::start_tls`), for a
    /// protocol already connected.
    pub(crate) fn attached(session: Rc<Session>, inner: P) -> TlsProtocol<P> {
        TlsProtocol {
            side: None,
            clock: None,
            session: Some(session),
            inner: Some(inner),
            replacement: None,
            eof_reported: None,
            panicked: false,
        }
    }

    /// Times the handshake on `clock` (a [`Clock`](crate::task::Clock) in
    /// tests) instead of the reactor of the thread.
    pub fn clock(mut self, clock: Rc<dyn ReactorTime>) -> TlsProtocol<P> {
        self.clock = Some(clock);
        self
    }

    /// The protocol inside; `None` once
    /// [`Transport::set_protocol`](crate::Transport::set_protocol) gave
    /// the connection to another.
    pub fn inner(&self) -> Option<&P> {
        self.inner.as_ref()
    }

    /// The protocol inside, mutably; `None` once replaced.
    pub fn inner_mut(&mut self) -> Option<&mut P> {
        self.inner.as_mut()
    }

    /// The protocol the plaintext goes to: the one inside, or what
    /// replaced it.
    fn current(&mut self) -> Option<&mut dyn Protocol> {
        match &mut self.replacement {
            Some(replacement) => Some(&mut **replacement),
            None => self.inner.as_mut().map(|inner| inner as &mut dyn Protocol),
        }
    }

    /// Runs `f` on the protocol inside (if there is one), then puts in
    /// place what `set_protocol` asked for meanwhile.
    fn with_current<R: Default>(&mut self, f: impl FnOnce(&mut dyn Protocol) -> R) -> R {
        let value = self.current().map_or_else(R::default, f);
        self.replace_if_asked();
        value
    }

    /// Gives the connection to the protocol `set_protocol` asked for, if
    /// it did; the old one is dropped (its code may ask again).
    fn replace_if_asked(&mut self) {
        let Some(session) = self.session.clone() else {
            return;
        };
        while let Some(replacement) = session.take_replacement() {
            let old_inner = self.inner.take();
            let old_replacement = self.replacement.replace(replacement);
            // As on a plain connection: the connection goes on with the
            // replacement, whatever the old one's drop does.
            let why = "replaced by set_protocol";
            if let Some(old) = old_inner {
                crate::protocol::drop_protocol(Box::new(old), why);
            }
            if let Some(old) = old_replacement {
                crate::protocol::drop_protocol(old, why);
            }
        }
    }

    /// Feeds rustls what was read and hands the protocol what comes out,
    /// until nothing more can be done now.
    fn pump(&mut self) {
        let Some(session) = self.session.clone() else {
            return;
        };
        loop {
            if session.take_established() {
                let info = session.info();
                let event = Event::new(HandshakeCompleted { info });
                self.call(&session, "event_received", |p| p.event_received(event));
            }
            if self.panicked {
                return;
            }
            if session.may_deliver() {
                if let Some(plaintext) = session.take_plaintext() {
                    self.call(&session, "data_received", |p| p.data_received(plaintext));
                    continue;
                }
                if session.peer_closed() && self.eof_reported.is_none() {
                    let keep_open = self.call(&session, "eof_received", |p| p.eof_received());
                    self.eof_reported = Some(keep_open);
                    if !keep_open {
                        session.transport().lose_connection();
                    }
                }
            }
            match session.feed() {
                Ok(Fed::Progress) => {}
                Ok(Fed::Empty) => return,
                Err(error) => {
                    session.fail(error);
                    return;
                }
            }
        }
    }
}

impl<P: Protocol> TlsProtocol<P> {
    /// Calls the protocol inside from the layer's own reading. A panic
    /// fails the connection, as the connection's guard would, but named
    /// after this callback rather than the layer's.
    fn call<R: Default>(
        &mut self,
        session: &Session,
        callback: &'static str,
        f: impl FnOnce(&mut dyn Protocol) -> R,
    ) -> R {
        if self.panicked {
            return R::default();
        }
        match catch_unwind(AssertUnwindSafe(|| self.with_current(f))) {
            Ok(value) => value,
            Err(payload) => {
                self.panicked = true;
                let panicked = Panicked::from_payload(callback, &*payload);
                log::error!(
                    "protocol for {} panicked in {}: {}; closing that connection",
                    session.raw().peer(),
                    panicked.callback,
                    panicked.message
                );
                session.raw().fail(panicked);
                R::default()
            }
        }
    }
}

impl<P: Protocol> Protocol for TlsProtocol<P> {
    fn connection_made(&mut self, transport: &Transport) {
        let Some(side) = self.side.take() else {
            return;
        };
        match Session::start(transport.clone(), side, self.clock.take()) {
            Ok(session) => {
                let upper = session.transport();
                self.session = Some(session);
                self.with_current(|p| p.connection_made(&upper));
            }
            Err(err) => {
                log::error!("could not start TLS with {}: {err}", transport.peer());
                transport.abort_with(err);
            }
        }
    }

    fn data_received(&mut self, data: Bytes) {
        if let Some(session) = &self.session {
            session.push_input(data);
            self.pump();
        }
    }

    fn eof_received(&mut self) -> bool {
        // Without the peer's close_notify first, `connection_lost` says
        // the connection was cut short.
        self.eof_reported.unwrap_or(false)
    }

    fn connection_lost(&mut self, reason: &Reason) {
        let Some(session) = &self.session else {
            return;
        };
        session.end();
        match session.cut_short() {
            Some(error) if reason.is_clean() => {
                log::debug!("TLS with {}: {error}", session.raw().peer());
                let cut = Reason::Lost(io::Error::new(io::ErrorKind::UnexpectedEof, error));
                self.with_current(|p| p.connection_lost(&cut));
            }
            _ => self.with_current(|p| p.connection_lost(reason)),
        }
    }

    fn pause_writing(&mut self) {
        self.with_current(|p| p.pause_writing());
    }

    fn resume_writing(&mut self) {
        self.with_current(|p| p.resume_writing());
    }

    fn write_complete(&mut self) {
        // Before the handshake completes the protocol's writes are still
        // waiting: only the handshake's own bytes went out.
        if self.session.as_ref().is_some_and(|s| s.established()) {
            self.with_current(|p| p.write_complete());
        }
    }

    fn event_received(&mut self, event: Event) {
        if event.is::<ResumeInput>() {
            self.pump();
        } else if event.is::<ReplaceProtocol>() {
            self.replace_if_asked();
        } else {
            self.with_current(|p| p.event_received(event));
        }
    }
}

impl<P> fmt::Debug for TlsProtocol<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsProtocol")
            .field("started", &self.session.is_some())
            .finish_non_exhaustive()
    }
}

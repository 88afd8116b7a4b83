//! TLS servers and clients on the reactor, and STARTTLS.

use std::io;
use std::net::ToSocketAddrs;
use std::rc::Rc;

use super::session::Session;
use super::{StartTls, TlsAcceptor, TlsConnector, TlsProtocol};
use crate::net::{Address, Connector, ListeningPort, ToHostPort};
use crate::protocol::{ClientFactory, Factory, Protocol, Reason};
use crate::reactor::Reactor;
use crate::time::ReactorTime;
use crate::transport::{Interposer, Transport};

/// A [`Factory`] whose protocols run inside a [`TlsProtocol`]: what
/// [`Reactor::listen_tls`] and [`Reactor::connect_tls`] listen and connect
/// with. Twisted's `TLSMemoryBIOFactory`.
pub struct TlsFactory<F> {
    side: StartTls,
    factory: F,
    clock: Option<Rc<dyn ReactorTime>>,
}

impl<F: Factory> TlsFactory<F> {
    /// Wraps each protocol `factory` builds in TLS, taking `side` of the
    /// handshake.
    pub fn new(side: StartTls, factory: F) -> TlsFactory<F> {
        TlsFactory {
            side,
            factory,
            clock: None,
        }
    }

    /// Times each handshake on `clock` (a [`Clock`](crate::task::Clock)
    /// in tests) instead of the reactor of the thread.
    pub fn clock(mut self, clock: Rc<dyn ReactorTime>) -> TlsFactory<F> {
        self.clock = Some(clock);
        self
    }
}

impl<F: Factory> Factory for TlsFactory<F> {
    type Protocol = TlsProtocol<F::Protocol>;

    fn build_protocol(&mut self, peer: Address) -> Option<Self::Protocol> {
        let inner = self.factory.build_protocol(peer)?;
        let protocol = TlsProtocol::new(self.side.clone(), inner);
        Some(match &self.clock {
            Some(clock) => protocol.clock(clock.clone()),
            None => protocol,
        })
    }

    fn start_factory(&mut self) {
        self.factory.start_factory();
    }

    fn stop_factory(&mut self) {
        self.factory.stop_factory();
    }
}

impl<F: ClientFactory> ClientFactory for TlsFactory<F> {
    fn started_connecting(&mut self, connector: &Connector) {
        self.factory.started_connecting(connector);
    }

    fn client_connection_failed(&mut self, connector: &Connector, reason: &io::Error) {
        self.factory.client_connection_failed(connector, reason);
    }

    fn client_connection_lost(&mut self, connector: &Connector, reason: &Reason) {
        self.factory.client_connection_lost(connector, reason);
    }
}

impl Reactor {
    /// Listens on `addr` as [`listen_tcp`](Self::listen_tcp) does, and runs
    /// TLS on every connection: Twisted's `listenSSL`. Each protocol from
    /// `factory` runs inside a [`TlsProtocol`] (see [`tls`](crate::tls)
    /// for what it sees); `acceptor` is rustls's `Arc<ServerConfig>` or a
    /// [`TlsAcceptor`] with a handshake timeout of your choice.
    ///
    /// # Errors
    ///
    /// As `listen_tcp`.
    ///
    /// # Examples
    ///
    /// ```
    /// use twill::{tls::config, Bytes, Protocol, Reactor, Transport};
    ///
    /// struct Echo(Option<Transport>);
    /// impl Protocol for Echo {
    ///     fn connection_made(&mut self, transport: &Transport) {
    ///         self.0 = Some(transport.clone());
    ///     }
    ///     fn data_received(&mut self, data: Bytes) {
    ///         self.0.as_ref().unwrap().write(data);
    ///     }
    /// }
    ///
    /// # let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    /// # let (cert_pem, key_pem) = (made.cert.pem(), made.signing_key.serialize_pem());
    /// let config = config::server_config(
    ///     config::certs_from_pem(cert_pem.as_bytes())?,
    ///     config::key_from_pem(key_pem.as_bytes())?,
    /// )?;
    /// let reactor = Reactor::new()?;
    /// let port = reactor.listen_tls("127.0.0.1:0", config, |_peer| Echo(None))?;
    /// assert_ne!(port.host().port().unwrap(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn listen_tls(
        &self,
        addr: impl ToSocketAddrs,
        acceptor: impl Into<TlsAcceptor>,
        factory: impl Factory,
    ) -> io::Result<ListeningPort> {
        self.listen_tcp(
            addr,
            TlsFactory::new(StartTls::Server(acceptor.into()), factory),
        )
    }

    /// Connects to `addr` as [`connect_tcp`](Self::connect_tcp) does, and
    /// runs TLS with the server named `server_name` (checked against its
    /// certificate, and sent as SNI): Twisted's `connectSSL`. Each
    /// protocol from `factory` runs inside a [`TlsProtocol`].
    ///
    /// # Errors
    ///
    /// As `connect_tcp`; `InvalidInput` if `server_name` is neither a DNS
    /// name nor an IP address.
    pub fn connect_tls(
        &self,
        addr: impl ToHostPort,
        server_name: &str,
        connector: impl Into<TlsConnector>,
        factory: impl ClientFactory,
    ) -> io::Result<Connector> {
        let side = StartTls::client(connector, server_name)?;
        self.connect_tcp(addr, TlsFactory::new(side, factory))
    }
}

/// `Transport::start_tls`: a session under the protocol of `transport`.
pub(crate) fn start_tls(transport: &Transport, side: StartTls) -> io::Result<()> {
    transport.interpose(Box::new(move |raw| {
        let session = Session::start(raw, side, None)?;
        let upper = session.clone();
        Ok(Interposer {
            upper,
            wrap: Box::new(move |protocol: Box<dyn Protocol>| {
                Box::new(TlsProtocol::attached(session, protocol)) as Box<dyn Protocol>
            }),
        })
    }))
}

impl<F> std::fmt::Debug for TlsFactory<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFactory")
            .field("side", &self.side)
            .finish_non_exhaustive()
    }
}

//! TCP: [`Reactor::listen_tcp`] and [`Reactor::connect_tcp`] (whose
//! racing of a host's addresses is in [`happy_eyeballs`](super::happy_eyeballs)).

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use super::connector::{Connector, Destination};
use super::host_port::{HostPort, ToHostPort};
use super::listener::{self, ListeningPort};
use super::{DynClientFactory, DynFactory};
use crate::protocol::{ClientFactory, Factory};
use crate::reactor::{Reactor, DEFAULT_CONNECT_TIMEOUT};

/// Listen backlog. Twisted's default is 50; a server that takes a thousand
/// connections at once needs more.
pub(crate) const DEFAULT_BACKLOG: i32 = 1024;

impl Reactor {
    /// Listens for TCP connections on `addr` (IPv4 or IPv6; port 0 picks a
    /// free port, read it from [`ListeningPort::host`]) and serves each with
    /// a protocol from `factory`. The factory's `start_factory` runs now.
    ///
    /// # Errors
    ///
    /// The address could not be resolved or bound.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use twill::{Protocol, Reactor};
    ///
    /// struct Discard;
    /// impl Protocol for Discard {
    ///     fn data_received(&mut self, _: Bytes) {}
    /// }
    ///
    /// let reactor = Reactor::new()?;
    /// let port = reactor.listen_tcp("127.0.0.1:0", |_peer| Discard)?;
    /// assert_ne!(port.host().port().unwrap(), 0);
    /// port.stop_listening();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn listen_tcp(
        &self,
        addr: impl ToSocketAddrs,
        factory: impl Factory,
    ) -> io::Result<ListeningPort> {
        self.listen_tcp_with(addr, DEFAULT_BACKLOG, false, Box::new(factory))
    }

    /// Listens as [`listen_tcp`](Self::listen_tcp) does, with SO_REUSEPORT:
    /// reactors on several threads may each listen on the same address and
    /// port, and the kernel spreads incoming connections across them. This
    /// is how a twill server uses several cores: one reactor per thread,
    /// each with its own listening socket, factory and connections (bind the
    /// first with port 0 if you like, then the others to the port it got).
    ///
    /// # Errors
    ///
    /// As `listen_tcp`; `Unsupported` where the platform has no
    /// SO_REUSEPORT.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use twill::{Protocol, Reactor};
    ///
    /// struct Discard;
    /// impl Protocol for Discard {
    ///     fn data_received(&mut self, _: Bytes) {}
    /// }
    ///
    /// let reactor = Reactor::new()?;
    /// let first = reactor.listen_tcp_reuse_port("127.0.0.1:0", |_peer| Discard)?;
    /// let addr = first.host();
    /// let expected = addr.port();
    /// let worker = std::thread::spawn(move || -> std::io::Result<u16> {
    ///     let reactor = Reactor::new()?;
    ///     let port = reactor.listen_tcp_reuse_port(addr, |_peer| Discard)?;
    ///     Ok(port.host().port().unwrap())
    /// });
    /// assert_eq!(Some(worker.join().unwrap()?), expected);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn listen_tcp_reuse_port(
        &self,
        addr: impl ToSocketAddrs,
        factory: impl Factory,
    ) -> io::Result<ListeningPort> {
        self.listen_tcp_with(addr, DEFAULT_BACKLOG, true, Box::new(factory))
    }

    /// Connects to `addr` with a 30 s timeout: Twisted's `connectTCP`.
    /// See [`connect_tcp_with_timeout`](Self::connect_tcp_with_timeout).
    ///
    /// # Errors
    ///
    /// As `connect_tcp_with_timeout`.
    ///
    /// # Examples
    ///
    /// A host name, resolved by the reactor's resolver (here a table, so
    /// the example needs no network), then connected:
    ///
    /// ```
    /// use std::io;
    /// use twill::net::StaticResolver;
    /// use twill::{Bytes, ClientFactory, Connector, Factory, Protocol, Reactor, Transport};
    ///
    /// struct Hello;
    /// impl Protocol for Hello {
    ///     fn connection_made(&mut self, transport: &Transport) {
    ///         transport.write(Bytes::from_static(b"hello"));
    ///         transport.lose_connection();
    ///     }
    ///     fn data_received(&mut self, _: Bytes) {}
    /// }
    ///
    /// struct Client;
    /// impl Factory for Client {
    ///     type Protocol = Hello;
    ///     fn build_protocol(&mut self, _peer: twill::Address) -> Option<Hello> {
    ///         Some(Hello)
    ///     }
    /// }
    /// impl ClientFactory for Client {
    ///     fn client_connection_failed(&mut self, _: &Connector, reason: &io::Error) {
    ///         panic!("could not connect: {reason}");
    ///     }
    ///     fn client_connection_lost(&mut self, _: &Connector, _: &twill::Reason) {
    ///         twill::stop();
    ///     }
    /// }
    ///
    /// struct Quiet;
    /// impl Protocol for Quiet {
    ///     fn data_received(&mut self, _: Bytes) {}
    /// }
    ///
    /// let reactor = Reactor::new()?;
    /// let port = reactor.listen_tcp("127.0.0.1:0", |_peer| Quiet)?;
    /// let names = StaticResolver::new();
    /// names.insert("echo.internal", [port.host().to_string().parse().unwrap()]);
    /// reactor.set_resolver(names);
    /// reactor.connect_tcp(("echo.internal", port.host().port().unwrap()), Client)?;
    /// reactor.run()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn connect_tcp(
        &self,
        addr: impl ToHostPort,
        factory: impl ClientFactory,
    ) -> io::Result<Connector> {
        self.connect_tcp_with_timeout(addr, DEFAULT_CONNECT_TIMEOUT, factory)
    }

    /// Connects to `addr` (`"example.org:80"`, an IP address, a
    /// [`HostPort`]), giving up after `timeout`.
    ///
    /// An IP address connects at once. A name goes to the reactor's
    /// resolver ([`set_resolver`](Self::set_resolver); by default the
    /// system's, off the reactor thread), and its addresses are raced as
    /// RFC 8305 says ([`happy_eyeballs`](super::happy_eyeballs)): both
    /// address families interleaved, a new attempt every 250 ms or as soon
    /// as one fails, the first to connect wins and the others are closed.
    /// `timeout` covers all of it, the lookup included.
    ///
    /// How it goes is reported to `factory` (see [`ClientFactory`]): one
    /// `build_protocol` for the winning connection, or one
    /// `client_connection_failed` with the error of the lookup (kind
    /// `NotFound` for an unknown name), of the last attempt to fail, or
    /// `TimedOut`. The returned [`Connector`] retries (resolving again),
    /// stops or disconnects.
    ///
    /// # Errors
    ///
    /// `addr` is not a host and port. Failures to resolve or to connect
    /// are reported to the factory instead.
    pub fn connect_tcp_with_timeout(
        &self,
        addr: impl ToHostPort,
        timeout: Duration,
        factory: impl ClientFactory,
    ) -> io::Result<Connector> {
        self.connect_tcp_with(addr.to_host_port()?, timeout, None, Box::new(factory))
    }

    /// Connects as [`connect_tcp_with_timeout`](Self::connect_tcp_with_timeout)
    /// does, each attempt's socket bound to `bind` first (Twisted's
    /// `bindAddress`; port 0 lets the system pick one). Addresses of the
    /// other family than `bind`'s fail at once and the race moves on.
    pub(crate) fn connect_tcp_with(
        &self,
        dest: HostPort,
        timeout: Duration,
        bind: Option<SocketAddr>,
        factory: Box<dyn DynClientFactory>,
    ) -> io::Result<Connector> {
        let connector =
            Connector::with_bind(self.core(), Destination::Tcp(dest), timeout, bind, factory);
        connector.connect();
        Ok(connector)
    }

    /// Binds a TCP socket on the first of `addr`'s addresses that binds
    /// and serves it.
    pub(crate) fn listen_tcp_with(
        &self,
        addr: impl ToSocketAddrs,
        backlog: i32,
        reuse_port: bool,
        factory: Box<dyn DynFactory>,
    ) -> io::Result<ListeningPort> {
        let socket = bind_first(addr, backlog, reuse_port)?;
        listener::listen(self.core(), socket, factory, None)
    }
}

/// Binds a listening TCP socket on the first of `addr`'s addresses that
/// binds.
pub(crate) fn bind_first(
    addr: impl ToSocketAddrs,
    backlog: i32,
    reuse_port: bool,
) -> io::Result<Socket> {
    let mut last_err = None;
    for addr in addr.to_socket_addrs()? {
        match bind(addr, backlog, reuse_port) {
            Ok(socket) => return Ok(socket),
            Err(err) => last_err = Some(err),
        }
    }
    Err(last_err.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing")
    }))
}

pub(crate) fn bind(addr: SocketAddr, backlog: i32, reuse_port: bool) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        set_reuse_port(&socket)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

#[cfg(all(
    unix,
    not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin"))
))]
/// SO_REUSEPORT, for TCP listeners and UDP ports alike.
pub(in crate::net) fn set_reuse_port(socket: &Socket) -> io::Result<()> {
    socket.set_reuse_port(true)
}

#[cfg(not(all(
    unix,
    not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin"))
)))]
/// SO_REUSEPORT, for TCP listeners and UDP ports alike.
pub(in crate::net) fn set_reuse_port(_socket: &Socket) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "SO_REUSEPORT is not available on this platform",
    ))
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::time::Duration;

    use bytes::Bytes;

    use crate::net::{Address, HostPort};
    use crate::protocol::{ClientFactory, Factory, Protocol, Reason};
    use crate::{Connector, Reactor, Transport};

    type Seen = Rc<RefCell<Vec<String>>>;

    struct Client(Seen);
    struct Close;

    impl Protocol for Close {
        fn connection_made(&mut self, transport: &Transport) {
            transport.lose_connection();
        }
        fn data_received(&mut self, _: Bytes) {}
    }

    impl Factory for Client {
        type Protocol = Close;
        fn build_protocol(&mut self, _peer: Address) -> Option<Close> {
            Some(Close)
        }
    }

    impl ClientFactory for Client {
        fn client_connection_failed(&mut self, _: &Connector, reason: &std::io::Error) {
            self.0
                .borrow_mut()
                .push(format!("failed {:?}", reason.kind()));
            crate::stop();
        }
        fn client_connection_lost(&mut self, _: &Connector, _: &Reason) {
            crate::stop();
        }
    }

    /// Runs `reactor` with a deadline, so a broken test fails instead of
    /// hanging.
    fn run(reactor: &Reactor) {
        let handle = reactor.handle();
        reactor.call_later(Duration::from_secs(10), move || {
            handle.stop();
        });
        reactor.run().unwrap();
    }

    #[test]
    fn a_bind_address_is_the_connections_source() {
        let reactor = Reactor::new().unwrap();
        let seen: Seen = Rc::default();
        let peers = seen.clone();
        let server = reactor
            .listen_tcp("127.0.0.1:0", move |peer: Address| {
                peers
                    .borrow_mut()
                    .push(format!("peer {}", peer.ip().unwrap()));
                Close
            })
            .unwrap();
        let dest = HostPort::new("127.0.0.1", server.host().port().unwrap());
        let bind = Some("127.0.0.3:0".parse().unwrap());
        let client = Box::new(Client(seen.clone()));
        reactor
            .connect_tcp_with(dest, Duration::from_secs(5), bind, client)
            .unwrap();
        run(&reactor);
        assert_eq!(*seen.borrow(), ["peer 127.0.0.3"]);
    }

    #[test]
    fn a_bind_address_of_the_other_family_fails_the_attempt() {
        let reactor = Reactor::new().unwrap();
        let seen: Seen = Rc::default();
        let dest = HostPort::new("127.0.0.1", 9);
        let bind = Some("[::1]:0".parse().unwrap());
        let client = Box::new(Client(seen.clone()));
        reactor
            .connect_tcp_with(dest, Duration::from_secs(5), bind, client)
            .unwrap();
        run(&reactor);
        assert_eq!(*seen.borrow(), ["failed InvalidInput"]);
    }
}

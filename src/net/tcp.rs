//! TCP: [`Reactor::listen_tcp`] and [`Reactor::connect_tcp`].

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use super::connector::{Connector, Destination};
use super::host_port::{HostPort, ToHostPort};
use super::listener::{self, ListeningPort};
use super::DynFactory;
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
    /// let addr = first.host().tcp().unwrap();
    /// let worker = std::thread::spawn(move || -> std::io::Result<u16> {
    ///     let reactor = Reactor::new()?;
    ///     let port = reactor.listen_tcp_reuse_port(addr, |_peer| Discard)?;
    ///     Ok(port.host().port().unwrap())
    /// });
    /// assert_eq!(worker.join().unwrap()?, addr.port());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn listen_tcp_reuse_port(
        &self,
        addr: impl ToSocketAddrs,
        factory: impl Factory,
    ) -> io::Result<ListeningPort> {
        self.listen_tcp_with(addr, DEFAULT_BACKLOG, true, Box::new(factory))
    }

    /// Connects to `addr` with a 30 s timeout; see
    /// [`connect_tcp_with_timeout`](Self::connect_tcp_with_timeout).
    ///
    /// # Errors
    ///
    /// As `connect_tcp_with_timeout`.
    pub fn connect_tcp(
        &self,
        addr: impl ToHostPort,
        factory: impl ClientFactory,
    ) -> io::Result<Connector> {
        self.connect_tcp_with_timeout(addr, DEFAULT_CONNECT_TIMEOUT, factory)
    }

    /// Connects to `addr` (`"example.org:80"`, an IP address, a
    /// [`HostPort`]), giving up after `timeout`. An IP
    /// address connects at once; a name is resolved off the reactor thread
    /// for each attempt. How the attempt goes is reported to `factory` (see
    /// [`ClientFactory`]); the returned [`Connector`] retries, stops or
    /// disconnects.
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
        let dest = Destination::Tcp(addr.to_host_port()?);
        let connector = Connector::new(self.core(), dest, timeout, Box::new(factory));
        connector.connect();
        Ok(connector)
    }

    /// Connects to `dest`, from the local address `bind` if given.
    pub(crate) fn connect_tcp_with(
        &self,
        dest: HostPort,
        timeout: Duration,
        bind: Option<SocketAddr>,
        factory: Box<dyn super::DynClientFactory>,
    ) -> io::Result<Connector> {
        if bind.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a local bind address for a client",
            ));
        }
        let connector = Connector::new(self.core(), Destination::Tcp(dest), timeout, factory);
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
        let mut last_err = None;
        for addr in addr.to_socket_addrs()? {
            match bind(addr, backlog, reuse_port) {
                Ok(socket) => return listener::listen(self.core(), socket, factory, None),
                Err(err) => last_err = Some(err),
            }
        }
        Err(last_err.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing")
        }))
    }
}

fn bind(addr: SocketAddr, backlog: i32, reuse_port: bool) -> io::Result<Socket> {
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
fn set_reuse_port(socket: &Socket) -> io::Result<()> {
    socket.set_reuse_port(true)
}

#[cfg(not(all(
    unix,
    not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin"))
)))]
fn set_reuse_port(_socket: &Socket) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "SO_REUSEPORT is not available on this platform",
    ))
}

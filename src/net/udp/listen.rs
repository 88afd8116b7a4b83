//! [`Reactor::listen_udp`] and [`Reactor::listen_udp_with`].

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

use socket2::{Domain, Protocol, Socket, Type};

use super::config::DatagramConfig;
use super::{port, DatagramProtocol, DatagramTransport};
use crate::reactor::Reactor;

impl Reactor {
    /// Listens for UDP datagrams on `addr` (IPv4 or IPv6; port 0 picks a
    /// free port, read it from [`DatagramTransport::host`]) and hands them
    /// to `protocol`, whose
    /// [`start_protocol`](DatagramProtocol::start_protocol) runs now:
    /// Twisted's `listenUDP`, asyncio's `create_datagram_endpoint`. With
    /// the defaults of [`DatagramConfig`]: datagrams up to 65,535 bytes, a
    /// 1 MiB cap on the send queue.
    ///
    /// A UDP port is not a connection: a graceful [`stop`](Self::stop)
    /// stops it at once (its protocol's
    /// [`stop_protocol`](DatagramProtocol::stop_protocol) runs) and does
    /// not wait for it.
    ///
    /// # Errors
    ///
    /// The address could not be resolved or bound.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::{SocketAddr, UdpSocket};
    /// use twill::{Bytes, DatagramProtocol, Reactor};
    ///
    /// struct Print;
    /// impl DatagramProtocol for Print {
    ///     fn datagram_received(&mut self, data: Bytes, from: SocketAddr) {
    ///         assert_eq!(&data[..], b"hi");
    ///         log::info!("{from} said {data:?}");
    ///         twill::stop();
    ///     }
    /// }
    ///
    /// let reactor = Reactor::new()?;
    /// let port = reactor.listen_udp("127.0.0.1:0", Print)?;
    /// UdpSocket::bind("127.0.0.1:0")?.send_to(b"hi", port.host())?;
    /// reactor.run()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn listen_udp(
        &self,
        addr: impl ToSocketAddrs,
        protocol: impl DatagramProtocol,
    ) -> io::Result<DatagramTransport> {
        self.listen_udp_with(addr, &DatagramConfig::default(), protocol)
    }

    /// Listens as [`listen_udp`](Self::listen_udp) does, set up by
    /// `config`: the maximum datagram size, the kernel's buffer sizes,
    /// address reuse (for several listeners on one multicast group) and
    /// the send queue's limits.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for limits that do not fit together (see
    /// [`DatagramConfig`]); else as `listen_udp`, and `Unsupported` for
    /// SO_REUSEPORT where the platform lacks it.
    pub fn listen_udp_with(
        &self,
        addr: impl ToSocketAddrs,
        config: &DatagramConfig,
        protocol: impl DatagramProtocol,
    ) -> io::Result<DatagramTransport> {
        config.validate()?;
        let mut last_err = None;
        for addr in addr.to_socket_addrs()? {
            match bind(addr, config) {
                Ok(socket) => return port::start(self.core(), socket, config, Box::new(protocol)),
                Err(err) => last_err = Some(err),
            }
        }
        Err(last_err.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing")
        }))
    }
}

fn bind(addr: SocketAddr, config: &DatagramConfig) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if config.reuse_address {
        socket.set_reuse_address(true)?;
    }
    if config.reuse_port {
        crate::net::tcp::set_reuse_port(&socket)?;
    }
    if let Some(bytes) = config.recv_buffer_size {
        socket.set_recv_buffer_size(bytes)?;
    }
    if let Some(bytes) = config.send_buffer_size {
        socket.set_send_buffer_size(bytes)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

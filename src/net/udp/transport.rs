//! [`DatagramTransport`]: the handle a datagram protocol writes through.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::Bytes;

use super::port::Port;

/// A UDP port, as its protocol and its owner see it: Twisted's UDP
/// transport (`IUDPTransport`, `IListeningPort`), asyncio's
/// `DatagramTransport`. A cheap handle (clone it freely); like
/// [`Transport`](crate::Transport) it is neither `Send` nor `Sync` and
/// belongs to its reactor's thread.
///
/// Dropping every handle does not stop the port: call
/// [`stop_listening`](Self::stop_listening) (or stop the reactor).
///
/// # Send queue
///
/// [`write`](Self::write) sends at once. Only when the kernel will not take
/// the datagram now (`WouldBlock`) is it queued, whole and with its
/// destination, and sent, in order, as soon as the socket is writable;
/// the port asks the poller about writability only while something is
/// queued. The queue is measured in bytes: each datagram's payload plus a
/// small fixed cost for its bookkeeping, so empty datagrams count too.
/// With the limits of [`DatagramConfig`](super::DatagramConfig):
///
/// | queue size | what happens |
/// |---|---|
/// | goes over the high watermark (64 KiB) | [`pause_writing`](super::DatagramProtocol::pause_writing), once |
/// | drains to the low watermark (16 KiB) | [`resume_writing`](super::DatagramProtocol::resume_writing) |
/// | a write would take it past the cap (1 MiB) | that write fails with [`SendQueueFull`](super::SendQueueFull) (kind `WouldBlock`), the datagram is not queued, [`refused_datagrams`](Self::refused_datagrams) grows |
///
/// Nothing is dropped silently: a datagram is sent, refused by `write`, or,
/// if it fails once dequeued (say the peer's ICMP refusal on a connected
/// port), reported through
/// [`error_received`](super::DatagramProtocol::error_received). Stopping
/// the port makes one last attempt at the queue and drops the rest
/// (logged at debug level).
///
/// On loopback, Linux never makes a UDP send wait: a receiver that does not
/// read loses datagrams in its own full buffer, and the sender's queue
/// stays empty. The queue fills where the kernel does push back: a slow
/// interface, a full qdisc, a small `SO_SNDBUF`
/// ([`DatagramConfig::send_buffer_size`](super::DatagramConfig::send_buffer_size)).
///
/// # Examples
///
/// Connected UDP: only the peer's datagrams arrive, and writes need no
/// address.
///
/// ```
/// use std::net::{SocketAddr, UdpSocket};
/// use twill::{Bytes, DatagramProtocol, Reactor};
///
/// struct Stop;
/// impl DatagramProtocol for Stop {
///     fn datagram_received(&mut self, data: Bytes, _: SocketAddr) {
///         assert_eq!(&data[..], b"pong");
///         twill::stop();
///     }
/// }
///
/// let peer = UdpSocket::bind("127.0.0.1:0")?;
/// let reactor = Reactor::new()?;
/// let port = reactor.listen_udp("127.0.0.1:0", Stop)?;
/// port.connect(peer.local_addr()?)?;
/// port.write_connected("ping")?;
/// let mut buf = [0; 8];
/// let (n, from) = peer.recv_from(&mut buf)?;
/// assert_eq!((&buf[..n], from), (&b"ping"[..], port.host()));
/// peer.send_to(b"pong", from)?;
/// reactor.run()?;
/// assert!(!port.is_listening(), "the reactor's stop stopped the port");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct DatagramTransport {
    pub(super) port: Rc<Port>,
}

impl DatagramTransport {
    pub(super) fn new(port: Rc<Port>) -> Self {
        DatagramTransport { port }
    }

    /// Sends `data` as one datagram to `to` (Twisted's `write(datagram,
    /// addr)`, asyncio's `sendto`), or queues it if the socket cannot take
    /// it now (see [Send queue](#send-queue)).
    ///
    /// # Errors
    ///
    /// A send that failed at once: `EMSGSIZE` for a datagram too large,
    /// `PermissionDenied` for a broadcast address without
    /// [`set_broadcast_allowed`](Self::set_broadcast_allowed), a network
    /// that cannot be reached, an ICMP refusal the kernel holds for a
    /// connected port; [`SendQueueFull`](super::SendQueueFull) past the
    /// cap; `InvalidInput` for an address other than the peer's on a
    /// connected port; `NotConnected` once the port stopped.
    pub fn write(&self, data: impl Into<Bytes>, to: SocketAddr) -> io::Result<()> {
        match self.port.peer() {
            Some(peer) if peer != to => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("this port is connected to {peer}; it cannot send to {to}"),
            )),
            _ => self.port.write(data.into(), Some(to)),
        }
    }

    /// Sends `data` to the peer given to [`connect`](Self::connect)
    /// (Twisted's `write(datagram)` on a connected port).
    ///
    /// # Errors
    ///
    /// `NotConnected` if the port is not connected; else as
    /// [`write`](Self::write).
    pub fn write_connected(&self, data: impl Into<Bytes>) -> io::Result<()> {
        if self.port.peer().is_none() {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "write_connected needs a connected port: call connect first, or use write",
            ));
        }
        self.port.write(data.into(), None)
    }

    /// Connects the port to `peer` (an IP address, as Twisted's
    /// `connect(host, port)`): from now on the kernel delivers only the
    /// peer's datagrams, [`write_connected`](Self::write_connected) sends
    /// to it, and an ICMP refusal from it reaches
    /// [`error_received`](super::DatagramProtocol::error_received) as
    /// `ConnectionRefused`. Connecting again changes the peer.
    ///
    /// # Errors
    ///
    /// The kernel refused (no route, say), or the port stopped.
    pub fn connect(&self, peer: SocketAddr) -> io::Result<()> {
        self.port.connect(peer)
    }

    /// The local address (Twisted's `getHost`), with the real port when
    /// bound to port 0.
    pub fn host(&self) -> SocketAddr {
        self.port.host()
    }

    /// The connected peer, if [`connect`](Self::connect) was called.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.port.peer()
    }

    /// Stops delivering datagrams until
    /// [`resume_reading`](Self::resume_reading); they wait in the kernel's
    /// receive buffer, which drops what does not fit.
    pub fn pause_reading(&self) {
        self.port.set_reading(false);
    }

    /// Delivers datagrams again after [`pause_reading`](Self::pause_reading).
    pub fn resume_reading(&self) {
        self.port.set_reading(true);
    }

    /// Whether reading is paused.
    pub fn is_reading_paused(&self) -> bool {
        self.port.is_reading_paused()
    }

    /// Closes the socket (Twisted's `stopListening`); the protocol's
    /// [`stop_protocol`](super::DatagramProtocol::stop_protocol) runs
    /// (once its current callback returns, if called from one), and it is
    /// dropped. Calling it again does nothing.
    pub fn stop_listening(&self) {
        self.port.stop_listening();
    }

    /// Whether the port is still open.
    pub fn is_listening(&self) -> bool {
        self.port.is_listening()
    }

    /// The largest datagram delivered; see
    /// [`DatagramConfig::max_datagram_size`](super::DatagramConfig::max_datagram_size).
    pub fn max_datagram_size(&self) -> usize {
        self.port.max_datagram_size()
    }

    /// The send queue's size in bytes: each queued datagram's length plus
    /// a fixed bookkeeping cost (a few dozen bytes). 0 when nothing waits.
    pub fn send_queue_size(&self) -> usize {
        self.port.send_queue_size()
    }

    /// How many datagrams the send queue holds.
    pub fn send_queue_len(&self) -> usize {
        self.port.send_queue_len()
    }

    /// Datagrams [`write`](Self::write) refused because the send queue was
    /// full, since the port started.
    pub fn refused_datagrams(&self) -> u64 {
        self.port.refused()
    }

    /// Datagrams dropped on arrival for being larger than the maximum (each
    /// reported as [`DatagramTruncated`](super::DatagramTruncated)), since
    /// the port started.
    pub fn truncated_datagrams(&self) -> u64 {
        self.port.truncated()
    }
}

impl fmt::Debug for DatagramTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramTransport")
            .field("host", &self.host())
            .field("peer", &self.peer())
            .field("listening", &self.is_listening())
            .field("send_queue_size", &self.send_queue_size())
            .finish()
    }
}

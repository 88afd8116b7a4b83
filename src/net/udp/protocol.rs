//! [`DatagramProtocol`]: what a UDP port calls.

use std::io;
use std::net::SocketAddr;

use bytes::Bytes;

use super::DatagramTransport;

/// Handles a UDP port's datagrams: Twisted's `DatagramProtocol`, with
/// asyncio's `error_received` and flow-control calls.
///
/// One instance serves one port (there is no factory): give it to
/// [`Reactor::listen_udp`](crate::Reactor::listen_udp). Every call runs on
/// the reactor thread, one at a time. A panic in any of them is logged and
/// the port goes on serving, as Twisted logs an exception in
/// `datagramReceived` and keeps reading.
///
/// # Examples
///
/// An echo server, and a client socket that sees its datagram come back:
///
/// ```
/// use std::net::{SocketAddr, UdpSocket};
/// use twill::{Bytes, DatagramProtocol, DatagramTransport, Reactor};
///
/// struct Echo {
///     transport: Option<DatagramTransport>,
/// }
///
/// impl DatagramProtocol for Echo {
///     fn start_protocol(&mut self, transport: &DatagramTransport) {
///         self.transport = Some(transport.clone());
///     }
///     fn datagram_received(&mut self, data: Bytes, from: SocketAddr) {
///         if data.as_ref() == b"stop" {
///             twill::stop();
///         }
///         if let Err(err) = self.transport.as_ref().unwrap().write(data, from) {
///             log::warn!("echo to {from} failed: {err}");
///         }
///     }
/// }
///
/// let reactor = Reactor::new()?;
/// let port = reactor.listen_udp("127.0.0.1:0", Echo { transport: None })?;
/// let client = UdpSocket::bind("127.0.0.1:0")?;
/// client.send_to(b"hello", port.host())?;
/// client.send_to(b"stop", port.host())?;
/// reactor.run()?;
/// let mut buf = [0; 16];
/// let (n, from) = client.recv_from(&mut buf)?;
/// assert_eq!((&buf[..n], from), (&b"hello"[..], port.host()));
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait DatagramProtocol: 'static {
    /// The port is listening (Twisted's `startProtocol`; asyncio's
    /// `connection_made`). Keep a clone of `transport` to write.
    fn start_protocol(&mut self, transport: &DatagramTransport) {
        let _ = transport;
    }

    /// A datagram arrived from `from`. `data` is split off the reactor's
    /// read buffer, not copied; a 0-byte datagram arrives as an empty
    /// `Bytes`. On a connected port only the peer's datagrams arrive.
    fn datagram_received(&mut self, data: Bytes, from: SocketAddr);

    /// Something went wrong that concerns no single call (asyncio's
    /// `error_received`): a datagram too large for the port
    /// ([`DatagramTruncated`](super::DatagramTruncated), kind
    /// `InvalidData`), an ICMP error on a connected port (kind
    /// `ConnectionRefused` is Twisted's `connectionRefused`), or the failure
    /// of a queued datagram sent later. The port goes on. By default the
    /// error is logged at debug level.
    fn error_received(&mut self, error: io::Error) {
        log::debug!("datagram port error: {error}");
    }

    /// The send queue went over its high watermark: stop producing until
    /// [`resume_writing`](Self::resume_writing). Writes are still taken
    /// until the hard cap.
    fn pause_writing(&mut self) {}

    /// The send queue drained to its low watermark.
    fn resume_writing(&mut self) {}

    /// The port stopped ([`DatagramTransport::stop_listening`] or the
    /// reactor's stop): Twisted's `stopProtocol`. Called once; the protocol
    /// is dropped right after.
    fn stop_protocol(&mut self) {}
}

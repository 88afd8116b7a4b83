//! The typed errors a datagram port reports: a datagram too large for the
//! read buffer, and a write refused because the send queue is full.

use std::error::Error;
use std::fmt;
use std::io;
use std::net::SocketAddr;

/// A datagram larger than the port's maximum datagram size arrived; it was
/// dropped, never cut short. Reported through
/// [`DatagramProtocol::error_received`](super::DatagramProtocol::error_received)
/// inside an [`io::Error`] of kind [`InvalidData`](io::ErrorKind::InvalidData);
/// [`DatagramTruncated::from_io`] finds it there.
///
/// Twisted's `listenUDP` delivers such a datagram cut to `maxPacketSize`
/// without a word; asyncio cuts nothing but reads into a 256 KiB buffer.
/// Raise the limit with
/// [`DatagramConfig::max_datagram_size`](super::DatagramConfig::max_datagram_size)
/// if such datagrams are expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatagramTruncated {
    /// The datagram's size as the kernel reported it: its real size on
    /// Linux (which says so with `MSG_TRUNC`); elsewhere a lower bound,
    /// `max + 1`.
    pub size: usize,
    /// The port's maximum datagram size.
    pub max: usize,
    /// Who sent it.
    pub from: SocketAddr,
}

impl DatagramTruncated {
    /// The `DatagramTruncated` inside `error`, if that is what it carries.
    pub fn from_io(error: &io::Error) -> Option<&DatagramTruncated> {
        error.get_ref()?.downcast_ref()
    }
}

impl fmt::Display for DatagramTruncated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a datagram of {} bytes from {} is larger than the port's {}-byte maximum; \
             it was dropped (raise DatagramConfig::max_datagram_size to receive it)",
            self.size, self.from, self.max
        )
    }
}

impl Error for DatagramTruncated {}

impl From<DatagramTruncated> for io::Error {
    fn from(truncated: DatagramTruncated) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, truncated)
    }
}

/// A write was refused: the send queue would grow past its hard cap
/// ([`DatagramConfig::send_queue_max`](super::DatagramConfig::send_queue_max)).
/// Carried in an [`io::Error`] of kind
/// [`WouldBlock`](io::ErrorKind::WouldBlock); the datagram was not queued,
/// and [`DatagramTransport::refused_datagrams`](super::DatagramTransport::refused_datagrams)
/// counts it. Wait for
/// [`resume_writing`](super::DatagramProtocol::resume_writing) before
/// writing more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendQueueFull {
    /// What the queue holds (see
    /// [`DatagramTransport::send_queue_size`](super::DatagramTransport::send_queue_size)).
    pub queued: usize,
    /// The cap.
    pub max: usize,
}

impl SendQueueFull {
    /// The `SendQueueFull` inside `error`, if that is what it carries.
    pub fn from_io(error: &io::Error) -> Option<&SendQueueFull> {
        error.get_ref()?.downcast_ref()
    }
}

impl fmt::Display for SendQueueFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "send queue full ({} of {} bytes queued): the datagram was not sent; \
             wait for resume_writing",
            self.queued, self.max
        )
    }
}

impl Error for SendQueueFull {}

impl From<SendQueueFull> for io::Error {
    fn from(full: SendQueueFull) -> io::Error {
        io::Error::new(io::ErrorKind::WouldBlock, full)
    }
}

/// What every operation on a stopped port returns.
pub(super) fn port_closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the datagram port stopped listening",
    )
}

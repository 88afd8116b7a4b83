//! [`DatagramConfig`]: how a UDP port is set up and what it may hold.

use std::io;

use crate::transport::{DEFAULT_HIGH_WATERMARK, DEFAULT_LOW_WATERMARK};

/// The default largest datagram a port receives: 65,535 bytes, more than
/// any UDP datagram carries (65,507 bytes over IPv4, 65,527 over IPv6
/// without jumbograms), so nothing is refused by default.
pub const DEFAULT_MAX_DATAGRAM_SIZE: usize = 65_535;

/// The default hard cap on a port's send queue: 1 MiB.
pub const DEFAULT_SEND_QUEUE_MAX: usize = 1024 * 1024;

/// How [`Reactor::listen_udp_with`](crate::Reactor::listen_udp_with) sets up
/// a port. Every field has a default ([`DatagramConfig::new`]); the builder
/// methods change one each, and `listen_udp_with` rejects a configuration
/// whose limits do not fit together.
///
/// # Examples
///
/// ```
/// use twill::{DatagramConfig, DatagramProtocol, Reactor};
///
/// struct Count(usize);
/// impl DatagramProtocol for Count {
///     fn datagram_received(&mut self, _: twill::Bytes, _: std::net::SocketAddr) {
///         self.0 += 1;
///     }
/// }
///
/// let config = DatagramConfig::new()
///     .max_datagram_size(1500)
///     .recv_buffer_size(1 << 20)
///     .send_queue_limits(16 * 1024, 4 * 1024, 256 * 1024);
/// let reactor = Reactor::new()?;
/// let port = reactor.listen_udp_with("127.0.0.1:0", &config, Count(0))?;
/// assert_eq!(port.max_datagram_size(), 1500);
///
/// let bad = DatagramConfig::new().send_queue_limits(1024, 2048, 4096);
/// assert!(reactor.listen_udp_with("127.0.0.1:0", &bad, Count(0)).is_err());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatagramConfig {
    pub(super) max_datagram_size: usize,
    pub(super) recv_buffer_size: Option<usize>,
    pub(super) send_buffer_size: Option<usize>,
    pub(super) reuse_address: bool,
    pub(super) reuse_port: bool,
    pub(super) send_queue_high: usize,
    pub(super) send_queue_low: usize,
    pub(super) send_queue_max: usize,
}

impl Default for DatagramConfig {
    fn default() -> Self {
        DatagramConfig {
            max_datagram_size: DEFAULT_MAX_DATAGRAM_SIZE,
            recv_buffer_size: None,
            send_buffer_size: None,
            reuse_address: false,
            reuse_port: false,
            send_queue_high: DEFAULT_HIGH_WATERMARK,
            send_queue_low: DEFAULT_LOW_WATERMARK,
            send_queue_max: DEFAULT_SEND_QUEUE_MAX,
        }
    }
}

impl DatagramConfig {
    /// The defaults: datagrams up to [`DEFAULT_MAX_DATAGRAM_SIZE`], the
    /// kernel's socket buffer sizes, no address reuse, and a send queue
    /// with the watermarks of a TCP transport (64 KiB high, 16 KiB low) and
    /// a [`DEFAULT_SEND_QUEUE_MAX`] cap.
    pub fn new() -> Self {
        Self::default()
    }

    /// The largest datagram delivered (Twisted's `maxPacketSize`, 8192
    /// there), 1 to 65,535 bytes. A larger one is dropped and reported as
    /// [`DatagramTruncated`](super::DatagramTruncated), never cut.
    pub fn max_datagram_size(mut self, bytes: usize) -> Self {
        self.max_datagram_size = bytes;
        self
    }

    /// SO_RCVBUF: how much the kernel holds for the port while the reactor
    /// is busy (Linux doubles the value and caps it at
    /// `net.core.rmem_max`). Datagrams past it are dropped by the kernel.
    pub fn recv_buffer_size(mut self, bytes: usize) -> Self {
        self.recv_buffer_size = Some(bytes);
        self
    }

    /// SO_SNDBUF: how much the kernel takes from the port before a send
    /// would block and datagrams wait in the send queue.
    pub fn send_buffer_size(mut self, bytes: usize) -> Self {
        self.send_buffer_size = Some(bytes);
        self
    }

    /// SO_REUSEADDR: several sockets may bind the same multicast address
    /// and port, and each receives the group's datagrams (Twisted's
    /// `listenMultiple`).
    pub fn reuse_address(mut self, on: bool) -> Self {
        self.reuse_address = on;
        self
    }

    /// SO_REUSEPORT: several sockets (one per reactor thread, say) may bind
    /// the same address and port; the kernel spreads unicast datagrams
    /// across them. Binding fails with `Unsupported` where the platform
    /// has no SO_REUSEPORT.
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.reuse_port = on;
        self
    }

    /// The send queue's limits, in bytes (see
    /// [`DatagramTransport::send_queue_size`](super::DatagramTransport::send_queue_size)
    /// for how a datagram is counted): past `high` the protocol is told to
    /// [`pause_writing`](super::DatagramProtocol::pause_writing), at or
    /// below `low` to resume; a write that would take the queue past `max`
    /// is refused with [`SendQueueFull`](super::SendQueueFull). Needs
    /// `low <= high <= max`.
    pub fn send_queue_limits(mut self, high: usize, low: usize, max: usize) -> Self {
        self.send_queue_high = high;
        self.send_queue_low = low;
        self.send_queue_max = max;
        self
    }

    /// The send queue's hard cap alone (see
    /// [`send_queue_limits`](Self::send_queue_limits)).
    pub fn send_queue_max(mut self, max: usize) -> Self {
        self.send_queue_max = max;
        self
    }

    /// Checks that the limits fit together.
    pub(super) fn validate(&self) -> io::Result<()> {
        let invalid = |why: String| Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        if !(1..=DEFAULT_MAX_DATAGRAM_SIZE).contains(&self.max_datagram_size) {
            return invalid(format!(
                "max_datagram_size must be 1 to {DEFAULT_MAX_DATAGRAM_SIZE} bytes, not {}",
                self.max_datagram_size
            ));
        }
        if !(self.send_queue_low <= self.send_queue_high
            && self.send_queue_high <= self.send_queue_max)
        {
            return invalid(format!(
                "send queue limits need low <= high <= max; got low {}, high {}, max {}",
                self.send_queue_low, self.send_queue_high, self.send_queue_max
            ));
        }
        Ok(())
    }
}

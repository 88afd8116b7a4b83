//! [`Protocol`], [`Factory`], [`ClientFactory`] and the [`Reason`] a
//! connection ended.

use crate::net::Address;
use std::error::Error;
use std::fmt;
use std::io;

use bytes::{Bytes, BytesMut};

use crate::event::Event;
use crate::net::Connector;
use crate::transport::Transport;

/// The code that handles one connection, called by the reactor as things
/// happen to it: Twisted's `Protocol`, asyncio's `Protocol`.
///
/// Every method runs on the reactor thread, one at a time, in the order the
/// events happened. Only [`data_received`](Self::data_received) must be
/// written; the rest default to doing nothing.
///
/// A panic in any of these methods closes this connection only (with
/// [`Reason::Failed`]); the reactor and every other connection go on.
///
/// # Examples
///
/// An echo protocol, unit-tested without sockets:
///
/// ```
/// use bytes::Bytes;
/// use twill::{testing::StringTransport, Protocol, Transport};
///
/// #[derive(Default)]
/// struct Echo {
///     transport: Option<Transport>,
/// }
///
/// impl Protocol for Echo {
///     fn connection_made(&mut self, transport: &Transport) {
///         self.transport = Some(transport.clone());
///     }
///     fn data_received(&mut self, data: Bytes) {
///         self.transport.as_ref().unwrap().write(data);
///     }
/// }
///
/// let transport = StringTransport::new();
/// let mut echo = Echo::default();
/// echo.connection_made(&transport.transport());
/// echo.data_received(Bytes::from_static(b"hello"));
/// assert_eq!(transport.value(), b"hello");
/// ```
pub trait Protocol: 'static {
    /// The connection is up. Keep a clone of `transport` to write later.
    fn connection_made(&mut self, transport: &Transport) {
        let _ = transport;
    }

    /// Bytes arrived. They come in arbitrary pieces: one message may arrive
    /// in several calls, several messages in one.
    fn data_received(&mut self, data: Bytes);

    /// Offers a buffer for the reactor to read into directly, asyncio's
    /// `BufferedProtocol.get_buffer`: a protocol that gathers input in a
    /// buffer of its own (a frame decoder's cumulation buffer) saves a copy
    /// of every read this way.
    ///
    /// Return the buffer and the reactor reads into its spare capacity
    /// (making room first) and calls
    /// [`buffer_updated`](Self::buffer_updated) instead of
    /// [`data_received`](Self::data_received). The default, `None`, has
    /// the reactor read into a buffer of its own and call `data_received`.
    /// A wrapper that forwards one of the two must forward both.
    ///
    /// ```
    /// use twill::{Bytes, BytesMut, Protocol};
    ///
    /// /// Counts newlines, reading straight into its own buffer.
    /// #[derive(Default)]
    /// struct LineCounter {
    ///     pending: BytesMut,
    ///     lines: usize,
    /// }
    ///
    /// impl Protocol for LineCounter {
    ///     fn data_received(&mut self, data: Bytes) {
    ///         self.pending.extend_from_slice(&data);
    ///         self.buffer_updated(data.len());
    ///     }
    ///
    ///     fn get_buffer(&mut self) -> Option<&mut BytesMut> {
    ///         Some(&mut self.pending)
    ///     }
    ///
    ///     fn buffer_updated(&mut self, _appended: usize) {
    ///         self.lines += self.pending.iter().filter(|&&b| b == b'\n').count();
    ///         self.pending.clear();
    ///     }
    /// }
    ///
    /// let mut counter = LineCounter::default();
    /// counter.data_received(Bytes::from_static(b"one\ntwo\n"));
    /// assert_eq!(counter.lines, 2);
    /// ```
    fn get_buffer(&mut self) -> Option<&mut BytesMut> {
        None
    }

    /// `appended` bytes were read onto the end of the buffer that
    /// [`get_buffer`](Self::get_buffer) returned. asyncio's
    /// `BufferedProtocol.buffer_updated`.
    fn buffer_updated(&mut self, appended: usize) {
        let _ = appended;
    }

    /// The peer closed its writing side (it sent FIN).
    ///
    /// Return `false` (the default) to close the connection: what is still
    /// buffered is sent first, then [`connection_lost`](Self::connection_lost)
    /// follows with [`Reason::Done`]. Return `true` to keep writing on the
    /// half-open connection; the protocol then closes it itself with
    /// [`Transport::lose_connection`]. This is asyncio's `eof_received` and
    /// Twisted's `IHalfCloseableProtocol.readConnectionLost`.
    fn eof_received(&mut self) -> bool {
        false
    }

    /// The connection is gone; called exactly once, last.
    fn connection_lost(&mut self, reason: &Reason) {
        let _ = reason;
    }

    /// The transport's write buffer went over its high watermark: stop
    /// producing until [`resume_writing`](Self::resume_writing).
    ///
    /// Called after the callback in which the buffer grew returns (a
    /// protocol is never re-entered), once the reactor has tried to flush.
    fn pause_writing(&mut self) {}

    /// The write buffer drained below its low watermark: produce again.
    fn resume_writing(&mut self) {}

    /// Everything written so far has been handed to the kernel: the write
    /// buffer is empty again. Called once per flush that empties a buffer
    /// that held bytes, so a protocol that writes in pieces (a pull
    /// producer, in Twisted's terms) can write the next one here and keep
    /// at most one piece buffered. Netty's write completion; for one
    /// write's own completion see [`Transport::flushed`].
    fn write_complete(&mut self) {}

    /// An [`Event`] arrived: fired at this connection with
    /// [`Transport::fire_event`], or by a wrapper around this protocol
    /// (an idle timeout, say). Netty's `userEventTriggered`. Take the
    /// events you know by type; a wrapper passes the others on to the
    /// protocol inside it. The default drops the event, with a debug log.
    fn event_received(&mut self, event: Event) {
        log::debug!("unhandled event: {event:?}");
    }
}

impl<P: Protocol + ?Sized> Protocol for Box<P> {
    fn connection_made(&mut self, transport: &Transport) {
        (**self).connection_made(transport)
    }
    fn data_received(&mut self, data: Bytes) {
        (**self).data_received(data)
    }
    fn get_buffer(&mut self) -> Option<&mut BytesMut> {
        (**self).get_buffer()
    }
    fn buffer_updated(&mut self, appended: usize) {
        (**self).buffer_updated(appended)
    }
    fn eof_received(&mut self) -> bool {
        (**self).eof_received()
    }
    fn connection_lost(&mut self, reason: &Reason) {
        (**self).connection_lost(reason)
    }
    fn pause_writing(&mut self) {
        (**self).pause_writing()
    }
    fn resume_writing(&mut self) {
        (**self).resume_writing()
    }
    fn write_complete(&mut self) {
        (**self).write_complete()
    }
    fn event_received(&mut self, event: Event) {
        (**self).event_received(event)
    }
}

/// Builds a [`Protocol`] for each connection: Twisted's `Factory`.
///
/// A closure `|peer| MyProtocol::new()` is a factory. Implement the trait to
/// refuse connections (return `None` from
/// [`build_protocol`](Self::build_protocol)) or to hold resources that
/// [`start_factory`](Self::start_factory) opens and
/// [`stop_factory`](Self::stop_factory) closes.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use twill::{Address, Factory, Protocol};
///
/// struct Discard;
/// impl Protocol for Discard {
///     fn data_received(&mut self, _: Bytes) {}
/// }
///
/// /// Serves only clients on loopback.
/// struct LocalOnly;
/// impl Factory for LocalOnly {
///     type Protocol = Discard;
///     fn build_protocol(&mut self, peer: Address) -> Option<Discard> {
///         // A Unix socket's peer has no IP address: refused too.
///         peer.ip().is_some_and(|ip| ip.is_loopback()).then_some(Discard)
///     }
/// }
///
/// let mut factory = LocalOnly;
/// let peer = |text: &str| Address::Tcp(text.parse().unwrap());
/// assert!(factory.build_protocol(peer("127.0.0.1:4000")).is_some());
/// assert!(factory.build_protocol(peer("192.0.2.1:4000")).is_none());
/// ```
pub trait Factory: 'static {
    /// The protocol this factory builds. `Box<dyn Protocol>` is a protocol
    /// too: use it to build different protocols from one factory, or to
    /// avoid naming a long type (a codec stack, say).
    type Protocol: Protocol;

    /// Builds the protocol for a connection with `peer`, or `None` to refuse
    /// it (the socket is closed at once).
    fn build_protocol(&mut self, peer: Address) -> Option<Self::Protocol>;

    /// Called when the factory starts being used: when its port starts
    /// listening, or on a connector's first attempt.
    fn start_factory(&mut self) {}

    /// Called when the factory is no longer used: when its port stops
    /// listening, or when a connector gives up.
    fn stop_factory(&mut self) {}
}

impl<F, P> Factory for F
where
    F: FnMut(Address) -> P + 'static,
    P: Protocol,
{
    type Protocol = P;

    fn build_protocol(&mut self, peer: Address) -> Option<P> {
        Some(self(peer))
    }
}

/// A [`Factory`] for outgoing connections, told how each attempt went:
/// Twisted's `ClientFactory`.
///
/// For each attempt the reactor calls
/// [`started_connecting`](Self::started_connecting), then either
/// [`client_connection_failed`](Self::client_connection_failed), or
/// `build_protocol` and later, after the protocol's `connection_lost`,
/// [`client_connection_lost`](Self::client_connection_lost). Calling
/// [`Connector::connect`] from either of the last two tries again.
pub trait ClientFactory: Factory {
    /// An attempt to connect began.
    fn started_connecting(&mut self, connector: &Connector) {
        let _ = connector;
    }

    /// The attempt failed: refused, timed out (`io::ErrorKind::TimedOut`),
    /// stopped by [`Connector::stop_connecting`] (`io::ErrorKind::Interrupted`)
    /// or another I/O error.
    fn client_connection_failed(&mut self, connector: &Connector, reason: &io::Error) {
        let _ = (connector, reason);
    }

    /// An established connection ended (after its protocol's
    /// `connection_lost`).
    fn client_connection_lost(&mut self, connector: &Connector, reason: &Reason) {
        let _ = (connector, reason);
    }
}

impl<F, P> ClientFactory for F
where
    F: FnMut(Address) -> P + 'static,
    P: Protocol,
{
}

/// Why a connection ended, as passed to [`Protocol::connection_lost`].
///
/// Twisted's `ConnectionDone`, `ConnectionLost`, `ConnectionAborted`, and
/// the exception a protocol raised.
#[derive(Debug)]
#[non_exhaustive]
pub enum Reason {
    /// Closed cleanly: by [`Transport::lose_connection`], or by the peer's
    /// orderly close (FIN).
    Done,
    /// Lost in a non-clean fashion: reset by the peer, or another I/O error.
    Lost(io::Error),
    /// Closed at once by [`Transport::abort_connection`].
    Aborted,
    /// Closed because the protocol failed: a callback panicked
    /// ([`Panicked`]), or the protocol called [`Transport::fail`].
    Failed(Box<dyn Error + Send + Sync>),
}

impl Reason {
    /// Whether the connection was closed cleanly ([`Reason::Done`]).
    pub fn is_clean(&self) -> bool {
        matches!(self, Reason::Done)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Done => f.write_str("connection was closed cleanly"),
            Reason::Lost(err) => write!(f, "connection was lost: {err}"),
            Reason::Aborted => f.write_str("connection was aborted"),
            Reason::Failed(err) => write!(f, "protocol failed: {err}"),
        }
    }
}

/// The error in [`Reason::Failed`] when a protocol or factory callback
/// panicked.
#[derive(Debug, Clone)]
pub struct Panicked {
    /// Which callback panicked, e.g. `"data_received"`.
    pub callback: &'static str,
    /// The panic's message.
    pub message: String,
}

impl Panicked {
    /// The panic whose payload is `payload` (what `catch_unwind` returned)
    /// in `callback`: for wrappers that call into a protocol from their
    /// own timers, where the connection's guard does not reach.
    ///
    /// ```
    /// let payload = std::panic::catch_unwind(|| panic!("no such user")).unwrap_err();
    /// let panicked = twill::Panicked::from_payload("event_received", &*payload);
    /// assert_eq!(panicked.to_string(), "event_received panicked: no such user");
    /// ```
    pub fn from_payload(callback: &'static str, payload: &(dyn std::any::Any + Send)) -> Panicked {
        Panicked {
            callback,
            message: crate::panic_message(payload),
        }
    }
}

impl fmt::Display for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} panicked: {}", self.callback, self.message)
    }
}

impl Error for Panicked {}

/// Drops a protocol the connection is done with (replaced, or after its
/// `connection_lost`). A panic in its `Drop` is logged, naming `why`: it
/// must not unwind through the reactor, which serves other connections.
pub(crate) fn drop_protocol(protocol: Box<dyn Protocol>, why: &str) {
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(protocol)));
    if let Err(panic) = dropped {
        log::error!(
            "a protocol panicked while dropped ({why}): {}",
            crate::panic_message(&*panic)
        );
    }
}

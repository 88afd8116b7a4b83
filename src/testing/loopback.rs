//! [`loopback`]: two protocols connected in memory, Twisted's `iosim`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::error::Error;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};

use bytes::{Bytes, BytesMut};

use crate::event::Event;
use crate::layer::Layer;
use crate::protocol::{Protocol, Reason};
use crate::transport::{
    Interposer, SentWaiter, Transport, TransportImpl, WriteBufferFull, DEFAULT_HIGH_WATERMARK,
    DEFAULT_LOW_WATERMARK, DEFAULT_MAX_WRITE_BUFFER,
};

/// Most rounds [`Loopback::flush`] makes before it decides the two
/// protocols will never go quiet.
const MAX_ROUNDS: usize = 100_000;

/// Connects `server` and `client` in memory, Twisted's
/// `iosim.connectedServerAndClient`: each gets `connection_made` (the
/// server first) with a transport whose writes wait in a buffer until the
/// test moves them with [`pump`](Loopback::pump) or
/// [`flush`](Loopback::flush). No socket, no reactor: the test decides
/// when bytes travel, so whole conversations (handshakes included: TLS
/// runs over it) are tested step by step and without timing.
///
/// The transports behave as the reactor's do: `lose_connection` closes
/// once the buffer is delivered, and both sides get `connection_lost`
/// (the other side with [`Reason::Done`]); `abort_connection` closes at
/// once (the other side with [`Reason::Lost`], a reset); `write_eof`
/// reaches the other side as `eof_received`; `pause_reading` holds what
/// is sent to that side in the sender's buffer, which counts toward its
/// watermarks (`pause_writing`, `resume_writing`) and hard cap;
/// `fire_event` is delivered on the next pump; and
/// [`Transport::start_tls`] works. A panic in a protocol reaches the test.
///
/// ```
/// use std::{cell::RefCell, rc::Rc};
/// use twill::{testing::loopback, Bytes, Protocol, Transport};
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
/// #[derive(Default)]
/// struct Collect(Rc<RefCell<Vec<u8>>>);
/// impl Protocol for Collect {
///     fn data_received(&mut self, data: Bytes) {
///         self.0.borrow_mut().extend_from_slice(&data);
///     }
/// }
///
/// let got = Rc::new(RefCell::new(Vec::new()));
/// let pair = loopback(Echo(None), Collect(got.clone()));
/// pair.client().write("ping");
/// assert!(got.borrow().is_empty(), "nothing moves until the test says so");
/// pair.flush();
/// assert_eq!(&got.borrow()[..], b"ping");
/// ```
pub fn loopback(server: impl Protocol, client: impl Protocol) -> Loopback {
    let server_addr = SocketAddr::from(([127, 0, 0, 1], 12345));
    let client_addr = SocketAddr::from(([127, 0, 0, 1], 54321));
    let server = End::new(Box::new(server), server_addr, client_addr);
    let client = End::new(Box::new(client), client_addr, server_addr);
    *server.other.borrow_mut() = Rc::downgrade(&client);
    *client.other.borrow_mut() = Rc::downgrade(&server);
    let pair = Loopback { server, client };
    for end in [&pair.server, &pair.client] {
        let transport = Transport::new(end.clone());
        end.call(|p| p.connection_made(&transport));
    }
    pair
}

/// Two protocols connected in memory: see [`loopback`].
pub struct Loopback {
    server: Rc<End>,
    client: Rc<End>,
}

impl Loopback {
    /// The server protocol's transport.
    pub fn server(&self) -> Transport {
        Transport::new(self.server.clone())
    }

    /// The client protocol's transport.
    pub fn client(&self) -> Transport {
        Transport::new(self.client.clone())
    }

    /// One round: delivers pending events, then what each side wrote to
    /// the other (server to client first), then half-closes and closes
    /// whose buffers are delivered. Returns whether anything happened:
    /// Twisted's `IOPump.pump`.
    pub fn pump(&self) -> bool {
        let mut moved = false;
        for end in [&self.server, &self.client] {
            moved |= end.deliver_events();
        }
        moved |= End::deliver(&self.server, &self.client);
        moved |= End::deliver(&self.client, &self.server);
        for end in [&self.server, &self.client] {
            moved |= end.settle_close();
        }
        moved
    }

    /// Pumps until nothing moves: Twisted's `IOPump.flush`. Returns
    /// whether anything moved.
    ///
    /// # Panics
    ///
    /// If the two sides are still busy after 100,000 rounds (two
    /// protocols that answer each other forever).
    pub fn flush(&self) -> bool {
        let mut moved = false;
        for _ in 0..MAX_ROUNDS {
            if !self.pump() {
                return moved;
            }
            moved = true;
        }
        panic!("the two protocols did not go quiet in {MAX_ROUNDS} rounds");
    }
}

impl fmt::Debug for Loopback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loopback")
            .field("server_buffered", &self.server.out.borrow().len())
            .field("client_buffered", &self.client.out.borrow().len())
            .finish()
    }
}

/// One side: its protocol, and what it wrote that the other has not
/// received yet.
struct End {
    me: Weak<End>,
    other: RefCell<Weak<End>>,
    host: SocketAddr,
    peer: SocketAddr,
    protocol: RefCell<Option<Box<dyn Protocol>>>,
    out: RefCell<BytesMut>,
    written: Cell<u64>,
    sent: Cell<u64>,
    limits: Cell<(usize, usize)>,
    max: Cell<usize>,
    writing_paused: Cell<bool>,
    reading_paused: Cell<bool>,
    flow_control: Cell<bool>,
    nodelay: Cell<bool>,
    keepalive: Cell<bool>,
    /// `lose_connection`: close once `out` is delivered, with this reason.
    closing: RefCell<Option<Reason>>,
    /// `abort_connection`: close at the next pump.
    aborting: RefCell<Option<Reason>>,
    eof_requested: Cell<bool>,
    eof_sent: Cell<bool>,
    eof_received: Cell<bool>,
    lost: Cell<bool>,
    events: RefCell<VecDeque<Event>>,
    writable_waiters: RefCell<Vec<Box<dyn FnOnce()>>>,
    sent_waiters: RefCell<VecDeque<(u64, SentWaiter)>>,
    /// A layer under the protocol (`start_tls`), reached by every handle.
    layer: Layer,
}

/// The side itself, below any layer.
struct Raw(Rc<End>);

impl End {
    fn new(protocol: Box<dyn Protocol>, host: SocketAddr, peer: SocketAddr) -> Rc<End> {
        Rc::new_cyclic(|me| End {
            me: me.clone(),
            other: RefCell::new(Weak::new()),
            host,
            peer,
            protocol: RefCell::new(Some(protocol)),
            out: RefCell::new(BytesMut::new()),
            written: Cell::new(0),
            sent: Cell::new(0),
            limits: Cell::new((DEFAULT_HIGH_WATERMARK, DEFAULT_LOW_WATERMARK)),
            max: Cell::new(DEFAULT_MAX_WRITE_BUFFER),
            writing_paused: Cell::new(false),
            reading_paused: Cell::new(false),
            flow_control: Cell::new(false),
            nodelay: Cell::new(true),
            keepalive: Cell::new(false),
            closing: RefCell::new(None),
            aborting: RefCell::new(None),
            eof_requested: Cell::new(false),
            eof_sent: Cell::new(false),
            eof_received: Cell::new(false),
            lost: Cell::new(false),
            events: RefCell::new(VecDeque::new()),
            writable_waiters: RefCell::new(Vec::new()),
            sent_waiters: RefCell::new(VecDeque::new()),
            layer: Layer::default(),
        })
    }

    /// Calls the protocol, then wraps it if it started TLS meanwhile.
    fn call<R>(&self, f: impl FnOnce(&mut dyn Protocol) -> R) -> Option<R> {
        let result = {
            let mut slot = self.protocol.borrow_mut();
            let protocol = slot.as_mut()?;
            f(&mut **protocol)
        };
        self.layer.apply_pending(&self.protocol);
        Some(result)
    }

    fn is_closing(&self) -> bool {
        self.lost.get() || self.closing.borrow().is_some() || self.aborting.borrow().is_some()
    }

    fn refuses_writes(&self) -> bool {
        self.is_closing() || self.eof_requested.get()
    }

    fn deliver_events(&self) -> bool {
        let mut moved = false;
        loop {
            let Some(event) = self.events.borrow_mut().pop_front() else {
                return moved;
            };
            moved = true;
            self.call(|p| p.event_received(event));
        }
    }

    /// Hands `to` what `from` wrote, unless `to` paused reading.
    fn deliver(from: &Rc<End>, to: &Rc<End>) -> bool {
        if from.lost.get()
            || to.lost.get()
            || to.is_closing()
            || to.reading_paused.get()
            || to.eof_received.get()
        {
            from.check_watermarks();
            return false;
        }
        let data = from.out.borrow_mut().split().freeze();
        let mut moved = false;
        if !data.is_empty() {
            moved = true;
            from.sent.set(from.sent.get() + data.len() as u64);
            to.call(|p| p.data_received(data));
            from.sent_progress();
            from.call(|p| p.write_complete());
        }
        from.check_watermarks();
        // The data may have made `to` pause or close.
        let takes_eof = !to.reading_paused.get() && !to.is_closing() && !to.lost.get();
        if takes_eof
            && from.eof_requested.get()
            && !from.eof_sent.get()
            && from.out.borrow().is_empty()
        {
            from.eof_sent.set(true);
            to.eof_received.set(true);
            moved = true;
            let keep_open = to.call(|p| p.eof_received()).unwrap_or(false);
            if !keep_open || from.is_closing() {
                to.closing.borrow_mut().get_or_insert(Reason::Done);
            }
        }
        moved
    }

    fn check_watermarks(&self) {
        let (high, low) = self.limits.get();
        let buffered = self.out.borrow().len();
        if self.is_closing() {
            return;
        }
        if !self.writing_paused.get() && buffered > high {
            self.writing_paused.set(true);
            self.call(|p| p.pause_writing());
        } else if self.writing_paused.get() && buffered <= low {
            self.writing_paused.set(false);
            self.call(|p| p.resume_writing());
            self.wake_writable_waiters();
        } else if raw_impl::is_writable(self) {
            // Waiters from while the buffer was over the high watermark,
            // before any pause.
            self.wake_writable_waiters();
        }
    }

    fn wake_writable_waiters(&self) {
        for waiter in std::mem::take(&mut *self.writable_waiters.borrow_mut()) {
            waiter();
        }
    }

    fn sent_progress(&self) {
        loop {
            let due = matches!(self.sent_waiters.borrow().front(), Some((mark, _)) if *mark <= self.sent.get());
            if !due {
                return;
            }
            let (_, waiter) = self.sent_waiters.borrow_mut().pop_front().expect("due");
            waiter(true);
        }
    }

    /// Ends the connection if this side aborted, or closed with nothing
    /// left to deliver.
    fn settle_close(&self) -> bool {
        if self.lost.get() {
            return false;
        }
        if let Some(reason) = self.aborting.borrow_mut().take() {
            self.end(reason, Reason::Lost(io::ErrorKind::ConnectionReset.into()));
            return true;
        }
        let ready = self.closing.borrow().is_some() && self.out.borrow().is_empty();
        if ready {
            let reason = self.closing.borrow_mut().take().expect("closing");
            self.end(reason, Reason::Done);
            return true;
        }
        false
    }

    /// Both sides are over: this one with `mine`, the other with `theirs`
    /// unless it was closing for a reason of its own.
    fn end(&self, mine: Reason, theirs: Reason) {
        self.lose(mine);
        if let Some(other) = self.other.borrow().upgrade() {
            let own = other.aborting.borrow_mut().take();
            let own = own.or_else(|| other.closing.borrow_mut().take());
            other.lose(own.unwrap_or(theirs));
        }
    }

    fn lose(&self, reason: Reason) {
        if self.lost.replace(true) {
            return;
        }
        self.out.borrow_mut().clear();
        self.events.borrow_mut().clear();
        for (_, waiter) in std::mem::take(&mut *self.sent_waiters.borrow_mut()) {
            waiter(false);
        }
        self.layer.apply_pending(&self.protocol);
        let protocol = self.protocol.borrow_mut().take();
        self.layer.clear();
        if let Some(mut protocol) = protocol {
            protocol.connection_lost(&reason);
        }
        self.wake_writable_waiters();
    }

    fn queue(&self, data: &[u8]) {
        if self.refuses_writes() {
            log::debug!("loopback write to {} dropped: closing", self.peer);
            return;
        }
        self.written.set(self.written.get() + data.len() as u64);
        self.out.borrow_mut().extend_from_slice(data);
        self.check_max();
    }

    fn check_max(&self) {
        let max = self.max.get();
        if self.out.borrow().len() > max && self.aborting.borrow().is_none() {
            self.out.borrow_mut().clear();
            *self.aborting.borrow_mut() =
                Some(Reason::Failed(Box::new(WriteBufferFull { limit: max })));
        }
    }
}

impl std::ops::Deref for Raw {
    type Target = End;

    fn deref(&self) -> &End {
        &self.0
    }
}

/// Every handle reaches the layer if there is one, else the side itself.
macro_rules! route {
    ($end:ident . $method:ident ( $($arg:expr),* )) => {
        match $end.layer.upper() {
            Some(upper) => upper.$method($($arg),*),
            None => raw_impl::$method($end $(, $arg)*),
        }
    };
}

impl TransportImpl for End {
    fn write(&self, data: Bytes) {
        route!(self.write(data))
    }
    fn write_with(&self, fill: &mut dyn FnMut(&mut BytesMut) -> Option<Bytes>) -> bool {
        route!(self.write_with(fill))
    }
    fn lose_connection(&self, error: Option<Box<dyn Error + Send + Sync>>) {
        route!(self.lose_connection(error))
    }
    fn abort_connection(&self) {
        raw_impl::abort_with_reason(self, Reason::Aborted)
    }
    fn write_eof(&self) {
        route!(self.write_eof())
    }
    fn set_reading(&self, on: bool) {
        route!(self.set_reading(on))
    }
    fn peer(&self) -> SocketAddr {
        self.peer
    }
    fn host(&self) -> SocketAddr {
        self.host
    }
    fn set_tcp_nodelay(&self, on: bool) -> io::Result<()> {
        self.nodelay.set(on);
        Ok(())
    }
    fn tcp_nodelay(&self) -> io::Result<bool> {
        Ok(self.nodelay.get())
    }
    fn set_tcp_keepalive(&self, on: bool) -> io::Result<()> {
        self.keepalive.set(on);
        Ok(())
    }
    fn tcp_keepalive(&self) -> io::Result<bool> {
        Ok(self.keepalive.get())
    }
    fn write_buffer_size(&self) -> usize {
        route!(self.write_buffer_size())
    }
    fn bytes_written(&self) -> u64 {
        route!(self.bytes_written())
    }
    fn bytes_sent(&self) -> u64 {
        route!(self.bytes_sent())
    }
    fn set_write_buffer_limits(&self, high: usize, low: usize) {
        self.limits.set((high, low));
        self.max.set(self.max.get().max(high));
    }
    fn set_write_buffer_max(&self, max: usize) {
        self.max.set(max.max(self.limits.get().0));
        self.check_max();
    }
    fn write_buffer_max(&self) -> usize {
        self.max.get()
    }
    fn write_buffer_limits(&self) -> (usize, usize) {
        self.limits.get()
    }
    fn is_writable(&self) -> bool {
        route!(self.is_writable())
    }
    fn when_writable(&self, f: Box<dyn FnOnce()>) {
        route!(self.when_writable(f))
    }
    fn set_flow_control(&self, on: bool) {
        self.flow_control.set(on);
    }
    fn flow_control(&self) -> bool {
        self.flow_control.get()
    }
    fn abort_with(&self, error: Box<dyn Error + Send + Sync>) {
        raw_impl::abort_with_reason(self, Reason::Failed(error))
    }
    fn is_closing(&self) -> bool {
        route!(self.is_closing())
    }
    fn when_sent(&self, f: SentWaiter) {
        route!(self.when_sent(f))
    }
    fn fire_event(&self, event: Event) {
        if !self.lost.get() {
            self.events.borrow_mut().push_back(event);
        }
    }
    fn interpose(
        &self,
        make: Box<dyn FnOnce(Transport) -> io::Result<Interposer> + '_>,
    ) -> io::Result<()> {
        if self.refuses_writes() {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the connection is closing",
            ));
        }
        let me = self.me.upgrade().ok_or(io::ErrorKind::NotConnected)?;
        self.layer
            .install(Transport::new(Rc::new(Raw(me))), make, &self.protocol)
    }
    #[cfg(feature = "tls")]
    fn tls(&self) -> Option<crate::tls::TlsInfo> {
        self.layer.upper().and_then(|upper| upper.tls())
    }
}

impl TransportImpl for Raw {
    fn write(&self, data: Bytes) {
        raw_impl::write(self, data)
    }
    fn write_with(&self, fill: &mut dyn FnMut(&mut BytesMut) -> Option<Bytes>) -> bool {
        raw_impl::write_with(self, fill)
    }
    fn lose_connection(&self, error: Option<Box<dyn Error + Send + Sync>>) {
        raw_impl::lose_connection(self, error)
    }
    fn abort_connection(&self) {
        raw_impl::abort_with_reason(self, Reason::Aborted)
    }
    fn write_eof(&self) {
        raw_impl::write_eof(self)
    }
    fn set_reading(&self, on: bool) {
        raw_impl::set_reading(self, on)
    }
    fn peer(&self) -> SocketAddr {
        self.peer
    }
    fn host(&self) -> SocketAddr {
        self.host
    }
    fn set_tcp_nodelay(&self, on: bool) -> io::Result<()> {
        TransportImpl::set_tcp_nodelay(&*self.0, on)
    }
    fn tcp_nodelay(&self) -> io::Result<bool> {
        TransportImpl::tcp_nodelay(&*self.0)
    }
    fn set_tcp_keepalive(&self, on: bool) -> io::Result<()> {
        TransportImpl::set_tcp_keepalive(&*self.0, on)
    }
    fn tcp_keepalive(&self) -> io::Result<bool> {
        TransportImpl::tcp_keepalive(&*self.0)
    }
    fn write_buffer_size(&self) -> usize {
        raw_impl::write_buffer_size(self)
    }
    fn bytes_written(&self) -> u64 {
        raw_impl::bytes_written(self)
    }
    fn bytes_sent(&self) -> u64 {
        raw_impl::bytes_sent(self)
    }
    fn set_write_buffer_limits(&self, high: usize, low: usize) {
        TransportImpl::set_write_buffer_limits(&*self.0, high, low)
    }
    fn set_write_buffer_max(&self, max: usize) {
        TransportImpl::set_write_buffer_max(&*self.0, max)
    }
    fn write_buffer_max(&self) -> usize {
        self.max.get()
    }
    fn write_buffer_limits(&self) -> (usize, usize) {
        self.limits.get()
    }
    fn is_writable(&self) -> bool {
        raw_impl::is_writable(self)
    }
    fn when_writable(&self, f: Box<dyn FnOnce()>) {
        raw_impl::when_writable(self, f)
    }
    fn set_flow_control(&self, on: bool) {
        self.flow_control.set(on);
    }
    fn flow_control(&self) -> bool {
        self.flow_control.get()
    }
    fn abort_with(&self, error: Box<dyn Error + Send + Sync>) {
        raw_impl::abort_with_reason(self, Reason::Failed(error))
    }
    fn is_closing(&self) -> bool {
        raw_impl::is_closing(self)
    }
    fn when_sent(&self, f: SentWaiter) {
        raw_impl::when_sent(self, f)
    }
    fn fire_event(&self, event: Event) {
        TransportImpl::fire_event(&*self.0, event)
    }
}

/// What a side does itself, with or without a layer above it.
mod raw_impl {
    use super::*;

    pub(super) fn write(end: &End, data: Bytes) {
        end.queue(&data);
    }

    pub(super) fn write_with(
        end: &End,
        fill: &mut dyn FnMut(&mut BytesMut) -> Option<Bytes>,
    ) -> bool {
        if end.refuses_writes() {
            return false;
        }
        let mut buf = BytesMut::new();
        let body = fill(&mut buf);
        end.queue(&buf);
        if let Some(body) = body {
            end.queue(&body);
        }
        true
    }

    pub(super) fn lose_connection(end: &End, error: Option<Box<dyn Error + Send + Sync>>) {
        if end.lost.get() || end.aborting.borrow().is_some() {
            return;
        }
        let mut closing = end.closing.borrow_mut();
        match (closing.as_ref(), error) {
            (None, error) => {
                *closing = Some(error.map_or(Reason::Done, Reason::Failed));
            }
            (Some(Reason::Done), Some(error)) => *closing = Some(Reason::Failed(error)),
            _ => {}
        }
    }

    pub(super) fn abort_with_reason(end: &End, reason: Reason) {
        if end.lost.get() {
            return;
        }
        end.out.borrow_mut().clear();
        end.aborting.borrow_mut().get_or_insert(reason);
    }

    pub(super) fn write_eof(end: &End) {
        if !end.is_closing() {
            end.eof_requested.set(true);
        }
    }

    pub(super) fn set_reading(end: &End, on: bool) {
        end.reading_paused.set(!on);
    }

    pub(super) fn write_buffer_size(end: &End) -> usize {
        end.out.borrow().len()
    }

    pub(super) fn bytes_written(end: &End) -> u64 {
        end.written.get()
    }

    pub(super) fn bytes_sent(end: &End) -> u64 {
        end.sent.get()
    }

    pub(super) fn is_writable(end: &End) -> bool {
        !end.writing_paused.get()
            && end.out.borrow().len() <= end.limits.get().0
            && !end.is_closing()
    }

    pub(super) fn is_closing(end: &End) -> bool {
        end.is_closing()
    }

    pub(super) fn when_writable(end: &End, f: Box<dyn FnOnce()>) {
        if is_writable(end) || end.lost.get() {
            f();
        } else {
            end.writable_waiters.borrow_mut().push(f);
        }
    }

    pub(super) fn when_sent(end: &End, f: SentWaiter) {
        if end.lost.get() || end.aborting.borrow().is_some() {
            f(false);
        } else if end.out.borrow().is_empty() {
            f(true);
        } else {
            end.sent_waiters
                .borrow_mut()
                .push_back((end.written.get(), f));
        }
    }
}

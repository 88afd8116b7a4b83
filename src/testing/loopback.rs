//! [`loopback`]: two protocols connected in memory, Twisted's `iosim`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;

use crate::net::Address;
use std::rc::{Rc, Weak};

use bytes::BytesMut;

use crate::event::Event;
use crate::layer::Layer;
use crate::protocol::{Protocol, Reason};
use crate::transport::{
    SentWaiter, Transport, WriteBufferFull, DEFAULT_HIGH_WATERMARK, DEFAULT_LOW_WATERMARK,
    DEFAULT_MAX_WRITE_BUFFER,
};

mod transport;

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
/// `fire_event` is delivered on the next pump;
/// [`Transport::send_file`] copies the file a piece at a time as the
/// buffer drains; and [`Transport::start_tls`] works. A panic in a
/// protocol reaches the test.
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
    let server = End::new(Box::new(server), server_addr.into(), client_addr.into());
    let client = End::new(Box::new(client), client_addr.into(), server_addr.into());
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
    host: Address,
    peer: Address,
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
    /// What `Transport::send_file` copies, and what is written behind it.
    files: crate::producers::ProducerSlot,
}

/// The side itself, below any layer.
struct Raw(Rc<End>);

impl End {
    fn new(protocol: Box<dyn Protocol>, host: Address, peer: Address) -> Rc<End> {
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
            files: Default::default(),
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
        } else if transport::raw_impl::is_writable(self) {
            // Waiters from while the buffer was over the high watermark,
            // before any pause.
            self.wake_writable_waiters();
        }
    }

    fn wake_writable_waiters(&self) {
        // Taken in a statement of its own: a waiter may wait again.
        let waiters = std::mem::take(&mut *self.writable_waiters.borrow_mut());
        for waiter in waiters {
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
        self.files.connection_lost();
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

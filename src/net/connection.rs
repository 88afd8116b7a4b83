//! A stream connection (TCP or Unix): its socket, write buffer and
//! protocol, and the transport its protocol sees.

use crate::producers::ProducerSlot;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::error::Error;
use std::io::{self, Read};
use std::net::Shutdown;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use polling::{Event, PollMode, Poller};
use socket2::SockRef;

use super::address::Address;
use super::connector::ConnectorInner;
use super::stream_socket::StreamSocket;
use super::unix::PeerCredentials;
use super::write_buffer::{Sink, WriteBuffer, WriteError};
use crate::event::Event as UserEvent;
use crate::layer::Layer;
use crate::protocol::{Panicked, Protocol, Reason};
use crate::reactor::{Core, Source};
use crate::time::DelayedCall;
use crate::transport::{
    Interposer, SentWaiter, Transport, TransportImpl, WriteBufferFull, WriteState,
    DEFAULT_HIGH_WATERMARK, DEFAULT_LOW_WATERMARK, DEFAULT_MAX_WRITE_BUFFER,
};

/// Bytes written to one connection per turn at most, so one fast consumer
/// cannot starve the others.
const MAX_WRITE_PER_TURN: usize = 1024 * 1024;
/// A protocol's own read buffer is given room for this many bytes when it
/// has less than `DIRECT_READ_MIN` spare.
const DIRECT_READ_RESERVE: usize = 16 * 1024;
const DIRECT_READ_MIN: usize = 1024;
/// At most this much is read into a protocol's buffer at once, as with the
/// reactor's own buffer, so one busy connection cannot hog a turn.
const DIRECT_READ_MAX: usize = 64 * 1024;

/// How long a gracefully closed connection waits for the peer's EOF before
/// the socket is closed anyway.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// How much of the peer's input a closing connection reads and discards
/// while it waits for that EOF. A peer that sends more after our FIN is not
/// listening: the socket is closed at once (the kernel answers the rest
/// with a reset) instead of reading a flood for `CLOSE_LINGER`.
const CLOSE_DISCARD_MAX: usize = 256 * 1024;

pub(crate) struct Conn {
    core: Weak<Core>,
    me: Weak<Conn>,
    key: usize,
    peer: Address,
    host: Address,
    protocol: RefCell<Option<Box<dyn Protocol>>>,
    /// `connection_lost` was delivered (it may come before the socket is
    /// closed, while a graceful close drains the peer's input).
    lost_notified: Cell<bool>,
    state: RefCell<ConnState>,
    /// The connector that made this connection, told when it ends.
    connector: Option<Rc<ConnectorInner>>,
    /// Events fired while the protocol was running, delivered when its
    /// callback returns.
    events: RefCell<VecDeque<UserEvent>>,
    /// `deliver_events` is running: an event fired from `event_received`
    /// is left to its loop, so that a chain of events does not nest one
    /// delivery in the last (and overflow the stack).
    delivering_events: Cell<bool>,
    /// A layer under the protocol (`Transport::start_tls`): every handle
    /// to this connection reaches it instead, and it reaches the socket
    /// through a `Raw` handle.
    layer: Layer,
    /// `Transport::register_producer`'s producer: one for the connection,
    /// whichever layer the handle reaches.
    producers: ProducerSlot,
}

/// The connection itself, below any layer: what a layer writes through.
struct Raw<C>(C);

impl<C: std::ops::Deref<Target = Conn>> std::ops::Deref for Raw<C> {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        &self.0
    }
}

impl ConnState {
    /// Closed, or on the way there: no more input for the protocol, and no
    /// second close.
    fn is_closing(&self) -> bool {
        self.stream.is_none()
            || self.closing.is_some()
            || self.draining.is_some()
            || self.aborting.is_some()
    }

    /// Whether writes are welcome (`Transport::is_writable`): not from
    /// the write that takes the buffer over the high watermark, before the
    /// flush that tells the protocol to pause.
    fn is_writable(&self) -> bool {
        !self.writing_paused && !self.over_high() && !self.is_closing()
    }

    /// Whether the protocol should stop writing: the buffer is over the
    /// high watermark, or a file is in flight (it holds no memory, but
    /// what is written behind it waits for all of it).
    fn over_high(&self) -> bool {
        self.out.len() > self.high || self.out.has_file()
    }

    /// Whether reading is wanted: the protocol takes input, neither it
    /// (`pause_reading`) nor flow control holds reading back, or a close
    /// is draining the peer's input.
    fn wants_read(&self) -> bool {
        self.draining.is_some()
            || !self.reading_paused
                && (!self.flow_control || !self.writing_paused)
                && self.closing.is_none()
                && !self.eof_read
    }
}

/// A connection's state. What it does in each phase:
///
/// | phase | set by | reads | takes writes | ends |
/// |---|---|---|---|---|
/// | open | `start` | unless `reading_paused`, or `flow_control` while `writing_paused` | yes | any of the below |
/// | peer half-closed | `eof_read` (protocol kept it open) | no | yes | `lose_connection` |
/// | half-closed by us | `write_eof_requested`, then `write_shut` | as when open | no | the peer's EOF |
/// | closing | `closing` (`lose_connection`, `fail`, a panic) | no | yes, sent first | buffer flushed: draining, or closed if the peer's EOF came |
/// | draining | `draining` | discards, 256 KiB at most | no | the peer's EOF, `CLOSE_LINGER`, or the discard limit: closed |
/// | aborting | `aborting` (`abort_connection`, `abort_with`, the hard cap) | no | no (buffer dropped) | next flush: closed with a reset |
/// | closed | `stream` is `None` | no | no (dropped, warned once) | — |
///
/// `connection_lost` is called once, when draining starts or when the
/// socket is closed, whichever is first.
struct ConnState {
    /// `None` once closed.
    stream: Option<StreamSocket>,
    out: WriteBuffer,
    /// Totals since the connection was made.
    written: u64,
    sent: u64,
    high: usize,
    low: usize,
    /// The hard cap: a write past it aborts the connection.
    max: usize,
    /// The protocol was told to pause writing.
    writing_paused: bool,
    reading_paused: bool,
    /// Stop reading while `writing_paused` (`Transport::set_flow_control`).
    flow_control: bool,
    /// `lose_connection` (or `fail`) was called: close with this reason once
    /// the buffer is flushed.
    closing: Option<Reason>,
    /// `abort_connection` (or the hard cap): close at once, with a reset,
    /// for this reason.
    aborting: Option<Reason>,
    /// Our side is shut after a graceful close; reading (and discarding)
    /// until the peer's EOF, so unread input does not turn the close into a
    /// reset that could destroy the reply in flight. Holds the close reason
    /// and the timer that ends the wait.
    draining: Option<DelayedCall>,
    /// Bytes read and dropped while draining.
    discarded: usize,
    eof_read: bool,
    write_eof_requested: bool,
    write_shut: bool,
    /// Whether the socket is in the poller, and the interest it has there.
    registered: bool,
    interest: (bool, bool),
    in_dirty: bool,
    warned_write_after_close: bool,
    /// Run once the buffer drains to the low watermark, or the connection
    /// ends (`Transport::when_writable`).
    writable_waiters: Vec<Box<dyn FnOnce()>>,
    /// `Transport::flushed` callers: each runs with `true` once `sent`
    /// reaches its mark, or with `false` when the connection ends first.
    /// Marks only grow, so the front is always the next due.
    sent_waiters: VecDeque<(u64, SentWaiter)>,
}

enum Notify {
    Pause,
    Resume,
}

impl Conn {
    /// Takes an established connection into the reactor and calls the
    /// protocol's `connection_made`. With `key` given, the socket is already
    /// in the poller under that key (a connector's attempt that succeeded).
    pub(crate) fn start(
        core: &Rc<Core>,
        stream: StreamSocket,
        peer: Address,
        protocol: Box<dyn Protocol>,
        connector: Option<(Rc<ConnectorInner>, usize)>,
    ) -> io::Result<()> {
        let (connector, known_key) = match connector {
            Some((connector, key)) => (Some(connector), Some(key)),
            None => (None, None),
        };
        let prepared = stream
            .set_nonblocking(true)
            .and_then(|()| stream.local_addr());
        let host = match prepared {
            Ok(host) => host,
            Err(err) => {
                if let Some(key) = known_key {
                    let _ = core.poller.delete(&stream);
                    core.sources.borrow_mut().remove(key);
                }
                return Err(err);
            }
        };
        if let StreamSocket::Tcp(tcp) = &stream {
            if let Err(err) = tcp.set_nodelay(true) {
                log::debug!("could not set TCP_NODELAY for {peer}: {err}");
            }
        }
        let key = known_key.unwrap_or_else(|| core.sources.borrow().vacant_key());
        let conn = Rc::new_cyclic(|me| Conn {
            core: Rc::downgrade(core),
            me: me.clone(),
            key,
            peer,
            host,
            protocol: RefCell::new(Some(protocol)),
            lost_notified: Cell::new(false),
            producers: ProducerSlot::default(),
            state: RefCell::new(ConnState {
                stream: None,
                out: WriteBuffer::default(),
                written: 0,
                sent: 0,
                high: DEFAULT_HIGH_WATERMARK,
                low: DEFAULT_LOW_WATERMARK,
                max: DEFAULT_MAX_WRITE_BUFFER,
                writing_paused: false,
                reading_paused: false,
                flow_control: false,
                closing: None,
                aborting: None,
                draining: None,
                discarded: 0,
                eof_read: false,
                write_eof_requested: false,
                write_shut: false,
                registered: true,
                interest: (true, false),
                in_dirty: false,
                warned_write_after_close: false,
                writable_waiters: Vec::new(),
                sent_waiters: VecDeque::new(),
            }),
            events: RefCell::new(VecDeque::new()),
            delivering_events: Cell::new(false),
            layer: Layer::default(),
            connector,
        });
        if known_key.is_some() {
            if let Err(err) =
                core.poller
                    .modify_with_mode(&stream, Event::readable(key), PollMode::Level)
            {
                let _ = core.poller.delete(&stream);
                core.sources.borrow_mut().remove(key);
                return Err(err);
            }
            core.sources.borrow_mut().replace(key, conn.clone());
        } else {
            // SAFETY: the socket is deleted from the poller before it is
            // dropped: in `finish`, or in `discard` when the reactor goes.
            unsafe {
                core.poller
                    .add_with_mode(&stream, Event::readable(key), PollMode::Level)?
            };
            let inserted = core.sources.borrow_mut().insert(conn.clone());
            debug_assert_eq!(inserted, key);
        }
        conn.state.borrow_mut().stream = Some(stream);
        if let Some(connector) = &conn.connector {
            connector.register_conn(conn.clone());
        }
        core.connection_opened();
        let transport = Transport::new(conn.clone());
        conn.call_protocol("connection_made", |p| p.connection_made(&transport));
        Ok(())
    }

    /// Runs a protocol callback; a panic closes the connection.
    fn call_protocol<R>(
        &self,
        callback: &'static str,
        f: impl FnOnce(&mut dyn Protocol) -> R,
    ) -> Option<R> {
        self.call_protocol_as(&Cell::new(callback), f)
    }

    /// As `call_protocol`, for a call that decides on the way which
    /// callback it makes: `callback` names it when it panics.
    fn call_protocol_as<R>(
        &self,
        callback: &Cell<&'static str>,
        f: impl FnOnce(&mut dyn Protocol) -> R,
    ) -> Option<R> {
        let mut slot = self.protocol.borrow_mut();
        let protocol = slot.as_mut()?;
        let result = catch_unwind(AssertUnwindSafe(|| f(&mut **protocol)));
        drop(slot);
        self.layer.apply_pending(&self.protocol);
        if !self.delivering_events.get() && !self.events.borrow().is_empty() {
            self.deliver_events();
        }
        match result {
            Ok(value) => Some(value),
            Err(panic) => {
                let panicked = Panicked::from_payload(callback.get(), &*panic);
                log::error!(
                    "protocol for {} panicked in {}: {}; closing that connection",
                    self.peer,
                    panicked.callback,
                    panicked.message
                );
                let mut st = self.state.borrow_mut();
                // The failure overrides a clean close already under way.
                if !matches!(st.closing, Some(Reason::Failed(_))) {
                    st.closing = Some(Reason::Failed(Box::new(panicked)));
                }
                self.mark_dirty(&mut st);
                None
            }
        }
    }

    /// Delivers the events fired while the protocol was running.
    fn deliver_events(&self) {
        if self.delivering_events.replace(true) {
            return;
        }
        loop {
            let Some(event) = self.events.borrow_mut().pop_front() else {
                break;
            };
            // `call_protocol` catches a panic: the flag is always reset.
            self.call_protocol("event_received", |p| p.event_received(event));
        }
        self.delivering_events.set(false);
    }

    fn mark_dirty(&self, st: &mut ConnState) {
        if !st.in_dirty {
            if let (Some(core), Some(me)) = (self.core.upgrade(), self.me.upgrade()) {
                st.in_dirty = true;
                core.mark_dirty(me);
            }
        }
    }

    /// The poller reported readiness.
    fn on_ready(&self, readable: bool, writable: bool) {
        let (want_read, want_write) = {
            let st = self.state.borrow();
            if st.stream.is_none() {
                return;
            }
            st.interest
        };
        if !want_read && !want_write {
            // Hang-ups and errors are reported even with no interest, and
            // level-triggered they would be reported on every poll: take
            // the socket out of the poller until something is wanted again.
            let mut st = self.state.borrow_mut();
            if let (Some(core), Some(stream)) = (self.core.upgrade(), st.stream.as_ref()) {
                let _ = core.poller.delete(stream);
                st.registered = false;
            }
            return;
        }
        if writable && want_write {
            let mut st = self.state.borrow_mut();
            self.mark_dirty(&mut st);
        }
        if readable && want_read {
            self.read();
        }
    }

    fn read(&self) {
        let Some(core) = self.core.upgrade() else {
            return;
        };
        let result = if self.state.borrow().draining.is_some() {
            // Closing: the protocol is done with input, which is dropped.
            let st = self.state.borrow();
            let Some(stream) = st.stream.as_ref() else {
                return;
            };
            read_shared(&core, stream).map(|data| data.len())
        } else {
            let callback = Cell::new("data_received");
            let delivered = self.call_protocol_as(&callback, |p| self.deliver(&core, p, &callback));
            // `None`: the protocol panicked (the connection is failing) or
            // is gone; either way the read is over.
            let Some(result) = delivered else { return };
            result
        };
        match result {
            Ok(0) => self.eof(),
            Ok(n) => {
                let mut st = self.state.borrow_mut();
                if st.draining.is_some() {
                    st.discarded += n;
                    if st.discarded > CLOSE_DISCARD_MAX {
                        drop(st);
                        log::debug!(
                            "{} kept sending after the close; closing the socket now",
                            self.peer
                        );
                        self.finish(Reason::Done, false);
                    }
                }
            }
            Err(err)
                if err.kind() == io::ErrorKind::WouldBlock
                    || err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => self.finish(Reason::Lost(err), false),
        }
    }

    /// One read, handed to the protocol: as `Bytes` split off the shared
    /// buffer to `data_received`; or, to a protocol that gathers input in a
    /// buffer of its own (`get_buffer`), as that buffer itself when it is
    /// empty (no copy, no allocation) or appended to it in place when a
    /// partial message is pending, then `buffer_updated`. Returns what the
    /// read returned; 0 is EOF, and the protocol is not called.
    fn deliver(
        &self,
        core: &Core,
        protocol: &mut dyn Protocol,
        callback: &Cell<&'static str>,
    ) -> io::Result<usize> {
        let st = self.state.borrow();
        let Some(stream) = st.stream.as_ref() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let Some(buf) = protocol.get_buffer() else {
            let data = read_shared(core, stream)?;
            drop(st);
            let n = data.len();
            if n > 0 {
                protocol.data_received(data.freeze());
            }
            return Ok(n);
        };
        let shared = buf.is_empty();
        let n = if shared {
            *buf = read_shared(core, stream)?;
            buf.len()
        } else {
            if buf.capacity() - buf.len() < DIRECT_READ_MIN {
                buf.reserve(DIRECT_READ_RESERVE);
            }
            let spare = buf.spare_capacity_mut();
            let room = spare.len().min(DIRECT_READ_MAX);
            let n = SockRef::from(stream).recv(&mut spare[..room])?;
            // SAFETY: `recv` initialized the first `n` bytes of the spare
            // capacity, right after the buffer's contents.
            unsafe { buf.set_len(buf.len() + n) };
            n
        };
        drop(st);
        if n > 0 {
            callback.set("buffer_updated");
            protocol.buffer_updated(n);
            if shared {
                // A partial message left over would pin the whole shared
                // buffer: give it an allocation of its own.
                if let Some(left) = protocol.get_buffer().filter(|b| !b.is_empty()) {
                    *left = BytesMut::from(&left[..]);
                }
            }
        }
        Ok(n)
    }

    fn eof(&self) {
        {
            let mut st = self.state.borrow_mut();
            st.eof_read = true;
            self.mark_dirty(&mut st);
            if let Some(linger) = st.draining.take() {
                let _ = linger.cancel();
                drop(st);
                self.finish(Reason::Done, false);
                return;
            }
            if st.closing.is_some() {
                return;
            }
        }
        let keep_open = self.call_protocol("eof_received", |p| p.eof_received());
        let mut st = self.state.borrow_mut();
        // With our writing side already shut there is nothing left to keep
        // open.
        if keep_open == Some(false) || st.write_shut || st.write_eof_requested {
            st.closing.get_or_insert(Reason::Done);
        }
    }

    /// Writes what the buffer holds, completes a pending close or half-close,
    /// tells the protocol about watermarks, and sets the poller's interest.
    pub(crate) fn flush(&self) {
        let mut st = self.state.borrow_mut();
        st.in_dirty = false;
        if st.stream.is_none() {
            return;
        }
        if let Some(reason) = st.aborting.take() {
            drop(st);
            self.finish(reason, true);
            return;
        }
        if !st.out.is_empty() {
            match write_out(&mut st) {
                Ok(()) => {}
                Err(WriteError::Socket(err)) => {
                    drop(st);
                    self.finish(Reason::Lost(err), false);
                    return;
                }
                Err(WriteError::File(err)) => {
                    // The peer got part of the range: whatever framing it
                    // expects is broken, so it must not see a clean end.
                    log::warn!("aborting the connection with {}: {err}", self.peer);
                    drop(st);
                    self.finish(Reason::Failed(Box::new(err)), true);
                    return;
                }
            }
            let emptied = st.out.is_empty() && !st.is_closing();
            let due = st
                .sent_waiters
                .iter()
                .take_while(|(mark, _)| *mark <= st.sent)
                .count();
            if emptied || due > 0 {
                let due: Vec<_> = st.sent_waiters.drain(..due).collect();
                drop(st);
                self.run_sent_waiters(due, true);
                if emptied {
                    self.call_protocol("write_complete", |p| p.write_complete());
                }
                // What those callbacks wrote marked the connection dirty
                // again: the next flush sends it. A close they asked for
                // is handled below as any other.
                st = self.state.borrow_mut();
                if st.stream.is_none() {
                    return;
                }
                if let Some(reason) = st.aborting.take() {
                    drop(st);
                    self.finish(reason, true);
                    return;
                }
            }
        }
        if st.out.is_empty() {
            if let Some(reason) = st.closing.take() {
                if st.eof_read {
                    drop(st);
                    self.finish(reason, false);
                } else {
                    self.start_draining(st, reason);
                }
                return;
            }
            if st.write_eof_requested && !st.write_shut {
                st.write_shut = true;
                if let Some(stream) = st.stream.as_ref() {
                    let _ = stream.shutdown(Shutdown::Write);
                }
                if st.eof_read {
                    drop(st);
                    self.finish(Reason::Done, false);
                    return;
                }
            }
        }
        let notify = if st.is_closing() {
            None
        } else if !st.writing_paused && st.over_high() {
            st.writing_paused = true;
            Some(Notify::Pause)
        } else if st.writing_paused && st.out.len() <= st.low && !st.out.has_file() {
            st.writing_paused = false;
            Some(Notify::Resume)
        } else {
            None
        };
        // Waiters that came while the buffer was over the high watermark,
        // which this flush brought back under it before any pause.
        let unpaused_waiters =
            notify.is_none() && !st.writable_waiters.is_empty() && st.is_writable();
        self.update_interest(&mut st);
        drop(st);
        if unpaused_waiters {
            self.wake_writable_waiters();
        }
        match notify {
            Some(Notify::Pause) => {
                self.call_protocol("pause_writing", |p| p.pause_writing());
                self.producers.writing_paused();
            }
            Some(Notify::Resume) => {
                self.call_protocol("resume_writing", |p| p.resume_writing());
                self.wake_writable_waiters();
            }
            None => {}
        }
    }

    /// Tells `Transport::flushed` callers whether their bytes were sent; a
    /// panic in one is logged and the others still run.
    fn run_sent_waiters(&self, waiters: Vec<(u64, SentWaiter)>, sent: bool) {
        for (_, waiter) in waiters {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| waiter(sent))) {
                log::error!(
                    "a flushed callback for {} panicked: {}",
                    self.peer,
                    crate::panic_message(&*panic)
                );
            }
        }
    }

    /// Runs what waits for the connection to be writable (or over); a
    /// panic in one is logged and the others still run.
    fn wake_writable_waiters(&self) {
        let waiters = std::mem::take(&mut self.state.borrow_mut().writable_waiters);
        for waiter in waiters {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(waiter)) {
                log::error!(
                    "a when_writable callback for {} panicked: {}",
                    self.peer,
                    crate::panic_message(&*panic)
                );
            }
        }
    }

    fn update_interest(&self, st: &mut ConnState) {
        let want_read = st.wants_read();
        let want_write = !st.out.is_empty() && !st.write_shut;
        let want = (want_read, want_write);
        if st.registered && st.interest == want || !st.registered && want == (false, false) {
            st.interest = want;
            return;
        }
        let (Some(core), Some(stream)) = (self.core.upgrade(), st.stream.as_ref()) else {
            return;
        };
        let event = Event::new(self.key, want_read, want_write);
        let result = if st.registered {
            core.poller.modify_with_mode(stream, event, PollMode::Level)
        } else {
            // SAFETY: as in `start`: deleted before the socket is dropped.
            unsafe { core.poller.add_with_mode(stream, event, PollMode::Level) }
        };
        match result {
            Ok(()) => {
                st.registered = true;
                st.interest = want;
            }
            Err(err) => {
                log::error!("could not update poller interest for {}: {err}", self.peer);
                st.aborting.get_or_insert(Reason::Lost(err));
                self.mark_dirty(st);
            }
        }
    }

    /// Everything is sent: shut our side (the peer reads EOF after the last
    /// byte), tell the protocol the connection is over, and keep reading
    /// (discarding) until the peer's EOF before closing the socket, so that
    /// unread input does not turn the close into a reset.
    fn start_draining(&self, mut st: std::cell::RefMut<'_, ConnState>, reason: Reason) {
        let Some(core) = self.core.upgrade() else {
            return;
        };
        if !st.write_shut {
            st.write_shut = true;
            if let Some(stream) = st.stream.as_ref() {
                let _ = stream.shutdown(Shutdown::Write);
            }
        }
        let me = self.me.clone();
        let linger = core.timers.call_later(
            CLOSE_LINGER,
            Box::new(move || {
                if let Some(conn) = me.upgrade() {
                    let lingering = conn.state.borrow_mut().draining.take().is_some();
                    if lingering {
                        conn.finish(Reason::Done, false);
                    }
                }
            }),
        );
        st.draining = Some(linger);
        self.update_interest(&mut st);
        drop(st);
        self.notify_lost(reason);
    }

    /// Closes the socket (with a reset if `reset`, else after a FIN) and
    /// tells the protocol (and the connector), once.
    fn finish(&self, reason: Reason, reset: bool) {
        let (stream, registered) = {
            let mut st = self.state.borrow_mut();
            st.out.clear();
            if let Some(linger) = st.draining.take() {
                let _ = linger.cancel();
            }
            (st.stream.take(), st.registered)
        };
        let Some(stream) = stream else { return };
        let core = self.core.upgrade();
        if let Some(core) = &core {
            if registered {
                let _ = core.poller.delete(&stream);
            }
            core.sources.borrow_mut().remove(self.key);
            core.connection_closed();
        }
        if reset {
            // Linger on with a zero timeout: close sends RST.
            let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        } else {
            let _ = stream.shutdown(Shutdown::Write);
        }
        drop(stream);
        self.notify_lost(reason);
    }

    /// Tells the protocol, then the connector, that the connection is over:
    /// once, whether the socket is closed yet or still draining.
    fn notify_lost(&self, reason: Reason) {
        if self.lost_notified.replace(true) {
            return;
        }
        log::debug!("connection with {} ended: {reason}", self.peer);
        // Whatever is still unsent now never will be (a graceful close
        // sent everything before it got here).
        let unsent: Vec<_> = self.state.borrow_mut().sent_waiters.drain(..).collect();
        self.run_sent_waiters(unsent, false);
        self.events.borrow_mut().clear();
        self.layer.apply_pending(&self.protocol);
        // Twisted's order: the producer is stopped before the protocol hears.
        self.producers.connection_lost();
        let protocol = self.protocol.borrow_mut().take();
        // The layer (and its handle on this connection) goes with it.
        self.layer.clear();
        if let Some(mut protocol) = protocol {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| protocol.connection_lost(&reason)))
            {
                log::error!(
                    "protocol for {} panicked in connection_lost: {}",
                    self.peer,
                    crate::panic_message(&*panic)
                );
            }
            crate::protocol::drop_protocol(protocol, "its connection ended");
        }
        if let Some(connector) = &self.connector {
            connector.connection_lost(reason);
        }
        self.wake_writable_waiters();
    }

    /// Drops the socket and the protocol without callbacks: the reactor
    /// itself is going away.
    pub(crate) fn discard(&self, poller: &Poller) {
        self.producers.forget();
        let mut st = self.state.borrow_mut();
        if let Some(stream) = st.stream.take() {
            let _ = poller.delete(&stream);
        }
        st.writable_waiters.clear();
        st.sent_waiters.clear();
        drop(st);
        self.events.borrow_mut().clear();
        self.layer.clear();
        drop(self.protocol.borrow_mut().take());
    }

    pub(crate) fn lose(&self, error: Option<Box<dyn Error + Send + Sync>>) {
        let mut st = self.state.borrow_mut();
        if st.stream.is_none() || st.draining.is_some() || st.aborting.is_some() {
            return;
        }
        if st.closing.is_none() {
            st.closing = Some(match error {
                Some(error) => Reason::Failed(error),
                None => Reason::Done,
            });
        }
        self.mark_dirty(&mut st);
    }

    /// Closes at once with a reset; `connection_lost` gets `reason` (the
    /// first one, if aborted twice).
    pub(crate) fn abort(&self, reason: Reason) {
        let mut st = self.state.borrow_mut();
        if st.stream.is_none() {
            return;
        }
        st.aborting.get_or_insert(reason);
        st.out.clear();
        self.mark_dirty(&mut st);
    }

    /// Aborts the connection if the last write took the buffer past its
    /// hard cap.
    fn check_max(&self, st: &mut ConnState) {
        if st.out.len() <= st.max || st.aborting.is_some() {
            return;
        }
        let full = WriteBufferFull { limit: st.max };
        log::warn!("aborting the connection with {}: {full}", self.peer);
        st.aborting = Some(Reason::Failed(Box::new(full)));
        // The writes dropped from now on are what this warning is about.
        st.warned_write_after_close = true;
        st.out.clear();
        self.mark_dirty(st);
    }

    fn socket_option<R>(&self, f: impl FnOnce(SockRef<'_>) -> io::Result<R>) -> io::Result<R> {
        let st = self.state.borrow();
        match st.stream.as_ref() {
            Some(stream) => f(SockRef::from(stream)),
            None => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the connection is closed",
            )),
        }
    }
}

impl Conn {
    /// Queues a write of `len` bytes made by `push`, unless writes are
    /// refused.
    fn queue(&self, len: usize, push: impl FnOnce(&mut WriteBuffer)) {
        let mut st = self.state.borrow_mut();
        if self.refuse_write(&mut st) {
            return;
        }
        st.written += len as u64;
        push(&mut st.out);
        self.mark_dirty(&mut st);
        self.check_max(&mut st);
    }

    /// Whether a write must be dropped because the connection (or its
    /// writing side) is closed; warns once.
    fn refuse_write(&self, st: &mut ConnState) -> bool {
        if st.stream.is_some() && st.aborting.is_none() && !st.write_eof_requested && !st.write_shut
        {
            return false;
        }
        if !st.warned_write_after_close {
            st.warned_write_after_close = true;
            log::warn!(
                "dropped a write to {}: the connection is closed or its writing side was shut down",
                self.peer
            );
        }
        true
    }
}

impl Source for Conn {
    fn ready(self: Rc<Self>, readable: bool, writable: bool) {
        self.on_ready(readable, writable);
    }

    fn shut_down(&self) {
        self.lose(None);
    }

    fn abort(&self) {
        Conn::abort(self, Reason::Aborted);
    }

    fn discard(&self, poller: &Poller) {
        Conn::discard(self, poller);
    }

    fn flush(&self) {
        Conn::flush(self);
    }
}

/// One read into the reactor's shared buffer; the bytes read are split off
/// it (empty at EOF).
fn read_shared(core: &Core, mut stream: &StreamSocket) -> io::Result<BytesMut> {
    let mut shared = core.read_buffer();
    let n = stream.read(&mut shared[..])?;
    Ok(shared.split_to(n))
}

impl Sink for &StreamSocket {
    #[cfg(target_os = "linux")]
    fn send_file(&mut self, file: &std::fs::File, offset: u64, len: usize) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let mut offset = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset too large"))?;
        // SAFETY: both descriptors are open for the call (the socket and
        // the file are borrowed), `offset` is a valid pointer to an
        // `off_t` that sendfile updates, and no memory of ours is read or
        // written otherwise.
        let n = unsafe { libc::sendfile(self.as_raw_fd(), file.as_raw_fd(), &mut offset, len) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn send_file(&mut self, _: &std::fs::File, _: u64, _: usize) -> io::Result<usize> {
        // `send_file` takes the copying path here: no file is queued.
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// Writes as much of the buffer as the socket takes now.
fn write_out(st: &mut ConnState) -> Result<(), WriteError> {
    let ConnState {
        stream, out, sent, ..
    } = st;
    let Some(stream) = stream.as_ref() else {
        return Ok(());
    };
    *sent += out.write_to(stream, MAX_WRITE_PER_TURN)? as u64;
    Ok(())
}

/// Every handle reaches the layer if there is one, else the connection.
macro_rules! route {
    ($conn:ident . $method:ident ( $($arg:expr),* )) => {
        match $conn.layer.upper() {
            Some(upper) => upper.$method($($arg),*),
            None => Raw($conn).$method($($arg),*),
        }
    };
}

impl TransportImpl for Conn {
    fn write(&self, data: Bytes) {
        route!(self.write(data))
    }
    fn write_shared(&self, data: &Bytes) {
        route!(self.write_shared(data))
    }
    fn write_with(&self, fill: &mut dyn FnMut(&mut BytesMut) -> Option<Bytes>) -> bool {
        route!(self.write_with(fill))
    }
    fn lose_connection(&self, error: Option<Box<dyn Error + Send + Sync>>) {
        route!(self.lose_connection(error))
    }
    fn abort_connection(&self) {
        route!(self.abort_connection())
    }
    fn abort_with(&self, error: Box<dyn Error + Send + Sync>) {
        route!(self.abort_with(error))
    }
    fn write_eof(&self) {
        route!(self.write_eof())
    }
    fn set_reading(&self, on: bool) {
        route!(self.set_reading(on))
    }
    fn peer(&self) -> Address {
        self.peer.clone()
    }
    fn host(&self) -> Address {
        self.host.clone()
    }
    fn peer_credentials(&self) -> Option<PeerCredentials> {
        Raw(self).peer_credentials()
    }
    fn set_tcp_nodelay(&self, on: bool) -> io::Result<()> {
        Raw(self).set_tcp_nodelay(on)
    }
    fn tcp_nodelay(&self) -> io::Result<bool> {
        Raw(self).tcp_nodelay()
    }
    fn set_tcp_keepalive(&self, on: bool) -> io::Result<()> {
        Raw(self).set_tcp_keepalive(on)
    }
    fn tcp_keepalive(&self) -> io::Result<bool> {
        Raw(self).tcp_keepalive()
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
        Raw(self).set_write_buffer_limits(high, low)
    }
    fn set_write_buffer_max(&self, max: usize) {
        Raw(self).set_write_buffer_max(max)
    }
    fn write_buffer_max(&self) -> usize {
        Raw(self).write_buffer_max()
    }
    fn write_buffer_limits(&self) -> (usize, usize) {
        Raw(self).write_buffer_limits()
    }
    fn is_writable(&self) -> bool {
        route!(self.is_writable())
    }
    fn write_state(&self) -> WriteState {
        route!(self.write_state())
    }
    fn when_writable(&self, f: Box<dyn FnOnce()>) {
        route!(self.when_writable(f))
    }
    fn set_flow_control(&self, on: bool) {
        Raw(self).set_flow_control(on)
    }
    fn flow_control(&self) -> bool {
        Raw(self).flow_control()
    }
    fn is_closing(&self) -> bool {
        route!(self.is_closing())
    }
    fn when_sent(&self, f: SentWaiter) {
        route!(self.when_sent(f))
    }
    fn fire_event(&self, event: UserEvent) {
        Raw(self).fire_event(event)
    }
    fn send_file(
        &self,
        this: &Transport,
        file: std::fs::File,
        range: std::ops::Range<u64>,
    ) -> crate::defer::Deferred<u64> {
        match self.layer.upper() {
            Some(upper) => upper.send_file(this, file, range),
            None => Raw(self).send_file(this, file, range),
        }
    }
    fn interpose(
        &self,
        make: Box<dyn FnOnce(Transport) -> io::Result<Interposer> + '_>,
    ) -> io::Result<()> {
        if self.lost_notified.get() || self.state.borrow().is_closing() {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the connection is closing",
            ));
        }
        let me = self.me.upgrade().ok_or(io::ErrorKind::NotConnected)?;
        self.layer
            .install(Transport::new(Rc::new(Raw(me))), make, &self.protocol)
    }
    fn set_protocol(&self, protocol: Box<dyn Protocol>) -> io::Result<()> {
        if let Some(upper) = self.layer.upper() {
            return upper.set_protocol(protocol);
        }
        if self.lost_notified.get() || self.state.borrow().is_closing() {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the connection is closing",
            ));
        }
        self.layer.replace_protocol(protocol, &self.protocol);
        Ok(())
    }
    #[cfg(feature = "tls")]
    fn tls(&self) -> Option<crate::tls::TlsInfo> {
        self.layer.upper().and_then(|upper| upper.tls())
    }
    fn producer_slot(&self) -> Option<&ProducerSlot> {
        Some(&self.producers)
    }
    fn send_file_slot(&self) -> Option<&ProducerSlot> {
        Some(&self.producers)
    }
}

impl<C: std::ops::Deref<Target = Conn>> TransportImpl for Raw<C> {
    fn producer_slot(&self) -> Option<&ProducerSlot> {
        Some(&self.producers)
    }
    fn send_file_slot(&self) -> Option<&ProducerSlot> {
        // What a layer writes for a file it copies must not wait behind
        // that file.
        None
    }
    fn write(&self, data: Bytes) {
        self.queue(data.len(), |out| out.push(data));
    }

    fn write_shared(&self, data: &Bytes) {
        self.queue(data.len(), |out| out.push_shared(data));
    }

    fn write_with(&self, fill: &mut dyn FnMut(&mut BytesMut) -> Option<Bytes>) -> bool {
        let mut st = self.state.borrow_mut();
        if self.refuse_write(&mut st) {
            return false;
        }
        let n = st.out.append_with(fill);
        if n > 0 {
            st.written += n as u64;
            self.mark_dirty(&mut st);
            self.check_max(&mut st);
        }
        true
    }

    fn lose_connection(&self, error: Option<Box<dyn Error + Send + Sync>>) {
        self.lose(error);
    }

    fn abort_connection(&self) {
        self.abort(Reason::Aborted);
    }

    fn abort_with(&self, error: Box<dyn Error + Send + Sync>) {
        self.abort(Reason::Failed(error));
    }

    fn write_eof(&self) {
        let mut st = self.state.borrow_mut();
        if st.is_closing() {
            return;
        }
        st.write_eof_requested = true;
        self.mark_dirty(&mut st);
    }

    fn set_reading(&self, on: bool) {
        let mut st = self.state.borrow_mut();
        if st.reading_paused == on {
            st.reading_paused = !on;
            self.mark_dirty(&mut st);
        }
    }

    fn peer(&self) -> Address {
        self.peer.clone()
    }

    fn host(&self) -> Address {
        self.host.clone()
    }

    fn peer_credentials(&self) -> Option<PeerCredentials> {
        let st = self.state.borrow();
        match st.stream.as_ref()? {
            StreamSocket::Unix(stream) => super::unix::peer_credentials(stream).ok(),
            StreamSocket::Tcp(_) => None,
        }
    }

    fn set_tcp_nodelay(&self, on: bool) -> io::Result<()> {
        self.socket_option(|s| s.set_nodelay(on))
    }

    fn tcp_nodelay(&self) -> io::Result<bool> {
        self.socket_option(|s| s.nodelay())
    }

    fn set_tcp_keepalive(&self, on: bool) -> io::Result<()> {
        self.socket_option(|s| s.set_keepalive(on))
    }

    fn tcp_keepalive(&self) -> io::Result<bool> {
        self.socket_option(|s| s.keepalive())
    }

    fn write_buffer_size(&self) -> usize {
        self.state.borrow().out.len()
    }

    fn bytes_written(&self) -> u64 {
        self.state.borrow().written
    }

    fn bytes_sent(&self) -> u64 {
        self.state.borrow().sent
    }

    fn set_write_buffer_limits(&self, high: usize, low: usize) {
        let mut st = self.state.borrow_mut();
        st.high = high;
        st.low = low;
        st.max = st.max.max(high);
        self.mark_dirty(&mut st);
    }

    fn set_write_buffer_max(&self, max: usize) {
        let mut st = self.state.borrow_mut();
        st.max = max.max(st.high);
        self.check_max(&mut st);
    }

    fn write_buffer_max(&self) -> usize {
        self.state.borrow().max
    }

    fn write_buffer_limits(&self) -> (usize, usize) {
        let st = self.state.borrow();
        (st.high, st.low)
    }

    fn is_writable(&self) -> bool {
        self.state.borrow().is_writable()
    }

    fn write_state(&self) -> WriteState {
        let st = self.state.borrow();
        WriteState {
            closing: st.is_closing(),
            writable: st.is_writable(),
            buffered: st.out.len(),
        }
    }

    fn when_writable(&self, f: Box<dyn FnOnce()>) {
        let mut st = self.state.borrow_mut();
        // A closing connection will not drain for its protocol again, but
        // may still be flushing: only its end wakes the waiters.
        if st.is_writable() || self.lost_notified.get() {
            drop(st);
            f();
            return;
        }
        st.writable_waiters.push(f);
    }

    fn set_flow_control(&self, on: bool) {
        let mut st = self.state.borrow_mut();
        if st.flow_control != on {
            st.flow_control = on;
            self.mark_dirty(&mut st);
        }
    }

    fn flow_control(&self) -> bool {
        self.state.borrow().flow_control
    }

    fn when_sent(&self, f: SentWaiter) {
        let mut st = self.state.borrow_mut();
        if self.lost_notified.get() || st.stream.is_none() {
            drop(st);
            f(false);
        } else if st.sent >= st.written && st.aborting.is_none() {
            drop(st);
            f(true);
        } else {
            // With an abort under way this fails when the connection
            // closes, after the Deferreds taken before it: in call order.
            let mark = st.written;
            st.sent_waiters.push_back((mark, f));
        }
    }

    fn fire_event(&self, event: UserEvent) {
        if self.lost_notified.get() {
            log::debug!(
                "{event:?} for {} dropped: the connection is closed",
                self.peer
            );
            return;
        }
        let first = {
            let mut events = self.events.borrow_mut();
            events.push_back(event);
            events.len() == 1
        };
        // A running protocol gets it when its callback returns
        // (`call_protocol_as`). Otherwise the code that fired it may be
        // inside the protocol all the same (a wrapper's timer calling into
        // the protocol it wraps), so it is delivered from the loop, once
        // that code has returned.
        if first && self.protocol.try_borrow_mut().is_ok() {
            if let (Some(core), Some(me)) = (self.core.upgrade(), self.me.upgrade()) {
                core.defer(move || me.deliver_events());
            }
        }
    }

    fn is_closing(&self) -> bool {
        self.state.borrow().is_closing()
    }

    #[cfg(target_os = "linux")]
    fn send_file(
        &self,
        _: &Transport,
        file: std::fs::File,
        range: std::ops::Range<u64>,
    ) -> crate::defer::Deferred<u64> {
        use crate::defer::Failure;
        use crate::producers::ConsumerGone;
        let d = crate::defer::Deferred::new();
        let resolver = d.resolver();
        let len = range.end - range.start;
        let failure = Rc::new(RefCell::new(None));
        let mut st = self.state.borrow_mut();
        if self.refuse_write(&mut st) {
            drop(st);
            resolver.errback(Failure::new(ConsumerGone));
            return d;
        }
        st.written += len;
        st.out.push_file(super::write_buffer::FileRange::new(
            file,
            range.start,
            range.end,
            failure.clone(),
        ));
        let mark = st.written;
        st.sent_waiters.push_back((
            mark,
            Box::new(move |sent| {
                if sent {
                    resolver.callback(len);
                } else if let Some(err) = failure.borrow_mut().take() {
                    resolver.errback(Failure::new(err));
                } else {
                    resolver.errback(Failure::new(ConsumerGone));
                }
            }),
        ));
        self.mark_dirty(&mut st);
        d
    }
}

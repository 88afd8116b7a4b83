//! A UDP port in the reactor: its socket, protocol and send queue, how it
//! reads and sends when the poller says so, and how it stops.
//!
//! | state | socket | reads | takes writes | protocol |
//! |---|---|---|---|---|
//! | listening | open, in the poller | unless `reading_paused` | yes: sent at once, queued on `WouldBlock`, refused past the cap | called |
//! | stopped (`stop_listening`, the reactor's stop) | closed, out of the poller | no | no (`NotConnected`) | `stop_protocol` once, then dropped |
//! | discarded (the reactor is dropped) | closed, out of the poller | no | no | dropped without a call |
//!
//! The poller's interest follows the state: readable unless reading is
//! paused, writable only while the send queue holds something.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::{Rc, Weak};

use bytes::Bytes;
use polling::{Event, PollMode, Poller};
use socket2::{SockAddr, Socket};

use super::config::DatagramConfig;
use super::error::port_closed;
use super::receive::{Received, Receiver};
use super::send_queue::SendQueue;
use super::{DatagramProtocol, DatagramTransport};
use crate::reactor::{Core, Source};

/// Datagrams read per readiness event at most, and bytes: a flood cannot
/// keep the loop from its timers and other sockets (the rest is reported
/// again on the next turn, the poller being level-triggered). Twisted reads
/// up to 256 KiB per event.
const READ_BATCH: usize = 128;
const READ_BATCH_BYTES: usize = 256 * 1024;
/// Queued datagrams sent per writable event at most.
const SEND_BATCH: usize = 128;

/// A notification for the protocol, held until no callback of it runs.
enum Pending {
    Error(io::Error),
    PauseWriting,
    ResumeWriting,
}

pub(super) struct Port {
    core: Weak<Core>,
    me: Weak<Port>,
    key: usize,
    host: SocketAddr,
    /// `None` once stopped.
    socket: RefCell<Option<Socket>>,
    protocol: RefCell<Option<Box<dyn DatagramProtocol>>>,
    receiver: RefCell<Receiver>,
    queue: RefCell<SendQueue>,
    peer: Cell<Option<SocketAddr>>,
    reading_paused: Cell<bool>,
    /// The poller's interest now: (readable, writable).
    interest: Cell<(bool, bool)>,
    pending: RefCell<VecDeque<Pending>>,
    in_dirty: Cell<bool>,
    refused: Cell<u64>,
    truncated: Cell<u64>,
    /// `stop_protocol` ran (or the protocol was discarded).
    protocol_stopped: Cell<bool>,
}

/// Serves `socket` (bound, non-blocking) with `protocol`, whose
/// `start_protocol` runs now.
pub(super) fn start(
    core: &Rc<Core>,
    socket: Socket,
    config: &DatagramConfig,
    protocol: Box<dyn DatagramProtocol>,
) -> io::Result<DatagramTransport> {
    let host = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP socket"))?;
    let key = core.sources.borrow().vacant_key();
    let port = Rc::new_cyclic(|me| Port {
        core: Rc::downgrade(core),
        me: me.clone(),
        key,
        host,
        socket: RefCell::new(None),
        protocol: RefCell::new(Some(protocol)),
        receiver: RefCell::new(Receiver::new(config.max_datagram_size)),
        queue: RefCell::new(SendQueue::new(
            config.send_queue_high,
            config.send_queue_low,
            config.send_queue_max,
        )),
        peer: Cell::new(None),
        reading_paused: Cell::new(false),
        interest: Cell::new((true, false)),
        pending: RefCell::new(VecDeque::new()),
        in_dirty: Cell::new(false),
        refused: Cell::new(0),
        truncated: Cell::new(0),
        protocol_stopped: Cell::new(false),
    });
    // SAFETY: the socket is deleted from the poller before it is dropped,
    // in `stop_listening` or `discard`.
    unsafe {
        core.poller
            .add_with_mode(&socket, Event::readable(key), PollMode::Level)?
    };
    let inserted = core.sources.borrow_mut().insert(port.clone());
    debug_assert_eq!(inserted, key);
    *port.socket.borrow_mut() = Some(socket);
    log::debug!("listening for datagrams on {host}");
    let transport = DatagramTransport::new(port.clone());
    port.call_protocol("start_protocol", |p| p.start_protocol(&transport));
    port.deliver_pending();
    Ok(transport)
}

impl Port {
    pub(super) fn host(&self) -> SocketAddr {
        self.host
    }

    pub(super) fn peer(&self) -> Option<SocketAddr> {
        self.peer.get()
    }

    pub(super) fn is_listening(&self) -> bool {
        self.socket.borrow().is_some()
    }

    pub(super) fn max_datagram_size(&self) -> usize {
        self.receiver.borrow().max()
    }

    pub(super) fn send_queue_size(&self) -> usize {
        self.queue.borrow().size()
    }

    pub(super) fn send_queue_len(&self) -> usize {
        self.queue.borrow().len()
    }

    pub(super) fn refused(&self) -> u64 {
        self.refused.get()
    }

    pub(super) fn truncated(&self) -> u64 {
        self.truncated.get()
    }

    pub(super) fn is_reading_paused(&self) -> bool {
        self.reading_paused.get()
    }

    /// Runs `f` with the socket, or fails with `NotConnected` once stopped.
    pub(super) fn with_socket<R>(&self, f: impl FnOnce(&Socket) -> io::Result<R>) -> io::Result<R> {
        match self.socket.borrow().as_ref() {
            Some(socket) => f(socket),
            None => Err(port_closed()),
        }
    }

    /// Sends `data` now if nothing waits before it and the socket takes
    /// it; else queues it (or refuses it past the cap).
    pub(super) fn write(&self, data: Bytes, to: Option<SocketAddr>) -> io::Result<()> {
        let socket = self.socket.borrow();
        let Some(socket) = socket.as_ref() else {
            return Err(port_closed());
        };
        let mut queue = self.queue.borrow_mut();
        if queue.is_empty() {
            match send_datagram(socket, &data, to.as_ref()) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                done => return done,
            }
        }
        match queue.push(data, to) {
            Ok(pause) => {
                if queue.len() == 1 {
                    self.update_interest(socket, &queue);
                }
                drop(queue);
                if pause {
                    self.push_pending(Pending::PauseWriting);
                }
                Ok(())
            }
            Err(full) => {
                self.refused.set(self.refused.get() + 1);
                Err(full.into())
            }
        }
    }

    pub(super) fn connect(&self, peer: SocketAddr) -> io::Result<()> {
        self.with_socket(|socket| socket.connect(&peer.into()))?;
        self.peer.set(Some(peer));
        Ok(())
    }

    pub(super) fn set_reading(&self, on: bool) {
        self.reading_paused.set(!on);
        if let Some(socket) = self.socket.borrow().as_ref() {
            self.update_interest(socket, &self.queue.borrow());
        }
    }

    fn update_interest(&self, socket: &Socket, queue: &SendQueue) {
        let want = (!self.reading_paused.get(), !queue.is_empty());
        if self.interest.get() == want {
            return;
        }
        let Some(core) = self.core.upgrade() else {
            return;
        };
        let event = Event::new(self.key, want.0, want.1);
        match core.poller.modify_with_mode(socket, event, PollMode::Level) {
            Ok(()) => self.interest.set(want),
            Err(err) => log::error!("could not update poller interest for {}: {err}", self.host),
        }
    }

    /// Reads what the socket holds, up to the per-turn budget, and hands
    /// each datagram to the protocol.
    fn read(&self, core: &Core) {
        let mut bytes = 0;
        for _ in 0..READ_BATCH {
            if bytes >= READ_BATCH_BYTES || self.reading_paused.get() {
                return;
            }
            let received = {
                let socket = self.socket.borrow();
                let Some(socket) = socket.as_ref() else {
                    return;
                };
                self.receiver.borrow_mut().receive(core, socket)
            };
            match received {
                Ok(Received::Datagram(data, from)) => {
                    bytes += data.len();
                    self.call_protocol("datagram_received", |p| p.datagram_received(data, from));
                }
                Ok(Received::Truncated(truncated)) => {
                    self.truncated.set(self.truncated.get() + 1);
                    bytes += truncated.size;
                    self.report(truncated.into());
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                // An ICMP error on a connected port, or the like: the
                // socket goes on.
                Err(err) => self.report(err),
            }
            if !self.pending.borrow().is_empty() {
                self.deliver_pending();
            }
        }
    }

    /// Sends what the queue holds, up to the per-turn budget.
    fn send_queued(&self) {
        let socket = self.socket.borrow();
        let Some(socket) = socket.as_ref() else {
            return;
        };
        let mut queue = self.queue.borrow_mut();
        if queue.is_empty() {
            return;
        }
        let sent = queue.send_with(SEND_BATCH, |data, to| send_datagram(socket, data, to));
        self.update_interest(socket, &queue);
        drop(queue);
        for err in sent.errors {
            self.push_pending(Pending::Error(err));
        }
        if sent.resume {
            self.push_pending(Pending::ResumeWriting);
        }
    }

    /// Runs a protocol callback, logging a panic. Returns `false` if a
    /// callback of this protocol is running (the caller holds the call).
    fn call_protocol(&self, callback: &str, f: impl FnOnce(&mut dyn DatagramProtocol)) -> bool {
        let Ok(mut slot) = self.protocol.try_borrow_mut() else {
            return false;
        };
        let Some(protocol) = slot.as_mut() else {
            return true;
        };
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(&mut **protocol))) {
            log::error!(
                "datagram protocol on {} panicked in {callback}: {}; the port goes on",
                self.host,
                crate::panic_message(&*panic)
            );
        }
        true
    }

    fn report(&self, error: io::Error) {
        self.push_pending(Pending::Error(error));
        self.deliver_pending();
    }

    /// Queues a notification for the protocol, delivered once no callback
    /// of it runs: after the current one, or at the end of the turn.
    fn push_pending(&self, notice: Pending) {
        self.pending.borrow_mut().push_back(notice);
        if !self.in_dirty.replace(true) {
            if let (Some(core), Some(me)) = (self.core.upgrade(), self.me.upgrade()) {
                core.mark_dirty(me);
            } else {
                self.in_dirty.set(false);
            }
        }
    }

    fn deliver_pending(&self) {
        loop {
            if self.protocol.try_borrow_mut().is_err() {
                return;
            }
            let Some(notice) = self.pending.borrow_mut().pop_front() else {
                return;
            };
            match notice {
                Pending::Error(err) => {
                    self.call_protocol("error_received", |p| p.error_received(err))
                }
                Pending::PauseWriting => self.call_protocol("pause_writing", |p| p.pause_writing()),
                Pending::ResumeWriting => {
                    self.call_protocol("resume_writing", |p| p.resume_writing())
                }
            };
        }
    }

    /// Closes the socket (after one last try at sending what is queued)
    /// and stops the protocol: at once, or when its running callback
    /// returns.
    pub(super) fn stop_listening(&self) {
        self.send_queued();
        let Some(socket) = self.socket.borrow_mut().take() else {
            return;
        };
        let core = self.core.upgrade();
        if let Some(core) = &core {
            let _ = core.poller.delete(&socket);
            core.sources.borrow_mut().remove(self.key);
        }
        drop(socket);
        let unsent = self.queue.borrow_mut().clear();
        if unsent > 0 {
            log::debug!(
                "{unsent} queued datagram(s) from {} dropped at its stop",
                self.host
            );
        }
        self.pending.borrow_mut().clear();
        log::debug!("stopped listening for datagrams on {}", self.host);
        match (core, self.me.upgrade()) {
            (Some(core), Some(me)) if self.protocol.try_borrow_mut().is_err() => {
                core.defer(move || me.stop_protocol())
            }
            _ => self.stop_protocol(),
        }
    }

    fn stop_protocol(&self) {
        if self.protocol_stopped.replace(true) {
            return;
        }
        let protocol = self.protocol.borrow_mut().take();
        if let Some(mut protocol) = protocol {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| protocol.stop_protocol())) {
                log::error!(
                    "datagram protocol on {} panicked in stop_protocol: {}",
                    self.host,
                    crate::panic_message(&*panic)
                );
            }
            drop_protocol(protocol, self.host);
        }
    }

    /// The reactor is going away: out of the poller, socket closed, the
    /// protocol dropped without a call (it holds a transport, which holds
    /// this port).
    fn discard(&self, poller: &Poller) {
        if let Some(socket) = self.socket.borrow_mut().take() {
            let _ = poller.delete(&socket);
        }
        self.queue.borrow_mut().clear();
        self.pending.borrow_mut().clear();
        self.protocol_stopped.set(true);
        let protocol = self
            .protocol
            .try_borrow_mut()
            .ok()
            .and_then(|mut p| p.take());
        if let Some(protocol) = protocol {
            drop_protocol(protocol, self.host);
        }
    }
}

fn drop_protocol(protocol: Box<dyn DatagramProtocol>, host: SocketAddr) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(move || drop(protocol))) {
        log::error!(
            "datagram protocol on {host} panicked while dropped: {}",
            crate::panic_message(&*panic)
        );
    }
}

/// One `sendto` (or `send`, to the connected peer).
fn send_datagram(socket: &Socket, data: &[u8], to: Option<&SocketAddr>) -> io::Result<()> {
    #[cfg(test)]
    if super::tests::sends_blocked() {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    loop {
        let sent = match to {
            Some(to) => socket.send_to(data, &SockAddr::from(*to)),
            None => socket.send(data),
        };
        match sent {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            sent => return sent.map(drop),
        }
    }
}

impl Source for Port {
    fn ready(self: Rc<Self>, readable: bool, writable: bool) {
        let Some(core) = self.core.upgrade() else {
            return;
        };
        if writable {
            self.send_queued();
        }
        if readable {
            if self.reading_paused.get() {
                // Not asked for: an error the poller reports regardless
                // (an ICMP error on a connected port). Taking it clears it.
                let error = self.with_socket(|socket| socket.take_error());
                if let Ok(Some(err)) = error {
                    self.push_pending(Pending::Error(err));
                }
            } else {
                self.read(&core);
            }
        }
        self.deliver_pending();
    }

    fn shut_down(&self) {
        self.stop_listening();
    }

    fn discard(&self, poller: &Poller) {
        Port::discard(self, poller);
    }

    fn flush(&self) {
        self.in_dirty.set(false);
        self.deliver_pending();
    }
}

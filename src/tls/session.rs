//! One TLS session over a connection: the rustls state, and the transport
//! the wrapped protocol writes through.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::error::Error;
use std::io::{self, BufRead, Write};
use std::rc::{Rc, Weak};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use rustls::Connection;

use super::{Options, StartTls, TlsError, TlsInfo};
use crate::time::{DelayedCall, ReactorTime};
use crate::transport::{SentWaiter, Transport, WriteBufferFull};
use crate::Reactor;

mod upper;

/// Plaintext is encrypted this much at a time, one TLS record's worth, so
/// rustls's own output buffer never holds more than a record: the
/// connection's write buffer (and its watermarks and cap) holds the rest.
const RECORD: usize = 16 * 1024;

/// The first byte of a TLS handshake record, and of an alert: a peer that
/// speaks TLS starts with one of them.
const HANDSHAKE_RECORD: u8 = 0x16;
const ALERT_RECORD: u8 = 0x15;

pub(crate) struct Session {
    me: Weak<Session>,
    /// The connection below: its writes go to the socket as they are.
    raw: Transport,
    tls: RefCell<Connection>,
    st: RefCell<State>,
    /// Highest `bytes_sent` reported, so it never goes back.
    sent_seen: Cell<u64>,
    /// On a client, the server name it asked for.
    server_name: Option<String>,
    /// What `write_with` fills.
    scratch: Cell<BytesMut>,
    /// The protocol `Transport::set_protocol` gave the connection to, until
    /// the layer puts it in place of the protocol inside.
    replacement: RefCell<Option<Box<dyn crate::Protocol>>>,
    /// What `Transport::send_file` copies through this layer, and what is
    /// written behind it: the layer's own, as its writes to the connection
    /// below must not wait there.
    files: crate::producers::ProducerSlot,
}

#[derive(Default)]
struct State {
    /// The handshake completed.
    established: bool,
    /// Plaintext written before the handshake completed, sent right after.
    early: VecDeque<Bytes>,
    early_len: usize,
    /// `flushed` callers from before the handshake completed.
    early_waiters: Vec<SentWaiter>,
    /// `when_writable` callers from while the early writes were over the
    /// high watermark.
    early_writable: Vec<Box<dyn FnOnce()>>,
    /// A close asked for before the handshake completed.
    pending_close: Option<Close>,
    /// `lose_connection` or `write_eof` was called: no more writes.
    closing: bool,
    close_notify_sent: bool,
    /// `lose_connection` (not `write_eof`) sent it: the close is ours.
    full_close: bool,
    /// The protocol closed or failed: no more input for it.
    read_stopped: bool,
    /// What the connection had written before TLS started (STARTTLS), so
    /// the counts go on from there.
    base_written: u64,
    /// The peer's `close_notify` arrived.
    peer_closed: bool,
    /// The protocol paused reading.
    paused: bool,
    /// Ciphertext read from the socket and not yet given to rustls.
    held: Bytes,
    /// Whether rustls was given input yet (to tell a peer that does not
    /// speak TLS from one that fails the handshake).
    fed: bool,
    timeout: Option<DelayedCall>,
    /// Plaintext accepted, and handed to rustls.
    written: u64,
    encrypted: u64,
    warned_write: bool,
    ended: bool,
}

enum Close {
    Lose(Option<Box<dyn Error + Send + Sync>>),
    WriteEof,
}

/// What feeding ciphertext to rustls gave.
pub(crate) enum Fed {
    /// rustls took some; there may be plaintext, a completed handshake or
    /// the peer's `close_notify` to look at.
    Progress,
    /// Nothing held is left to feed.
    Empty,
}

impl Session {
    /// The protocol `set_protocol` asked for, once: the layer puts it in
    /// place of the protocol inside.
    pub(crate) fn take_replacement(&self) -> Option<Box<dyn crate::Protocol>> {
        self.replacement.borrow_mut().take()
    }

    /// Starts a session over `raw`: a client sends its hello now.
    /// The handshake is timed on `clock`, or the thread's reactor.
    pub(crate) fn start(
        raw: Transport,
        side: StartTls,
        clock: Option<Rc<dyn ReactorTime>>,
    ) -> io::Result<Rc<Session>> {
        let server_name = match &side {
            StartTls::Client(_, name) => Some(name.to_str().into_owned()),
            StartTls::Server(_) => None,
        };
        let (tls, options): (Connection, Options) = match side {
            StartTls::Server(acceptor) => (
                rustls::ServerConnection::new(acceptor.config)
                    .map_err(io::Error::other)?
                    .into(),
                acceptor.options,
            ),
            StartTls::Client(connector, name) => (
                rustls::ClientConnection::new(connector.config, name.clone())
                    .map_err(io::Error::other)?
                    .into(),
                connector.options,
            ),
        };
        let session = Rc::new_cyclic(|me| Session {
            me: me.clone(),
            raw,
            tls: RefCell::new(tls),
            st: RefCell::new(State::default()),
            sent_seen: Cell::new(0),
            server_name,
            scratch: Cell::new(BytesMut::new()),
            replacement: RefCell::new(None),
            files: Default::default(),
        });
        // Writes are bounded by the connection's own write buffer: rustls
        // keeps at most one record (see `encrypt`).
        session.tls.borrow_mut().set_buffer_limit(None);
        session.st.borrow_mut().base_written = session.raw.bytes_written();
        session.sent_seen.set(session.raw.bytes_sent());
        session.start_timeout(options.handshake_timeout, clock);
        session.flush_tls();
        Ok(session)
    }

    fn start_timeout(&self, after: std::time::Duration, clock: Option<Rc<dyn ReactorTime>>) {
        if after == std::time::Duration::MAX {
            return;
        }
        let clock = clock.or_else(|| Reactor::current().map(|r| Rc::new(r) as Rc<dyn ReactorTime>));
        let Some(clock) = clock else {
            log::debug!("no reactor on this thread: the TLS handshake is not timed");
            return;
        };
        let me = self.me.clone();
        let timer = clock.call_later(
            after,
            Box::new(move || {
                if let Some(session) = me.upgrade() {
                    let st = session.st.borrow();
                    if !st.established && !st.ended {
                        drop(st);
                        log::debug!("TLS handshake with {} timed out", session.raw.peer());
                        session.raw.abort_with(TlsError::HandshakeTimeout(after));
                    }
                }
            }),
        );
        self.st.borrow_mut().timeout = Some(timer);
    }

    /// The transport the wrapped protocol gets.
    pub(crate) fn transport(&self) -> Transport {
        Transport::new(self.me.upgrade().expect("session alive"))
    }

    pub(crate) fn raw(&self) -> &Transport {
        &self.raw
    }

    /// Moves what rustls has to send into the connection's write buffer.
    fn flush_tls(&self) {
        let mut tls = self.tls.borrow_mut();
        if !tls.wants_write() {
            return;
        }
        let taken = self.raw.write_with(|buf| {
            let mut out = buf.writer();
            while tls.wants_write() {
                if tls.write_tls(&mut out).is_err() {
                    break;
                }
            }
        });
        if taken.is_none() {
            // The connection is closed: what rustls holds goes nowhere.
            while tls.wants_write() && tls.write_tls(&mut io::sink()).is_ok() {}
        }
    }

    /// Encrypts `data` into the connection's write buffer.
    fn encrypt(&self, mut data: &[u8]) {
        self.st.borrow_mut().encrypted += data.len() as u64;
        while !data.is_empty() {
            let n = data.len().min(RECORD);
            {
                let mut tls = self.tls.borrow_mut();
                // Without a buffer limit rustls takes everything.
                let _ = tls.writer().write_all(&data[..n]);
            }
            self.flush_tls();
            data = &data[n..];
        }
    }

    /// Encrypts `head` and `body`, together no longer than a record, into
    /// one record.
    fn encrypt_together(&self, head: &[u8], body: &[u8]) {
        self.st.borrow_mut().encrypted += (head.len() + body.len()) as u64;
        {
            let mut tls = self.tls.borrow_mut();
            let parts = [io::IoSlice::new(head), io::IoSlice::new(body)];
            // Without a buffer limit rustls takes everything.
            let _ = tls.writer().write_vectored(&parts);
        }
        self.flush_tls();
    }

    /// Queues ciphertext read from the socket.
    pub(crate) fn push_input(&self, data: Bytes) {
        let mut st = self.st.borrow_mut();
        if st.held.is_empty() {
            st.held = data;
        } else {
            let mut joined = BytesMut::with_capacity(st.held.len() + data.len());
            joined.extend_from_slice(&st.held);
            joined.extend_from_slice(&data);
            st.held = joined.freeze();
        }
    }

    /// Whether the wrapped protocol may be given plaintext now.
    pub(crate) fn may_deliver(&self) -> bool {
        let st = self.st.borrow();
        !st.paused && !st.ended && !st.read_stopped && !self.raw.is_closing()
    }

    /// Whether more ciphertext should be fed to rustls now: not once the
    /// protocol closed, nor while it is paused and the plaintext would
    /// wait in rustls's buffer (the handshake goes on regardless).
    fn may_feed(&self) -> bool {
        let st = self.st.borrow();
        // A close asked for before the handshake completed waits for it.
        !st.ended && !self.raw.is_closing() && (!st.established || !st.paused && !st.read_stopped)
    }

    /// Gives rustls some of the held ciphertext and processes it.
    pub(crate) fn feed(&self) -> Result<Fed, TlsError> {
        if !self.may_feed() {
            return Ok(Fed::Empty);
        }
        let mut held = std::mem::take(&mut self.st.borrow_mut().held);
        if held.is_empty() {
            return Ok(Fed::Empty);
        }
        let (established, not_tls) = {
            let mut st = self.st.borrow_mut();
            let first = !std::mem::replace(&mut st.fed, true);
            (
                st.established,
                first && held[0] != HANDSHAKE_RECORD && held[0] != ALERT_RECORD,
            )
        };
        let consumed;
        let result = {
            let mut tls = self.tls.borrow_mut();
            let mut reader = &held[..];
            let read = tls.read_tls(&mut reader);
            consumed = held.len() - reader.len();
            held.advance(consumed);
            match read {
                // The peer's close_notify came: what follows is ignored.
                Ok(0) => {
                    held.clear();
                    Ok(true)
                }
                Ok(_) => tls
                    .process_new_packets()
                    .map(|state| state.peer_has_closed()),
                // rustls's received-plaintext buffer is full: it is
                // drained before more is fed, so the protocol paused.
                Err(_) if !tls.wants_read() && !tls.is_handshaking() && consumed == 0 => Ok(false),
                // A record larger than TLS allows.
                Err(err) => Err(rustls::Error::General(err.to_string())),
            }
        };
        self.st.borrow_mut().held = held;
        self.flush_tls();
        match result {
            Ok(peer_closed) => {
                if peer_closed {
                    self.st.borrow_mut().peer_closed = true;
                }
                Ok(if consumed > 0 || peer_closed {
                    Fed::Progress
                } else {
                    Fed::Empty
                })
            }
            Err(_) if not_tls => Err(TlsError::NotTls),
            Err(err) if established => Err(TlsError::Protocol(err)),
            Err(err) => Err(TlsError::Handshake(err)),
        }
    }

    /// Whether the handshake just completed (once).
    pub(crate) fn take_established(&self) -> bool {
        let handshaking = self.tls.borrow().is_handshaking();
        let mut st = self.st.borrow_mut();
        if st.established || handshaking || st.ended {
            return false;
        }
        st.established = true;
        if let Some(timer) = st.timeout.take() {
            let _ = timer.cancel();
        }
        let early: Vec<Bytes> = st.early.drain(..).collect();
        st.early_len = 0;
        let waiters = std::mem::take(&mut st.early_waiters);
        let writable = std::mem::take(&mut st.early_writable);
        let pending_close = st.pending_close.take();
        let paused = st.paused;
        drop(st);
        for data in early {
            self.encrypt(&data);
        }
        for waiter in waiters {
            self.raw.when_sent(waiter);
        }
        for waiter in writable {
            self.raw.when_writable(waiter);
        }
        if paused {
            self.raw.pause_reading();
        }
        match pending_close {
            Some(Close::Lose(error)) => self.close(error),
            Some(Close::WriteEof) => self.half_close(),
            None => {}
        }
        true
    }

    /// The plaintext rustls has decrypted, if any.
    pub(crate) fn take_plaintext(&self) -> Option<Bytes> {
        let mut tls = self.tls.borrow_mut();
        let mut reader = tls.reader();
        // rustls holds one chunk per record: usually one, copied once into
        // an allocation of its exact size.
        let mut out = match reader.fill_buf() {
            Ok(first) if !first.is_empty() => BytesMut::from(first),
            _ => return None,
        };
        reader.consume(out.len());
        while let Ok(chunk) = reader.fill_buf() {
            if chunk.is_empty() {
                break;
            }
            let n = chunk.len();
            out.extend_from_slice(chunk);
            reader.consume(n);
        }
        Some(out.freeze())
    }

    /// Whether the peer's `close_notify` came and has not been reported.
    pub(crate) fn peer_closed(&self) -> bool {
        self.st.borrow().peer_closed
    }

    pub(crate) fn established(&self) -> bool {
        self.st.borrow().established
    }

    /// How a connection that closed cleanly below TLS was cut short, if
    /// it was: neither side sent `close_notify`.
    pub(crate) fn cut_short(&self) -> Option<TlsError> {
        let st = self.st.borrow();
        if st.peer_closed || st.full_close {
            None
        } else if st.established {
            Some(TlsError::Truncated)
        } else {
            Some(TlsError::ClosedDuringHandshake)
        }
    }

    /// Fails the connection: rustls's alert goes first.
    pub(crate) fn fail(&self, error: TlsError) {
        log::debug!("TLS with {}: {error}", self.raw.peer());
        let mut st = self.st.borrow_mut();
        st.closing = true;
        st.read_stopped = true;
        st.held.clear();
        drop(st);
        self.flush_tls();
        self.raw.fail(error);
    }

    /// Sends `close_notify` (once) and closes the connection once it is
    /// sent.
    fn close(&self, error: Option<Box<dyn Error + Send + Sync>>) {
        self.st.borrow_mut().full_close = true;
        self.send_close_notify();
        lose(&self.raw, error);
    }

    fn half_close(&self) {
        self.send_close_notify();
        self.raw.write_eof();
    }

    fn send_close_notify(&self) {
        if std::mem::replace(&mut self.st.borrow_mut().close_notify_sent, true) {
            return;
        }
        self.tls.borrow_mut().send_close_notify();
        self.flush_tls();
    }

    /// The connection ended: nothing more will be sent.
    pub(crate) fn end(&self) {
        let mut st = self.st.borrow_mut();
        st.ended = true;
        st.held.clear();
        st.early.clear();
        st.early_len = 0;
        if let Some(timer) = st.timeout.take() {
            let _ = timer.cancel();
        }
        let waiters = std::mem::take(&mut st.early_waiters);
        let writable = std::mem::take(&mut st.early_writable);
        drop(st);
        self.files.connection_lost();
        for waiter in waiters {
            waiter(false);
        }
        for waiter in writable {
            waiter();
        }
    }

    pub(crate) fn info(&self) -> TlsInfo {
        let tls = self.tls.borrow();
        let server_name = match &*tls {
            Connection::Server(server) => server.server_name().map(str::to_owned),
            Connection::Client(_) => self.server_name.clone(),
        };
        TlsInfo {
            handshake_complete: !tls.is_handshaking(),
            protocol_version: tls.protocol_version(),
            cipher_suite: tls.negotiated_cipher_suite(),
            alpn_protocol: tls.alpn_protocol().map(<[u8]>::to_vec),
            server_name,
            peer_certificates: tls
                .peer_certificates()
                .map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default(),
        }
    }

    /// Whether a write must be dropped; warns once.
    fn refuse_write(&self) -> bool {
        let mut st = self.st.borrow_mut();
        if !st.closing && !st.ended && !self.raw.is_closing() {
            return false;
        }
        if !std::mem::replace(&mut st.warned_write, true) {
            log::warn!(
                "dropped a write to {}: the TLS connection is closed or its writing side was shut down",
                self.raw.peer()
            );
        }
        true
    }

    /// Takes plaintext from the protocol; `owned` is `data` as `Bytes`
    /// when it has one, kept uncopied if it must wait for the handshake.
    fn accept(&self, data: &[u8], owned: Option<&Bytes>) {
        if self.refuse_write() {
            return;
        }
        let mut st = self.st.borrow_mut();
        st.written += data.len() as u64;
        if st.established {
            drop(st);
            self.encrypt(data);
            return;
        }
        st.early_len += data.len();
        st.early
            .push_back(owned.map_or_else(|| Bytes::copy_from_slice(data), Bytes::clone));
        let buffered = st.early_len + self.raw.write_buffer_size();
        drop(st);
        let max = self.raw.write_buffer_max();
        if buffered > max {
            log::warn!(
                "aborting the TLS connection with {}: {} bytes written before the handshake completed",
                self.raw.peer(),
                buffered
            );
            self.raw.abort_with(WriteBufferFull { limit: max });
        }
    }
}

/// Fired at the layer by `set_reading(true)`: deliver what waits.
pub(crate) struct ResumeInput;

/// Fired at the layer by `set_protocol`: put the replacement in place, if
/// no callback of the protocol inside did already.
pub(crate) struct ReplaceProtocol;

fn lose(raw: &Transport, error: Option<Box<dyn Error + Send + Sync>>) {
    match error {
        Some(error) => raw.fail(error),
        None => raw.lose_connection(),
    }
}

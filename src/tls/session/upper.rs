//! The transport the wrapped protocol writes through: each call checked
//! against the session's state, then passed to rustls or to the
//! connection below.

use crate::net::Address;
use std::error::Error;
use std::io;

use bytes::{Bytes, BytesMut};

use super::{lose, Close, ReplaceProtocol, ResumeInput, Session, RECORD};
use crate::event::Event;
use crate::tls::TlsInfo;
use crate::transport::{Interposer, SentWaiter, Transport, TransportImpl};

impl TransportImpl for Session {
    fn write(&self, data: Bytes) {
        self.accept(&data, Some(&data));
    }

    fn write_with(&self, fill: &mut dyn FnMut(&mut BytesMut) -> Option<Bytes>) -> bool {
        if self.refuse_write() {
            return false;
        }
        // One buffer for every call, emptied after each: an encoder's
        // output is encrypted from it, so it needs no allocation of its
        // own. (A call from inside `fill` finds it taken and uses a new
        // one.)
        let mut buf = self.scratch.take();
        let body = fill(&mut buf).filter(|b| !b.is_empty());
        let established = self.st.borrow().established;
        match body {
            // A header and its body, sealed together: one record.
            Some(body) if established && buf.len() + body.len() <= RECORD => {
                self.st.borrow_mut().written += (buf.len() + body.len()) as u64;
                self.encrypt_together(&buf, &body);
            }
            body => {
                if !buf.is_empty() {
                    self.accept(&buf, None);
                }
                if let Some(body) = body {
                    self.accept(&body, Some(&body));
                }
            }
        }
        buf.clear();
        self.scratch.set(buf);
        true
    }

    fn lose_connection(&self, error: Option<Box<dyn Error + Send + Sync>>) {
        let mut st = self.st.borrow_mut();
        if st.ended || st.closing && st.pending_close.is_none() && st.close_notify_sent {
            drop(st);
            // A second close, or one after `write_eof`: the connection
            // below decides, as it would without TLS.
            lose(&self.raw, error);
            return;
        }
        st.closing = true;
        st.read_stopped = true;
        if !st.established {
            st.pending_close = Some(Close::Lose(error));
            return;
        }
        drop(st);
        self.close(error);
    }

    fn abort_connection(&self) {
        self.raw.abort_connection();
    }

    fn abort_with(&self, error: Box<dyn Error + Send + Sync>) {
        self.raw.abort_with(error);
    }

    fn write_eof(&self) {
        let mut st = self.st.borrow_mut();
        if st.closing || st.ended {
            return;
        }
        st.closing = true;
        if !st.established {
            st.pending_close = Some(Close::WriteEof);
            return;
        }
        drop(st);
        self.half_close();
    }

    fn set_reading(&self, on: bool) {
        let mut st = self.st.borrow_mut();
        st.paused = !on;
        let established = st.established;
        drop(st);
        if on {
            // Always: reading may have been paused on the connection
            // before TLS started.
            self.raw.resume_reading();
            if !established {
                return;
            }
            // Plaintext or ciphertext may be waiting with the socket
            // quiet: the layer delivers it once this caller returns.
            self.raw.fire_event(Event::new(ResumeInput));
        } else if established {
            // The handshake reads regardless; the pause starts after it.
            self.raw.pause_reading();
        }
    }

    fn peer(&self) -> Address {
        self.raw.peer()
    }

    fn host(&self) -> Address {
        self.raw.host()
    }

    fn peer_credentials(&self) -> Option<crate::net::PeerCredentials> {
        self.raw.peer_credentials()
    }

    fn set_tcp_nodelay(&self, on: bool) -> io::Result<()> {
        self.raw.set_tcp_nodelay(on)
    }

    fn tcp_nodelay(&self) -> io::Result<bool> {
        self.raw.tcp_nodelay()
    }

    fn set_tcp_keepalive(&self, on: bool) -> io::Result<()> {
        self.raw.set_tcp_keepalive(on)
    }

    fn tcp_keepalive(&self) -> io::Result<bool> {
        self.raw.tcp_keepalive()
    }

    fn write_buffer_size(&self) -> usize {
        self.raw.write_buffer_size() + self.st.borrow().early_len
    }

    fn bytes_written(&self) -> u64 {
        let st = self.st.borrow();
        st.base_written + st.written
    }

    fn bytes_sent(&self) -> u64 {
        // Plaintext whose records are all with the kernel, counting each
        // byte buffered below as one plaintext byte not sent.
        let st = self.st.borrow();
        let handed_down = st.base_written + st.encrypted;
        drop(st);
        let sent = handed_down.saturating_sub(self.raw.write_buffer_size() as u64);
        let sent = sent.max(self.sent_seen.get()).min(handed_down);
        self.sent_seen.set(sent);
        sent
    }

    fn set_write_buffer_limits(&self, high: usize, low: usize) {
        self.raw.set_write_buffer_limits(high, low);
    }

    fn set_write_buffer_max(&self, max: usize) {
        self.raw.set_write_buffer_max(max);
    }

    fn write_buffer_max(&self) -> usize {
        self.raw.write_buffer_max()
    }

    fn write_buffer_limits(&self) -> (usize, usize) {
        self.raw.write_buffer_limits()
    }

    fn producer_slot(&self) -> Option<&crate::producers::ProducerSlot> {
        // The connection below keeps it: its watermarks are the ones that
        // count, and it stops the producer when it ends.
        self.raw.inner().producer_slot()
    }

    fn send_file_slot(&self) -> Option<&crate::producers::ProducerSlot> {
        Some(&self.files)
    }

    fn is_writable(&self) -> bool {
        let st = self.st.borrow();
        !st.closing
            && !st.ended
            && st.early_len <= self.raw.write_buffer_limits().0
            && self.raw.is_writable()
    }

    fn when_writable(&self, f: Box<dyn FnOnce()>) {
        let mut st = self.st.borrow_mut();
        if !st.established && !st.ended && st.early_len > self.raw.write_buffer_limits().0 {
            // Not writable because of what waits for the handshake: the
            // connection below would run `f` at once.
            st.early_writable.push(f);
            return;
        }
        drop(st);
        self.raw.when_writable(f);
    }

    fn set_flow_control(&self, on: bool) {
        self.raw.set_flow_control(on);
    }

    fn flow_control(&self) -> bool {
        self.raw.flow_control()
    }

    fn is_closing(&self) -> bool {
        let st = self.st.borrow();
        st.closing || st.ended || self.raw.is_closing()
    }

    fn when_sent(&self, f: SentWaiter) {
        let mut st = self.st.borrow_mut();
        if st.ended {
            drop(st);
            f(false);
        } else if !st.established && st.early_len > 0 {
            st.early_waiters.push(f);
        } else {
            drop(st);
            self.raw.when_sent(f);
        }
    }

    fn fire_event(&self, event: Event) {
        self.raw.fire_event(event);
    }

    fn tls(&self) -> Option<TlsInfo> {
        Some(self.info())
    }

    fn set_protocol(&self, protocol: Box<dyn crate::Protocol>) -> io::Result<()> {
        if self.is_closing() {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the connection is closing",
            ));
        }
        let earlier = self.replacement.borrow_mut().replace(protocol);
        // Dropped outside the borrow: its code may run.
        drop(earlier);
        // If no callback of the protocol inside is running, the layer
        // takes the replacement when this event reaches it.
        self.raw.fire_event(Event::new(ReplaceProtocol));
        Ok(())
    }

    fn interpose(
        &self,
        _make: Box<dyn FnOnce(Transport) -> io::Result<Interposer> + '_>,
    ) -> io::Result<()> {
        // A connection made with `listen_tls` or `connect_tls`: its
        // protocol's transport is this layer, not the connection.
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the connection already runs TLS",
        ))
    }
}

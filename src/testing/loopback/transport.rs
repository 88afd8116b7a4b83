//! The loopback's transports: each side's own, which every handle
//! reaches (and which passes calls to a TLS layer once there is one), and
//! the side below any layer, which the layer writes through.

use crate::net::Address;
use std::error::Error;
use std::io;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use super::{End, Raw};
use crate::event::Event;
use crate::protocol::{Protocol, Reason};
use crate::transport::{Interposer, SentWaiter, Transport, TransportImpl};

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
    fn send_file_slot(&self) -> Option<&crate::producers::ProducerSlot> {
        Some(&self.files)
    }
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
    fn peer(&self) -> Address {
        self.peer.clone()
    }
    fn host(&self) -> Address {
        self.host.clone()
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
    fn set_protocol(&self, protocol: Box<dyn Protocol>) -> io::Result<()> {
        if let Some(upper) = self.layer.upper() {
            return upper.set_protocol(protocol);
        }
        if self.refuses_writes() {
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
    fn peer(&self) -> Address {
        self.peer.clone()
    }
    fn host(&self) -> Address {
        self.host.clone()
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
pub(super) mod raw_impl {
    use super::*;

    pub(in crate::testing::loopback) fn write(end: &End, data: Bytes) {
        end.queue(&data);
    }

    pub(in crate::testing::loopback) fn write_with(
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

    pub(in crate::testing::loopback) fn lose_connection(
        end: &End,
        error: Option<Box<dyn Error + Send + Sync>>,
    ) {
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

    pub(in crate::testing::loopback) fn abort_with_reason(end: &End, reason: Reason) {
        if end.lost.get() {
            return;
        }
        end.out.borrow_mut().clear();
        end.aborting.borrow_mut().get_or_insert(reason);
    }

    pub(in crate::testing::loopback) fn write_eof(end: &End) {
        if !end.is_closing() {
            end.eof_requested.set(true);
        }
    }

    pub(in crate::testing::loopback) fn set_reading(end: &End, on: bool) {
        end.reading_paused.set(!on);
    }

    pub(in crate::testing::loopback) fn write_buffer_size(end: &End) -> usize {
        end.out.borrow().len()
    }

    pub(in crate::testing::loopback) fn bytes_written(end: &End) -> u64 {
        end.written.get()
    }

    pub(in crate::testing::loopback) fn bytes_sent(end: &End) -> u64 {
        end.sent.get()
    }

    pub(in crate::testing::loopback) fn is_writable(end: &End) -> bool {
        !end.writing_paused.get()
            && end.out.borrow().len() <= end.limits.get().0
            && !end.is_closing()
    }

    pub(in crate::testing::loopback) fn is_closing(end: &End) -> bool {
        end.is_closing()
    }

    pub(in crate::testing::loopback) fn when_writable(end: &End, f: Box<dyn FnOnce()>) {
        if is_writable(end) || end.lost.get() {
            f();
        } else {
            end.writable_waiters.borrow_mut().push(f);
        }
    }

    pub(in crate::testing::loopback) fn when_sent(end: &End, f: SentWaiter) {
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

//! [`Counted`]: a protocol that holds a place in a connection limit.

use std::fmt;

use twill::{Bytes, BytesMut, Protocol, Reason, Transport};

/// The protocol a connection-limiting factory
/// ([`LimitConnectionsByPeer`](super::LimitConnectionsByPeer),
/// [`LimitTotalConnections`](super::LimitTotalConnections)) builds: the
/// inner factory's protocol, holding its connection's place in the count.
///
/// Every event is passed on. The place is given back at `connection_lost`
/// (before the inner protocol hears of it, as Twisted's `ProtocolWrapper`
/// unregisters first), or when the protocol is dropped without one.
pub struct Counted<P> {
    inner: P,
    release: Option<Box<dyn FnOnce()>>,
}

impl<P: Protocol> Counted<P> {
    pub(crate) fn new(inner: P, release: impl FnOnce() + 'static) -> Self {
        Counted {
            inner,
            release: Some(Box::new(release)),
        }
    }

    /// The wrapped protocol.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// The wrapped protocol, mutably.
    pub fn inner_mut(&mut self) -> &mut P {
        &mut self.inner
    }

    /// Whether this connection still holds its place.
    pub fn is_counted(&self) -> bool {
        self.release.is_some()
    }

    fn release(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

impl<P: Protocol> Protocol for Counted<P> {
    fn connection_made(&mut self, transport: &Transport) {
        self.inner.connection_made(transport);
    }

    fn data_received(&mut self, data: Bytes) {
        self.inner.data_received(data);
    }

    fn get_buffer(&mut self) -> Option<&mut BytesMut> {
        self.inner.get_buffer()
    }

    fn buffer_updated(&mut self, appended: usize) {
        self.inner.buffer_updated(appended);
    }

    fn eof_received(&mut self) -> bool {
        self.inner.eof_received()
    }

    fn connection_lost(&mut self, reason: &Reason) {
        self.release();
        self.inner.connection_lost(reason);
    }

    fn pause_writing(&mut self) {
        self.inner.pause_writing();
    }

    fn resume_writing(&mut self) {
        self.inner.resume_writing();
    }

    fn write_complete(&mut self) {
        self.inner.write_complete();
    }

    fn event_received(&mut self, event: twill::Event) {
        self.inner.event_received(event);
    }
}

impl<P> Drop for Counted<P> {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

impl<P> fmt::Debug for Counted<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Counted")
            .field("counted", &self.release.is_some())
            .finish_non_exhaustive()
    }
}

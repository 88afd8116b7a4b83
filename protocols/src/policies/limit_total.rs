//! [`LimitTotalConnections`]: at most so many connections at once.

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;
use twill::Address;

use twill::Factory;

use super::counted::Counted;
use crate::factory_wrapper::{forward_client_factory, Refusals};

/// Wraps any factory and refuses connections while `limit` are open:
/// Twisted's `LimitTotalConnectionsFactory`.
///
/// A connection holds its place from `build_protocol` until its
/// `connection_lost` (see [`Counted`]). Over the limit the connection is
/// closed as soon as it is accepted (`build_protocol` returns `None`; the
/// inner factory is not asked) and logged at info. Twisted's
/// `overflowProtocol` (serving the excess with another protocol, e.g. to
/// say "busy") is not offered: the factory's protocol type is fixed; wrap
/// an inner factory that decides for itself instead.
///
/// # Examples
///
/// ```
/// use twill::{Address, Bytes, Factory, Protocol, Reason};
/// use twill_protocols::policies::LimitTotalConnections;
///
/// struct Discard;
/// impl Protocol for Discard {
///     fn data_received(&mut self, _: Bytes) {}
/// }
///
/// let peer: Address = "192.0.2.1:1000".parse()?;
/// let mut factory = LimitTotalConnections::new(|_peer: Address| Discard, 2);
/// let mut first = factory.build_protocol(peer.clone()).unwrap();
/// let _second = factory.build_protocol(peer.clone()).unwrap();
/// assert!(factory.build_protocol(peer.clone()).is_none());
/// first.connection_lost(&Reason::Done);
/// assert_eq!(factory.connection_count(), 1);
/// assert!(factory.build_protocol(peer).is_some());
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct LimitTotalConnections<F> {
    inner: F,
    limit: usize,
    open: Rc<Cell<usize>>,
    refused: Refusals,
}

impl<F: Factory> LimitTotalConnections<F> {
    /// Wraps `factory`, allowing `limit` connections at once.
    pub fn new(factory: F, limit: usize) -> Self {
        LimitTotalConnections {
            inner: factory,
            limit,
            open: Rc::new(Cell::new(0)),
            refused: Refusals::default(),
        }
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// How many connections are open (Twisted's `connectionCount`).
    pub fn connection_count(&self) -> usize {
        self.open.get()
    }

    /// How many connections were refused.
    pub fn refused(&self) -> u64 {
        self.refused.count()
    }

    /// The wrapped factory.
    pub fn inner(&self) -> &F {
        &self.inner
    }

    /// The wrapped factory, mutably.
    pub fn inner_mut(&mut self) -> &mut F {
        &mut self.inner
    }
}

impl<F: Factory> Factory for LimitTotalConnections<F> {
    type Protocol = Counted<F::Protocol>;

    fn build_protocol(&mut self, peer: Address) -> Option<Self::Protocol> {
        let open = self.open.get();
        if open >= self.limit {
            return self
                .refused
                .refuse(peer, format_args!("{open} connections already open"));
        }
        let protocol = self.inner.build_protocol(peer)?;
        self.open.set(self.open.get() + 1);
        let open = self.open.clone();
        Some(Counted::new(protocol, move || open.set(open.get() - 1)))
    }

    fn start_factory(&mut self) {
        self.inner.start_factory();
    }

    fn stop_factory(&mut self) {
        self.inner.stop_factory();
    }
}

forward_client_factory!(LimitTotalConnections);

impl<F> fmt::Debug for LimitTotalConnections<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimitTotalConnections")
            .field("limit", &self.limit)
            .field("open", &self.open.get())
            .field("refused", &self.refused.count())
            .finish_non_exhaustive()
    }
}

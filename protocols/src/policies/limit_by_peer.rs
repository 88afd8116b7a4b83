//! [`LimitConnectionsByPeer`]: at most so many connections per peer
//! address.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use std::rc::Rc;
use twill::Address;

use twill::Factory;

use super::counted::Counted;
use crate::factory_wrapper::{forward_client_factory, Refusals};

/// Wraps any factory and refuses a connection when its peer's IP address
/// already has [`max_per_peer`](Self::max_per_peer) open (5 by default):
/// Twisted's `LimitConnectionsByPeer`, Netty's `UniqueIpFilter` with a
/// limit of one.
///
/// Connections are counted by IP address, whatever the port; an
/// IPv4-mapped IPv6 peer counts as its IPv4 address. A connection holds
/// its place from `build_protocol` until its `connection_lost` (see
/// [`Counted`]). A refused connection is closed as soon as it is accepted
/// (`build_protocol` returns `None`; the inner factory is not asked) and
/// logged at info.
///
/// # Examples
///
/// ```
/// use twill::Address;
/// use twill::{Bytes, Factory, Protocol, Reason};
/// use twill_protocols::policies::LimitConnectionsByPeer;
///
/// struct Discard;
/// impl Protocol for Discard {
///     fn data_received(&mut self, _: Bytes) {}
/// }
///
/// let mut factory = LimitConnectionsByPeer::new(|_peer: Address| Discard).max_per_peer(2);
/// let peer = |port| Address::from(std::net::SocketAddr::from(([192, 0, 2, 1], port)));
/// let mut first = factory.build_protocol(peer(1000)).unwrap();
/// let _second = factory.build_protocol(peer(1001)).unwrap();
/// assert!(factory.build_protocol(peer(1002)).is_none());
/// assert!(factory.build_protocol("192.0.2.2:1000".parse()?).is_some());
///
/// first.connection_lost(&Reason::Done);
/// assert_eq!(factory.connections_from(peer(0).ip().unwrap()), 1);
/// assert!(factory.build_protocol(peer(1003)).is_some());
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct LimitConnectionsByPeer<F> {
    inner: F,
    max_per_peer: usize,
    open: Rc<RefCell<HashMap<IpAddr, usize>>>,
    refused: Refusals,
}

/// The address a peer is counted under.
fn key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

impl<F: Factory> LimitConnectionsByPeer<F> {
    /// Twisted's `maxConnectionsPerPeer`.
    pub const DEFAULT_MAX_PER_PEER: usize = 5;

    /// Wraps `factory`, allowing [`DEFAULT_MAX_PER_PEER`](Self::DEFAULT_MAX_PER_PEER)
    /// connections per peer address.
    pub fn new(factory: F) -> Self {
        LimitConnectionsByPeer {
            inner: factory,
            max_per_peer: Self::DEFAULT_MAX_PER_PEER,
            open: Rc::new(RefCell::new(HashMap::new())),
            refused: Refusals::default(),
        }
    }

    /// Allows `max` open connections per peer address.
    pub fn max_per_peer(mut self, max: usize) -> Self {
        self.max_per_peer = max;
        self
    }

    /// How many connections from `address` are open.
    pub fn connections_from(&self, address: IpAddr) -> usize {
        self.open.borrow().get(&key(address)).copied().unwrap_or(0)
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

impl<F: Factory> Factory for LimitConnectionsByPeer<F> {
    type Protocol = Counted<F::Protocol>;

    fn build_protocol(&mut self, peer: Address) -> Option<Self::Protocol> {
        let Some(ip) = peer.ip() else {
            // A Unix socket's peers are local processes with no address to
            // count by: they pass, and only a total limit holds them.
            return self
                .inner
                .build_protocol(peer)
                .map(|protocol| Counted::new(protocol, || {}));
        };
        let address = key(ip);
        let open = self.connections_from(address);
        if open >= self.max_per_peer {
            return self.refused.refuse(
                peer.clone(),
                format_args!("{open} already open from {address}"),
            );
        }
        let protocol = self.inner.build_protocol(peer)?;
        *self.open.borrow_mut().entry(address).or_insert(0) += 1;
        let weak = Rc::downgrade(&self.open);
        Some(Counted::new(protocol, move || {
            let Some(open) = weak.upgrade() else { return };
            let mut open = open.borrow_mut();
            if let Some(count) = open.get_mut(&address) {
                *count -= 1;
                if *count == 0 {
                    open.remove(&address);
                }
            }
        }))
    }

    fn start_factory(&mut self) {
        self.inner.start_factory();
    }

    fn stop_factory(&mut self) {
        self.inner.stop_factory();
    }
}

forward_client_factory!(LimitConnectionsByPeer);

impl<F> fmt::Debug for LimitConnectionsByPeer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimitConnectionsByPeer")
            .field("max_per_peer", &self.max_per_peer)
            .field("open", &self.open.borrow())
            .field("refused", &self.refused.count())
            .finish_non_exhaustive()
    }
}

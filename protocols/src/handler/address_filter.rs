//! [`AddressFilter`]: accepts or refuses connections by the peer's address.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use twill::Factory;

use super::cidr::Cidr;
use crate::factory_wrapper::{forward_client_factory, Refusals};

/// What an [`AddressFilter`] rule does with a matching peer: Netty's
/// `IpFilterRuleType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FilterAction {
    /// Serve the connection.
    Accept,
    /// Refuse it: the socket is closed at once.
    Reject,
}

/// Wraps any factory and refuses connections by the peer's IP address:
/// Netty's `RuleBasedIpFilter` / `IpSubnetFilter` as a factory.
///
/// Rules are subnets ([`Cidr`], IPv4 or IPv6) with an action, checked in
/// the order they were added; the first whose subnet contains the peer
/// decides. A peer no rule matches gets [`if_no_match`](Self::if_no_match)
/// ([`FilterAction::Accept`] unless set). An allow-list is `allow`s then
/// `if_no_match(Reject)`; a deny-list is `deny`s; exceptions go before the
/// broader rule (`allow(10.0.0.5)` then `deny(10.0.0.0/8)`).
///
/// A refused peer's connection is closed as soon as it is accepted
/// ([`build_protocol`](Factory::build_protocol) returns `None`, and the
/// inner factory is not asked), and logged at info. Unlike Netty's
/// `channelRejected`, nothing can be written to it first.
///
/// # Examples
///
/// ```
/// use std::net::SocketAddr;
/// use twill::{Bytes, Factory, Protocol};
/// use twill_protocols::handler::{AddressFilter, FilterAction};
///
/// struct Discard;
/// impl Protocol for Discard {
///     fn data_received(&mut self, _: Bytes) {}
/// }
///
/// let mut factory = AddressFilter::new(|_peer: SocketAddr| Discard)
///     .deny("10.0.0.66".parse()?)
///     .allow("10.0.0.0/8".parse()?)
///     .allow("fd00::/8".parse()?)
///     .if_no_match(FilterAction::Reject);
///
/// assert!(factory.build_protocol("10.1.2.3:4000".parse()?).is_some());
/// assert!(factory.build_protocol("[fd12::1]:4000".parse()?).is_some());
/// assert!(factory.build_protocol("10.0.0.66:4000".parse()?).is_none());
/// assert!(factory.build_protocol("192.0.2.1:4000".parse()?).is_none());
/// assert_eq!(factory.refused(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct AddressFilter<F> {
    inner: F,
    rules: Vec<(Cidr, FilterAction)>,
    if_no_match: FilterAction,
    refused: Refusals,
}

impl<F: Factory> AddressFilter<F> {
    /// Wraps `factory` with no rules: every peer is accepted until rules
    /// are added.
    pub fn new(factory: F) -> Self {
        AddressFilter {
            inner: factory,
            rules: Vec::new(),
            if_no_match: FilterAction::Accept,
            refused: Refusals::default(),
        }
    }

    /// Adds a rule accepting peers in `subnet`.
    pub fn allow(self, subnet: Cidr) -> Self {
        self.rule(subnet, FilterAction::Accept)
    }

    /// Adds a rule refusing peers in `subnet`.
    pub fn deny(self, subnet: Cidr) -> Self {
        self.rule(subnet, FilterAction::Reject)
    }

    /// Adds a rule: peers in `subnet` get `action` (unless an earlier rule
    /// matched them).
    pub fn rule(mut self, subnet: Cidr, action: FilterAction) -> Self {
        self.rules.push((subnet, action));
        self
    }

    /// What happens to peers no rule matches (default
    /// [`FilterAction::Accept`], as Netty's `acceptIfNotFound`).
    pub fn if_no_match(mut self, action: FilterAction) -> Self {
        self.if_no_match = action;
        self
    }

    /// What the rules decide for `address`.
    pub fn decide(&self, address: IpAddr) -> FilterAction {
        self.rules
            .iter()
            .find(|(subnet, _)| subnet.contains(address))
            .map_or(self.if_no_match, |&(_, action)| action)
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

impl<F: Factory> Factory for AddressFilter<F> {
    type Protocol = F::Protocol;

    fn build_protocol(&mut self, peer: SocketAddr) -> Option<F::Protocol> {
        match self.decide(peer.ip()) {
            FilterAction::Accept => self.inner.build_protocol(peer),
            FilterAction::Reject => self
                .refused
                .refuse(peer, format_args!("its address is filtered out")),
        }
    }

    fn start_factory(&mut self) {
        self.inner.start_factory();
    }

    fn stop_factory(&mut self) {
        self.inner.stop_factory();
    }
}

forward_client_factory!(AddressFilter);

impl<F> fmt::Debug for AddressFilter<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddressFilter")
            .field("rules", &self.rules)
            .field("if_no_match", &self.if_no_match)
            .field("refused", &self.refused.count())
            .finish_non_exhaustive()
    }
}

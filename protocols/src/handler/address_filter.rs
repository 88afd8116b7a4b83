//! [`AddressFilter`]: accepts or refuses connections by the peer's address,
//! optionally telling the server of each and saying goodbye to the refused.

use std::cell::RefCell;
use std::fmt;
use std::net::IpAddr;

use std::rc::Rc;
use std::time::Duration;
use twill::Address;

use twill::{
    Bytes, BytesMut, DelayedCall, Event, Factory, Protocol, ReactorTime, Reason, Transport,
};

use super::cidr::Cidr;
use super::output::time_or_reactor;
use crate::factory_wrapper::{forward_client_factory, Refusals};

/// What an [`AddressFilter`] rule does with a matching peer: Netty's
/// `IpFilterRuleType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FilterAction {
    /// Serve the connection.
    Accept,
    /// Refuse it: the socket is closed at once, or after the goodbye of
    /// the filter's [`on_rejected`](AddressFilter::on_rejected) hook.
    Reject,
}

/// How long a goodbye may take to leave before a rejected connection is
/// aborted, unless [`AddressFilter::goodbye_timeout`] says otherwise.
const DEFAULT_GOODBYE_TIMEOUT: Duration = Duration::from_secs(5);

type AcceptedHook = Box<dyn FnMut(Address)>;

/// Shared by the filter and every [`Goodbye`] it builds.
type RejectedHook = Rc<RefCell<dyn FnMut(&Transport, Address)>>;

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
/// inner factory is not asked), and logged at info. With an
/// [`on_rejected`](Self::on_rejected) hook it gets a small protocol of the
/// filter's own instead, a [`Goodbye`], whose hook may write to it before
/// it is closed. An [`on_accepted`](Self::on_accepted) hook is told of
/// every peer the rules let through. These are Netty's
/// `AbstractRemoteAddressFilter.channelAccepted` and `channelRejected`.
///
/// The factory's protocol is a [`Filtered`]: the inner factory's protocol
/// for an accepted peer, a `Goodbye` for a rejected one.
///
/// # Examples
///
/// ```
/// use twill::Address;
/// use twill::{Bytes, Factory, Protocol};
/// use twill_protocols::handler::{AddressFilter, FilterAction};
///
/// struct Discard;
/// impl Protocol for Discard {
///     fn data_received(&mut self, _: Bytes) {}
/// }
///
/// let mut factory = AddressFilter::new(|_peer: Address| Discard)
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
///
/// Saying why, and keeping track of who came in:
///
/// ```
/// use std::cell::RefCell;
/// use twill::Address;
/// use std::rc::Rc;
/// use twill::testing::StringTransport;
/// use twill::{Bytes, Factory, Protocol, Transport};
/// use twill_protocols::handler::{AddressFilter, Filtered};
///
/// struct Discard;
/// impl Protocol for Discard {
///     fn data_received(&mut self, _: Bytes) {}
/// }
///
/// let seen = Rc::new(RefCell::new(Vec::new()));
/// let log = seen.clone();
/// let mut factory = AddressFilter::new(|_peer: Address| Discard)
///     .deny("192.0.2.0/24".parse()?)
///     .on_accepted(move |peer| log.borrow_mut().push(peer))
///     .on_rejected(|transport: &Transport, _peer| transport.write("access denied\r\n"));
///
/// let welcome = factory.build_protocol("198.51.100.7:4000".parse()?).unwrap();
/// assert!(matches!(welcome, Filtered::Accepted(Discard)));
/// assert_eq!(*seen.borrow(), ["198.51.100.7:4000".parse::<Address>()?]);
///
/// let mut goodbye = factory.build_protocol("192.0.2.1:4000".parse()?).unwrap();
/// let recorder = StringTransport::new();
/// goodbye.connection_made(&recorder.transport());
/// assert_eq!(recorder.value(), b"access denied\r\n");
/// assert!(recorder.disconnecting(), "closed once the goodbye is sent");
/// assert_eq!(factory.refused(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Differences from Netty
///
/// - The decision is made before the connection has a protocol, from the
///   accepted socket's address; a refused peer without a rejected hook
///   never gets one.
/// - Netty's `channelRejected` may return a future and the channel closes
///   when it completes, however long that takes. Here the goodbye is what
///   the hook writes, the connection is closed (gracefully) right after
///   the hook, and a goodbye that has not left within
///   [`goodbye_timeout`](Self::goodbye_timeout) (5 seconds unless set: a
///   peer that does not read) is dropped with the connection.
pub struct AddressFilter<F> {
    inner: F,
    rules: Vec<(Cidr, FilterAction)>,
    if_no_match: FilterAction,
    refused: Refusals,
    on_accepted: Option<AcceptedHook>,
    on_rejected: Option<RejectedHook>,
    goodbye_timeout: Duration,
    time: Option<Rc<dyn ReactorTime>>,
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
            on_accepted: None,
            on_rejected: None,
            goodbye_timeout: DEFAULT_GOODBYE_TIMEOUT,
            time: None,
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

    /// Calls `hook` with the address of every peer the rules accept, before
    /// the inner factory is asked to build its protocol (it may still
    /// refuse the connection): Netty's `channelAccepted`.
    pub fn on_accepted(mut self, hook: impl FnMut(Address) + 'static) -> Self {
        self.on_accepted = Some(Box::new(hook));
        self
    }

    /// Gives rejected peers a [`Goodbye`] instead of closing their socket at
    /// once: when the connection is made, `hook` gets its transport and
    /// address and may write to it (a line saying why, say); then the
    /// connection is closed once what was written is sent, and nothing the
    /// peer sends is read. Netty's `channelRejected`.
    ///
    /// A goodbye the peer does not read is given
    /// [`goodbye_timeout`](Self::goodbye_timeout) to leave, then the
    /// connection is aborted. A small one leaves at once into the kernel's
    /// buffers, and the reactor closes the socket after the peer's EOF or
    /// its own short linger, as for any
    /// [`lose_connection`](Transport::lose_connection).
    ///
    /// # Panics
    ///
    /// Without a [`clock`](Self::clock), the goodbye's timer is the
    /// reactor's: a goodbye left waiting to be sent with no reactor on the
    /// thread (in a unit test with a `StringTransport` whose
    /// [`set_write_buffer_size`](twill::testing::StringTransport::set_write_buffer_size)
    /// pretends the peer does not read, say) panics.
    pub fn on_rejected(mut self, hook: impl FnMut(&Transport, Address) + 'static) -> Self {
        self.on_rejected = Some(Rc::new(RefCell::new(hook)));
        self
    }

    /// How long a rejected peer's goodbye may take to be sent before the
    /// connection is aborted (5 seconds unless set; zero: no limit, for a
    /// goodbye that is known to be small). Only with
    /// [`on_rejected`](Self::on_rejected).
    pub fn goodbye_timeout(mut self, timeout: Duration) -> Self {
        self.goodbye_timeout = timeout;
        self
    }

    /// Uses `time` for the goodbye's timer instead of the reactor.
    pub fn clock(mut self, time: Rc<dyn ReactorTime>) -> Self {
        self.time = Some(time);
        self
    }

    /// What the rules decide for `address`.
    pub fn decide(&self, address: IpAddr) -> FilterAction {
        self.rules
            .iter()
            .find(|(subnet, _)| subnet.contains(address))
            .map_or(self.if_no_match, |&(_, action)| action)
    }

    /// How many connections were refused: closed at once, or given a
    /// goodbye.
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
    type Protocol = Filtered<F::Protocol>;

    fn build_protocol(&mut self, peer: Address) -> Option<Filtered<F::Protocol>> {
        // A Unix socket's peer has no IP address: no subnet rule matches it.
        let action = peer.ip().map_or(self.if_no_match, |ip| self.decide(ip));
        match action {
            FilterAction::Accept => {
                if let Some(hook) = &mut self.on_accepted {
                    hook(peer.clone());
                }
                self.inner.build_protocol(peer).map(Filtered::Accepted)
            }
            FilterAction::Reject => {
                let why = format_args!("its address is filtered out");
                let Some(hook) = &self.on_rejected else {
                    return self.refused.refuse(peer, why);
                };
                self.refused.count_refusal(peer.clone(), why);
                Some(Filtered::Rejected(Goodbye {
                    peer,
                    hook: hook.clone(),
                    timeout: self.goodbye_timeout,
                    time: self.time.clone(),
                    timer: None,
                }))
            }
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
            .field("on_accepted", &self.on_accepted.is_some())
            .field("on_rejected", &self.on_rejected.is_some())
            .field("goodbye_timeout", &self.goodbye_timeout)
            .finish_non_exhaustive()
    }
}

/// The protocol of an [`AddressFilter`]: the inner factory's for an
/// accepted peer, the filter's [`Goodbye`] for a rejected one (when the
/// filter has an [`on_rejected`](AddressFilter::on_rejected) hook).
///
/// It passes every event on to the protocol it holds.
#[derive(Debug)]
pub enum Filtered<P> {
    /// The peer was accepted: its connection is served by this protocol.
    Accepted(P),
    /// The peer was rejected: its connection gets the rejected hook's
    /// goodbye, then is closed.
    Rejected(Goodbye),
}

impl<P> Filtered<P> {
    /// The inner factory's protocol, if the peer was accepted.
    pub fn accepted(&self) -> Option<&P> {
        match self {
            Filtered::Accepted(protocol) => Some(protocol),
            Filtered::Rejected(_) => None,
        }
    }

    /// The inner factory's protocol, mutably, if the peer was accepted.
    pub fn accepted_mut(&mut self) -> Option<&mut P> {
        match self {
            Filtered::Accepted(protocol) => Some(protocol),
            Filtered::Rejected(_) => None,
        }
    }
}

impl<P: Protocol> Protocol for Filtered<P> {
    fn connection_made(&mut self, transport: &Transport) {
        match self {
            Filtered::Accepted(protocol) => protocol.connection_made(transport),
            Filtered::Rejected(goodbye) => goodbye.connection_made(transport),
        }
    }

    fn data_received(&mut self, data: Bytes) {
        match self {
            Filtered::Accepted(protocol) => protocol.data_received(data),
            Filtered::Rejected(goodbye) => goodbye.data_received(data),
        }
    }

    fn get_buffer(&mut self) -> Option<&mut BytesMut> {
        match self {
            Filtered::Accepted(protocol) => protocol.get_buffer(),
            Filtered::Rejected(goodbye) => goodbye.get_buffer(),
        }
    }

    fn buffer_updated(&mut self, appended: usize) {
        match self {
            Filtered::Accepted(protocol) => protocol.buffer_updated(appended),
            Filtered::Rejected(goodbye) => goodbye.buffer_updated(appended),
        }
    }

    fn eof_received(&mut self) -> bool {
        match self {
            Filtered::Accepted(protocol) => protocol.eof_received(),
            Filtered::Rejected(goodbye) => goodbye.eof_received(),
        }
    }

    fn connection_lost(&mut self, reason: &Reason) {
        match self {
            Filtered::Accepted(protocol) => protocol.connection_lost(reason),
            Filtered::Rejected(goodbye) => goodbye.connection_lost(reason),
        }
    }

    fn pause_writing(&mut self) {
        match self {
            Filtered::Accepted(protocol) => protocol.pause_writing(),
            Filtered::Rejected(goodbye) => goodbye.pause_writing(),
        }
    }

    fn resume_writing(&mut self) {
        match self {
            Filtered::Accepted(protocol) => protocol.resume_writing(),
            Filtered::Rejected(goodbye) => goodbye.resume_writing(),
        }
    }

    fn write_complete(&mut self) {
        match self {
            Filtered::Accepted(protocol) => protocol.write_complete(),
            Filtered::Rejected(goodbye) => goodbye.write_complete(),
        }
    }

    fn event_received(&mut self, event: Event) {
        match self {
            Filtered::Accepted(protocol) => protocol.event_received(event),
            Filtered::Rejected(goodbye) => goodbye.event_received(event),
        }
    }
}

/// The protocol an [`AddressFilter`] gives a rejected peer when it has an
/// [`on_rejected`](AddressFilter::on_rejected) hook: it calls the hook with
/// the transport when the connection is made, then
/// [`lose_connection`](Transport::lose_connection)s it (what the hook
/// wrote is sent first), reads nothing more, and aborts the connection if
/// the goodbye has not left within the filter's
/// [`goodbye_timeout`](AddressFilter::goodbye_timeout).
pub struct Goodbye {
    peer: Address,
    hook: RejectedHook,
    timeout: Duration,
    time: Option<Rc<dyn ReactorTime>>,
    timer: Option<DelayedCall>,
}

impl Goodbye {
    /// The rejected peer.
    pub fn peer(&self) -> Address {
        self.peer.clone()
    }
}

impl Protocol for Goodbye {
    fn connection_made(&mut self, transport: &Transport) {
        (self.hook.borrow_mut())(transport, self.peer.clone());
        transport.lose_connection();
        if self.timeout.is_zero() || transport.write_buffer_size() == 0 {
            // Nothing waits to be sent (the hook wrote nothing, or the
            // transport took it all): the reactor's close needs no bound of
            // ours.
            return;
        }
        let (transport, peer, timeout) = (transport.clone(), self.peer.clone(), self.timeout);
        let time = time_or_reactor(self.time.as_ref());
        self.timer = Some(time.call_later(
            timeout,
            Box::new(move || {
                log::info!("aborting the connection from {peer}: its goodbye was not sent within {timeout:?}");
                transport.abort_connection();
            }),
        ));
    }

    fn data_received(&mut self, _data: Bytes) {
        // Reading stopped with lose_connection; whatever was already read
        // is not for anyone.
    }

    fn connection_lost(&mut self, _reason: &Reason) {
        if let Some(timer) = self.timer.take() {
            // Already run or cancelled is fine: the connection is over.
            let _ = timer.cancel();
        }
    }
}

impl fmt::Debug for Goodbye {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Goodbye")
            .field("peer", &self.peer)
            .field("timeout", &self.timeout)
            .field("timer", &self.timer.is_some())
            .finish_non_exhaustive()
    }
}

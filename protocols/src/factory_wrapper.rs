//! What the factory wrappers ([`AddressFilter`](crate::handler::AddressFilter),
//! [`LimitConnectionsByPeer`](crate::policies::LimitConnectionsByPeer),
//! [`LimitTotalConnections`](crate::policies::LimitTotalConnections),
//! [`ThrottlingFactory`](crate::policies::ThrottlingFactory)) share besides
//! deciding on a connection: counting the connections they refuse, and
//! passing a client factory's events on to the factory they wrap.

use std::fmt;
use twill::Address;

/// How many connections a factory wrapper refused.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Refusals(u64);

impl Refusals {
    /// Counts and logs a refused connection from `peer`; returns `None`,
    /// for `build_protocol` to return.
    pub(crate) fn refuse<P>(&mut self, peer: Address, why: fmt::Arguments<'_>) -> Option<P> {
        self.count_refusal(peer, why);
        None
    }

    /// Counts and logs a refused connection from `peer` that the wrapper
    /// still gives a protocol of its own (to say goodbye).
    pub(crate) fn count_refusal(&mut self, peer: Address, why: fmt::Arguments<'_>) {
        self.0 += 1;
        log::info!("refusing the connection from {peer}: {why}");
    }

    pub(crate) fn count(self) -> u64 {
        self.0
    }
}

/// Implements [`ClientFactory`](twill::ClientFactory) for a factory wrapper
/// `$wrapper<F>` by passing every event on to its `inner` factory.
macro_rules! forward_client_factory {
    ($wrapper:ident) => {
        impl<F: twill::ClientFactory> twill::ClientFactory for $wrapper<F> {
            fn started_connecting(&mut self, connector: &twill::Connector) {
                self.inner.started_connecting(connector);
            }

            fn client_connection_failed(
                &mut self,
                connector: &twill::Connector,
                reason: &std::io::Error,
            ) {
                self.inner.client_connection_failed(connector, reason);
            }

            fn client_connection_lost(
                &mut self,
                connector: &twill::Connector,
                reason: &twill::Reason,
            ) {
                self.inner.client_connection_lost(connector, reason);
            }
        }
    };
}

pub(crate) use forward_client_factory;

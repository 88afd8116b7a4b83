//! Socket kinds and addresses: TCP ([`Reactor::listen_tcp`],
//! [`Reactor::connect_tcp`]), Unix domain sockets
//! ([`Reactor::listen_unix`], [`Reactor::connect_unix`]), UDP
//! ([`Reactor::listen_udp`]: a [`DatagramProtocol`] on a
//! [`DatagramTransport`]), the [`Address`] a protocol's peer has, the
//! [`HostPort`] a client connects to, the [`NameResolver`] that finds a
//! host's addresses, the racing of those addresses ([`happy_eyeballs`]),
//! and Twisted's [`endpoint`] strings.
//!
//! Each kind adds its own `impl Reactor` here; the reactor's loop knows
//! them only as sources of readiness.

mod address;
mod connection;
mod connector;
pub mod endpoint;
pub mod happy_eyeballs;
mod host_port;
pub(crate) mod listener;
mod resolve;
pub(crate) mod stream_socket;
pub(crate) mod tcp;
mod udp;
mod unix;
mod write_buffer;

use std::io;

use crate::protocol::{ClientFactory, Factory, Protocol, Reason};

pub use address::{Address, UnixAddress, MAX_UNIX_PATH};
pub use connector::{Connector, ConnectorState, Destination};
pub use happy_eyeballs::CONNECTION_ATTEMPT_DELAY;
pub use host_port::{HostPort, ToHostPort};
pub use listener::ListeningPort;
pub use resolve::{NameResolver, StaticResolver, SystemResolver};
pub use udp::{
    DatagramConfig, DatagramProtocol, DatagramTransport, DatagramTruncated, MulticastInterface,
    SendQueueFull, DEFAULT_MAX_DATAGRAM_SIZE, DEFAULT_SEND_QUEUE_MAX,
};
pub use unix::{PeerCredentials, DEFAULT_UNIX_MODE};

#[cfg(doc)]
use crate::Reactor;

/// A [`Factory`] behind a trait object.
pub(crate) trait DynFactory {
    fn build(&mut self, peer: Address) -> Option<Box<dyn Protocol>>;
    fn start(&mut self);
    fn stop(&mut self);
}

impl<F: Factory> DynFactory for F {
    fn build(&mut self, peer: Address) -> Option<Box<dyn Protocol>> {
        self.build_protocol(peer)
            .map(|p| Box::new(p) as Box<dyn Protocol>)
    }
    fn start(&mut self) {
        self.start_factory()
    }
    fn stop(&mut self) {
        self.stop_factory()
    }
}

/// A [`ClientFactory`] behind a trait object.
pub(crate) trait DynClientFactory: DynFactory {
    fn started_connecting(&mut self, connector: &Connector);
    fn connection_failed(&mut self, connector: &Connector, reason: &io::Error);
    fn connection_lost(&mut self, connector: &Connector, reason: &Reason);
}

impl<F: ClientFactory> DynClientFactory for F {
    fn started_connecting(&mut self, connector: &Connector) {
        ClientFactory::started_connecting(self, connector)
    }
    fn connection_failed(&mut self, connector: &Connector, reason: &io::Error) {
        self.client_connection_failed(connector, reason)
    }
    fn connection_lost(&mut self, connector: &Connector, reason: &Reason) {
        self.client_connection_lost(connector, reason)
    }
}

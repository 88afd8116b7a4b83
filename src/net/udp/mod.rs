//! UDP: [`Reactor::listen_udp`](crate::Reactor::listen_udp) serves a port
//! with a [`DatagramProtocol`] and gives back its [`DatagramTransport`],
//! as Twisted's `listenUDP` and asyncio's `create_datagram_endpoint`.
//!
//! Reading: each readiness event drains the socket up to a budget (128
//! datagrams or 256 KiB), one `recvmsg` per datagram straight into the
//! reactor's shared read buffer, so a flood cannot starve timers and other
//! sockets. A datagram over the maximum size is dropped and reported as
//! [`DatagramTruncated`], never delivered cut.
//!
//! Writing: see the send queue policy on [`DatagramTransport`] (sent at
//! once; queued whole on `WouldBlock`; `pause_writing` past the high
//! watermark, `resume_writing` at the low one; [`SendQueueFull`] past the
//! cap).
//!
//! Files: `protocol.rs` the trait, `transport.rs` the handle,
//! `multicast.rs` groups and socket options, `port.rs` the socket in the
//! loop, `receive.rs` one datagram in, `send_queue.rs` the queue,
//! `config.rs` and `error.rs`, `listen.rs` the `impl Reactor`.

mod config;
mod error;
mod listen;
mod multicast;
mod port;
mod protocol;
mod receive;
mod send_queue;
#[cfg(test)]
mod tests;
mod transport;

pub use config::{DatagramConfig, DEFAULT_MAX_DATAGRAM_SIZE, DEFAULT_SEND_QUEUE_MAX};
pub use error::{DatagramTruncated, SendQueueFull};
pub use multicast::MulticastInterface;
pub use protocol::DatagramProtocol;
pub use transport::DatagramTransport;

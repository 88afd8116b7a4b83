//! twill brings Twisted's programming model to Rust: a reactor that calls
//! [`connection_made`](Protocol::connection_made),
//! [`data_received`](Protocol::data_received) and
//! [`connection_lost`](Protocol::connection_lost) on [`Protocol`] objects
//! built by a [`Factory`], writes through a non-blocking [`Transport`], and
//! [`call_later`] timers, on one thread per reactor, on the smol crates.
//!
//! # Examples
//!
//! An echo server, and a client that sends one line and stops the reactor
//! when the echo comes back:
//!
//! ```
//! use std::{cell::RefCell, rc::Rc};
//! use bytes::Bytes;
//! use twill::{Protocol, Reactor, Transport};
//!
//! struct Echo {
//!     transport: Option<Transport>,
//! }
//!
//! impl Protocol for Echo {
//!     fn connection_made(&mut self, transport: &Transport) {
//!         self.transport = Some(transport.clone());
//!     }
//!     fn data_received(&mut self, data: Bytes) {
//!         self.transport.as_ref().unwrap().write(data);
//!     }
//! }
//!
//! struct Hello {
//!     received: Rc<RefCell<Vec<u8>>>,
//! }
//!
//! impl Protocol for Hello {
//!     fn connection_made(&mut self, transport: &Transport) {
//!         transport.write("hello\n");
//!     }
//!     fn data_received(&mut self, data: Bytes) {
//!         self.received.borrow_mut().extend_from_slice(&data);
//!         if self.received.borrow().ends_with(b"\n") {
//!             twill::stop();
//!         }
//!     }
//! }
//!
//! let reactor = Reactor::new()?;
//! let port = reactor.listen_tcp("127.0.0.1:0", |_peer| Echo { transport: None })?;
//! let received = Rc::new(RefCell::new(Vec::new()));
//! let sink = received.clone();
//! reactor.connect_tcp(port.host(), move |_peer| Hello { received: sink.clone() })?;
//! reactor.run()?;
//! assert_eq!(&*received.borrow(), b"hello\n");
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Bounded memory
//!
//! Writes never block, so a peer that does not read would make a server
//! buffer without end. A [`Transport`] stops reading while its replies
//! cannot leave if its flow control is on
//! ([`Transport::set_flow_control`]; `twill-protocols`' codec layer turns
//! it on), a [`broadcast::BroadcastGroup`] gives up on a member that stays
//! behind, and every connection has a hard cap on its write buffer past
//! which it is aborted ([`Transport::set_write_buffer_max`], 16 MiB by
//! default).
//!
//! # Socket kinds and addresses
//!
//! [`net`] holds TCP, Unix domain sockets
//! ([`Reactor::listen_unix`], [`Reactor::connect_unix`]) and UDP
//! ([`Reactor::listen_udp`], a [`DatagramProtocol`]); the [`Address`] a
//! peer has (TCP or Unix); host names resolved off the reactor thread and
//! raced as RFC 8305 says; and Twisted's endpoint strings
//! ([`Reactor::server_from_string`], [`Reactor::client_from_string`]).
//!
//! # Deferreds
//!
//! [`defer::Deferred`] is Twisted's Deferred: a result that comes later,
//! with a chain of callbacks and errbacks. It is also a `Future`, so protocol
//! code can `await` it inside [`spawn`]ed futures, and
//! [`Deferred::from_future`](defer::Deferred::from_future) turns a future
//! back into a Deferred. [`task::LoopingCall`] and [`task::defer_later`] run
//! on the reactor's timers, or on a [`task::Clock`] in tests.
//!
//! # Threads
//!
//! A reactor belongs to the thread that created it, and so do its
//! protocols, transports and timers (none is `Send`): callbacks for one
//! connection run in order, on that thread, with no locks. Other threads
//! reach it through a [`ReactorHandle`]. For several cores, run one reactor
//! per thread.
//!
//! # Faults
//!
//! A panic in a protocol or factory callback closes that connection only,
//! with [`Reason::Failed`], and is logged with the peer's address; a panic in
//! a timed call is logged. The reactor and every other connection go on.
//! Logging goes through the `log` crate.

#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![doc(test(attr(deny(warnings))))]

pub mod broadcast;
pub mod defer;
mod event;
mod executor;
pub mod group;
mod layer;
pub mod net;
pub mod producers;
pub mod protocol;
pub mod reactor;
mod reconnect;
pub mod stream;
pub mod task;
pub mod testing;
mod time;
#[cfg(feature = "tls")]
pub mod tls;
pub mod transport;

use std::any::Any;
use std::time::Duration;

pub use event::Event;
pub use net::{Address, Connector, ConnectorState, ListeningPort};
pub use net::{DatagramConfig, DatagramProtocol, DatagramTransport, MulticastInterface};
pub use protocol::{ClientFactory, Factory, Panicked, Protocol, Reason};
pub use reactor::{Phase, Reactor, ReactorHandle, ReactorStopped, SystemEvent, TriggerId};
pub use reconnect::ReconnectingClientFactory;
pub use time::{DelayedCall, DelayedCallError, ReactorTime};
pub use transport::Transport;

/// Re-exported so protocols can name the type they receive.
pub use bytes::{Bytes, BytesMut};

/// The reactor of the current thread: the one running, else the one most
/// recently created here.
///
/// # Panics
///
/// If no reactor exists on this thread.
pub fn reactor() -> Reactor {
    Reactor::current().expect("no twill reactor on this thread: create one with Reactor::new()")
}

/// Runs `f` on the current thread's reactor after `delay`; see
/// [`Reactor::call_later`].
///
/// # Panics
///
/// If no reactor exists on this thread.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let reactor = twill::Reactor::new()?;
/// twill::call_later(Duration::from_millis(5), twill::stop);
/// reactor.run()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn call_later(delay: Duration, f: impl FnOnce() + 'static) -> DelayedCall {
    reactor().call_later(delay, f)
}

/// Runs `f` when the current thread's reactor runs; see
/// [`Reactor::call_when_running`].
///
/// # Panics
///
/// If no reactor exists on this thread.
pub fn call_when_running(f: impl FnOnce() + 'static) {
    reactor().call_when_running(f)
}

/// Stops the current thread's reactor gracefully; see [`Reactor::stop`].
///
/// # Panics
///
/// If no reactor exists on this thread.
pub fn stop() {
    reactor().stop()
}

/// Runs `future` on this thread's executor (`async-executor`'s
/// `LocalExecutor`), which the reactor runs once per turn, between I/O
/// events; it may hold `Rc`s and await [`Deferred`](defer::Deferred)s. A
/// panic in it is logged. It starts on the reactor's next turn; to run a
/// future at once and get its output, use
/// [`Deferred::from_future`](defer::Deferred::from_future) instead. Futures
/// still pending when the reactor is dropped are dropped with it.
///
/// # Examples
///
/// ```
/// use twill::defer::Deferred;
///
/// let reactor = twill::Reactor::new()?;
/// let d: Deferred<&str> = Deferred::new();
/// let fire = d.resolver();
/// let waiting = d;
/// twill::spawn(async move {
///     assert_eq!(waiting.await.unwrap(), "fired");
///     twill::stop();
/// });
/// twill::call_later(std::time::Duration::ZERO, move || fire.callback("fired"));
/// reactor.run()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn spawn(future: impl std::future::Future<Output = ()> + 'static) {
    use futures::FutureExt;
    let guarded = async move {
        if let Err(panic) = std::panic::AssertUnwindSafe(future).catch_unwind().await {
            log::error!("panic in a spawned future: {}", panic_message(&*panic));
        }
    };
    executor::spawn(guarded).detach();
}

/// The text of a panic's payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}

//! Netty's connection handlers as twill [`Protocol`](twill::Protocol) and
//! [`Factory`](twill::Factory) wrappers: idle detection
//! ([`IdleStateHandler`]), read and write timeouts ([`ReadTimeoutHandler`],
//! [`WriteTimeoutHandler`]), traffic logging ([`LoggingHandler`]),
//! address filtering ([`AddressFilter`], [`Cidr`]) and per-connection read
//! and write limits ([`TrafficShapingHandler`]); and pipeline stages:
//! [`FlowControlHandler`], which hands messages out one per `read()`, and
//! [`LoggingStage`], the logging handler as a stage, which logs the
//! payloads of writes too.
//!
//! Each wrapper takes any protocol (or factory) and delegates every event to
//! it, adding its own behaviour around it, so they stack:
//! `LoggingHandler::new(ReadTimeoutHandler::new(MyProtocol, timeout))`.
//!
//! # Time
//!
//! Everything that waits takes an `Rc<dyn ReactorTime>` through a `clock`
//! builder method; without one it uses the current thread's reactor
//! ([`twill::reactor()`]) when the connection is made. Tests hand in a
//! [`twill::task::Clock`] and never sleep.
//!
//! # Seeing writes
//!
//! A wrapper does not intercept what its inner protocol writes; it reads
//! the transport's counters, [`bytes_written`](twill::Transport::bytes_written)
//! and [`bytes_sent`](twill::Transport::bytes_sent), before and after every
//! call it delegates and when its timers run. Every write counts, by
//! length, whoever made it (the protocol's callbacks, its own timers,
//! another connection's callback), from the moment it is queued; what was
//! sent counts when the reactor hands it to the kernel.
//! [`StringTransport`](twill::testing::StringTransport) counts every write
//! as sent at once.

mod address_filter;
mod cidr;
mod flow_control;
mod idle_state;
mod logging;
pub(crate) mod output;
mod read_timeout;
pub(crate) mod timer;
mod traffic_counter;
mod traffic_shaping;
mod write_timeout;

pub use address_filter::{AddressFilter, FilterAction, Filtered, Goodbye};
pub use cidr::{Cidr, CidrParseError};
pub use flow_control::FlowControlHandler;
pub use idle_state::{IdleHandle, IdleState, IdleStateEvent, IdleStateHandler};
pub use logging::{hex_dump, ByteFormat, LoggingHandler, LoggingStage};
pub use read_timeout::{ReadTimeout, ReadTimeoutHandler};
pub use traffic_counter::TrafficCounter;
pub use traffic_shaping::{ShapingHandle, TrafficShapingHandler};
pub use write_timeout::{WriteTimeout, WriteTimeoutHandler};

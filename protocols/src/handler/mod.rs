//! Netty's connection handlers as twill [`Protocol`](twill::Protocol) and
//! [`Factory`](twill::Factory) wrappers: idle detection
//! ([`IdleStateHandler`]), read and write timeouts ([`ReadTimeoutHandler`],
//! [`WriteTimeoutHandler`]), traffic logging ([`LoggingHandler`]) and
//! address filtering ([`AddressFilter`], [`Cidr`]).
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
//! twill's [`Transport`](twill::Transport) is a concrete type with no write
//! hook, and a wrapper cannot hand its inner protocol a transport of its
//! own, so no wrapper sees the bytes the inner protocol writes. What they
//! can see is [`Transport::write_buffer_size`](twill::Transport::write_buffer_size):
//! the reactor buffers every write made during a callback and flushes only
//! after the callback returns, so the growth of the buffer across a call
//! into the inner protocol is exactly what that call wrote. The wrappers
//! read the buffer size before and after every call they delegate and when
//! their timers run:
//!
//! * writes the inner protocol makes from its own callbacks (including
//!   [`IdleAware::idle`]) are seen, by length only;
//! * writes made from elsewhere (a timer of the protocol's own, another
//!   connection's callback) are seen only if they are still buffered the
//!   next time the wrapper looks; [`IdleHandle::write`] records them
//!   exactly;
//! * [`StringTransport`](twill::testing::StringTransport) reports an empty
//!   buffer always, so in unit tests only what goes through an explicit
//!   handle counts as written.

mod address_filter;
mod cidr;
mod idle_state;
mod logging;
pub(crate) mod output;
mod read_timeout;
pub(crate) mod timer;
mod write_timeout;

pub use address_filter::{AddressFilter, FilterAction};
pub use cidr::{Cidr, CidrParseError};
pub use idle_state::{IdleAware, IdleHandle, IdleState, IdleStateEvent, IdleStateHandler};
pub use logging::{hex_dump, ByteFormat, LoggingHandler};
pub use read_timeout::{ReadTimeout, ReadTimeoutHandler};
pub use write_timeout::{WriteTimeout, WriteTimeoutHandler};

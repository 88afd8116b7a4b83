//! Twisted's `twisted.protocols.policies` as twill wrappers: a per-protocol
//! timeout ([`TimeoutProtocol`], Twisted's `TimeoutMixin` and
//! `TimeoutProtocol`), connection limits ([`LimitConnectionsByPeer`],
//! [`LimitTotalConnections`]) and bandwidth throttling
//! ([`ThrottlingFactory`]).
//!
//! Twisted builds these on `ProtocolWrapper`, which stands between the real
//! transport and the wrapped protocol and so sees every write. A twill
//! wrapper shares its inner protocol's transport and reads its write
//! counters instead; see [Seeing writes](crate::handler#seeing-writes).
//!
//! Everything that waits takes an `Rc<dyn ReactorTime>` through a `clock`
//! builder method (else the current thread's reactor), so tests use
//! [`twill::task::Clock`].

mod counted;
mod limit_by_peer;
mod limit_total;
mod throttling;
mod timeout;

pub use counted::Counted;
pub use limit_by_peer::LimitConnectionsByPeer;
pub use limit_total::LimitTotalConnections;
pub use throttling::{ThrottledProtocol, ThrottlingFactory};
pub use timeout::{TimeoutAware, TimeoutHandle, TimeoutProtocol};

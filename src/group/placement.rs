//! Where a reactor group puts a connection.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::worker::WorkerHandle;

/// How many accepted connections may wait for one worker to take them.
/// A worker takes them at the start of each turn, so only a worker stuck in
/// a long callback comes near it; past it, the worker gets no more until it
/// catches up, and when every worker is there the boss stops accepting
/// (the kernel's backlog holds the rest) until one does.
pub const MAX_HANDOFFS_WAITING: usize = 1024;

/// How a [`ReactorGroup`](super::ReactorGroup) spreads the connections of a
/// listening port over its workers.
///
/// # Examples
///
/// ```
/// use twill::group::{Placement, ReactorGroup};
/// # use twill::{Bytes, Protocol};
/// # struct Discard;
/// # impl Protocol for Discard { fn data_received(&mut self, _: Bytes) {} }
///
/// let group = ReactorGroup::new(2)?;
/// let port = group.listen_tcp_with("127.0.0.1:0", Placement::RoundRobin, || {
///     |_peer| Discard
/// })?;
/// assert_eq!(port.placement(), Placement::RoundRobin);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Placement {
    /// The boss accepts and hands each connection to the worker with the
    /// fewest open (the default): even when connections come and go at
    /// different rates. Ties go round robin.
    #[default]
    LeastConnections,
    /// The boss accepts and hands the connections to the workers in turn,
    /// as Netty's `ServerBootstrap` does.
    RoundRobin,
    /// Every worker listens on the address itself, with SO_REUSEPORT, and
    /// the kernel picks the worker (by a hash of the peer's address and
    /// port): no boss, but uneven with few connections.
    ReusePort,
}

/// The round-robin cursor, shared by every port and client of a group.
#[derive(Debug, Default)]
pub(crate) struct Cursor(AtomicUsize);

impl Cursor {
    /// The worker a new connection goes to, among those with room for one
    /// more handoff; `None` when none has.
    pub(crate) fn choose(&self, workers: &[WorkerHandle], placement: Placement) -> Option<usize> {
        let n = workers.len();
        let start = self.0.fetch_add(1, Ordering::Relaxed) % n;
        let mut with_room = (0..n)
            .map(|i| (start + i) % n)
            .filter(|&i| workers[i].handoffs_waiting() < MAX_HANDOFFS_WAITING);
        match placement {
            Placement::LeastConnections => with_room.min_by_key(|&i| workers[i].load()),
            Placement::RoundRobin | Placement::ReusePort => with_room.next(),
        }
    }
}

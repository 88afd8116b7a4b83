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

impl std::str::FromStr for Placement {
    type Err = UnknownPlacement;

    /// The names command lines use: `least`, `round-robin`, `reuse-port`.
    ///
    /// ```
    /// use twill::group::Placement;
    ///
    /// assert_eq!("round-robin".parse(), Ok(Placement::RoundRobin));
    /// assert!("fastest".parse::<Placement>().is_err());
    /// ```
    fn from_str(name: &str) -> Result<Placement, UnknownPlacement> {
        match name {
            "least" => Ok(Placement::LeastConnections),
            "round-robin" => Ok(Placement::RoundRobin),
            "reuse-port" => Ok(Placement::ReusePort),
            other => Err(UnknownPlacement(other.to_owned())),
        }
    }
}

/// A name that is not a [`Placement`]'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPlacement(pub String);

impl std::fmt::Display for UnknownPlacement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unknown placement {:?}: least, round-robin or reuse-port",
            self.0
        )
    }
}

impl std::error::Error for UnknownPlacement {}

/// The round-robin cursor, shared by every port and client of a group.
#[derive(Debug, Default)]
pub(crate) struct Cursor(AtomicUsize);

impl Cursor {
    /// The worker a new connection goes to, among those `eligible` with
    /// room for one more handoff; `None` when none has.
    pub(crate) fn choose(
        &self,
        workers: &[WorkerHandle],
        placement: Placement,
        eligible: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = workers.len();
        let start = self.0.fetch_add(1, Ordering::Relaxed) % n;
        let mut with_room = (0..n)
            .map(|i| (start + i) % n)
            .filter(|&i| eligible(i) && workers[i].handoffs_waiting() < MAX_HANDOFFS_WAITING);
        match placement {
            Placement::LeastConnections => with_room.min_by_key(|&i| workers[i].load()),
            Placement::RoundRobin | Placement::ReusePort => with_room.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::ReactorGroup;

    #[test]
    fn a_worker_with_a_full_queue_of_handoffs_is_skipped_and_none_is_chosen_when_all_are() {
        let group = ReactorGroup::new(2).unwrap();
        let workers = group.workers();
        let cursor = Cursor::default();
        let tickets: Vec<_> = (0..MAX_HANDOFFS_WAITING)
            .map(|_| workers[0].hand_off())
            .collect();
        for placement in [Placement::RoundRobin, Placement::LeastConnections] {
            for _ in 0..3 {
                assert_eq!(cursor.choose(workers, placement, |_| true), Some(1));
            }
        }
        let more: Vec<_> = (0..MAX_HANDOFFS_WAITING)
            .map(|_| workers[1].hand_off())
            .collect();
        assert_eq!(
            cursor.choose(workers, Placement::RoundRobin, |_| true),
            None
        );
        assert_eq!(
            cursor.choose(workers, Placement::LeastConnections, |_| true),
            None
        );
        drop(tickets);
        assert_eq!(workers[0].load(), 0);
        assert_eq!(
            cursor.choose(workers, Placement::LeastConnections, |_| true),
            Some(0)
        );
        drop(more);
    }

    #[test]
    fn least_connections_counts_handoffs_on_their_way_and_breaks_ties_in_turn() {
        let group = ReactorGroup::new(3).unwrap();
        let workers = group.workers();
        let cursor = Cursor::default();
        let _on_0 = workers[0].hand_off();
        let _on_2 = [workers[2].hand_off(), workers[2].hand_off()];
        assert_eq!(
            cursor.choose(workers, Placement::LeastConnections, |_| true),
            Some(1)
        );
        let _on_1 = workers[1].hand_off();
        // 1, 1, 2: the tie between 0 and 1 goes to whichever comes first
        // from the cursor's turn.
        let picks: Vec<_> = (0..4)
            .map(|_| {
                cursor
                    .choose(workers, Placement::LeastConnections, |_| true)
                    .unwrap()
            })
            .collect();
        assert!(picks.iter().all(|&w| w < 2), "{picks:?}");
        assert!(picks.contains(&0) && picks.contains(&1), "{picks:?}");
    }
}

//! [`TrafficCounter`]: the statistics a
//! [`TrafficShapingHandler`](super::TrafficShapingHandler) keeps, and the
//! rate arithmetic behind its waits (Netty's `TrafficCounter`).

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Netty's `MINIMAL_WAIT`: a wait this short or shorter is not worth a
/// pause, and an interval this short is too short to measure a rate on.
pub(super) const MINIMAL_WAIT: Duration = Duration::from_millis(10);

/// A look at one connection's traffic, as its [`TrafficShapingHandler`](super::TrafficShapingHandler)
/// counted it up to now: Netty's `TrafficCounter`, as a copy.
///
/// Bytes read are those delivered to the inner protocol; bytes written are
/// those the transport took from anyone (counted when the handler looks:
/// see [Seeing writes](crate::handler#seeing-writes)); bytes sent are those
/// handed to the kernel. Throughputs are in bytes per second over the last
/// complete check interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrafficCounter {
    check_interval: Duration,
    current_read: u64,
    current_written: u64,
    last_read: u64,
    last_written: u64,
    cumulative_read: u64,
    cumulative_written: u64,
    last_read_throughput: u64,
    last_write_throughput: u64,
    real_write_throughput: u64,
}

impl TrafficCounter {
    /// The accounting period (zero: none, the current interval lasts the
    /// whole connection).
    pub fn check_interval(&self) -> Duration {
        self.check_interval
    }

    /// Bytes read since the last check.
    pub fn current_read_bytes(&self) -> u64 {
        self.current_read
    }

    /// Bytes written since the last check.
    pub fn current_written_bytes(&self) -> u64 {
        self.current_written
    }

    /// Bytes read in the last complete check interval.
    pub fn last_read_bytes(&self) -> u64 {
        self.last_read
    }

    /// Bytes written in the last complete check interval.
    pub fn last_written_bytes(&self) -> u64 {
        self.last_written
    }

    /// Bytes read since the connection was made.
    pub fn cumulative_read_bytes(&self) -> u64 {
        self.cumulative_read
    }

    /// Bytes written since the connection was made.
    pub fn cumulative_written_bytes(&self) -> u64 {
        self.cumulative_written
    }

    /// Bytes read per second over the last check interval.
    pub fn last_read_throughput(&self) -> u64 {
        self.last_read_throughput
    }

    /// Bytes written per second over the last check interval.
    pub fn last_write_throughput(&self) -> u64 {
        self.last_write_throughput
    }

    /// Bytes sent (handed to the kernel) per second over the last check
    /// interval: Netty's `getRealWriteThroughput`.
    pub fn real_write_throughput(&self) -> u64 {
        self.real_write_throughput
    }
}

/// One way's accounting: Netty's `TrafficCounter` fields for reads or for
/// writes.
pub(super) struct Flow {
    pub(super) current: Cell<u64>,
    pub(super) last: Cell<u64>,
    pub(super) cumulative: Cell<u64>,
    pub(super) throughput: Cell<u64>,
    /// Until when traffic this way is held back: Netty's `readingTime` /
    /// `writingTime`.
    pub(super) until: Cell<Instant>,
    /// `until` as of the last check: Netty's `lastReadingTime` /
    /// `lastWritingTime`.
    pub(super) last_until: Cell<Instant>,
}

impl Flow {
    fn new(now: Instant) -> Flow {
        Flow {
            current: Cell::new(0),
            last: Cell::new(0),
            cumulative: Cell::new(0),
            throughput: Cell::new(0),
            until: Cell::new(now),
            last_until: Cell::new(now),
        }
    }

    pub(super) fn add(&self, bytes: u64) {
        self.current.set(self.current.get().saturating_add(bytes));
        self.cumulative
            .set(self.cumulative.get().saturating_add(bytes));
    }

    /// Closes a check interval that lasted `interval`.
    fn roll(&self, interval: Duration) {
        let bytes = self.current.replace(0);
        self.last.set(bytes);
        self.throughput.set(per_second(bytes, interval));
        self.last_until
            .set(self.last_until.get().max(self.until.get()));
    }
}

/// The statistics and the rate arithmetic: Netty's `TrafficCounter`.
pub(super) struct Accounting {
    pub(super) read: Flow,
    pub(super) write: Flow,
    pub(super) sent: Cell<u64>,
    pub(super) real_write_throughput: Cell<u64>,
    /// The last check (or the start): Netty's `lastTime`.
    last_check: Cell<Instant>,
    /// How long the last complete interval lasted; zero before the first.
    last_interval: Cell<Duration>,
}

impl Accounting {
    pub(super) fn new() -> Accounting {
        let now = Instant::now();
        Accounting {
            read: Flow::new(now),
            write: Flow::new(now),
            sent: Cell::new(0),
            real_write_throughput: Cell::new(0),
            last_check: Cell::new(now),
            last_interval: Cell::new(Duration::ZERO),
        }
    }

    /// Starts counting at `now`, on the connection's clock.
    pub(super) fn start(&self, now: Instant) {
        for flow in [&self.read, &self.write] {
            flow.until.set(now);
            flow.last_until.set(now);
        }
        self.last_check.set(now);
        self.last_interval.set(Duration::ZERO);
    }

    /// Closes the current check interval at `now`: Netty's
    /// `resetAccounting`.
    pub(super) fn roll(&self, now: Instant) {
        let interval = now.saturating_duration_since(self.last_check.get());
        if interval.is_zero() {
            return;
        }
        self.last_check.set(now);
        self.last_interval.set(interval);
        self.read.roll(interval);
        self.write.roll(interval);
        self.real_write_throughput
            .set(per_second(self.sent.replace(0), interval));
    }

    /// Counts `bytes` more in `flow` at `now` and says how long traffic
    /// that way should wait to stay within `limit` bytes per second, at
    /// most `max_time`: Netty's `readTimeToWait` / `writeTimeToWait`. Zero
    /// when no wait over [`MINIMAL_WAIT`] is needed.
    pub(super) fn time_to_wait(
        &self,
        flow: &Flow,
        bytes: u64,
        limit: Option<u64>,
        max_time: Duration,
        now: Instant,
    ) -> Duration {
        flow.add(bytes);
        let Some(limit) = limit else {
            return Duration::ZERO;
        };
        if bytes == 0 {
            return Duration::ZERO;
        }
        let last_check = self.last_check.get();
        let interval = now.saturating_duration_since(last_check);
        // A wait that ran past the last check still counts.
        let past_delay = flow.last_until.get().saturating_duration_since(last_check);
        let (sum, span) = if interval > MINIMAL_WAIT {
            (flow.current.get(), interval)
        } else {
            // Too soon after the check to measure: count the last interval
            // in.
            (
                flow.current.get().saturating_add(flow.last.get()),
                interval + self.last_interval.get(),
            )
        };
        let wait = (transfer_time(sum, limit) + past_delay).saturating_sub(span);
        if wait > MINIMAL_WAIT {
            let wait = wait.min(max_time);
            flow.until.set(flow.until.get().max(now + wait));
            wait
        } else {
            flow.until.set(flow.until.get().max(now));
            Duration::ZERO
        }
    }

    /// The statistics so far, as a [`TrafficCounter`].
    pub(super) fn counter(&self, check_interval: Duration) -> TrafficCounter {
        TrafficCounter {
            check_interval,
            current_read: self.read.current.get(),
            current_written: self.write.current.get(),
            last_read: self.read.last.get(),
            last_written: self.write.last.get(),
            cumulative_read: self.read.cumulative.get(),
            cumulative_written: self.write.cumulative.get(),
            last_read_throughput: self.read.throughput.get(),
            last_write_throughput: self.write.throughput.get(),
            real_write_throughput: self.real_write_throughput.get(),
        }
    }
}

/// How long `bytes` take at `limit` bytes per second.
fn transfer_time(bytes: u64, limit: u64) -> Duration {
    let nanos = u128::from(bytes) * 1_000_000_000 / u128::from(limit);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// `bytes` over `interval`, in bytes per second.
fn per_second(bytes: u64, interval: Duration) -> u64 {
    let nanos = interval.as_nanos();
    if nanos == 0 {
        return 0;
    }
    u64::try_from(u128::from(bytes) * 1_000_000_000 / nanos).unwrap_or(u64::MAX)
}

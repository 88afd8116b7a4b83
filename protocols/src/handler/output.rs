//! What the wrappers can learn about a connection's output without a write
//! hook: the growth of its write buffer (see the module docs of
//! [`handler`](crate::handler)), and where their time comes from.

use std::cell::Cell;
use std::rc::Rc;

use twill::{ReactorTime, Transport};

/// Watches one connection's write buffer between looks.
///
/// The reactor flushes only after a callback returns, so looking right
/// before and right after a call into a protocol gives exactly what that
/// call wrote. Between callbacks the buffer drains (the reactor sent
/// bytes) and may grow (someone else wrote); a look then sees only the net
/// change.
#[derive(Debug, Default)]
pub(crate) struct OutputMeter {
    last: Cell<usize>,
}

/// What one look at the buffer found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Look {
    /// Bytes that entered the buffer since the last look (at least).
    pub(crate) added: usize,
    /// Bytes that left it (at least).
    pub(crate) drained: usize,
    /// What the buffer holds now.
    pub(crate) size: usize,
}

impl OutputMeter {
    pub(crate) fn new() -> OutputMeter {
        OutputMeter::default()
    }

    /// Looks at the buffer and compares with the last look.
    pub(crate) fn look(&self, transport: &Transport) -> Look {
        let size = transport.write_buffer_size();
        let last = self.last.replace(size);
        Look {
            added: size.saturating_sub(last),
            drained: last.saturating_sub(size),
            size,
        }
    }

    /// Bytes that entered the buffer since the last look.
    pub(crate) fn added(&self, transport: &Transport) -> usize {
        self.look(transport).added
    }
}

/// The time source a wrapper was given, else the current thread's reactor.
///
/// # Panics
///
/// With no time source given and no reactor on this thread.
pub(crate) fn time_or_reactor(given: Option<&Rc<dyn ReactorTime>>) -> Rc<dyn ReactorTime> {
    match given {
        Some(time) => time.clone(),
        None => Rc::new(twill::reactor()),
    }
}

/// Netty's rule: a positive period is at least one millisecond.
pub(crate) fn at_least_a_millisecond(period: std::time::Duration) -> std::time::Duration {
    if period.is_zero() {
        period
    } else {
        period.max(std::time::Duration::from_millis(1))
    }
}

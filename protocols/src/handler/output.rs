//! How the wrappers see a connection's output (see the module docs of
//! [`handler`](crate::handler)), and where their time comes from.

use std::cell::Cell;
use std::rc::Rc;

use twill::{ReactorTime, Transport};

/// Watches one connection's output between looks, through the transport's
/// [`bytes_written`](Transport::bytes_written) and
/// [`bytes_sent`](Transport::bytes_sent) counters: every write counts,
/// whoever made it.
#[derive(Debug, Default)]
pub(crate) struct OutputMeter {
    written: Cell<u64>,
    sent: Cell<u64>,
}

/// What one look at the output found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Look {
    /// Bytes written since the last look.
    pub(crate) added: usize,
    /// Bytes sent since the last look.
    pub(crate) drained: usize,
    /// What the write buffer holds now.
    pub(crate) size: usize,
}

impl OutputMeter {
    pub(crate) fn new() -> OutputMeter {
        OutputMeter::default()
    }

    /// Reads the counters and compares with the last look.
    pub(crate) fn look(&self, transport: &Transport) -> Look {
        let written = transport.bytes_written();
        let sent = transport.bytes_sent();
        let added = written.saturating_sub(self.written.replace(written));
        let drained = sent.saturating_sub(self.sent.replace(sent));
        Look {
            added: usize::try_from(added).unwrap_or(usize::MAX),
            drained: usize::try_from(drained).unwrap_or(usize::MAX),
            size: transport.write_buffer_size(),
        }
    }

    /// Bytes written since the last look.
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

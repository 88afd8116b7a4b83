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

/// What a wrapper with a write limit of its own tells its inner protocol:
/// its [`pause_writing`](twill::Protocol::pause_writing) and
/// [`resume_writing`](twill::Protocol::resume_writing), merged from the
/// transport's watermark pauses and the wrapper's limit. The protocol hears
/// one `pause_writing` when either begins and one `resume_writing` when
/// both are over. Used by
/// [`ThrottlingFactory`](crate::policies::ThrottlingFactory) and
/// [`TrafficShapingHandler`](super::TrafficShapingHandler).
#[derive(Debug, Default)]
pub(crate) struct ProducerPause {
    /// The transport asked the protocol to pause writing.
    transport: Cell<bool>,
    /// What the protocol was last told: paused or not.
    told: Cell<bool>,
    /// A change came up while the protocol was busy.
    deferred: Cell<bool>,
}

impl ProducerPause {
    /// The transport paused (`true`) or resumed writing.
    pub(crate) fn set_transport(&self, paused: bool) {
        self.transport.set(paused);
    }

    /// What to tell the protocol now that the wrapper's own limit holds
    /// (`limited`) or not: `Some(true)` for `pause_writing`, `Some(false)`
    /// for `resume_writing`, recorded as told; `None` when nothing changed.
    /// While the protocol is `busy` in a callback of its own nothing is
    /// told, and [`take_deferred`](Self::take_deferred) says to ask again
    /// once it returns.
    pub(crate) fn next(&self, limited: bool, busy: bool) -> Option<bool> {
        let pause = self.transport.get() || limited;
        if pause == self.told.get() {
            return None;
        }
        if busy {
            self.deferred.set(true);
            return None;
        }
        self.told.set(pause);
        Some(pause)
    }

    /// Whether a change waited for the protocol to return (and forgets
    /// it).
    pub(crate) fn take_deferred(&self) -> bool {
        self.deferred.replace(false)
    }

    /// Whether the protocol was last told to pause.
    pub(crate) fn told_paused(&self) -> bool {
        self.told.get()
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

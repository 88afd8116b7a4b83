//! The timers of the wrappers that wait: a call that runs only if its
//! owner is still there, and the [`Watch`] a timeout handler keeps on its
//! connection.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use twill::{DelayedCall, ReactorTime, Transport};

use super::output::{at_least_a_millisecond, time_or_reactor};

/// Runs `fire` on `owner` after `delay`, unless `owner` is gone by then:
/// the timer does not keep it alive.
pub(crate) fn call_later_weak<T: 'static>(
    time: &dyn ReactorTime,
    delay: Duration,
    owner: &Rc<T>,
    fire: impl FnOnce(&Rc<T>) + 'static,
) -> DelayedCall {
    let weak = Rc::downgrade(owner);
    time.call_later(
        delay,
        Box::new(move || {
            if let Some(owner) = weak.upgrade() {
                fire(&owner);
            }
        }),
    )
}

/// Runs `f`, a call a wrapper's timer makes into the protocol it wraps
/// (named `callback`), with the guard the reactor puts around the
/// connection's own callbacks, which a timer is outside of: a panic is
/// logged and closes this connection with [`Panicked`](twill::Panicked),
/// instead of only being logged by the timer queue while the connection
/// stays open.
pub(crate) fn guarded(transport: Option<Transport>, callback: &'static str, f: impl FnOnce()) {
    let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) else {
        return;
    };
    let panicked = twill::Panicked::from_payload(callback, &*payload);
    match transport {
        Some(transport) => {
            log::error!(
                "protocol for {} panicked in {callback}: {}; closing that connection",
                transport.peer(),
                panicked.message
            );
            transport.fail(panicked);
        }
        None => log::error!("protocol panicked in {callback}: {}", panicked.message),
    }
}

/// What a timeout handler keeps on its connection: the timeout, and while
/// the connection is up the time source, the transport and the timer; and
/// whether it timed the connection out.
pub(crate) struct Watch {
    timeout: Duration,
    time: RefCell<Option<Rc<dyn ReactorTime>>>,
    transport: RefCell<Option<Transport>>,
    call: RefCell<Option<DelayedCall>>,
    timed_out: Cell<bool>,
}

impl Watch {
    /// A watch with `timeout` (zero: off; else at least a millisecond).
    pub(crate) fn new(timeout: Duration) -> Watch {
        Watch {
            timeout: at_least_a_millisecond(timeout),
            time: RefCell::new(None),
            transport: RefCell::new(None),
            call: RefCell::new(None),
            timed_out: Cell::new(false),
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Starts watching `transport` with the time source `given` (else the
    /// reactor's), unless the timeout is zero; whether it did.
    pub(crate) fn start(&self, given: Option<&Rc<dyn ReactorTime>>, transport: &Transport) -> bool {
        if self.timeout.is_zero() {
            return false;
        }
        *self.time.borrow_mut() = Some(time_or_reactor(given));
        *self.transport.borrow_mut() = Some(transport.clone());
        true
    }

    /// Stops watching: cancels the timer and forgets the connection.
    pub(crate) fn stop(&self) {
        if let Some(call) = self.call.borrow_mut().take() {
            let _ = call.cancel();
        }
        self.transport.borrow_mut().take();
        self.time.borrow_mut().take();
    }

    /// The time now, while watching.
    pub(crate) fn now(&self) -> Option<Instant> {
        self.time.borrow().as_ref().map(|time| time.now())
    }

    /// The transport, while watching.
    pub(crate) fn transport(&self) -> Option<Transport> {
        self.transport.borrow().clone()
    }

    /// Sets the timer: `fire` runs on `owner` after `delay` (if watching).
    pub(crate) fn schedule<T: 'static>(&self, delay: Duration, owner: &Rc<T>, fire: fn(&Rc<T>)) {
        let Some(time) = self.time.borrow().clone() else {
            return;
        };
        let call = call_later_weak(&*time, delay, owner, fire);
        *self.call.borrow_mut() = Some(call);
    }

    /// Whether the timer is set and has not run.
    pub(crate) fn is_scheduled(&self) -> bool {
        self.call.borrow().as_ref().is_some_and(DelayedCall::active)
    }

    /// Records that the connection timed out; whether this is the first
    /// time.
    pub(crate) fn mark_timed_out(&self) -> bool {
        !self.timed_out.replace(true)
    }

    pub(crate) fn timed_out(&self) -> bool {
        self.timed_out.get()
    }
}

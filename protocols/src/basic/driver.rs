//! The machinery shared by the pausable receivers: a parser state, the
//! user's receiver and its context, and the loop that delivers what the
//! parser finds, flat and never re-entered (Twisted's `_busyReceiving`).

use std::cell::{Cell, OnceCell, RefCell};
use std::rc::{Rc, Weak};

use twill::Transport;

use super::context::Link;

/// A parser: buffered input and the mode it is read in.
pub(crate) trait Machine: 'static {
    /// What it hands to the receiver.
    type Event;

    /// The next thing to deliver, or `None` to wait (nothing complete is
    /// buffered).
    fn next_event(&mut self) -> Option<Self::Event>;
}

/// A context handle: a [`Link`] and what the receiver's trait adds to it.
pub(crate) trait Connected<M>: Clone + 'static {
    fn new(link: Link<M>) -> Self;
    fn link(&self) -> &Link<M>;
}

/// Runs the delivery loop, unless it is already running.
pub(crate) trait Drive {
    fn drive(&self);
}

/// Marks a call into the receiver; `None` if one is already going on.
struct Busy<'a>(&'a Cell<bool>);

impl<'a> Busy<'a> {
    fn enter(flag: &'a Cell<bool>) -> Option<Busy<'a>> {
        (!flag.replace(true)).then(|| Busy(flag))
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// The parser state and pause flag (shared with the context handles), the
/// receiver and its context, behind one `Rc` owned by the protocol wrapper.
/// Contexts hold the state strongly and the core weakly, so a receiver that
/// keeps its own context makes no cycle.
pub(crate) struct Core<M: Machine, R, C> {
    pub(crate) state: Rc<RefCell<M>>,
    pub(crate) paused: Rc<Cell<bool>>,
    pub(crate) receiver: RefCell<R>,
    ctx: OnceCell<C>,
    busy: Cell<bool>,
    dispatch: fn(&mut R, &C, M::Event),
}

impl<M, R, C> Core<M, R, C>
where
    M: Machine,
    R: 'static,
    C: Connected<M>,
{
    pub(crate) fn new(state: M, receiver: R, dispatch: fn(&mut R, &C, M::Event)) -> Rc<Self> {
        Rc::new(Core {
            state: Rc::new(RefCell::new(state)),
            paused: Rc::new(Cell::new(false)),
            receiver: RefCell::new(receiver),
            ctx: OnceCell::new(),
            busy: Cell::new(false),
            dispatch,
        })
    }

    /// Makes the context on `transport` and calls `connection_made`
    /// through `made`.
    pub(crate) fn connect(self: &Rc<Self>, transport: &Transport, made: impl FnOnce(&mut R, &C)) {
        let driver: Weak<dyn Drive> = Rc::downgrade(self) as Weak<dyn Drive>;
        let link = Link::new(
            transport.clone(),
            self.state.clone(),
            self.paused.clone(),
            driver,
        );
        let ctx = C::new(link);
        if self.ctx.set(ctx).is_err() {
            log::warn!("connection_made called twice; the first transport is kept");
            return;
        }
        // On before the receiver runs, so it can turn it off.
        transport.set_flow_control(true);
        self.call(made);
    }

    pub(crate) fn context(&self) -> Option<&C> {
        self.ctx.get()
    }

    /// Calls into the receiver (marked busy, so what it asks for is only
    /// recorded), then delivers what became deliverable.
    pub(crate) fn call<T>(&self, f: impl FnOnce(&mut R, &C) -> T) -> Option<T> {
        let ctx = self.ctx.get()?;
        let result = {
            let _busy = Busy::enter(&self.busy);
            f(&mut self.receiver.borrow_mut(), ctx)
        };
        self.drive();
        Some(result)
    }

    /// Calls into the receiver for the last time (`connection_lost`).
    pub(crate) fn call_last(&self, f: impl FnOnce(&mut R)) {
        let _busy = Busy::enter(&self.busy);
        f(&mut self.receiver.borrow_mut());
    }
}

impl<M, R, C> Drive for Core<M, R, C>
where
    M: Machine,
    R: 'static,
    C: Connected<M>,
{
    fn drive(&self) {
        let Some(ctx) = self.ctx.get() else { return };
        let Some(_busy) = Busy::enter(&self.busy) else {
            // Called from inside a callback: the loop below goes on when
            // the callback returns.
            return;
        };
        let mut receiver = self.receiver.borrow_mut();
        loop {
            // Nothing more is delivered once the connection is closing:
            // the rest of the packet is dropped (Twisted's LineReceiver).
            // While paused, input waits in the buffer.
            if ctx.link().transport().is_closing() || self.paused.get() {
                return;
            }
            let Some(event) = self.state.borrow_mut().next_event() else {
                return;
            };
            (self.dispatch)(&mut receiver, ctx, event);
        }
    }
}

//! A layer under a connection's protocol (`Transport::start_tls`), and
//! changes to the protocol (that layer's wrapping, `Transport::set_protocol`)
//! that wait for its running callback to return, as the transports that
//! can take them keep them: the reactor's TCP connections and the
//! in-memory loopback.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;

use crate::protocol::Protocol;
use crate::transport::{Interposer, Transport, TransportImpl, WrapProtocol};

/// The layer every handle to a connection reaches, if it has one, and the
/// change to its protocol that waits for a running callback to return.
#[derive(Default)]
pub(crate) struct Layer {
    upper: RefCell<Option<Rc<dyn TransportImpl>>>,
    /// Whether there is one, without a borrow: every write asks.
    present: Cell<bool>,
    pending: Cell<Option<WrapProtocol>>,
    /// A change is being made (the protocol slot is empty meanwhile).
    changing: Cell<bool>,
}

/// Clears a flag when dropped, even by a panic.
struct ResetOnDrop<'a>(&'a Cell<bool>);

impl Drop for ResetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl Layer {
    /// The layer, if there is one.
    pub(crate) fn upper(&self) -> Option<Rc<dyn TransportImpl>> {
        if self.present.get() {
            self.upper.borrow().clone()
        } else {
            None
        }
    }

    /// Installs what `make` builds over `raw` (the connection itself): from
    /// now on every handle reaches it, and `protocol` is wrapped at once,
    /// or by `apply_pending` if it is running (it asked for this).
    pub(crate) fn install(
        &self,
        raw: Transport,
        make: Box<dyn FnOnce(Transport) -> io::Result<Interposer> + '_>,
        protocol: &RefCell<Option<Box<dyn Protocol>>>,
    ) -> io::Result<()> {
        if self.present.get() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the connection already runs TLS",
            ));
        }
        let Interposer { upper, wrap } = make(raw)?;
        *self.upper.borrow_mut() = Some(upper);
        self.present.set(true);
        self.change_protocol(wrap, protocol);
        Ok(())
    }

    /// Gives the connection to `replacement` (`Transport::set_protocol`):
    /// at once, or by `apply_pending` if the protocol is running. The old
    /// protocol is dropped with no more calls.
    pub(crate) fn replace_protocol(
        &self,
        replacement: Box<dyn Protocol>,
        protocol: &RefCell<Option<Box<dyn Protocol>>>,
    ) {
        self.change_protocol(
            Box::new(move |old| {
                // The connection goes on with the replacement, whatever
                // the old one's drop does.
                crate::protocol::drop_protocol(old, "replaced by set_protocol");
                replacement
            }),
            protocol,
        );
    }

    /// Applies `change` to `protocol` now, or after the running callback
    /// (after any change already waiting there). A change asked for while
    /// another is being made (by the code of a protocol being dropped) is
    /// made right after it.
    fn change_protocol(&self, change: WrapProtocol, protocol: &RefCell<Option<Box<dyn Protocol>>>) {
        let change = match self.pending.take() {
            Some(earlier) => Box::new(move |p| change(earlier(p))),
            None => change,
        };
        self.pending.set(Some(change));
        if protocol.try_borrow_mut().is_ok() {
            self.apply_pending(protocol);
        }
    }

    /// Makes the changes asked for while `protocol` was running.
    pub(crate) fn apply_pending(&self, protocol: &RefCell<Option<Box<dyn Protocol>>>) {
        if self.changing.replace(true) {
            return; // the change being made picks this one up
        }
        let _done = ResetOnDrop(&self.changing);
        while let Some(change) = self.pending.take() {
            let old = protocol.borrow_mut().take();
            // Outside the borrow: dropping a replaced protocol runs its
            // code, which may ask for another change.
            if let Some(old) = old {
                let new = change(old);
                *protocol.borrow_mut() = Some(new);
            }
        }
    }

    /// Forgets the layer (and its handle on the connection) once the
    /// connection is over.
    pub(crate) fn clear(&self) {
        self.present.set(false);
        drop(self.pending.take());
        drop(self.upper.borrow_mut().take());
    }
}

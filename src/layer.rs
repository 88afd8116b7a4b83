//! A layer under a connection's protocol (`Transport::start_tls`), as the
//! transports that can take one keep it: the reactor's TCP connections
//! and the in-memory loopback.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;

use crate::protocol::Protocol;
use crate::transport::{Interposer, Transport, TransportImpl, WrapProtocol};

/// The layer every handle to a connection reaches, if it has one, and the
/// wrapping of its protocol that waits for a running callback to return.
#[derive(Default)]
pub(crate) struct Layer {
    upper: RefCell<Option<Rc<dyn TransportImpl>>>,
    /// Whether there is one, without a borrow: every write asks.
    present: Cell<bool>,
    pending_wrap: Cell<Option<WrapProtocol>>,
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
        match protocol.try_borrow_mut() {
            Ok(mut slot) => {
                if let Some(inner) = slot.take() {
                    *slot = Some(wrap(inner));
                }
            }
            Err(_) => self.pending_wrap.set(Some(wrap)),
        }
        Ok(())
    }

    /// Wraps `protocol` if a layer came while it was running.
    pub(crate) fn apply_pending(&self, protocol: &RefCell<Option<Box<dyn Protocol>>>) {
        if let Some(wrap) = self.pending_wrap.take() {
            let mut slot = protocol.borrow_mut();
            if let Some(inner) = slot.take() {
                *slot = Some(wrap(inner));
            }
        }
    }

    /// Forgets the layer (and its handle on the connection) once the
    /// connection is over.
    pub(crate) fn clear(&self) {
        self.present.set(false);
        drop(self.pending_wrap.take());
        drop(self.upper.borrow_mut().take());
    }
}

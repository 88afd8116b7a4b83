//! Recording what protocols see, for comparing with the expected sequence.

use std::cell::RefCell;
use std::rc::Rc;

use twill::Reason;

/// Events seen by a protocol (or several), in order; clones share the list.
#[derive(Clone, Default)]
pub struct Log(Rc<RefCell<Vec<String>>>);

impl Log {
    /// Records `event`.
    pub fn push(&self, event: impl Into<String>) {
        self.0.borrow_mut().push(event.into());
    }

    /// The events so far.
    pub fn events(&self) -> Vec<String> {
        self.0.borrow().clone()
    }

    /// The events so far, leaving the log empty.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
}

/// A connection-lost event: `lost: done`, `lost: error KIND`,
/// `lost: aborted`, `lost: failed ERROR` or `lost: REASON`.
pub fn describe(reason: &Reason) -> String {
    match reason {
        Reason::Done => "lost: done".into(),
        Reason::Lost(err) => format!("lost: error {:?}", err.kind()),
        Reason::Aborted => "lost: aborted".into(),
        Reason::Failed(err) => format!("lost: failed {err}"),
        other => format!("lost: {other}"),
    }
}

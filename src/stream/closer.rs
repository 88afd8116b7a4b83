//! Closes a connection once its stream halves are all dropped.

use std::error::Error;
use std::fmt;

use crate::Transport;

/// Held by a connection's reader and every clone of its writer: the last
/// one dropped closes the connection, after what was written is sent. A
/// task dropped while it panics fails it instead, so the peer and the logs
/// see a failure, not a clean close.
pub(crate) struct Closer {
    pub(crate) transport: Transport,
}

impl Drop for Closer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.transport.fail(TaskPanicked);
        } else {
            self.transport.lose_connection();
        }
    }
}

/// Why a connection failed when the task holding its streams panicked.
#[derive(Debug)]
struct TaskPanicked;

impl fmt::Display for TaskPanicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the task holding this connection's streams panicked")
    }
}

impl Error for TaskPanicked {}
